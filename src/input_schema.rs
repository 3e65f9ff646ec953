//! Model inputs, checked before anything is sent to Replicate.
//!
//! A model with a known schema (flux-schnell) gets every field checked and
//! normalised, and unknown fields are refused. Any other model only needs a
//! usable `prompt`; its other fields go to Replicate unchanged, and Replicate
//! judges them.

use crate::error::ApiError;
use crate::output::ImageKind;
use serde_json::{Map, Value};

/// The longest prompt accepted, in characters (Unicode scalar values).
pub const MAX_PROMPT_CHARS: usize = 2000;
/// The default model, the one whose schema is known.
pub const FLUX_SCHNELL: &str = "black-forest-labs/flux-schnell";
pub use crate::error::INVALID_INPUT;
/// The error of a GET without a usable prompt, as the API contract words it.
pub const MISSING_PROMPT_QUERY: &str = "Missing 'prompt' query parameter";
/// The largest seed accepted: seeds are 32-bit unsigned integers.
pub const MAX_SEED: i64 = u32::MAX as i64;
/// Query parameters that are never model input (read elsewhere).
const IGNORED_QUERY_KEYS: [&str; 1] = ["replicate_token"];
/// How many characters of a caller's unknown field name an error repeats.
const MAX_ECHOED_NAME_CHARS: usize = 64;

/// What values a field takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// A non-blank string of at most `MAX_PROMPT_CHARS` characters.
    Prompt,
    /// One of these strings, exactly.
    OneOf(&'static [&'static str]),
    /// An integer in `min..=max`; a JSON float without a fraction (`4.0`) counts.
    Integer { min: i64, max: i64 },
    /// `true` or `false`.
    Boolean,
    /// One of these strings, also accepted as the equal JSON number (`1`,
    /// `0.25`) and normalised to the string.
    NumericString(&'static [&'static str]),
}

/// One input field of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub kind: FieldKind,
}

/// The input fields of a model, and the defaults this service adds itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSchema {
    /// `owner/name`.
    pub model: &'static str,
    /// Every field the model takes, `prompt` first; `prompt` is required.
    pub fields: &'static [Field],
    /// Boolean fields set when the caller leaves them out.
    pub bool_defaults: &'static [(&'static str, bool)],
}

impl ModelSchema {
    /// The field called `name`.
    pub fn field(&self, name: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Every field name, in schema order.
    pub fn field_names(&self) -> Vec<&'static str> {
        self.fields.iter().map(|f| f.name).collect()
    }

    /// How many outputs a prediction of this model with `input` gives:
    /// its `num_outputs` when the model has that field, else one.
    pub fn expected_outputs(&self, input: &Map<String, Value>) -> usize {
        let asked = self.field("num_outputs").and_then(|_| input.get("num_outputs")).and_then(Value::as_u64);
        usize::try_from(asked.unwrap_or(1)).unwrap_or(1).max(1)
    }

    /// The image type `input` asks for through `output_format`, when the
    /// model has that field; what the id's extension is before the bytes say.
    pub fn output_kind(&self, input: &Map<String, Value>) -> Option<ImageKind> {
        self.field("output_format").and_then(|_| input.get("output_format")?.as_str()).and_then(ImageKind::from_ext)
    }
}

/// The schema whose fields a model without a known one is read with (a GET's
/// query, the outputs to expect): flux-schnell's, the default model.
pub fn schema_or_default(model: &str) -> &'static ModelSchema {
    schema_for(model).unwrap_or(&FLUX_SCHNELL_SCHEMA)
}

const ASPECT_RATIOS: &[&str] = &["1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21"];
const OUTPUT_FORMATS: &[&str] = &["webp", "jpg", "png"];
const MEGAPIXELS: &[&str] = &["1", "0.25"];

const FLUX_SCHNELL_FIELDS: &[Field] = &[
    Field { name: "prompt", kind: FieldKind::Prompt },
    Field { name: "aspect_ratio", kind: FieldKind::OneOf(ASPECT_RATIOS) },
    Field { name: "num_outputs", kind: FieldKind::Integer { min: 1, max: 4 } },
    Field { name: "num_inference_steps", kind: FieldKind::Integer { min: 1, max: 4 } },
    Field { name: "seed", kind: FieldKind::Integer { min: 0, max: MAX_SEED } },
    Field { name: "output_format", kind: FieldKind::OneOf(OUTPUT_FORMATS) },
    Field { name: "output_quality", kind: FieldKind::Integer { min: 0, max: 100 } },
    Field { name: "go_fast", kind: FieldKind::Boolean },
    Field { name: "megapixels", kind: FieldKind::NumericString(MEGAPIXELS) },
    Field { name: "disable_safety_checker", kind: FieldKind::Boolean },
];

static FLUX_SCHNELL_SCHEMA: ModelSchema =
    ModelSchema { model: FLUX_SCHNELL, fields: FLUX_SCHNELL_FIELDS, bool_defaults: &[("go_fast", true)] };

/// The schema of `model` (`owner/name`, compared case-insensitively), or
/// `None` for a model whose schema is not known here.
pub fn schema_for(model: &str) -> Option<&'static ModelSchema> {
    model.trim().eq_ignore_ascii_case(FLUX_SCHNELL).then_some(&FLUX_SCHNELL_SCHEMA)
}

/// The field names `model` accepts, or `None` when its schema is not known.
pub fn known_fields(model: &str) -> Option<Vec<&'static str>> {
    schema_for(model).map(ModelSchema::field_names)
}

/// The input to send to Replicate for `input`, or a 400 `Invalid input`
/// naming the first problem.
///
/// With a known schema: unknown fields are refused, every field is checked
/// and normalised (integers written as integers, megapixels as a string),
/// a JSON `null` counts as leaving the field out, and the schema's defaults
/// are added (flux-schnell: `go_fast: true`); Replicate's own defaults are not.
/// Without one: only `prompt` is checked, and the input is returned as given.
pub fn validate(model: &str, input: &Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    match schema_for(model) {
        Some(schema) => validate_with(schema, input),
        None => {
            check_prompt(input.get("prompt"))?;
            Ok(input.clone())
        }
    }
}

/// The input given by a GET's query `pairs`, validated like `validate`.
///
/// Keys are the fields of the model's schema (flux-schnell's for a model without one); `replicate_token` is skipped. Values are
/// converted to the field's type (`true`/`false`/`1`/`0` for booleans,
/// decimal integers), using the model's schema or, for a model without one,
/// flux-schnell's types. A value left empty counts as absent. A missing or
/// blank prompt is a 400 `Missing 'prompt' query parameter`; an unknown or
/// repeated key, or a value of the wrong type, is a 400 `Invalid input`.
pub fn input_from_query(model: &str, pairs: &[(String, String)]) -> Result<Map<String, Value>, ApiError> {
    let pairs: Vec<(&str, &str)> =
        pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).filter(|(k, _)| !IGNORED_QUERY_KEYS.contains(k)).collect();

    let has_prompt = pairs.iter().any(|(k, v)| *k == "prompt" && !v.trim().is_empty());
    if !has_prompt {
        return Err(ApiError::bad_request(MISSING_PROMPT_QUERY));
    }
    let types = schema_or_default(model);
    let unknown: Vec<&str> = pairs.iter().map(|(k, _)| *k).filter(|k| types.field(k).is_none()).collect();
    if !unknown.is_empty() {
        return Err(unknown_fields(&unknown, &types.field_names()));
    }

    let mut input = Map::new();
    for (key, raw) in pairs {
        if input.contains_key(key) {
            return Err(invalid(format!("{key} is given more than once")));
        }
        if key != "prompt" && raw.trim().is_empty() {
            continue;
        }
        let value = match types.field(key) {
            Some(field) => value_from_query(field, raw)?,
            None => Value::String(raw.to_owned()),
        };
        input.insert(key.to_owned(), value);
    }
    validate(model, &input)
}

fn validate_with(schema: &ModelSchema, input: &Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let unknown: Vec<&str> = input.keys().map(String::as_str).filter(|k| schema.field(k).is_none()).collect();
    if !unknown.is_empty() {
        return Err(unknown_fields(&unknown, &schema.field_names()));
    }
    check_prompt(input.get("prompt"))?;

    let mut normalized = Map::new();
    for field in schema.fields {
        let value = match input.get(field.name) {
            None | Some(Value::Null) => continue,
            Some(value) => value,
        };
        normalized.insert(field.name.to_owned(), normalize(field, value)?);
    }
    for (name, default) in schema.bool_defaults {
        normalized.entry(*name).or_insert(Value::Bool(*default));
    }
    Ok(normalized)
}

/// The value of `field` to send, or a 400 saying what it allows.
fn normalize(field: &Field, value: &Value) -> Result<Value, ApiError> {
    let normalized = match field.kind {
        FieldKind::Prompt => {
            check_prompt(Some(value))?;
            Some(value.clone())
        }
        FieldKind::OneOf(options) => value.as_str().filter(|s| options.contains(s)).map(|_| value.clone()),
        FieldKind::Integer { min, max } => integer(value).filter(|n| (min..=max).contains(n)).map(Value::from),
        FieldKind::Boolean => value.as_bool().map(Value::Bool),
        FieldKind::NumericString(options) => numeric_string(value, options).map(Value::from),
    };
    normalized.ok_or_else(|| invalid(allowed_values(field)))
}

/// A query string converted to `field`'s JSON type; range checks are left
/// to `validate`.
fn value_from_query(field: &Field, raw: &str) -> Result<Value, ApiError> {
    let trimmed = raw.trim();
    let value = match field.kind {
        FieldKind::Prompt => Some(Value::String(raw.to_owned())),
        FieldKind::OneOf(_) | FieldKind::NumericString(_) => Some(Value::String(trimmed.to_owned())),
        FieldKind::Integer { .. } => trimmed.parse::<i64>().ok().map(Value::from),
        FieldKind::Boolean => parse_query_bool(trimmed).map(Value::Bool),
    };
    value.ok_or_else(|| invalid(allowed_values(field)))
}

fn parse_query_bool(raw: &str) -> Option<bool> {
    match raw.to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// An integral JSON number as `i64`: `4` and `4.0`, not `4.5`, `"4"` or a
/// number beyond `i64`.
fn integer(value: &Value) -> Option<i64> {
    let number = value.as_number()?;
    if let Some(n) = number.as_i64() {
        return Some(n);
    }
    if number.is_u64() {
        return None;
    }
    let float = number.as_f64()?;
    let in_i64 = float.is_finite() && float.fract() == 0.0 && float.abs() < 9.0e18;
    in_i64.then_some(float as i64)
}

/// The option `value` names, as a string or as the equal JSON number.
fn numeric_string(value: &Value, options: &'static [&'static str]) -> Option<&'static str> {
    match value {
        Value::String(s) => options.iter().copied().find(|o| o == s),
        Value::Number(n) => {
            let n = n.as_f64()?;
            options.iter().copied().find(|o| o.parse::<f64>().is_ok_and(|o| o == n))
        }
        _ => None,
    }
}

/// Checks a prompt: present, a string, not blank, not too long.
fn check_prompt(prompt: Option<&Value>) -> Result<(), ApiError> {
    let problem = match prompt {
        None | Some(Value::Null) => "prompt is required".to_owned(),
        Some(Value::String(s)) if s.trim().is_empty() => "prompt must not be blank".to_owned(),
        Some(Value::String(s)) if s.chars().count() > MAX_PROMPT_CHARS => {
            format!("prompt must be at most {MAX_PROMPT_CHARS} characters")
        }
        Some(Value::String(_)) => return Ok(()),
        Some(_) => "prompt must be a string".to_owned(),
    };
    Err(invalid(problem))
}

/// What a field allows, as an error's details.
fn allowed_values(field: &Field) -> String {
    let name = field.name;
    match field.kind {
        FieldKind::Prompt => format!("{name} must be a non-blank string of at most {MAX_PROMPT_CHARS} characters"),
        FieldKind::OneOf(options) | FieldKind::NumericString(options) => {
            format!("{name} must be one of {}", options.join(", "))
        }
        FieldKind::Integer { min, max } => format!("{name} must be an integer from {min} to {max}"),
        FieldKind::Boolean => format!("{name} must be true or false"),
    }
}

fn unknown_fields(unknown: &[&str], allowed: &[&str]) -> ApiError {
    let names: Vec<String> = unknown.iter().map(|n| format!("'{}'", shorten(n))).collect();
    let noun = if names.len() == 1 { "field" } else { "fields" };
    invalid(format!("Unknown {noun} {}; allowed: {}", names.join(", "), allowed.join(", ")))
}

/// A caller-chosen name cut to `MAX_ECHOED_NAME_CHARS` characters.
fn shorten(name: &str) -> String {
    crate::text::cut_chars(name, MAX_ECHOED_NAME_CHARS)
}

fn invalid(details: impl Into<String>) -> ApiError {
    ApiError::invalid_input(details)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ALLOWED: &str = "prompt, aspect_ratio, num_outputs, num_inference_steps, seed, output_format, \
                           output_quality, go_fast, megapixels, disable_safety_checker";

    fn map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    }

    fn flux(value: Value) -> Result<Value, ApiError> {
        validate(FLUX_SCHNELL, &map(value)).map(Value::Object)
    }

    fn details(result: Result<Value, ApiError>) -> String {
        let err = result.expect_err("should be refused");
        assert_eq!((err.status, err.error.as_str()), (400, INVALID_INPUT), "{err}");
        err.details.unwrap_or_default()
    }

    fn query(model: &str, pairs: &[(&str, &str)]) -> Result<Value, ApiError> {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        input_from_query(model, &pairs).map(Value::Object)
    }

    #[test]
    fn schemas_are_known_for_flux_schnell_only() {
        assert_eq!(schema_for(FLUX_SCHNELL).map(|s| s.model), Some(FLUX_SCHNELL));
        assert!(schema_for("Black-Forest-Labs/FLUX-Schnell").is_some());
        assert!(schema_for("black-forest-labs/flux-dev").is_none());
        assert!(schema_for("").is_none());
        assert_eq!(known_fields(FLUX_SCHNELL).unwrap().join(", "), ALLOWED);
        assert_eq!(known_fields("a/b"), None);
    }

    #[test]
    fn a_prompt_alone_gets_go_fast() {
        assert_eq!(flux(json!({"prompt": "a cat"})).unwrap(), json!({"prompt": "a cat", "go_fast": true}));
    }

    #[test]
    fn every_field_at_its_limits_is_accepted() {
        let input = json!({
            "prompt": "p".repeat(MAX_PROMPT_CHARS),
            "aspect_ratio": "9:21",
            "num_outputs": 4,
            "num_inference_steps": 1,
            "seed": 4_294_967_295u64,
            "output_format": "png",
            "output_quality": 0,
            "go_fast": false,
            "megapixels": "0.25",
            "disable_safety_checker": true,
        });
        assert_eq!(flux(input.clone()).unwrap(), input);
        let other_ends =
            json!({"prompt": "x", "num_outputs": 1, "num_inference_steps": 4, "seed": 0, "output_quality": 100});
        let mut expected = other_ends.clone();
        expected["go_fast"] = json!(true);
        assert_eq!(flux(other_ends).unwrap(), expected);
    }

    #[test]
    fn every_aspect_ratio_and_format_is_accepted() {
        for ratio in ASPECT_RATIOS {
            assert!(flux(json!({"prompt": "x", "aspect_ratio": ratio})).is_ok(), "{ratio}");
        }
        for format in OUTPUT_FORMATS {
            assert!(flux(json!({"prompt": "x", "output_format": format})).is_ok(), "{format}");
        }
    }

    #[test]
    fn integral_floats_become_integers() {
        let got = flux(json!({"prompt": "x", "num_outputs": 4.0, "seed": 42.0})).unwrap();
        assert_eq!(got["num_outputs"], json!(4));
        assert!(got["num_outputs"].is_i64());
        assert!(got["seed"].is_i64());
    }

    #[test]
    fn megapixels_numbers_become_strings() {
        assert_eq!(flux(json!({"prompt": "x", "megapixels": 1})).unwrap()["megapixels"], json!("1"));
        assert_eq!(flux(json!({"prompt": "x", "megapixels": 1.0})).unwrap()["megapixels"], json!("1"));
        assert_eq!(flux(json!({"prompt": "x", "megapixels": 0.25})).unwrap()["megapixels"], json!("0.25"));
        assert_eq!(flux(json!({"prompt": "x", "megapixels": "1"})).unwrap()["megapixels"], json!("1"));
        for bad in [json!(2), json!(0.5), json!("0.250"), json!("1.0"), json!(true), json!([1])] {
            assert_eq!(details(flux(json!({"prompt": "x", "megapixels": bad}))), "megapixels must be one of 1, 0.25");
        }
    }

    #[test]
    fn caller_booleans_win_over_defaults() {
        assert_eq!(flux(json!({"prompt": "x", "go_fast": false})).unwrap()["go_fast"], json!(false));
    }

    #[test]
    fn null_means_absent() {
        assert_eq!(
            flux(json!({"prompt": "x", "seed": null, "go_fast": null})).unwrap(),
            json!({"prompt": "x", "go_fast": true})
        );
    }

    #[test]
    fn wrong_types_and_ranges_name_the_field() {
        let ratios = "aspect_ratio must be one of 1:1, 16:9, 21:9, 3:2, 2:3, 4:5, 5:4, 3:4, 4:3, 9:16, 9:21";
        let cases = [
            (json!({"aspect_ratio": "1:2"}), ratios),
            (json!({"aspect_ratio": 1}), ratios),
            (json!({"num_outputs": 0}), "num_outputs must be an integer from 1 to 4"),
            (json!({"num_outputs": 5}), "num_outputs must be an integer from 1 to 4"),
            (json!({"num_outputs": 4.5}), "num_outputs must be an integer from 1 to 4"),
            (json!({"num_outputs": "4"}), "num_outputs must be an integer from 1 to 4"),
            (json!({"num_outputs": true}), "num_outputs must be an integer from 1 to 4"),
            (json!({"num_inference_steps": 8}), "num_inference_steps must be an integer from 1 to 4"),
            (json!({"seed": -1}), "seed must be an integer from 0 to 4294967295"),
            (json!({"seed": 4_294_967_296u64}), "seed must be an integer from 0 to 4294967295"),
            (json!({"seed": u64::MAX}), "seed must be an integer from 0 to 4294967295"),
            (json!({"seed": 1e300}), "seed must be an integer from 0 to 4294967295"),
            (json!({"output_format": "PNG"}), "output_format must be one of webp, jpg, png"),
            (json!({"output_format": "jpeg"}), "output_format must be one of webp, jpg, png"),
            (json!({"output_quality": 101}), "output_quality must be an integer from 0 to 100"),
            (json!({"output_quality": -1}), "output_quality must be an integer from 0 to 100"),
            (json!({"go_fast": "true"}), "go_fast must be true or false"),
            (json!({"go_fast": 1}), "go_fast must be true or false"),
            (json!({"disable_safety_checker": "yes"}), "disable_safety_checker must be true or false"),
        ];
        for (mut input, expected) in cases {
            input["prompt"] = json!("x");
            assert_eq!(details(flux(input.clone())), expected, "{input}");
        }
    }

    #[test]
    fn prompt_problems() {
        assert_eq!(details(flux(json!({}))), "prompt is required");
        assert_eq!(details(flux(json!({"prompt": null}))), "prompt is required");
        assert_eq!(details(flux(json!({"prompt": "  \n"}))), "prompt must not be blank");
        assert_eq!(details(flux(json!({"prompt": ""}))), "prompt must not be blank");
        assert_eq!(details(flux(json!({"prompt": 5}))), "prompt must be a string");
        assert_eq!(details(flux(json!({"prompt": ["a"]}))), "prompt must be a string");
        let too_long = "p".repeat(MAX_PROMPT_CHARS + 1);
        assert_eq!(details(flux(json!({ "prompt": too_long }))), "prompt must be at most 2000 characters");
        // The limit counts characters, not bytes.
        assert!(flux(json!({"prompt": "é".repeat(MAX_PROMPT_CHARS)})).is_ok());
    }

    #[test]
    fn unknown_fields_are_refused_with_the_allowed_list() {
        let got = details(flux(json!({"prompt": "x", "guidance_scale": 3.5})));
        assert_eq!(got, format!("Unknown field 'guidance_scale'; allowed: {ALLOWED}"));
        let got = details(flux(json!({"prompt": "x", "b": 1, "a": 2})));
        assert_eq!(got, format!("Unknown fields 'a', 'b'; allowed: {ALLOWED}"));
        // Unknown fields are reported even when the prompt is missing too.
        assert!(details(flux(json!({"x": 1}))).starts_with("Unknown field 'x'"));
        let long = "k".repeat(500);
        let got = details(flux(json!({"prompt": "x", long.clone(): 1})));
        assert!(got.starts_with(&format!("Unknown field '{}…'", "k".repeat(64))), "{got}");
        assert!(!got.contains(&long));
    }

    #[test]
    fn other_models_need_only_a_prompt() {
        let input = json!({"prompt": "x", "guidance_scale": 3.5, "seed": "anything", "nested": {"a": [1]}});
        assert_eq!(validate("owner/other", &map(input.clone())).map(Value::Object).unwrap(), input);
        let missing = validate("owner/other", &map(json!({"image": "x"}))).map(Value::Object);
        assert_eq!(details(missing), "prompt is required");
        let blank = validate("owner/other", &map(json!({"prompt": " "}))).map(Value::Object);
        assert_eq!(details(blank), "prompt must not be blank");
        let long = validate("owner/other", &map(json!({"prompt": "p".repeat(2001)}))).map(Value::Object);
        assert_eq!(details(long), "prompt must be at most 2000 characters");
    }

    #[test]
    fn query_values_are_converted_to_their_types() {
        let got = query(
            FLUX_SCHNELL,
            &[
                ("prompt", "a cat"),
                ("aspect_ratio", "16:9"),
                ("seed", "42"),
                ("output_format", "png"),
                ("num_inference_steps", "2"),
                ("output_quality", "90"),
                ("go_fast", "false"),
                ("megapixels", "0.25"),
                ("num_outputs", "3"),
                ("disable_safety_checker", "TRUE"),
            ],
        )
        .unwrap();
        assert_eq!(
            got,
            json!({
                "prompt": "a cat", "aspect_ratio": "16:9", "seed": 42, "output_format": "png",
                "num_inference_steps": 2, "output_quality": 90, "go_fast": false, "megapixels": "0.25",
                "num_outputs": 3, "disable_safety_checker": true,
            })
        );
        assert_eq!(query(FLUX_SCHNELL, &[("prompt", "x"), ("go_fast", "0")]).unwrap()["go_fast"], json!(false));
        assert_eq!(query(FLUX_SCHNELL, &[("prompt", "x"), ("go_fast", "1")]).unwrap()["go_fast"], json!(true));
        assert_eq!(query(FLUX_SCHNELL, &[("prompt", "x")]).unwrap(), json!({"prompt": "x", "go_fast": true}));
    }

    #[test]
    fn query_prompt_is_kept_verbatim_and_empty_values_are_absent() {
        let got = query(FLUX_SCHNELL, &[("seed", ""), ("prompt", " a cat "), ("aspect_ratio", " ")]).unwrap();
        assert_eq!(got, json!({"prompt": " a cat ", "go_fast": true}));
    }

    #[test]
    fn query_without_a_prompt_uses_the_contract_message() {
        for pairs in [
            vec![],
            vec![("prompt", "")],
            vec![("prompt", "   ")],
            vec![("seed", "1")],
            vec![("replicate_token", "r8_x")],
            vec![("foo", "bar")],
        ] {
            let err = query(FLUX_SCHNELL, &pairs).unwrap_err();
            assert_eq!((err.status, err.error.as_str(), err.details), (400, MISSING_PROMPT_QUERY, None), "{pairs:?}");
        }
        let err = query("owner/other", &[]).unwrap_err();
        assert_eq!(err.error, MISSING_PROMPT_QUERY);
    }

    #[test]
    fn query_ignores_the_token_and_refuses_unknown_or_repeated_keys() {
        let got = query(FLUX_SCHNELL, &[("prompt", "x"), ("replicate_token", "r8_secret")]).unwrap();
        assert_eq!(got, json!({"prompt": "x", "go_fast": true}));
        let got = details(query(FLUX_SCHNELL, &[("prompt", "x"), ("guidance_scale", "3")]));
        assert_eq!(got, format!("Unknown field 'guidance_scale'; allowed: {ALLOWED}"));
        let got = details(query("owner/other", &[("prompt", "x"), ("lora", "y")]));
        assert_eq!(got, format!("Unknown field 'lora'; allowed: {}", FLUX_SCHNELL_SCHEMA.field_names().join(", ")));
        let got = details(query(FLUX_SCHNELL, &[("prompt", "x"), ("seed", "1"), ("seed", "2")]));
        assert_eq!(got, "seed is given more than once");
        let got = details(query(FLUX_SCHNELL, &[("prompt", "x"), ("prompt", "y")]));
        assert_eq!(got, "prompt is given more than once");
    }

    #[test]
    fn query_bad_values_name_the_field() {
        let cases = [
            ("seed", "abc", "seed must be an integer from 0 to 4294967295"),
            ("seed", "-1", "seed must be an integer from 0 to 4294967295"),
            ("seed", "99999999999999999999", "seed must be an integer from 0 to 4294967295"),
            ("num_outputs", "1.5", "num_outputs must be an integer from 1 to 4"),
            ("num_outputs", "9", "num_outputs must be an integer from 1 to 4"),
            ("output_quality", "high", "output_quality must be an integer from 0 to 100"),
            ("go_fast", "yes", "go_fast must be true or false"),
            ("disable_safety_checker", "2", "disable_safety_checker must be true or false"),
            ("megapixels", "2", "megapixels must be one of 1, 0.25"),
            (
                "aspect_ratio",
                "1x1",
                "aspect_ratio must be one of 1:1, 16:9, 21:9, 3:2, 2:3, 4:5, 5:4, 3:4, 4:3, 9:16, 9:21",
            ),
            ("output_format", "gif", "output_format must be one of webp, jpg, png"),
        ];
        for (key, value, expected) in cases {
            assert_eq!(details(query(FLUX_SCHNELL, &[("prompt", "x"), (key, value)])), expected, "{key}={value}");
        }
        let too_long = "p".repeat(MAX_PROMPT_CHARS + 1);
        assert_eq!(details(query(FLUX_SCHNELL, &[("prompt", &too_long)])), "prompt must be at most 2000 characters");
    }

    #[test]
    fn query_for_other_models_converts_types_but_leaves_ranges_to_replicate() {
        let got = query("owner/other", &[("prompt", "x"), ("num_inference_steps", "28"), ("go_fast", "true")]).unwrap();
        assert_eq!(got, json!({"prompt": "x", "num_inference_steps": 28, "go_fast": true}));
        assert_eq!(
            details(query("owner/other", &[("prompt", "x"), ("seed", "abc")])),
            "seed must be an integer from 0 to 4294967295"
        );
    }

    #[test]
    fn allowed_values_describe_every_kind() {
        let prompt = Field { name: "prompt", kind: FieldKind::Prompt };
        assert_eq!(allowed_values(&prompt), "prompt must be a non-blank string of at most 2000 characters");
        assert_eq!(value_from_query(&prompt, " keep spaces ").unwrap(), Value::String(" keep spaces ".into()));
    }
}
