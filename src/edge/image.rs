//! `GET|HEAD /image/{id}`: the bytes from R2, streamed without entering wasm,
//! with a strong ETag, immutable caching, conditional and range requests.
//!
//! Only bytes in R2 are ever served: they were checked to be an image, by
//! their magic numbers, before they were written. While an image's copy is
//! still under way the answer waits briefly for it; a copy that failed is
//! made again here by one reader at a time (a short KV lease), never once
//! per reader. Every answer, errors included, carries `nosniff` and a
//! Content-Security-Policy that lets nothing run.

use worker::{Headers, Method, Object, Request, Response};

use super::net::{now_ms, sleep_ms};
use super::store::{source_still_valid, Store, COPY_TIMEOUT_MS};
use super::{respond, RequestContext};
use crate::error::ApiError;
use crate::http_range::{content_range, etag_matches, parse_range, unsatisfied_range, RangeRequest};
use crate::image_id::{parse_image_id, rfc3339_to_ms};
use crate::metadata::StoreStatus;

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// What a page may do with an image answer: nothing (it is generated content).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; sandbox";
/// How long a reader waits for a copy under way before hearing "not ready".
const WAIT_FOR_COPY_MS: u64 = 8_000;
/// Seconds a "not ready yet" answer asks the reader to wait.
const NOT_READY_RETRY_SECS: u32 = 2;
/// A pending copy younger than this is left to the request that started it.
const PENDING_GRACE_MS: u64 = 30_000;

pub fn image_not_found() -> ApiError {
    ApiError::new(404, "Image not found")
}

fn image_lost() -> ApiError {
    ApiError::new(410, "Image lost")
        .with_details("its output could not be stored before Replicate removed it; generate it again")
}

fn not_ready() -> ApiError {
    ApiError::new(503, "Image not ready yet")
        .with_details("the image is being generated or stored; try again shortly")
        .with_retry_after(NOT_READY_RETRY_SECS)
}

pub async fn get(req: &Request, cx: &RequestContext, id: &str) -> Result<Response, ApiError> {
    let mut response = match answer(req, cx, id).await {
        Ok(response) => response,
        Err(e) => {
            cx.log_error(&e);
            respond::error(&e)
        }
    };
    let headers = response.headers_mut();
    headers.set("X-Content-Type-Options", "nosniff")?;
    headers.set("Content-Security-Policy", CONTENT_SECURITY_POLICY)?;
    Ok(response)
}

async fn answer(req: &Request, cx: &RequestContext, id: &str) -> Result<Response, ApiError> {
    if parse_image_id(id).is_none() {
        return Err(image_not_found());
    }
    let store = cx.store()?;
    if let Some(response) = from_r2(req, store, id).await? {
        return Ok(response);
    }
    let record = store.record(id).await?.ok_or_else(image_not_found)?;
    let age = now_ms().saturating_sub(rfc3339_to_ms(&record.created_at).unwrap_or(0));
    match record.status {
        // Announced by an async generation whose model has not given it yet.
        StoreStatus::Awaiting if age < crate::jobs::FOLLOW_FOR_MS => return Err(not_ready()),
        StoreStatus::Awaiting => return Err(image_lost()),
        StoreStatus::Lost => return Err(image_lost()),
        StoreStatus::Stored => return Err(image_not_found()),
        _ if !source_still_valid(&record) => return Err(image_lost()),
        _ => {}
    }
    let copier_gone = record.status == StoreStatus::Failed || age > PENDING_GRACE_MS;
    if copier_gone && store.take_copy_lease(id).await {
        if let Some(source) = record.source() {
            store.persist(record, &source, 1, now_ms().saturating_add(COPY_TIMEOUT_MS)).await;
        }
    } else {
        wait_for_copy(store, id).await?;
    }
    from_r2(req, store, id).await?.ok_or_else(not_ready)
}

/// Waits, with growing pauses, until the image is in R2 or the wait is over.
async fn wait_for_copy(store: &Store, id: &str) -> Result<(), ApiError> {
    let deadline = now_ms().saturating_add(WAIT_FOR_COPY_MS);
    let mut pause = 100;
    while now_ms().saturating_add(pause) < deadline {
        sleep_ms(pause).await;
        if store.head(id).await?.is_some() {
            return Ok(());
        }
        pause = (pause * 2).min(1000);
    }
    Ok(())
}

/// The answer from R2, or `None` when the image is not stored there.
async fn from_r2(req: &Request, store: &Store, id: &str) -> Result<Option<Response>, ApiError> {
    let head_only = req.method() == Method::Head;
    let if_none_match = req.headers().get("If-None-Match")?;
    let range = req.headers().get("Range")?;

    // Conditional or ranged requests need the size and ETag first.
    if if_none_match.is_some() || range.is_some() || head_only {
        let Some(meta) = store.head(id).await? else { return Ok(None) };
        let etag = meta.http_etag();
        if if_none_match.as_deref().is_some_and(|v| etag_matches(v, &etag)) {
            let headers = object_headers(&meta)?;
            return Ok(Some(Response::empty()?.with_status(304).with_headers(headers)));
        }
        let size = meta.size();
        return match parse_range(range.as_deref(), size) {
            RangeRequest::Unsatisfiable => {
                let mut response = respond::error(&ApiError::new(416, "Range Not Satisfiable"));
                set(response.headers_mut(), "Content-Range", &unsatisfied_range(size))?;
                Ok(Some(response))
            }
            RangeRequest::Full if head_only => {
                let headers = object_headers(&meta)?;
                set(&headers, "Content-Length", &size.to_string())?;
                Ok(Some(Response::empty()?.with_headers(headers)))
            }
            RangeRequest::Full => serve(store, id, None, size).await.map(Some),
            RangeRequest::Partial { start, end } => serve(store, id, Some((start, end)), size).await.map(Some),
        };
    }
    match store.object(id, None).await? {
        Some(object) => {
            let size = object.size();
            stream_object(object, None, size).map(Some)
        }
        None => Ok(None),
    }
}

async fn serve(store: &Store, id: &str, part: Option<(u64, u64)>, size: u64) -> Result<Response, ApiError> {
    match store.object(id, part).await? {
        Some(object) => stream_object(object, part, size),
        None => Err(image_not_found()),
    }
}

fn stream_object(object: Object, part: Option<(u64, u64)>, size: u64) -> Result<Response, ApiError> {
    let headers = object_headers(&object)?;
    let (status, length) = match part {
        Some((start, end)) => {
            set(&headers, "Content-Range", &content_range(start, end, size))?;
            (206, end - start + 1)
        }
        None => (200, size),
    };
    set(&headers, "Content-Length", &length.to_string())?;
    let body = object.body().ok_or_else(|| ApiError::internal().with_cause("R2 object without a body"))?;
    Ok(Response::from_body(body.response_body()?)?.with_status(status).with_headers(headers))
}

fn object_headers(object: &Object) -> Result<Headers, ApiError> {
    let headers = Headers::new();
    let content_type = object.http_metadata().content_type.unwrap_or_else(|| "application/octet-stream".into());
    set(&headers, "Content-Type", &content_type)?;
    set(&headers, "ETag", &object.http_etag())?;
    set(&headers, "Cache-Control", IMMUTABLE)?;
    set(&headers, "Accept-Ranges", "bytes")?;
    Ok(headers)
}

fn set(headers: &Headers, name: &str, value: &str) -> Result<(), ApiError> {
    Ok(headers.set(name, value)?)
}
