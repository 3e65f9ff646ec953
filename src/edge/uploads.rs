//! Images sent in: `POST /uploads` (the same auth as `/generate`), the
//! public `GET|HEAD /upload/{id}` that models fetch them from, the
//! multipart forms of `/generate`, and what every way in shares: bounded
//! body reads, the caller's token checked with Replicate before anything of
//! theirs is stored, and the store call itself. What is decided without I/O
//! lives in `crate::uploads` and `crate::multipart`.

use std::sync::OnceLock;

use super::r2::Object;
use super::request::Request;
use serde_json::Map;
use worker::{Env, Headers, Method, Response, ResponseBody};

use super::context::TokenHints;
use super::net::now_ms;
use super::net::read_body;
use super::replicate::READ_TIMEOUT_MS;
use super::serving::{self, Stored};
use super::store::{upload_expiry, Read, Store};
use super::{respond, RequestContext};
use crate::credentials::{Credential, UNAUTHORIZED};
use crate::error::ApiError;
use crate::multipart::{self, Part};
use crate::output::ImageKind;
use crate::uploads::{
    check_image, display_name, generate_parts, new_upload_id, owner_of, parse_upload_id, token_check_key, upload_body,
    upload_part, upload_url, FormEntry, UploadBody, UploadMeta, UploadRecord, UploadSettings, MAX_FORM_FILES,
    SERVICE_OWNER, TOKEN_CHECK_TTL_SECS,
};

/// What a page may do with an upload: nothing (the same policy as images).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; sandbox";
/// The longest an answer of `/upload/{id}` may be cached.
const MAX_CACHE_SECS: u64 = 300;

static SETTINGS: OnceLock<Result<UploadSettings, ApiError>> = OnceLock::new();

/// The upload settings, read from the vars once per isolate.
pub fn settings_of(env: &Env) -> Result<&'static UploadSettings, ApiError> {
    let read = || UploadSettings::from_vars(|name| env.var(name).ok().map(|v| v.to_string()));
    SETTINGS.get_or_init(read).as_ref().map_err(Clone::clone)
}

/// `POST /uploads`: the caller is known by its headers (or a
/// `replicate_token` query parameter) before the body is read; the body is
/// `multipart/form-data` with a `file` part, or the image itself as `image/*`.
/// 201 `{id, url, content_type, size, expires_at}`.
pub async fn post(req: Request, cx: &RequestContext) -> Result<Response, ApiError> {
    let settings = settings_of(&cx.env)?;
    let url = req.url().map_err(|_| ApiError::bad_request("Invalid URL"))?;
    let query_token = url.query_pairs().find(|(k, _)| k == "replicate_token").map(|(_, v)| v.into_owned());
    let credential = cx.caller(TokenHints { query: query_token.as_deref(), ..TokenHints::default() }).await?;
    let max = settings.max_upload_bytes;
    let body_kind = upload_body(req.headers().get("Content-Type")?.as_deref())?;
    let owner = verified_owner(cx, &credential).await?;
    let record = match body_kind {
        UploadBody::Raw => {
            let body = read_body(&req, max).await?;
            let kind = check_image(&body, max)?;
            let meta = UploadMeta { name: display_name(None, kind), metadata: Map::new(), owner };
            store_upload(cx, settings, body, kind, meta).await?
        }
        UploadBody::Form { boundary } => {
            let body = read_body(&req, settings.max_form_bytes(1)).await?;
            let parts = multipart::parse(&body, &boundary)?;
            let part = upload_part(&parts)?;
            let kind = check_image(part.body, max)?;
            let meta = UploadMeta { name: display_name(part.filename.as_deref(), kind), metadata: Map::new(), owner };
            store_upload(cx, settings, part.body.to_vec(), kind, meta).await?
        }
    };
    respond::json(201, &record.upload_answer(&cx.base_url))
}

/// A `POST /generate` body sent as `multipart/form-data`.
pub struct GenerateForm {
    /// Every text field, in order, as sent; every file field with the
    /// public URL of the upload its image was stored as.
    pub fields: Vec<(String, String)>,
    /// The `replicate_token` field, kept out of `fields`.
    pub replicate_token: Option<String>,
    /// The `model` field, kept out of `fields`.
    pub model: Option<String>,
}

/// Reads a `multipart/form-data` `/generate` body (at most `MAX_FORM_FILES`
/// images, each within `MAX_UPLOAD_BYTES`). Files are stored as uploads of
/// the caller, who is identified (headers, or the form's `replicate_token`)
/// and, with a token of their own, checked with Replicate before anything
/// is stored. A file that is not an image is a 400 naming its field.
pub async fn read_generate_form(req: &mut Request, cx: &RequestContext) -> Result<GenerateForm, ApiError> {
    let settings = settings_of(&cx.env)?;
    let content_type = req.headers().get("Content-Type")?.unwrap_or_default();
    let boundary = match upload_body(Some(&content_type))? {
        UploadBody::Form { boundary } => boundary,
        UploadBody::Raw => {
            return Err(ApiError::new(415, "Unsupported Media Type")
                .with_details("Content-Type must be application/json or multipart/form-data"))
        }
    };
    let body = read_body(req, settings.max_form_bytes(MAX_FORM_FILES)).await?;
    let parts = multipart::parse(&body, &boundary)?;
    let form = generate_parts(&parts)?;
    let has_files = form.entries.iter().any(|e| matches!(e, FormEntry::File(_)));
    let owner = if has_files {
        let credential =
            cx.caller(TokenHints { body: form.replicate_token.as_deref(), ..TokenHints::default() }).await?;
        verified_owner(cx, &credential).await?
    } else {
        String::new()
    };
    let mut fields = Vec::with_capacity(form.entries.len());
    for entry in form.entries {
        match entry {
            FormEntry::Text(name, value) => fields.push((name, value)),
            FormEntry::File(part) => {
                let record = store_part(cx, settings, part, &owner).await?;
                fields.push((part.name.clone(), upload_url(&cx.base_url, &record.id)));
            }
        }
    }
    Ok(GenerateForm { fields, replicate_token: form.replicate_token, model: form.model })
}

/// Stores one file part of a form, checked; errors name its field.
async fn store_part(
    cx: &RequestContext,
    settings: &UploadSettings,
    part: &Part<'_>,
    owner: &str,
) -> Result<UploadRecord, ApiError> {
    let name_field = |mut e: ApiError| {
        let details = e.details.take().map(|d| format!("{}: {d}", part.name)).unwrap_or_else(|| part.name.clone());
        e.with_details(details)
    };
    let kind = check_image(part.body, settings.max_upload_bytes).map_err(name_field)?;
    let meta = UploadMeta {
        name: display_name(part.filename.as_deref(), kind),
        metadata: Map::new(),
        owner: owner.to_owned(),
    };
    store_upload(cx, settings, part.body.to_vec(), kind, meta).await
}

/// Stores checked image bytes as a new upload under a fresh random id.
pub async fn store_upload(
    cx: &RequestContext,
    settings: &UploadSettings,
    bytes: Vec<u8>,
    kind: ImageKind,
    meta: UploadMeta,
) -> Result<UploadRecord, ApiError> {
    let mut random = [0u8; 16];
    getrandom::fill(&mut random).map_err(|e| ApiError::internal().with_cause(format!("getrandom: {e}")))?;
    let id = new_upload_id(&random, kind);
    let now = now_ms();
    let record = UploadRecord::new(&id, kind, &bytes, meta, now, settings.retention_ms());
    cx.store()?.put_upload(&record, bytes, now).await?;
    Ok(record)
}

/// The owner uploads of `credential` are stored under. A token of the
/// caller's own must be one Replicate accepts (asked once, then trusted for
/// `TOKEN_CHECK_TTL_SECS`): a made-up token stores nothing here.
pub async fn verified_owner(cx: &RequestContext, credential: &Credential) -> Result<String, ApiError> {
    let owner = owner_of(credential);
    if owner == SERVICE_OWNER {
        return Ok(owner);
    }
    let store = cx.store()?;
    let key = token_check_key(&owner);
    if store.get_text(&key).await?.is_some() {
        return Ok(owner);
    }
    let answer = cx.replicate(credential)?.send(Method::Get, "/v1/account", None, &[], READ_TIMEOUT_MS).await?;
    match answer.status {
        200..=299 => {
            store.put_text_for(&key, "", TOKEN_CHECK_TTL_SECS).await?;
            Ok(owner)
        }
        401 | 403 => Err(ApiError::new(401, UNAUTHORIZED).with_details("Replicate did not accept the token")),
        status => Err(ApiError::replicate("could not check the token").with_cause(format!("/v1/account: {status}"))),
    }
}

pub fn upload_not_found() -> ApiError {
    ApiError::new(404, "Upload not found")
}

/// `GET|HEAD /upload/{id}`: the bytes from R2 until the upload expires, with
/// the type its magic numbers showed, an ETag, conditional and range
/// requests (one R2 call each, see `serving`), `nosniff` and the same
/// Content-Security-Policy as images, errors included. No auth: models
/// fetch it. Only R2 is read (strongly consistent), never KV.
pub async fn serve(req: &Request, cx: &RequestContext, id: &str) -> Result<Response, ApiError> {
    let mut response = match answer(req, cx, id).await {
        Ok(response) => response,
        Err(e) => {
            cx.log_error(&e);
            respond::error(&e)
        }
    };
    protect(response.headers_mut())?;
    Ok(response)
}

/// The headers every answer carrying upload bytes (or an error in their
/// place) has.
pub fn protect(headers: &mut Headers) -> Result<(), ApiError> {
    headers.set("X-Content-Type-Options", "nosniff")?;
    headers.set("Content-Security-Policy", CONTENT_SECURITY_POLICY)?;
    Ok(())
}

async fn answer(req: &Request, cx: &RequestContext, id: &str) -> Result<Response, ApiError> {
    if parse_upload_id(id).is_none() {
        return Err(upload_not_found());
    }
    let upload = UploadBytes { store: cx.store()?, id };
    serving::answer(req, &upload).await?.ok_or_else(upload_not_found)
}

/// An upload's bytes in R2, while the upload lives.
struct UploadBytes<'a> {
    store: &'a Store,
    id: &'a str,
}

impl Stored for UploadBytes<'_> {
    async fn head(&self) -> Result<Option<Object>, ApiError> {
        Ok(live_upload(self.store, self.id, None).await?.map(|(object, _)| object))
    }

    async fn read(&self, read: Read) -> Result<Option<Object>, ApiError> {
        Ok(live_upload(self.store, self.id, Some(read)).await?.map(|(object, _)| object))
    }

    fn headers(&self, object: &Object) -> Result<Headers, ApiError> {
        object_headers(object, upload_expiry(object).unwrap_or(0))
    }
}

/// The upload's object, unless it is missing or expired.
pub async fn live_object(store: &Store, id: &str, with_body: bool) -> Result<Option<(Object, u64)>, ApiError> {
    live_upload(store, id, with_body.then(Read::default)).await
}

/// The upload's object as one R2 read asks for it (only its metadata with
/// `None`), and when it expires; `None` if it is missing or expired.
async fn live_upload(store: &Store, id: &str, read: Option<Read>) -> Result<Option<(Object, u64)>, ApiError> {
    Ok(store.upload_object(id, read).await?.and_then(|(object, expires)| {
        let expires = expires.unwrap_or(0);
        (now_ms() < expires).then_some((object, expires))
    }))
}

/// Type, ETag and caching (never past the expiry) of an upload's bytes.
pub fn object_headers(object: &Object, expires_ms: u64) -> Result<Headers, ApiError> {
    let headers = Headers::new();
    let content_type = object.content_type().unwrap_or_else(|| "application/octet-stream".into());
    headers.set("Content-Type", &content_type)?;
    headers.set("ETag", &object.http_etag())?;
    let max_age = (expires_ms.saturating_sub(now_ms()) / 1000).min(MAX_CACHE_SECS);
    headers.set("Cache-Control", &format!("public, max-age={max_age}"))?;
    Ok(headers)
}

/// The object's bytes, streamed from R2 without entering wasm.
pub fn bytes_response(object: Object, headers: Headers) -> Result<Response, ApiError> {
    headers.set("Content-Length", &object.size().to_string())?;
    let body = object.body().ok_or_else(|| ApiError::internal().with_cause("R2 object without a body"))?;
    Ok(Response::from_body(ResponseBody::Stream(body))?.with_headers(headers))
}
