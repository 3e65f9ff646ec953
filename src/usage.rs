//! Usage counters per subject and UTC day, daily quotas, and the rate-limit
//! headers that report them.
//!
//! A subject is who is counted: a service API key's id, [`token_subject`] of a
//! caller's own Replicate token, or [`SERVICE_SUBJECT`] for callers using the
//! service's `AUTH_TOKEN`. Counters live in KV as JSON under
//! `usage:<subject>:<YYYY-MM-DD>`.

use std::collections::HashMap;

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

/// The least time between two writes of one usage key from one isolate:
/// KV takes about one write per second to a key (more are refused).
pub const WRITE_SPACING_MS: u64 = 1_000;
/// How long one writer of a key keeps going: past it, it stops after its
/// turn and the request waiting to take over (see [`Ledger::wait_to_write`])
/// writes what is left (the runtime gives a request's work after its answer
/// 30 s).
pub const WRITER_BUDGET_MS: u64 = 20_000;
/// A write under way for longer than this was cut off with its request's
/// work (the runtime stops it without unwinding it): another may start.
pub const WRITER_STALE_MS: u64 = 30_000;

/// One isolate's usage bookkeeping, by usage KV key: the running totals as
/// last written (`Usage::merge`d with what KV said), what was counted and
/// not written yet, which keys have a write under way (since when) and which
/// request waits to take over from it, and when each was last written.
/// Counting is immediate and exact here; writing reads KV, joins and writes
/// the sum, one write per key at a time, each taking everything counted
/// until then, at most one per [`WRITE_SPACING_MS`] per key.
#[derive(Debug, Default)]
pub struct Ledger {
    totals: HashMap<String, Usage>,
    unwritten: HashMap<String, Usage>,
    writing: HashMap<String, u64>,
    written_at: HashMap<String, u64>,
    successors: HashMap<String, u64>,
    tokens: u64,
}

/// What a request waiting to write a key (see [`Ledger::wait_to_write`])
/// does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// The write under way goes on: wait.
    Wait,
    /// A later request waits in its place, for what both counted: stop.
    Displaced,
    /// No write under way (or only a cut-off one): write what is left.
    TakeOver,
}

impl Ledger {
    /// Counts `delta` under `key`: every `view` sees it from now on.
    pub fn count(&mut self, key: &str, delta: &Usage) {
        self.unwritten.entry(key.to_owned()).or_default().add(delta);
    }

    /// The usage under `key` as far as this isolate knows, given what KV
    /// holds (`stored`): the larger of that and the running total, plus
    /// what is counted and not written yet.
    pub fn view(&self, key: &str, stored: Option<&Usage>) -> Usage {
        let mut usage = stored.copied().unwrap_or_default();
        if let Some(total) = self.totals.get(key) {
            usage.merge(total);
        }
        if let Some(counted) = self.unwritten.get(key) {
            usage.add(counted);
        }
        usage
    }

    /// Whether something counted under `key` waits to be written.
    pub fn has_unwritten(&self, key: &str) -> bool {
        self.unwritten.contains_key(key)
    }

    /// Marks a write of `key` as under way from `now_ms`; false when one
    /// already is (it will take what is counted meanwhile), unless that one
    /// started [`WRITER_STALE_MS`] or more ago.
    pub fn start_writing(&mut self, key: &str, now_ms: u64) -> bool {
        match self.writing.get(key) {
            Some(&since) if now_ms.saturating_sub(since) < WRITER_STALE_MS => false,
            _ => {
                self.writing.insert(key.to_owned(), now_ms);
                true
            }
        }
    }

    /// Ends the write of `key` that started at `since` (not one that took
    /// over from it).
    pub fn stop_writing(&mut self, key: &str, since: u64) {
        if self.writing.get(key) == Some(&since) {
            self.writing.remove(key);
        }
    }

    /// Registers a request that found a write of `key` under way: it waits
    /// to take over if that write ends with something left to write (its
    /// request's time may run out first). One request waits per key, the
    /// latest: answers its token and the token it displaces.
    pub fn wait_to_write(&mut self, key: &str) -> (u64, Option<u64>) {
        self.tokens += 1;
        (self.tokens, self.successors.insert(key.to_owned(), self.tokens))
    }

    /// What the request holding `token` and waiting to write `key` does at `now_ms`.
    pub fn waiting(&self, key: &str, token: u64, now_ms: u64) -> Waiting {
        if self.successors.get(key) != Some(&token) {
            return Waiting::Displaced;
        }
        match self.writing.get(key) {
            Some(&since) if now_ms.saturating_sub(since) < WRITER_STALE_MS => Waiting::Wait,
            _ => Waiting::TakeOver,
        }
    }

    /// The token of the request waiting to write `key`, if one is.
    pub fn successor(&self, key: &str) -> Option<u64> {
        self.successors.get(key).copied()
    }

    /// The request holding `token` no longer waits to write `key`.
    pub fn stop_waiting(&mut self, key: &str, token: u64) {
        if self.successors.get(key) == Some(&token) {
            self.successors.remove(key);
        }
    }

    /// The earliest time the next write of `key` may be sent: [`WRITE_SPACING_MS`]
    /// after the last one (0 when there was none).
    pub fn next_write_at(&self, key: &str) -> u64 {
        self.written_at.get(key).map_or(0, |at| at.saturating_add(WRITE_SPACING_MS))
    }

    /// Takes what was counted under `key` (of `day`), joined with what KV
    /// holds (`stored`), for a write sent at `now_ms`: the new total to write,
    /// and whether it is the subject's first usage that day (neither KV nor
    /// this isolate had any). `None` when nothing was counted. Totals of
    /// other days are dropped.
    pub fn settle(&mut self, key: &str, day: &str, stored: Option<&Usage>, now_ms: u64) -> Option<(Usage, bool)> {
        let delta = self.unwritten.remove(key)?;
        self.totals.retain(|k, _| k.ends_with(day));
        self.written_at.retain(|k, _| k.ends_with(day));
        self.written_at.insert(key.to_owned(), now_ms);
        let first = !self.totals.contains_key(key) && stored.is_none();
        let total = self.totals.entry(key.to_owned()).or_default();
        if let Some(stored) = stored {
            total.merge(stored);
        }
        total.add(&delta);
        Some((*total, first))
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

    fn generations(n: u64) -> Usage {
        Usage { generations: n, ..Usage::default() }
    }

    #[test]
    fn ledger_counts_at_once_and_writes_later() {
        let mut ledger = Ledger::default();
        let key = usage_kv_key("k", "2026-11-22");
        ledger.count(&key, &generations(1));
        // Seen before any write, on top of what KV holds.
        assert_eq!(ledger.view(&key, None).generations, 1);
        assert_eq!(ledger.view(&key, Some(&generations(4))).generations, 5);
        assert!(ledger.has_unwritten(&key));
        let (total, first) = ledger.settle(&key, "2026-11-22", None, 0).unwrap();
        assert_eq!((total.generations, first), (1, true));
        assert!(!ledger.has_unwritten(&key));
        // Written: the total stands in for KV until KV catches up.
        assert_eq!(ledger.view(&key, None).generations, 1);
        assert_eq!(ledger.settle(&key, "2026-11-22", None, 0), None, "nothing counted, nothing to write");
    }

    #[test]
    fn ledger_joins_what_kv_holds_by_maximum_and_adds_the_counted() {
        let mut ledger = Ledger::default();
        let key = usage_kv_key("k", "2026-11-22");
        ledger.count(&key, &generations(1));
        ledger.settle(&key, "2026-11-22", None, 0).unwrap();
        // Another isolate wrote 7 meanwhile; two more counted here.
        ledger.count(&key, &generations(1));
        ledger.count(&key, &generations(1));
        let (total, first) = ledger.settle(&key, "2026-11-22", Some(&generations(7)), 0).unwrap();
        assert_eq!((total.generations, first), (9, false));
        // A stale read of KV (older than this isolate's write) takes nothing back.
        ledger.count(&key, &generations(1));
        let (total, _) = ledger.settle(&key, "2026-11-22", Some(&generations(3)), 0).unwrap();
        assert_eq!(total.generations, 10);
    }

    #[test]
    fn ledger_one_write_per_key_at_a_time_takes_what_is_counted_meanwhile() {
        let mut ledger = Ledger::default();
        let key = usage_kv_key("k", "2026-11-22");
        ledger.count(&key, &generations(1));
        assert!(ledger.start_writing(&key, 0));
        // Counted while the write reads KV: a second write is not started...
        ledger.count(&key, &generations(1));
        assert!(!ledger.start_writing(&key, 5));
        // ...the one under way takes both.
        let (total, _) = ledger.settle(&key, "2026-11-22", None, 0).unwrap();
        assert_eq!(total.generations, 2);
        // Counted after it took them: it goes around again before it stops.
        ledger.count(&key, &Usage::cache_hit());
        assert!(ledger.has_unwritten(&key));
        let (total, first) = ledger.settle(&key, "2026-11-22", Some(&generations(2)), 0).unwrap();
        assert_eq!((total.generations, total.cache_hits, first), (2, 1, false));
        ledger.stop_writing(&key, 0);
        assert!(ledger.start_writing(&key, 10));
        // Other keys are written independently.
        assert!(ledger.start_writing(&usage_kv_key("other", "2026-11-22"), 10));
    }

    #[test]
    fn ledger_spaces_writes_of_a_key() {
        let mut ledger = Ledger::default();
        let key = usage_kv_key("k", "2026-11-22");
        let other = usage_kv_key("other", "2026-11-22");
        assert_eq!(ledger.next_write_at(&key), 0, "a key never written may be written at once");
        ledger.count(&key, &generations(1));
        ledger.settle(&key, "2026-11-22", None, 5_000).unwrap();
        assert_eq!(ledger.next_write_at(&key), 5_000 + WRITE_SPACING_MS);
        assert_eq!(ledger.next_write_at(&other), 0, "each key has its own spacing");
        // The next write's time is when it is sent, not when it was counted.
        ledger.count(&key, &generations(1));
        ledger.settle(&key, "2026-11-22", None, 7_500).unwrap();
        assert_eq!(ledger.next_write_at(&key), 7_500 + WRITE_SPACING_MS);
        // Nothing counted: no write, the spacing stays.
        assert_eq!(ledger.settle(&key, "2026-11-22", None, 9_000), None);
        assert_eq!(ledger.next_write_at(&key), 7_500 + WRITE_SPACING_MS);
        // A new day's write forgets the old day's keys.
        let tomorrow = usage_kv_key("k", "2026-11-23");
        ledger.count(&tomorrow, &generations(1));
        ledger.settle(&tomorrow, "2026-11-23", None, 90_000).unwrap();
        assert_eq!(ledger.next_write_at(&key), 0);
        ledger.count(&tomorrow, &generations(1));
        ledger.settle(&tomorrow, "2026-11-23", None, u64::MAX).unwrap();
        assert_eq!(ledger.next_write_at(&tomorrow), u64::MAX, "saturates");
    }

    #[test]
    fn ledger_a_cut_off_write_is_taken_over() {
        let mut ledger = Ledger::default();
        let key = usage_kv_key("k", "2026-11-22");
        assert!(ledger.start_writing(&key, 1_000));
        assert!(!ledger.start_writing(&key, 1_000 + WRITER_STALE_MS - 1));
        // Its request's work was stopped without it ending: another starts.
        assert!(ledger.start_writing(&key, 1_000 + WRITER_STALE_MS));
        // The first one, if it was only slow, ends without ending the second.
        ledger.stop_writing(&key, 1_000);
        assert!(!ledger.start_writing(&key, 1_000 + WRITER_STALE_MS + 1));
        ledger.stop_writing(&key, 1_000 + WRITER_STALE_MS);
        assert!(ledger.start_writing(&key, 1_000 + WRITER_STALE_MS + 2));
    }

    #[test]
    fn ledger_one_request_waits_to_take_over_the_latest() {
        let mut ledger = Ledger::default();
        let key = usage_kv_key("k", "2026-11-22");
        let other = usage_kv_key("other", "2026-11-22");
        assert!(ledger.start_writing(&key, 0));
        let (first, displaced) = ledger.wait_to_write(&key);
        assert_eq!(displaced, None);
        assert_eq!(ledger.waiting(&key, first, 10), Waiting::Wait);
        // A later request waits in its place; the first one stops.
        let (second, displaced) = ledger.wait_to_write(&key);
        assert_eq!(displaced, Some(first));
        assert_ne!(first, second);
        assert_eq!(ledger.waiting(&key, first, 10), Waiting::Displaced);
        assert_eq!(ledger.successor(&key), Some(second));
        // Each key has its own.
        let (third, displaced) = ledger.wait_to_write(&other);
        assert_eq!(displaced, None);
        assert_eq!(ledger.successor(&other), Some(third));
        // The write ends: the one waiting takes over.
        ledger.stop_writing(&key, 0);
        assert_eq!(ledger.waiting(&key, second, 20), Waiting::TakeOver);
        // A displaced request stopping does not end the wait of the latest.
        ledger.stop_waiting(&key, first);
        assert_eq!(ledger.successor(&key), Some(second));
        ledger.stop_waiting(&key, second);
        assert_eq!(ledger.successor(&key), None);
        assert_eq!(ledger.waiting(&key, second, 20), Waiting::Displaced, "no longer registered");
    }

    #[test]
    fn ledger_a_request_waiting_on_a_cut_off_write_takes_over() {
        let mut ledger = Ledger::default();
        let key = usage_kv_key("k", "2026-11-22");
        assert!(ledger.start_writing(&key, 1_000));
        let (token, _) = ledger.wait_to_write(&key);
        assert_eq!(ledger.waiting(&key, token, 1_000 + WRITER_STALE_MS - 1), Waiting::Wait);
        assert_eq!(ledger.waiting(&key, token, 1_000 + WRITER_STALE_MS), Waiting::TakeOver);
        assert!(ledger.start_writing(&key, 1_000 + WRITER_STALE_MS));
    }

    #[test]
    fn ledger_drops_totals_of_other_days() {
        let mut ledger = Ledger::default();
        let yesterday = usage_kv_key("k", "2026-11-21");
        let today = usage_kv_key("k", "2026-11-22");
        ledger.count(&yesterday, &generations(3));
        ledger.settle(&yesterday, "2026-11-21", None, 0).unwrap();
        ledger.count(&today, &generations(1));
        let (total, first) = ledger.settle(&today, "2026-11-22", None, 0).unwrap();
        assert_eq!((total.generations, first), (1, true));
        assert_eq!(ledger.view(&yesterday, None).generations, 0, "yesterday's total is gone");
    }

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
