//! `GET /health`: the service version and which bindings and secrets are
//! configured, never the secrets themselves; 503 with what is missing when
//! the service cannot work.

use serde_json::json;
use worker::Response;

use super::{respond, RequestContext};
use crate::error::ApiError;
use crate::health::{missing, Setup};

pub async fn get(cx: &RequestContext) -> Result<Response, ApiError> {
    let config = cx.config();
    let lost = match cx.store() {
        Ok(store) => store.lost_count_recent().await.ok(),
        Err(_) => None,
    };
    let (r2, kv) = super::store::bindings(&cx.env);
    let (r2, kv) = (r2.is_some(), kv.is_some());
    let setup = Setup {
        config_ok: config.is_ok(),
        r2,
        kv,
        replicate_token: cx.secrets.replicate_token.is_some(),
        auth_token: cx.secrets.auth_token.is_some(),
        allow_user_tokens: config.as_ref().is_ok_and(|c| c.allow_user_tokens),
    };
    let missing = missing(&setup);
    let status = match (config.is_ok(), missing.is_empty()) {
        (true, true) => "ok",
        (false, _) => "misconfigured",
        (true, false) => "degraded",
    };
    let body = json!({
        "status": status,
        "missing": missing,
        "service": "fluxgate",
        "version": crate::VERSION,
        "r2": r2,
        "kv": kv,
        "replicate_token": cx.secrets.replicate_token.is_some(),
        "auth_token": cx.secrets.auth_token.is_some(),
        "model": config.as_ref().map(|c| c.models.default_entry().model.to_string()).ok(),
        "config_error": cx.config_error().and_then(|e| e.details.as_deref()),
        // Without PUBLIC_BASE_URL, links are built from the request's Host.
        "links_from_request_host": cx.base_from_request,
        // Images never stored before Replicate removed their output.
        "lost_images": lost,
    });
    respond::json(if missing.is_empty() { 200 } else { 503 }, &body)
}
