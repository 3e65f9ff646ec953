//! Usage counters per subject and UTC day, daily quotas, and the rate-limit
//! headers that report them.
//!
//! A subject is who is counted: a service API key's id, [`token_subject`] of a
//! caller's own Replicate token, or [`SERVICE_SUBJECT`] for callers using the
//! service's `AUTH_TOKEN`. Counters live in KV as JSON under
//! `usage:<subject>:<YYYY-MM-DD>`.

use crate::cache_key::sha256_hex;
use serde::{Deserialize, Serialize};

/// The prefix of every usage KV key.
pub const KV_PREFIX: &str = "usage:";
/// The subject of callers using the service's `AUTH_TOKEN`.
pub const SERVICE_SUBJECT: &str = "service";
/// The prefix of a caller token's subject.
pub const TOKEN_SUBJECT_PREFIX: &str = "tok_";
/// Hex characters of a token's hash in its subject (64 bits).
const TOKEN_SUBJECT_HEX: usize = 16;
const MS_PER_DAY: u64 = 86_400_000;
const SECS_PER_DAY: u32 = 86_400;

/// What one subject used in one UTC day. Every field saturates rather than
/// overflows; a field missing from stored JSON is 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Usage {
    /// Generations run on Replicate.
    pub generations: u64,
    /// Generations answered from the cache.
    pub cache_hits: u64,
    /// Images written to storage.
    pub images_stored: u64,
    /// Bytes written to storage.
    pub bytes_stored: u64,
    /// Replicate's `metrics.predict_time`, summed, in milliseconds.
    pub predict_time_ms: u64,
}

impl Usage {
    /// One generation that stored `images` images of `bytes` bytes in all and
    /// took `predict_time_ms` on Replicate.
    pub fn generation(images: u64, bytes: u64, predict_time_ms: u64) -> Self {
        Self { generations: 1, images_stored: images, bytes_stored: bytes, predict_time_ms, ..Self::default() }
    }

    /// One generation answered from the cache.
    pub fn cache_hit() -> Self {
        Self { cache_hits: 1, ..Self::default() }
    }

    /// Counts `delta` in.
    pub fn add(&mut self, delta: &Usage) {
        self.generations = self.generations.saturating_add(delta.generations);
        self.cache_hits = self.cache_hits.saturating_add(delta.cache_hits);
        self.images_stored = self.images_stored.saturating_add(delta.images_stored);
        self.bytes_stored = self.bytes_stored.saturating_add(delta.bytes_stored);
        self.predict_time_ms = self.predict_time_ms.saturating_add(delta.predict_time_ms);
    }

    /// Joins two readings of the same counter (say, one kept in memory and
    /// one read back from KV, which may lag): each field is the larger. It
    /// never counts a delta twice and never goes backwards; it does not
    /// recover an increment lost to a concurrent write.
    pub fn merge(&mut self, other: &Usage) {
        self.generations = self.generations.max(other.generations);
        self.cache_hits = self.cache_hits.max(other.cache_hits);
        self.images_stored = self.images_stored.max(other.images_stored);
        self.bytes_stored = self.bytes_stored.max(other.bytes_stored);
        self.predict_time_ms = self.predict_time_ms.max(other.predict_time_ms);
    }

    /// What counts against a daily quota: generations, cached or not.
    pub fn quota_used(&self) -> u64 {
        self.generations.saturating_add(self.cache_hits)
    }
}

/// The KV key of `subject`'s usage on `day` (`YYYY-MM-DD`).
pub fn usage_kv_key(subject: &str, day: &str) -> String {
    format!("{KV_PREFIX}{subject}:{day}")
}

/// The prefix of every usage KV key of `subject`, for listing its days.
pub fn usage_kv_prefix(subject: &str) -> String {
    format!("{KV_PREFIX}{subject}:")
}

/// The subject of a caller's own Replicate token: `tok_` and the first 16
/// hex characters of its SHA-256. The token itself is never stored.
pub fn token_subject(token: &str) -> String {
    let hash = sha256_hex(token.as_bytes());
    format!("{TOKEN_SUBJECT_PREFIX}{}", &hash[..TOKEN_SUBJECT_HEX])
}

/// The UTC day of a Unix time in milliseconds, `YYYY-MM-DD`.
pub fn day_of(ms: u64) -> String {
    let (year, month, day) = civil_from_days(ms / MS_PER_DAY);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Whole seconds from `now_ms` to the next UTC midnight, rounded up:
/// 1 to 86400.
pub fn seconds_until_utc_midnight(now_ms: u64) -> u32 {
    let ms_left = MS_PER_DAY - now_ms % MS_PER_DAY;
    // At most 86400, which fits.
    u32::try_from(ms_left.div_ceil(1000)).unwrap_or(SECS_PER_DAY)
}

/// Whether one more generation fits in a daily quota of `per_day` when
/// `used` were counted today: `Ok(n)` with the `n >= 1` left before this
/// one (`n - 1` after it), or `Err(seconds)` until the quota resets at the
/// next UTC midnight.
pub fn quota_remaining(per_day: u32, used: u64, now_ms: u64) -> Result<u32, u32> {
    match u64::from(per_day).checked_sub(used) {
        Some(left) if left > 0 => Ok(u32::try_from(left).unwrap_or(per_day)),
        _ => Err(seconds_until_utc_midnight(now_ms)),
    }
}

/// The headers of a rate-limited response, after the IETF draft
/// (draft-ietf-httpapi-ratelimit-headers, the separate-field form):
/// `RateLimit-Limit`, `RateLimit-Remaining` (clamped to the limit) and
/// `RateLimit-Reset` (seconds until the window resets, at least 1); when
/// `refused`, also `Retry-After` with the same seconds.
pub fn rate_limit_headers(limit: u32, remaining: u32, reset_secs: u32, refused: bool) -> Vec<(&'static str, String)> {
    let reset = reset_secs.max(1).to_string();
    let mut headers = vec![
        ("RateLimit-Limit", limit.to_string()),
        ("RateLimit-Remaining", remaining.min(limit).to_string()),
        ("RateLimit-Reset", reset.clone()),
    ];
    if refused {
        headers.push(("Retry-After", reset));
    }
    headers
}

/// RFC 3339 of a Unix time in milliseconds, `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn rfc3339_of(ms: u64) -> String {
    let in_day = ms % MS_PER_DAY;
    let (h, m, s, milli) = (in_day / 3_600_000, in_day / 60_000 % 60, in_day / 1000 % 60, in_day % 1000);
    format!("{}T{h:02}:{m:02}:{s:02}.{milli:03}Z", day_of(ms))
}

/// Replicate's `metrics.predict_time` (seconds) of a prediction's other
/// fields, in whole milliseconds; 0 when absent or unusable.
pub fn predict_time_ms(rest: &serde_json::Map<String, serde_json::Value>) -> u64 {
    let seconds = rest.get("metrics").and_then(|m| m.get("predict_time")).and_then(serde_json::Value::as_f64);
    seconds.filter(|s| s.is_finite() && *s > 0.0).map_or(0, |s| (s * 1000.0).round().min(u64::MAX as f64) as u64)
}

/// The KV key of a key's request counter in the minute of `now_ms`, and
/// the seconds left in that minute (1 to 60).
pub fn minute_counter(subject: &str, now_ms: u64) -> (String, u32) {
    let minute = now_ms / 60_000;
    let left = (60_000 - now_ms % 60_000).div_ceil(1000);
    (format!("rate:{subject}:{minute}"), u32::try_from(left).unwrap_or(60))
}

/// Whether `day` reads `YYYY-MM-DD`.
pub fn is_day(day: &str) -> bool {
    let b = day.as_bytes();
    b.len() == 10 && b.iter().enumerate().all(|(i, c)| if i == 4 || i == 7 { *c == b'-' } else { c.is_ascii_digit() })
}

/// (year, month, day) of a count of days since 1970-01-01, after Howard
/// Hinnant's `civil_from_days`, for days on or after the epoch.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MS: u64 = 86_400_000;

    #[test]
    fn days_of_known_instants() {
        assert_eq!(day_of(0), "1970-01-01");
        assert_eq!(day_of(DAY_MS - 1), "1970-01-01");
        assert_eq!(day_of(DAY_MS), "1970-01-02");
        assert_eq!(day_of(951_782_400_000), "2000-02-29");
        assert_eq!(day_of(951_868_800_000), "2000-03-01");
        assert_eq!(day_of(1_700_000_000_000), "2023-11-14");
        assert_eq!(day_of(1_709_164_800_000), "2024-02-29");
        assert_eq!(day_of(1_735_689_599_999), "2024-12-31");
        assert_eq!(day_of(1_735_689_600_000), "2025-01-01");
        assert_eq!(day_of(4_107_542_400_000), "2100-03-01");
        assert_eq!(day_of(4_107_456_000_000), "2100-02-28");
        assert_eq!(day_of(253_402_300_799_999), "9999-12-31");
        assert_eq!(day_of(253_402_300_800_000), "10000-01-01");
        assert!(!day_of(u64::MAX).is_empty());
    }

    #[test]
    fn days_agree_with_a_day_by_day_walk() {
        let month_len = |y: u64, m: u64| match m {
            2 if (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let (mut y, mut m, mut d) = (1970, 1, 1);
        for days in 0..(200 * 366) {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            d += 1;
            if d > month_len(y, m) {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn seconds_to_midnight() {
        assert_eq!(seconds_until_utc_midnight(0), 86_400);
        assert_eq!(seconds_until_utc_midnight(1), 86_400);
        assert_eq!(seconds_until_utc_midnight(999), 86_400);
        assert_eq!(seconds_until_utc_midnight(1_000), 86_399);
        assert_eq!(seconds_until_utc_midnight(DAY_MS - 1), 1);
        assert_eq!(seconds_until_utc_midnight(DAY_MS - 1_000), 1);
        assert_eq!(seconds_until_utc_midnight(DAY_MS - 1_001), 2);
        // 2023-11-14T22:13:20Z.
        assert_eq!(seconds_until_utc_midnight(1_700_000_000_000), 6_400);
        assert_eq!(seconds_until_utc_midnight(u64::MAX), seconds_until_utc_midnight(u64::MAX % DAY_MS));
    }

    #[test]
    fn quotas() {
        let now = 1_700_000_000_000;
        assert_eq!(quota_remaining(10, 0, now), Ok(10));
        assert_eq!(quota_remaining(10, 9, now), Ok(1));
        assert_eq!(quota_remaining(10, 10, now), Err(6_400));
        assert_eq!(quota_remaining(10, 11, now), Err(6_400));
        assert_eq!(quota_remaining(10, u64::MAX, now), Err(6_400));
        assert_eq!(quota_remaining(0, 0, now), Err(6_400));
        assert_eq!(quota_remaining(u32::MAX, 0, now), Ok(u32::MAX));
        assert_eq!(quota_remaining(1, 0, DAY_MS - 1), Ok(1));
        assert_eq!(quota_remaining(1, 1, DAY_MS - 1), Err(1));
    }

    #[test]
    fn rate_limit_header_values() {
        assert_eq!(
            rate_limit_headers(100, 42, 30, false),
            vec![
                ("RateLimit-Limit", "100".to_owned()),
                ("RateLimit-Remaining", "42".to_owned()),
                ("RateLimit-Reset", "30".to_owned()),
            ]
        );
        let refused = rate_limit_headers(100, 0, 6_400, true);
        assert_eq!(refused.len(), 4);
        assert_eq!(refused[1], ("RateLimit-Remaining", "0".to_owned()));
        assert_eq!(refused[3], ("Retry-After", "6400".to_owned()));
        // Remaining never exceeds the limit; a reset is never 0 seconds.
        let odd = rate_limit_headers(5, 9, 0, true);
        assert_eq!(odd[1].1, "5");
        assert_eq!(odd[2].1, "1");
        assert_eq!(odd[3].1, "1");
    }

    #[test]
    fn usage_adds_saturating_and_merges_by_maximum() {
        let mut total = Usage::default();
        total.add(&Usage::generation(2, 1_000, 560));
        total.add(&Usage::generation(1, 500, 440));
        total.add(&Usage::cache_hit());
        assert_eq!(
            total,
            Usage { generations: 2, cache_hits: 1, images_stored: 3, bytes_stored: 1_500, predict_time_ms: 1_000 }
        );
        assert_eq!(total.quota_used(), 3);
        total.add(&Usage { bytes_stored: u64::MAX, ..Usage::default() });
        assert_eq!(total.bytes_stored, u64::MAX);

        let mut memory = Usage { generations: 5, cache_hits: 1, ..Usage::default() };
        let stored = Usage { generations: 4, cache_hits: 2, images_stored: 7, ..Usage::default() };
        memory.merge(&stored);
        assert_eq!(memory, Usage { generations: 5, cache_hits: 2, images_stored: 7, ..Usage::default() });
        let again = memory;
        memory.merge(&again);
        assert_eq!(memory, again, "merging a reading with itself changes nothing");
    }

    #[test]
    fn usage_json_round_trips_and_fills_missing_fields() {
        let usage = Usage::generation(1, 2, 3);
        let text = serde_json::to_string(&usage).unwrap();
        assert_eq!(text, r#"{"generations":1,"cache_hits":0,"images_stored":1,"bytes_stored":2,"predict_time_ms":3}"#);
        assert_eq!(serde_json::from_str::<Usage>(&text).unwrap(), usage);
        assert_eq!(serde_json::from_str::<Usage>(r#"{"generations":7}"#).unwrap().generations, 7);
        assert_eq!(serde_json::from_str::<Usage>("{}").unwrap(), Usage::default());
    }

    #[test]
    fn kv_keys() {
        assert_eq!(usage_kv_key("abcdefgh", "2025-01-15"), "usage:abcdefgh:2025-01-15");
        assert_eq!(usage_kv_key(SERVICE_SUBJECT, &day_of(0)), "usage:service:1970-01-01");
        assert_eq!(usage_kv_prefix("abcdefgh"), "usage:abcdefgh:");
        assert!(usage_kv_key("abcdefgh", "2025-01-15").starts_with(&usage_kv_prefix("abcdefgh")));
    }

    #[test]
    fn token_subjects_hash_the_token() {
        let token = "r8_abcdefghijklmnopqrstuvwxyz0123456789A";
        let subject = token_subject(token);
        assert_eq!(subject.len(), 4 + 16);
        assert!(subject.starts_with("tok_"));
        assert_eq!(subject[4..], sha256_hex(token.as_bytes())[..16]);
        assert!(!subject.contains("r8_") && !subject.contains("abcdefgh"));
        assert_eq!(token_subject(token), subject);
        assert_ne!(token_subject("r8_other"), subject);
        // Known answer: SHA-256("abc") starts ba7816bf8f01cfea.
        assert_eq!(token_subject("abc"), "tok_ba7816bf8f01cfea");
    }

    #[test]
    fn helpers() {
        assert_eq!(rfc3339_of(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(crate::image_id::rfc3339_to_ms(&rfc3339_of(1_700_000_000_123)), Some(1_700_000_000_123));
        let rest = serde_json::json!({"metrics": {"predict_time": 0.5604}});
        assert_eq!(predict_time_ms(rest.as_object().unwrap()), 560);
        assert_eq!(predict_time_ms(&serde_json::Map::new()), 0);
        assert_eq!(minute_counter("k", 120_000), ("rate:k:2".to_owned(), 60));
        assert_eq!(minute_counter("k", 179_001), ("rate:k:2".to_owned(), 1));
        assert!(is_day("2025-01-15"));
        assert!(!is_day("2025-1-15") && !is_day("2025/01/15") && !is_day(""));
    }
}
