//! Service configuration, read from the worker's vars through a lookup
//! function so that it can be built and tested without the runtime.
//! Secrets are not part of it: they are read where they are used.

use crate::error::ApiError;
use crate::http_url::parse_http_url;
use crate::models::{Registry, DEFAULT_MODEL_VAR, MODELS_VAR, USER_TOKEN_MODELS_VAR};

pub const DEFAULT_API_BASE: &str = "https://api.replicate.com";
pub const DEFAULT_MODEL: &str = "black-forest-labs/flux-schnell";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Replicate's API base, without a trailing slash and without `/v1`.
    pub api_base: String,
    /// The models the service offers (`MODELS`, `DEFAULT_MODEL`,
    /// `USER_TOKEN_MODELS`; see `models::Registry`). Without `MODELS`,
    /// `REPLICATE_MODEL` (and `REPLICATE_MODEL_VERSION`) name the one model.
    pub models: Registry,
    /// Seconds a create may be held by `Prefer: wait` (1..=60).
    pub wait_seconds: u32,
    /// Overall seconds a generation may take, polling included.
    pub deadline_seconds: u32,
    /// Whether callers may bring their own Replicate token.
    pub allow_user_tokens: bool,
    /// Hosts (`host` or `host:port`) besides replicate.delivery that outputs may be fetched from.
    pub extra_output_hosts: Vec<String>,
    /// Hosts (`host` for any port, or `host:port`) callers' webhooks may
    /// target besides public https hosts, over http too: for local development.
    pub extra_webhook_hosts: Vec<String>,
    /// Base URL image links are built on; `None` means the request's own origin.
    pub public_base_url: Option<String>,
    /// Whether `/replicate/v1` rewrites outputs and links to point at us (and
    /// keeps outputs); off, it is a pure passthrough.
    pub rewrite_outputs: bool,
    /// The largest output copied into R2, in bytes.
    pub max_output_bytes: u64,
    /// When identical requests are answered from the cache (`CACHE_MODE`).
    pub cache_mode: CacheMode,
    /// How long a cached answer is kept (`CACHE_TTL_SECONDS`).
    pub cache_ttl_seconds: u64,
}

/// When identical generate requests are answered from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    /// `GET /generate` always; `POST /generate` when the input names a seed.
    Auto,
    /// Both, always.
    All,
    /// Never.
    Off,
}

/// The default of `MAX_OUTPUT_BYTES`: 25 MiB, room for a 4x upscale as PNG.
pub const DEFAULT_MAX_OUTPUT_BYTES: u32 = 25 * 1024 * 1024;

impl Config {
    /// Reads every setting through `var`, applying defaults to unset or empty
    /// values. A value that is set but malformed is an error naming the variable.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ApiError> {
        let get = |name: &str| var(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());

        let api_base = get("REPLICATE_API_BASE").unwrap_or_else(|| DEFAULT_API_BASE.into());
        let api_base = api_base.trim_end_matches('/').trim_end_matches("/v1").to_owned();
        if parse_http_url(&api_base).is_none() {
            return Err(misconfigured("REPLICATE_API_BASE", "must be an http(s) URL"));
        }

        let model = get("REPLICATE_MODEL").unwrap_or_else(|| DEFAULT_MODEL.into());
        if !is_model_ref(&model) {
            return Err(misconfigured("REPLICATE_MODEL", "must be owner/name"));
        }
        let model_version = get("REPLICATE_MODEL_VERSION");
        if let Some(v) = &model_version {
            if !is_version_id(v) {
                return Err(misconfigured("REPLICATE_MODEL_VERSION", "must be a 64-character hex version id"));
            }
        }
        // Without MODELS, the one model of REPLICATE_MODEL[_VERSION], under
        // its own name.
        let single = match &model_version {
            Some(version) => format!("{model}:{version}"),
            None => model.clone(),
        };
        let models = Registry::parse(
            Some(get(MODELS_VAR).unwrap_or(single).as_str()),
            get(DEFAULT_MODEL_VAR).as_deref(),
            get(USER_TOKEN_MODELS_VAR).as_deref(),
        )
        .map_err(|why| ApiError::misconfigured(500, why))?;

        let wait_seconds = number(&get, "REPLICATE_WAIT_SECONDS", 60, 1..=60)?;
        let deadline_seconds = number(&get, "GENERATION_TIMEOUT_SECONDS", 120, 1..=900)?;
        let allow_user_tokens = flag(&get, "ALLOW_USER_TOKENS", true)?;
        let rewrite_outputs = flag(&get, "REWRITE_OUTPUTS", true)?;
        let max_output_bytes =
            u64::from(number(&get, "MAX_OUTPUT_BYTES", DEFAULT_MAX_OUTPUT_BYTES, 1024..=512 * 1024 * 1024)?);
        let cache_mode = match get("CACHE_MODE").as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("auto") => CacheMode::Auto,
            Some("all") => CacheMode::All,
            Some("off") => CacheMode::Off,
            Some(_) => return Err(misconfigured("CACHE_MODE", "must be auto, all or off")),
        };
        let cache_ttl_seconds = u64::from(number(&get, "CACHE_TTL_SECONDS", 7 * 24 * 3600, 60..=365 * 24 * 3600)?);
        let extra_output_hosts = get("EXTRA_OUTPUT_HOSTS")
            .map(|v| v.split(',').map(|h| h.trim().to_ascii_lowercase()).filter(|h| !h.is_empty()).collect())
            .unwrap_or_default();
        let extra_webhook_hosts = get("EXTRA_WEBHOOK_HOSTS")
            .map(|v| v.split(',').map(|h| h.trim().to_ascii_lowercase()).filter(|h| !h.is_empty()).collect())
            .unwrap_or_default();
        let public_base_url = get("PUBLIC_BASE_URL").map(|u| u.trim_end_matches('/').to_owned());
        if let Some(u) = &public_base_url {
            if parse_http_url(u).is_none() {
                return Err(misconfigured("PUBLIC_BASE_URL", "must be an http(s) URL"));
            }
        }

        Ok(Self {
            api_base,
            models,
            wait_seconds,
            deadline_seconds,
            allow_user_tokens,
            extra_output_hosts,
            extra_webhook_hosts,
            public_base_url,
            rewrite_outputs,
            max_output_bytes,
            cache_mode,
            cache_ttl_seconds,
        })
    }
}

/// `owner/name`, each part made of letters, digits, `-`, `_` and `.`.
pub fn is_model_ref(s: &str) -> bool {
    let mut parts = s.split('/');
    let ok = |p: Option<&str>| {
        p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
    };
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

/// A Replicate version id: 64 lowercase hex digits.
pub fn is_version_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn misconfigured(name: &str, why: &str) -> ApiError {
    ApiError::misconfigured(500, format!("{name} {why}"))
}

fn number(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32, ApiError> {
    match get(name) {
        None => Ok(default),
        Some(v) => v.parse::<u32>().ok().filter(|n| range.contains(n)).ok_or_else(|| {
            misconfigured(name, &format!("must be a whole number from {} to {}", range.start(), range.end()))
        }),
    }
}

fn flag(get: &impl Fn(&str) -> Option<String>, name: &str, default: bool) -> Result<bool, ApiError> {
    match get(name).as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => Ok(default),
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some("false" | "0" | "no" | "off") => Ok(false),
        Some(_) => Err(misconfigured(name, "must be true or false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ApiError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_vars(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_when_nothing_is_set() {
        let c = config(&[]).unwrap();
        assert_eq!(c.api_base, "https://api.replicate.com");
        let default = c.models.default_entry();
        assert_eq!(
            (default.name.as_str(), default.model.to_string().as_str()),
            ("flux-schnell", "black-forest-labs/flux-schnell")
        );
        assert_eq!(c.wait_seconds, 60);
        assert_eq!(c.deadline_seconds, 120);
        assert!(c.allow_user_tokens);
        assert!(c.extra_output_hosts.is_empty());
        assert_eq!(c.public_base_url, None);
        assert!(c.rewrite_outputs);
        assert_eq!(c.max_output_bytes, 25 * 1024 * 1024);
        assert_eq!((c.cache_mode, c.cache_ttl_seconds), (CacheMode::Auto, 7 * 24 * 3600));
    }

    #[test]
    fn empty_values_mean_defaults() {
        let c = config(&[("REPLICATE_MODEL_VERSION", ""), ("REPLICATE_WAIT_SECONDS", " ")]).unwrap();
        assert_eq!(c.models.default_entry().model.version, None);
        assert_eq!(c.wait_seconds, 60);
    }

    #[test]
    fn reads_every_setting() {
        let version = "5599ed30703defd1d160a25a63321b4dec97101d98b4674bcc56e41f62f35637";
        let c = config(&[
            ("REPLICATE_API_BASE", "http://127.0.0.1:8790/v1/"),
            ("REPLICATE_MODEL", "owner/model-name"),
            ("REPLICATE_MODEL_VERSION", version),
            ("REPLICATE_WAIT_SECONDS", "5"),
            ("GENERATION_TIMEOUT_SECONDS", "30"),
            ("ALLOW_USER_TOKENS", "false"),
            ("EXTRA_OUTPUT_HOSTS", "127.0.0.1:8790, Example.test"),
            ("EXTRA_WEBHOOK_HOSTS", "Localhost"),
            ("PUBLIC_BASE_URL", "https://img.example.com/"),
            ("REWRITE_OUTPUTS", "off"),
            ("MAX_OUTPUT_BYTES", "1048576"),
        ])
        .unwrap();
        assert_eq!(c.api_base, "http://127.0.0.1:8790");
        let default = c.models.default_entry();
        assert_eq!(default.model.model(), "owner/model-name");
        assert_eq!(default.model.version.as_deref(), Some(version));
        assert_eq!(c.wait_seconds, 5);
        assert_eq!(c.deadline_seconds, 30);
        assert!(!c.allow_user_tokens);
        assert_eq!(c.extra_output_hosts, vec!["127.0.0.1:8790", "example.test"]);
        assert_eq!(c.extra_webhook_hosts, vec!["localhost"]);
        assert_eq!(c.public_base_url.as_deref(), Some("https://img.example.com"));
        assert!(!c.rewrite_outputs);
        assert_eq!(c.max_output_bytes, 1_048_576);
    }

    #[test]
    fn malformed_values_name_the_variable() {
        for (name, value) in [
            ("REPLICATE_API_BASE", "ftp://x"),
            ("REPLICATE_MODEL", "no-slash"),
            ("REPLICATE_MODEL", "a/b/c"),
            ("REPLICATE_MODEL_VERSION", "abc"),
            ("REPLICATE_WAIT_SECONDS", "61"),
            ("REPLICATE_WAIT_SECONDS", "0"),
            ("GENERATION_TIMEOUT_SECONDS", "soon"),
            ("ALLOW_USER_TOKENS", "maybe"),
            ("REWRITE_OUTPUTS", "sometimes"),
            ("PUBLIC_BASE_URL", "img.example.com"),
            ("MAX_OUTPUT_BYTES", "10"),
            ("MAX_OUTPUT_BYTES", "1e9"),
            ("CACHE_MODE", "sometimes"),
            ("CACHE_TTL_SECONDS", "5"),
        ] {
            let err = config(&[(name, value)]).unwrap_err();
            assert_eq!(err.status, 500, "{name}={value}");
            assert!(err.details.as_deref().unwrap_or("").starts_with(name), "{name}={value}: {err}");
        }
    }

    #[test]
    fn model_refs_and_version_ids() {
        assert!(is_model_ref("black-forest-labs/flux-schnell"));
        assert!(is_model_ref("a_b/c.d"));
        assert!(!is_model_ref("/flux"));
        assert!(!is_model_ref("a/"));
        assert!(!is_model_ref("a/b?c"));
        assert!(is_version_id(&"a".repeat(64)));
        assert!(!is_version_id(&"A".repeat(64)));
        assert!(!is_version_id(&"a".repeat(63)));
    }

    #[test]
    fn models_come_from_the_registry_vars() {
        let c = config(&[
            ("MODELS", "schnell=black-forest-labs/flux-schnell, dev=black-forest-labs/flux-dev"),
            ("DEFAULT_MODEL", "dev"),
            ("REPLICATE_MODEL", "ignored/when-models-is-set"),
        ])
        .unwrap();
        assert_eq!(c.models.names(), vec!["schnell", "dev"]);
        assert_eq!(c.models.default_entry().name, "dev");
        let err = config(&[("MODELS", "schnell=not a model")]).unwrap_err();
        assert_eq!(err.status, 500);
        assert!(err.details.unwrap().starts_with("MODELS"));
    }
}
