//! Replicate's Files API under `/replicate/v1/files`, served here from R2
//! rather than passed to Replicate: a file is an upload (images only), its
//! `urls.get` our public `/upload/{id}` URL, so the inputs clients make from
//! it are fetched from us. Each caller sees only their own files (owner
//! `service` for the service's token, a hash of the token otherwise);
//! another's file is a 404, as a missing one.

use super::join::join_all;
use super::request::Request;
use serde_json::{json, Value};
use worker::Response;

use super::net::now_ms;
use super::respond;
use super::uploads::{bytes_response, live_object, object_headers, protect, settings_of, store_upload, verified_owner};
use super::RequestContext;
use crate::credentials::Credential;
use crate::error::ApiError;
use crate::multipart;
use crate::proxy::{ProxyRoute, PREFIX};
use crate::uploads::{check_image, file_form, parse_upload_id, UploadMeta, UploadRecord, FILES_PAGE_SIZE};

/// Serves one Files API route for `credential`'s caller.
pub async fn handle(
    mut req: Request,
    cx: &RequestContext,
    route: &ProxyRoute,
    credential: &Credential,
) -> Result<Response, ApiError> {
    let owner = verified_owner(cx, credential).await?;
    match route {
        ProxyRoute::CreateFile => create(&mut req, cx, owner).await,
        ProxyRoute::ListFiles => list(&req, cx, &owner).await,
        ProxyRoute::GetFile(id) => respond::json(200, &owned(cx, &owner, id).await?.file_object(&cx.base_url)),
        ProxyRoute::DeleteFile(id) => {
            let record = owned(cx, &owner, id).await?;
            cx.store()?.delete_upload(id, Some(record.owner_index_key())).await?;
            Ok(Response::empty()?.with_status(204))
        }
        ProxyRoute::DownloadFile(id) => download(cx, &owner, id).await,
        _ => Err(crate::proxy::not_found()),
    }
}

/// `POST /files`: `content` (required), `filename`, `type`, `metadata`, as
/// Replicate takes them; the content must be an image.
async fn create(req: &mut Request, cx: &RequestContext, owner: String) -> Result<Response, ApiError> {
    let settings = settings_of(&cx.env)?;
    let content_type = req.headers().get("Content-Type")?.unwrap_or_default();
    let boundary = multipart::form_boundary(&content_type).ok_or_else(|| {
        ApiError::bad_request("The request must be multipart/form-data with the file in a `content` part.")
    })?;
    let body = super::net::read_body(req, settings.max_form_bytes(1)).await?;
    let parts = multipart::parse(&body, &boundary)?;
    let form = file_form(&parts)?;
    let kind = check_image(form.content, settings.max_upload_bytes)?;
    let meta = UploadMeta { name: form.name, metadata: form.metadata, owner };
    let record = store_upload(cx, settings, form.content.to_vec(), kind, meta).await?;
    respond::json(201, &record.file_object(&cx.base_url))
}

/// `GET /files`: the caller's files, newest first, a page at a time
/// (`next` carries the cursor; `previous` is always null).
async fn list(req: &Request, cx: &RequestContext, owner: &str) -> Result<Response, ApiError> {
    let url = req.url().map_err(|_| ApiError::bad_request("Invalid URL"))?;
    let cursor = url.query_pairs().find(|(k, _)| k == "cursor").map(|(_, v)| v.into_owned()).filter(|c| !c.is_empty());
    let store = cx.store()?;
    let (ids, next) = store.upload_ids_of(owner, cursor, FILES_PAGE_SIZE).await?;
    let records = join_all(ids.iter().map(|id| store.upload_record(id))).await;
    let now = now_ms();
    let results: Vec<Value> = records
        .into_iter()
        .filter_map(|r| r.ok().flatten())
        .filter(|r| r.owner == owner && !r.is_expired(now))
        .map(|r| r.file_object(&cx.base_url))
        .collect();
    let next = next.map(|c| {
        let cursor: String = url::form_urlencoded::byte_serialize(c.as_bytes()).collect();
        format!("{}{PREFIX}/files?cursor={cursor}", cx.base_url)
    });
    respond::json(200, &json!({ "next": next, "previous": null, "results": results }))
}

/// `GET /files/{id}/download`: the bytes, as stored.
async fn download(cx: &RequestContext, owner: &str, id: &str) -> Result<Response, ApiError> {
    owned(cx, owner, id).await?;
    let (object, expires) = live_object(cx.store()?, id, true).await?.ok_or_else(file_not_found)?;
    let headers = object_headers(&object, expires)?;
    let mut response = bytes_response(object, headers)?;
    protect(response.headers_mut())?;
    Ok(response)
}

/// The record of the caller's own live file `id`; anything else is a 404.
async fn owned(cx: &RequestContext, owner: &str, id: &str) -> Result<UploadRecord, ApiError> {
    if parse_upload_id(id).is_none() {
        return Err(file_not_found());
    }
    let record = cx.store()?.upload_record(id).await?.ok_or_else(file_not_found)?;
    if record.owner != owner || record.is_expired(now_ms()) {
        return Err(file_not_found());
    }
    Ok(record)
}

fn file_not_found() -> ApiError {
    ApiError::new(404, "File not found")
}
