//! The one JSON error shape every route answers with:
//! `{"error": "...", "details": "..."}` and the matching status code.
//!
//! An error may carry a `cause`: what went wrong inside, for the log line.
//! It is never serialized, so it never reaches a client.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    pub status: u16,
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    /// Seconds for a `Retry-After` header (429, 503).
    #[serde(skip)]
    pub retry_after: Option<u32>,
    /// The methods a 405 names in its `Allow` header.
    #[serde(skip)]
    pub allow: Option<&'static str>,
    /// What went wrong, for the log only.
    #[serde(skip)]
    pub cause: Option<String>,
    /// Further headers the answer carries (the `RateLimit-*` of a 429).
    #[serde(skip)]
    pub headers: Option<Box<Vec<(&'static str, String)>>>,
}

/// The error of every input the service refuses.
pub const INVALID_INPUT: &str = "Invalid input";
/// The error of a generation that produced no usable image.
pub const GENERATION_FAILED: &str = "Failed to generate image";
/// The error of an answer from Replicate that cannot be used.
pub const REPLICATE_API_ERROR: &str = "Replicate API error";
/// The error of a service that is not set up to answer.
pub const MISCONFIGURED: &str = "Server misconfiguration";

impl ApiError {
    pub fn new(status: u16, error: impl Into<String>) -> Self {
        Self { status, error: error.into(), details: None, retry_after: None, allow: None, cause: None, headers: None }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = Some(details.into());
        self
    }

    pub fn with_retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// Adds headers to the answer.
    pub fn with_headers(mut self, headers: Vec<(&'static str, String)>) -> Self {
        self.headers.get_or_insert_with(Box::default).extend(headers);
        self
    }

    /// Records what went wrong inside, for the log; never sent.
    pub fn with_cause(mut self, cause: impl std::fmt::Display) -> Self {
        self.cause = Some(cause.to_string());
        self
    }

    pub fn bad_request(error: impl Into<String>) -> Self {
        Self::new(400, error)
    }

    /// A 400 `Invalid input` saying what is wrong.
    pub fn invalid_input(details: impl Into<String>) -> Self {
        Self::bad_request(INVALID_INPUT).with_details(details)
    }

    /// A 502 `Failed to generate image` saying why.
    pub fn generation_failed(details: impl Into<String>) -> Self {
        Self::new(502, GENERATION_FAILED).with_details(details)
    }

    /// A 502 `Replicate API error` saying why.
    pub fn replicate(details: impl Into<String>) -> Self {
        Self::new(502, REPLICATE_API_ERROR).with_details(details)
    }

    /// A `Server misconfiguration` with the given status, saying what is missing.
    pub fn misconfigured(status: u16, details: impl Into<String>) -> Self {
        Self::new(status, MISCONFIGURED).with_details(details)
    }

    pub fn not_found() -> Self {
        Self::new(404, "Not Found")
    }

    /// The 413 for a request body past its limit of `max_bytes`.
    pub fn body_too_large(max_bytes: u64) -> Self {
        Self::new(413, "Request body too large").with_details(format!("the limit is {max_bytes} bytes"))
    }

    pub fn method_not_allowed(allowed: &'static str) -> Self {
        let mut e = Self::new(405, "Method Not Allowed").with_details(format!("Allowed: {allowed}"));
        e.allow = Some(allowed);
        e
    }

    /// An unexpected failure on our side. What happened goes in the cause,
    /// for the log, never to the client: it may name internals.
    pub fn internal() -> Self {
        Self::new(500, "Internal server error")
    }

    /// The JSON body.
    pub fn body(&self) -> String {
        // Serializing a struct of strings cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| String::from(r#"{"error":"Internal server error"}"#))
    }
}

/// The log form: status, error, details, and the cause when there is one.
impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.error)?;
        if let Some(details) = &self.details {
            write!(f, ": {details}")?;
        }
        if let Some(cause) = &self.cause {
            write!(f, " (cause: {cause})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_error_and_optional_details() {
        let e = ApiError::bad_request("Missing 'prompt' query parameter");
        assert_eq!(e.status, 400);
        assert_eq!(e.body(), r#"{"error":"Missing 'prompt' query parameter"}"#);
        let e = e.with_details("prompt is required");
        assert_eq!(e.body(), r#"{"error":"Missing 'prompt' query parameter","details":"prompt is required"}"#);
    }

    #[test]
    fn body_escapes_and_keeps_unicode() {
        let e = ApiError::new(401, "Unauthorized access 🚫").with_details("a \"quoted\" word");
        let v: serde_json::Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(v["error"], "Unauthorized access 🚫");
        assert_eq!(v["details"], "a \"quoted\" word");
    }

    #[test]
    fn status_and_retry_after_stay_out_of_the_body() {
        let e = ApiError::new(429, "Rate limited").with_retry_after(7);
        assert_eq!(e.retry_after, Some(7));
        assert!(!e.body().contains('7'));
        assert!(!e.body().contains("429"));
    }

    #[test]
    fn the_cause_is_logged_never_sent() {
        let e = ApiError::internal().with_cause("KV put image:abc: quota exceeded");
        assert!(!e.body().contains("quota"));
        assert!(e.to_string().contains("KV put image:abc: quota exceeded"));
    }

    #[test]
    fn method_not_allowed_carries_the_allow_list() {
        let e = ApiError::method_not_allowed("GET, HEAD");
        assert_eq!((e.status, e.allow), (405, Some("GET, HEAD")));
        assert_eq!(e.details.as_deref(), Some("Allowed: GET, HEAD"));
    }

    #[test]
    fn named_constructors() {
        let e = ApiError::invalid_input("seed must be an integer");
        assert_eq!((e.status, e.error.as_str()), (400, INVALID_INPUT));
        assert_eq!((ApiError::generation_failed("x").status, ApiError::replicate("x").status), (502, 502));
        assert_eq!(ApiError::misconfigured(500, "AUTH_TOKEN").error, MISCONFIGURED);
    }
}
