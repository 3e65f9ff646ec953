//! The Workers glue: the fetch entry point dispatching to one handler per
//! route group, and the cron that retries failed copies. Handlers return
//! `Result<Response, ApiError>`; every error leaves as the shared JSON shape.

mod cron;
mod generate;
mod health;
mod image;
mod net;
mod persist;
mod proxy;
mod replicate;
mod respond;
mod store;

use worker::{event, Context, Env, Request, Response, Result};

use crate::config::Config;
use crate::credentials::ServiceSecrets;
use crate::error::ApiError;
use crate::routes::{self, Route};

/// Binding names, as declared in wrangler.toml.
pub const IMAGES_BUCKET: &str = "IMAGES";
pub const METADATA_KV: &str = "IMAGE_META";

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
    let inner = Clone::clone(req.inner()); // the same JS object, not Request.clone()
    let response = dispatch(req, env, &ctx).await;
    drain_unread_body(&inner).await;
    Ok(response)
}

async fn dispatch(req: Request, env: Env, ctx: &Context) -> Response {
    let path = req.path();
    if let Some(rest) = path.strip_prefix(crate::proxy::PREFIX).filter(|r| r.is_empty() || r.starts_with('/')) {
        return proxy::handle(req, env, ctx, rest).await;
    }
    let route = routes::resolve(req.method().as_ref(), &path);
    let answer = match route {
        Route::Health => health::get(&env),
        Route::NotFound => Err(ApiError::not_found()),
        Route::MethodNotAllowed { allowed } => Err(ApiError::method_not_allowed(allowed)),
        Route::Image(id) => image::get(&req, &env, &id).await,
        Route::GenerateGet => match config(&env) {
            Ok(config) => generate::get(req, env, ctx, &config).await,
            Err(e) => Err(e),
        },
        Route::GeneratePost => match config(&env) {
            Ok(config) => generate::post(req, env, ctx, &config).await,
            Err(e) => Err(e),
        },
    };
    answer.unwrap_or_else(|e| {
        if e.status >= 500 {
            worker::console_error!("{e}");
        }
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
            let _ = worker::wasm_bindgen_futures::JsFuture::from(promise).await;
        }
    }
}

pub fn config(env: &Env) -> std::result::Result<Config, ApiError> {
    Config::from_vars(|name| env.var(name).ok().map(|v| v.to_string()))
}

/// The service's secrets, read per request.
pub struct Secrets {
    auth_token: Option<String>,
    replicate_token: Option<String>,
}

impl Secrets {
    pub fn borrow(&self) -> ServiceSecrets<'_> {
        ServiceSecrets { auth_token: self.auth_token.as_deref(), replicate_token: self.replicate_token.as_deref() }
    }
}

pub fn secrets(env: &Env) -> Secrets {
    let read = |name: &str| env.secret(name).ok().map(|s| s.to_string()).filter(|s| !s.is_empty());
    Secrets { auth_token: read("AUTH_TOKEN"), replicate_token: read("REPLICATE_API_TOKEN") }
}
