//! CORS at the edge: preflights answered for the routes a page calls, and
//! the headers of ordinary answers (see `crate::cors` for the decisions).
//! The API follows `CORS_ORIGINS`; `/image/{id}` is readable from anywhere.

use std::sync::OnceLock;

use worker::{Env, Response};

use crate::cors::{CorsPolicy, Headers, Preflight};
use crate::error::ApiError;

static POLICY: OnceLock<Result<CorsPolicy, ApiError>> = OnceLock::new();

fn policy(env: &Env) -> &'static Result<CorsPolicy, ApiError> {
    POLICY.get_or_init(|| CorsPolicy::parse(env.var("CORS_ORIGINS").ok().map(|v| v.to_string()).as_deref()))
}

/// What a request needs for CORS, read before it is handled.
pub struct CorsRequest {
    pub origin: Option<String>,
    pub method: String,
    pub path: String,
    pub request_method: Option<String>,
    pub request_headers: Option<String>,
}

fn is_image(path: &str) -> bool {
    path.strip_prefix("/image/").is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

/// The routes a page may call.
fn is_page_route(path: &str) -> bool {
    let path = path.strip_suffix('/').filter(|p| !p.is_empty()).unwrap_or(path);
    matches!(path, "/generate" | "/uploads" | "/images" | "/models" | "/usage")
        || is_image(path)
        || path == crate::proxy::PREFIX
        || path.starts_with(&format!("{}/", crate::proxy::PREFIX))
}

/// The answer to an `OPTIONS` request: 204, with the CORS headers when allowed.
pub fn preflight(env: &Env, cors: &CorsRequest) -> Result<Response, ApiError> {
    let refused = || Ok(Response::empty()?.with_status(204));
    if !is_page_route(&cors.path) {
        return refused();
    }
    let api = policy(env).as_ref().map_err(Clone::clone)?;
    let (origin, method, headers) =
        (cors.origin.as_deref(), cors.request_method.as_deref(), cors.request_headers.as_deref());
    let mut answer = api.preflight(origin, method, headers);
    if is_image(&cors.path) {
        if let Preflight::Refused(_) = answer {
            answer = CorsPolicy::public_read().preflight(origin, method, headers);
        }
    }
    let mut response = Response::empty()?.with_status(204);
    let headers = match answer {
        Preflight::Allowed(h) | Preflight::Refused(h) => h,
    };
    add(&mut response, &headers);
    Ok(response)
}

/// Adds the CORS headers of an ordinary answer.
pub fn apply(env: &Env, cors: &CorsRequest, response: &mut Response) {
    if cors.path.starts_with("/admin/") {
        return;
    }
    let reads = cors.method == "GET" || cors.method == "HEAD";
    let headers = if is_image(&cors.path) && reads {
        CorsPolicy::public_read().actual(cors.origin.as_deref())
    } else {
        match policy(env) {
            Ok(api) => api.actual(cors.origin.as_deref()),
            Err(e) => {
                worker::console_error!("{e}");
                return;
            }
        }
    };
    add(response, &headers);
}

fn add(response: &mut Response, headers: &Headers) {
    let out = response.headers_mut();
    for (name, value) in headers {
        let _ = if name.eq_ignore_ascii_case("Vary") { out.append(name, value) } else { out.set(name, value) };
    }
}
