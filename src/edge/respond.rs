//! Building responses.

use serde::Serialize;
use worker::{Headers, Response};

use crate::error::ApiError;

/// A JSON response with the given status.
pub fn json<T: Serialize>(status: u16, value: &T) -> Result<Response, ApiError> {
    let body = serde_json::to_string(value).map_err(|_| ApiError::internal())?;
    Ok(with_json_headers(Response::ok(body), status))
}

/// The shared error shape. Never fails: a response is always produced.
pub fn error(e: &ApiError) -> Response {
    let mut response = with_json_headers(Response::ok(e.body()), e.status);
    if let Some(seconds) = e.retry_after {
        let _ = response.headers_mut().set("Retry-After", &seconds.to_string());
    }
    if e.status == 405 {
        if let Some(allowed) = e.details.as_deref().and_then(|d| d.strip_prefix("Allowed: ")) {
            let _ = response.headers_mut().set("Allow", allowed);
        }
    }
    response
}

fn with_json_headers(response: worker::Result<Response>, status: u16) -> Response {
    let headers = Headers::new();
    let _ = headers.set("Content-Type", "application/json; charset=utf-8");
    let _ = headers.set("Cache-Control", "no-store");
    match response {
        Ok(r) => r.with_status(status).with_headers(headers),
        Err(_) => Response::empty().map(|r| r.with_status(500)).unwrap_or_else(|_| unreachable_response()),
    }
}

fn unreachable_response() -> Response {
    // Response::empty() only fails if the JS runtime cannot build a Response at all.
    Response::builder().with_status(500).empty()
}
