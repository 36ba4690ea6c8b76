//! Input rules for usernames, passwords and role names (docs/http-api.md §3 "Rules", §6 "Bodies and shapes").
//!
//! Owns what a well-formed username and password are. Each failure carries the human
//! message for the `400 invalid_request` body. Values are checked exactly as received: no
//! trimming, case folding or Unicode normalisation.

/// Longest username, in characters (all allowed characters are ASCII, so also in bytes).
pub const MAX_USERNAME_CHARS: usize = 64;

/// Longest password, in UTF-8 bytes.
pub const MAX_PASSWORD_BYTES: usize = 1024;

const USERNAME_MESSAGE: &str = "username must be 1-64 characters of A-Z a-z 0-9 . _ - @";
const PASSWORD_EMPTY_MESSAGE: &str = "password must not be empty";
const PASSWORD_SHORT_MESSAGE: &str = "password is shorter than the minimum length";
const PASSWORD_LONG_MESSAGE: &str = "password must be at most 1024 bytes";

/// Accepts 1–64 characters of `A–Z a–z 0–9 . _ - @`; the error is the 400 message.
pub fn check_username(s: &str) -> Result<(), &'static str> {
    // The byte check first: it bounds the work on a huge input and, because every allowed
    // character is one byte, equals the character check for any name that passes the loop.
    if s.is_empty() || s.len() > MAX_USERNAME_CHARS {
        return Err(USERNAME_MESSAGE);
    }
    if s.bytes().all(is_username_byte) {
        Ok(())
    } else {
        Err(USERNAME_MESSAGE)
    }
}

fn is_username_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@')
}

/// Accepts a non-empty password of at least `min_len` Unicode scalar values and at most
/// 1024 UTF-8 bytes, as received; the error is the 400 message.
pub fn check_password(s: &str, min_len: usize) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err(PASSWORD_EMPTY_MESSAGE);
    }
    // Bytes before characters, so a huge password is refused without walking it.
    if s.len() > MAX_PASSWORD_BYTES {
        return Err(PASSWORD_LONG_MESSAGE);
    }
    if s.chars().count() < min_len {
        return Err(PASSWORD_SHORT_MESSAGE);
    }
    Ok(())
}

/// Accepts a role name of 1-64 characters of `A-Z a-z 0-9 . _ - :` (operator commands and
/// imports); the error names the role.
pub fn check_role(role: &str) -> Result<(), String> {
    let ok = !role.is_empty()
        && role.len() <= 64
        && role
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-:".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "role {role:?} must be 1-64 characters of A-Z a-z 0-9 . _ - :"
        ))
    }
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn empty_username_is_refused() {
        assert_eq!(check_username(""), Err(USERNAME_MESSAGE));
    }

    #[test]
    fn one_character_username_is_accepted() {
        assert_eq!(check_username("a"), Ok(()));
    }

    #[test]
    fn sixty_four_characters_are_accepted_and_sixty_five_are_not() {
        assert_eq!(check_username(&"a".repeat(64)), Ok(()));
        assert_eq!(check_username(&"a".repeat(65)), Err(USERNAME_MESSAGE));
    }

    #[test]
    fn every_allowed_character_class_is_accepted() {
        assert_eq!(check_username("Alice.Smith_99-x@example.org"), Ok(()));
        assert_eq!(check_username("ZZ09"), Ok(()));
    }

    #[test]
    fn characters_outside_the_set_are_refused() {
        for bad in [
            "alice ",
            " alice",
            "al ice",
            "josé",
            "аdmin",
            "ａｄｍｉｎ",
            "admin\u{200d}",
            "ad\u{202e}min",
            "a/b",
            "a+b",
            "a\0b",
            "a\nb",
            "a:b",
        ] {
            assert_eq!(check_username(bad), Err(USERNAME_MESSAGE), "{bad:?}");
        }
    }

    #[test]
    fn a_short_multibyte_username_is_refused_for_its_characters_not_its_length() {
        // 32 × 'é' is 32 characters but 64 bytes: still refused, since 'é' is not allowed.
        assert_eq!(check_username(&"é".repeat(32)), Err(USERNAME_MESSAGE));
    }

    #[test]
    fn a_one_megabyte_username_is_refused() {
        assert_eq!(check_username(&"a".repeat(1 << 20)), Err(USERNAME_MESSAGE));
    }

    #[test]
    fn empty_password_is_refused_even_with_no_minimum() {
        assert_eq!(check_password("", 0), Err(PASSWORD_EMPTY_MESSAGE));
        assert_eq!(check_password("", 8), Err(PASSWORD_EMPTY_MESSAGE));
    }

    #[test]
    fn password_one_below_the_minimum_is_refused_and_at_the_minimum_accepted() {
        assert_eq!(check_password("1234567", 8), Err(PASSWORD_SHORT_MESSAGE));
        assert_eq!(check_password("12345678", 8), Ok(()));
        assert_eq!(check_password("x", 1), Ok(()));
    }

    #[test]
    fn a_multibyte_character_counts_as_one() {
        // 8 characters, 16 bytes.
        assert_eq!(check_password("éééééééé", 8), Ok(()));
        assert_eq!(check_password("ééééééé", 8), Err(PASSWORD_SHORT_MESSAGE));
        // Decomposed é is two scalar values: e + U+0301.
        assert_eq!(
            check_password("e\u{301}e\u{301}e\u{301}e\u{301}", 8),
            Ok(())
        );
    }

    #[test]
    fn exactly_1024_bytes_are_accepted_and_1025_are_not() {
        assert_eq!(check_password(&"a".repeat(1024), 8), Ok(()));
        assert_eq!(
            check_password(&"a".repeat(1025), 8),
            Err(PASSWORD_LONG_MESSAGE)
        );
    }

    #[test]
    fn the_byte_limit_counts_utf8_bytes_not_characters() {
        // 512 × 'é' = 512 characters, 1024 bytes: accepted.
        assert_eq!(check_password(&"é".repeat(512), 8), Ok(()));
        // 512 × 'é' + 'a' = 513 characters, 1025 bytes: refused.
        let over = format!("{}a", "é".repeat(512));
        assert_eq!(over.len(), 1025);
        assert_eq!(check_password(&over, 8), Err(PASSWORD_LONG_MESSAGE));
        // 256 four-byte emoji = 1024 bytes: accepted; one more byte is not.
        assert_eq!(check_password(&"😀".repeat(256), 8), Ok(()));
        let over = format!("{}!", "😀".repeat(256));
        assert_eq!(check_password(&over, 8), Err(PASSWORD_LONG_MESSAGE));
    }

    #[test]
    fn surrounding_spaces_are_part_of_the_password() {
        // 8 characters only because the spaces count.
        assert_eq!(check_password("  pass  ", 8), Ok(()));
        assert_eq!(check_password("  pass  ", 9), Err(PASSWORD_SHORT_MESSAGE));
        assert_eq!(check_password("  password  ", 12), Ok(()));
    }

    #[test]
    fn a_one_megabyte_password_is_refused() {
        assert_eq!(
            check_password(&"p".repeat(1 << 20), 8),
            Err(PASSWORD_LONG_MESSAGE)
        );
    }
}
