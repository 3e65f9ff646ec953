//! Webhook signatures as Replicate sends them (the Standard Webhooks scheme).
//!
//! A delivery carries three headers: `webhook-id`, `webhook-timestamp` (Unix
//! seconds) and `webhook-signature`, a space-separated list of `v1,<base64>`
//! entries. Each entry is the base64 of HMAC-SHA256 over
//! `"{id}.{timestamp}.{raw body}"`, keyed with the base64-decoded part of the
//! secret after `whsec_`. A delivery is genuine when any `v1` entry matches
//! (compared in constant time) and its timestamp is within
//! [`TOLERANCE_SECS`] of now, either way.
//!
//! No error, message or `Debug` output built here contains the secret.

use crate::error::ApiError;
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The prefix of every secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// The header carrying the delivery id.
pub const ID_HEADER: &str = "webhook-id";
/// The header carrying the Unix time of the delivery, in seconds.
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// The header carrying the signatures.
pub const SIGNATURE_HEADER: &str = "webhook-signature";
/// How far a delivery's timestamp may be from now, either way: 5 minutes.
pub const TOLERANCE_SECS: u64 = 5 * 60;
/// The fewest key bytes a secret may decode to.
pub const MIN_KEY_BYTES: usize = 16;
/// How many entries of a signature header are looked at; the rest are ignored.
pub const MAX_SIGNATURES: usize = 16;
/// The most digits a timestamp may have (`u64::MAX` has 20).
const MAX_TIMESTAMP_DIGITS: usize = 20;

/// Standard base64 that decodes with or without `=` padding.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

type HmacSha256 = Hmac<Sha256>;

/// Why a delivery was refused, or the secret unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookError {
    /// A header is absent or blank; carries the header's name.
    Missing(&'static str),
    /// The timestamp is not a number of seconds within [`TOLERANCE_SECS`] of now.
    Stale,
    /// No signature entry matches the delivery.
    Forged,
    /// The configured secret is not base64 (after an optional `whsec_`) of at
    /// least [`MIN_KEY_BYTES`] bytes.
    BadSecret,
}

impl WebhookError {
    /// The status to answer with: 500 for our own bad secret, else 401.
    pub fn status(&self) -> u16 {
        match self {
            WebhookError::BadSecret => 500,
            _ => 401,
        }
    }
}

impl std::fmt::Display for WebhookError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WebhookError::Missing(header) => write!(f, "missing {header} header"),
            WebhookError::Stale => write!(f, "{TIMESTAMP_HEADER} is not within {TOLERANCE_SECS} seconds of now"),
            WebhookError::Forged => f.write_str("no valid signature"),
            WebhookError::BadSecret => f.write_str("the webhook secret is not a valid whsec_ secret"),
        }
    }
}

impl std::error::Error for WebhookError {}

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::BadSecret => ApiError::new(500, "Server misconfiguration").with_details(e.to_string()),
            _ => ApiError::new(401, "Invalid webhook signature").with_details(e.to_string()),
        }
    }
}

/// The three signature headers of a delivery, each as received.
#[derive(Debug, Clone, Copy, Default)]
pub struct WebhookHeaders<'a> {
    /// `webhook-id`.
    pub id: Option<&'a str>,
    /// `webhook-timestamp`.
    pub timestamp: Option<&'a str>,
    /// `webhook-signature`.
    pub signature: Option<&'a str>,
}

/// The `webhook-signature` value for a delivery: `v1,<base64>`.
pub fn sign(secret: &str, msg_id: &str, timestamp_secs: u64, body: &[u8]) -> Result<String, WebhookError> {
    let digest = mac(&key(secret)?, msg_id, timestamp_secs, body)?.finalize().into_bytes();
    Ok(format!("v1,{}", STANDARD.encode(digest)))
}

/// Checks a delivery: every header present, the timestamp within
/// [`TOLERANCE_SECS`] of `now_secs`, and one `v1` entry of the signature
/// header matching. Entries of other versions are ignored.
pub fn verify(secret: &str, headers: WebhookHeaders, body: &[u8], now_secs: u64) -> Result<(), WebhookError> {
    let id = present(headers.id, ID_HEADER)?;
    let timestamp = present(headers.timestamp, TIMESTAMP_HEADER)?;
    let signature = present(headers.signature, SIGNATURE_HEADER)?;
    let key = key(secret)?;
    let timestamp = parse_timestamp(timestamp).ok_or(WebhookError::Stale)?;
    if timestamp.abs_diff(now_secs) > TOLERANCE_SECS {
        return Err(WebhookError::Stale);
    }
    let expected = mac(&key, id, timestamp, body)?.finalize().into_bytes();
    let matches = signature
        .split_ascii_whitespace()
        .take(MAX_SIGNATURES)
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|encoded| LENIENT.decode(encoded).ok())
        .any(|candidate| bool::from(expected.as_slice().ct_eq(&candidate)));
    if matches {
        Ok(())
    } else {
        Err(WebhookError::Forged)
    }
}

/// A new secret, `whsec_` and the base64 of `random` (24 or 32 bytes from a
/// secure source, such as the edge's `getrandom`).
pub fn generate_secret<const N: usize>(random: [u8; N]) -> String {
    const { assert!(N == 24 || N == 32, "a webhook secret is 24 or 32 random bytes") };
    format!("{SECRET_PREFIX}{}", STANDARD.encode(random))
}

/// The webhook secret of one caller (`subject`, a usage subject), derived
/// from the service's signing key: `whsec_` and the base64 of
/// HMAC-SHA256(key, subject). Each caller verifies deliveries with its own,
/// so no caller can sign a delivery another would accept; nothing is stored,
/// and changing the key changes every secret.
pub fn caller_secret(signing_key: &str, subject: &str) -> Result<String, WebhookError> {
    let key = signing_key.trim();
    if key.len() < MIN_KEY_BYTES {
        return Err(WebhookError::BadSecret);
    }
    let mut mac = HmacSha256::new_from_slice(key.as_bytes()).map_err(|_| WebhookError::BadSecret)?;
    mac.update(b"webhook secret of ");
    mac.update(subject.as_bytes());
    Ok(format!("{SECRET_PREFIX}{}", STANDARD.encode(mac.finalize().into_bytes())))
}

/// The HMAC key of a secret: the base64 after an optional `whsec_`.
fn key(secret: &str) -> Result<Vec<u8>, WebhookError> {
    let secret = secret.trim();
    let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    LENIENT.decode(encoded).ok().filter(|key| key.len() >= MIN_KEY_BYTES).ok_or(WebhookError::BadSecret)
}

fn mac(key: &[u8], msg_id: &str, timestamp_secs: u64, body: &[u8]) -> Result<HmacSha256, WebhookError> {
    let mut mac = HmacSha256::new_from_slice(key).map_err(|_| WebhookError::BadSecret)?;
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp_secs.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(mac)
}

fn present<'a>(value: Option<&'a str>, header: &'static str) -> Result<&'a str, WebhookError> {
    value.map(str::trim).filter(|v| !v.is_empty()).ok_or(WebhookError::Missing(header))
}

/// Unix seconds: 1 to 20 ASCII digits, saturating at `u64::MAX`. Signs,
/// spaces inside, fractions and anything else are `None`.
fn parse_timestamp(value: &str) -> Option<u64> {
    let digits_only =
        !value.is_empty() && value.len() <= MAX_TIMESTAMP_DIGITS && value.bytes().all(|b| b.is_ascii_digit());
    digits_only.then(|| value.bytes().fold(0u64, |n, d| n.saturating_mul(10).saturating_add(u64::from(d - b'0'))))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks reference vector, checked with Python's hmac.
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TS: u64 = 1614265330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    /// A Replicate-shaped delivery, also computed with Python.
    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const ID: &str = "msg_2pyRoXwoyUPT2QMlmgNrhAQ2hX4";
    const TS: u64 = 1_700_000_000;
    const BODY: &[u8] = br#"{"id":"gm3qorzdhgbfurvjtvhg6dckhu","status":"succeeded"}"#;
    const SIG: &str = "v1,oNZujSts0eJZ7IBMX+JMHkywZxDsDxb2QKWZAG81nPI=";

    fn headers<'a>(id: &'a str, ts: &'a str, sig: &'a str) -> WebhookHeaders<'a> {
        WebhookHeaders { id: Some(id), timestamp: Some(ts), signature: Some(sig) }
    }

    fn check(sig: &str, body: &[u8], now: u64) -> Result<(), WebhookError> {
        verify(SECRET, headers(ID, &TS.to_string(), sig), body, now)
    }

    #[test]
    fn caller_secrets_differ_per_caller_and_sign_like_any_secret() {
        let a = caller_secret("a-signing-key-of-enough-length", "key_a").unwrap();
        let b = caller_secret("a-signing-key-of-enough-length", "key_b").unwrap();
        assert!(a.starts_with(SECRET_PREFIX));
        assert_ne!(a, b);
        assert_eq!(a, caller_secret(" a-signing-key-of-enough-length ", "key_a").unwrap());
        assert_ne!(a, caller_secret("another-signing-key-of-length", "key_a").unwrap());
        assert!(!a.contains("a-signing-key"));
        let sig = sign(&a, ID, TS, BODY).unwrap();
        assert_eq!(verify(&a, headers(ID, &TS.to_string(), &sig), BODY, TS), Ok(()));
        assert_eq!(verify(&b, headers(ID, &TS.to_string(), &sig), BODY, TS), Err(WebhookError::Forged));
        assert_eq!(caller_secret("short", "key_a"), Err(WebhookError::BadSecret));
    }

    #[test]
    fn sign_matches_known_answers() {
        assert_eq!(sign(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY).unwrap(), SPEC_SIG);
        assert_eq!(sign(SECRET, ID, TS, BODY).unwrap(), SIG);
    }

    #[test]
    fn verify_accepts_known_answers() {
        assert_eq!(verify(SPEC_SECRET, headers(SPEC_ID, "1614265330", SPEC_SIG), SPEC_BODY, SPEC_TS), Ok(()));
        assert_eq!(check(SIG, BODY, TS), Ok(()));
    }

    #[test]
    fn the_secret_prefix_is_optional_and_whitespace_is_trimmed() {
        let bare = SECRET.strip_prefix(SECRET_PREFIX).unwrap();
        assert_eq!(sign(bare, ID, TS, BODY).unwrap(), SIG);
        assert_eq!(sign(&format!(" {SECRET}\n"), ID, TS, BODY).unwrap(), SIG);
    }

    #[test]
    fn a_tampered_body_id_or_timestamp_is_forged() {
        assert_eq!(
            check(SIG, br#"{"id":"gm3qorzdhgbfurvjtvhg6dckhu","status":"failed"}"#, TS),
            Err(WebhookError::Forged)
        );
        assert_eq!(check(SIG, b"", TS), Err(WebhookError::Forged));
        let other_id = headers("msg_other", "1700000000", SIG);
        assert_eq!(verify(SECRET, other_id, BODY, TS), Err(WebhookError::Forged));
        let other_ts = headers(ID, "1700000001", SIG);
        assert_eq!(verify(SECRET, other_ts, BODY, TS), Err(WebhookError::Forged));
    }

    #[test]
    fn a_wrong_secret_is_forged() {
        assert_eq!(verify(SPEC_SECRET, headers(ID, "1700000000", SIG), BODY, TS), Err(WebhookError::Forged));
        let own = generate_secret([7u8; 32]);
        assert_eq!(verify(&own, headers(ID, "1700000000", SIG), BODY, TS), Err(WebhookError::Forged));
    }

    #[test]
    fn signatures_that_are_not_v1_or_not_base64_are_forged() {
        let digest = SIG.strip_prefix("v1,").unwrap();
        for sig in [
            digest.to_owned(),
            format!("v2,{digest}"),
            format!("v1a,{digest}"),
            format!("V1,{digest}"),
            format!("v1,{}", &digest[..digest.len() - 4]),
            "v1,".to_owned(),
            "v1,!!!!".to_owned(),
            "v1,AAAA".to_owned(),
            format!("v1, {digest}"),
        ] {
            assert_eq!(check(&sig, BODY, TS), Err(WebhookError::Forged), "{sig}");
        }
    }

    #[test]
    fn any_of_several_signatures_may_match() {
        let wrong = sign(SPEC_SECRET, ID, TS, BODY).unwrap();
        assert_eq!(check(&format!("{wrong} {SIG}"), BODY, TS), Ok(()));
        assert_eq!(check(&format!("{SIG} {wrong}"), BODY, TS), Ok(()));
        assert_eq!(check(&format!("v1a,abc  {wrong}\t{SIG} "), BODY, TS), Ok(()));
        assert_eq!(check(&format!("{wrong} {wrong}"), BODY, TS), Err(WebhookError::Forged));
        // Unpadded base64 is accepted too.
        assert_eq!(check(SIG.trim_end_matches('='), BODY, TS), Ok(()));
    }

    #[test]
    fn only_the_first_entries_are_looked_at() {
        let wrong = sign(SPEC_SECRET, ID, TS, BODY).unwrap();
        let mut many = vec![wrong.as_str(); MAX_SIGNATURES - 1];
        many.push(SIG);
        assert_eq!(check(&many.join(" "), BODY, TS), Ok(()));
        many.insert(0, &wrong);
        assert_eq!(check(&many.join(" "), BODY, TS), Err(WebhookError::Forged));
    }

    #[test]
    fn timestamps_within_five_minutes_either_way_pass() {
        for now in [TS - TOLERANCE_SECS, TS - 1, TS, TS + 1, TS + TOLERANCE_SECS] {
            assert_eq!(check(SIG, BODY, now), Ok(()), "now={now}");
        }
    }

    #[test]
    fn stale_and_future_timestamps_are_refused_even_when_signed() {
        for now in [TS + TOLERANCE_SECS + 1, TS + 86_400, TS - TOLERANCE_SECS - 1, 0, u64::MAX] {
            assert_eq!(check(SIG, BODY, now), Err(WebhookError::Stale), "now={now}");
        }
        // A correctly signed old delivery is still refused.
        let old = sign(SECRET, ID, 1_000, BODY).unwrap();
        assert_eq!(verify(SECRET, headers(ID, "1000", &old), BODY, TS), Err(WebhookError::Stale));
    }

    #[test]
    fn garbage_timestamps_are_refused() {
        for ts in [
            "-1700000000",
            "+1700000000",
            "1700000000.5",
            "1.7e9",
            "17000 00000",
            "0x6553f100",
            "１７００００００００",
            "99999999999999999999999",
            "abc",
        ] {
            assert_eq!(verify(SECRET, headers(ID, ts, SIG), BODY, TS), Err(WebhookError::Stale), "{ts}");
        }
        // Twenty digits saturate rather than overflow, and are stale.
        assert_eq!(parse_timestamp("99999999999999999999"), Some(u64::MAX));
        assert_eq!(parse_timestamp("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_timestamp("0001700000000"), Some(TS));
        assert_eq!(verify(SECRET, headers(ID, "99999999999999999999", SIG), BODY, TS), Err(WebhookError::Stale));
        // Surrounding whitespace is tolerated.
        assert_eq!(verify(SECRET, headers(ID, " 1700000000 ", SIG), BODY, TS), Ok(()));
    }

    #[test]
    fn missing_or_blank_headers_are_refused_by_name() {
        let ts = TS.to_string();
        let cases = [
            (WebhookHeaders { id: None, timestamp: Some(&ts), signature: Some(SIG) }, ID_HEADER),
            (WebhookHeaders { id: Some(" "), timestamp: Some(&ts), signature: Some(SIG) }, ID_HEADER),
            (WebhookHeaders { id: Some(ID), timestamp: None, signature: Some(SIG) }, TIMESTAMP_HEADER),
            (WebhookHeaders { id: Some(ID), timestamp: Some(""), signature: Some(SIG) }, TIMESTAMP_HEADER),
            (WebhookHeaders { id: Some(ID), timestamp: Some(&ts), signature: None }, SIGNATURE_HEADER),
            (WebhookHeaders { id: Some(ID), timestamp: Some(&ts), signature: Some("  ") }, SIGNATURE_HEADER),
            (WebhookHeaders::default(), ID_HEADER),
        ];
        for (h, name) in cases {
            let err = verify(SECRET, h, BODY, TS).unwrap_err();
            assert_eq!(err, WebhookError::Missing(name));
            assert!(err.to_string().contains(name));
            assert_eq!(err.status(), 401);
        }
    }

    #[test]
    fn bad_secrets_are_refused() {
        for secret in ["", "whsec_", "whsec_!!!notbase64", "whsec_c2hvcnQ=", "r8_abcdefghijklmnopqrstuvwxyz0123456789"]
        {
            assert_eq!(sign(secret, ID, TS, BODY), Err(WebhookError::BadSecret), "{secret}");
            assert_eq!(check_with(secret), Err(WebhookError::BadSecret), "{secret}");
        }
        assert_eq!(WebhookError::BadSecret.status(), 500);
    }

    fn check_with(secret: &str) -> Result<(), WebhookError> {
        verify(secret, headers(ID, "1700000000", SIG), BODY, TS)
    }

    #[test]
    fn errors_never_contain_the_secret() {
        let secret_part = SECRET.strip_prefix(SECRET_PREFIX).unwrap();
        let errors = [
            check(SIG, b"tampered", TS).unwrap_err(),
            check(SIG, BODY, 0).unwrap_err(),
            verify(SECRET, WebhookHeaders::default(), BODY, TS).unwrap_err(),
            check_with("whsec_!!!notbase64").unwrap_err(),
        ];
        for e in errors {
            let api = ApiError::from(e);
            for text in [e.to_string(), format!("{e:?}"), api.body(), api.to_string()] {
                assert!(!text.contains(secret_part), "{text}");
                assert!(!text.contains("notbase64"), "{text}");
            }
        }
    }

    #[test]
    fn api_errors_carry_the_status() {
        assert_eq!(ApiError::from(WebhookError::Forged).status, 401);
        assert_eq!(ApiError::from(WebhookError::Stale).status, 401);
        assert_eq!(ApiError::from(WebhookError::Missing(ID_HEADER)).status, 401);
        assert_eq!(ApiError::from(WebhookError::BadSecret).status, 500);
    }

    #[test]
    fn generated_secrets_are_prefixed_base64_and_usable() {
        let s24: [u8; 24] = std::array::from_fn(|i| i as u8);
        let s32: [u8; 32] = std::array::from_fn(|i| i as u8);
        assert_eq!(generate_secret(s24), "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYX");
        assert_eq!(generate_secret(s32), "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=");
        for secret in [generate_secret(s24), generate_secret(s32)] {
            let sig = sign(&secret, ID, TS, BODY).unwrap();
            assert_eq!(verify(&secret, headers(ID, "1700000000", &sig), BODY, TS), Ok(()));
            assert_eq!(verify(&secret, headers(ID, "1700000000", SIG), BODY, TS), Err(WebhookError::Forged));
        }
    }
}
