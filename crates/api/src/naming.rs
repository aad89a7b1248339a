//! Deterministic names that fit a length limit: a readable prefix and a
//! stable hash, so the same input always yields the same name and different
//! inputs do not collide.

use sha2::{Digest, Sha256};

/// Hex digits of hash appended to truncated names.
const HASH_LEN: usize = 8;

/// `value` when it fits `max` bytes, else its first bytes, `-` and an
/// 8-hex-digit SHA-256 prefix of the whole value. `value` must be ASCII.
pub fn fit(value: &str, max: usize) -> String {
    if value.len() <= max {
        return value.to_string();
    }
    with_hash(value, &short_hash(value), max)
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
    with_hash(readable, &name_hash(key), max)
}

/// `readable` cut so that it, `-` and `hash` fit `max` bytes, without a
/// separator left dangling before the hash.
fn with_hash(readable: &str, hash: &str, max: usize) -> String {
    let keep = max.saturating_sub(hash.len() + 1).min(readable.len());
    let prefix = readable[..keep].trim_end_matches(['-', '.', '_']);
    format!("{prefix}-{hash}")
}

/// The first [`NAME_HASH_LEN`] hex digits of the SHA-256 of `key`.
pub fn name_hash(key: &str) -> String {
    sha256_hex(key, NAME_HASH_LEN)
}

/// First 8 hex digits of the SHA-256 of `value`.
pub fn short_hash(value: &str) -> String {
    sha256_hex(value, HASH_LEN)
}

fn sha256_hex(value: &str, digits: usize) -> String {
    Sha256::digest(value.as_bytes())
        .iter()
        .take(digits / 2)
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
