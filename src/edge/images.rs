//! `GET /images`: the caller's own images, newest first, cursor-paged from
//! the per-owner index (`owner:<subject>:<inverted time>:<id>`); and
//! `DELETE /image/{id}`, by its owner or the operator. Nobody sees or
//! deletes another's images: those are answered as not found.

use super::join::join_all;
use super::request::Request;
use serde_json::{json, Value};
use worker::Response;

use super::context::TokenHints;
use super::image::{forget, image_not_found};
use super::store::PENDING_PREFIX;
use super::{respond, RequestContext};
use crate::error::ApiError;
use crate::metadata::{id_of_owner_index_key, kv_key, owner_index_key, owner_prefix};

const DEFAULT_PAGE: u64 = 20;
const MAX_PAGE: u64 = 100;

pub async fn list(req: &Request, cx: &RequestContext) -> Result<Response, ApiError> {
    let url = req.url().map_err(|_| ApiError::bad_request("Invalid URL"))?;
    let pairs: Vec<(String, String)> = url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let query = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let caller = cx.caller(TokenHints { query: query("replicate_token"), ..TokenHints::default() }).await?;
    let limit = match query("limit") {
        None => DEFAULT_PAGE,
        Some(l) => crate::text::decimal(l)
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| ApiError::invalid_input(format!("limit must be from 1 to {MAX_PAGE}")))?,
    };
    let store = cx.store()?;
    let cursor = query("cursor").filter(|c| !c.is_empty());
    let page = store.kv().page(&owner_prefix(&caller.subject), cursor, limit as usize).await;
    let page = page.map_err(|_| ApiError::invalid_input("cursor is not one this service gave"))?;
    let ids: Vec<String> = page.keys.iter().filter_map(|k| id_of_owner_index_key(&k.name).map(str::to_owned)).collect();
    let records = join_all(ids.iter().map(|id| store.record(id))).await;
    let images: Vec<Value> = records
        .into_iter()
        .filter_map(|r| r.ok().flatten())
        .filter(|r| r.owner.as_deref() == Some(caller.subject.as_str()))
        .map(|r| {
            json!({
                "id": r.id,
                "url": cx.image_url(&r.id),
                "prompt": r.prompt,
                "model": r.model,
                "created_at": r.created_at,
                "content_type": r.content_type,
                "size": r.size,
                "status": r.status,
            })
        })
        .collect();
    respond::json(200, &json!({ "images": images, "cursor": page.cursor }))
}

/// `DELETE /image/{id}`: the bytes, the record, its index entries, and the
/// copy in this location's cache (other locations keep theirs until it expires).
pub async fn delete(cx: &RequestContext, id: &str) -> Result<Response, ApiError> {
    let caller = cx.caller(TokenHints::default()).await?;
    let store = cx.store()?;
    let record = store.record(id).await?.ok_or_else(image_not_found)?;
    let owns = record.owner.as_deref() == Some(caller.subject.as_str());
    if !owns && !caller.is_operator() {
        return Err(image_not_found());
    }
    store.bucket().delete(id).await.map_err(|e| ApiError::internal().with_cause(format!("R2 delete {id}: {e}")))?;
    forget(cx, id).await;
    let kv = store.kv();
    let mut keys = vec![kv_key(id), format!("{PENDING_PREFIX}{id}")];
    if let Some(owner) = &record.owner {
        keys.push(owner_index_key(owner, &record.created_at, id));
    }
    for key in keys {
        kv.delete(&key).await.map_err(|e| ApiError::internal().with_cause(format!("KV delete {key}: {e}")))?;
    }
    Ok(Response::empty()?.with_status(204))
}
