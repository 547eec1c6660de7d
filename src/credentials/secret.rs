//! App password secrets: made here, shown once, kept only as a SHA-256 digest.
//!
//! A secret is [`SECRET_LETTERS`] random lowercase letters (26^16 ≈ 2^75): far beyond
//! what online guessing behind the login limiter or an offline attack on a digest can
//! reach, so a fast digest is enough, and a login that tries twenty app passwords costs
//! twenty SHA-256 runs, not twenty argon2 ones. Letters only, shown in groups of four
//! (`abcd efgh ijkl mnop`), because people type them into phones; any spaces, dashes and
//! capitals they add on the way are taken out again by [`normalise`].

use rand::Rng;

/// Letters in a secret.
pub const SECRET_LETTERS: usize = 16;

/// A new random secret, normalised (16 lowercase letters, no spaces).
pub fn generate() -> String {
    let mut rng = rand::rng();
    (0..SECRET_LETTERS).map(|_| char::from(b'a' + rng.random_range(0..26u8))).collect()
}

/// The secret as shown to the user: groups of four letters separated by spaces.
pub fn display(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    chars.chunks(4).map(|c| c.iter().collect::<String>()).collect::<Vec<_>>().join(" ")
}

/// The normal form of what a user typed, or `None` when it cannot be an app password
/// (then no digest is worth computing): spaces and dashes dropped, letters lowercased,
/// exactly [`SECRET_LETTERS`] ASCII letters left.
pub fn normalise(typed: &str) -> Option<String> {
    if typed.len() > 4 * SECRET_LETTERS {
        return None;
    }
    let letters: String = typed.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    (letters.len() == SECRET_LETTERS && letters.bytes().all(|b| b.is_ascii_alphabetic()))
        .then(|| letters.to_ascii_lowercase())
}

/// The stored digest of a normalised secret: SHA-256, lowercase hex.
pub fn digest(normalised: &str) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, normalised.as_bytes()).as_ref())
}

/// Does `digest_hex` (of what was typed) equal `stored`? Without an early exit, so the
/// timing does not tell how much of a digest a guess matched.
pub fn digest_matches(stored: &str, digest_hex: &str) -> bool {
    crate::accounts::constant_time_eq(stored.as_bytes(), digest_hex.as_bytes())
}

/// A new app password id: 8 random bytes, hex (unique enough among 20 per account).
pub fn new_id() -> String {
    hex(&rand::random::<[u8; 8]>())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_sixteen_lowercase_letters_and_differ() {
        let a = generate();
        assert_eq!(a.len(), SECRET_LETTERS);
        assert!(a.bytes().all(|b| b.is_ascii_lowercase()), "{a}");
        assert_ne!(a, generate());
    }

    #[test]
    fn shown_in_groups_of_four() {
        assert_eq!(display("abcdefghijklmnop"), "abcd efgh ijkl mnop");
    }

    #[test]
    fn typed_forms_normalise_to_the_secret() {
        for typed in ["abcdefghijklmnop", "abcd efgh ijkl mnop", "ABCD-EFGH-IJKL-MNOP", " abcd  efgh-ijkl mnop "] {
            assert_eq!(normalise(typed).as_deref(), Some("abcdefghijklmnop"), "{typed:?}");
        }
        for typed in ["abcdefghijklmno", "abcdefghijklmnopq", "abcdefghijklmno1", "äbcdefghijklmnop", ""] {
            assert_eq!(normalise(typed), None, "{typed:?}");
        }
        assert_eq!(normalise(&" ".repeat(10_000)), None);
    }

    #[test]
    fn digests_compare_equal_only_for_the_same_secret() {
        let d = digest("abcdefghijklmnop");
        assert_eq!(d.len(), 64);
        assert!(digest_matches(&d, &digest(&normalise("abcd efgh ijkl mnop").unwrap())));
        assert!(!digest_matches(&d, &digest("abcdefghijklmnoq")));
    }
}
