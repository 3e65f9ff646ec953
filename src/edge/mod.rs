//! The Workers glue: the fetch entry point, which builds one request
//! context and dispatches to one handler per route group, and the cron that
//! retries unfinished copies. Handlers return `Result<Response, ApiError>`;
//! every error leaves as the shared JSON shape (Replicate's under
//! `/replicate/v1`), and errors of ours (5xx) are logged with their cause.
//!
//! Where things go: a new route is a `Route` variant (`routes.rs`) and a
//! handler file here; a new storage call is a `Store` method (`store.rs`);
//! a call to Replicate is a `Replicate` method (`replicate.rs`).

mod cache;
mod context;
mod cors;
mod cron;
mod files;
mod generate;
mod health;
mod image;
mod images;
mod jobs;
mod join;
mod keys;
mod kv;
mod models;
mod net;
mod persist;
mod promise;
mod proxy;
mod r2;
mod replicate;
mod request;
mod respond;
mod schemas;
mod serving;
mod store;
mod uploads;
mod usage;
mod webhooks;

use self::request::Request;
use worker::{event, Context, Env, Response, Result};

use crate::error::ApiError;
use crate::request_log::{self, route_of};
use crate::routes::{self, Route};
pub use context::RequestContext;

/// The object bound as `name` in `env`; `None` when there is none.
fn binding(env: &Env, name: &str) -> Option<worker::wasm_bindgen::JsValue> {
    let value = worker::js_sys::Reflect::get(env, &name.into()).ok()?;
    value.is_object().then_some(value)
}

/// A failed call to a KV or R2 binding, with the runtime's message (callers
/// say which binding and what for).
#[derive(Debug, Clone)]
pub struct BindingError(String);

impl std::fmt::Display for BindingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<worker::wasm_bindgen::JsValue> for BindingError {
    fn from(e: worker::wasm_bindgen::JsValue) -> Self {
        BindingError(net::js_message(&e).unwrap_or_else(|| "the binding's call failed".into()))
    }
}

/// Binding names, as declared in wrangler.toml.
pub const IMAGES_BUCKET: &str = "IMAGES";
pub const METADATA_KV: &str = "IMAGE_META";

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
    // With no `queueMicrotask` global, the futures executor wakes its tasks
    // through a resolved promise instead: measured at about 0.3 ms of CPU
    // less per generation in workerd, whose `queueMicrotask` costs more per
    // call than a promise reaction. Nothing else in this isolate uses it.
    let _ = worker::js_sys::Reflect::set(
        &worker::js_sys::global(),
        &"queueMicrotask".into(),
        &worker::wasm_bindgen::JsValue::UNDEFINED,
    );
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
    let started = net::now_ms();
    let inner = Clone::clone(req.inner()); // the same JS object, not Request.clone()
    let cx = RequestContext::new(&req, env, ctx);
    let (method, path) = (req.method().to_string(), req.path().to_owned());
    // An ordinary answer's CORS headers depend on the origin alone; the
    // Access-Control-Request-* headers matter to a preflight (see dispatch).
    let cors = cors::CorsRequest {
        origin: req.headers().get("Origin").ok().flatten(),
        method: method.clone(),
        path: path.clone(),
        request_method: None,
        request_headers: None,
    };
    let mut response = dispatch(req, &cx).await;
    // Usage counted and not taken by the request's copies into R2.
    let counted = cx.take_usage();
    if let (false, Ok(store)) = (counted.is_empty(), cx.store()) {
        cx.wait_until(usage::write_counted(store.kv().clone(), counted));
    }
    cors::apply(&cx.env, &cors, &mut response);
    let _ = response.headers_mut().set("X-Request-Id", &cx.request_id);
    // A refusal carries its own; an answer after admission, the caller's limit.
    if response.status_code() != 429 {
        for (name, value) in cx.rate_limit().unwrap_or_default() {
            let _ = response.headers_mut().set(name, &value);
        }
    }
    let bytes = response.headers().get("Content-Length").ok().flatten().and_then(|v| crate::text::decimal(&v));
    let duration = net::now_ms().saturating_sub(started);
    let status = response.status_code();
    let subject = cx.subject();
    let line = request_log::line(
        &cx.request_id,
        &method,
        route_of(&path),
        status,
        duration,
        subject.as_deref(),
        &cx.noted(),
        bytes,
    );
    worker::console_log!("{line}");
    drain_unread_body(&inner).await;
    Ok(response)
}

async fn dispatch(req: Request, cx: &RequestContext) -> Response {
    let route = routes::resolve(req.method().as_ref(), req.path());
    let answer = match route {
        Route::Replicate(rest) => return proxy::handle(req, cx, &rest).await,
        Route::Health => health::get(cx).await,
        Route::Models => models::list(cx).await,
        Route::NotFound => Err(ApiError::not_found()),
        Route::MethodNotAllowed { allowed } => Err(ApiError::method_not_allowed(allowed)),
        Route::Image(id) => image::get(&req, cx, &id).await,
        Route::GenerateGet => generate::get(req, cx).await,
        Route::GeneratePost => generate::post(req, cx).await,
        Route::GenerateStatus(id) => jobs::status(cx, &id).await,
        Route::GenerateCancel(id) => jobs::cancel(cx, &id).await,
        Route::ReplicateWebhook => webhooks::receive(req, cx).await,
        Route::Upload(id) => uploads::serve(&req, cx, &id).await,
        Route::UploadsPost => uploads::post(req, cx).await,
        Route::ImageDelete(id) => images::delete(cx, &id).await,
        Route::Images => images::list(&req, cx).await,
        Route::Usage => usage::get(&req, cx).await,
        Route::AdminKeys => keys::keys(req, cx).await,
        Route::AdminKey(id) => keys::revoke(cx, &id).await,
        Route::AdminUsage => usage::admin(&req, cx).await,
        Route::Preflight => {
            let header = |name: &str| req.headers().get(name).ok().flatten();
            let cors = cors::CorsRequest {
                origin: header("Origin"),
                method: String::from("OPTIONS"),
                path: req.path().to_owned(),
                request_method: header("Access-Control-Request-Method"),
                request_headers: header("Access-Control-Request-Headers"),
            };
            cors::preflight(&cx.env, &cors)
        }
    };
    answer.unwrap_or_else(|e| {
        cx.log_error(&e);
        respond::error(&e)
    })
}

/// Bodies answered without being read (a 401 before the body, a 413 by its
/// Content-Length) make the runtime drop the client's keep-alive connection;
/// small ones are read to the end (in JS, not wasm) so it can be reused.
async fn drain_unread_body(req: &worker::web_sys::Request) {
    const DRAIN_LIMIT: u64 = 1024 * 1024;
    if req.body_used() || req.body().is_none() {
        return;
    }
    let length = req.headers().get("Content-Length").ok().flatten().and_then(|v| v.parse::<u64>().ok());
    if length.is_some_and(|n| n <= DRAIN_LIMIT) {
        if let Ok(promise) = req.array_buffer() {
            let _ = promise::settled(&promise).await;
        }
    }
}

/// Errors from the runtime (a binding call, a header, a body) are ours: a
/// 500 whose cause is kept for the log.
impl From<worker::Error> for ApiError {
    fn from(e: worker::Error) -> Self {
        ApiError::internal().with_cause(e)
    }
}
