//! `GET /generate?prompt=...` (302 to the image) and `POST /generate` (JSON).

use futures_util::StreamExt;
use serde_json::{json, Map, Value};
use worker::{Context, Env, Request, Response, Url};

use super::net::{now_ms, sleep_ms};
use super::persist::{keep_outputs, Seen};
use super::replicate::Replicate;
use super::{respond, secrets};
use crate::backoff::poll_delay_ms;
use crate::config::Config;
use crate::credentials::{self, Credential, CredentialSources};
use crate::error::ApiError;
use crate::input_schema;
use crate::prediction::{failure, timed_out, Prediction, Status};

/// Largest accepted POST body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
const WEBHOOK_EVENTS: [&str; 4] = ["start", "output", "logs", "completed"];

/// What a generate request asks for, whichever form it came in.
struct Job {
    input: Map<String, Value>,
    webhook: Option<String>,
    webhook_events_filter: Option<Value>,
}

pub async fn get(req: Request, env: Env, ctx: &Context, config: &Config) -> Result<Response, ApiError> {
    let url = req.url().map_err(|_| ApiError::bad_request("Invalid URL"))?;
    let pairs: Vec<(String, String)> = url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let query_token = pairs.iter().find(|(k, _)| k == "replicate_token").map(|(_, v)| v.as_str());
    let credential = credential(&req, &env, config, None, query_token)?;
    let input = input_schema::input_from_query(&config.model, &pairs)?;
    let job = Job { input, webhook: None, webhook_events_filter: None };
    let generated = generate(&env, ctx, config, &url, &Replicate::new(&config.api_base, &credential), job).await?;
    let body = generated.body(config);
    let location = body["imageUrl"].as_str().unwrap_or_default().to_owned();
    let mut response = respond::json(302, &body)?;
    response.headers_mut().set("Location", &location).map_err(|_| ApiError::internal())?;
    Ok(response)
}

pub async fn post(mut req: Request, env: Env, ctx: &Context, config: &Config) -> Result<Response, ApiError> {
    let url = req.url().map_err(|_| ApiError::bad_request("Invalid URL"))?;
    let body = read_json_object(&mut req).await?;
    let (body_token, mut job) = parse_body(body)?;
    let credential = credential(&req, &env, config, body_token.as_deref(), None)?;
    job.input = input_schema::validate(&config.model, &job.input)?;
    let replicate = Replicate::new(&config.api_base, &credential);
    let generated = generate(&env, ctx, config, &url, &replicate, job).await?;
    respond::json(200, &generated.body(config))
}

/// A finished generation: the prediction and `(id, imageUrl)` per output.
struct Generated {
    prediction: Prediction,
    seed: Option<Value>,
    images: Vec<(String, String)>,
}

impl Generated {
    /// `{id, imageUrl}` of the first image as the contract shows, plus the
    /// prediction id, model, seed used and, for several outputs, `images`.
    fn body(&self, config: &Config) -> Value {
        let (id, url) = self.images.first().cloned().unwrap_or_default();
        let mut body = json!({
            "id": id,
            "imageUrl": url,
            "predictionId": self.prediction.id,
            "model": self.prediction.model.as_deref().unwrap_or(&config.model),
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

/// The Replicate token this request runs on (see `credentials::resolve`).
fn credential(
    req: &Request,
    env: &Env,
    config: &Config,
    body_token: Option<&str>,
    query_token: Option<&str>,
) -> Result<Credential, ApiError> {
    let header = |name: &str| req.headers().get(name).ok().flatten();
    let (header_token, authorization) = (header("X-Replicate-Token"), header("Authorization"));
    let sources = CredentialSources {
        header_token: header_token.as_deref(),
        body_token,
        query_token,
        authorization: authorization.as_deref(),
    };
    credentials::resolve(&sources, &secrets(env).borrow(), config.allow_user_tokens)
}

/// Reads a JSON object body: the right Content-Type, within the size limit.
async fn read_json_object(req: &mut Request) -> Result<Map<String, Value>, ApiError> {
    let content_type = req.headers().get("Content-Type").ok().flatten().unwrap_or_default();
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if mime != "application/json" {
        return Err(ApiError::new(415, "Unsupported Media Type").with_details("Content-Type must be application/json"));
    }
    let too_large =
        || ApiError::new(413, "Request body too large").with_details(format!("the limit is {MAX_BODY_BYTES} bytes"));
    let declared = req.headers().get("Content-Length").ok().flatten().and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    if let Ok(mut stream) = req.stream() {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| ApiError::bad_request("Could not read the request body"))?;
            if bytes.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("Missing request body").with_details("send a JSON object with a prompt"));
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request("Request body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request("Invalid JSON body").with_details(e.to_string())),
    }
}

/// The seed's three body forms: `{prompt, ...}`; `{input: {...}}`; and either
/// plus `webhook`/`webhook_events_filter`. `replicate_token` may ride along.
/// The input is validated later, once the caller is authenticated.
fn parse_body(mut body: Map<String, Value>) -> Result<(Option<String>, Job), ApiError> {
    let token = match body.remove("replicate_token") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(ApiError::bad_request("Invalid input").with_details("replicate_token must be a string")),
    };
    let webhook = match body.remove("webhook") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if is_https_url(&s) => Some(s),
        Some(_) => return Err(ApiError::bad_request("Invalid input").with_details("webhook must be an https:// URL")),
    };
    let webhook_events_filter = match body.remove("webhook_events_filter") {
        None | Some(Value::Null) => None,
        Some(Value::Array(events))
            if !events.is_empty() && events.iter().all(|e| e.as_str().is_some_and(|e| WEBHOOK_EVENTS.contains(&e))) =>
        {
            Some(Value::Array(events))
        }
        Some(_) => {
            return Err(ApiError::bad_request("Invalid input")
                .with_details(format!("webhook_events_filter must be a list of: {}", WEBHOOK_EVENTS.join(", "))))
        }
    };
    if webhook_events_filter.is_some() && webhook.is_none() {
        return Err(ApiError::bad_request("Invalid input").with_details("webhook_events_filter needs a webhook"));
    }
    let input = match body.remove("input") {
        Some(Value::Object(input)) => {
            if let Some(extra) = body.keys().next() {
                return Err(ApiError::bad_request("Invalid input").with_details(format!(
                    "Unknown field '{extra}' next to 'input'; put model inputs inside 'input'"
                )));
            }
            input
        }
        Some(_) => return Err(ApiError::bad_request("Invalid input").with_details("input must be a JSON object")),
        None => body,
    };
    Ok((token, Job { input, webhook, webhook_events_filter }))
}

fn is_https_url(s: &str) -> bool {
    s.strip_prefix("https://").is_some_and(|rest| {
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        !host.is_empty() && !host.contains('@') && !s.chars().any(char::is_whitespace)
    })
}

/// Runs the model and answers `(id, imageUrl)` per output as soon as Replicate
/// has them; copying into R2 continues in `wait_until`.
async fn generate(
    env: &Env,
    ctx: &Context,
    config: &Config,
    request_url: &Url,
    replicate: &Replicate,
    job: Job,
) -> Result<Generated, ApiError> {
    let prediction = run(ctx, config, replicate, &job).await?;
    let seed = job.input.get("seed").cloned();
    let ids = keep_outputs(env, ctx, config, &prediction, &Value::Object(job.input), Seen::New).await?;
    if ids.is_empty() {
        return Err(ApiError::new(502, "Failed to generate image").with_details("the prediction has no output"));
    }
    let base = image_base(config, request_url);
    let images = ids
        .into_iter()
        .map(|id| {
            let url = format!("{base}/image/{id}");
            (id, url)
        })
        .collect();
    Ok(Generated { prediction, seed, images })
}

/// Where image URLs point: the configured public base, else the request's origin.
pub fn image_base(config: &Config, request_url: &Url) -> String {
    config.public_base_url.clone().unwrap_or_else(|| request_url.origin().ascii_serialization())
}

/// Creates the prediction and polls it to an end within the deadline.
async fn run(ctx: &Context, config: &Config, replicate: &Replicate, job: &Job) -> Result<Prediction, ApiError> {
    let deadline = now_ms() + u64::from(config.deadline_seconds) * 1000;
    let mut body = Map::new();
    body.insert("input".into(), Value::Object(job.input.clone()));
    if let Some(webhook) = &job.webhook {
        body.insert("webhook".into(), Value::String(webhook.clone()));
    }
    if let Some(filter) = &job.webhook_events_filter {
        body.insert("webhook_events_filter".into(), filter.clone());
    }
    let path = match &config.model_version {
        Some(version) => {
            body.insert("version".into(), Value::String(version.clone()));
            "/v1/predictions".to_string()
        }
        None => format!("/v1/models/{}/predictions", config.model),
    };
    let remaining_secs = deadline.saturating_sub(now_ms()) / 1000;
    let wait = u64::from(config.wait_seconds).min(remaining_secs.max(1));
    let mut prediction = replicate.create(&path, &body, wait, deadline).await?;
    let expected = job.input.get("num_outputs").and_then(Value::as_u64).unwrap_or(1) as usize;
    let mut attempt = 0;
    while !finished(&prediction, expected) {
        let left = deadline.saturating_sub(now_ms());
        if left == 0 {
            let id = prediction.id.clone();
            let cancel = replicate.clone();
            ctx.wait_until(async move { cancel.cancel(&id).await });
            return Err(timed_out(&prediction.id));
        }
        sleep_ms(poll_delay_ms(attempt).min(left)).await;
        attempt += 1;
        prediction = replicate.get(&prediction.id, deadline).await?;
    }
    match prediction.status {
        Status::Succeeded | Status::Processing | Status::Starting => Ok(prediction),
        _ => Err(failure(&prediction)),
    }
}

/// Done: a terminal status, or every expected output already present.
fn finished(p: &Prediction, expected_outputs: usize) -> bool {
    p.status.is_terminal() || (p.status == Status::Processing && p.output_urls().len() >= expected_outputs.max(1))
}
