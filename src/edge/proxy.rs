//! `/replicate/v1/...`: Replicate's own API, authenticated with our service
//! token or the caller's Replicate token, answering Replicate's objects with
//! outputs copied into R2 and served from our URLs.

use futures_util::future::join_all;
use serde_json::Value;
use worker::{Headers, Method, Request, Response};

use super::persist::{keep_outputs, known_outputs, Seen};
use super::replicate::{CREATE_TIMEOUT_MS, READ_TIMEOUT_MS};
use super::RequestContext;
use crate::config::Config;
use crate::error::ApiError;
use crate::prediction::{rejected_token, Prediction, Status};
use crate::proxy::{self, error_body, is_forwarded_response_header, ProxyRoute, Rewriter, FORWARDED_REQUEST_HEADERS};

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
    let header = |name: &str| req.headers().get(name).ok().flatten();
    let credential = cx.bearer_caller()?;

    let url = req.url().map_err(|_| ApiError::bad_request("Invalid URL"))?;
    let path = format!("/v1{rest}{}", url.query().map(|q| format!("?{q}")).unwrap_or_default());
    let forwarded: Vec<(&str, String)> =
        FORWARDED_REQUEST_HEADERS.iter().filter_map(|&name| Some((name, header(name)?))).collect();
    let forwarded: Vec<(&str, &str)> = forwarded.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // A POST body goes through as a stream, never parsed or copied here.
    let body = if method == Method::Post { req.inner().body().map(Into::into) } else { None };
    let timeout = if method == Method::Post { CREATE_TIMEOUT_MS } else { READ_TIMEOUT_MS };
    let upstream = cx.replicate(&credential)?.send(method, &path, body, &forwarded, timeout).await?;

    // The caller's own rejected token is passed through as Replicate said it;
    // the service's is the operator's problem, not the caller's.
    if matches!(upstream.status, 401 | 403) && !credential.is_user() {
        return Err(rejected_token(&credential));
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

/// Our image ids for a prediction's outputs: kept now when it has just
/// succeeded, or known from an earlier sighting (also once Replicate has
/// removed the data). `None` leaves the outputs as Replicate gave them.
async fn outputs_of(cx: &RequestContext, config: &Config, value: &Value) -> Option<Vec<String>> {
    let prediction: Prediction = serde_json::from_value(value.clone()).ok()?;
    if prediction.status == Status::Succeeded && !prediction.output_urls().is_empty() {
        let input = value.get("input").cloned().unwrap_or(Value::Null);
        return match keep_outputs(cx, &config.model, &prediction, &input, Seen::MaybeBefore).await {
            Ok(ids) => Some(ids),
            Err(e) => {
                worker::console_warn!("keeping outputs of {}: {e}", prediction.id);
                None
            }
        };
    }
    known_outputs(cx.store().ok()?, &prediction.id).await.ok().flatten()
}
