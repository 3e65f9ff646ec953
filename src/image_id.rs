//! Image ids: unguessable, URL-safe, carrying the file extension, sorting by
//! creation time, and the same every time for one (prediction, output index),
//! so persisting an output twice never makes two images.
//!
//! Format: 10 lowercase Crockford base32 characters of the 48-bit creation
//! time in milliseconds (like a ULID's time part), 16 characters of the first
//! 80 bits of SHA-256(`"<prediction_id>:<index>"`), then `.ext`:
//! `01jhc3z3x8a1b2c3d4e5f6g7h8.png`.

use sha2::{Digest, Sha256};
use std::time::UNIX_EPOCH;

/// Crockford's base32 alphabet, lowercase: no i, l, o, u.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// Characters encoding the timestamp.
const TIME_CHARS: usize = 10;
/// Characters encoding the hash.
const HASH_CHARS: usize = 16;
/// Characters before the `.`.
pub const STEM_LEN: usize = TIME_CHARS + HASH_CHARS;
/// The largest timestamp the time part holds (2^48 - 1 ms, in the year 10889).
pub const MAX_TIMESTAMP_MS: u64 = (1 << 48) - 1;
/// The extensions an image id may carry.
pub const ALLOWED_EXTS: [&str; 4] = ["png", "jpg", "webp", "gif"];

/// The id of output `index` of prediction `prediction_id`, created at
/// `created_at_ms` (clamped to `MAX_TIMESTAMP_MS`). `ext` is lowercased,
/// stripped of a leading `.`, and `jpeg` becomes `jpg`.
pub fn image_id(prediction_id: &str, created_at_ms: u64, index: usize, ext: &str) -> String {
    let mut id = String::with_capacity(STEM_LEN + 1 + ext.len());
    id.push_str(&encode_time(created_at_ms.min(MAX_TIMESTAMP_MS)));
    id.push_str(&encode_hash(prediction_id, index));
    id.push('.');
    id.push_str(&normalize_ext(ext));
    id
}

/// Splits a well-formed image id into its stem and extension. Anything but
/// exactly 26 lowercase Crockford characters (the first at most `7`, as a
/// 48-bit time allows), a `.` and one of `ALLOWED_EXTS` is `None`.
pub fn parse_image_id(id: &str) -> Option<(&str, &str)> {
    let (stem, ext) = id.split_once('.')?;
    let stem_ok = stem.len() == STEM_LEN
        && stem.bytes().all(|b| ALPHABET.contains(&b))
        && stem.bytes().next().is_some_and(|first| first <= b'7');
    (stem_ok && ALLOWED_EXTS.contains(&ext)).then_some((stem, ext))
}

/// Milliseconds since the Unix epoch of an RFC 3339 timestamp such as
/// Replicate's `created_at` (`2025-01-15T10:03:40.584470194Z`,
/// `2025-01-15T09:54:55.566Z`). Accepts `T` or a space, any number of
/// fractional digits, and `Z` or a `±HH:MM` offset; a missing zone is UTC.
/// Garbage, impossible dates and times before 1970 are `None`.
pub fn rfc3339_to_ms(ts: &str) -> Option<u64> {
    let ts = ts.trim();
    let (local, offset_minutes) = split_zone(ts)?;
    if !is_plain_date_time(local) {
        return None;
    }
    // humantime wants an uppercase `T`; the shape check leaves no other `t`.
    let utc = humantime::parse_rfc3339_weak(&local.replace('t', "T")).ok()?;
    let local_ms = u64::try_from(utc.duration_since(UNIX_EPOCH).ok()?.as_millis()).ok()?;
    let offset_ms = offset_minutes.unsigned_abs() * 60_000;
    if offset_minutes >= 0 {
        local_ms.checked_sub(offset_ms)
    } else {
        local_ms.checked_add(offset_ms)
    }
}

fn encode_time(ms: u64) -> String {
    (0..TIME_CHARS).rev().map(|i| base32_char(ms >> (5 * i))).collect()
}

fn encode_hash(prediction_id: &str, index: usize) -> String {
    let digest = Sha256::digest(format!("{prediction_id}:{index}").as_bytes());
    let mut bits = [0u8; 16];
    // 80 bits: the first 10 bytes of the digest, right-aligned in a u128.
    for (slot, byte) in bits.iter_mut().skip(6).zip(digest.iter()) {
        *slot = *byte;
    }
    let value = u128::from_be_bytes(bits);
    (0..HASH_CHARS).rev().map(|i| base32_char_u128(value >> (5 * i))).collect()
}

fn base32_char(value: u64) -> char {
    char::from(ALPHABET.get((value & 31) as usize).copied().unwrap_or(b'0'))
}

fn base32_char_u128(value: u128) -> char {
    char::from(ALPHABET.get((value & 31) as usize).copied().unwrap_or(b'0'))
}

fn normalize_ext(ext: &str) -> String {
    let ext = ext.trim_start_matches('.').to_ascii_lowercase();
    if ext == "jpeg" {
        String::from("jpg")
    } else {
        ext
    }
}

/// Splits `ts` into its local date-time and its UTC offset in minutes.
fn split_zone(ts: &str) -> Option<(&str, i64)> {
    if let Some(local) = ts.strip_suffix(['Z', 'z']) {
        return Some((local, 0));
    }
    let split = ts.len().checked_sub(6)?;
    let (Some(local), Some(zone)) = (ts.get(..split), ts.get(split..)) else {
        return Some((ts, 0));
    };
    let zone = zone.as_bytes();
    let sign = match zone.first() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return Some((ts, 0)),
    };
    // A date alone ends in `-DD`, never `±HH:MM`, so a sign here is a zone.
    let (hours, minutes) = match zone {
        [_, h1, h2, b':', m1, m2] => (two_digits(*h1, *h2)?, two_digits(*m1, *m2)?),
        _ => return None,
    };
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some((local, sign * (hours * 60 + minutes)))
}

fn two_digits(tens: u8, ones: u8) -> Option<i64> {
    (tens.is_ascii_digit() && ones.is_ascii_digit()).then(|| i64::from((tens - b'0') * 10 + (ones - b'0')))
}

/// `YYYY-MM-DD[T ]HH:MM:SS` with an optional `.` and at least one digit.
fn is_plain_date_time(s: &str) -> bool {
    let b = s.as_bytes();
    let shape = b"dddd-dd-ddTdd:dd:dd";
    if b.len() < shape.len() {
        return false;
    }
    let head_ok = shape.iter().zip(b).all(|(want, got)| match want {
        b'd' => got.is_ascii_digit(),
        b'T' => matches!(got, b'T' | b't' | b' '),
        other => other == got,
    });
    let fraction_ok = match b.get(shape.len()..).unwrap_or_default() {
        [] => true,
        [b'.', digits @ ..] => !digits.is_empty() && digits.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    head_ok && fraction_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_736_935_420_584; // 2025-01-15T10:03:40.584Z

    #[test]
    fn ids_have_the_documented_shape() {
        let id = image_id("qpt5jq1fssrmc0cmd5hvy31mdg", T, 0, "png");
        assert_eq!(id.len(), 30, "{id}");
        assert!(id.ends_with(".png"));
        assert_eq!(&id[..10], "01jhmppcn8");
        assert!(id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.'));
        assert_eq!(parse_image_id(&id), Some((&id[..26], "png")));
    }

    #[test]
    fn time_part_matches_a_ulid() {
        // The ULID spec's example id 01ARZ3NDEKTSV4RRFFQ69G5FAV starts with this time.
        assert_eq!(encode_time(1_469_922_850_259), "01arz3ndek");
        assert_eq!(encode_time(0), "0000000000");
        assert_eq!(encode_time(MAX_TIMESTAMP_MS), "7zzzzzzzzz");
        assert_eq!(&image_id("p", u64::MAX, 0, "png")[..10], "7zzzzzzzzz");
    }

    #[test]
    fn ids_are_deterministic_and_distinct() {
        let a = image_id("pred-a", T, 0, "webp");
        assert_eq!(a, image_id("pred-a", T, 0, "webp"));
        assert_ne!(a[10..26], image_id("pred-a", T, 1, "webp")[10..26]);
        assert_ne!(a[10..26], image_id("pred-b", T, 0, "webp")[10..26]);
        // "a:1" + "1" must not collide with "a:11".
        assert_ne!(image_id("a", T, 11, "png"), image_id("a:1", T, 1, "png"));
        // The hash part does not depend on the time.
        assert_eq!(a[10..26], image_id("pred-a", T + 1, 0, "webp")[10..26]);
    }

    #[test]
    fn hash_part_is_the_first_80_bits_of_sha256() {
        // SHA-256("abc:0") starts with these 10 bytes, read as 16 base32 digits.
        let digest = Sha256::digest(b"abc:0");
        let mut expected = String::new();
        let bits: String = digest.iter().take(10).map(|b| format!("{b:08b}")).collect();
        for chunk in bits.as_bytes().chunks(5) {
            let value = u8::from_str_radix(std::str::from_utf8(chunk).unwrap(), 2).unwrap();
            expected.push(ALPHABET[value as usize] as char);
        }
        assert_eq!(encode_hash("abc", 0), expected);
    }

    #[test]
    fn string_order_is_time_order() {
        let times = [0, 1, 31, 32, 1_000, 1 << 40, T - 1, T, T + 1, MAX_TIMESTAMP_MS];
        let ids: Vec<String> = times.iter().map(|t| image_id("z", *t, 0, "png")).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        // Even when the later one's hash part is smaller.
        let early = image_id("x", T, 0, "png");
        let later = image_id("y", T + 1, 3, "png");
        assert!(early < later);
    }

    #[test]
    fn extensions_are_normalized() {
        assert!(image_id("p", T, 0, "JPEG").ends_with(".jpg"));
        assert!(image_id("p", T, 0, ".png").ends_with(".png"));
        assert!(image_id("p", T, 0, "WebP").ends_with(".webp"));
        for ext in ALLOWED_EXTS {
            let id = image_id("p", T, 2, ext);
            assert_eq!(parse_image_id(&id).map(|(_, e)| e), Some(ext));
        }
    }

    #[test]
    fn parse_rejects_everything_else() {
        let good = image_id("p", T, 0, "png");
        let stem = &good[..26];
        for bad in [
            String::new(),
            ".png".into(),
            stem.to_string(),
            format!("{stem}."),
            format!("{stem}.PNG"),
            format!("{stem}.jpeg"),
            format!("{stem}.exe"),
            format!("{stem}.png.png"),
            format!("{stem}.png/"),
            format!("{}.png", stem.to_uppercase()),
            format!("{}.png", &stem[..25]),
            format!("{stem}0.png"),
            format!("8{}.png", &stem[1..]),
            format!("{}i.png", &stem[..25]),
            format!("{}u.png", &stem[..25]),
            "../../../etc/passwd".into(),
            format!("../{}.png", &stem[3..]),
            format!("{}%2e.png", &stem[..23]),
            format!("{}é.png", &stem[..24]),
            format!("{stem} .png"),
        ] {
            assert_eq!(parse_image_id(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn rfc3339_timestamps() {
        assert_eq!(rfc3339_to_ms("2025-01-15T10:03:40.584470194Z"), Some(T));
        assert_eq!(rfc3339_to_ms("2025-01-15T10:03:40.584Z"), Some(T));
        assert_eq!(rfc3339_to_ms("2025-01-15T10:03:40.584470Z"), Some(T));
        assert_eq!(rfc3339_to_ms("2025-01-15T10:03:40Z"), Some(T - 584));
        assert_eq!(rfc3339_to_ms("2025-01-15T10:03:40.5Z"), Some(T - 84));
        assert_eq!(rfc3339_to_ms("2025-01-15 10:03:40.584"), Some(T));
        assert_eq!(rfc3339_to_ms("2025-01-15t10:03:40.584z"), Some(T));
        assert_eq!(rfc3339_to_ms(" 2025-01-15T10:03:40.584Z "), Some(T));
        assert_eq!(rfc3339_to_ms("2025-01-15T10:03:40.584+00:00"), Some(T));
        assert_eq!(rfc3339_to_ms("2025-01-15T12:03:40.584+02:00"), Some(T));
        assert_eq!(rfc3339_to_ms("2025-01-15T04:33:40.584-05:30"), Some(T));
        assert_eq!(rfc3339_to_ms("1970-01-01T00:00:00Z"), Some(0));
    }

    #[test]
    fn rfc3339_garbage_is_none() {
        for bad in [
            "",
            "garbage",
            "2025-01-15",
            "2025-01-15T10:03",
            "2025-13-15T10:03:40Z",
            "2025-02-30T10:03:40Z",
            "2025-01-15T24:03:40Z",
            "2025-01-15T10:03:40.Z",
            "2025-01-15T10:03:40.58a4Z",
            "2025-01-15T10:03:40.584+05",
            "2025-01-15T10:03:40.584+5:00:",
            "2025-01-15T10:03:40.584+24:00",
            "2025-01-15T10:03:40.584+ab:cd",
            "2025-01-15X10:03:40Z",
            "2025-01-15T10:03:40ZZ",
            "2025-01-15T10:03:40 extra",
            "1969-12-31T23:59:59Z",
            "1970-01-01T00:00:00+00:01",
            "２025-01-15T10:03:40Z",
            "2025-01-15T10:03:40.584é",
        ] {
            assert_eq!(rfc3339_to_ms(bad), None, "{bad:?}");
        }
    }
}
