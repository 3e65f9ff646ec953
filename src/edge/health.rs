//! `GET /health`: the service version and which bindings and secrets are
//! configured. Never the secrets themselves.

use serde_json::json;
use worker::{Env, Response};

use super::{respond, IMAGES_BUCKET, METADATA_KV};
use crate::config::Config;
use crate::error::ApiError;

pub fn get(env: &Env) -> Result<Response, ApiError> {
    let secret_set = |name: &str| env.secret(name).map(|s| !s.to_string().is_empty()).unwrap_or(false);
    let config = Config::from_vars(|name| env.var(name).ok().map(|v| v.to_string()));
    let body = json!({
        "status": if config.is_ok() { "ok" } else { "misconfigured" },
        "service": "fluxgate",
        "version": crate::VERSION,
        "r2": env.bucket(IMAGES_BUCKET).is_ok(),
        "kv": env.kv(METADATA_KV).is_ok(),
        "replicate_token": secret_set("REPLICATE_API_TOKEN"),
        "auth_token": secret_set("AUTH_TOKEN"),
        "model": config.as_ref().map(|c| c.model.as_str()).ok(),
        "config_error": config.as_ref().err().and_then(|e| e.details.as_deref()),
    });
    respond::json(200, &body)
}
