//! The one JSON error shape every route answers with:
//! `{"error": "...", "details": "..."}` and the matching status code.

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
}

impl ApiError {
    pub fn new(status: u16, error: impl Into<String>) -> Self {
        Self { status, error: error.into(), details: None, retry_after: None }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = Some(details.into());
        self
    }

    pub fn with_retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn bad_request(error: impl Into<String>) -> Self {
        Self::new(400, error)
    }

    pub fn not_found() -> Self {
        Self::new(404, "Not Found")
    }

    pub fn method_not_allowed(allowed: &str) -> Self {
        Self::new(405, "Method Not Allowed").with_details(format!("Allowed: {allowed}"))
    }

    /// An unexpected failure on our side. The details are for logs, never
    /// for the client: they may name internals.
    pub fn internal() -> Self {
        Self::new(500, "Internal server error")
    }

    /// The JSON body.
    pub fn body(&self) -> String {
        // Serializing a struct of strings cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| String::from(r#"{"error":"Internal server error"}"#))
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.error)?;
        if let Some(details) = &self.details {
            write!(f, ": {details}")?;
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
}
