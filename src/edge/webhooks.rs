//! Webhooks both ways: Replicate's deliveries to this service (`POST
//! /webhooks/replicate`), verified before anything is believed; callers'
//! webhooks, called by this service after the images are stored and signed
//! the Standard Webhooks way with the caller's own secret; and that secret,
//! at `GET /replicate/v1/webhooks/default/secret`.

use super::request::Request;
use serde_json::json;
use wasm_bindgen::JsValue;
use worker::{Env, Response};

use super::jobs::advance;
use super::net::{discard, fetch_with_timeout, now_ms, read_body, sleep_ms, NetError, Outbound};
use super::store::Store;
use super::{respond, RequestContext};
use crate::error::ApiError;
use crate::http_url::webhook_target_problem;
use crate::jobs::{delivery_id, is_prediction_id, CallerWebhook};
use crate::prediction::Prediction;
use crate::webhook_signature::{self, caller_secret, WebhookHeaders};

/// The largest delivery read from Replicate: a prediction object with its
/// input and logs.
const MAX_DELIVERY_BYTES: u64 = 4 * 1024 * 1024;
/// How long one call to a caller's webhook may take.
const DELIVERY_TIMEOUT_MS: u64 = 10_000;
/// Pauses before each try of a `completed` delivery within the request;
/// what still fails is left to the cron.
const IN_REQUEST_DELAYS_MS: [u64; 3] = [0, 1_000, 4_000];

/// `POST /webhooks/replicate`: a delivery about a prediction this service
/// created. Refused (401) unless signed with Replicate's secret within five
/// minutes; a prediction not made here is acknowledged and ignored. A
/// delivery whose outputs could not be kept for a passing reason is answered
/// 5xx, so that Replicate sends it again.
pub async fn receive(req: Request, cx: &RequestContext) -> Result<Response, ApiError> {
    let Some(secret) = cx.secrets.replicate_webhook_secret.as_deref() else {
        return Err(ApiError::not_found());
    };
    let body = read_body(&req, MAX_DELIVERY_BYTES).await?;
    let header = |name: &str| req.headers().get(name).ok().flatten();
    let (id, timestamp, signature) = (
        header(webhook_signature::ID_HEADER),
        header(webhook_signature::TIMESTAMP_HEADER),
        header(webhook_signature::SIGNATURE_HEADER),
    );
    let headers =
        WebhookHeaders { id: id.as_deref(), timestamp: timestamp.as_deref(), signature: signature.as_deref() };
    webhook_signature::verify(secret, headers, &body, now_ms() / 1000)?;
    let prediction: Prediction =
        serde_json::from_slice(&body).map_err(|_| ApiError::bad_request("The delivery is not a prediction"))?;
    if !is_prediction_id(&prediction.id) {
        return Err(ApiError::bad_request("The delivery is not a prediction"));
    }
    cx.note(|n| n.prediction_id = Some(prediction.id.clone()));
    let Some(index) = cx.store()?.prediction_index(&prediction.id).await? else {
        return respond::json(200, &json!({ "received": true, "known": false }));
    };
    match advance(cx, index, &prediction).await {
        Ok(_) => {}
        Err(e) if e.status >= 500 && e.status != 502 => return Err(e),
        Err(e) => worker::console_warn!("delivery for {}: {e}", prediction.id),
    }
    respond::json(200, &json!({ "received": true, "known": true }))
}

/// `GET /replicate/v1/webhooks/default/secret`: the secret this caller's
/// deliveries are signed with, derived for it alone.
pub fn secret_for(cx: &RequestContext, subject: &str) -> Result<Response, ApiError> {
    let key = cx.secrets.webhook_signing_key.as_deref().ok_or_else(no_signing_key)?;
    let secret = caller_secret(key, subject).map_err(|_| no_signing_key())?;
    respond::json(200, &json!({ "key": secret }))
}

fn no_signing_key() -> ApiError {
    ApiError::misconfigured(503, "webhooks are not configured: set WEBHOOK_SIGNING_KEY (or AUTH_TOKEN)")
}

/// What a delivery to a caller needs, taken from the request before it ends.
pub struct Delivery {
    env: Env,
    signing_key: Option<String>,
    extra_hosts: Vec<String>,
}

impl Delivery {
    pub fn from_context(cx: &RequestContext) -> Option<Self> {
        let config = cx.config().ok()?;
        Some(Self {
            env: cx.env.clone(),
            signing_key: cx.secrets.webhook_signing_key.clone(),
            extra_hosts: config.extra_webhook_hosts.clone(),
        })
    }
}

/// Delivers `event` of `prediction_id` with `payload` to its caller's
/// webhook, if it asked for that event and has not had it: a `completed`
/// delivery is tried a few times here, then left to the cron with its
/// payload; other events are tried once. Writes down the outcome.
pub async fn deliver_event(delivery: &Delivery, prediction_id: &str, event: &str, payload: &str) {
    // Two requests of this isolate seeing the same end at once (a delivery
    // from Replicate and a read, say) deliver it once; across isolates a
    // repeat is possible, under the same webhook-id.
    let Some(_delivering) = Delivering::start(delivery_id(prediction_id, event)) else { return };
    let Ok(store) = Store::from_env(&delivery.env) else { return };
    let Ok(Some(index)) = store.prediction_index(prediction_id).await else { return };
    let Some(job) = index.job else { return };
    let Some(mut hook) = store.hook_state(prediction_id).await.or_else(|| job.webhook.clone()) else { return };
    if !hook.owes(event) {
        return;
    }
    let Some(secret) = delivery.signing_key.as_deref().and_then(|key| caller_secret(key, &job.subject).ok()) else {
        worker::console_warn!("webhook {prediction_id} {event}: no signing key configured");
        return;
    };
    let message_id = delivery_id(prediction_id, event);
    let tries = if event == "completed" { IN_REQUEST_DELAYS_MS.len() } else { 1 };
    let mut outcome = Err(String::new());
    for pause in IN_REQUEST_DELAYS_MS.iter().take(tries) {
        sleep_ms(*pause).await;
        outcome = send(&hook, &delivery.extra_hosts, &secret, &message_id, payload).await;
        if outcome.is_ok() {
            break;
        }
    }
    let line = json!({
        "webhook_delivery": prediction_id,
        "event": event,
        "delivered": outcome.is_ok(),
        "attempt": hook.attempts + 1,
        "error": outcome.as_ref().err(),
    });
    worker::console_log!("{line}");
    if outcome.is_ok() || event != "completed" {
        hook.mark_done(event);
    } else {
        hook.failed(now_ms());
        store.put_delivery_payload(prediction_id, payload).await;
    }
    store.put_hook_state(prediction_id, &hook).await;
    if job.status.is_terminal() && !hook.owes("completed") {
        store.close_job(prediction_id).await;
    }
}

thread_local! {
    /// The deliveries (by webhook-id) this isolate is making right now.
    static DELIVERING: std::cell::RefCell<std::collections::HashSet<String>> = Default::default();
}

/// A delivery under way in this isolate; ends when dropped.
struct Delivering(String);

impl Delivering {
    fn start(id: String) -> Option<Self> {
        DELIVERING.with(|d| d.borrow_mut().insert(id.clone())).then_some(Delivering(id))
    }
}

impl Drop for Delivering {
    fn drop(&mut self) {
        DELIVERING.with(|d| d.borrow_mut().remove(&self.0));
    }
}

/// Retries a due `completed` delivery with the payload kept when it first
/// failed (the cron).
pub async fn redeliver(delivery: &Delivery, store: &Store, prediction_id: &str) {
    let Some(hook) = store.hook_state(prediction_id).await else { return };
    let due = hook.retry_at_ms.is_some_and(|at| at <= now_ms());
    if !due || !hook.owes("completed") {
        return;
    }
    if let Some(payload) = store.delivery_payload(prediction_id).await {
        deliver_event(delivery, prediction_id, "completed", &payload).await;
    }
}

/// One signed POST to the caller's webhook, no redirect followed; only a
/// 2xx counts as delivered.
async fn send(
    hook: &CallerWebhook,
    extra_hosts: &[String],
    secret: &str,
    message_id: &str,
    payload: &str,
) -> Result<(), String> {
    if let Some(problem) = webhook_target_problem(&hook.url, extra_hosts) {
        return Err(problem.to_owned());
    }
    let timestamp = now_ms() / 1000;
    let signature =
        webhook_signature::sign(secret, message_id, timestamp, payload.as_bytes()).map_err(|e| e.to_string())?;
    let timestamp = timestamp.to_string();
    let headers = [
        ("Content-Type", "application/json"),
        ("User-Agent", concat!("fluxgate/", env!("CARGO_PKG_VERSION"))),
        (webhook_signature::ID_HEADER, message_id),
        (webhook_signature::TIMESTAMP_HEADER, timestamp.as_str()),
        (webhook_signature::SIGNATURE_HEADER, signature.as_str()),
    ];
    let body = JsValue::from_str(payload);
    let outbound =
        Outbound { method: "POST", url: &hook.url, headers: &headers, body: Some(&body), manual_redirect: true };
    let status = fetch_with_timeout(&outbound, DELIVERY_TIMEOUT_MS, |response| async move {
        discard(&response);
        Ok::<u16, NetError>(response.status())
    })
    .await
    .map_err(|e| e.to_string())?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("the webhook answered {status}"))
    }
}
