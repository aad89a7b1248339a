//! Percent-decoding of what the fakes receive: query strings and form
//! bodies (`+` is a space there) and path segments (where it is not).

/// `s` percent-decoded; `None` for an escape that is not hex or bytes that
/// are not UTF-8. A `%` without two characters after it stays as it is.
pub fn decode(s: &str, plus_is_space: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        match byte {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// A query string's pairs, decoded, in order (repeated keys kept, pairs
/// that do not decode left out).
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((decode(k, true)?, decode(v, true)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_queries_decode() {
        assert_eq!(
            decode(
                "arn%3Aaws%3Aeks%3Aus-east-1%3A1%3Apodidentityassociation%2Fc%2Fa-1",
                false
            )
            .as_deref(),
            Some("arn:aws:eks:us-east-1:1:podidentityassociation/c/a-1")
        );
        assert_eq!(decode("a+b", false).as_deref(), Some("a+b"));
        assert_eq!(decode("a+b", true).as_deref(), Some("a b"));
        assert_eq!(decode("%zz", false), None);
        assert_eq!(
            query_pairs("tagKeys=a&tagKeys=b%20c&namespace=x+y"),
            vec![
                ("tagKeys".to_string(), "a".to_string()),
                ("tagKeys".to_string(), "b c".to_string()),
                ("namespace".to_string(), "x y".to_string()),
            ]
        );
    }
}
