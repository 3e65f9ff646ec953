//! `GET|HEAD /image/{id}`: the bytes from R2, streamed without entering wasm,
//! with a strong ETag, immutable caching, conditional and range requests.
//! Before the copy into R2 has finished, the still-valid upstream output is
//! streamed instead.

use worker::{Headers, Method, Object, Request, RequestInit, Response, ResponseBody};

use super::net::{fetch_with_timeout, NetError};
use super::store::{guess_content_type, source_still_valid, Store};
use super::RequestContext;
use crate::error::ApiError;
use crate::http_range::{content_range, etag_matches, parse_range, unsatisfied_range, RangeRequest};
use crate::image_id::parse_image_id;
use crate::metadata::StoreStatus;

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const UPSTREAM_TIMEOUT_MS: u64 = 30_000;

pub fn image_not_found() -> ApiError {
    ApiError::new(404, "Image not found")
}

pub async fn get(req: &Request, cx: &RequestContext, id: &str) -> Result<Response, ApiError> {
    if parse_image_id(id).is_none() {
        return Err(image_not_found());
    }
    let head_only = req.method() == Method::Head;
    let store = cx.store()?;
    let header = |name: &str| req.headers().get(name).ok().flatten();
    let if_none_match = header("If-None-Match");
    let range = header("Range");

    // Conditional or ranged requests need the size and ETag first.
    if if_none_match.is_some() || range.is_some() || head_only {
        let Some(meta) = store.head(id).await? else {
            return from_upstream(store, id, head_only).await;
        };
        let etag = meta.http_etag();
        if if_none_match.as_deref().is_some_and(|v| etag_matches(v, &etag)) {
            let headers = object_headers(&meta)?;
            return Ok(Response::empty()?.with_status(304).with_headers(headers));
        }
        let size = meta.size();
        return match parse_range(range.as_deref(), size) {
            RangeRequest::Unsatisfiable => {
                let mut response = super::respond::error(&ApiError::new(416, "Range Not Satisfiable"));
                set(response.headers_mut(), "Content-Range", &unsatisfied_range(size))?;
                Ok(response)
            }
            RangeRequest::Full if head_only => {
                let headers = object_headers(&meta)?;
                set(&headers, "Content-Length", &size.to_string())?;
                Ok(Response::empty()?.with_headers(headers))
            }
            RangeRequest::Full => serve(store, id, None, size).await,
            RangeRequest::Partial { start, end } => serve(store, id, Some((start, end)), size).await,
        };
    }
    match store.object(id, None).await? {
        Some(object) => {
            let size = object.size();
            stream_object(object, None, size)
        }
        None => from_upstream(store, id, false).await,
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

/// Not in R2 (yet): stream the upstream output the record points at, while
/// Replicate still keeps it. Not cached: the stored copy will replace it.
async fn from_upstream(store: &Store, id: &str, head_only: bool) -> Result<Response, ApiError> {
    let record = store.record(id).await?.ok_or_else(image_not_found)?;
    if record.status == StoreStatus::Stored || !source_still_valid(&record) {
        return Err(image_not_found());
    }
    let url = record.source_url.as_deref().ok_or_else(image_not_found)?;
    let mut init = RequestInit::new();
    init.with_method(if head_only { Method::Head } else { Method::Get });
    let request = Request::new_with_init(url, &init)?;
    let upstream = fetch_with_timeout(request, UPSTREAM_TIMEOUT_MS, |r| async move { Ok(r) }).await.map_err(|e| {
        if let NetError::Failed(why) = e {
            worker::console_warn!("image {id}: upstream fetch failed: {why}");
        }
        image_not_found()
    })?;
    if upstream.status_code() != 200 {
        return Err(image_not_found());
    }
    let headers = Headers::new();
    let content_type = record.content_type.as_deref().unwrap_or_else(|| guess_content_type(id));
    set(&headers, "Content-Type", content_type)?;
    set(&headers, "Cache-Control", "no-store")?;
    if let Some(length) = upstream.headers().get("Content-Length").ok().flatten() {
        set(&headers, "Content-Length", &length)?;
    }
    let body = match upstream.body() {
        ResponseBody::Stream(stream) if !head_only => ResponseBody::Stream(stream.clone()),
        _ => ResponseBody::Empty,
    };
    Ok(Response::from_body(body)?.with_headers(headers))
}

fn set(headers: &Headers, name: &str, value: &str) -> Result<(), ApiError> {
    Ok(headers.set(name, value)?)
}
