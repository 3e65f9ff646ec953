//! `/replicate/v1/...`: Replicate's own API, authenticated with our service
//! token or the caller's Replicate token, answering Replicate's objects with
//! outputs copied into R2 and served from our URLs.

use futures_util::future::join_all;
use serde_json::Value;
use worker::wasm_bindgen::JsValue;
use worker::{Headers, Method, Request, Response};

use super::net::read_capped;
use super::persist::{keep_outputs, Seen};
use super::replicate::{CREATE_TIMEOUT_MS, READ_TIMEOUT_MS};
use super::schemas::requested_kind;
use super::RequestContext;
use crate::config::Config;
use crate::error::ApiError;
use crate::http_url::webhook_target_problem;
use crate::metadata::{compact_input, PredictionIndex};
use crate::prediction::{rejected_token, Prediction, Status};
use crate::proxy::{self, error_body, is_forwarded_response_header, ProxyRoute, Rewriter, FORWARDED_REQUEST_HEADERS};

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
    let header = |name: &str| req.headers().get(name).ok().flatten();
    let credential = cx.bearer_caller().await?;

    let url = req.url().map_err(|_| ApiError::bad_request("Invalid URL"))?;
    let path = format!("/v1{rest}{}", url.query().map(|q| format!("?{q}")).unwrap_or_default());
    let forwarded: Vec<(&str, String)> =
        FORWARDED_REQUEST_HEADERS.iter().filter_map(|&name| Some((name, header(name)?))).collect();
    let forwarded: Vec<(&str, &str)> = forwarded.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let body = if method == Method::Post { read_body(&req).await? } else { None };
    let create = route.creates_prediction();
    if let Some(problem) = create.then(|| body.as_deref().and_then(webhook_problem)).flatten() {
        return Err(ApiError::invalid_input(problem));
    }
    if create {
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
        remember_created(cx, &upstream.body, body.as_deref()).await?;
    }

    let rewriter = Rewriter { api_base: &config.api_base, our_base: &cx.base_url };
    let body = if config.rewrite_outputs && (200..300).contains(&upstream.status) {
        rewrite(cx, config, &route, &rewriter, upstream.body).await?
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
    config: &Config,
    route: &ProxyRoute,
    rewriter: &Rewriter<'_>,
    body: String,
) -> Result<String, ApiError> {
    let Ok(mut value) = serde_json::from_str::<Value>(&body) else { return Ok(body) };
    if route.answers_prediction() {
        let ids = outputs_of(cx, config, &value).await;
        rewriter.prediction(&mut value, ids.as_deref());
    } else if *route == ProxyRoute::List {
        rewriter.page_links(&mut value);
        if let Some(results) = value.get_mut("results").and_then(Value::as_array_mut) {
            let ids = join_all(results.iter().map(|p| outputs_of(cx, config, p))).await;
            for (prediction, ids) in results.iter_mut().zip(ids) {
                rewriter.prediction(prediction, ids.as_deref());
            }
        }
    } else {
        return Ok(body);
    }
    serde_json::to_string(&value).map_err(|e| ApiError::internal().with_cause(e))
}

/// Our image ids for a prediction's outputs: known from its index (also
/// once Replicate has removed the data), or kept now when it was made
/// through us and has just succeeded. `None` leaves the outputs as
/// Replicate gave them: predictions made elsewhere are not kept.
async fn outputs_of(cx: &RequestContext, config: &Config, value: &Value) -> Option<Vec<String>> {
    let prediction: Prediction = serde_json::from_value(value.clone()).ok()?;
    let index = cx.store().ok()?.prediction_index(&prediction.id).await.ok().flatten()?;
    if let Some(ids) = index.ids {
        return Some(ids);
    }
    if prediction.status != Status::Succeeded || prediction.output_urls().is_empty() {
        return None;
    }
    let input = value.get("input").cloned().unwrap_or(index.input);
    let model = config.models.default_entry().model.model();
    let requested = requested_kind(prediction.model.as_deref(), &input);
    match keep_outputs(cx, &model, requested, &prediction, &input, Seen::MaybeBefore).await {
        Ok(ids) => Some(ids),
        Err(e) => {
            worker::console_warn!("keeping outputs of {}: {e}", prediction.id);
            None
        }
    }
}

/// Records a prediction just created through us (its index, without ids
/// yet), so that its outputs are kept when it succeeds.
async fn remember_created(cx: &RequestContext, answer: &str, request: Option<&str>) -> Result<(), ApiError> {
    let Ok(Value::Object(created)) = serde_json::from_str::<Value>(answer) else { return Ok(()) };
    let Some(id) = created.get("id").and_then(Value::as_str) else { return Ok(()) };
    let input = request
        .and_then(|body| serde_json::from_str::<Value>(body).ok())
        .and_then(|mut body| body.get_mut("input").map(Value::take))
        .unwrap_or(Value::Null);
    let index = PredictionIndex { ids: None, input: compact_input(&input) };
    cx.store()?.put_prediction_index(id, &index).await
}

/// A create's `webhook`, when it is one that may not be called.
fn webhook_problem(body: &str) -> Option<&'static str> {
    let value: Value = serde_json::from_str(body).ok()?;
    match value.get("webhook")? {
        Value::Null => None,
        Value::String(url) => webhook_target_problem(url),
        _ => Some("webhook must be an https:// URL"),
    }
}

/// A POST body, at most `MAX_PROXY_BODY_BYTES` (a declared larger one is
/// refused before reading; an undeclared one stops being read there).
async fn read_body(req: &Request) -> Result<Option<String>, ApiError> {
    let too_large = || {
        ApiError::new(413, "Request body too large").with_details(format!("the limit is {MAX_PROXY_BODY_BYTES} bytes"))
    };
    let declared = req.headers().get("Content-Length")?.and_then(|v| crate::text::decimal(v.trim()));
    if declared.is_some_and(|n| n > MAX_PROXY_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let Some(stream) = req.inner().body() else { return Ok(None) };
    let bytes = read_capped(&stream, MAX_PROXY_BODY_BYTES + 1)
        .await
        .map_err(|_| ApiError::bad_request("Could not read the request body"))?;
    if bytes.len() > MAX_PROXY_BODY_BYTES {
        return Err(too_large());
    }
    String::from_utf8(bytes).map(Some).map_err(|_| ApiError::bad_request("Request body must be UTF-8 JSON"))
}
