//! How many SMS segments a text takes: GSM-7 when every character is in the GSM 03.38
//! alphabet (160 characters in one segment, 153 per segment of a longer one; the extension
//! table's characters count twice), UCS-2 otherwise (70 UTF-16 units, 67 per segment).

/// The GSM 03.38 default alphabet (without the escape).
const GSM_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// Its extension table: each costs an escape and the character.
const GSM_EXTENDED: &str = "^{}\\[~]|€\u{000C}";

/// The encoding a text is sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Gsm7,
    Ucs2,
}

/// The encoding of `text`, and its length in that encoding's units.
pub fn measure(text: &str) -> (Encoding, usize) {
    let mut septets = 0;
    for c in text.chars() {
        if GSM_BASIC.contains(c) {
            septets += 1;
        } else if GSM_EXTENDED.contains(c) {
            septets += 2;
        } else {
            return (Encoding::Ucs2, text.encode_utf16().count());
        }
    }
    (Encoding::Gsm7, septets)
}

/// The segments `text` is sent in.
pub fn segments(text: &str) -> usize {
    let (encoding, units) = measure(text);
    let (single, per_part) = match encoding {
        Encoding::Gsm7 => (160, 153),
        Encoding::Ucs2 => (70, 67),
    };
    if units <= single { 1 } else { units.div_ceil(per_part) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsm_texts_take_160_characters_a_segment_and_153_when_split() {
        assert_eq!(measure("Your code is 123456"), (Encoding::Gsm7, 19));
        assert_eq!(segments(&"a".repeat(160)), 1);
        assert_eq!(segments(&"a".repeat(161)), 2);
        assert_eq!(segments(&"a".repeat(306)), 2);
        assert_eq!(segments(&"a".repeat(307)), 3);
        // The extension table costs two septets.
        assert_eq!(measure("€[]"), (Encoding::Gsm7, 6));
        assert_eq!(segments(&"€".repeat(81)), 2);
        assert_eq!(measure("Votre code de vérification est 1"), (Encoding::Gsm7, 32));
    }

    #[test]
    fn any_other_character_makes_the_text_ucs2() {
        assert_eq!(measure("código").0, Encoding::Ucs2);
        assert_eq!(measure("Ваш код").0, Encoding::Ucs2);
        assert_eq!(segments(&"ж".repeat(70)), 1);
        assert_eq!(segments(&"ж".repeat(71)), 2);
        assert_eq!(segments(&"ж".repeat(134)), 2);
        // A character outside the basic plane takes two UTF-16 units.
        assert_eq!(measure("🙂"), (Encoding::Ucs2, 2));
    }
}
