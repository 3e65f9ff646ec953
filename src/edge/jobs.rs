//! Predictions followed after the answer (see `crate::jobs`): async
//! `/generate` jobs, with their status URL (`GET` and `DELETE
//! /generate/{prediction_id}`), and predictions whose caller asked for a
//! webhook.
//!
//! A job moves on from whatever sees the prediction first: Replicate's
//! delivery to this service's webhook, a read of its status URL, the
//! request's own polling in `wait_until` when no delivery will come (a
//! caller's own token: its deliveries are signed with a secret this service
//! does not hold), or the cron. [`advance`] is idempotent, so all of them
//! may.

use futures_util::FutureExt;
use serde_json::Value;
use worker::Response;

use super::context::{Caller, TokenHints};
use super::net::{now_ms, sleep_ms};
use super::persist::{keep_outputs, AfterCopies, Keeping, Seen};
use super::replicate::Replicate;
use super::schemas::requested_kind;
use super::store::Store;
use super::webhooks::{deliver_event, redeliver, Delivery};
use super::{respond, RequestContext};
use crate::backoff::poll_delay_ms;
use crate::error::ApiError;
use crate::jobs::{is_prediction_id, status_body, CallerWebhook, JobKind, JobState, Step};
use crate::metadata::{compact_input, ImageRecord, PredictionIndex, StoreStatus};
use crate::prediction::{Prediction, Status};
use crate::proxy::Rewriter;

/// Where Replicate delivers to this service.
pub const SERVICE_WEBHOOK_PATH: &str = "/webhooks/replicate";
/// How long a request keeps polling a job after answering, when no
/// delivery will come: within the platform's `waitUntil` budget.
const WATCH_BUDGET_MS: u64 = 25_000;

fn generation_not_found() -> ApiError {
    ApiError::new(404, "Generation not found")
}

/// The index of a prediction `caller` has just created, followed as a job of
/// `kind`: its input kept (compacted), the seed it names, the caller's webhook.
pub fn job_index(
    cx: &RequestContext,
    caller: &Caller,
    kind: JobKind,
    model: String,
    input: &Value,
    webhook: Option<CallerWebhook>,
) -> PredictionIndex {
    let now = now_ms();
    let job = JobState {
        kind,
        model,
        subject: caller.subject.clone(),
        service_token: !caller.is_user(),
        status: Status::Starting,
        error: None,
        seed: input.get("seed").cloned(),
        created_ms: now,
        updated_ms: now,
        base_url: cx.base_url.clone(),
        webhook,
    };
    PredictionIndex {
        ids: None,
        input: compact_input(input),
        awaiting: false,
        owner: Some(caller.subject.clone()),
        job: Some(job),
    }
}

/// This service's own webhook for a prediction created on `caller`'s token:
/// only on its own token (Replicate signs deliveries with the account's
/// secret) and when it holds that secret.
pub fn service_webhook(cx: &RequestContext, caller: &Caller) -> Option<String> {
    let can_verify = cx.secrets.replicate_webhook_secret.is_some();
    (can_verify && !caller.is_user()).then(|| format!("{}{SERVICE_WEBHOOK_PATH}", cx.base_url))
}

/// The status URL of a generation.
pub fn status_url(cx: &RequestContext, prediction_id: &str) -> String {
    format!("{}/generate/{prediction_id}", cx.base_url)
}

/// `(id, imageUrl)` of each of the job's images.
pub fn images_of(cx: &RequestContext, index: &PredictionIndex) -> Vec<(String, String)> {
    index.ids.iter().flatten().map(|id| (id.clone(), cx.image_url(id))).collect()
}

/// What the caller's webhook receives for the job as it now is: the status
/// answer for `/generate`, the prediction object (`prediction` as
/// Replicate gave it, pointing here) for `/replicate/v1`.
pub fn caller_payload(cx: &RequestContext, index: &PredictionIndex, prediction: &Prediction) -> Option<String> {
    let job = index.job.as_ref()?;
    let body = match job.kind {
        JobKind::Generate => status_body(job, &prediction.id, &images_of(cx, index), &status_url(cx, &prediction.id)),
        JobKind::Prediction => {
            let config = cx.config().ok()?;
            let mut value = serde_json::to_value(prediction).ok()?;
            let rewriter = Rewriter { api_base: &config.api_base, our_base: &cx.base_url };
            rewriter.prediction(&mut value, index.kept_ids());
            restore_caller_webhook(&mut value, job);
            value
        }
    };
    serde_json::to_string(&body).ok()
}

/// A prediction object shows the caller's own webhook, not this service's.
pub fn restore_caller_webhook(prediction: &mut Value, job: &JobState) {
    let Some(object) = prediction.as_object_mut() else { return };
    match &job.webhook {
        Some(hook) => {
            object.insert("webhook".into(), Value::String(hook.url.clone()));
            object.insert("webhook_events_filter".into(), hook.events.iter().cloned().map(Value::String).collect());
        }
        None => {
            object.remove("webhook");
            object.remove("webhook_events_filter");
        }
    }
}

/// Moves a prediction made here on with `prediction`, as read or delivered:
/// once it succeeded its outputs are kept (and the job's webhook told after
/// the copies); once it failed or was canceled the job records it, its
/// announced images are withdrawn and the webhook told. Repeats and late
/// news change nothing. Answers the index as it now is; an error only when
/// the outputs could not be kept.
pub async fn advance(
    cx: &RequestContext,
    mut index: PredictionIndex,
    prediction: &Prediction,
) -> Result<PredictionIndex, ApiError> {
    let now = now_ms();
    let unkept = index.kept_ids().is_none();
    let step = match index.job.as_mut() {
        Some(job) => job.step(prediction, now),
        None if unkept && prediction.status == Status::Succeeded => Step::Succeeded,
        None => Step::Stale,
    };
    match step {
        Step::Stale => Ok(index),
        Step::Running => {
            cx.store()?.put_prediction_index(&prediction.id, &index).await?;
            Ok(index)
        }
        Step::Ended => {
            end(cx, &index, prediction).await?;
            Ok(index)
        }
        Step::Succeeded => keep(cx, index, prediction).await,
    }
}

/// Keeps the outputs of a prediction that succeeded; its webhook (if any)
/// is told after the copies. Outputs that cannot be kept end the job as failed.
async fn keep(
    cx: &RequestContext,
    mut index: PredictionIndex,
    prediction: &Prediction,
) -> Result<PredictionIndex, ApiError> {
    let config = cx.config()?;
    let input = prediction.rest.get("input").cloned().unwrap_or_else(|| index.input.clone());
    let model =
        index.job.as_ref().map(|j| j.model.clone()).unwrap_or_else(|| config.models.default_entry().model.model());
    let requested = requested_kind(prediction.model.as_deref().or(Some(model.as_str())), &input);
    if let Some(job) = index.job.as_mut() {
        job.succeed(prediction, now_ms());
    }
    // The payload is made from the index as kept, and sent after the copies.
    let then = index.job.as_ref().and_then(|j| j.webhook.as_ref()).map(|_| {
        Box::new(move |kept: &PredictionIndex| {
            caller_payload(cx, kept, prediction)
                .map(|payload| notify(cx, prediction.id.clone(), &["output", "completed"], payload).boxed_local())
        }) as AfterCopies<'_>
    });
    let keeping = Keeping { index: index.clone(), then };
    match keep_outputs(cx, &model, requested, prediction, &input, Seen::MaybeBefore, keeping).await {
        Ok(ids) => {
            index.ids = Some(ids);
            index.awaiting = false;
            Ok(index)
        }
        Err(e) if e.status == 502 => {
            // The outputs are unusable: the job ends as failed, not retried.
            if let Some(job) = index.job.as_mut() {
                job.status = Status::Failed;
                job.error = Some(e.details.clone().unwrap_or_else(|| e.error.clone()));
            }
            end(cx, &index, prediction).await?;
            Err(e)
        }
        Err(e) => Err(e),
    }
}

/// Records how a job ended, withdraws its announced images and tells its webhook.
async fn end(cx: &RequestContext, index: &PredictionIndex, prediction: &Prediction) -> Result<(), ApiError> {
    let store = cx.store()?;
    store.put_prediction_index(&prediction.id, index).await?;
    if index.awaiting {
        for id in index.ids.iter().flatten() {
            store.delete_record(id).await;
        }
    }
    if let Some(payload) = caller_payload(cx, index, prediction) {
        cx.wait_until(notify(cx, prediction.id.clone(), &["completed"], payload));
    }
    Ok(())
}

/// Delivers `events` (those the webhook asked for and was not given yet)
/// with `payload`, then records what was delivered.
pub fn notify(
    cx: &RequestContext,
    prediction_id: String,
    events: &'static [&'static str],
    payload: String,
) -> impl std::future::Future<Output = ()> + 'static {
    let delivery = Delivery::from_context(cx);
    async move {
        if let Some(delivery) = delivery {
            for event in events {
                deliver_event(&delivery, &prediction_id, event, &payload).await;
            }
        }
    }
}

/// Starts following a job just created: its index (with the ids announced,
/// for an async generation), its awaiting image records, its place in the
/// cron's list; then, after the answer, its `start` delivery and, when no
/// delivery from Replicate will come, polling it within the request's budget.
pub async fn follow(
    cx: &RequestContext,
    index: &PredictionIndex,
    prediction: &Prediction,
    replicate: Option<Replicate>,
) -> Result<(), ApiError> {
    let store = cx.store()?;
    let Some(job) = &index.job else { return Ok(()) };
    let records = index.ids.iter().flatten().filter(|_| index.awaiting).enumerate().map(|(at, id)| ImageRecord {
        id: id.clone(),
        prediction_id: prediction.id.clone(),
        index: at,
        model: job.model.clone(),
        version: prediction.version.clone(),
        prompt: index.input.get("prompt").and_then(Value::as_str).map(str::to_owned),
        created_at: prediction.created_at.clone().unwrap_or_default(),
        content_type: None,
        size: None,
        status: StoreStatus::Awaiting,
        source_url: None,
        attempts: 0,
        last_error: None,
        owner: Some(job.subject.clone()),
    });
    let records: Vec<ImageRecord> = records.collect();
    let writes = super::join::join_all(records.iter().map(|r| store.put_record(r)));
    let (index_written, open, records_written) =
        futures_util::join!(store.put_prediction_index(&prediction.id, index), store.open_job(&prediction.id), writes);
    index_written?;
    open?;
    for written in records_written {
        written?;
    }
    if job.webhook.as_ref().is_some_and(|w| w.owes("start")) {
        if let Some(payload) = caller_payload(cx, index, prediction) {
            cx.wait_until(notify(cx, prediction.id.clone(), &["start"], payload));
        }
    }
    if let Some(replicate) = replicate {
        cx.wait_until(watch(cx.env.clone(), job.base_url.clone(), prediction.id.clone(), replicate));
    }
    Ok(())
}

/// Polls a job after the answer until it ends or the budget is spent; what
/// is left is for the status URL and the cron.
async fn watch(env: worker::Env, base_url: String, prediction_id: String, replicate: Replicate) {
    {
        let Ok(cx) = RequestContext::detached(env, base_url) else { return };
        let deadline = now_ms().saturating_add(WATCH_BUDGET_MS);
        let mut attempt = 0;
        while now_ms() < deadline {
            sleep_ms(poll_delay_ms(attempt).min(deadline.saturating_sub(now_ms()))).await;
            attempt += 1;
            let Ok(prediction) = replicate.get(&prediction_id, deadline).await else { continue };
            if !prediction.status.is_terminal() {
                continue;
            }
            let Ok(store) = cx.store() else { return };
            if let Ok(Some(index)) = store.prediction_index(&prediction_id).await {
                if let Err(e) = advance(&cx, index, &prediction).await {
                    worker::console_warn!("job {prediction_id}: {e}");
                }
            }
            cx.settle().await;
            return;
        }
    }
}

/// The job of `prediction_id` if `caller` may see it (its own, or the
/// operator); anything else is not found.
async fn own_job(cx: &RequestContext, caller: &Caller, prediction_id: &str) -> Result<PredictionIndex, ApiError> {
    if !is_prediction_id(prediction_id) {
        return Err(generation_not_found());
    }
    let index = cx.store()?.prediction_index(prediction_id).await?.ok_or_else(generation_not_found)?;
    let visible = index
        .job
        .as_ref()
        .is_some_and(|job| job.kind == JobKind::Generate && (job.subject == caller.subject || caller.is_operator()));
    if visible {
        Ok(index)
    } else {
        Err(generation_not_found())
    }
}

/// The Replicate client a job is read with: the token it was created on.
fn client_for(cx: &RequestContext, caller: &Caller, job: &JobState) -> Result<Option<Replicate>, ApiError> {
    if job.service_token != caller.is_user() {
        return cx.replicate(caller).map(Some);
    }
    Ok(None)
}

/// `GET /generate/{prediction_id}`: where an async generation is, read from
/// Replicate when it is still running.
pub async fn status(cx: &RequestContext, prediction_id: &str) -> Result<Response, ApiError> {
    let caller = cx.caller(TokenHints::default()).await?;
    let mut index = own_job(cx, &caller, prediction_id).await?;
    cx.note(|n| n.prediction_id = Some(prediction_id.to_owned()));
    let running = index.job.as_ref().is_some_and(|j| !j.is_over());
    if let (true, Some(job)) = (running, index.job.clone()) {
        if let Some(replicate) = client_for(cx, &caller, &job)? {
            let deadline = now_ms().saturating_add(super::replicate::READ_TIMEOUT_MS);
            match replicate.get(prediction_id, deadline).await {
                Ok(prediction) => match advance(cx, index.clone(), &prediction).await {
                    Ok(advanced) => index = advanced,
                    Err(e) => {
                        worker::console_warn!("job {prediction_id}: {e}");
                        index = cx.store()?.prediction_index(prediction_id).await?.unwrap_or(index);
                    }
                },
                Err(e) => worker::console_warn!("job {prediction_id}: reading it: {e}"),
            }
        }
    }
    answer(cx, &index, prediction_id, 200)
}

/// `DELETE /generate/{prediction_id}`: cancels a running generation; one
/// already over is answered as it is.
pub async fn cancel(cx: &RequestContext, prediction_id: &str) -> Result<Response, ApiError> {
    let caller = cx.caller(TokenHints::default()).await?;
    let mut index = own_job(cx, &caller, prediction_id).await?;
    cx.note(|n| n.prediction_id = Some(prediction_id.to_owned()));
    let Some(job) = index.job.clone() else { return Err(generation_not_found()) };
    if !job.is_over() {
        let replicate = client_for(cx, &caller, &job)?
            .ok_or_else(|| ApiError::new(403, "Forbidden").with_details("cancel with the token it was created on"))?;
        let prediction = replicate.cancel_prediction(prediction_id).await?;
        index = advance(cx, index, &prediction).await?;
    }
    answer(cx, &index, prediction_id, 200)
}

/// The status answer; `Retry-After` while it runs.
pub fn answer(
    cx: &RequestContext,
    index: &PredictionIndex,
    prediction_id: &str,
    status: u16,
) -> Result<Response, ApiError> {
    let job = index.job.as_ref().ok_or_else(generation_not_found)?;
    let body = status_body(job, prediction_id, &images_of(cx, index), &status_url(cx, prediction_id));
    let mut response = respond::json(status, &body)?;
    if !job.is_over() {
        response.headers_mut().set("Retry-After", "1")?;
    }
    Ok(response)
}

/// What the cron does for one followed job: reads it from Replicate when
/// it runs on the service's token and nothing was heard for `quiet_ms`,
/// and retries a `completed` delivery that is due. Answers whether it
/// still needs following.
pub async fn follow_up(env: &worker::Env, store: &Store, prediction_id: &str, quiet_ms: u64) -> bool {
    let Ok(Some(index)) = store.prediction_index(prediction_id).await else { return false };
    let Some(job) = index.job.clone() else { return false };
    let now = now_ms();
    let mut merged = job.clone();
    if let Some(hook) = store.hook_state(prediction_id).await {
        merged.webhook = Some(hook);
    }
    if !merged.needs_follow_up(now) {
        return false;
    }
    let Ok(cx) = RequestContext::detached(env.clone(), job.base_url.clone()) else { return true };
    if job.is_over() {
        if let Some(delivery) = Delivery::from_context(&cx) {
            redeliver(&delivery, store, prediction_id).await;
        }
        return true;
    }
    let quiet = now.saturating_sub(job.updated_ms.max(job.created_ms)) >= quiet_ms;
    if job.service_token && quiet {
        let read = async {
            let credential = crate::credentials::resolve_service(&cx.secrets.borrow())?;
            let deadline = now.saturating_add(super::replicate::READ_TIMEOUT_MS);
            let prediction = cx.replicate(&credential)?.get(prediction_id, deadline).await?;
            advance(&cx, index, &prediction).await
        };
        if let Err(e) = read.await {
            worker::console_warn!("scheduled: job {prediction_id}: {e}");
        }
        cx.settle().await;
    }
    true
}
