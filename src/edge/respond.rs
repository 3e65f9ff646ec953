//! Building responses.

use serde::Serialize;
use worker::{Headers, Response};

use crate::error::ApiError;

const JSON: &str = "application/json; charset=utf-8";

/// A JSON response with the given status.
pub fn json<T: Serialize>(status: u16, value: &T) -> Result<Response, ApiError> {
    let body = serde_json::to_string(value).map_err(|e| ApiError::internal().with_cause(e))?;
    Ok(with_headers(Response::ok(body), status, JSON))
}

/// The shared error shape. Never fails: a response is always produced.
pub fn error(e: &ApiError) -> Response {
    error_as(e, e.body(), JSON)
}

/// An error with the given body (another shape, e.g. Replicate's), and the
/// headers its status calls for (`Retry-After`, `Allow`).
pub fn error_as(e: &ApiError, body: String, content_type: &str) -> Response {
    let mut response = with_headers(Response::ok(body), e.status, content_type);
    if let Some(seconds) = e.retry_after {
        let _ = response.headers_mut().set("Retry-After", &seconds.to_string());
    }
    if let Some(allowed) = e.allow {
        let _ = response.headers_mut().set("Allow", allowed);
    }
    for (name, value) in e.headers.iter().flat_map(|h| h.iter()) {
        let _ = response.headers_mut().set(name, value);
    }
    response
}

fn with_headers(response: worker::Result<Response>, status: u16, content_type: &str) -> Response {
    let headers = Headers::new();
    let _ = headers.set("Content-Type", content_type);
    let _ = headers.set("Cache-Control", "no-store");
    match response {
        Ok(r) => r.with_status(status).with_headers(headers),
        // Only if the runtime cannot build a Response at all.
        Err(_) => Response::builder().with_status(500).empty(),
    }
}
