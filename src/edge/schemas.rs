//! Each model's input schema, as Replicate publishes it (`openapi_schema` of
//! the model's latest version, or of its pinned version), fetched once and
//! kept: per isolate in memory, and in KV for a day. When no schema can be
//! had, flux-schnell falls back to the copy compiled in, and any other model
//! to a permissive schema that checks only the prompt: its input is then
//! judged by Replicate, whose 422 becomes a 400 naming the field.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use serde_json::Value;
use worker::Method;

use super::replicate::READ_TIMEOUT_MS;
use super::RequestContext;
use crate::credentials::Credential;
use crate::model_schema::{flux_schnell_builtin, openapi_schema_of, ModelSchema};
use crate::models::{ModelRef, FLUX_SCHNELL};
use crate::output::ImageKind;

/// How long a schema is kept in KV.
const SCHEMA_TTL_SECS: u64 = 24 * 60 * 60;
/// The KV prefix of kept schemas.
const SCHEMA_PREFIX: &str = "schema:";

thread_local! {
    static SCHEMAS: RefCell<HashMap<String, Rc<ModelSchema>>> = RefCell::new(HashMap::new());
}

/// The schema of `model`, fetched with `credential` when it is not kept yet.
pub async fn schema_for(cx: &RequestContext, model: &ModelRef, credential: &Credential) -> Rc<ModelSchema> {
    let key = model.to_string();
    if let Some(schema) = SCHEMAS.with(|s| s.borrow().get(&key).cloned()) {
        return schema;
    }
    let kv_key = format!("{SCHEMA_PREFIX}{key}");
    let kept = match cx.store() {
        Ok(store) => store.get_text(&kv_key).await.ok().flatten(),
        Err(_) => None,
    };
    let parsed = kept.as_deref().and_then(|text| serde_json::from_str::<Value>(text).ok());
    if let Some(schema) = parsed.as_ref().and_then(|doc| ModelSchema::from_openapi(doc).ok()) {
        return remember(key, schema);
    }
    match fetch(cx, model, credential).await {
        Ok((schema, text)) => {
            if let Ok(store) = cx.store() {
                if let Err(e) = store.put_text_for(&kv_key, text, SCHEMA_TTL_SECS).await {
                    worker::console_warn!("{e}");
                }
            }
            remember(key, schema)
        }
        Err(why) => {
            worker::console_warn!("[{}] schema of {key}: {why}; using a fallback", cx.request_id);
            Rc::new(if model.model() == FLUX_SCHNELL { flux_schnell_builtin() } else { ModelSchema::permissive() })
        }
    }
}

/// The image type `input` asks for, read with the model's schema when this
/// isolate has it, else from a plain `output_format` string. It only names
/// ids before the bytes are seen (the bytes decide the stored type), so no
/// schema is fetched for it.
pub fn requested_kind(model: Option<&str>, input: &Value) -> Option<ImageKind> {
    let input = input.as_object()?;
    let schema = model.and_then(|m| SCHEMAS.with(|s| s.borrow().get(m).cloned()));
    let format = match &schema {
        Some(schema) => schema.output_format(input),
        None => input.get("output_format").and_then(Value::as_str),
    };
    format.and_then(ImageKind::from_ext)
}

fn remember(key: String, schema: ModelSchema) -> Rc<ModelSchema> {
    let schema = Rc::new(schema);
    SCHEMAS.with(|s| s.borrow_mut().insert(key, schema.clone()));
    schema
}

/// The schema from Replicate, and its `openapi_schema` as text to keep.
async fn fetch(
    cx: &RequestContext,
    model: &ModelRef,
    credential: &Credential,
) -> Result<(ModelSchema, String), String> {
    let replicate = cx.replicate(credential).map_err(|e| e.to_string())?;
    let answer = replicate
        .send(Method::Get, &model.schema_path(), None, &[], READ_TIMEOUT_MS)
        .await
        .map_err(|e| e.to_string())?;
    if answer.status != 200 {
        return Err(format!("Replicate answered {}", answer.status));
    }
    let body: Value = serde_json::from_str(&answer.body).map_err(|e| e.to_string())?;
    let doc = openapi_schema_of(&body).ok_or("no openapi_schema in the answer")?;
    let schema = ModelSchema::from_openapi(doc)?;
    Ok((schema, doc.to_string()))
}
