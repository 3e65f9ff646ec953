//! The one structured log line written per request: what an operator runs
//! the service by. It never holds a token, and no more of a prompt than a
//! short prefix.

use serde::Serialize;

/// How much of a prompt a log line keeps, in characters.
pub const PROMPT_PREFIX_CHARS: usize = 32;

/// What handlers note about a request as it is served.
#[derive(Debug, Default, Clone)]
pub struct Noted {
    pub model: Option<String>,
    pub prediction_id: Option<String>,
    pub prompt: Option<String>,
    pub cache_hit: bool,
}

#[derive(Serialize)]
struct Line<'a> {
    request_id: &'a str,
    method: &'a str,
    route: &'a str,
    status: u16,
    duration_ms: u64,
    /// A key id, `service`, or `own token` (never the token or its hash).
    caller: Option<&'a str>,
    model: Option<&'a str>,
    prediction_id: Option<&'a str>,
    prompt: Option<String>,
    cache_hit: bool,
    bytes: Option<u64>,
}

/// The request's log line, as JSON text. `subject` is the caller as the
/// context identified it (`service`, a key id, or `tok_…` for a caller's own
/// token, which is logged as `own token`).
#[allow(clippy::too_many_arguments)]
pub fn line(
    request_id: &str,
    method: &str,
    route: &str,
    status: u16,
    duration_ms: u64,
    subject: Option<&str>,
    noted: &Noted,
    bytes: Option<u64>,
) -> String {
    let caller = subject.map(|s| if s.starts_with("tok_") { "own token" } else { s });
    let line = Line {
        request_id,
        method,
        route,
        status,
        duration_ms,
        caller,
        model: noted.model.as_deref(),
        prediction_id: noted.prediction_id.as_deref(),
        prompt: noted.prompt.as_deref().map(|p| crate::text::cut_chars(p, PROMPT_PREFIX_CHARS)),
        cache_hit: noted.cache_hit,
        bytes,
    };
    serde_json::to_string(&line).unwrap_or_default()
}

/// The route a path belongs to, without ids: `/image/{id}`, not the id.
pub fn route_of(path: &str) -> &'static str {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or_default();
    match first {
        "" => "/",
        "health" => "/health",
        "models" => "/models",
        "generate" if path.trim_matches('/').contains('/') => "/generate/{id}",
        "generate" => "/generate",
        "webhooks" => "/webhooks/replicate",
        "image" => "/image/{id}",
        "images" => "/images",
        "upload" => "/upload/{id}",
        "uploads" => "/uploads",
        "usage" => "/usage",
        "admin" => "/admin",
        "replicate" => "/replicate/v1",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_has_the_fields_and_no_secret() {
        let noted = Noted {
            model: Some("black-forest-labs/flux-schnell".into()),
            prediction_id: Some("p123".into()),
            prompt: Some("a very long prompt that goes on and on about a cat".into()),
            cache_hit: false,
        };
        let text = line("r1", "POST", "/generate", 200, 12, Some("tok_0123456789abcdef"), &noted, Some(5));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["caller"], "own token");
        assert!(!text.contains("tok_"));
        assert_eq!(v["prompt"].as_str().unwrap().chars().count(), PROMPT_PREFIX_CHARS + 1);
        assert_eq!(
            (v["status"].as_u64(), v["duration_ms"].as_u64(), v["bytes"].as_u64()),
            (Some(200), Some(12), Some(5))
        );
        assert_eq!(v["prediction_id"], "p123");
        let key = line("r2", "GET", "/images", 200, 1, Some("ab12cd34"), &Noted::default(), None);
        assert!(key.contains("\"caller\":\"ab12cd34\""));
    }

    #[test]
    fn routes_without_ids() {
        assert_eq!(route_of("/image/01abc.png"), "/image/{id}");
        assert_eq!(route_of("/replicate/v1/predictions/x"), "/replicate/v1");
        assert_eq!(route_of("/"), "/");
        assert_eq!(route_of("/nope"), "other");
    }
}
