//! Service API keys: what a key looks like, what is stored about it, and how
//! a presented key is checked.
//!
//! A key is `fg_<id>_<secret>`: an 8-character id and a 32-character secret,
//! both lowercase Crockford base32 (`0-9a-z` without `i l o u`), 44 characters
//! in all, made from 25 caller-supplied random bytes (40 bits of id, 160 bits
//! of secret). Only the SHA-256 of the whole key is stored, under
//! `key:<id>`; the key itself is shown once, when it is made.

use crate::cache_key::sha256_hex;
use crate::error::ApiError;
use crate::error::INVALID_INPUT;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use subtle::ConstantTimeEq;

/// What every key starts with.
pub const KEY_PREFIX: &str = "fg_";
/// Characters of a key id.
pub const ID_LEN: usize = 8;
/// Characters of a key's secret part.
pub const SECRET_LEN: usize = 32;
/// Characters of a whole key.
pub const KEY_LEN: usize = KEY_PREFIX.len() + ID_LEN + 1 + SECRET_LEN;
/// Random bytes a key is made from: 5 for the id, 20 for the secret.
pub const RANDOM_BYTES: usize = (ID_LEN + SECRET_LEN) * 5 / 8;
/// The prefix of a key record's KV key.
pub const KV_PREFIX: &str = "key:";
/// The longest key name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// The largest `per_minute` limit.
pub const MAX_PER_MINUTE: u32 = 600;
/// The largest `per_day` limit.
pub const MAX_PER_DAY: u32 = 1_000_000;
/// The most models a key may be restricted to.
pub const MAX_MODELS: usize = 32;
/// The longest model reference, in bytes.
pub const MAX_MODEL_REF_LEN: usize = 200;

/// Crockford's base32 alphabet, lowercase: no i, l, o, u.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const CREATE_FIELDS: [&str; 4] = ["name", "per_minute", "per_day", "models"];

/// How much a key may generate; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_minute: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_day: Option<u32>,
}

/// What is stored about a key, as JSON under [`key_kv_key`]. It holds the
/// key's hash, never the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub id: String,
    pub name: String,
    /// Lowercase hex SHA-256 of the whole key.
    pub hash: String,
    pub created_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at_ms: Option<u64>,
    #[serde(default)]
    pub limits: Limits,
    /// The models (`owner/name` or `owner/name:<version>`) the key may run;
    /// `None` is any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
}

impl KeyRecord {
    /// The record of a new key, from a checked create request.
    pub fn new(key: &NewKey, request: CreateKeyRequest, created_at_ms: u64) -> Self {
        Self {
            id: key.id.clone(),
            name: request.name,
            hash: sha256_hex(key.key.as_bytes()),
            created_at_ms,
            revoked_at_ms: None,
            limits: request.limits,
            models: request.models,
        }
    }

    /// Whether the key has not been revoked.
    pub fn is_active(&self) -> bool {
        self.revoked_at_ms.is_none()
    }

    /// Whether the key may run `model` (`owner/name`): any model when
    /// unrestricted, else one listed as `owner/name` or `owner/name:<version>`.
    pub fn allows_model(&self, model: &str) -> bool {
        self.models.as_ref().is_none_or(|models| {
            models.iter().any(|m| m == model || m.split_once(':').is_some_and(|(base, _)| base == model))
        })
    }
}

/// A key just made: shown to its creator once, then only its hash is kept.
#[derive(Clone, PartialEq, Eq)]
pub struct NewKey {
    /// The key id, also inside `key`.
    pub id: String,
    /// The whole key, `fg_<id>_<secret>`.
    pub key: String,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey").field("id", &self.id).field("key", &"<redacted>").finish()
    }
}

/// A checked create request: `{name, per_minute?, per_day?, models?}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateKeyRequest {
    /// Trimmed, 1 to [`MAX_NAME_CHARS`] characters, no control characters.
    pub name: String,
    pub limits: Limits,
    /// Deduplicated, in the order given.
    pub models: Option<Vec<String>>,
}

/// A new key from the first [`RANDOM_BYTES`] of `random` (from a secure
/// source, such as the edge's `getrandom`); `None` when there are fewer.
/// The caller makes sure no record exists under the id yet.
pub fn generate_key(random: &[u8]) -> Option<NewKey> {
    let random = random.get(..RANDOM_BYTES)?;
    let (id_bytes, secret_bytes) = random.split_at(ID_LEN * 5 / 8);
    let id = base32(id_bytes);
    let key = format!("{KEY_PREFIX}{id}_{}", base32(secret_bytes));
    Some(NewKey { id, key })
}

/// The id and secret part of a well-formed key. Anything but `fg_`, 8 and
/// 32 lowercase Crockford characters joined by `_` is `None`.
pub fn parse_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let well_formed = id.len() == ID_LEN && secret.len() == SECRET_LEN && is_base32(id) && is_base32(secret);
    well_formed.then_some((id, secret))
}

/// Whether `presented` is the key `record` was made for, comparing hashes
/// in constant time.
pub fn verify(record: &KeyRecord, presented: &str) -> bool {
    let hash = sha256_hex(presented.as_bytes());
    hash.as_bytes().ct_eq(record.hash.as_bytes()).into()
}

/// The KV key of a key record: `key:<id>`.
pub fn key_kv_key(id: &str) -> String {
    format!("{KV_PREFIX}{id}")
}

/// Checks a create request body. Every failure is a 400 naming the field;
/// unknown fields are refused.
pub fn parse_create_request(body: &Value) -> Result<CreateKeyRequest, ApiError> {
    let object = body.as_object().ok_or_else(|| invalid("the body must be a JSON object"))?;
    if let Some(unknown) = object.keys().find(|k| !CREATE_FIELDS.contains(&k.as_str())) {
        let shown: String = unknown.chars().take(MAX_NAME_CHARS).collect();
        return Err(invalid(format!("Unknown field '{shown}'; allowed: {}", CREATE_FIELDS.join(", "))));
    }
    Ok(CreateKeyRequest {
        name: name(object.get("name"))?,
        limits: Limits {
            per_minute: limit(object.get("per_minute"), "per_minute", MAX_PER_MINUTE)?,
            per_day: limit(object.get("per_day"), "per_day", MAX_PER_DAY)?,
        },
        models: models(object.get("models"))?,
    })
}

fn name(value: Option<&Value>) -> Result<String, ApiError> {
    let problem = || invalid(format!("name must be 1 to {MAX_NAME_CHARS} characters, without control characters"));
    let name = value.and_then(Value::as_str).map(str::trim).ok_or_else(problem)?;
    let ok = !name.is_empty() && name.chars().count() <= MAX_NAME_CHARS && !name.chars().any(char::is_control);
    ok.then(|| name.to_owned()).ok_or_else(problem)
}

/// An optional limit: absent or `null` is unlimited, else an integer in `1..=max`.
fn limit(value: Option<&Value>, field: &str, max: u32) -> Result<Option<u32>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(value) => whole_number(value)
            .filter(|n| (1..=u64::from(max)).contains(n))
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| invalid(format!("{field} must be an integer from 1 to {max}, or null for no limit"))),
    }
}

/// A non-negative integral JSON number: `5` or `5.0`, not `5.5` or `"5"`.
fn whole_number(value: &Value) -> Option<u64> {
    let number = value.as_number()?;
    number.as_u64().or_else(|| {
        let float = number.as_f64()?;
        (float.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&float)).then_some(float as u64)
    })
}

/// An optional model list: absent or `null` is any model, else 1 to
/// [`MAX_MODELS`] references, deduplicated.
fn models(value: Option<&Value>) -> Result<Option<Vec<String>>, ApiError> {
    let items = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) if (1..=MAX_MODELS).contains(&items.len()) => items,
        Some(_) => {
            return Err(invalid(format!("models must be a list of 1 to {MAX_MODELS} models, or null for any model")))
        }
    };
    let mut models: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let model = item.as_str().filter(|m| is_model_or_version_ref(m)).ok_or_else(|| {
            invalid("models must hold owner/name or owner/name:<64-hex version> references".to_owned())
        })?;
        if !models.iter().any(|m| m == model) {
            models.push(model.to_owned());
        }
    }
    Ok(Some(models))
}

fn is_model_or_version_ref(model: &str) -> bool {
    if model.len() > MAX_MODEL_REF_LEN {
        return false;
    }
    match model.split_once(':') {
        Some((name, version)) => crate::config::is_model_ref(name) && crate::config::is_version_id(version),
        None => crate::config::is_model_ref(model),
    }
}

fn invalid(details: impl Into<String>) -> ApiError {
    ApiError::bad_request(INVALID_INPUT).with_details(details)
}

/// Crockford base32 of `bytes`, 5 bits a character, most significant first;
/// a last partial group is padded with zero bits.
fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

fn is_base32(s: &str) -> bool {
    s.bytes().all(|b| ALPHABET.contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn random(seed: u8) -> Vec<u8> {
        (0..RANDOM_BYTES as u8).map(|i| i.wrapping_mul(37).wrapping_add(seed)).collect()
    }

    fn request() -> CreateKeyRequest {
        CreateKeyRequest { name: "ci".into(), limits: Limits::default(), models: None }
    }

    #[test]
    fn constants_agree() {
        assert_eq!(KEY_LEN, 44);
        assert_eq!(RANDOM_BYTES, 25);
    }

    #[test]
    fn base32_known_answers() {
        assert_eq!(base32(&[0; 5]), "00000000");
        assert_eq!(base32(&[0xff; 5]), "zzzzzzzz");
        // 0x0842108421 is 00001 00001 ... : eight ones.
        assert_eq!(base32(&[0x08, 0x42, 0x10, 0x84, 0x21]), "11111111");
        assert_eq!(base32(b"f"), "cr");
        assert_eq!(base32(b"foobar"), "csqpyrk1e8");
    }

    #[test]
    fn generated_keys_have_the_documented_shape() {
        let new = generate_key(&random(1)).unwrap();
        assert_eq!(new.key.len(), KEY_LEN);
        assert!(new.key.starts_with("fg_"));
        assert_eq!(parse_key(&new.key), Some((new.id.as_str(), &new.key[KEY_LEN - SECRET_LEN..])));
        // Known answer: the bytes 0..25 in order.
        let counting: Vec<u8> = (0..25).collect();
        let new = generate_key(&counting).unwrap();
        assert_eq!(new.id, base32(&[0, 1, 2, 3, 4]));
        assert_eq!(new.key, format!("fg_{}_{}", base32(&[0, 1, 2, 3, 4]), base32(&counting[5..])));
        assert_eq!(new.id, "000g40r4");
    }

    #[test]
    fn generation_uses_every_random_byte_and_needs_enough() {
        assert_eq!(generate_key(&[0; RANDOM_BYTES - 1]), None);
        assert_eq!(generate_key(&[]), None);
        let base = generate_key(&[0; RANDOM_BYTES]).unwrap();
        for i in 0..RANDOM_BYTES {
            let mut bytes = [0u8; RANDOM_BYTES];
            bytes[i] = 1;
            assert_ne!(generate_key(&bytes).unwrap().key, base.key, "byte {i} is unused");
        }
        // Extra bytes are ignored.
        assert_eq!(generate_key(&[0; 64]).unwrap(), base);
    }

    #[test]
    fn parse_key_refuses_anything_else() {
        let good = generate_key(&random(9)).unwrap().key;
        assert!(parse_key(&good).is_some());
        let bad = [
            String::new(),
            "fg_".into(),
            good.to_uppercase(),
            good.replacen("fg_", "fx_", 1),
            good.replacen("fg_", "FG_", 1),
            format!(" {good}"),
            format!("{good} "),
            format!("{good}0"),
            good[..KEY_LEN - 1].to_owned(),
            good.replacen('_', "-", 2),
            format!("fg_{}_{}", "0".repeat(7), "0".repeat(33)),
            format!("fg_{}_{}", "0".repeat(9), "0".repeat(31)),
            format!("fg_{}_{}", "i".repeat(8), "0".repeat(32)),
            format!("fg_{}_{}", "0".repeat(8), "u".repeat(32)),
            format!("fg_{}_{}_", "0".repeat(8), "0".repeat(31)),
            format!("fg_{}_{}", "0".repeat(8), "é".repeat(16)),
            "r8_abcdefghijklmnopqrstuvwxyz0123456789abcd".into(),
        ];
        for key in bad {
            assert_eq!(parse_key(&key), None, "{key}");
        }
    }

    #[test]
    fn verify_matches_only_the_exact_key() {
        let new = generate_key(&random(3)).unwrap();
        let record = KeyRecord::new(&new, request(), 1_700_000_000_000);
        assert_eq!(record.hash, sha256_hex(new.key.as_bytes()));
        assert_eq!(record.hash.len(), 64);
        assert!(!record.hash.contains(&new.key[KEY_LEN - SECRET_LEN..]));
        assert!(verify(&record, &new.key));
        let other = generate_key(&random(4)).unwrap();
        assert!(!verify(&record, &other.key));
        let mut flipped = new.key.clone().into_bytes();
        flipped[KEY_LEN - 1] = if flipped[KEY_LEN - 1] == b'0' { b'1' } else { b'0' };
        assert!(!verify(&record, std::str::from_utf8(&flipped).unwrap()));
        assert!(!verify(&record, ""));
        assert!(!verify(&record, &record.hash));
        let broken = KeyRecord { hash: String::new(), ..record };
        assert!(!verify(&broken, &new.key));
    }

    #[test]
    fn records_round_trip_through_json_and_tolerate_missing_fields() {
        let new = generate_key(&random(5)).unwrap();
        let req = CreateKeyRequest {
            name: "Équipe ✨".into(),
            limits: Limits { per_minute: Some(10), per_day: None },
            models: Some(vec!["black-forest-labs/flux-schnell".into()]),
        };
        let record = KeyRecord::new(&new, req, 42);
        let text = serde_json::to_string(&record).unwrap();
        assert!(!text.contains(&new.key));
        assert!(!text.contains("revoked_at_ms") && !text.contains("per_day"));
        assert_eq!(serde_json::from_str::<KeyRecord>(&text).unwrap(), record);
        let minimal: KeyRecord =
            serde_json::from_value(json!({"id": "abcdefgh", "name": "n", "hash": "00", "created_at_ms": 1})).unwrap();
        assert_eq!(minimal.limits, Limits::default());
        assert_eq!(minimal.models, None);
        assert!(minimal.is_active());
    }

    #[test]
    fn revoked_records_are_inactive() {
        let new = generate_key(&random(6)).unwrap();
        let mut record = KeyRecord::new(&new, request(), 1);
        assert!(record.is_active());
        record.revoked_at_ms = Some(2);
        assert!(!record.is_active());
    }

    #[test]
    fn model_restrictions() {
        let new = generate_key(&random(7)).unwrap();
        let mut record = KeyRecord::new(&new, request(), 1);
        assert!(record.allows_model("anyone/anything"));
        let version = "a".repeat(64);
        record.models = Some(vec!["black-forest-labs/flux-schnell".into(), format!("acme/pinned:{version}")]);
        assert!(record.allows_model("black-forest-labs/flux-schnell"));
        assert!(record.allows_model("acme/pinned"));
        assert!(!record.allows_model("black-forest-labs/flux-dev"));
        assert!(!record.allows_model("black-forest-labs/flux"));
    }

    #[test]
    fn kv_key_layout() {
        assert_eq!(key_kv_key("abcdefgh"), "key:abcdefgh");
    }

    #[test]
    fn debug_of_a_new_key_hides_the_key() {
        let new = generate_key(&random(8)).unwrap();
        let printed = format!("{new:?}");
        assert!(printed.contains(&new.id));
        assert!(!printed.contains(&new.key[KEY_LEN - SECRET_LEN..]), "{printed}");
    }

    #[test]
    fn create_requests_are_parsed() {
        let minimal = parse_create_request(&json!({"name": "  ci runner "})).unwrap();
        assert_eq!(minimal, CreateKeyRequest { name: "ci runner".into(), limits: Limits::default(), models: None });
        let full = parse_create_request(&json!({
            "name": "Équipe ✨",
            "per_minute": 600,
            "per_day": 1_000_000,
            "models": ["black-forest-labs/flux-schnell", "black-forest-labs/flux-schnell", format!("a/b:{}", "0".repeat(64))],
        }))
        .unwrap();
        assert_eq!(full.limits, Limits { per_minute: Some(600), per_day: Some(1_000_000) });
        assert_eq!(
            full.models.unwrap(),
            vec!["black-forest-labs/flux-schnell".to_owned(), format!("a/b:{}", "0".repeat(64))]
        );
        let nulls =
            parse_create_request(&json!({"name": "n", "per_minute": null, "per_day": null, "models": null})).unwrap();
        assert_eq!(nulls.limits, Limits::default());
        assert_eq!(nulls.models, None);
        let whole = parse_create_request(&json!({"name": "n", "per_day": 5.0})).unwrap();
        assert_eq!(whole.limits.per_day, Some(5));
        assert_eq!(parse_create_request(&json!({"name": "x".repeat(64)})).unwrap().name.len(), 64);
    }

    fn refused(body: Value, field: &str) {
        let e = parse_create_request(&body).unwrap_err();
        assert_eq!(e.status, 400, "{body}");
        let details = e.details.unwrap_or_default();
        assert!(details.contains(field), "{body}: {details}");
    }

    #[test]
    fn bad_create_requests_name_the_field() {
        refused(json!("name"), "object");
        refused(json!([]), "object");
        refused(json!({}), "name");
        refused(json!({"name": ""}), "name");
        refused(json!({"name": "   "}), "name");
        refused(json!({"name": 5}), "name");
        refused(json!({"name": "x".repeat(65)}), "name");
        refused(json!({"name": "é".repeat(65)}), "name");
        refused(json!({"name": "a\nb"}), "name");
        refused(json!({"name": "a\u{0}b"}), "name");
        refused(json!({"name": "a\u{7f}"}), "name");
        for bad in [json!(0), json!(-1), json!(601), json!(1.5), json!("10"), json!(true), json!(u64::MAX)] {
            refused(json!({"name": "n", "per_minute": bad}), "per_minute");
        }
        for bad in [json!(0), json!(1_000_001), json!(2.5), json!("1")] {
            refused(json!({"name": "n", "per_day": bad}), "per_day");
        }
        refused(json!({"name": "n", "models": []}), "models");
        refused(json!({"name": "n", "models": "a/b"}), "models");
        refused(json!({"name": "n", "models": [1]}), "models");
        refused(json!({"name": "n", "models": ["nope"]}), "models");
        refused(json!({"name": "n", "models": ["a/b:short"]}), "models");
        refused(json!({"name": "n", "models": ["a/b/c"]}), "models");
        refused(json!({"name": "n", "models": [format!("a/{}", "b".repeat(MAX_MODEL_REF_LEN))]}), "models");
        let too_many: Vec<String> = (0..=MAX_MODELS).map(|i| format!("o/m{i}")).collect();
        refused(json!({"name": "n", "models": too_many}), "models");
        refused(json!({"name": "n", "per_mintue": 5}), "per_mintue");
    }

    #[test]
    fn unknown_field_names_are_cut_short() {
        let long = "z".repeat(500);
        let e = parse_create_request(&json!({"name": "n", long.clone(): 1})).unwrap_err();
        let details = e.details.unwrap();
        assert!(details.contains(&"z".repeat(MAX_NAME_CHARS)));
        assert!(!details.contains(&long));
    }
}
