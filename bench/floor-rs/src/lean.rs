//! The calls through fluxgate's own paths to the runtime: its promise
//! slots, KV and R2 modules compiled in as they are (`src/edge/`), outbound
//! fetches and bodies made as `src/edge/net.rs` makes them (a fetch's
//! options as one parsed text, a body read in one call), the request read
//! without `cf`, the futures executor woken without `queueMicrotask`.
use serde_json::{Map, Value};
use wasm_bindgen::JsCast;
use worker::wasm_bindgen::{self, JsValue};
use worker::web_sys;
use worker::{js_sys, Env, Headers, Response, ResponseBody, Result};

#[allow(dead_code)]
#[path = "../../../src/edge/kv.rs"]
mod kv;
#[allow(dead_code)]
#[path = "../../../src/edge/promise.rs"]
mod promise;
#[allow(dead_code)]
#[path = "../../../src/edge/r2.rs"]
mod r2;

use promise::settled;

pub type Incoming = web_sys::Request;

/// As `src/edge/mod.rs`'s start: with no `queueMicrotask` global, the
/// futures executor wakes its tasks through a resolved promise instead
/// (cheaper per call in workerd).
#[worker::event(start)]
fn start() {
    let _ = js_sys::Reflect::set(&js_sys::global(), &"queueMicrotask".into(), &JsValue::UNDEFINED);
}

/// The object bound as `name` in `env` (as `src/edge/mod.rs`'s).
fn binding(env: &Env, name: &str) -> Option<JsValue> {
    let value = js_sys::Reflect::get(env, &name.into()).ok()?;
    value.is_object().then_some(value)
}

/// A failed call to a binding (as `src/edge/mod.rs`'s).
#[derive(Debug, Clone)]
pub struct BindingError(String);

impl From<JsValue> for BindingError {
    fn from(e: JsValue) -> Self {
        BindingError(message(&e))
    }
}

impl From<BindingError> for worker::Error {
    fn from(e: BindingError) -> Self {
        worker::Error::RustError(e.0)
    }
}

fn message(e: &JsValue) -> String {
    e.as_string()
        .or_else(|| e.dyn_ref::<js_sys::Error>().map(|e| String::from(e.message())))
        .unwrap_or_else(|| "the call failed".into())
}

fn failed(e: JsValue) -> worker::Error {
    worker::Error::RustError(message(&e))
}

/// Where the path starts in a serialized URL (after the scheme and host).
fn path_start(url: &str) -> usize {
    let host = url.find("://").map_or(0, |i| i + 3);
    url[host..].find('/').map_or(url.len(), |i| host + i)
}

pub fn path(req: &Incoming) -> String {
    let url = req.url();
    let path = url[path_start(&url)..].split(['?', '#']).next().unwrap_or_default();
    if path.is_empty() {
        "/".into()
    } else {
        path.into()
    }
}

pub fn is_post(req: &Incoming) -> bool {
    req.method() == "POST"
}

pub async fn json_body(req: &mut Incoming) -> Result<Value> {
    let text = settled(&req.text().map_err(failed)?).await.map_err(failed)?;
    Ok(serde_json::from_str(&text.as_string().unwrap_or_default())?)
}

pub fn origin(req: &Incoming) -> String {
    let url = req.url();
    url[..path_start(&url)].to_string()
}

/// The runtime's own `fetch`, its options parsed from one text.
async fn send(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> Result<web_sys::Response> {
    let mut names = Map::new();
    for (name, value) in headers {
        names.insert((*name).to_owned(), (*value).into());
    }
    let init = serde_json::json!({ "method": method, "headers": names }).to_string();
    let init: web_sys::RequestInit = js_sys::JSON::parse(&init).map_err(failed)?.unchecked_into();
    if let Some(body) = body {
        init.set_body(&JsValue::from_str(body));
    }
    let scope: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
    let answer = settled(&scope.fetch_with_str_and_init(url, &init)).await.map_err(failed)?;
    answer.dyn_into::<web_sys::Response>().map_err(failed)
}

pub struct Platform {
    kv: kv::Kv,
    bucket: r2::Bucket,
}

impl Platform {
    pub fn new(env: &Env) -> Result<Self> {
        let kv = kv::Kv::from_env(env, "IMAGE_META").ok_or("no KV binding")?;
        let bucket = r2::Bucket::from_env(env, "IMAGES").ok_or("no R2 binding")?;
        Ok(Platform { kv, bucket })
    }

    pub async fn kv_text(&self, key: &str) -> Result<Option<String>> {
        Ok(self.kv.get_text(key).await?)
    }

    pub async fn kv_put(&self, key: &str, value: &str, ttl: Option<u64>, metadata: Option<Value>) -> Result<()> {
        Ok(self.kv.put(key, value, kv::PutOptions { ttl_secs: ttl, metadata }).await?)
    }

    pub async fn kv_delete(&self, key: &str) -> Result<()> {
        Ok(self.kv.delete(key).await?)
    }

    pub async fn post_json(&self, url: &str, headers: &[(&str, &str)], body: &str) -> Result<Value> {
        let answer = send("POST", url, headers, Some(body)).await?;
        let text = settled(&answer.text().map_err(failed)?).await.map_err(failed)?;
        Ok(serde_json::from_str(&text.as_string().unwrap_or_default())?)
    }

    /// The output fetched and its body streamed into R2: its size and type.
    pub async fn copy(&self, url: &str, key: &str) -> Result<(u64, Option<String>)> {
        let upstream = send("GET", url, &[], None).await?;
        let content_type = upstream.headers().get("content-type").map_err(failed)?;
        let body = upstream.body().ok_or("the output has no body")?;
        let metadata = r2::ObjectMetadata::typed(content_type.as_deref().unwrap_or("application/octet-stream"));
        let stored = self.bucket.put(key, &body, &metadata).await?;
        Ok((stored.size(), content_type))
    }

    pub async fn image(&self, key: &str) -> Result<Option<Response>> {
        let Some(object) = self.bucket.get(key, None, None).await? else {
            return Ok(None);
        };
        let headers = Headers::new();
        let content_type = object.content_type().unwrap_or_else(|| "application/octet-stream".into());
        headers.set("content-type", &content_type)?;
        headers.set("content-length", &object.size().to_string())?;
        headers.set("etag", &object.http_etag())?;
        headers.set("cache-control", "public, max-age=31536000, immutable")?;
        let body = object.body().ok_or("the object has no body")?;
        Ok(Some(Response::from_body(ResponseBody::Stream(body))?.with_headers(headers)))
    }
}
