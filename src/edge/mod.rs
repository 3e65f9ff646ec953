//! The Workers glue: the fetch entry point dispatching to one handler per
//! route group. Handlers return `Result<Response, ApiError>`; every error
//! leaves as the shared JSON shape.

mod health;
mod respond;

use worker::{event, Context, Env, Request, Response, Result};

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
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let route = routes::resolve(req.method().as_ref(), &req.path());
    let answer = match route {
        Route::Health => health::get(&env),
        Route::NotFound => Err(ApiError::not_found()),
        Route::MethodNotAllowed { allowed } => Err(ApiError::method_not_allowed(allowed)),
    };
    Ok(answer.unwrap_or_else(|e| respond::error(&e)))
}
