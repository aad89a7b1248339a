//! Deterministic names that fit a length limit: long inputs keep a readable
//! prefix and end in a short stable hash, so the same input always yields the
//! same name and different inputs do not collide.

use sha2::{Digest, Sha256};

/// Hex digits of hash appended to truncated names.
const HASH_LEN: usize = 8;

/// `value` when it fits `max` bytes, else its first bytes, `-` and an
/// 8-hex-digit SHA-256 prefix of the whole value. `value` must be ASCII.
pub fn fit(value: &str, max: usize) -> String {
    if value.len() <= max {
        return value.to_string();
    }
    let keep = max.saturating_sub(HASH_LEN + 1);
    let prefix = value[..keep].trim_end_matches(['-', '.', '_']);
    format!("{prefix}-{}", short_hash(value))
}

/// `raw` with every character `allowed` rejects turned into `-`; when
/// anything changed, a hash of the original is appended so `a.b` and `a-b`
/// never collide.
pub fn sanitize(raw: &str, allowed: impl Fn(char) -> bool) -> String {
    let clean: String = raw
        .chars()
        .map(|c| if allowed(c) { c } else { '-' })
        .collect();
    if clean == raw {
        clean
    } else {
        format!("{clean}-{}", short_hash(raw))
    }
}

/// Hex digits of the hash that makes a default identity name unambiguous:
/// 48 bits, so finding another (cluster, namespace, binding) of the same
/// name is a brute-force search, not an afternoon.
pub const NAME_HASH_LEN: usize = 12;

/// The default name of what wib makes for `key` — `cluster/namespace/name`,
/// unambiguous since namespaces and object names cannot contain `/`: the
/// `readable` text cut to fit `max` bytes, `-`, and a 48-bit hash of `key`.
/// Two keys share a name only if their hashes collide, however their parts
/// are spelled (`team` + `a-app` versus `team-a` + `app`). `readable` must
/// be ASCII.
pub fn unambiguous(readable: &str, key: &str, max: usize) -> String {
    let hash = name_hash(key);
    let keep = max.saturating_sub(NAME_HASH_LEN + 1).min(readable.len());
    let prefix = readable[..keep].trim_end_matches(['-', '.', '_']);
    format!("{prefix}-{hash}")
}

/// The first [`NAME_HASH_LEN`] hex digits of the SHA-256 of `key`.
pub fn name_hash(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .take(NAME_HASH_LEN / 2)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// First 8 hex digits of the SHA-256 of `value`.
pub fn short_hash(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    digest
        .iter()
        .take(HASH_LEN / 2)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unambiguous_names_keep_apart_what_joining_would_merge() {
        let a = unambiguous("wib-c-team-a-app1", "c/team/a-app1", 64);
        let b = unambiguous("wib-c-team-a-app1", "c/team-a/app1", 64);
        assert_ne!(a, b);
        assert!(a.starts_with("wib-c-team-a-app1-"), "{a}");
        assert_eq!(a.len(), "wib-c-team-a-app1".len() + 1 + NAME_HASH_LEN);
        let long = unambiguous(&"x".repeat(100), "c/ns/name", 30);
        assert_eq!(long.len(), 30, "{long}");
        assert_eq!(
            long,
            unambiguous(&"x".repeat(100), "c/ns/name", 30),
            "stable"
        );
    }

    #[test]
    fn fit_cases() {
        let long = "a".repeat(300);
        let cases: Vec<(&str, usize, usize)> = vec![
            // (input, max, expected length)
            ("short", 10, 5),
            ("exactly-ten", 11, 11),
            (&long, 128, 128),
            (&long, 64, 64),
        ];
        for (input, max, want) in cases {
            let got = fit(input, max);
            assert_eq!(got.len(), want, "{input} -> {got}");
            assert_eq!(got, fit(input, max), "deterministic");
        }
    }

    #[test]
    fn truncated_names_differ_when_inputs_differ_past_the_cut() {
        let a = format!("{}-a", "x".repeat(200));
        let b = format!("{}-b", "x".repeat(200));
        assert_ne!(fit(&a, 64), fit(&b, 64));
    }

    #[test]
    fn truncation_does_not_leave_a_separator_before_the_hash() {
        let name = format!("{}-{}", "a".repeat(54), "b".repeat(40));
        let got = fit(&name, 64);
        assert!(!got.contains("--"), "{got}");
    }
}
