//! The text of identifier fields (`event_type`, `event_category`, `event_action`): what they may
//! hold, and how a reserved prefix is recognised however it is spelled.
//!
//! Event types name who wrote an event, and some prefixes are reserved (`datastorage.` for the
//! service's own events). A prefix compared byte for byte is passed by `DataStorage.x`, by a
//! zero-width space inside it, or by full-width letters, each of which reads as the reserved
//! name in any UI. So identifiers may not hold control or invisible (default-ignorable)
//! characters at all, and a reserved prefix is compared on the compatibility-normalised (NFKC),
//! lower-cased text.

use std::borrow::Cow;

use unicode_normalization::UnicodeNormalization;

/// The message of an identifier that holds a control or invisible character.
pub(crate) const INVISIBLE_MESSAGE: &str =
    "must not contain control or invisible (default-ignorable) characters";

/// Whether `text` holds a control character (Cc) or a default-ignorable code point (the
/// Unicode property: zero-width spaces and joiners, bidirectional controls, variation
/// selectors, tags, the soft hyphen, …).
pub(crate) fn has_invisible(text: &str) -> bool {
    if text.is_ascii() {
        return text.bytes().any(|b| b < 0x20 || b == 0x7f);
    }
    text.chars()
        .any(|c| c.is_control() || is_default_ignorable(c))
}

/// `text` in the form reserved prefixes are compared in: NFKC, lower case. ASCII text (every
/// event type the platform writes) only has its case folded.
pub(crate) fn fold(text: &str) -> Cow<'_, str> {
    if text.is_ascii() {
        if text.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(text.to_ascii_lowercase())
        } else {
            Cow::Borrowed(text)
        }
    } else {
        Cow::Owned(text.nfkc().flat_map(char::to_lowercase).collect())
    }
}

/// Unicode's Default_Ignorable_Code_Point property (DerivedCoreProperties.txt, stable since
/// Unicode 5.2 apart from additions inside the reserved ranges listed here), as ranges.
pub(crate) const DEFAULT_IGNORABLE: [(u32, u32); 17] = [
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
];

/// The control characters (Cc), as ranges.
pub(crate) const CONTROL: [(u32, u32); 2] = [(0x0000, 0x001F), (0x007F, 0x009F)];

fn is_default_ignorable(c: char) -> bool {
    let c = c as u32;
    DEFAULT_IGNORABLE
        .iter()
        .any(|(low, high)| (*low..=*high).contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_and_control_characters_are_found() {
        for text in [
            "data\u{200b}storage.x",
            "a\u{202e}b",
            "a\u{feff}",
            "a\u{e0041}",
            "a\u{7f}",
            "a\tb",
        ] {
            assert!(has_invisible(text), "{text:?}");
        }
        assert!(!has_invisible("notification.message.sent"));
        assert!(!has_invisible("benachrichtigung.gesendet.ä"));
    }

    #[test]
    fn folding_lowers_case_and_normalises_compatibility_forms() {
        assert_eq!(fold("DataStorage.X"), "datastorage.x");
        assert_eq!(fold("ＤａｔａＳｔｏｒａｇｅ．x"), "datastorage.x");
        assert!(matches!(fold("plain.ascii"), Cow::Borrowed(_)));
    }
}
