//! What `/generate` decides without I/O: the request body's forms, the job
//! they describe, the create call sent to Replicate, when a prediction
//! counts as finished, and the answer's shape.

use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::http_url::webhook_target_problem;
use crate::jobs::WEBHOOK_EVENTS;
use crate::models::ModelRef;
use crate::prediction::{Prediction, Status};

/// Largest accepted POST body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What a generate request asks for, whichever form it came in.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// The model asked for (`model`): a short name or `owner/name[:version]`.
    pub model: Option<String>,
    pub input: Map<String, Value>,
    /// The caller's webhook: called by this service once the images are stored.
    pub webhook: Option<String>,
    pub webhook_events_filter: Option<Vec<String>>,
}

impl Job {
    /// A job with only model input (the GET form).
    pub fn from_input(input: Map<String, Value>) -> Self {
        Self { model: None, input, webhook: None, webhook_events_filter: None }
    }
}

/// The 415 unless `content_type` is JSON (parameters ignored).
pub fn check_json_content_type(content_type: Option<&str>) -> Result<(), ApiError> {
    let mime = content_type.unwrap_or_default().split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if mime == "application/json" {
        Ok(())
    } else {
        Err(ApiError::new(415, "Unsupported Media Type").with_details("Content-Type must be application/json"))
    }
}

/// A request body that must be a JSON object.
pub fn parse_json_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("Missing request body").with_details("send a JSON object with a prompt"));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request("Request body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request("Invalid JSON body").with_details(e.to_string())),
    }
}

/// The seed's three body forms: `{prompt, ...}`; `{input: {...}}`; and either
/// plus `webhook`/`webhook_events_filter`. `replicate_token` may ride along
/// and is returned apart; `model` (beside the input, in either form) chooses
/// the model. The input is validated later, once the caller is
/// authenticated. A webhook must be a public https URL, or on one of
/// `webhook_hosts` (see `http_url::webhook_target_problem`).
pub fn parse_body(mut body: Map<String, Value>, webhook_hosts: &[String]) -> Result<(Option<String>, Job), ApiError> {
    let token = match body.remove("replicate_token") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(ApiError::invalid_input("replicate_token must be a string")),
    };
    let model = match body.remove("model") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(ApiError::invalid_input("model must be a string")),
    };
    let (webhook, webhook_events_filter) = take_webhook(&mut body, webhook_hosts)?;
    if webhook_events_filter.is_some() && webhook.is_none() {
        return Err(ApiError::invalid_input("webhook_events_filter needs a webhook"));
    }
    let input = match body.remove("input") {
        Some(Value::Object(input)) => {
            if let Some(extra) = body.keys().next() {
                return Err(ApiError::invalid_input(format!(
                    "Unknown field '{extra}' next to 'input'; put model inputs inside 'input'"
                )));
            }
            input
        }
        Some(_) => return Err(ApiError::invalid_input("input must be a JSON object")),
        None => body,
    };
    Ok((token, Job { model, input, webhook, webhook_events_filter }))
}

/// Takes `webhook` and `webhook_events_filter` out of a request body,
/// checked: the webhook must be a public https URL or on one of
/// `webhook_hosts`; the filter a non-empty list of Replicate's event names.
pub fn take_webhook(
    body: &mut Map<String, Value>,
    webhook_hosts: &[String],
) -> Result<(Option<String>, Option<Vec<String>>), ApiError> {
    let webhook = match body.remove("webhook") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match webhook_target_problem(&s, webhook_hosts) {
            None => Some(s),
            Some(problem) => return Err(ApiError::invalid_input(problem)),
        },
        Some(_) => return Err(ApiError::invalid_input("webhook must be an https:// URL")),
    };
    let filter = match body.remove("webhook_events_filter") {
        None | Some(Value::Null) => None,
        Some(Value::Array(events))
            if !events.is_empty() && events.iter().all(|e| e.as_str().is_some_and(|e| WEBHOOK_EVENTS.contains(&e))) =>
        {
            let mut names: Vec<String> = events.iter().filter_map(Value::as_str).map(str::to_owned).collect();
            names.dedup();
            Some(names)
        }
        Some(_) => {
            return Err(ApiError::invalid_input(format!(
                "webhook_events_filter must be a list of: {}",
                WEBHOOK_EVENTS.join(", ")
            )))
        }
    };
    Ok((webhook, filter))
}

/// The create call for `job` on `model`: the path and the JSON body. A
/// pinned version goes through `/v1/predictions` with `version`; otherwise
/// the model's latest runs through `/v1/models/{owner}/{name}/predictions`.
/// `service_webhook` is this service's own receiver, told only of the end
/// (the caller's webhook is never given to Replicate: this service calls it).
pub fn create_request(model: &ModelRef, job: &Job, service_webhook: Option<&str>) -> (String, Map<String, Value>) {
    let mut body = model.create_body(job.input.clone());
    if let Some(webhook) = service_webhook {
        body.insert("webhook".into(), Value::String(webhook.to_owned()));
        body.insert("webhook_events_filter".into(), json!(["completed"]));
    }
    (model.create_path(), body)
}

/// Done: a terminal status, or every expected output already present while
/// it is still processing (the images can be answered before it ends).
pub fn finished(p: &Prediction, expected_outputs: usize) -> bool {
    p.status.is_terminal() || (p.status == Status::Processing && p.output_urls().len() >= expected_outputs.max(1))
}

/// Whether a finished prediction gave outputs to keep; the error otherwise
/// (failed, canceled or aborted).
pub fn usable(prediction: Prediction) -> Result<Prediction, ApiError> {
    match prediction.status {
        Status::Succeeded | Status::Processing | Status::Starting => Ok(prediction),
        _ => Err(crate::prediction::failure(&prediction)),
    }
}

/// A finished generation: the prediction and `(id, imageUrl)` per output.
pub struct Generated {
    pub prediction: Prediction,
    /// The seed the caller asked for, if any.
    pub seed: Option<Value>,
    pub images: Vec<(String, String)>,
}

impl Generated {
    /// `{id, imageUrl}` of the first image, plus the prediction id, model,
    /// seed used and, for several outputs, `images`. `model` is named when
    /// Replicate's prediction does not say.
    pub fn body(&self, model: &str) -> Value {
        let (id, url) = self.images.first().cloned().unwrap_or_default();
        let mut body = json!({
            "id": id,
            "imageUrl": url,
            "predictionId": self.prediction.id,
            "model": self.prediction.model.as_deref().unwrap_or(model),
        });
        if let Some(seed) = self.seed.clone().or_else(|| self.prediction.seed_from_logs().map(Value::from)) {
            body["seed"] = seed;
        }
        if self.images.len() > 1 {
            body["images"] = self.images.iter().map(|(id, url)| json!({ "id": id, "imageUrl": url })).collect();
        }
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    fn prediction(v: Value) -> Prediction {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_three_body_forms() {
        let (token, job) = parse_body(object(json!({"prompt": "a cat", "seed": 1})), &[]).unwrap();
        assert_eq!((token, job.input), (None, object(json!({"prompt": "a cat", "seed": 1}))));

        let (_, job) = parse_body(object(json!({"input": {"prompt": "a cat"}})), &[]).unwrap();
        assert_eq!(job.input, object(json!({"prompt": "a cat"})));

        let (_, job) = parse_body(object(json!({"prompt": "a cat", "model": "dev"})), &[]).unwrap();
        assert_eq!((job.model.as_deref(), job.input), (Some("dev"), object(json!({"prompt": "a cat"}))));
        let (_, job) = parse_body(object(json!({"input": {"prompt": "a cat"}, "model": "sdxl"})), &[]).unwrap();
        assert_eq!(job.model.as_deref(), Some("sdxl"));

        let body = json!({"input": {"prompt": "x"}, "webhook": "https://example.com/h",
                          "webhook_events_filter": ["completed"], "replicate_token": "r8_abc"});
        let (token, job) = parse_body(object(body), &[]).unwrap();
        assert_eq!(token.as_deref(), Some("r8_abc"));
        assert_eq!(job.webhook.as_deref(), Some("https://example.com/h"));
        assert_eq!(job.webhook_events_filter, Some(vec!["completed".to_owned()]));
        let local = json!({"prompt": "x", "webhook": "http://127.0.0.1:9000/h"});
        assert!(parse_body(object(local.clone()), &[]).is_err());
        let (_, job) = parse_body(object(local), &["127.0.0.1".to_owned()]).unwrap();
        assert_eq!(job.webhook.as_deref(), Some("http://127.0.0.1:9000/h"), "a listed host, any port, http too");
        assert!(!job.input.contains_key("replicate_token"));
    }

    #[test]
    fn malformed_bodies_name_the_problem() {
        for (body, details) in [
            (json!({"prompt": "x", "replicate_token": 5}), "replicate_token must be a string"),
            (json!({"prompt": "x", "webhook": "http://example.com"}), "webhook must be an https:// URL"),
            (json!({"prompt": "x", "webhook": "https:example.com"}), "webhook must be an https:// URL"),
            (json!({"prompt": "x", "webhook": "https://169.254.169.254/x"}), "webhook must point at a public host"),
            (json!({"prompt": "x", "webhook": "https://localhost/x"}), "webhook must point at a public host"),
            (json!({"prompt": "x", "webhook": "https://[::1]/x"}), "webhook must point at a public host"),
            (
                json!({"prompt": "x", "webhook": "https://example.com", "webhook_events_filter": ["done"]}),
                "webhook_events_filter must be a list of: start, output, logs, completed",
            ),
            (json!({"prompt": "x", "webhook_events_filter": ["completed"]}), "webhook_events_filter needs a webhook"),
            (
                json!({"input": {"prompt": "x"}, "seed": 1}),
                "Unknown field 'seed' next to 'input'; put model inputs inside 'input'",
            ),
            (json!({"input": "x"}), "input must be a JSON object"),
            (json!({"prompt": "x", "model": 3}), "model must be a string"),
        ] {
            let e = parse_body(object(body.clone()), &[]).unwrap_err();
            assert_eq!(
                (e.status, e.error.as_str(), e.details.as_deref()),
                (400, "Invalid input", Some(details)),
                "{body}"
            );
        }
    }

    #[test]
    fn json_bodies() {
        assert!(check_json_content_type(Some("Application/JSON; charset=utf-8")).is_ok());
        assert_eq!(check_json_content_type(Some("text/plain")).unwrap_err().status, 415);
        assert_eq!(check_json_content_type(None).unwrap_err().status, 415);
        assert_eq!(parse_json_object(b"  \n").unwrap_err().error, "Missing request body");
        assert_eq!(parse_json_object(b"[1]").unwrap_err().error, "Request body must be a JSON object");
        assert_eq!(parse_json_object(b"{").unwrap_err().error, "Invalid JSON body");
        assert_eq!(parse_json_object(br#"{"a":1}"#).unwrap(), object(json!({"a": 1})));
        assert_eq!(ApiError::body_too_large(MAX_BODY_BYTES as u64).status, 413);
    }

    #[test]
    fn create_requests_by_model_or_version() {
        let job = Job {
            model: None,
            input: object(json!({"prompt": "x"})),
            webhook: Some("https://example.com/h".into()),
            webhook_events_filter: None,
        };
        let schnell = ModelRef::parse("black-forest-labs/flux-schnell").unwrap();
        let (path, body) = create_request(&schnell, &job, None);
        assert_eq!(path, "/v1/models/black-forest-labs/flux-schnell/predictions");
        assert_eq!(Value::Object(body), json!({"input": {"prompt": "x"}}), "the caller's webhook stays here");
        let (_, body) = create_request(&schnell, &job, Some("https://svc.example/webhooks/replicate"));
        assert_eq!(
            Value::Object(body),
            json!({"input": {"prompt": "x"}, "webhook": "https://svc.example/webhooks/replicate",
                   "webhook_events_filter": ["completed"]})
        );
        let version = "a".repeat(64);
        let pinned = ModelRef::parse(&format!("o/n:{version}")).unwrap();
        let (path, body) = create_request(&pinned, &Job::from_input(object(json!({"prompt": "y"}))), None);
        assert_eq!(path, "/v1/predictions");
        assert_eq!(Value::Object(body), json!({"input": {"prompt": "y"}, "version": version}));
    }

    #[test]
    fn finished_when_terminal_or_every_output_is_there() {
        let p = |status: &str, output: Value| prediction(json!({"id": "p", "status": status, "output": output}));
        assert!(!finished(&p("starting", Value::Null), 1));
        assert!(!finished(&p("processing", json!([])), 1));
        assert!(finished(&p("processing", json!(["https://x/0.png"])), 1));
        assert!(!finished(&p("processing", json!(["https://x/0.png"])), 2));
        assert!(finished(&p("processing", json!(["https://x/0.png"])), 0));
        assert!(finished(&p("failed", Value::Null), 4));
        assert!(usable(p("succeeded", json!([]))).is_ok());
        assert_eq!(usable(p("canceled", Value::Null)).unwrap_err().status, 502);
    }

    #[test]
    fn the_answer_shape() {
        let p = prediction(json!({"id": "p1", "status": "succeeded", "logs": "Using seed: 42\n"}));
        let one = Generated {
            prediction: p.clone(),
            seed: None,
            images: vec![("a.webp".into(), "https://h/image/a.webp".into())],
        };
        assert_eq!(
            one.body("o/n"),
            json!({"id": "a.webp", "imageUrl": "https://h/image/a.webp", "predictionId": "p1", "model": "o/n", "seed": 42})
        );
        let two = Generated {
            prediction: p,
            seed: Some(json!(7)),
            images: vec![("a".into(), "u/a".into()), ("b".into(), "u/b".into())],
        };
        let body = two.body("o/n");
        assert_eq!(body["seed"], 7);
        assert_eq!(body["images"], json!([{"id": "a", "imageUrl": "u/a"}, {"id": "b", "imageUrl": "u/b"}]));
    }
}
