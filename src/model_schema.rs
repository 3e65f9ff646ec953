//! A model's inputs, read from the OpenAPI schema Replicate publishes for
//! each version, and the one validator every model's input goes through.
//!
//! Replicate serves a version's `openapi_schema` (a Cog OpenAPI document) in
//! `GET /v1/models/{owner}/{name}` (as `latest_version.openapi_schema`) and in
//! `GET /v1/models/{owner}/{name}/versions/{id}`. Its
//! `components.schemas.Input` lists the fields: `type`, `format: uri` for
//! files, `enum` (inline, or through `allOf: [{"$ref": …}]` to an enum
//! component), `minimum`/`maximum`, `default`, `required` and `x-order`.
//! `components.schemas.Output` says whether a prediction answers with a list
//! of files or a single one.
//!
//! Rules of this service on top of the schema:
//! - a `prompt` string must be non-blank and at most `MAX_PROMPT_CHARS` long;
//! - a `seed` without published bounds is a 32-bit unsigned integer;
//! - integers may be written as integral floats (`4.0`);
//! - a string enum whose values are all numbers (flux's `megapixels`) also
//!   takes the equal JSON number, and the value sent is the string;
//! - `null` counts as leaving a field out;
//! - the defaults of `SENT_DEFAULTS` are written into the input sent.

use crate::error::ApiError;
use serde::Serialize;
use serde_json::{Map, Number, Value};
use std::collections::BTreeSet;

/// The longest prompt accepted, in characters (Unicode scalar values).
pub const MAX_PROMPT_CHARS: usize = 2000;
/// The error of every invalid input.
pub use crate::error::INVALID_INPUT;
/// The error of a GET without a usable prompt, as the API contract words it.
pub const MISSING_PROMPT_QUERY: &str = "Missing 'prompt' query parameter";
/// The largest seed accepted when a schema does not bound it: seeds are
/// 32-bit unsigned integers.
pub const MAX_SEED: i64 = u32::MAX as i64;
/// Fields whose schema default is written into the input sent when the
/// caller leaves them out. `go_fast` changes what the model computes (fp8 or
/// bf16, and whether a seed reproduces an image), so the input kept with an
/// image says which mode made it.
pub const SENT_DEFAULTS: [&str; 1] = ["go_fast"];
/// The GET parameters of a model whose schema is not known, in the order the
/// API contract lists them; their types are flux-schnell's.
pub const QUERY_FIELDS: [&str; 10] = [
    "prompt",
    "aspect_ratio",
    "seed",
    "output_format",
    "num_inference_steps",
    "output_quality",
    "go_fast",
    "megapixels",
    "num_outputs",
    "disable_safety_checker",
];
/// The most input fields a schema may have.
pub const MAX_FIELDS: usize = 200;
/// The most values an enum may list.
pub const MAX_ENUM_VALUES: usize = 256;
/// The most outputs `expected_outputs` ever answers.
pub const MAX_OUTPUTS: usize = 16;
/// The most items an array input may hold.
pub const MAX_ARRAY_ITEMS: usize = 64;
/// The longest field name a schema may use.
const MAX_NAME_CHARS: usize = 64;
/// How deeply a schema's JSON may nest.
const MAX_DEPTH: usize = 16;
/// How many `$ref`/`allOf` hops a field may take to its definition.
const MAX_REF_HOPS: usize = 4;
/// Descriptions longer than this are cut.
const MAX_DESCRIPTION_CHARS: usize = 1000;
/// How many characters of a caller's unknown field name an error repeats.
const MAX_ECHOED_NAME_CHARS: usize = 64;
/// Where `$ref`s point.
const REF_PREFIX: &str = "#/components/schemas/";
/// flux-schnell's published schema (`components.schemas` only), the fallback
/// when no schema can be fetched.
const FLUX_SCHNELL_SCHEMA: &str = include_str!("schemas/flux-schnell.json");

/// What JSON values a field takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldKind {
    String,
    /// Any integral number; `4.0` counts and is sent as `4`.
    Integer,
    Number,
    Boolean,
    /// A list of items described by `Field::items`.
    Array,
    /// A type this service does not check (an object, a union): passed on
    /// for Replicate to judge.
    Any,
}

/// What a prediction answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    /// A list (`type: array`), usually of file URLs.
    List,
    /// One value (`type: string`, usually `format: uri`).
    Single,
    /// Anything else, or no `Output` schema.
    Unknown,
}

/// One input field of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub title: Option<String>,
    /// The published description, cut to 1000 characters.
    pub description: Option<String>,
    pub kind: FieldKind,
    /// For an array, what each item takes (its `name` is the array's).
    pub items: Option<Box<Field>>,
    pub required: bool,
    /// The published default, which Replicate applies when the field is left out.
    pub default: Option<Value>,
    pub minimum: Option<Number>,
    pub maximum: Option<Number>,
    /// The enum's values, or empty for any value of the kind.
    pub allowed: Vec<Value>,
    /// `format: uri`: an image (or other file) given as a URL; for an array,
    /// its items are.
    pub is_image: bool,
    /// The published `x-order`.
    pub order: Option<i64>,
}

/// The input fields of one model version, and what it outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSchema {
    /// Every field, in `x-order` (fields without one follow, shorter names
    /// first, as Replicate serves them).
    pub fields: Vec<Field>,
    pub output: OutputKind,
    /// `true`: every field is checked and unknown fields are refused.
    /// `false` (`permissive`): only the prompt is checked.
    pub strict: bool,
}

/// A field as `GET /models` describes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldSummary {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: FieldKind,
    /// For an array, its items' type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<FieldKind>,
    pub required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minimum: Option<Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum: Option<Number>,
    /// For the prompt: the longest accepted, in characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<Value>,
    pub image: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A model's inputs as `GET /models` describes them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SchemaSummary {
    pub fields: Vec<FieldSummary>,
    /// The names of the fields that take images.
    pub image_fields: Vec<String>,
    pub output: OutputKind,
}

/// The `openapi_schema` inside a Replicate answer: a version object
/// (`openapi_schema`), a model object (`latest_version.openapi_schema`), or
/// the document itself.
pub fn openapi_schema_of(body: &Value) -> Option<&Value> {
    let found = body.get("openapi_schema").or_else(|| body.get("latest_version")?.get("openapi_schema"));
    match found {
        Some(schema) if schema.is_object() => Some(schema),
        Some(_) => None,
        None => body.get("components").is_some().then_some(body),
    }
}

/// flux-schnell's schema, built from the copy compiled in.
pub fn flux_schnell_builtin() -> ModelSchema {
    serde_json::from_str::<Value>(FLUX_SCHNELL_SCHEMA)
        .map_err(|e| e.to_string())
        .and_then(|doc| ModelSchema::from_openapi(&doc))
        // The copy is checked by the tests; a schema that only checks the
        // prompt is the safe side all the same.
        .unwrap_or_else(|_| ModelSchema::permissive())
}

impl ModelSchema {
    /// Reads a version's `openapi_schema`. An error says what is missing or
    /// out of bounds.
    pub fn from_openapi(doc: &Value) -> Result<ModelSchema, String> {
        let schemas = doc
            .pointer("/components/schemas")
            .and_then(Value::as_object)
            .ok_or("the schema has no components.schemas object")?;
        let input = schemas.get("Input").ok_or("the schema has no components.schemas.Input")?;
        if !depth_within(input, MAX_DEPTH) {
            return Err(format!("Input nests more than {MAX_DEPTH} levels"));
        }
        let input = input.as_object().ok_or("Input is not an object")?;
        if input.get("type").is_some_and(|t| t != "object") {
            return Err("Input is not of type object".into());
        }
        let empty = Map::new();
        let properties = match input.get("properties") {
            None => &empty,
            Some(p) => p.as_object().ok_or("Input.properties is not an object")?,
        };
        if properties.len() > MAX_FIELDS {
            return Err(format!("Input has {} fields; at most {MAX_FIELDS} are accepted", properties.len()));
        }
        // Extended, not collected: collecting a set sorts first (one more
        // sort compiled in).
        let mut required = BTreeSet::new();
        match input.get("required") {
            None => {}
            Some(Value::Array(names)) => required.extend(names.iter().filter_map(Value::as_str)),
            Some(_) => return Err("Input.required is not a list".into()),
        }

        let mut fields = Vec::with_capacity(properties.len());
        for (name, definition) in properties {
            let field = read_field(name, definition, schemas, required.contains(name.as_str()))
                .map_err(|why| format!("field '{}': {why}", shorten(name)))?;
            fields.push(field);
        }
        // The key is total (names are unique): an unstable sort orders alike.
        fields.sort_unstable_by(|a, b| field_order(a).cmp(&field_order(b)));
        let output = read_output(schemas.get("Output"), schemas);
        Ok(ModelSchema { fields, output, strict: true })
    }

    /// The schema of a model whose schema is not known: only a `prompt` is
    /// required and checked, and every other field is passed on unchanged
    /// for Replicate to judge. The GET form takes `QUERY_FIELDS`, typed as
    /// flux-schnell's fields. No defaults are added.
    pub fn permissive() -> ModelSchema {
        let prompt = Field {
            name: "prompt".into(),
            title: None,
            description: None,
            kind: FieldKind::String,
            items: None,
            required: true,
            default: None,
            minimum: None,
            maximum: None,
            allowed: Vec::new(),
            is_image: false,
            order: Some(0),
        };
        let flux = serde_json::from_str::<Value>(FLUX_SCHNELL_SCHEMA)
            .ok()
            .and_then(|doc| ModelSchema::from_openapi(&doc).ok())
            .map(|schema| schema.fields)
            .unwrap_or_default();
        let fields = QUERY_FIELDS
            .iter()
            .map(|name| {
                let mut field = flux.iter().find(|f| f.name == *name).cloned().unwrap_or_else(|| Field {
                    name: (*name).to_owned(),
                    kind: FieldKind::Any,
                    required: false,
                    ..prompt.clone()
                });
                field.required = field.name == "prompt";
                field.default = None;
                field
            })
            .collect();
        ModelSchema { fields, output: OutputKind::Unknown, strict: false }
    }

    /// The field called `name`.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Every field name, in schema order.
    pub fn field_names(&self) -> Vec<&str> {
        self.fields.iter().map(|f| f.name.as_str()).collect()
    }

    /// The fields that take images (`format: uri`), in schema order.
    pub fn image_fields(&self) -> impl Iterator<Item = &Field> + '_ {
        self.fields.iter().filter(|f| f.is_image)
    }

    /// Whether a prediction answers with a list (rather than one value).
    pub fn is_list_output(&self) -> bool {
        self.output == OutputKind::List
    }

    /// The input to send to Replicate for `input`, or a 400 `Invalid input`
    /// naming the first problem.
    ///
    /// Unknown fields are refused (all of them named, with the allowed
    /// ones), then missing required fields, then each value is checked and
    /// normalised (integers written as integers, numeric enums as their
    /// string). A JSON `null` counts as leaving the field out. The defaults
    /// of `SENT_DEFAULTS` are added; Replicate's other defaults are not.
    pub fn validate(&self, input: &Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
        if !self.strict {
            check_prompt(input.get("prompt"))?;
            return Ok(input.clone());
        }
        let unknown: Vec<&str> = input.keys().map(String::as_str).filter(|k| self.field(k).is_none()).collect();
        if !unknown.is_empty() {
            return Err(unknown_fields(&unknown, &self.field_names()));
        }
        for field in self.fields.iter().filter(|f| f.required) {
            if is_absent(input.get(&field.name)) {
                return Err(invalid(format!("{} is required", field.name)));
            }
        }
        // The prompt's problems come first, as the API contract has them.
        let (prompts, others): (Vec<&Field>, Vec<&Field>) = self.fields.iter().partition(|f| f.is_prompt());
        let mut normalized = Map::new();
        for field in prompts.into_iter().chain(others) {
            let Some(value) = input.get(&field.name).filter(|v| !v.is_null()) else { continue };
            if field.is_prompt() {
                // The prompt's own messages say what is wrong with it.
                check_prompt(Some(value))?;
            }
            normalized.insert(field.name.clone(), field.normalize(value).ok_or_else(|| field.refusal())?);
        }
        for name in SENT_DEFAULTS {
            if let Some(default) = self.field(name).and_then(|f| f.default.as_ref()) {
                normalized.entry(name).or_insert_with(|| default.clone());
            }
        }
        Ok(normalized)
    }

    /// `input` with every published default filled in: the canonical form
    /// of a validated input (two inputs that run the same prediction give
    /// the same map).
    pub fn with_defaults(&self, input: &Map<String, Value>) -> Map<String, Value> {
        let mut full = input.clone();
        full.retain(|_, v| !v.is_null());
        for field in &self.fields {
            if let Some(default) = &field.default {
                full.entry(field.name.as_str()).or_insert_with(|| default.clone());
            }
        }
        full
    }

    /// The input given by a GET's query `pairs`, validated like `validate`.
    ///
    /// Keys named in `ignored` (credentials, the model's name) are skipped.
    /// Values are converted to the field's type (`true`/`false`/`1`/`0` for
    /// booleans, decimal integers and numbers); an array field takes one
    /// item per occurrence of its key. A value left empty counts as absent.
    /// When the schema requires a prompt, a missing or blank one is a 400
    /// `Missing 'prompt' query parameter`; an unknown or repeated key, or a
    /// value of the wrong type, is a 400 `Invalid input`.
    pub fn input_from_query(
        &self,
        pairs: &[(String, String)],
        ignored: &[&str],
    ) -> Result<Map<String, Value>, ApiError> {
        let pairs: Vec<(&str, &str)> =
            pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).filter(|(k, _)| !ignored.contains(k)).collect();

        let prompt_required = self.field("prompt").is_some_and(|f| f.required);
        if prompt_required && !pairs.iter().any(|(k, v)| *k == "prompt" && !v.trim().is_empty()) {
            return Err(ApiError::bad_request(MISSING_PROMPT_QUERY));
        }
        let unknown: Vec<&str> = pairs.iter().map(|(k, _)| *k).filter(|k| self.field(k).is_none()).collect();
        if !unknown.is_empty() {
            return Err(unknown_fields(&unknown, &self.field_names()));
        }

        let mut input = Map::new();
        for (key, raw) in pairs {
            let Some(field) = self.field(key) else { continue };
            let is_array = field.kind == FieldKind::Array;
            if !is_array && input.contains_key(key) {
                return Err(invalid(format!("{key} is given more than once")));
            }
            if !field.is_prompt() && raw.trim().is_empty() {
                continue;
            }
            if is_array {
                let item = match &field.items {
                    Some(item) => item.query_value(raw),
                    None => Some(Value::String(raw.to_owned())),
                };
                let item = item.ok_or_else(|| field.refusal())?;
                match input.entry(key).or_insert_with(|| Value::Array(Vec::new())) {
                    Value::Array(items) if items.len() < MAX_ARRAY_ITEMS => items.push(item),
                    _ => return Err(field.refusal()),
                }
            } else {
                let value = field.query_value(raw).ok_or_else(|| field.refusal())?;
                input.insert(key.to_owned(), value);
            }
        }
        self.validate(&input)
    }

    /// How many outputs a prediction of (validated) `input` makes:
    /// `num_outputs` when given, else its default, else 1; 1 for a model
    /// with a single output; never more than `MAX_OUTPUTS`.
    pub fn expected_outputs(&self, input: &Map<String, Value>) -> usize {
        if self.output == OutputKind::Single {
            return 1;
        }
        let default = self.field("num_outputs").and_then(|f| f.default.as_ref());
        let count = input.get("num_outputs").filter(|v| !v.is_null()).or(default).and_then(integer).unwrap_or(1);
        usize::try_from(count).unwrap_or(1).clamp(1, MAX_OUTPUTS)
    }

    /// The `output_format` of (validated) `input`, or its default.
    pub fn output_format<'a>(&'a self, input: &'a Map<String, Value>) -> Option<&'a str> {
        let default = self.field("output_format").and_then(|f| f.default.as_ref());
        input.get("output_format").and_then(Value::as_str).or_else(|| default.and_then(Value::as_str))
    }

    /// What `GET /models` says of this schema.
    pub fn summary(&self) -> SchemaSummary {
        SchemaSummary {
            fields: self.fields.iter().map(Field::summary).collect(),
            image_fields: self.image_fields().map(|f| f.name.clone()).collect(),
            output: self.output,
        }
    }
}

impl Field {
    /// Whether this is the prompt: a free string called `prompt`, which must
    /// be non-blank and at most `MAX_PROMPT_CHARS` long.
    pub fn is_prompt(&self) -> bool {
        self.name == "prompt" && self.kind == FieldKind::String && self.allowed.is_empty() && !self.is_image
    }

    /// What `GET /models` says of this field.
    pub fn summary(&self) -> FieldSummary {
        FieldSummary {
            name: self.name.clone(),
            kind: self.kind,
            items: self.items.as_ref().map(|i| i.kind),
            required: self.required,
            default: self.default.clone(),
            minimum: self.minimum.clone(),
            maximum: self.maximum.clone(),
            max_length: self.is_prompt().then_some(MAX_PROMPT_CHARS),
            allowed: self.allowed.clone(),
            image: self.is_image,
            description: self.description.clone(),
        }
    }

    /// What this field allows, as an error's details: `seed must be an
    /// integer from 0 to 4294967295`.
    pub fn allowed_values(&self) -> String {
        format!("{} must be {}", self.name, self.rule())
    }

    fn rule(&self) -> String {
        if self.is_prompt() {
            return format!("a non-blank string of at most {MAX_PROMPT_CHARS} characters");
        }
        if !self.allowed.is_empty() {
            let options: Vec<String> = self.allowed.iter().map(plain).collect();
            return format!("one of {}", options.join(", "));
        }
        match self.kind {
            FieldKind::String if self.is_image => "an http(s) or data: URL".into(),
            FieldKind::String => "a string".into(),
            FieldKind::Integer => format!("an integer{}", self.range()),
            FieldKind::Number => format!("a number{}", self.range()),
            FieldKind::Boolean => "true or false".into(),
            FieldKind::Array => {
                let each = self.items.as_ref().map(|i| format!(", each {}", i.rule())).unwrap_or_default();
                format!("a list of at most {MAX_ARRAY_ITEMS} items{each}")
            }
            FieldKind::Any => "a valid value".into(),
        }
    }

    fn range(&self) -> String {
        match (&self.minimum, &self.maximum) {
            (Some(min), Some(max)) => format!(" from {min} to {max}"),
            (Some(min), None) => format!(" of at least {min}"),
            (None, Some(max)) => format!(" of at most {max}"),
            (None, None) => String::new(),
        }
    }

    fn refusal(&self) -> ApiError {
        invalid(self.allowed_values())
    }

    /// The value to send for `value`, or `None` when this field refuses it.
    /// The prompt is checked by `check_prompt`, whose messages are finer.
    fn normalize(&self, value: &Value) -> Option<Value> {
        if self.is_prompt() {
            return check_prompt(Some(value)).ok().map(|()| value.clone());
        }
        match self.kind {
            FieldKind::String => match value {
                Value::String(_) if !self.allowed.is_empty() => self.allowed.iter().find(|o| *o == value).cloned(),
                Value::String(s) if self.is_image => is_url_shaped(s).then(|| value.clone()),
                Value::String(_) => Some(value.clone()),
                Value::Number(n) if numeric_options(&self.allowed) => {
                    let n = n.as_f64()?;
                    self.allowed.iter().find(|o| o.as_str().and_then(|o| o.parse::<f64>().ok()) == Some(n)).cloned()
                }
                _ => None,
            },
            FieldKind::Integer => {
                let n = integer(value)?;
                let fits = self.minimum.as_ref().is_none_or(|min| compare_int(n, min).is_ge())
                    && self.maximum.as_ref().is_none_or(|max| compare_int(n, max).is_le());
                let listed = self.allowed.is_empty() || self.allowed.iter().any(|o| integer(o) == Some(n));
                (fits && listed).then(|| Value::from(n))
            }
            FieldKind::Number => {
                let n = value.as_f64().filter(|n| n.is_finite())?;
                let fits = self.minimum.as_ref().and_then(Number::as_f64).is_none_or(|min| n >= min)
                    && self.maximum.as_ref().and_then(Number::as_f64).is_none_or(|max| n <= max);
                let listed = self.allowed.is_empty() || self.allowed.iter().any(|o| o.as_f64() == Some(n));
                (fits && listed).then(|| value.clone())
            }
            FieldKind::Boolean => value.as_bool().map(Value::Bool),
            FieldKind::Array => {
                let items = value.as_array().filter(|items| items.len() <= MAX_ARRAY_ITEMS)?;
                match &self.items {
                    Some(item) => items.iter().map(|v| item.normalize(v)).collect::<Option<Vec<_>>>().map(Value::Array),
                    None => Some(value.clone()),
                }
            }
            FieldKind::Any => (self.allowed.is_empty() || self.allowed.contains(value)).then(|| value.clone()),
        }
    }

    /// A query string converted to this field's JSON type; ranges and enums
    /// are left to `normalize`.
    fn query_value(&self, raw: &str) -> Option<Value> {
        let trimmed = raw.trim();
        match self.kind {
            FieldKind::String if self.is_prompt() => Some(Value::String(raw.to_owned())),
            FieldKind::String if self.is_image || !self.allowed.is_empty() => Some(Value::String(trimmed.to_owned())),
            FieldKind::String | FieldKind::Any => Some(Value::String(raw.to_owned())),
            FieldKind::Integer => trimmed.parse::<i64>().ok().map(Value::from),
            FieldKind::Number => match trimmed.parse::<i64>() {
                Ok(n) => Some(Value::from(n)),
                Err(_) => trimmed.parse::<f64>().ok().and_then(Number::from_f64).map(Value::Number),
            },
            FieldKind::Boolean => parse_query_bool(trimmed).map(Value::Bool),
            FieldKind::Array => None,
        }
    }
}

/// Reads one property of `Input`.
fn read_field(name: &str, definition: &Value, schemas: &Map<String, Value>, required: bool) -> Result<Field, String> {
    let name_ok = !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !name_ok {
        return Err(format!("a field name must be 1 to {MAX_NAME_CHARS} letters, digits, '_' or '-'"));
    }
    let definition = definition.as_object().ok_or("not an object")?;
    let merged = resolve(definition, schemas, 0)?;
    let mut field = read_type(name, &merged, schemas)?;
    field.required = required;
    field.title = merged.get("title").and_then(Value::as_str).map(str::to_owned);
    field.description = merged.get("description").and_then(Value::as_str).map(|d| cut(d, MAX_DESCRIPTION_CHARS));
    field.default = merged.get("default").filter(|d| !d.is_null()).cloned();
    field.order = merged.get("x-order").and_then(Value::as_i64);
    if field.name == "seed" && field.kind == FieldKind::Integer {
        field.minimum.get_or_insert_with(|| Number::from(0));
        field.maximum.get_or_insert_with(|| Number::from(MAX_SEED));
    }
    Ok(field)
}

/// The type, bounds, enum and format of a resolved definition.
fn read_type(name: &str, merged: &Map<String, Value>, schemas: &Map<String, Value>) -> Result<Field, String> {
    let allowed = match merged.get("enum") {
        None => Vec::new(),
        Some(Value::Array(values)) if values.len() > MAX_ENUM_VALUES => {
            return Err(format!("an enum lists {} values; at most {MAX_ENUM_VALUES} are accepted", values.len()));
        }
        Some(Value::Array(values)) => values.clone(),
        Some(_) => return Err("enum is not a list".into()),
    };
    let kind = match merged.get("type").and_then(Value::as_str) {
        Some("string") => FieldKind::String,
        Some("integer") => FieldKind::Integer,
        Some("number") => FieldKind::Number,
        Some("boolean") => FieldKind::Boolean,
        Some("array") => FieldKind::Array,
        // An enum without a type: the type its values share.
        None if !allowed.is_empty() => enum_kind(&allowed),
        _ => FieldKind::Any,
    };
    let bound = |key: &str| merged.get(key).and_then(Value::as_number).filter(|n| n.as_f64().is_some()).cloned();
    let items = match kind {
        FieldKind::Array => match merged.get("items").and_then(Value::as_object) {
            Some(items) => {
                let items = resolve(items, schemas, 1)?;
                let mut item = read_type(name, &items, schemas)?;
                if item.kind == FieldKind::Array {
                    // Lists of lists are passed on unchecked.
                    item = Field { kind: FieldKind::Any, items: None, is_image: false, ..item };
                }
                Some(Box::new(item))
            }
            None => None,
        },
        _ => None,
    };
    let is_uri = merged.get("format").and_then(Value::as_str) == Some("uri");
    let is_image = match kind {
        FieldKind::String => is_uri,
        FieldKind::Array => items.as_ref().is_some_and(|i| i.is_image),
        _ => false,
    };
    Ok(Field {
        name: name.to_owned(),
        title: None,
        description: None,
        kind,
        items,
        required: false,
        default: None,
        minimum: bound("minimum"),
        maximum: bound("maximum"),
        allowed,
        is_image,
        order: None,
    })
}

/// A definition with its `$ref`, `allOf` parts and single-variant
/// `anyOf`/`oneOf` merged in; the definition's own keys win.
fn resolve(
    definition: &Map<String, Value>,
    schemas: &Map<String, Value>,
    hops: usize,
) -> Result<Map<String, Value>, String> {
    if hops > MAX_REF_HOPS {
        return Err(format!("more than {MAX_REF_HOPS} nested references"));
    }
    let mut merged = Map::new();
    let merge = |part: &Value, merged: &mut Map<String, Value>| -> Result<(), String> {
        let part = part.as_object().ok_or("a schema part is not an object")?;
        merged.extend(resolve(part, schemas, hops + 1)?);
        Ok(())
    };
    if let Some(reference) = definition.get("$ref") {
        let target = reference
            .as_str()
            .and_then(|r| r.strip_prefix(REF_PREFIX))
            .and_then(|name| schemas.get(name))
            .ok_or_else(|| format!("unresolvable $ref {}", cut(&plain(reference), MAX_ECHOED_NAME_CHARS)))?;
        if !depth_within(target, MAX_DEPTH) {
            return Err(format!("a referenced schema nests more than {MAX_DEPTH} levels"));
        }
        merge(target, &mut merged)?;
    }
    if let Some(parts) = definition.get("allOf") {
        for part in parts.as_array().ok_or("allOf is not a list")? {
            merge(part, &mut merged)?;
        }
    }
    for union in ["anyOf", "oneOf"] {
        if let Some(variants) = definition.get(union) {
            let variants = variants.as_array().ok_or_else(|| format!("{union} is not a list"))?;
            let real: Vec<&Value> = variants.iter().filter(|v| v.get("type").is_none_or(|t| t != "null")).collect();
            // Several real variants: the type is left unchecked (`Any`).
            if let [only] = real.as_slice() {
                merge(only, &mut merged)?;
            }
        }
    }
    for (key, value) in definition {
        if !matches!(key.as_str(), "$ref" | "allOf" | "anyOf" | "oneOf") {
            merged.insert(key.clone(), value.clone());
        }
    }
    Ok(merged)
}

/// What the `Output` schema says; anything unreadable is `Unknown`.
fn read_output(output: Option<&Value>, schemas: &Map<String, Value>) -> OutputKind {
    let Some(output) = output.filter(|o| depth_within(o, MAX_DEPTH)).and_then(Value::as_object) else {
        return OutputKind::Unknown;
    };
    let Ok(merged) = resolve(output, schemas, 0) else { return OutputKind::Unknown };
    match merged.get("type").and_then(Value::as_str) {
        Some("array") => OutputKind::List,
        Some("string") => OutputKind::Single,
        _ => OutputKind::Unknown,
    }
}

/// The type an untyped enum's values share.
fn enum_kind(values: &[Value]) -> FieldKind {
    if values.iter().all(Value::is_string) {
        FieldKind::String
    } else if values.iter().all(|v| v.is_i64() || v.is_u64()) {
        FieldKind::Integer
    } else if values.iter().all(Value::is_number) {
        FieldKind::Number
    } else if values.iter().all(Value::is_boolean) {
        FieldKind::Boolean
    } else {
        FieldKind::Any
    }
}

/// Sort key: published `x-order` first, then the rest shorter names first.
fn field_order(field: &Field) -> (bool, i64, usize, &str) {
    (field.order.is_none(), field.order.unwrap_or(0), field.name.len(), field.name.as_str())
}

/// Whether `value` nests at most `limit` levels of arrays and objects.
fn depth_within(value: &Value, limit: usize) -> bool {
    match value {
        Value::Array(items) => limit > 0 && items.iter().all(|v| depth_within(v, limit - 1)),
        Value::Object(map) => limit > 0 && map.values().all(|v| depth_within(v, limit - 1)),
        _ => true,
    }
}

/// Whether every option is a string naming a number (flux's megapixels).
fn numeric_options(options: &[Value]) -> bool {
    !options.is_empty()
        && options.iter().all(|o| o.as_str().and_then(|s| s.parse::<f64>().ok()).is_some_and(f64::is_finite))
}

/// Whether `s` looks like a URL Replicate can read an image from.
fn is_url_shaped(s: &str) -> bool {
    let after = |prefix: &str| {
        s.get(..prefix.len()).filter(|head| head.eq_ignore_ascii_case(prefix)).and_then(|_| s.get(prefix.len()..))
    };
    if let Some(rest) = after("https://").or_else(|| after("http://")) {
        !rest.is_empty() && !rest.starts_with('/') && !rest.chars().any(|c| c.is_whitespace() || c.is_control())
    } else if let Some(rest) = after("data:") {
        rest.contains(',')
    } else {
        false
    }
}

/// `n` against a bound that may not fit an `i64`.
fn compare_int(n: i64, bound: &Number) -> std::cmp::Ordering {
    if let Some(b) = bound.as_i64() {
        n.cmp(&b)
    } else if bound.is_u64() {
        std::cmp::Ordering::Less
    } else {
        let b = bound.as_f64().unwrap_or(f64::NAN);
        (n as f64).partial_cmp(&b).unwrap_or(std::cmp::Ordering::Less)
    }
}

fn is_absent(value: Option<&Value>) -> bool {
    value.is_none_or(Value::is_null)
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

/// A value as an error shows it: strings without quotes.
fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn unknown_fields(unknown: &[&str], allowed: &[&str]) -> ApiError {
    let names: Vec<String> = unknown.iter().map(|n| format!("'{}'", shorten(n))).collect();
    let noun = if names.len() == 1 { "field" } else { "fields" };
    invalid(format!("Unknown {noun} {}; allowed: {}", names.join(", "), allowed.join(", ")))
}

/// A caller-chosen name cut to `MAX_ECHOED_NAME_CHARS` characters.
fn shorten(name: &str) -> String {
    match name.char_indices().nth(MAX_ECHOED_NAME_CHARS) {
        Some((cut, _)) => format!("{}…", name.get(..cut).unwrap_or_default()),
        None => name.to_owned(),
    }
}

/// `text` cut to `max` characters.
fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => text.get(..end).unwrap_or_default().to_owned(),
        None => text.to_owned(),
    }
}

fn invalid(details: impl Into<String>) -> ApiError {
    ApiError::bad_request(INVALID_INPUT).with_details(details)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FLUX_SCHNELL: &str = "black-forest-labs/flux-schnell";
    const FLUX_SCHNELL_FIXTURE: &str = include_str!("../tests/fixtures/schemas/flux-schnell.json");
    const FLUX_DEV_FIXTURE: &str = include_str!("../tests/fixtures/schemas/flux-dev.json");
    const FLUX_PRO_FIXTURE: &str = include_str!("../tests/fixtures/schemas/flux-1.1-pro.json");
    const KONTEXT_FIXTURE: &str = include_str!("../tests/fixtures/schemas/flux-kontext-pro.json");
    const FILL_FIXTURE: &str = include_str!("../tests/fixtures/schemas/flux-fill-pro.json");
    const SDXL_FIXTURE: &str = include_str!("../tests/fixtures/schemas/sdxl.json");
    const INPAINTING_FIXTURE: &str = include_str!("../tests/fixtures/schemas/stable-diffusion-inpainting.json");
    const ESRGAN_FIXTURE: &str = include_str!("../tests/fixtures/schemas/real-esrgan.json");
    /// flux-schnell's fields in published `x-order`.
    const ALLOWED: &str = "prompt, aspect_ratio, num_outputs, num_inference_steps, seed, output_format, \
                           output_quality, disable_safety_checker, go_fast, megapixels";
    const ASPECT_RATIOS: &[&str] = &["1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21"];
    const OUTPUT_FORMATS: &[&str] = &["webp", "jpg", "png"];
    const IGNORED: &[&str] = &["replicate_token", "model"];

    fn parse(fixture: &str) -> ModelSchema {
        ModelSchema::from_openapi(&serde_json::from_str(fixture).unwrap()).unwrap()
    }

    /// flux-schnell's published schema; any other model stands for one whose
    /// schema is not known.
    fn schema_for(model: &str) -> ModelSchema {
        if model == FLUX_SCHNELL {
            parse(FLUX_SCHNELL_FIXTURE)
        } else {
            ModelSchema::permissive()
        }
    }

    fn validate(model: &str, input: &Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
        schema_for(model).validate(input)
    }

    fn input_from_query(model: &str, pairs: &[(String, String)]) -> Result<Map<String, Value>, ApiError> {
        schema_for(model).input_from_query(pairs, IGNORED)
    }

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

    // The behaviour of the hand-written flux-schnell table, from the
    // published schema.

    #[test]
    fn flux_schnell_fields_come_in_schema_order() {
        assert_eq!(schema_for(FLUX_SCHNELL).field_names().join(", "), ALLOWED);
        assert!(schema_for(FLUX_SCHNELL).strict);
        assert_eq!(ModelSchema::permissive().field_names(), QUERY_FIELDS.to_vec());
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
        assert_eq!(got, format!("Unknown field 'lora'; allowed: {}", QUERY_FIELDS.join(", ")));
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
        let schema = schema_for(FLUX_SCHNELL);
        let prompt = schema.field("prompt").unwrap();
        assert_eq!(prompt.allowed_values(), "prompt must be a non-blank string of at most 2000 characters");
        assert_eq!(prompt.query_value(" keep spaces ").unwrap(), Value::String(" keep spaces ".into()));
    }

    // Every published schema in the fixtures.

    /// One model's fixture and what it must do.
    struct Case {
        fixture: &'static str,
        valid: Value,
        sent: Value,
        output: OutputKind,
        images: &'static [&'static str],
        enum_violation: (&'static str, Value, &'static str),
        range_violation: (&'static str, Value, &'static str),
    }

    fn cases() -> Vec<Case> {
        let image = "https://replicate.delivery/pbxt/a/in.png";
        vec![
            Case {
                fixture: FLUX_SCHNELL_FIXTURE,
                valid: json!({"prompt": "a cat", "megapixels": 0.25}),
                sent: json!({"prompt": "a cat", "megapixels": "0.25", "go_fast": true}),
                output: OutputKind::List,
                images: &[],
                enum_violation: ("output_format", json!("gif"), "output_format must be one of webp, jpg, png"),
                range_violation: ("num_outputs", json!(5), "num_outputs must be an integer from 1 to 4"),
            },
            Case {
                fixture: FLUX_DEV_FIXTURE,
                valid: json!({"prompt": "a cat", "image": image, "prompt_strength": 0.5, "guidance": 3.5}),
                sent: json!({"prompt": "a cat", "image": image, "prompt_strength": 0.5, "guidance": 3.5, "go_fast": true}),
                output: OutputKind::List,
                images: &["image"],
                enum_violation: ("megapixels", json!("2"), "megapixels must be one of 1, 0.25"),
                range_violation: ("guidance", json!(10.5), "guidance must be a number from 0 to 10"),
            },
            Case {
                fixture: FLUX_PRO_FIXTURE,
                valid: json!({"prompt": "a cat", "aspect_ratio": "custom", "width": 512, "height": 768.0}),
                sent: json!({"prompt": "a cat", "aspect_ratio": "custom", "width": 512, "height": 768}),
                output: OutputKind::Single,
                images: &["image_prompt"],
                enum_violation: (
                    "aspect_ratio",
                    json!("21:9"),
                    "aspect_ratio must be one of custom, 1:1, 16:9, 3:2, 2:3, 4:5, 5:4, 9:16, 3:4, 4:3",
                ),
                range_violation: ("width", json!(100), "width must be an integer from 256 to 1440"),
            },
            Case {
                fixture: KONTEXT_FIXTURE,
                valid: json!({"prompt": "make it blue", "input_image": "data:image/png;base64,iVBORw0K", "seed": null}),
                sent: json!({"prompt": "make it blue", "input_image": "data:image/png;base64,iVBORw0K"}),
                output: OutputKind::Single,
                images: &["input_image"],
                enum_violation: ("output_format", json!("webp"), "output_format must be one of jpg, png"),
                range_violation: ("safety_tolerance", json!(7), "safety_tolerance must be an integer from 0 to 6"),
            },
            Case {
                fixture: FILL_FIXTURE,
                valid: json!({"prompt": "a hat", "image": image, "mask": image, "outpaint": "Make square"}),
                sent: json!({"prompt": "a hat", "image": image, "mask": image, "outpaint": "Make square"}),
                output: OutputKind::Single,
                images: &["image", "mask"],
                enum_violation: (
                    "outpaint",
                    json!("Zoom out 3x"),
                    "outpaint must be one of None, Zoom out 1.5x, Zoom out 2x, Make square, Left outpaint, \
                     Right outpaint, Top outpaint, Bottom outpaint",
                ),
                range_violation: ("guidance", json!(1), "guidance must be a number from 1.5 to 100"),
            },
            Case {
                fixture: SDXL_FIXTURE,
                valid: json!({"prompt": "a cat", "negative_prompt": "", "refine": "expert_ensemble_refiner"}),
                sent: json!({"prompt": "a cat", "negative_prompt": "", "refine": "expert_ensemble_refiner"}),
                output: OutputKind::List,
                images: &["image", "mask"],
                enum_violation: (
                    "scheduler",
                    json!("k_euler"),
                    "scheduler must be one of DDIM, DPMSolverMultistep, HeunDiscrete, KarrasDPM, K_EULER_ANCESTRAL, \
                     K_EULER, PNDM",
                ),
                range_violation: ("lora_scale", json!(-0.1), "lora_scale must be a number from 0 to 1"),
            },
            Case {
                fixture: INPAINTING_FIXTURE,
                valid: json!({"image": image, "mask": image, "prompt": "a cat", "width": 512.0, "height": 768}),
                sent: json!({"image": image, "mask": image, "prompt": "a cat", "width": 512, "height": 768}),
                output: OutputKind::List,
                images: &["image", "mask"],
                enum_violation: (
                    "width",
                    json!(500),
                    "width must be one of 64, 128, 192, 256, 320, 384, 448, 512, 576, 640, 704, 768, 832, 896, 960, \
                     1024",
                ),
                range_violation: ("guidance_scale", json!(25), "guidance_scale must be a number from 1 to 20"),
            },
            Case {
                fixture: ESRGAN_FIXTURE,
                valid: json!({"image": image, "scale": 2}),
                sent: json!({"image": image, "scale": 2}),
                output: OutputKind::Single,
                images: &["image"],
                // No enum: the boolean stands in for it.
                enum_violation: ("face_enhance", json!("no"), "face_enhance must be true or false"),
                range_violation: ("scale", json!(10.01), "scale must be a number from 0 to 10"),
            },
        ]
    }

    #[test]
    fn every_fixture_parses_and_checks_its_fields() {
        for case in cases() {
            let schema = parse(case.fixture);
            let name = schema.field_names().join(",");
            assert_eq!(schema.output, case.output, "{name}");
            assert_eq!(schema.is_list_output(), case.output == OutputKind::List, "{name}");
            let images: Vec<&str> = schema.image_fields().map(|f| f.name.as_str()).collect();
            assert_eq!(images, case.images, "{name}");
            assert_eq!(schema.validate(&map(case.valid.clone())).map(Value::Object).unwrap(), case.sent, "{name}");

            let mut outside = case.valid.clone();
            outside["not_a_field"] = json!(1);
            let got = details(schema.validate(&map(outside)).map(Value::Object));
            assert_eq!(got, format!("Unknown field 'not_a_field'; allowed: {}", schema.field_names().join(", ")));

            for (field, value, expected) in [case.enum_violation, case.range_violation] {
                let mut input = case.valid.clone();
                input[field] = value;
                assert_eq!(details(schema.validate(&map(input)).map(Value::Object)), expected, "{name}");
            }
        }
    }

    #[test]
    fn fixtures_keep_the_published_order() {
        assert_eq!(
            parse(FLUX_DEV_FIXTURE).field_names().join(", "),
            "prompt, aspect_ratio, image, prompt_strength, num_outputs, num_inference_steps, guidance, seed, \
             output_format, output_quality, disable_safety_checker, go_fast, megapixels"
        );
        // Only the enums carry x-order; the rest come as Replicate serves them.
        assert_eq!(
            parse(FLUX_PRO_FIXTURE).field_names().join(", "),
            "aspect_ratio, output_format, seed, width, height, prompt, image_prompt, output_quality, \
             safety_tolerance, prompt_upsampling"
        );
        assert_eq!(parse(ESRGAN_FIXTURE).field_names(), ["image", "scale", "face_enhance"]);
        assert_eq!(parse(SDXL_FIXTURE).fields.len(), 19);
    }

    #[test]
    fn fields_read_every_published_attribute() {
        let flux = parse(FLUX_SCHNELL_FIXTURE);
        let megapixels = flux.field("megapixels").unwrap();
        assert_eq!(megapixels.kind, FieldKind::String);
        assert_eq!(megapixels.allowed, [json!("1"), json!("0.25")]);
        assert_eq!(megapixels.default, Some(json!("1")));
        assert_eq!(megapixels.order, Some(9));
        assert_eq!(megapixels.title.as_deref(), Some("megapixels"));
        let steps = flux.field("num_inference_steps").unwrap();
        assert_eq!((steps.minimum.clone(), steps.maximum.clone()), (Some(1.into()), Some(4.into())));
        assert_eq!(steps.title.as_deref(), Some("Num Inference Steps"));
        assert!(steps.description.as_deref().unwrap().starts_with("Number of denoising steps."));
        assert!(flux.field("prompt").unwrap().required);
        assert!(!flux.field("seed").unwrap().required);
        // A seed the schema leaves unbounded is a 32-bit unsigned integer.
        let seed = flux.field("seed").unwrap();
        assert_eq!((seed.minimum.clone(), seed.maximum.clone()), (Some(0.into()), Some(MAX_SEED.into())));

        let dev = parse(FLUX_DEV_FIXTURE);
        let strength = dev.field("prompt_strength").unwrap();
        assert_eq!((strength.kind, strength.default.clone()), (FieldKind::Number, Some(json!(0.8))));
        let inpainting = parse(INPAINTING_FIXTURE);
        let width = inpainting.field("width").unwrap();
        assert_eq!(
            (width.kind, width.allowed.len(), width.default.clone()),
            (FieldKind::Integer, 16, Some(json!(512)))
        );
        assert!(inpainting.field("mask").unwrap().required && inpainting.field("image").unwrap().required);
        let sdxl = parse(SDXL_FIXTURE);
        assert_eq!(sdxl.field("prompt").unwrap().default, Some(json!("An astronaut riding a rainbow unicorn")));
        assert!(sdxl.fields.iter().all(|f| !f.required));
    }

    #[test]
    fn builtin_is_the_published_schema() {
        let builtin = flux_schnell_builtin();
        assert_eq!(builtin, parse(FLUX_SCHNELL_FIXTURE));
        assert!(builtin.strict);
        // It ships in the worker: minimised, with nothing the parser skips.
        assert!(FLUX_SCHNELL_SCHEMA.len() < 2600, "{}", FLUX_SCHNELL_SCHEMA.len());
        assert!(!FLUX_SCHNELL_SCHEMA.contains('\n') && !FLUX_SCHNELL_SCHEMA.contains(": "));
        let doc: Value = serde_json::from_str(FLUX_SCHNELL_SCHEMA).unwrap();
        let fixture: Value = serde_json::from_str(FLUX_SCHNELL_FIXTURE).unwrap();
        assert_eq!(doc["components"]["schemas"]["Input"], fixture["components"]["schemas"]["Input"]);
    }

    #[test]
    fn required_fields_and_models_without_a_prompt() {
        let fill = parse(FILL_FIXTURE);
        assert_eq!(details(fill.validate(&map(json!({"prompt": "x"}))).map(Value::Object)), "image is required");
        assert_eq!(
            details(fill.validate(&map(json!({"prompt": "x", "image": null}))).map(Value::Object)),
            "image is required"
        );
        let inpainting = parse(INPAINTING_FIXTURE);
        let image = "https://a.example/i.png";
        let got = inpainting.validate(&map(json!({"image": image}))).map(Value::Object);
        assert_eq!(details(got), "mask is required");

        let esrgan = parse(ESRGAN_FIXTURE);
        assert_eq!(details(esrgan.validate(&Map::new()).map(Value::Object)), "image is required");
        let got = details(esrgan.validate(&map(json!({"image": image, "prompt": "x"}))).map(Value::Object));
        assert_eq!(got, "Unknown field 'prompt'; allowed: image, scale, face_enhance");
        // A GET for a model without a prompt needs none.
        let pairs = [("image".to_owned(), image.to_owned()), ("scale".to_owned(), "2.5".to_owned())];
        assert_eq!(
            Value::Object(esrgan.input_from_query(&pairs, IGNORED).unwrap()),
            json!({"image": image, "scale": 2.5})
        );
        let got = esrgan.input_from_query(&[("scale".to_owned(), "2".to_owned())], IGNORED).unwrap_err();
        assert_eq!(got.details.as_deref(), Some("image is required"));
    }

    #[test]
    fn an_optional_prompt_is_still_checked_when_given() {
        let sdxl = parse(SDXL_FIXTURE);
        assert_eq!(sdxl.validate(&Map::new()).unwrap(), Map::new());
        assert_eq!(details(sdxl.validate(&map(json!({"prompt": " "}))).map(Value::Object)), "prompt must not be blank");
        let long = json!({"prompt": "p".repeat(MAX_PROMPT_CHARS + 1)});
        assert_eq!(details(sdxl.validate(&map(long)).map(Value::Object)), "prompt must be at most 2000 characters");
        // Other strings may be blank.
        assert!(sdxl.validate(&map(json!({"negative_prompt": ""}))).is_ok());
        // A GET without a prompt is fine when the schema has a default for it.
        assert_eq!(sdxl.input_from_query(&[], IGNORED).unwrap(), Map::new());
        assert_eq!(
            details(sdxl.validate(&map(json!({"refine_steps": "x"}))).map(Value::Object)),
            "refine_steps must be an integer"
        );
        assert!(sdxl.validate(&map(json!({"refine_steps": 10}))).is_ok());
    }

    #[test]
    fn image_inputs_must_look_like_urls() {
        let dev = parse(FLUX_DEV_FIXTURE);
        let check = |url: &str| dev.validate(&map(json!({"prompt": "x", "image": url}))).map(Value::Object);
        for good in ["https://a.example/x.png", "HTTP://a.example/x?y=1", "data:image/png;base64,iVBORw0K", "data:,x"] {
            assert!(check(good).is_ok(), "{good}");
        }
        for bad in ["", "https://", "https:///x", "ftp://a/x.png", "a.example/x.png", "http://a b", "data:image/png"] {
            assert_eq!(details(check(bad)), "image must be an http(s) or data: URL", "{bad}");
        }
        let number = dev.validate(&map(json!({"prompt": "x", "image": 5}))).map(Value::Object);
        assert_eq!(details(number), "image must be an http(s) or data: URL");
        // From a query, the URL is trimmed.
        let pairs =
            [("prompt".to_owned(), "x".to_owned()), ("image".to_owned(), " https://a.example/x.png ".to_owned())];
        assert_eq!(dev.input_from_query(&pairs, IGNORED).unwrap()["image"], json!("https://a.example/x.png"));
    }

    #[test]
    fn query_types_for_other_schemas() {
        let dev = parse(FLUX_DEV_FIXTURE);
        let pairs: Vec<(String, String)> =
            [("prompt", "x"), ("guidance", "3"), ("prompt_strength", "0.25"), ("model", "dev")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let got = dev.input_from_query(&pairs, IGNORED).unwrap();
        assert_eq!(Value::Object(got), json!({"prompt": "x", "guidance": 3, "prompt_strength": 0.25, "go_fast": true}));
        for bad in ["NaN", "inf", "three", "1e400"] {
            let pairs = [("prompt".to_owned(), "x".to_owned()), ("guidance".to_owned(), bad.to_owned())];
            let err = dev.input_from_query(&pairs, IGNORED).unwrap_err();
            assert_eq!(err.details.as_deref(), Some("guidance must be a number from 0 to 10"), "{bad}");
        }
        let inpainting = parse(INPAINTING_FIXTURE);
        let pairs = [
            ("image", "https://a/i.png"),
            ("mask", "https://a/m.png"),
            ("width", "256"),
            ("negative_prompt", " dark "),
        ];
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let got = inpainting.input_from_query(&pairs, IGNORED).unwrap();
        assert_eq!((got["width"].clone(), got["negative_prompt"].clone()), (json!(256), json!(" dark ")));
    }

    #[test]
    fn defaults_fill_the_canonical_form() {
        let flux = parse(FLUX_SCHNELL_FIXTURE);
        let sent = flux.validate(&map(json!({"prompt": "x", "seed": 7}))).unwrap();
        assert_eq!(
            Value::Object(flux.with_defaults(&sent)),
            json!({
                "prompt": "x", "seed": 7, "aspect_ratio": "1:1", "num_outputs": 1, "num_inference_steps": 4,
                "output_format": "webp", "output_quality": 80, "disable_safety_checker": false, "go_fast": true,
                "megapixels": "1",
            })
        );
        // Giving a default explicitly runs the same prediction.
        let explicit = flux.validate(&map(json!({"prompt": "x", "seed": 7, "output_format": "webp"}))).unwrap();
        assert_eq!(flux.with_defaults(&explicit), flux.with_defaults(&sent));
        let esrgan = parse(ESRGAN_FIXTURE);
        let got = esrgan.with_defaults(&map(json!({"image": "https://a/b.png", "scale": null})));
        assert_eq!(Value::Object(got), json!({"image": "https://a/b.png", "scale": 4, "face_enhance": false}));
        let open = ModelSchema::permissive();
        assert_eq!(Value::Object(open.with_defaults(&map(json!({"prompt": "x"})))), json!({"prompt": "x"}));
    }

    #[test]
    fn expected_outputs_and_output_format() {
        let flux = parse(FLUX_SCHNELL_FIXTURE);
        assert_eq!(flux.expected_outputs(&map(json!({"prompt": "x", "num_outputs": 3}))), 3);
        assert_eq!(flux.expected_outputs(&map(json!({"prompt": "x"}))), 1);
        assert_eq!(flux.expected_outputs(&map(json!({"prompt": "x", "num_outputs": null}))), 1);
        assert_eq!(flux.output_format(&map(json!({"prompt": "x"}))), Some("webp"));
        assert_eq!(flux.output_format(&map(json!({"output_format": "png"}))), Some("png"));
        let pro = parse(FLUX_PRO_FIXTURE);
        assert_eq!(pro.expected_outputs(&map(json!({"num_outputs": 4}))), 1);
        assert_eq!(parse(ESRGAN_FIXTURE).output_format(&Map::new()), None);
        assert_eq!(parse(KONTEXT_FIXTURE).output_format(&Map::new()), Some("png"));
        let open = ModelSchema::permissive();
        assert_eq!(open.expected_outputs(&map(json!({"num_outputs": 1000}))), MAX_OUTPUTS);
        assert_eq!(open.expected_outputs(&map(json!({"num_outputs": -3}))), 1);
        assert_eq!(open.expected_outputs(&map(json!({"num_outputs": "2"}))), 1);
        assert_eq!(open.output_format(&Map::new()), None);
    }

    #[test]
    fn summary_describes_every_field() {
        let summary = serde_json::to_value(parse(FLUX_DEV_FIXTURE).summary()).unwrap();
        assert_eq!(summary["output"], "list");
        assert_eq!(summary["image_fields"], json!(["image"]));
        let fields = summary["fields"].as_array().unwrap();
        assert_eq!(fields.len(), 13);
        assert_eq!(
            fields[0],
            json!({"name": "prompt", "type": "string", "required": true, "max_length": 2000, "image": false,
                   "description": "Prompt for generated image"})
        );
        let by_name = |n: &str| fields.iter().find(|f| f["name"] == n).unwrap().clone();
        assert_eq!(by_name("image")["image"], true);
        assert_eq!(by_name("megapixels")["allowed"], json!(["1", "0.25"]));
        assert_eq!(by_name("megapixels")["default"], "1");
        assert_eq!(by_name("seed")["minimum"], 0);
        assert_eq!(by_name("seed")["maximum"], 4294967295u64);
        assert_eq!(by_name("guidance")["maximum"], 10);
        assert_eq!(by_name("prompt_strength")["default"], 0.8);
        assert!(by_name("seed").get("default").is_none() && by_name("seed").get("allowed").is_none());
        let single = serde_json::to_value(parse(ESRGAN_FIXTURE).summary()).unwrap();
        assert_eq!(single["output"], "single");
    }

    // Reading schemas: references, unions, arrays, and refusals.

    fn doc(input: Value, extra: Value) -> Value {
        let mut schemas = json!({"Input": input, "Output": {"type": "array", "items": {"type": "string"}}});
        for (k, v) in extra.as_object().cloned().unwrap_or_default() {
            schemas[k] = v;
        }
        json!({"components": {"schemas": schemas}})
    }

    fn props(properties: Value) -> Value {
        json!({"type": "object", "properties": properties})
    }

    #[test]
    fn references_unions_and_untyped_enums_are_resolved() {
        let d = doc(
            props(json!({
                "style": {"$ref": "#/components/schemas/style", "default": "b", "x-order": 0},
                "count": {"anyOf": [{"type": "integer", "maximum": 3}, {"type": "null"}], "x-order": 1},
                "mode": {"enum": [1, 2], "x-order": 2},
                "either": {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-order": 3},
                "chain": {"allOf": [{"$ref": "#/components/schemas/outer"}], "x-order": 4},
            })),
            json!({
                "style": {"type": "string", "enum": ["a", "b"]},
                "outer": {"allOf": [{"$ref": "#/components/schemas/inner"}], "description": "outer"},
                "inner": {"type": "number", "minimum": 0.5},
            }),
        );
        let schema = ModelSchema::from_openapi(&d).unwrap();
        let style = schema.field("style").unwrap();
        assert_eq!((style.kind, style.allowed.len(), style.default.clone()), (FieldKind::String, 2, Some(json!("b"))));
        let count = schema.field("count").unwrap();
        assert_eq!((count.kind, count.maximum.clone()), (FieldKind::Integer, Some(3.into())));
        assert_eq!(schema.field("mode").unwrap().kind, FieldKind::Integer);
        assert_eq!(schema.field("either").unwrap().kind, FieldKind::Any);
        let chain = schema.field("chain").unwrap();
        assert_eq!((chain.kind, chain.description.as_deref()), (FieldKind::Number, Some("outer")));
        assert_eq!(schema.output, OutputKind::List);

        let check = |input: Value| schema.validate(&map(input)).map(Value::Object);
        assert_eq!(check(json!({"mode": 2.0, "either": {"x": 1}})).unwrap(), json!({"mode": 2, "either": {"x": 1}}));
        assert_eq!(details(check(json!({"mode": 3}))), "mode must be one of 1, 2");
        assert_eq!(details(check(json!({"count": 4}))), "count must be an integer of at most 3");
        assert_eq!(details(check(json!({"chain": 0.1}))), "chain must be a number of at least 0.5");
        // No go_fast here, and no prompt: nothing is added.
        assert_eq!(check(json!({})).unwrap(), json!({}));
    }

    #[test]
    fn array_inputs() {
        let d = doc(
            props(json!({
                "prompt": {"type": "string", "x-order": 0},
                "image_input": {"type": "array", "items": {"type": "string", "format": "uri"}, "x-order": 1},
                "weights": {"type": "array", "items": {"type": "number", "maximum": 1}, "x-order": 2},
                "nested": {"type": "array", "items": {"type": "array"}, "x-order": 3},
            })),
            json!({}),
        );
        let schema = ModelSchema::from_openapi(&d).unwrap();
        assert_eq!(schema.image_fields().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["image_input"]);
        let input =
            json!({"prompt": "x", "image_input": ["https://a/1.png", "data:,x"], "weights": [0.5, 1], "nested": [[1]]});
        assert_eq!(schema.validate(&map(input.clone())).map(Value::Object).unwrap(), input);
        let check = |input: Value| schema.validate(&map(input)).map(Value::Object);
        let urls = "image_input must be a list of at most 64 items, each an http(s) or data: URL";
        assert_eq!(details(check(json!({"image_input": ["ftp://a"]}))), urls);
        assert_eq!(details(check(json!({"image_input": "https://a/1.png"}))), urls);
        assert_eq!(details(check(json!({"image_input": vec!["data:,x"; MAX_ARRAY_ITEMS + 1]}))), urls);
        assert_eq!(
            details(check(json!({"weights": [2]}))),
            "weights must be a list of at most 64 items, each a number of at most 1"
        );

        // In a query, each occurrence is one item.
        let pairs: Vec<(String, String)> =
            [("prompt", "x"), ("image_input", "https://a/1.png"), ("image_input", "https://a/2.png")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let got = schema.input_from_query(&pairs, IGNORED).unwrap();
        assert_eq!(got["image_input"], json!(["https://a/1.png", "https://a/2.png"]));
        let many: Vec<(String, String)> = std::iter::once(("prompt".to_owned(), "x".to_owned()))
            .chain((0..=MAX_ARRAY_ITEMS).map(|_| ("weights".to_owned(), "0.5".to_owned())))
            .collect();
        assert!(schema.input_from_query(&many, IGNORED).is_err());
    }

    #[test]
    fn outputs_are_read_from_the_output_schema() {
        let with_output = |output: Value| {
            let mut d = doc(props(json!({})), json!({}));
            d["components"]["schemas"]["Output"] = output;
            ModelSchema::from_openapi(&d).unwrap().output
        };
        assert_eq!(with_output(json!({"type": "string", "format": "uri"})), OutputKind::Single);
        let iterator =
            json!({"type": "array", "items": {"type": "string", "format": "uri"}, "x-cog-array-type": "iterator"});
        assert_eq!(with_output(iterator), OutputKind::List);
        assert_eq!(with_output(json!({"type": "object"})), OutputKind::Unknown);
        assert_eq!(with_output(json!({"$ref": "#/components/schemas/missing"})), OutputKind::Unknown);
        assert_eq!(with_output(json!(null)), OutputKind::Unknown);
        let mut d = doc(props(json!({})), json!({}));
        d["components"]["schemas"].as_object_mut().unwrap().remove("Output");
        assert_eq!(ModelSchema::from_openapi(&d).unwrap().output, OutputKind::Unknown);
    }

    #[test]
    fn absurd_or_broken_schemas_are_refused() {
        let refused = |d: Value| ModelSchema::from_openapi(&d).unwrap_err();
        assert_eq!(refused(json!(null)), "the schema has no components.schemas object");
        assert_eq!(refused(json!({"components": {"schemas": {}}})), "the schema has no components.schemas.Input");
        assert_eq!(refused(doc(json!([]), json!({}))), "Input is not an object");
        assert_eq!(refused(doc(json!({"type": "string"}), json!({}))), "Input is not of type object");
        assert_eq!(refused(doc(json!({"properties": []}), json!({}))), "Input.properties is not an object");
        assert_eq!(
            refused(doc(json!({"properties": {}, "required": "prompt"}), json!({}))),
            "Input.required is not a list"
        );

        let many: Map<String, Value> = (0..=MAX_FIELDS).map(|i| (format!("f{i}"), json!({"type": "string"}))).collect();
        assert!(refused(doc(props(Value::Object(many)), json!({}))).contains("at most 200"));
        let mut deep = json!({"type": "string"});
        for _ in 0..MAX_DEPTH {
            deep = json!({"allOf": [deep]});
        }
        assert!(refused(doc(props(json!({"x": deep})), json!({}))).contains("nests more than"));
        let values: Vec<Value> = (0..=MAX_ENUM_VALUES).map(Value::from).collect();
        assert!(refused(doc(props(json!({"x": {"enum": values}})), json!({}))).starts_with("field 'x': an enum lists"));
        assert!(refused(doc(props(json!({"bad name": {"type": "string"}})), json!({}))).starts_with("field 'bad name'"));
        assert!(refused(doc(props(json!({"x": "string"})), json!({}))).ends_with("not an object"));
        let dangling = props(json!({"x": {"allOf": [{"$ref": "#/components/schemas/nowhere"}]}}));
        assert_eq!(refused(doc(dangling, json!({}))), "field 'x': unresolvable $ref #/components/schemas/nowhere");
        let outside = props(json!({"x": {"$ref": "https://example.com/s.json"}}));
        assert!(refused(doc(outside, json!({}))).contains("unresolvable $ref"));
        let cycle = props(json!({"x": {"$ref": "#/components/schemas/a"}}));
        let cycle =
            doc(cycle, json!({"a": {"$ref": "#/components/schemas/b"}, "b": {"$ref": "#/components/schemas/a"}}));
        assert!(refused(cycle).contains("nested references"));
        assert!(refused(doc(props(json!({"x": {"allOf": {}}})), json!({}))).contains("allOf is not a list"));
    }

    #[test]
    fn odd_but_harmless_schemas_are_read() {
        let d = doc(
            json!({
                "properties": {
                    "a": {"type": "object", "description": "d".repeat(5000)},
                    "b": {"type": ["string", "null"]},
                    "c": {"type": "integer", "minimum": "1", "default": null},
                },
                "required": ["a", "missing", 5],
            }),
            json!({}),
        );
        let schema = ModelSchema::from_openapi(&d).unwrap();
        assert_eq!(schema.field_names(), ["a", "b", "c"]);
        let a = schema.field("a").unwrap();
        assert_eq!((a.kind, a.required, a.description.as_ref().unwrap().len()), (FieldKind::Any, true, 1000));
        assert_eq!(schema.field("b").unwrap().kind, FieldKind::Any);
        let c = schema.field("c").unwrap();
        assert_eq!((c.minimum.clone(), c.default.clone()), (None, None));
        assert_eq!(details(schema.validate(&Map::new()).map(Value::Object)), "a is required");
        assert!(schema.validate(&map(json!({"a": {"k": [1]}, "b": 3}))).is_ok());
    }

    #[test]
    fn schemas_are_found_in_replicate_answers() {
        let schema = serde_json::from_str::<Value>(FLUX_SCHNELL_FIXTURE).unwrap();
        let version = json!({"id": "c846a699", "cog_version": "0.9.25", "openapi_schema": schema});
        let model = json!({"owner": "black-forest-labs", "latest_version": version.clone()});
        assert_eq!(openapi_schema_of(&version), Some(&schema));
        assert_eq!(openapi_schema_of(&model), Some(&schema));
        assert_eq!(openapi_schema_of(&schema), Some(&schema));
        assert_eq!(openapi_schema_of(&json!({"latest_version": null})), None);
        assert_eq!(openapi_schema_of(&json!({"openapi_schema": null})), None);
        assert_eq!(openapi_schema_of(&json!([])), None);
    }

    #[test]
    fn a_permissive_schema_checks_the_prompt_only() {
        let open = ModelSchema::permissive();
        assert!(!open.strict);
        assert_eq!(open.output, OutputKind::Unknown);
        assert!(open.fields.iter().all(|f| f.default.is_none()));
        assert_eq!(open.fields.iter().filter(|f| f.required).count(), 1);
        assert_eq!(open.image_fields().count(), 0);
    }
}
