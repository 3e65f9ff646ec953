//! The models this service offers, from configuration, and which one a
//! request runs.
//!
//! Three worker vars:
//!
//! ```toml
//! # short name = owner/model, or owner/model:version (64 lowercase hex);
//! # entries separated by commas or newlines, `#` starts a comment.
//! MODELS = """
//! schnell = black-forest-labs/flux-schnell
//! dev     = black-forest-labs/flux-dev
//! sdxl    = stability-ai/sdxl:7762fd07cf82c948538e41f63f77d685e02b063e37e496e96eefd46c929f9bdc
//! """
//! # The short name run when a request names no model (default: the first entry).
//! DEFAULT_MODEL = "schnell"
//! # Callers with their own Replicate token may run "any" owner/model[:version],
//! # or only the "listed" models.
//! USER_TOKEN_MODELS = "any"
//! ```
//!
//! An entry may leave out its short name (`black-forest-labs/flux-dev`): the
//! model's name is used. Short names are compared case-insensitively.
//! Without `MODELS`, the service offers flux-schnell as `schnell`.

use crate::config::{is_model_ref, is_version_id};
use crate::error::ApiError;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};
use std::fmt;

/// The var listing the models.
pub const MODELS_VAR: &str = "MODELS";
/// The var naming the model run when a request names none.
pub const DEFAULT_MODEL_VAR: &str = "DEFAULT_MODEL";
/// The var saying what callers with their own Replicate token may run.
pub const USER_TOKEN_MODELS_VAR: &str = "USER_TOKEN_MODELS";
/// The model offered when `MODELS` is not set.
pub const FLUX_SCHNELL: &str = "black-forest-labs/flux-schnell";
/// flux-schnell's short name when `MODELS` is not set.
pub const FLUX_SCHNELL_SHORT_NAME: &str = "schnell";
/// The most models `MODELS` may list.
pub const MAX_MODELS: usize = 64;
/// The longest short name.
pub const MAX_SHORT_NAME_CHARS: usize = 32;
/// The longest `owner/name:version` accepted.
const MAX_REF_CHARS: usize = 256;
/// How many characters of a caller's model name an error repeats.
const MAX_ECHOED_CHARS: usize = 80;
/// Why `ModelRef::parse` refuses a malformed model.
const BAD_REF: &str = "expected owner/name or owner/name:version";
/// Why `ModelRef::parse` refuses a malformed version.
const BAD_VERSION: &str = "a version is 64 lowercase hex digits";
/// The error of a request naming a model that does not exist here.
pub const UNKNOWN_MODEL: &str = "Unknown model";
/// The error of a request naming a model it may not run.
pub const MODEL_NOT_ALLOWED: &str = "Model not allowed";

/// A Replicate model, optionally pinned to a version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelRef {
    /// Lowercase.
    pub owner: String,
    /// Lowercase.
    pub name: String,
    /// 64 lowercase hex digits; `None` runs the model's latest version.
    pub version: Option<String>,
}

impl ModelRef {
    /// Reads `owner/name` or `owner/name:version`. Owner and name are
    /// letters, digits, `-`, `_` or `.`, and are lowercased; a version is 64
    /// lowercase hex digits.
    pub fn parse(s: &str) -> Result<ModelRef, String> {
        let s = s.trim();
        if s.chars().count() > MAX_REF_CHARS {
            return Err(format!("a model is at most {MAX_REF_CHARS} characters"));
        }
        let (model, version) = match s.split_once(':') {
            Some((model, version)) => (model, Some(version)),
            None => (s, None),
        };
        if !is_model_ref(model) {
            return Err(BAD_REF.into());
        }
        if version.is_some_and(|v| !is_version_id(v)) {
            return Err(BAD_VERSION.into());
        }
        let (owner, name) = model.split_once('/').unwrap_or_default();
        Ok(ModelRef {
            owner: owner.to_ascii_lowercase(),
            name: name.to_ascii_lowercase(),
            version: version.map(str::to_owned),
        })
    }

    /// `owner/name`, without the version.
    pub fn model(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    /// Where a prediction is created: `/v1/models/{owner}/{name}/predictions`
    /// for the latest version, `/v1/predictions` (with `version` in the body,
    /// see `create_body`) for a pinned one.
    pub fn create_path(&self) -> String {
        match self.version {
            Some(_) => "/v1/predictions".to_owned(),
            None => format!("/v1/models/{}/{}/predictions", self.owner, self.name),
        }
    }

    /// The body of a create at `create_path`: `{"input": …}`, plus
    /// `"version"` when pinned.
    pub fn create_body(&self, input: Map<String, Value>) -> Map<String, Value> {
        let mut body = Map::new();
        if let Some(version) = &self.version {
            body.insert("version".into(), Value::String(version.clone()));
        }
        body.insert("input".into(), Value::Object(input));
        body
    }

    /// Where the schema is read: the model (`/v1/models/{owner}/{name}`, its
    /// `latest_version.openapi_schema`) or the pinned version
    /// (`/v1/models/{owner}/{name}/versions/{version}`, its `openapi_schema`).
    pub fn schema_path(&self) -> String {
        match &self.version {
            Some(version) => format!("/v1/models/{}/{}/versions/{version}", self.owner, self.name),
            None => format!("/v1/models/{}/{}", self.owner, self.name),
        }
    }

    /// Whether `self` (as asked for) names `other` (as listed): the same
    /// model, and the same version when `self` pins one.
    fn names(&self, other: &ModelRef) -> bool {
        self.owner == other.owner
            && self.name == other.name
            && (self.version.is_none() || self.version == other.version)
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)?;
        if let Some(version) = &self.version {
            write!(f, ":{version}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for ModelRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ModelRef::parse(s)
    }
}

/// As `owner/name[:version]`.
impl Serialize for ModelRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// What callers with their own Replicate token may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UserTokenModels {
    /// Any `owner/name[:version]`, besides the listed models.
    Any,
    /// Only the listed models.
    Listed,
}

/// One model the service offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The short name, lowercase.
    pub name: String,
    pub model: ModelRef,
    /// Whether it runs when a request names no model.
    pub is_default: bool,
}

/// As `GET /models` lists it:
/// `{"name": "sdxl", "model": "stability-ai/sdxl", "version": "7762…", "default": false}`.
impl Serialize for Entry {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Listed<'a> {
            name: &'a str,
            model: String,
            version: Option<&'a str>,
            default: bool,
        }
        Listed {
            name: &self.name,
            model: self.model.model(),
            version: self.model.version.as_deref(),
            default: self.is_default,
        }
        .serialize(serializer)
    }
}

/// The model a request runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The short name of a listed model, or `owner/name[:version]` of
    /// another one.
    pub name: String,
    pub model: ModelRef,
    /// Whether it is one of the listed models.
    pub listed: bool,
}

/// The models this service offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    entries: Vec<Entry>,
    user_tokens: UserTokenModels,
}

impl Default for Registry {
    /// flux-schnell as `schnell`; callers with their own token run any model.
    fn default() -> Self {
        let model = ModelRef { owner: "black-forest-labs".into(), name: "flux-schnell".into(), version: None };
        let schnell = Entry { name: FLUX_SCHNELL_SHORT_NAME.into(), model, is_default: true };
        Registry { entries: vec![schnell], user_tokens: UserTokenModels::Any }
    }
}

impl Registry {
    /// Reads `MODELS`, `DEFAULT_MODEL` and `USER_TOKEN_MODELS` through `var`;
    /// unset and blank values are the defaults.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Registry, String> {
        Registry::parse(
            var(MODELS_VAR).as_deref(),
            var(DEFAULT_MODEL_VAR).as_deref(),
            var(USER_TOKEN_MODELS_VAR).as_deref(),
        )
    }

    /// Reads the three vars' values (`None` or blank: the default). An error
    /// names the variable and the entry at fault.
    pub fn parse(models: Option<&str>, default: Option<&str>, user_tokens: Option<&str>) -> Result<Registry, String> {
        let user_tokens = match user_tokens.map(str::trim).filter(|v| !v.is_empty()) {
            None => UserTokenModels::Any,
            Some(v) if v.eq_ignore_ascii_case("any") => UserTokenModels::Any,
            Some(v) if v.eq_ignore_ascii_case("listed") => UserTokenModels::Listed,
            Some(v) => {
                return Err(format!("{USER_TOKEN_MODELS_VAR} must be \"any\" or \"listed\", not '{}'", echo(v)));
            }
        };

        let mut registry = Registry { user_tokens, ..Registry::default() };
        if let Some(models) = models.filter(|m| !m.trim().is_empty()) {
            let mut entries: Vec<Entry> = Vec::new();
            for text in entries_of(models) {
                let entry = parse_entry(text).map_err(|why| format!("{MODELS_VAR} entry '{}': {why}", echo(text)))?;
                if entries.iter().any(|e| e.name == entry.name) {
                    return Err(format!("{MODELS_VAR} names '{}' more than once", entry.name));
                }
                if entries.len() == MAX_MODELS {
                    return Err(format!("{MODELS_VAR} lists more than {MAX_MODELS} models"));
                }
                entries.push(entry);
            }
            if entries.is_empty() {
                return Err(format!("{MODELS_VAR} lists no model"));
            }
            registry.entries = entries;
        }

        let chosen = match default.map(str::trim).filter(|d| !d.is_empty()) {
            None => 0,
            Some(name) => registry.position(name).ok_or_else(|| {
                format!("{DEFAULT_MODEL_VAR} '{}' is not in {MODELS_VAR} ({})", echo(name), registry.names().join(", "))
            })?,
        };
        for (i, entry) in registry.entries.iter_mut().enumerate() {
            entry.is_default = i == chosen;
        }
        Ok(registry)
    }

    /// Every listed model, in configuration order.
    pub fn list(&self) -> &[Entry] {
        &self.entries
    }

    /// The short names, in configuration order.
    pub fn names(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.name.as_str()).collect()
    }

    /// Whether an API key restricted to `allowed` (short names or model
    /// references, as in `choose`) may run `model`, named by reference as the
    /// Replicate-compatible API names it: a short name allows its listed model
    /// (a pinned one only at its version), a reference what it names.
    pub fn key_permits(&self, allowed: &[String], model: &ModelRef) -> bool {
        allowed.iter().any(|a| {
            let a = a.trim();
            if a.contains('/') {
                ModelRef::parse(a).is_ok_and(|r| r.names(model))
            } else {
                self.entries.iter().any(|e| e.name.eq_ignore_ascii_case(a) && e.model.names(model))
            }
        })
    }

    /// The listed model pinned at `version`, if any.
    pub fn by_version(&self, version: &str) -> Option<&ModelRef> {
        self.entries.iter().map(|e| &e.model).find(|m| m.version.as_deref() == Some(version))
    }

    /// The model run when a request names none.
    pub fn default_entry(&self) -> &Entry {
        self.entries.iter().find(|e| e.is_default).unwrap_or(&self.entries[0])
    }

    /// What callers with their own Replicate token may run.
    pub fn user_token_models(&self) -> UserTokenModels {
        self.user_tokens
    }

    /// The listed model with this short name (any case), or this
    /// `owner/name[:version]`.
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.position(name).map(|i| &self.entries[i])
    }

    /// The model a request runs.
    ///
    /// `requested` is a short name (any case) or `owner/name[:version]`;
    /// `None` or blank is the default model. `owner/name` names a listed
    /// model of that name whatever version it is pinned to; with a version,
    /// only a listed model pinned to it. Other models run only for callers
    /// with their own Replicate token, and only when `USER_TOKEN_MODELS` is
    /// `any`. `allowed_for_key` (short names or `owner/name[:version]`)
    /// narrows what the caller's key may run; with no model requested, such a
    /// key gets the default if allowed, else its first allowed listed model.
    ///
    /// An unknown short name or a malformed model is a 400 listing the
    /// available short names; a model the caller may not run is a 403.
    pub fn choose(
        &self,
        requested: Option<&str>,
        caller_has_own_token: bool,
        allowed_for_key: Option<&[String]>,
    ) -> Result<Choice, ApiError> {
        let key_allows = |name: Option<&str>, model: &ModelRef| {
            allowed_for_key.is_none_or(|allowed| allowed.iter().any(|a| permits(a, name, model)))
        };
        let listed = |entry: &Entry| Choice { name: entry.name.clone(), model: entry.model.clone(), listed: true };
        let key_refusal = || {
            let allowed = allowed_for_key.unwrap_or_default();
            let detail = if allowed.is_empty() {
                "This API key may not run any model".to_owned()
            } else {
                let names: Vec<String> = allowed.iter().map(|a| echo(a)).collect();
                format!("This API key may run only: {}", names.join(", "))
            };
            ApiError::new(403, MODEL_NOT_ALLOWED).with_details(detail)
        };

        let requested = requested.map(str::trim).filter(|r| !r.is_empty());
        let Some(requested) = requested else {
            let default = self.default_entry();
            if key_allows(Some(&default.name), &default.model) {
                return Ok(listed(default));
            }
            let first = self.entries.iter().find(|e| key_allows(Some(&e.name), &e.model));
            return first.map(listed).ok_or_else(key_refusal);
        };

        if !requested.contains('/') {
            let entry = self.position(requested).map(|i| &self.entries[i]).ok_or_else(|| {
                let details = format!("Unknown model '{}'; available: {}", echo(requested), self.names().join(", "));
                ApiError::bad_request(UNKNOWN_MODEL).with_details(details)
            })?;
            return if key_allows(Some(&entry.name), &entry.model) { Ok(listed(entry)) } else { Err(key_refusal()) };
        }

        let model = ModelRef::parse(requested).map_err(|why| {
            let details =
                format!("Unknown model '{}': {why}; or a short name: {}", echo(requested), self.names().join(", "));
            ApiError::bad_request(UNKNOWN_MODEL).with_details(details)
        })?;
        if let Some(entry) = self.entries.iter().find(|e| model.names(&e.model)) {
            return if key_allows(Some(&entry.name), &entry.model) { Ok(listed(entry)) } else { Err(key_refusal()) };
        }
        let available = self.names().join(", ");
        if !caller_has_own_token {
            let details = format!(
                "'{model}' is not one of this service's models ({available}); other models run only with your own \
                 Replicate token"
            );
            return Err(ApiError::new(403, MODEL_NOT_ALLOWED).with_details(details));
        }
        if self.user_tokens == UserTokenModels::Listed {
            let details = format!("This service runs only its own models: {available}");
            return Err(ApiError::new(403, MODEL_NOT_ALLOWED).with_details(details));
        }
        if !key_allows(None, &model) {
            return Err(key_refusal());
        }
        Ok(Choice { name: model.to_string(), model, listed: false })
    }

    /// The index of the entry `name` (a short name or a model) names.
    fn position(&self, name: &str) -> Option<usize> {
        let name = name.trim();
        if name.contains('/') {
            let model = ModelRef::parse(name).ok()?;
            self.entries.iter().position(|e| model.names(&e.model))
        } else {
            self.entries.iter().position(|e| e.name.eq_ignore_ascii_case(name))
        }
    }
}

/// Whether a key's allowed entry `allowed` covers the model `name`d (a
/// listed short name, if any) `model`.
fn permits(allowed: &str, name: Option<&str>, model: &ModelRef) -> bool {
    let allowed = allowed.trim();
    if allowed.contains('/') {
        ModelRef::parse(allowed).is_ok_and(|a| a.names(model))
    } else {
        name.is_some_and(|n| n.eq_ignore_ascii_case(allowed))
    }
}

/// The entries of `MODELS`: split at newlines and commas, `#` comments and
/// blanks dropped.
fn entries_of(models: &str) -> impl Iterator<Item = &str> {
    models
        .lines()
        .map(|line| line.split_once('#').map_or(line, |(before, _)| before))
        .flat_map(|line| line.split(','))
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
}

/// One `name = owner/model[:version]` entry (or `owner/model[:version]`).
fn parse_entry(text: &str) -> Result<Entry, String> {
    let (name, model) = match text.split_once('=') {
        Some((name, model)) => (Some(name.trim()), model.trim()),
        None => (None, text),
    };
    let model = ModelRef::parse(model).map_err(|why| match why.as_str() {
        BAD_REF => "expected name = owner/model or name = owner/model:version".to_owned(),
        _ => why,
    })?;
    let name = name.map_or_else(|| model.name.clone(), str::to_ascii_lowercase);
    let valid = name.chars().count() <= MAX_SHORT_NAME_CHARS
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !valid {
        return Err(format!(
            "a short name is 1 to {MAX_SHORT_NAME_CHARS} letters, digits, '-', '_' or '.', starting with a letter \
             or digit"
        ));
    }
    Ok(Entry { name, model, is_default: false })
}

/// A configured or caller-given text cut for an error message.
fn echo(text: &str) -> String {
    match text.char_indices().nth(MAX_ECHOED_CHARS) {
        Some((cut, _)) => format!("{}…", text.get(..cut).unwrap_or_default()),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SDXL: &str = "7762fd07cf82c948538e41f63f77d685e02b063e37e496e96eefd46c929f9bdc";
    const INPAINTING: &str = "95b7223104132402a9ae91cc677285bc5eb997834bd2349fa486f53910fd68b3";
    const ESRGAN: &str = "f121d640bd286e1fdc67f9799164c1d5be36ff74576ee11c803ae5b665dd46aa";

    fn models() -> String {
        format!(
            "schnell=black-forest-labs/flux-schnell, dev=black-forest-labs/flux-dev, pro=black-forest-labs/flux-1.1-pro, \
             sdxl=stability-ai/sdxl:{SDXL}, inpaint=stability-ai/stable-diffusion-inpainting:{INPAINTING}, \
             upscale=nightmareai/real-esrgan:{ESRGAN}"
        )
    }

    fn registry() -> Registry {
        Registry::parse(Some(&models()), Some("schnell"), None).unwrap()
    }

    fn model(s: &str) -> ModelRef {
        ModelRef::parse(s).unwrap()
    }

    fn refused(result: Result<Choice, ApiError>) -> (u16, String, String) {
        let err = result.expect_err("should be refused");
        (err.status, err.error, err.details.unwrap_or_default())
    }

    #[test]
    fn keys_permit_models_by_short_name_or_reference() {
        let r = Registry::parse(
            Some(&format!("schnell=black-forest-labs/flux-schnell, sdxl=stability-ai/sdxl:{}", "b".repeat(64))),
            None,
            None,
        )
        .unwrap();
        let m = |s: &str| ModelRef::parse(s).unwrap();
        let only = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(r.key_permits(&only(&["schnell"]), &m("black-forest-labs/flux-schnell")));
        assert!(!r.key_permits(&only(&["schnell"]), &m("black-forest-labs/flux-dev")));
        assert!(r.key_permits(&only(&["sdxl"]), &m(&format!("stability-ai/sdxl:{}", "b".repeat(64)))));
        assert!(!r.key_permits(&only(&["sdxl"]), &m("stability-ai/sdxl")), "a pinned entry allows only its version");
        assert!(r.key_permits(&only(&["black-forest-labs/flux-dev"]), &m("black-forest-labs/flux-dev")));
        assert!(!r.key_permits(&[], &m("black-forest-labs/flux-schnell")));
        assert_eq!(r.by_version(&"b".repeat(64)).map(|m| m.model()), Some("stability-ai/sdxl".into()));
        assert!(r.by_version(&"c".repeat(64)).is_none());
    }

    #[test]
    fn model_refs_parse_and_display() {
        let m = model("black-forest-labs/flux-schnell");
        assert_eq!(
            (m.owner.as_str(), m.name.as_str(), m.version.as_deref()),
            ("black-forest-labs", "flux-schnell", None)
        );
        assert_eq!(m.to_string(), "black-forest-labs/flux-schnell");
        assert_eq!(m.model(), "black-forest-labs/flux-schnell");
        let pinned = model(&format!(" stability-ai/sdxl:{SDXL} "));
        assert_eq!(pinned.version.as_deref(), Some(SDXL));
        assert_eq!(pinned.to_string(), format!("stability-ai/sdxl:{SDXL}"));
        assert_eq!(pinned.to_string().parse::<ModelRef>().unwrap(), pinned);
        assert_eq!(model("Black-Forest-Labs/FLUX-Schnell"), m);
        assert_eq!(serde_json::to_value(&pinned).unwrap(), json!(format!("stability-ai/sdxl:{SDXL}")));
        for bad in ["", "flux", "/flux", "a/", "a/b/c", "a/b?c", "a b/c", "a/b:", "a/b:latest", ":abc"] {
            assert_eq!(
                ModelRef::parse(bad).unwrap_err(),
                if bad.starts_with("a/b:") { BAD_VERSION } else { BAD_REF },
                "{bad}"
            );
        }
        assert_eq!(ModelRef::parse(&format!("a/b:{}", SDXL.to_uppercase())).unwrap_err(), BAD_VERSION);
        assert_eq!(ModelRef::parse(&format!("a/b:{}", &SDXL[1..])).unwrap_err(), BAD_VERSION);
        assert!(ModelRef::parse(&format!("a/{}", "b".repeat(300))).unwrap_err().contains("at most 256"));
    }

    #[test]
    fn paths_and_bodies_for_replicate() {
        let latest = model("black-forest-labs/flux-schnell");
        assert_eq!(latest.create_path(), "/v1/models/black-forest-labs/flux-schnell/predictions");
        assert_eq!(latest.schema_path(), "/v1/models/black-forest-labs/flux-schnell");
        let input = json!({"prompt": "x"}).as_object().cloned().unwrap();
        assert_eq!(Value::Object(latest.create_body(input.clone())), json!({"input": {"prompt": "x"}}));
        let pinned = model(&format!("stability-ai/sdxl:{SDXL}"));
        assert_eq!(pinned.create_path(), "/v1/predictions");
        assert_eq!(pinned.schema_path(), format!("/v1/models/stability-ai/sdxl/versions/{SDXL}"));
        assert_eq!(Value::Object(pinned.create_body(input)), json!({"version": SDXL, "input": {"prompt": "x"}}));
    }

    #[test]
    fn the_documented_example_parses() {
        let r = registry();
        assert_eq!(r.names(), ["schnell", "dev", "pro", "sdxl", "inpaint", "upscale"]);
        assert_eq!(r.default_entry().name, "schnell");
        assert_eq!(r.user_token_models(), UserTokenModels::Any);
        assert_eq!(r.get("SDXL").unwrap().model, model(&format!("stability-ai/sdxl:{SDXL}")));
        assert_eq!(r.get("upscale").unwrap().model.to_string(), format!("nightmareai/real-esrgan:{ESRGAN}"));
        assert_eq!(r.get("black-forest-labs/flux-dev").unwrap().name, "dev");
        assert!(r.get("nope").is_none());
        assert_eq!(r.list().iter().filter(|e| e.is_default).count(), 1);
        assert_eq!(
            serde_json::to_value(r.list()).unwrap()[3],
            json!({"name": "sdxl", "model": "stability-ai/sdxl", "version": SDXL, "default": false})
        );
        assert_eq!(
            serde_json::to_value(&r.list()[0]).unwrap(),
            json!({"name": "schnell", "model": "black-forest-labs/flux-schnell", "version": null, "default": true})
        );
    }

    #[test]
    fn multiline_lists_comments_and_names_left_out() {
        let text = format!(
            "\n  # text to image\n  Fast = black-forest-labs/flux-schnell   # the default\n\n  black-forest-labs/flux-dev,\n  \
             stability-ai/sdxl:{SDXL}\n"
        );
        let r = Registry::parse(Some(&text), Some("FLUX-Dev"), Some(" Listed ")).unwrap();
        assert_eq!(r.names(), ["fast", "flux-dev", "sdxl"]);
        assert_eq!(r.default_entry().name, "flux-dev");
        assert_eq!(r.user_token_models(), UserTokenModels::Listed);
        // The first entry is the default when none is named.
        assert_eq!(Registry::parse(Some(&text), None, None).unwrap().default_entry().name, "fast");
        assert_eq!(Registry::parse(Some(&text), Some(" "), None).unwrap().default_entry().name, "fast");
        // A default may be named by its model.
        assert_eq!(Registry::parse(Some(&text), Some("stability-ai/sdxl"), None).unwrap().default_entry().name, "sdxl");
    }

    #[test]
    fn without_models_flux_schnell_is_offered() {
        for models in [None, Some(""), Some("  \n ")] {
            let r = Registry::parse(models, None, None).unwrap();
            assert_eq!(r, Registry::default());
            assert_eq!(r.names(), [FLUX_SCHNELL_SHORT_NAME]);
            assert_eq!(r.default_entry().model.to_string(), FLUX_SCHNELL);
        }
        assert_eq!(Registry::parse(None, Some("schnell"), None).unwrap().default_entry().name, "schnell");
        let vars = |name: &str| match name {
            "MODELS" => Some(models()),
            "DEFAULT_MODEL" => Some("pro".to_owned()),
            "USER_TOKEN_MODELS" => Some(String::new()),
            _ => None,
        };
        let r = Registry::from_vars(vars).unwrap();
        assert_eq!((r.default_entry().name.as_str(), r.user_token_models()), ("pro", UserTokenModels::Any));
    }

    #[test]
    fn configuration_errors_name_the_variable_and_the_entry() {
        let err = |models: &str| Registry::parse(Some(models), None, None).unwrap_err();
        assert_eq!(err("schnell"), "MODELS entry 'schnell': expected name = owner/model or name = owner/model:version");
        assert_eq!(err("a=b"), "MODELS entry 'a=b': expected name = owner/model or name = owner/model:version");
        assert_eq!(err("x=a/b:123"), "MODELS entry 'x=a/b:123': a version is 64 lowercase hex digits");
        assert!(err("bad name=a/b").starts_with("MODELS entry 'bad name=a/b': a short name is 1 to 32"));
        assert!(err("=a/b").starts_with("MODELS entry '=a/b': a short name"));
        assert!(err(&format!("{}=a/b", "n".repeat(33))).contains("a short name"));
        assert!(err("-x=a/b").contains("a short name"));
        assert_eq!(err("a=o/m, A=o/n"), "MODELS names 'a' more than once");
        assert_eq!(err("o/m, o2/m"), "MODELS names 'm' more than once");
        assert_eq!(err(" , ,# nothing"), "MODELS lists no model");
        let many: Vec<String> = (0..=MAX_MODELS).map(|i| format!("m{i}=o/m")).collect();
        assert_eq!(err(&many.join(",")), "MODELS lists more than 64 models");
        let long = format!("x=a/{}", "b".repeat(500));
        assert!(err(&long).chars().count() < 200, "{}", err(&long));

        let default = Registry::parse(Some("a=o/m, b=o/n"), Some("c"), None).unwrap_err();
        assert_eq!(default, "DEFAULT_MODEL 'c' is not in MODELS (a, b)");
        assert_eq!(
            Registry::parse(None, Some("dev"), None).unwrap_err(),
            "DEFAULT_MODEL 'dev' is not in MODELS (schnell)"
        );
        let tokens = Registry::parse(None, None, Some("some")).unwrap_err();
        assert_eq!(tokens, "USER_TOKEN_MODELS must be \"any\" or \"listed\", not 'some'");
    }

    #[test]
    fn short_names_choose_listed_models() {
        let r = registry();
        let got = r.choose(Some("Dev"), false, None).unwrap();
        assert_eq!(got, Choice { name: "dev".into(), model: model("black-forest-labs/flux-dev"), listed: true });
        assert_eq!(r.choose(None, false, None).unwrap().name, "schnell");
        assert_eq!(r.choose(Some("  "), true, None).unwrap().name, "schnell");
        assert_eq!(r.choose(Some("upscale"), true, None).unwrap().model.version.as_deref(), Some(ESRGAN));
    }

    #[test]
    fn unknown_models_are_400s_listing_the_short_names() {
        let r = registry();
        let available = "schnell, dev, pro, sdxl, inpaint, upscale";
        assert_eq!(
            refused(r.choose(Some("flux"), true, None)),
            (400, UNKNOWN_MODEL.into(), format!("Unknown model 'flux'; available: {available}"))
        );
        let (status, _, details) = refused(r.choose(Some("a/b/c"), true, None));
        assert_eq!(status, 400);
        assert_eq!(details, format!("Unknown model 'a/b/c': {BAD_REF}; or a short name: {available}"));
        let (status, _, details) = refused(r.choose(Some("stability-ai/sdxl:abc"), true, None));
        assert_eq!((status, details.contains(BAD_VERSION)), (400, true));
        let (_, _, details) = refused(r.choose(Some(&"x".repeat(1000)), true, None));
        assert!(details.len() < 300 && details.contains('…'));
    }

    #[test]
    fn model_refs_name_listed_models() {
        let r = registry();
        // owner/name names the listed model, pinned version included, for every caller.
        let got = r.choose(Some("stability-ai/sdxl"), false, None).unwrap();
        assert_eq!((got.name.as_str(), got.listed), ("sdxl", true));
        assert_eq!(got.model.version.as_deref(), Some(SDXL));
        let got = r.choose(Some(&format!("Stability-AI/SDXL:{SDXL}")), false, None).unwrap();
        assert_eq!(got.name, "sdxl");
        assert_eq!(r.choose(Some("black-forest-labs/flux-dev"), false, None).unwrap().name, "dev");
    }

    #[test]
    fn other_models_need_the_callers_own_token() {
        let r = registry();
        let other_sdxl = format!("stability-ai/sdxl:{}", "0".repeat(64));
        for requested in ["owner/other", other_sdxl.as_str(), &format!("black-forest-labs/flux-dev:{ESRGAN}")] {
            let got = r.choose(Some(requested), true, None).unwrap();
            assert_eq!((got.name.as_str(), got.listed), (requested, false));
            assert_eq!(got.model, model(requested));

            let (status, error, details) = refused(r.choose(Some(requested), false, None));
            assert_eq!((status, error.as_str()), (403, MODEL_NOT_ALLOWED));
            assert_eq!(
                details,
                format!(
                    "'{requested}' is not one of this service's models (schnell, dev, pro, sdxl, inpaint, upscale); \
                     other models run only with your own Replicate token"
                )
            );
        }
        let listed_only = Registry::parse(Some(&models()), None, Some("listed")).unwrap();
        let (status, _, details) = refused(listed_only.choose(Some("owner/other"), true, None));
        assert_eq!(status, 403);
        assert_eq!(details, "This service runs only its own models: schnell, dev, pro, sdxl, inpaint, upscale");
        assert!(listed_only.choose(Some("dev"), true, None).is_ok());
        assert!(listed_only.choose(Some("black-forest-labs/flux-dev"), true, None).is_ok());
    }

    #[test]
    fn keys_limited_to_some_models() {
        let r = registry();
        let key = vec!["DEV".to_owned(), "stability-ai/sdxl".to_owned(), "owner/other".to_owned()];
        let key = Some(key.as_slice());
        assert_eq!(r.choose(Some("dev"), false, key).unwrap().name, "dev");
        assert_eq!(r.choose(Some("sdxl"), false, key).unwrap().name, "sdxl");
        assert_eq!(r.choose(Some("owner/other"), true, key).unwrap().name, "owner/other");
        let (status, error, details) = refused(r.choose(Some("schnell"), false, key));
        assert_eq!((status, error.as_str()), (403, MODEL_NOT_ALLOWED));
        assert_eq!(details, "This API key may run only: DEV, stability-ai/sdxl, owner/other");
        assert_eq!(refused(r.choose(Some("owner/another"), true, key)).0, 403);
        assert_eq!(refused(r.choose(Some("black-forest-labs/flux-schnell"), false, key)).0, 403);
        // With no model named, such a key runs its first allowed listed model.
        assert_eq!(r.choose(None, false, key).unwrap().name, "dev");
        let default_allowed = vec!["schnell".to_owned(), "dev".to_owned()];
        assert_eq!(r.choose(None, false, Some(&default_allowed)).unwrap().name, "schnell");
        // A version in the key's list allows that version only.
        let pinned = vec![format!("black-forest-labs/flux-dev:{ESRGAN}")];
        assert_eq!(refused(r.choose(Some("dev"), false, Some(&pinned))).0, 403);
        assert!(r.choose(Some(&pinned[0]), true, Some(&pinned)).is_ok());
        // A key allowed nothing runs nothing.
        let (status, _, details) = refused(r.choose(None, true, Some(&[])));
        assert_eq!((status, details.as_str()), (403, "This API key may not run any model"));
        // Unknown models are still 400s.
        assert_eq!(refused(r.choose(Some("flux"), false, key)).0, 400);
    }
}
