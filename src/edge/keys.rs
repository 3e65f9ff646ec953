//! API keys at the edge: checking a presented key, and the operator's admin
//! API (`/admin/keys`) that makes, lists and revokes them. Only a key's hash
//! is ever stored (see `crate::api_keys`).

use super::join::join_all;
use super::request::Request;
use serde_json::{json, Value};
use worker::Response;

use super::net::now_ms;
use super::{respond, usage, RequestContext};
use crate::api_keys::{self, generate_key, key_kv_key, parse_create_request, KeyRecord, KV_PREFIX};
use crate::credentials::UNAUTHORIZED;
use crate::error::ApiError;
use crate::usage::{day_of, rfc3339_of};

/// The largest create request read.
const MAX_CREATE_BYTES: usize = 16 * 1024;

fn unauthorized() -> ApiError {
    ApiError::new(401, UNAUTHORIZED)
}

/// The record of a presented key, when it is well formed, known, matches
/// its stored hash (compared in constant time) and is not revoked; a 401
/// otherwise. Read from KV on every request, so a revocation holds as soon
/// as KV shows it.
pub async fn verify(cx: &RequestContext, key: &str) -> Result<KeyRecord, ApiError> {
    let (id, _) = api_keys::parse_key(key).ok_or_else(unauthorized)?;
    let text = cx.store()?.get_text(&key_kv_key(id)).await?.ok_or_else(unauthorized)?;
    let record: KeyRecord =
        serde_json::from_str(&text).map_err(|e| ApiError::internal().with_cause(format!("key record {id}: {e}")))?;
    if !api_keys::verify(&record, key) {
        return Err(unauthorized());
    }
    if !record.is_active() {
        return Err(unauthorized().with_details("This API key was revoked"));
    }
    Ok(record)
}

/// The operator only: `Bearer AUTH_TOKEN`.
pub fn require_operator(cx: &RequestContext) -> Result<(), ApiError> {
    if cx.is_operator() {
        Ok(())
    } else {
        Err(unauthorized())
    }
}

/// `POST /admin/keys` and `GET /admin/keys`.
pub async fn keys(mut req: Request, cx: &RequestContext) -> Result<Response, ApiError> {
    require_operator(cx)?;
    if req.method() == worker::Method::Post {
        create(&mut req, cx).await
    } else {
        list(cx).await
    }
}

fn limits_json(record: &KeyRecord) -> Value {
    json!({ "per_minute": record.limits.per_minute, "per_day": record.limits.per_day })
}

async fn create(req: &mut Request, cx: &RequestContext) -> Result<Response, ApiError> {
    let bytes = super::net::read_body(req, MAX_CREATE_BYTES as u64).await?;
    let body: Value = serde_json::from_slice(&bytes).map_err(|_| ApiError::invalid_input("the body must be JSON"))?;
    let request = parse_create_request(&body)?;
    let store = cx.store()?;
    let mut random = [0u8; api_keys::RANDOM_BYTES];
    let new = loop {
        getrandom::fill(&mut random).map_err(|e| ApiError::internal().with_cause(e))?;
        let new = generate_key(&random).ok_or_else(ApiError::internal)?;
        if store.get_text(&key_kv_key(&new.id)).await?.is_none() {
            break new;
        }
    };
    let record = KeyRecord::new(&new, request, now_ms());
    let text = serde_json::to_string(&record).map_err(|e| ApiError::internal().with_cause(e))?;
    store.put_text(&key_kv_key(&record.id), text).await?;
    respond::json(
        201,
        &json!({
            "id": record.id,
            "key": new.key,
            "name": record.name,
            "limits": limits_json(&record),
            "models": record.models,
            "created_at": rfc3339_of(record.created_at_ms),
        }),
    )
}

/// Every key record, in id order.
async fn all_records(cx: &RequestContext) -> Result<Vec<KeyRecord>, ApiError> {
    let store = cx.store()?;
    let names = store.kv().all_names(KV_PREFIX).await;
    let names = names.map_err(|e| ApiError::internal().with_cause(format!("KV list: {e}")))?;
    let texts = join_all(names.iter().map(|name| store.get_text(name))).await;
    Ok(texts.into_iter().filter_map(|t| serde_json::from_str(&t.ok()??).ok()).collect())
}

async fn list(cx: &RequestContext) -> Result<Response, ApiError> {
    let store = cx.store()?;
    let records = all_records(cx).await?;
    let today = day_of(now_ms());
    let usages = join_all(records.iter().map(|r| usage::read(store.kv(), &r.id, &today))).await;
    let keys: Vec<Value> = records
        .iter()
        .zip(usages)
        .map(|(r, used)| {
            json!({
                "id": r.id,
                "name": r.name,
                "limits": limits_json(r),
                "models": r.models,
                "created_at": rfc3339_of(r.created_at_ms),
                "revoked_at": r.revoked_at_ms.map(rfc3339_of),
                "usage_today": used,
            })
        })
        .collect();
    respond::json(200, &json!({ "keys": keys }))
}

/// `DELETE /admin/keys/{id}`: revokes the key (its record stays, marked).
pub async fn revoke(cx: &RequestContext, id: &str) -> Result<Response, ApiError> {
    require_operator(cx)?;
    let store = cx.store()?;
    let not_found = || ApiError::new(404, "API key not found");
    if id.len() != api_keys::ID_LEN {
        return Err(not_found());
    }
    let text = store.get_text(&key_kv_key(id)).await?.ok_or_else(not_found)?;
    let mut record: KeyRecord = serde_json::from_str(&text).map_err(|e| ApiError::internal().with_cause(e))?;
    if record.revoked_at_ms.is_none() {
        record.revoked_at_ms = Some(now_ms());
        let text = serde_json::to_string(&record).map_err(|e| ApiError::internal().with_cause(e))?;
        store.put_text(&key_kv_key(id), text).await?;
    }
    respond::json(200, &json!({ "id": record.id, "revoked_at": record.revoked_at_ms.map(rfc3339_of) }))
}
