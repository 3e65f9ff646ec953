//! Small text helpers shared by the core: cutting caller- or upstream-given
//! text to a length, and reading plain decimal numbers.

/// `text` cut to `max_chars` characters (Unicode scalar values), marked with
/// `…` when cut.
pub fn cut_chars(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", text.get(..cut).unwrap_or_default()),
        None => text.to_owned(),
    }
}

/// A number written only in ASCII digits; saturates at `u64::MAX` instead of
/// overflowing. Signs, spaces and empty strings are `None`.
pub fn decimal(digits: &str) -> Option<u64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(digits.parse::<u64>().unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_by_characters_and_marks_the_cut() {
        assert_eq!(cut_chars("abc", 3), "abc");
        assert_eq!(cut_chars("abcd", 3), "abc…");
        assert_eq!(cut_chars("ééé", 2), "éé…");
        assert_eq!(cut_chars("", 0), "");
    }

    #[test]
    fn decimals_are_digits_only_and_saturate() {
        assert_eq!(decimal("0"), Some(0));
        assert_eq!(decimal("0042"), Some(42));
        assert_eq!(decimal("99999999999999999999999"), Some(u64::MAX));
        for bad in ["", " 1", "+1", "-1", "1.0", "1e3", "٣"] {
            assert_eq!(decimal(bad), None, "{bad:?}");
        }
    }
}
