//! `/replicate/v1/...`: Replicate's own API, authenticated with our service
//! token or the caller's Replicate token, answering Replicate's objects with
//! outputs copied into R2 and served from our URLs.

use super::join::join_all;
use super::request::Request;
use serde_json::Value;
use worker::wasm_bindgen::JsValue;
use worker::{Headers, Method, Response};

use super::context::Caller;
use super::replicate::{CREATE_TIMEOUT_MS, READ_TIMEOUT_MS};
use super::RequestContext;
use crate::config::Config;
use crate::error::ApiError;
use crate::http_url::webhook_target_problem;
use crate::jobs::{is_prediction_id, CallerWebhook, JobKind};
use crate::metadata::{compact_input, PredictionIndex};
use crate::prediction::{rejected_token, Prediction, Status};
use crate::proxy::{
    self, error_body, is_forwarded_response_header, NamedModel, ProxyRoute, Rewriter, FORWARDED_REQUEST_HEADERS,
};

/// The largest request body passed on: room for the `data:` file inputs the
/// official clients send (Replicate itself takes data URLs up to ~10 MB;
/// larger files go through `/files`).
pub const MAX_PROXY_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Serves one request under [`proxy::PREFIX`]; `rest` is the path after it.
pub async fn handle(req: Request, cx: &RequestContext, rest: &str) -> Response {
    match forward(req, cx, rest).await {
        Ok(response) => response,
        Err(e) => {
            cx.log_error(&e);
            replicate_error(&e)
        }
    }
}

/// An error in Replicate's shape.
fn replicate_error(e: &ApiError) -> Response {
    super::respond::error_as(e, error_body(e), "application/json")
}

async fn forward(req: Request, cx: &RequestContext, rest: &str) -> Result<Response, ApiError> {
    let config = cx.config()?;
    let method = req.method();
    let route = proxy::resolve(method.as_ref(), rest)?;
    if route.is_files() {
        return super::files::handle(req, cx, &route, &*cx.bearer_caller().await?).await;
    }
    if route == ProxyRoute::WebhookSecret {
        return super::webhooks::secret_for(cx, &cx.bearer_caller().await?.subject);
    }
    let header = |name: &str| req.headers().get(name).ok().flatten();
    let credential = cx.bearer_caller().await?;

    let url = req.url().map_err(|_| ApiError::bad_request("Invalid URL"))?;
    let path = format!("/v1{rest}{}", url.query().map(|q| format!("?{q}")).unwrap_or_default());
    let forwarded: Vec<(&str, String)> =
        FORWARDED_REQUEST_HEADERS.iter().filter_map(|&name| Some((name, header(name)?))).collect();
    let forwarded: Vec<(&str, &str)> = forwarded.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut body = if method == Method::Post { read_body(&req).await? } else { None };
    let create = route.creates_prediction();
    // A create's webhook is called by this service, after the outputs are
    // stored; Replicate is given this service's own instead, when it has one.
    let mut caller_hook = None;
    if create && config.rewrite_outputs {
        if let Some(text) = body.take() {
            let (sent, hook) = take_webhook(&text, config, super::jobs::service_webhook(cx, &credential).as_deref())?;
            body = Some(sent);
            caller_hook = hook;
        }
    } else if let Some(problem) = create.then(|| body.as_deref().and_then(|b| webhook_problem(b, config))).flatten() {
        return Err(ApiError::invalid_input(problem));
    }
    if create {
        if let Some(allowed) = credential.allowed_models() {
            let model = match proxy::named_model(&route, rest, body.as_deref()) {
                NamedModel::Model(model) => Some(model),
                NamedModel::Version(version) => config.models.by_version(&version).cloned(),
                NamedModel::Unknown => None,
            };
            if !model.is_some_and(|m| config.models.key_permits(allowed, &m)) {
                let names: Vec<&str> = allowed.iter().map(String::as_str).collect();
                return Err(ApiError::new(403, crate::models::MODEL_NOT_ALLOWED)
                    .with_details(format!("This API key may run only: {}", names.join(", "))));
            }
        }
        super::usage::admit(cx, &credential).await?;
    }
    let timeout = if method == Method::Post { CREATE_TIMEOUT_MS } else { READ_TIMEOUT_MS };
    let sent = body.as_deref().map(JsValue::from_str);
    let upstream = cx.replicate(&credential)?.send(method, &path, sent, &forwarded, timeout).await?;

    // The caller's own rejected token is passed through as Replicate said it;
    // the service's is the operator's problem, not the caller's.
    if matches!(upstream.status, 401 | 403) && !credential.is_user() {
        return Err(rejected_token(&credential));
    }

    let created = create && (200..300).contains(&upstream.status);
    if created && config.rewrite_outputs {
        remember_created(cx, &credential, &upstream.body, body.as_deref(), caller_hook).await?;
    }

    let rewriter = Rewriter { api_base: &config.api_base, our_base: &cx.base_url };
    let body = if config.rewrite_outputs && (200..300).contains(&upstream.status) {
        rewrite(cx, &route, &rewriter, upstream.body).await?
    } else {
        upstream.body
    };

    let out = Headers::new();
    for (name, value) in upstream.headers.entries() {
        if is_forwarded_response_header(&name) {
            let _ = out.set(&name, &value);
        } else if name.eq_ignore_ascii_case("location") {
            let location = if config.rewrite_outputs { rewriter.api_url(&value) } else { value };
            let _ = out.set("Location", &location);
        }
    }
    let response = Response::ok(body)?;
    Ok(response.with_status(upstream.status).with_headers(out))
}

/// Rewrites a successful answer: prediction objects (and list pages) point
/// back at us; succeeded outputs are kept in R2 and served from our URLs.
async fn rewrite(
    cx: &RequestContext,
    route: &ProxyRoute,
    rewriter: &Rewriter<'_>,
    body: String,
) -> Result<String, ApiError> {
    let Ok(mut value) = serde_json::from_str::<Value>(&body) else { return Ok(body) };
    if route.answers_prediction() {
        point_here(cx, rewriter, &mut value).await;
    } else if *route == ProxyRoute::List {
        rewriter.page_links(&mut value);
        if let Some(results) = value.get_mut("results").and_then(Value::as_array_mut) {
            join_all(results.iter_mut().map(|p| point_here(cx, rewriter, p))).await;
        }
    } else {
        return Ok(body);
    }
    serde_json::to_string(&value).map_err(|e| ApiError::internal().with_cause(e))
}

/// Points a prediction object (as Replicate answered it) at this service:
/// its outputs become our image URLs when they are kept (known from its
/// index, also once Replicate has removed the data, or kept now when it was
/// made through us and has just succeeded), and it shows the caller's own
/// webhook. Predictions made elsewhere are left as Replicate gave them.
async fn point_here(cx: &RequestContext, rewriter: &Rewriter<'_>, value: &mut Value) {
    let index = async {
        let prediction: Prediction = serde_json::from_value(value.clone()).ok()?;
        let index = cx.store().ok()?.prediction_index(&prediction.id).await.ok().flatten()?;
        // Kept already, or nothing to do yet: a followed job still moves on
        // when it ended otherwise (failed or canceled), for its webhook.
        let ended = prediction.status.is_terminal() && index.job.as_ref().is_some_and(|j| !j.is_over());
        if index.kept_ids().is_some() || (prediction.status != Status::Succeeded && !ended) {
            return Some(index);
        }
        match super::jobs::advance(cx, index, &prediction).await {
            Ok(index) => Some(index),
            Err(e) => {
                worker::console_warn!("keeping outputs of {}: {e}", prediction.id);
                None
            }
        }
    };
    let index = index.await;
    rewriter.prediction(value, index.as_ref().and_then(PredictionIndex::kept_ids));
    if let Some(job) = index.as_ref().and_then(|i| i.job.as_ref()) {
        super::jobs::restore_caller_webhook(value, job);
    }
}

/// Records a prediction just created through us (its index, without ids
/// yet), so that its outputs are kept when it succeeds; with the caller's
/// webhook, as a job this service follows and delivers.
async fn remember_created(
    cx: &RequestContext,
    caller: &Caller,
    answer: &str,
    request: Option<&str>,
    hook: Option<CallerWebhook>,
) -> Result<(), ApiError> {
    let Ok(prediction) = serde_json::from_str::<Prediction>(answer) else { return Ok(()) };
    if !is_prediction_id(&prediction.id) {
        return Ok(());
    }
    let input = request
        .and_then(|body| serde_json::from_str::<Value>(body).ok())
        .and_then(|mut body| body.get_mut("input").map(Value::take))
        .unwrap_or(Value::Null);
    let Some(hook) = hook else {
        let index =
            PredictionIndex { input: compact_input(&input), owner: Some(caller.subject.clone()), ..Default::default() };
        return cx.store()?.put_prediction_index(&prediction.id, &index).await;
    };
    let model = prediction.model.clone().unwrap_or_else(|| String::from("unknown"));
    let index = super::jobs::job_index(cx, caller, JobKind::Prediction, model, &input, Some(hook));
    let watcher = match super::jobs::service_webhook(cx, caller) {
        Some(_) => None,
        None => Some(cx.replicate(caller)?),
    };
    super::jobs::follow(cx, &index, &prediction, watcher).await
}

/// Takes the caller's `webhook` (and filter) out of a create's body, checked,
/// and gives Replicate `service_webhook` instead (when there is one).
fn take_webhook(
    body: &str,
    config: &Config,
    service_webhook: Option<&str>,
) -> Result<(String, Option<CallerWebhook>), ApiError> {
    let Ok(Value::Object(mut object)) = serde_json::from_str::<Value>(body) else { return Ok((body.to_owned(), None)) };
    let (url, filter) = crate::generation::take_webhook(&mut object, &config.extra_webhook_hosts)?;
    if let Some(ours) = service_webhook {
        object.insert("webhook".into(), Value::String(ours.to_owned()));
        object.insert("webhook_events_filter".into(), serde_json::json!(["completed"]));
    }
    let hook = url.map(|url| CallerWebhook::new(url, filter));
    Ok((Value::Object(object).to_string(), hook))
}

/// A create's `webhook`, when it is one that may not be called.
fn webhook_problem(body: &str, config: &Config) -> Option<&'static str> {
    let value: Value = serde_json::from_str(body).ok()?;
    match value.get("webhook")? {
        Value::Null => None,
        Value::String(url) => webhook_target_problem(url, &config.extra_webhook_hosts),
        _ => Some("webhook must be an https:// URL"),
    }
}

/// A POST body, at most `MAX_PROXY_BODY_BYTES` (a declared larger one is
/// refused before reading; an undeclared one stops being read there).
async fn read_body(req: &Request) -> Result<Option<String>, ApiError> {
    if req.inner().body().is_none() {
        return Ok(None);
    }
    let bytes = super::net::read_body(req, MAX_PROXY_BODY_BYTES as u64).await?;
    String::from_utf8(bytes).map(Some).map_err(|_| ApiError::bad_request("Request body must be UTF-8 JSON"))
}
