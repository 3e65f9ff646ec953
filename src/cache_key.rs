//! The cache key of a generation: the same model version and the same input
//! give the same key, however the input's JSON was written.
//!
//! Key: `cache:` and the hex SHA-256 of the canonical JSON of
//! `[model_version_ref, input]`. Canonical JSON has no whitespace, object
//! keys sorted (by their UTF-8 bytes) at every depth, numbers written by
//! value (`4`, `4.0` and `4e0` are all `4`; `-0.0` is `0`), and strings
//! escaped as `serde_json` writes them. Fields whose name contains `token`
//! (any case, at any depth) are left out: a caller's credentials never
//! decide, nor enter, a key.

use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};
use std::fmt::Write;

/// The prefix of every cache key.
pub const KEY_PREFIX: &str = "cache:";

/// The cache key of running `model_version_ref` (`owner/name` or
/// `owner/name:<version>`, as given) on `input`.
pub fn cache_key(model_version_ref: &str, input: &Map<String, Value>) -> String {
    let mut canonical = String::from("[");
    write_string(&mut canonical, model_version_ref);
    canonical.push(',');
    write_object(&mut canonical, input);
    canonical.push(']');
    format!("{KEY_PREFIX}{}", sha256_hex(canonical.as_bytes()))
}

/// The canonical JSON of `value`, as hashed by [`cache_key`].
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

/// The lowercase hex of SHA-256 of `data` (64 characters).
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().fold(String::with_capacity(64), |mut hex, byte| {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{byte:02x}");
        hex
    })
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(object) => write_object(out, object),
    }
}

fn write_object(out: &mut String, object: &Map<String, Value>) {
    // serde_json's `Map` (built without its `preserve_order` feature) is a
    // `BTreeMap`: it iterates in key order already. The tests below fail if
    // that ever changes.
    out.push('{');
    for (i, (key, value)) in object.iter().filter(|(key, _)| !is_secret_field(key)).enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, key);
        out.push(':');
        write_value(out, value);
    }
    out.push('}');
}

/// Integers as they are; other numbers by Rust's shortest round-trip form,
/// which never uses an exponent and writes integral values without `.0`, so
/// `4.0` is `4` like the integer.
fn write_number(out: &mut String, n: &Number) {
    // Writing to a String cannot fail.
    let _ = if let Some(i) = n.as_i64() {
        write!(out, "{i}")
    } else if let Some(u) = n.as_u64() {
        write!(out, "{u}")
    } else {
        let f = n.as_f64().unwrap_or_default();
        // `-0.0 == 0.0`: both are written `0`.
        let f = if f == 0.0 { 0.0 } else { f };
        write!(out, "{f}")
    };
}

fn write_string(out: &mut String, s: &str) {
    // Serializing a string cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

fn is_secret_field(name: &str) -> bool {
    name.to_ascii_lowercase().contains("token")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MODEL: &str = "black-forest-labs/flux-schnell";

    fn map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn key(value: Value) -> String {
        cache_key(MODEL, &map(value))
    }

    #[test]
    fn the_key_is_prefixed_hex_sha256() {
        let k = key(json!({"prompt": "a cat"}));
        let hex = k.strip_prefix(KEY_PREFIX).unwrap();
        assert_eq!(hex.len(), 64);
        assert!(hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        // Known answer: the hash of the canonical text.
        let canonical = r#"["black-forest-labs/flux-schnell",{"prompt":"a cat"}]"#;
        assert_eq!(k, format!("cache:{}", sha256_hex(canonical.as_bytes())));
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn key_order_does_not_matter() {
        let a: Value = serde_json::from_str(r#"{"prompt":"a cat","seed":4,"aspect_ratio":"16:9"}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"aspect_ratio":"16:9","seed":4,"prompt":"a cat"}"#).unwrap();
        assert_eq!(key(a), key(b));
    }

    #[test]
    fn nested_objects_are_sorted_too() {
        let a = canonical_json(&json!({"b": {"z": 1, "a": [{"y": 1, "x": 2}]}, "a": null}));
        assert_eq!(a, r#"{"a":null,"b":{"a":[{"x":2,"y":1}],"z":1}}"#);
        assert_eq!(
            key(json!({"outer": {"z": 1, "a": {"d": true, "c": false}}})),
            key(json!({"outer": {"a": {"c": false, "d": true}, "z": 1}}))
        );
    }

    #[test]
    fn numbers_are_compared_by_value() {
        assert_eq!(key(json!({"seed": 4})), key(json!({"seed": 4.0})));
        let from_text: Value = serde_json::from_str(r#"{"seed": 4e0, "guidance": 3.50}"#).unwrap();
        assert_eq!(key(from_text), key(json!({"seed": 4, "guidance": 3.5})));
        assert_eq!(key(json!({"x": -0.0})), key(json!({"x": 0})));
        assert_ne!(key(json!({"seed": 4})), key(json!({"seed": 4.5})));
        assert_ne!(key(json!({"seed": 4})), key(json!({"seed": "4"})));
        assert_eq!(
            canonical_json(&json!([1e20, 0.1, -3, u64::MAX, 1.5e-7])),
            "[100000000000000000000,0.1,-3,18446744073709551615,0.00000015]"
        );
    }

    #[test]
    fn strings_are_kept_as_they_are() {
        assert_ne!(key(json!({"prompt": "a cat"})), key(json!({"prompt": "a cat "})));
        assert_ne!(key(json!({"prompt": "a cat"})), key(json!({"prompt": "A cat"})));
        assert_eq!(canonical_json(&json!("say \"hi\"\n✨")), "\"say \\\"hi\\\"\\n✨\"");
    }

    #[test]
    fn a_different_model_version_gives_a_different_key() {
        let input = map(json!({"prompt": "a cat"}));
        let a = cache_key(MODEL, &input);
        assert_ne!(a, cache_key("black-forest-labs/flux-dev", &input));
        assert_ne!(a, cache_key(&format!("{MODEL}:{}", "a".repeat(64)), &input));
        assert_eq!(a, cache_key(MODEL, &input));
    }

    #[test]
    fn the_model_and_input_cannot_be_confused() {
        // Moving text between the model ref and the input changes the key.
        assert_ne!(cache_key("a", &map(json!({"b": "c"}))), cache_key("a\",{\"b\":\"c", &Map::new()));
    }

    #[test]
    fn token_fields_do_not_change_the_key() {
        let plain = key(json!({"prompt": "a cat", "nested": {"x": 1}}));
        assert_eq!(plain, key(json!({"prompt": "a cat", "replicate_token": "r8_secret", "nested": {"x": 1}})));
        assert_eq!(plain, key(json!({"prompt": "a cat", "Token": 1, "nested": {"x": 1, "API_TOKEN": "s"}})));
        assert_eq!(plain, key(json!({"prompt": "a cat", "nested": {"x": 1, "tokens": [1, 2]}})));
        assert_ne!(plain, key(json!({"prompt": "a cat", "nested": {"x": 1}, "other": "r8_secret"})));
        let canonical = canonical_json(&json!({"list": [{"my_token": "r8_secret", "keep": 1}]}));
        assert_eq!(canonical, r#"{"list":[{"keep":1}]}"#);
    }

    #[test]
    fn arrays_keep_their_order() {
        assert_ne!(key(json!({"a": [1, 2]})), key(json!({"a": [2, 1]})));
    }
}
