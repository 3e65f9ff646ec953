//! `/replicate/v1/...`: Replicate's own API, authenticated with our service
//! token or the caller's Replicate token, answering Replicate's objects with
//! outputs copied into R2 and served from our URLs.

use futures_util::future::join_all;
use serde_json::Value;
use worker::{Context, Env, Headers, Method, Request, Response};

use super::generate::image_base;
use super::persist::{keep_outputs, known_outputs, Seen};
use super::replicate::Replicate;
use super::store::Store;
use super::{config, secrets};
use crate::config::Config;
use crate::credentials::{resolve_bearer, Credential};
use crate::error::ApiError;
use crate::prediction::{Prediction, Status};
use crate::proxy::{self, error_body, is_forwarded_response_header, ProxyRoute, Rewriter, FORWARDED_REQUEST_HEADERS};

/// A create may be held by `Prefer: wait` for up to 60 s.
const CREATE_TIMEOUT_MS: u64 = 75_000;
const READ_TIMEOUT_MS: u64 = 30_000;

/// Serves one request under [`proxy::PREFIX`]; `rest` is the path after it.
pub async fn handle(req: Request, env: Env, ctx: &Context, rest: &str) -> Response {
    match forward(req, &env, ctx, rest).await {
        Ok(response) => response,
        Err(e) => {
            if e.status >= 500 {
                worker::console_error!("replicate proxy: {e}");
            }
            replicate_error(&e)
        }
    }
}

/// An error in Replicate's shape.
fn replicate_error(e: &ApiError) -> Response {
    super::respond::error_as(e, error_body(e), "application/json")
}

async fn forward(req: Request, env: &Env, ctx: &Context, rest: &str) -> Result<Response, ApiError> {
    let config = config(env)?;
    let method = req.method();
    let route = proxy::resolve(method.as_ref(), rest)?;
    let header = |name: &str| req.headers().get(name).ok().flatten();
    let secrets = secrets(env);
    let credential = resolve_bearer(
        header("Authorization").as_deref(),
        header("X-Replicate-Token").as_deref(),
        &secrets.borrow(),
        config.allow_user_tokens,
    )?;

    let url = req.url().map_err(|_| ApiError::bad_request("Invalid URL"))?;
    let path = format!("/v1{rest}{}", url.query().map(|q| format!("?{q}")).unwrap_or_default());
    let forwarded: Vec<(&str, String)> =
        FORWARDED_REQUEST_HEADERS.iter().filter_map(|&name| Some((name, header(name)?))).collect();
    let forwarded: Vec<(&str, &str)> = forwarded.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // A POST body goes through as a stream, never parsed or copied here.
    let body = if method == Method::Post { req.inner().body().map(Into::into) } else { None };
    let timeout = if method == Method::Post { CREATE_TIMEOUT_MS } else { READ_TIMEOUT_MS };
    let upstream = Replicate::new(&config.api_base, &credential).send(method, &path, body, &forwarded, timeout).await?;

    if matches!(upstream.status, 401 | 403) && matches!(credential, Credential::Service(_)) {
        return Err(
            ApiError::new(502, "Server misconfiguration").with_details("the service's Replicate token was rejected")
        );
    }

    let our_base = image_base(&config, &url);
    let rewriter = Rewriter { api_base: &config.api_base, our_base: &our_base };
    let body = if config.rewrite_outputs && (200..300).contains(&upstream.status) {
        rewrite(env, ctx, &config, &route, &rewriter, upstream.body).await?
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
    let response = Response::ok(body).map_err(|_| ApiError::internal())?;
    Ok(response.with_status(upstream.status).with_headers(out))
}

/// Rewrites a successful answer: prediction objects (and list pages) point
/// back at us; succeeded outputs are kept in R2 and served from our URLs.
async fn rewrite(
    env: &Env,
    ctx: &Context,
    config: &Config,
    route: &ProxyRoute,
    rewriter: &Rewriter<'_>,
    body: String,
) -> Result<String, ApiError> {
    let Ok(mut value) = serde_json::from_str::<Value>(&body) else { return Ok(body) };
    if route.answers_prediction() {
        let ids = outputs_of(env, ctx, config, &value).await;
        rewriter.prediction(&mut value, ids.as_deref());
    } else if *route == ProxyRoute::List {
        rewriter.page_links(&mut value);
        if let Some(results) = value.get_mut("results").and_then(Value::as_array_mut) {
            let ids = join_all(results.iter().map(|p| outputs_of(env, ctx, config, p))).await;
            for (prediction, ids) in results.iter_mut().zip(ids) {
                rewriter.prediction(prediction, ids.as_deref());
            }
        }
    } else {
        return Ok(body);
    }
    serde_json::to_string(&value).map_err(|_| ApiError::internal())
}

/// Our image ids for a prediction's outputs: kept now when it has just
/// succeeded, or known from an earlier sighting (also once Replicate has
/// removed the data). `None` leaves the outputs as Replicate gave them.
async fn outputs_of(env: &Env, ctx: &Context, config: &Config, value: &Value) -> Option<Vec<String>> {
    let prediction: Prediction = serde_json::from_value(value.clone()).ok()?;
    if prediction.status == Status::Succeeded && !prediction.output_urls().is_empty() {
        let input = value.get("input").cloned().unwrap_or(Value::Null);
        return match keep_outputs(env, ctx, config, &prediction, &input, Seen::MaybeBefore).await {
            Ok(ids) => Some(ids),
            Err(e) => {
                worker::console_warn!("keeping outputs of {}: {e}", prediction.id);
                None
            }
        };
    }
    let store = Store::from_env(env).ok()?;
    known_outputs(&store, &prediction.id).await.ok().flatten()
}
