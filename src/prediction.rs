//! Replicate's prediction object, and how its outcomes and Replicate's error
//! answers become this service's errors.

use crate::credentials::Credential;
use crate::error::ApiError;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// The longest details taken from Replicate, in characters.
pub const MAX_DETAILS_CHARS: usize = 300;
/// Seconds to ask a client to wait after a 429 that named no time.
pub const DEFAULT_RETRY_AFTER_SECS: u64 = 10;

/// A prediction as Replicate describes it. Fields not named here are kept
/// in `rest`, so the object can be passed on unchanged.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
pub struct Prediction {
    pub id: String,
    pub status: Status,
    /// A URL, a list of URLs, or whatever the model returns; `null` until done
    /// and after the data is removed.
    #[serde(default)]
    pub output: Value,
    /// Replicate's error for a failed prediction, usually a string.
    #[serde(default)]
    pub error: Value,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    /// RFC 3339, e.g. `2025-01-15T09:54:55.566Z`.
    #[serde(default)]
    pub created_at: Option<String>,
    /// Whether Replicate has deleted the inputs and outputs (an hour after).
    #[serde(default, deserialize_with = "null_as_false")]
    pub data_removed: bool,
    /// Every other field (`input`, `urls`, `logs`, `metrics`, …).
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// Where a prediction is in its life.
#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Starting,
    Processing,
    Succeeded,
    Failed,
    Canceled,
    /// A deadline passed before it started.
    Aborted,
    /// A status this code does not know; treated as still running.
    #[serde(other)]
    Unknown,
}

impl Status {
    /// Whether the prediction is over: succeeded, failed, canceled or aborted.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Status::Succeeded | Status::Failed | Status::Canceled | Status::Aborted)
    }

    /// The name Replicate uses, e.g. `"canceled"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Processing => "processing",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Canceled => "canceled",
            Status::Aborted => "aborted",
            Status::Unknown => "unknown",
        }
    }
}

impl Prediction {
    /// The seed the model used, from the `Using seed: N` line models log.
    pub fn seed_from_logs(&self) -> Option<u64> {
        let logs = self.rest.get("logs")?.as_str()?;
        logs.lines().find_map(|line| line.trim().strip_prefix("Using seed:")?.trim().parse().ok())
    }

    /// The output URLs: `output` as one string, or the strings of an array
    /// (other items skipped). Anything else has none.
    pub fn output_urls(&self) -> Vec<String> {
        match &self.output {
            Value::String(url) => vec![url.clone()],
            Value::Array(items) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            _ => Vec::new(),
        }
    }

    /// Replicate's error as text: the string itself, other JSON as JSON
    /// text, or `Prediction <status>` when there is none.
    pub fn error_message(&self) -> String {
        match &self.error {
            Value::Null => format!("Prediction {}", self.status.as_str()),
            Value::String(s) if s.trim().is_empty() => format!("Prediction {}", self.status.as_str()),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
}

/// The 502 for a prediction that failed, was canceled or aborted, with
/// Replicate's error (cut to `MAX_DETAILS_CHARS`) as details.
pub fn failure(prediction: &Prediction) -> ApiError {
    ApiError::generation_failed(truncate(&prediction.error_message()))
}

/// The 504 for a prediction that did not finish before the deadline.
pub fn timed_out(prediction_id: &str) -> ApiError {
    ApiError::new(504, "Prediction timed out")
        .with_details(truncate(&format!("prediction {prediction_id} did not finish in time")))
}

/// The error for a Replicate token that Replicate refused (401/403): the
/// caller's own is their mistake; the service's is the operator's.
pub fn rejected_token(credential: &Credential) -> ApiError {
    match credential {
        Credential::User(_) => {
            ApiError::new(401, "Invalid Replicate token").with_details("Replicate rejected the token")
        }
        Credential::Service(_) => ApiError::misconfigured(502, "the service's Replicate token was rejected"),
    }
}

/// The error for a non-2xx answer of Replicate's API: its `status`, its
/// `body` (JSON with `detail`/`title`, or text) and, for a 429, the seconds
/// of its `Retry-After`.
///
/// | Replicate | answer |
/// | --- | --- |
/// | 401/403, user token | 401 `Invalid Replicate token` |
/// | 401/403, service token | 502 `Server misconfiguration` |
/// | 402 | 402 `Replicate billing required` |
/// | 404 | 502 `Replicate API error`, "model or version not found" |
/// | 422 | 400 `Invalid input` |
/// | 429 | 429 `Rate limited by Replicate`, `Retry-After` (default 10 s) |
/// | other 4xx | 502 `Replicate API error` |
/// | 5xx and anything else | 502 `Replicate API error`, "Replicate answered <status>" |
pub fn upstream_error(status: u16, body: &str, credential: &Credential, retry_after: Option<u64>) -> ApiError {
    let detail = body_detail(body);
    let or_status = || detail.clone().unwrap_or_else(|| format!("Replicate answered {status}"));
    match status {
        401 | 403 => rejected_token(credential),
        402 => ApiError::new(402, "Replicate billing required").with_details(or_status()),
        404 => {
            let details = match &detail {
                Some(d) => truncate(&format!("model or version not found: {d}")),
                None => String::from("model or version not found"),
            };
            ApiError::replicate(details)
        }
        422 => ApiError::invalid_input(or_status()),
        429 => {
            let seconds = retry_after.unwrap_or(DEFAULT_RETRY_AFTER_SECS);
            ApiError::new(429, "Rate limited by Replicate")
                .with_details(or_status())
                .with_retry_after(u32::try_from(seconds).unwrap_or(u32::MAX))
        }
        400..=499 => ApiError::replicate(or_status()),
        _ => ApiError::replicate(format!("Replicate answered {status}")),
    }
}

/// What an error body says, cut to `MAX_DETAILS_CHARS`: a JSON object's
/// `detail` (text, or JSON text when structured) or else its `title`; a
/// non-JSON body's text. Empty bodies and JSON without either say nothing.
fn body_detail(body: &str) -> Option<String> {
    let text = match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(object)) => match (object.get("detail"), object.get("title")) {
            (Some(Value::String(detail)), _) => detail.clone(),
            (Some(detail), _) if !detail.is_null() => detail.to_string(),
            (_, Some(Value::String(title))) => title.clone(),
            _ => return None,
        },
        Ok(Value::String(text)) => text,
        Ok(_) => return None,
        Err(_) => body.to_owned(),
    };
    let text = one_line(&text);
    (!text.is_empty()).then(|| truncate(&text))
}

/// `text` with runs of whitespace and control characters made one space.
fn one_line(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c.is_control()).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ")
}

/// `text` cut to `MAX_DETAILS_CHARS` characters, marked with `…` when cut.
fn truncate(text: &str) -> String {
    crate::text::cut_chars(text, MAX_DETAILS_CHARS)
}

fn null_as_false<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(deserializer)?.unwrap_or(false))
}

#[cfg(test)]
mod tests {
    fn user() -> Credential {
        Credential::User("r8_caller".into())
    }

    fn service() -> Credential {
        Credential::Service("r8_service".into())
    }

    #[test]
    fn seed_comes_from_the_logs() {
        let with_logs = |logs: &str| -> Prediction {
            serde_json::from_value(serde_json::json!({"id": "p", "status": "succeeded", "logs": logs})).unwrap()
        };
        assert_eq!(with_logs("Using seed: 62182\nrunning quantized prediction\n").seed_from_logs(), Some(62182));
        assert_eq!(with_logs("warming up\n  Using seed: 7  \n").seed_from_logs(), Some(7));
        assert_eq!(with_logs("Using seed: soon\n").seed_from_logs(), None);
        assert_eq!(with_logs("").seed_from_logs(), None);
        let no_logs: Prediction = serde_json::from_value(serde_json::json!({"id": "p", "status": "starting"})).unwrap();
        assert_eq!(no_logs.seed_from_logs(), None);
    }

    use super::*;
    use serde_json::json;

    /// A real flux-schnell prediction, as Replicate returned it.
    const SUCCEEDED: &str = r#"{
        "id": "ctdwaehfz1rm80cmd5nsjd8114",
        "model": "black-forest-labs/flux-schnell",
        "version": "dp-4d0bcc010b3049749a251855f12800be",
        "input": {"prompt": "a cat", "num_outputs": 1},
        "logs": "Using seed: 62182\n",
        "output": ["https://replicate.delivery/xezq/abc/out-0.jpg"],
        "data_removed": false,
        "error": null,
        "status": "succeeded",
        "created_at": "2025-01-15T10:03:39.896Z",
        "started_at": "2025-01-15T10:03:39.9Z",
        "completed_at": "2025-01-15T10:03:40.5Z",
        "urls": {"get": "https://api.replicate.com/v1/predictions/ctdwaehfz1rm80cmd5nsjd8114"},
        "metrics": {"predict_time": 0.56}
    }"#;

    fn prediction(value: Value) -> Prediction {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn parses_a_real_prediction_and_keeps_the_rest() {
        let p: Prediction = serde_json::from_str(SUCCEEDED).unwrap();
        assert_eq!(p.id, "ctdwaehfz1rm80cmd5nsjd8114");
        assert_eq!(p.status, Status::Succeeded);
        assert_eq!(p.model.as_deref(), Some("black-forest-labs/flux-schnell"));
        assert_eq!(p.version.as_deref(), Some("dp-4d0bcc010b3049749a251855f12800be"));
        assert_eq!(p.created_at.as_deref(), Some("2025-01-15T10:03:39.896Z"));
        assert!(!p.data_removed);
        assert_eq!(p.output_urls(), vec!["https://replicate.delivery/xezq/abc/out-0.jpg"]);
        assert_eq!(p.rest["metrics"]["predict_time"], json!(0.56));
        assert_eq!(p.rest["input"]["prompt"], json!("a cat"));
        assert!(!p.rest.contains_key("id") && !p.rest.contains_key("status"));
        // Round trip: nothing is lost.
        let original: Value = serde_json::from_str(SUCCEEDED).unwrap();
        assert_eq!(serde_json::to_value(&p).unwrap(), original);
    }

    #[test]
    fn minimal_and_odd_predictions_parse() {
        let p = prediction(json!({"id": "x", "status": "starting"}));
        assert_eq!(p.output, Value::Null);
        assert_eq!(p.error, Value::Null);
        assert_eq!(p.model, None);
        assert!(!p.data_removed);
        assert!(p.rest.is_empty());
        let p = prediction(json!({"id": "x", "status": "queued", "data_removed": null, "model": null}));
        assert_eq!(p.status, Status::Unknown);
        assert!(!p.data_removed);
        let p = prediction(json!({"id": "x", "status": "succeeded", "data_removed": true}));
        assert!(p.data_removed);
        assert!(serde_json::from_value::<Prediction>(json!({"status": "starting"})).is_err());
        assert!(serde_json::from_value::<Prediction>(json!({"id": "x"})).is_err());
    }

    #[test]
    fn statuses() {
        let all = [
            ("starting", Status::Starting, false),
            ("processing", Status::Processing, false),
            ("succeeded", Status::Succeeded, true),
            ("failed", Status::Failed, true),
            ("canceled", Status::Canceled, true),
            ("aborted", Status::Aborted, true),
            ("something_new", Status::Unknown, false),
        ];
        for (name, status, terminal) in all {
            assert_eq!(serde_json::from_value::<Status>(json!(name)).unwrap(), status);
            assert_eq!(status.is_terminal(), terminal, "{name}");
            if status != Status::Unknown {
                assert_eq!(status.as_str(), name);
                assert_eq!(serde_json::to_value(status).unwrap(), json!(name));
            }
        }
        assert_eq!(Status::Unknown.as_str(), "unknown");
    }

    #[test]
    fn output_urls_of_every_shape() {
        let with = |output: Value| prediction(json!({"id": "x", "status": "succeeded", "output": output}));
        assert_eq!(with(json!("https://a/b.png")).output_urls(), vec!["https://a/b.png"]);
        assert_eq!(with(json!(["u1", 5, null, "u2", {"a": 1}])).output_urls(), vec!["u1", "u2"]);
        assert!(with(json!(null)).output_urls().is_empty());
        assert!(with(json!([])).output_urls().is_empty());
        assert!(with(json!({"url": "u"})).output_urls().is_empty());
        assert!(with(json!(42)).output_urls().is_empty());
    }

    #[test]
    fn error_messages() {
        let with = |status: &str, error: Value| prediction(json!({"id": "x", "status": status, "error": error}));
        assert_eq!(with("failed", json!("NSFW content detected")).error_message(), "NSFW content detected");
        assert_eq!(with("failed", json!({"code": 1})).error_message(), r#"{"code":1}"#);
        assert_eq!(with("canceled", json!(null)).error_message(), "Prediction canceled");
        assert_eq!(with("aborted", json!(" ")).error_message(), "Prediction aborted");
        assert_eq!(with("failed", json!(null)).error_message(), "Prediction failed");
    }

    #[test]
    fn failures_and_timeouts() {
        let failed = prediction(json!({"id": "x", "status": "failed", "error": "CUDA out of memory"}));
        let err = failure(&failed);
        assert_eq!((err.status, err.error.as_str()), (502, "Failed to generate image"));
        assert_eq!(err.details.as_deref(), Some("CUDA out of memory"));
        let long = prediction(json!({"id": "x", "status": "failed", "error": "e".repeat(1000)}));
        let details = failure(&long).details.unwrap();
        assert_eq!(details.chars().count(), MAX_DETAILS_CHARS + 1);
        assert!(details.ends_with('…'));
        let canceled = prediction(json!({"id": "x", "status": "canceled"}));
        assert_eq!(failure(&canceled).details.as_deref(), Some("Prediction canceled"));

        let err = timed_out("ctdwaehfz1rm80cmd5nsjd8114");
        assert_eq!((err.status, err.error.as_str()), (504, "Prediction timed out"));
        assert!(err.details.unwrap().contains("ctdwaehfz1rm80cmd5nsjd8114"));
    }

    fn summary(err: &ApiError) -> (u16, &str, Option<&str>) {
        (err.status, err.error.as_str(), err.details.as_deref())
    }

    #[test]
    fn rejected_tokens() {
        let body =
            r#"{"title":"Unauthenticated","detail":"You did not pass a valid authentication token","status":401}"#;
        for status in [401, 403] {
            let user = upstream_error(status, body, &user(), None);
            assert_eq!(summary(&user), (401, "Invalid Replicate token", Some("Replicate rejected the token")));
            let service = upstream_error(status, body, &service(), None);
            assert_eq!(
                summary(&service),
                (502, "Server misconfiguration", Some("the service's Replicate token was rejected"))
            );
        }
    }

    #[test]
    fn client_errors() {
        let body = r#"{"detail":"- input.num_outputs: Must be less than or equal to 4","status":422,"title":"Input validation failed"}"#;
        let err = upstream_error(422, body, &user(), None);
        assert_eq!(summary(&err), (400, "Invalid input", Some("- input.num_outputs: Must be less than or equal to 4")));

        let err = upstream_error(404, r#"{"detail":"Not found.","status":404}"#, &service(), None);
        assert_eq!(summary(&err), (502, "Replicate API error", Some("model or version not found: Not found.")));
        let err = upstream_error(404, "", &service(), None);
        assert_eq!(summary(&err), (502, "Replicate API error", Some("model or version not found")));

        let err = upstream_error(402, r#"{"detail":"You have insufficient credit"}"#, &user(), None);
        assert_eq!(summary(&err), (402, "Replicate billing required", Some("You have insufficient credit")));
        let err = upstream_error(402, "", &user(), None);
        assert_eq!(summary(&err), (402, "Replicate billing required", Some("Replicate answered 402")));

        let err = upstream_error(409, r#"{"title":"Conflict"}"#, &user(), None);
        assert_eq!(summary(&err), (502, "Replicate API error", Some("Conflict")));
        let err = upstream_error(400, "bad\n  request", &user(), None);
        assert_eq!(summary(&err), (502, "Replicate API error", Some("bad request")));
        let err = upstream_error(413, "{}", &user(), None);
        assert_eq!(summary(&err), (502, "Replicate API error", Some("Replicate answered 413")));
    }

    #[test]
    fn rate_limits() {
        let body = r#"{"detail":"Request was throttled. Your rate limit resets in ~30s."}"#;
        let err = upstream_error(429, body, &user(), Some(30));
        assert_eq!(
            summary(&err),
            (429, "Rate limited by Replicate", Some("Request was throttled. Your rate limit resets in ~30s."))
        );
        assert_eq!(err.retry_after, Some(30));
        assert_eq!(upstream_error(429, "", &service(), None).retry_after, Some(10));
        assert_eq!(upstream_error(429, "", &service(), Some(u64::MAX)).retry_after, Some(u32::MAX));
        assert_eq!(upstream_error(429, "", &service(), None).details.as_deref(), Some("Replicate answered 429"));
    }

    #[test]
    fn server_errors_never_echo_the_body() {
        for status in [500, 502, 503, 504, 599, 302, 100] {
            let err = upstream_error(status, r#"{"detail":"internal trace"}"#, &service(), Some(5));
            let expected = format!("Replicate answered {status}");
            assert_eq!(summary(&err), (502, "Replicate API error", Some(expected.as_str())));
            assert_eq!(err.retry_after, None);
        }
    }

    #[test]
    fn body_details() {
        assert_eq!(body_detail(r#"{"detail":"d","title":"t"}"#).as_deref(), Some("d"));
        assert_eq!(body_detail(r#"{"detail":null,"title":"t"}"#).as_deref(), Some("t"));
        assert_eq!(body_detail(r#"{"detail":[{"loc":["x"]}]}"#).as_deref(), Some(r#"[{"loc":["x"]}]"#));
        assert_eq!(body_detail(r#""plain json string""#).as_deref(), Some("plain json string"));
        assert_eq!(body_detail("[1,2]"), None);
        assert_eq!(body_detail(r#"{"status":500}"#), None);
        assert_eq!(body_detail("   "), None);
        assert_eq!(body_detail(""), None);
        let long = body_detail(&"é".repeat(1000)).unwrap();
        assert_eq!(long.chars().count(), MAX_DETAILS_CHARS + 1);
        assert!(long.starts_with("éé") && long.ends_with('…'));
        assert_eq!(body_detail(&"x".repeat(MAX_DETAILS_CHARS)).unwrap().len(), MAX_DETAILS_CHARS);
    }
}
