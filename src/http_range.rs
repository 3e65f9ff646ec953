//! `Range` and `If-None-Match` for serving stored images (RFC 9110 §13, §14).
//!
//! Only a single byte range is honoured. A malformed header, another unit or
//! several ranges are ignored (the whole image is served), as RFC 9110 allows.

use crate::text::decimal;

/// What to answer a request's `Range` header with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// 200 with the whole representation.
    Full,
    /// 206 with bytes `start..=end`.
    Partial { start: u64, end: u64 },
    /// 416 with `Content-Range: bytes */<size>`.
    Unsatisfiable,
}

/// The range to serve of a representation of `size` bytes.
///
/// `bytes=a-b` and `bytes=a-` are served from `a`, with the end clamped to
/// `size - 1`; a start at or past `size` is unsatisfiable. `bytes=-n` is the
/// last `n` bytes (all of them if `n >= size`); `bytes=-0` is unsatisfiable.
/// For an empty representation every `a-` range is unsatisfiable, while a
/// non-zero suffix is satisfiable per RFC 9110 but selects nothing, so it is
/// answered with the (empty) whole: a 206 cannot describe zero bytes.
/// Numbers too large for `u64` saturate, which keeps them meaningful.
pub fn parse_range(header: Option<&str>, size: u64) -> RangeRequest {
    let Some(spec) = header.and_then(single_byte_range) else {
        return RangeRequest::Full;
    };
    match spec {
        RangeSpec::From { start, .. } if start >= size => RangeRequest::Unsatisfiable,
        RangeSpec::From { start, end } => {
            let last = size.saturating_sub(1);
            RangeRequest::Partial { start, end: end.map_or(last, |e| e.min(last)) }
        }
        RangeSpec::Suffix(0) => RangeRequest::Unsatisfiable,
        RangeSpec::Suffix(_) if size == 0 => RangeRequest::Full,
        RangeSpec::Suffix(length) => {
            RangeRequest::Partial { start: size.saturating_sub(length), end: size.saturating_sub(1) }
        }
    }
}

/// The `Content-Range` of a 206: `bytes 0-99/1000`.
pub fn content_range(start: u64, end: u64, size: u64) -> String {
    format!("bytes {start}-{end}/{size}")
}

/// The `Content-Range` of a 416: `bytes */1000`.
pub fn unsatisfied_range(size: u64) -> String {
    format!("bytes */{size}")
}

/// Whether an `If-None-Match` value matches `etag`, so a 304 is due. Uses the
/// weak comparison RFC 9110 prescribes for it: `W/` prefixes are ignored on
/// both sides. `*` matches any etag; a comma-separated list matches if any
/// member does. `etag` may be quoted (`"abc"`, `W/"abc"`) or bare (`abc`,
/// as R2 reports it); an empty one matches nothing but `*`.
pub fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    let wanted = opaque_tag(etag.trim());
    entity_tags(if_none_match).into_iter().any(|tag| tag == "*" || (!wanted.is_empty() && opaque_tag(tag) == wanted))
}

/// A syntactically valid single range, before it meets the size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangeSpec {
    /// `a-b` or `a-`.
    From { start: u64, end: Option<u64> },
    /// `-n`.
    Suffix(u64),
}

fn single_byte_range(header: &str) -> Option<RangeSpec> {
    let (unit, set) = header.trim().split_once('=')?;
    if !unit.trim().eq_ignore_ascii_case("bytes") || set.contains(',') {
        return None;
    }
    let (first, last) = set.trim().split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    match (first.is_empty(), last.is_empty()) {
        (true, true) => None,
        (true, false) => Some(RangeSpec::Suffix(decimal(last)?)),
        (false, true) => Some(RangeSpec::From { start: decimal(first)?, end: None }),
        (false, false) => {
            let (start, end) = (decimal(first)?, decimal(last)?);
            (start <= end).then_some(RangeSpec::From { start, end: Some(end) })
        }
    }
}

/// The members of an `If-None-Match` list, as written (`W/"a"`, `"b"`, `*`).
/// A quoted tag may itself contain commas; a lenient bare member runs to the
/// next comma.
fn entity_tags(list: &str) -> Vec<&str> {
    let mut tags = Vec::new();
    let mut rest = list;
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_ascii_whitespace());
        if rest.is_empty() {
            return tags;
        }
        let after_weak = rest.strip_prefix("W/").unwrap_or(rest);
        let len = match after_weak.strip_prefix('"') {
            Some(quoted) => match quoted.find('"') {
                Some(close) => (rest.len() - after_weak.len()) + close + 2,
                None => rest.len(),
            },
            None => rest.find(',').unwrap_or(rest.len()),
        };
        let (tag, tail) = rest.split_at_checked(len).unwrap_or((rest, ""));
        tags.push(tag.trim());
        rest = tail;
    }
}

/// The opaque part of an entity tag, without `W/` and the quotes.
fn opaque_tag(tag: &str) -> &str {
    let tag = tag.strip_prefix("W/").unwrap_or(tag);
    tag.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(tag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeRequest::{Full, Partial, Unsatisfiable};

    #[test]
    fn no_header_is_full() {
        assert_eq!(parse_range(None, 1000), Full);
        assert_eq!(parse_range(None, 0), Full);
    }

    #[test]
    fn closed_ranges() {
        assert_eq!(parse_range(Some("bytes=0-99"), 1000), Partial { start: 0, end: 99 });
        assert_eq!(parse_range(Some("bytes=100-100"), 1000), Partial { start: 100, end: 100 });
        assert_eq!(parse_range(Some("bytes=990-2000"), 1000), Partial { start: 990, end: 999 });
        assert_eq!(parse_range(Some("bytes=999-999"), 1000), Partial { start: 999, end: 999 });
        assert_eq!(parse_range(Some("Bytes = 5 - 9 "), 1000), Partial { start: 5, end: 9 });
        assert_eq!(parse_range(Some("bytes=0-99999999999999999999999"), 10), Partial { start: 0, end: 9 });
    }

    #[test]
    fn open_ranges() {
        assert_eq!(parse_range(Some("bytes=0-"), 1000), Partial { start: 0, end: 999 });
        assert_eq!(parse_range(Some("bytes=500-"), 1000), Partial { start: 500, end: 999 });
        assert_eq!(parse_range(Some("bytes=999-"), 1000), Partial { start: 999, end: 999 });
    }

    #[test]
    fn suffix_ranges() {
        assert_eq!(parse_range(Some("bytes=-100"), 1000), Partial { start: 900, end: 999 });
        assert_eq!(parse_range(Some("bytes=-1"), 1000), Partial { start: 999, end: 999 });
        assert_eq!(parse_range(Some("bytes=-1000"), 1000), Partial { start: 0, end: 999 });
        assert_eq!(parse_range(Some("bytes=-5000"), 1000), Partial { start: 0, end: 999 });
        assert_eq!(parse_range(Some("bytes=-99999999999999999999999"), 10), Partial { start: 0, end: 9 });
        assert_eq!(parse_range(Some("bytes=-0"), 1000), Unsatisfiable);
    }

    #[test]
    fn starts_past_the_end_are_unsatisfiable() {
        assert_eq!(parse_range(Some("bytes=1000-"), 1000), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=1000-2000"), 1000), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=99999999999999999999999-"), 1000), Unsatisfiable);
    }

    #[test]
    fn empty_representations() {
        assert_eq!(parse_range(Some("bytes=0-"), 0), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-10"), 0), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 0), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-10"), 0), Full);
        assert_eq!(parse_range(Some("garbage"), 0), Full);
    }

    #[test]
    fn malformed_or_multiple_ranges_are_ignored() {
        for header in [
            "",
            "bytes",
            "bytes=",
            "bytes=-",
            "bytes=abc",
            "bytes=a-b",
            "bytes=5",
            "bytes=10-5",
            "bytes=0-1-2",
            "bytes=+1-5",
            "bytes=-+5",
            "bytes=0x10-",
            "bytes=1.5-2",
            "bytes=0-1,5-6",
            "bytes=0-1,",
            "items=0-5",
            "0-5",
            "bytes=٣-",
        ] {
            assert_eq!(parse_range(Some(header), 1000), Full, "{header:?}");
        }
    }

    #[test]
    fn content_ranges() {
        assert_eq!(content_range(0, 99, 1000), "bytes 0-99/1000");
        assert_eq!(content_range(5, 5, 6), "bytes 5-5/6");
        assert_eq!(unsatisfied_range(1000), "bytes */1000");
    }

    #[test]
    fn etags_match_weakly() {
        assert!(etag_matches("\"abc\"", "\"abc\""));
        assert!(etag_matches("W/\"abc\"", "\"abc\""));
        assert!(etag_matches("\"abc\"", "W/\"abc\""));
        assert!(etag_matches("W/\"abc\"", "W/\"abc\""));
        assert!(etag_matches("\"abc\"", "abc"));
        assert!(etag_matches("abc", "abc"));
        assert!(etag_matches(" \"abc\" ", " \"abc\" "));
        assert!(!etag_matches("\"abc\"", "\"abd\""));
        assert!(!etag_matches("\"ABC\"", "\"abc\""));
        assert!(!etag_matches("\"abc\"", "\"abc"));
        assert!(!etag_matches("", "\"abc\""));
        assert!(!etag_matches("\"\"", ""));
        assert!(!etag_matches("w/\"abc\"", "\"xyz\""));
    }

    #[test]
    fn etag_star_and_lists() {
        assert!(etag_matches("*", "\"abc\""));
        assert!(etag_matches(" * ", ""));
        assert!(etag_matches("\"x\", \"abc\"", "\"abc\""));
        assert!(etag_matches("\"x\",W/\"abc\"", "\"abc\""));
        assert!(etag_matches("\"x\" ,, \"y\", \"abc\" ", "abc"));
        assert!(!etag_matches("\"x\", \"y\"", "\"abc\""));
        // A comma inside a quoted tag does not split it.
        assert!(etag_matches("\"a,b\"", "\"a,b\""));
        assert!(!etag_matches("\"a,b\"", "\"a\""));
        assert!(!etag_matches("\"a,b\"", "\"b\""));
        // An unterminated tag swallows the rest and matches nothing real.
        assert!(!etag_matches("\"abc, \"def\"", "\"def\""));
    }

    #[test]
    fn entity_tag_lists_split_where_they_should() {
        assert_eq!(entity_tags("W/\"a\", \"b,c\" ,d"), vec!["W/\"a\"", "\"b,c\"", "d"]);
        assert_eq!(entity_tags(" , "), Vec::<&str>::new());
        assert_eq!(entity_tags("\"é\",\"ü\""), vec!["\"é\"", "\"ü\""]);
    }
}
