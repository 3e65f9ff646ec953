//! How long to wait between tries: polling a prediction that is still
//! running, and retrying a request Replicate refused for now (429, 5xx).
//! Attempts count from 0 (the wait before the first re-poll or retry).

/// Delays for polling a running prediction, in order; the last one repeats.
const POLL_DELAYS_MS: [u64; 5] = [250, 500, 1000, 1500, 2000];

/// The first retry delay; each later one doubles it, up to `RETRY_CAP_MS`.
const RETRY_BASE_MS: u64 = 500;
/// The longest retry delay.
const RETRY_CAP_MS: u64 = 8000;
/// Enough doublings to reach the cap; more would only overflow.
const RETRY_MAX_DOUBLINGS: u32 = 16;

/// Milliseconds to wait before poll number `attempt` (0-based) of a
/// prediction: 250, 500, 1000, 1500, 2000, then 2000 for every later poll.
pub fn poll_delay_ms(attempt: u32) -> u64 {
    let index = usize::try_from(attempt).unwrap_or(usize::MAX);
    POLL_DELAYS_MS.get(index).or(POLL_DELAYS_MS.last()).copied().unwrap_or_default()
}

/// Milliseconds to wait before retry number `attempt` (0-based) of a request
/// answered 429 or 5xx without a usable `Retry-After`: 500, 1000, 2000, 4000,
/// then 8000 for every later retry.
pub fn retry_delay_ms(attempt: u32) -> u64 {
    let doublings = attempt.min(RETRY_MAX_DOUBLINGS);
    RETRY_BASE_MS.saturating_mul(1 << doublings).min(RETRY_CAP_MS)
}

/// The seconds of a `Retry-After` header given as delta-seconds (`"30"`).
/// An HTTP-date, an empty value or anything else that is not only digits is
/// `None` (dates would need the current time, which the core never reads).
/// A number too large for `u64` saturates to `u64::MAX`; callers cap it.
pub fn parse_retry_after(value: &str) -> Option<u64> {
    crate::text::decimal(value.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_delays_grow_then_stay_at_the_cap() {
        let delays: Vec<u64> = (0..8).map(poll_delay_ms).collect();
        assert_eq!(delays, vec![250, 500, 1000, 1500, 2000, 2000, 2000, 2000]);
        assert_eq!(poll_delay_ms(u32::MAX), 2000);
    }

    #[test]
    fn retry_delays_double_then_stay_at_the_cap() {
        let delays: Vec<u64> = (0..7).map(retry_delay_ms).collect();
        assert_eq!(delays, vec![500, 1000, 2000, 4000, 8000, 8000, 8000]);
        assert_eq!(retry_delay_ms(63), 8000);
        assert_eq!(retry_delay_ms(64), 8000);
        assert_eq!(retry_delay_ms(u32::MAX), 8000);
    }

    #[test]
    fn retry_after_takes_delta_seconds() {
        assert_eq!(parse_retry_after("30"), Some(30));
        assert_eq!(parse_retry_after(" 7 "), Some(7));
        assert_eq!(parse_retry_after("0"), Some(0));
        assert_eq!(parse_retry_after("99999999999999999999999"), Some(u64::MAX));
    }

    #[test]
    fn retry_after_rejects_dates_and_garbage() {
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after(""), None);
        assert_eq!(parse_retry_after("   "), None);
        assert_eq!(parse_retry_after("-5"), None);
        assert_eq!(parse_retry_after("+5"), None);
        assert_eq!(parse_retry_after("1.5"), None);
        assert_eq!(parse_retry_after("10s"), None);
        assert_eq!(parse_retry_after("٣"), None);
    }
}
