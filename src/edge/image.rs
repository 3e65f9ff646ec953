//! `GET|HEAD /image/{id}`: the bytes from R2, streamed without entering wasm,
//! with a strong ETag, immutable caching, conditional and range requests
//! (one R2 call each, see `serving`), and this location's cache (the Cache
//! API) in front of R2 for whole images.
//!
//! Only bytes in R2 are ever served: they were checked to be an image, by
//! their magic numbers, before they were written. While an image's copy is
//! still under way the answer waits briefly for it; a copy that failed is
//! made again here by one reader at a time (a short KV lease), never once
//! per reader. Every answer, errors included, carries `nosniff` and a
//! Content-Security-Policy that lets nothing run.

use super::r2::Object;
use super::request::Request;
use worker::web_sys;
use worker::{Cache, Headers, Method, Response};

use super::net::{now_ms, sleep_ms};
use super::serving::{self, Stored};
use super::store::{source_still_valid, Read, Store, COPY_TIMEOUT_MS};
use super::{respond, RequestContext};
use crate::error::ApiError;
use crate::image_id::{parse_image_id, rfc3339_to_ms};
use crate::metadata::{ImageRecord, StoreStatus};

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// What a page may do with an image answer: nothing (it is generated content).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; sandbox";
/// How long a reader waits for a copy under way before hearing "not ready".
const WAIT_FOR_COPY_MS: u64 = 8_000;
/// Seconds a "not ready yet" answer asks the reader to wait.
const NOT_READY_RETRY_SECS: u32 = 2;
/// A pending copy younger than this is left to the request that started it.
const PENDING_GRACE_MS: u64 = 30_000;
/// How long after a delete a read that started before it may still put the
/// image in the cache (a copy streams into it while it is answered).
const REFILL_WINDOW_MS: u64 = 10_000;

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
    let cacheable = req.method() == Method::Get && req.headers().get("Range")?.is_none();
    if cacheable {
        match cached(req, cx, id).await {
            Ok(Some(hit)) => return Ok(hit),
            Ok(None) => {}
            Err(e) => worker::console_warn!("cache match {id}: {e}"),
        }
    }
    let mut response = from_store(req, cx, id).await?;
    if cacheable && response.status_code() == 200 {
        keep(cx, id, &mut response)?;
    }
    Ok(response)
}

/// Whether this route will serve `id`: its bytes are in R2, or its copy is
/// under way or can still be made (the answer waits for it, or makes it).
/// An image input naming one of ours is checked with this, so that an image
/// handed out a moment ago, before its copy landed, can be used at once.
pub async fn will_serve(store: &Store, id: &str) -> Result<bool, ApiError> {
    if store.head(id).await?.is_some() {
        return Ok(true);
    }
    let record = store.record(id).await?;
    Ok(record.is_some_and(|r| copy_can_land(&r)))
}

/// Whether a record's copy is under way or can be made again.
fn copy_can_land(record: &ImageRecord) -> bool {
    matches!(record.status, StoreStatus::Pending | StoreStatus::Failed) && source_still_valid(record)
}

/// The answer from R2, waiting for (or making) a copy still to land.
async fn from_store(req: &Request, cx: &RequestContext, id: &str) -> Result<Response, ApiError> {
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
        _ if !copy_can_land(&record) => return Err(image_lost()),
        _ => {}
    }
    let copier_gone = record.status == StoreStatus::Failed || age > PENDING_GRACE_MS;
    if copier_gone && store.take_copy_lease(id).await {
        if let Some(source) = record.source() {
            let (_, counted) = store.persist(record, &source, 1, now_ms().saturating_add(COPY_TIMEOUT_MS)).await;
            if let Some(key) = counted {
                cx.defer_usage(key);
            }
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

/// The answer from R2 (one call, see `serving`), or `None` when the image
/// is not stored there.
async fn from_r2(req: &Request, store: &Store, id: &str) -> Result<Option<Response>, ApiError> {
    serving::answer(req, &ImageBytes { store, id }).await
}

/// An image's bytes in R2.
struct ImageBytes<'a> {
    store: &'a Store,
    id: &'a str,
}

impl Stored for ImageBytes<'_> {
    async fn head(&self) -> Result<Option<Object>, ApiError> {
        self.store.head(self.id).await
    }

    async fn read(&self, read: Read) -> Result<Option<Object>, ApiError> {
        self.store.object(self.id, read).await
    }

    fn headers(&self, object: &Object) -> Result<Headers, ApiError> {
        let headers = Headers::new();
        let content_type = object.content_type().unwrap_or_else(|| "application/octet-stream".into());
        headers.set("Content-Type", &content_type)?;
        headers.set("ETag", &object.http_etag())?;
        headers.set("Cache-Control", IMMUTABLE)?;
        Ok(headers)
    }
}

// The Cache API in front of R2, for whole images: the bytes never change,
// so a hit needs no R2 or KV call. It works on a custom domain only: on
// workers.dev it keeps nothing, and every read goes to R2. Only 200s are
// kept, and only GETs without `Range` look there: a range is one R2 call
// anyway, answered as `http_range` says (the cache has rules of its own,
// several ranges at once among them). Entries are keyed by the image's
// public URL, whatever host a read came by, so that a DELETE finds them;
// each location has a cache of its own.

/// A whole image from this location's cache, with the cache's own answer
/// to the request's `If-None-Match` (200 or 304); `None` when not there.
async fn cached(req: &Request, cx: &RequestContext, id: &str) -> Result<Option<Response>, ApiError> {
    // Made as the runtime's own Request: the worker crate's RequestInit
    // would convert its `cf` properties (image resizing options and all) on
    // every lookup.
    let headers = web_sys::Headers::new().map_err(worker::Error::from)?;
    if let Some(tags) = req.headers().get("If-None-Match")? {
        headers.set("If-None-Match", &tags).map_err(worker::Error::from)?;
    }
    let init = web_sys::RequestInit::new();
    init.set_method("GET");
    init.set_headers(&headers);
    let lookup = web_sys::Request::new_with_str_and_init(&cx.image_url(id), &init).map_err(worker::Error::from)?;
    match Cache::default().get(&worker::Request::from(lookup), false).await? {
        Some(hit) if matches!(hit.status_code(), 200 | 304) => with_own_headers(hit).map(Some),
        _ => Ok(None),
    }
}

/// A cached answer with headers that can be added to (the cache's are
/// immutable); a 304 without the Content-Length of the bytes it leaves out.
fn with_own_headers(hit: Response) -> Result<Response, ApiError> {
    let status = hit.status_code();
    let headers = Headers::new();
    for (name, value) in hit.headers().entries() {
        if status == 304 && name.eq_ignore_ascii_case("Content-Length") {
            continue;
        }
        headers.append(&name, &value)?;
    }
    let (_, body) = hit.into_parts();
    Ok(Response::from_body(body)?.with_status(status).with_headers(headers))
}

/// Puts a copy of a whole image's answer in this location's cache, after
/// the answer.
fn keep(cx: &RequestContext, id: &str, response: &mut Response) -> Result<(), ApiError> {
    let copy = response.cloned()?;
    let key = cx.image_url(id);
    cx.wait_until(async move {
        if let Err(e) = Cache::default().put(&key, copy).await {
            worker::console_warn!("cache put {key}: {e}");
        }
    });
    Ok(())
}

/// Drops a deleted image from this location's cache, now and once more
/// after `REFILL_WINDOW_MS`, as a read under way may put it back meanwhile.
/// Other locations keep their copy until it expires.
pub async fn forget(cx: &RequestContext, id: &str) {
    let key = cx.image_url(id);
    uncache(&key).await;
    cx.wait_until(async move {
        sleep_ms(REFILL_WINDOW_MS).await;
        uncache(&key).await;
    });
}

async fn uncache(key: &str) {
    if let Err(e) = Cache::default().delete(key, false).await {
        worker::console_warn!("cache delete {key}: {e}");
    }
}
