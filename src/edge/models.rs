//! `GET /models`: the models this service offers, each with its inputs as
//! its published schema gives them (type, default, range, allowed values,
//! which are images). Needs no auth: it says nothing secret.

use super::join::join_all;
use serde_json::{json, Value};
use worker::Response;

use super::schemas::schema_for;
use super::{respond, RequestContext};
use crate::credentials::Credential;
use crate::error::ApiError;

pub async fn list(cx: &RequestContext) -> Result<Response, ApiError> {
    let config = cx.config()?;
    // Schemas are read with the service's token; without one, the fallbacks.
    let credential = Credential::Service(cx.secrets.replicate_token.clone().unwrap_or_default());
    let entries = config.models.list();
    let schemas = join_all(entries.iter().map(|entry| schema_for(cx, &entry.model, &credential))).await;
    let models: Vec<Value> = entries
        .iter()
        .zip(schemas)
        .map(|(entry, schema)| {
            let summary = schema.summary();
            json!({
                "name": entry.name,
                "model": entry.model.model(),
                "version": entry.model.version,
                "default": entry.is_default,
                "inputs": summary.fields,
                "image_inputs": summary.image_fields,
                "output": summary.output,
            })
        })
        .collect();
    let default = config.models.default_entry().name.clone();
    respond::json(200, &json!({ "default": default, "models": models }))
}
