//! The length limits of the audit trail's text fields, shared by Data Storage (which refuses a
//! longer value) and by every writer (which must never send one), and [`fit`], the one way a
//! writer shortens a value it does not control.
//!
//! Lengths are counted in characters (Unicode scalar values), as Data Storage counts them.

use std::borrow::Cow;

use sha2::{Digest, Sha256};

/// Identifiers and names: ids, recipients, channels' statuses, resource names.
pub const MAX_SHORT: usize = 255;
/// Free text: messages, reports, error texts.
pub const MAX_TEXT: usize = 65_536;

/// Hex digits of the SHA-256 digest that [`fit`] keeps (64 bits).
const DIGEST_DIGITS: usize = 16;
/// Separates the kept prefix from the digest in a shortened value.
const MARK: char = '~';

/// `value` if it has at most `max` characters; otherwise its first characters, `~` and the first
/// 16 hex digits of the SHA-256 of the whole value, `max` characters in all.
///
/// The shortened value still identifies the original (two values that differ anywhere shorten
/// differently, but for a 64-bit digest collision) and reads as it (the prefix), so a natural key
/// built from it stays unique and a reader sees what it was. `max` must leave room for the
/// digest (at least 18); a smaller one gives the value's first `max` characters.
pub fn fit(value: &str, max: usize) -> Cow<'_, str> {
    let Some((cut, _)) = value.char_indices().nth(max) else {
        return Cow::Borrowed(value);
    };
    if max < DIGEST_DIGITS + 2 {
        return Cow::Borrowed(&value[..cut]);
    }
    let keep = max - DIGEST_DIGITS - 1;
    let end = value
        .char_indices()
        .nth(keep)
        .map_or(value.len(), |(i, _)| i);
    let digest = hex::encode(Sha256::digest(value.as_bytes()));
    Cow::Owned(format!(
        "{}{MARK}{}",
        &value[..end],
        &digest[..DIGEST_DIGITS]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_kept_and_long_ones_shortened_to_the_limit_keeping_identity() {
        assert_eq!(fit("hooks.example.com", MAX_SHORT), "hooks.example.com");
        let exact = "é".repeat(MAX_SHORT);
        assert!(matches!(fit(&exact, MAX_SHORT), Cow::Borrowed(_)));

        let a = format!("https://hooks.example.com/{}", "a".repeat(2000));
        let b = format!("{}b", &a[..a.len() - 1]);
        let (fa, fb) = (fit(&a, MAX_SHORT), fit(&b, MAX_SHORT));
        assert_eq!(fa.chars().count(), MAX_SHORT);
        assert_eq!(fb.chars().count(), MAX_SHORT);
        assert_ne!(fa, fb, "values differing only past the cut stay distinct");
        assert!(fa.starts_with("https://hooks.example.com/aaa"));
        assert_eq!(fit(&a, MAX_SHORT), fa, "deterministic");

        // Multi-byte characters are never split.
        let wide = "日本語".repeat(200);
        let f = fit(&wide, MAX_SHORT);
        assert_eq!(f.chars().count(), MAX_SHORT);
        assert!(f.starts_with("日本語日本語"));
        assert_eq!(fit(&wide, 5), "日本語日本");
    }
}
