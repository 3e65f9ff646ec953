//! Predictions this service follows to their end after answering: async
//! `/generate` jobs (`Prefer: respond-async`) and predictions whose caller
//! asked for a webhook (on `/generate` or `/replicate/v1`). What is kept of
//! one in KV (inside its `PredictionIndex`), how a prediction read or
//! delivered moves it on (only forward: deliveries repeat and arrive out of
//! order), and what its caller's webhook is owed.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::prediction::{Prediction, Status, MAX_DETAILS_CHARS};

/// The events a caller's webhook may ask for, as Replicate names them.
pub const WEBHOOK_EVENTS: [&str; 4] = ["start", "output", "logs", "completed"];
/// How long a job is followed at most: Replicate stops a prediction after 30
/// minutes and removes its outputs an hour after it was created.
pub const FOLLOW_FOR_MS: u64 = 2 * 60 * 60 * 1000;
/// Deliveries of one event tried in all (in the request, then by the cron).
pub const MAX_DELIVERY_ATTEMPTS: u32 = 8;

/// Which answer shape a job's caller expects.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// `/generate`: this service's own answer (see [`status_body`]).
    Generate,
    /// `/replicate/v1`: Replicate's prediction object, with this service's URLs.
    Prediction,
}

/// A caller's webhook: where, which events, and what was delivered.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct CallerWebhook {
    pub url: String,
    /// The events asked for (`webhook_events_filter`; all of them when absent).
    pub events: Vec<String>,
    /// Events delivered (a 2xx received), or given up on.
    #[serde(default)]
    pub done: Vec<String>,
    /// Attempts made at the `completed` delivery.
    #[serde(default)]
    pub attempts: u32,
    /// When the cron should try the `completed` delivery again (ms).
    #[serde(default)]
    pub retry_at_ms: Option<u64>,
}

impl CallerWebhook {
    /// A webhook for `url`, filtered to `events` (all when `None`).
    pub fn new(url: String, events: Option<Vec<String>>) -> Self {
        let events = events.unwrap_or_else(|| WEBHOOK_EVENTS.iter().map(|e| (*e).to_owned()).collect());
        Self { url, events, done: Vec::new(), attempts: 0, retry_at_ms: None }
    }

    /// Whether `event` is asked for and not yet delivered.
    pub fn owes(&self, event: &str) -> bool {
        self.events.iter().any(|e| e == event) && !self.done.iter().any(|e| e == event)
    }

    pub fn mark_done(&mut self, event: &str) {
        if !self.done.iter().any(|e| e == event) {
            self.done.push(event.to_owned());
        }
        if event == "completed" {
            self.retry_at_ms = None;
        }
    }

    /// Records a failed `completed` delivery: the next try's time, or none
    /// (given up) after [`MAX_DELIVERY_ATTEMPTS`].
    pub fn failed(&mut self, now_ms: u64) {
        self.attempts = self.attempts.saturating_add(1);
        if self.attempts >= MAX_DELIVERY_ATTEMPTS {
            self.mark_done("completed");
        } else {
            self.retry_at_ms = Some(now_ms.saturating_add(redelivery_delay_ms(self.attempts)));
        }
    }
}

/// The wait before the cron's next try of a delivery that failed `attempts`
/// times: a minute, doubling, at most an hour.
pub fn redelivery_delay_ms(attempts: u32) -> u64 {
    (60_000u64 << attempts.saturating_sub(1).min(6)).min(3_600_000)
}

/// What is followed of one prediction.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct JobState {
    pub kind: JobKind,
    /// `owner/name` of the model.
    pub model: String,
    /// The usage subject of its caller: who may read and cancel it, and
    /// whose webhook secret signs its deliveries.
    pub subject: String,
    /// Created on the service's Replicate token (the cron may read it);
    /// otherwise on the caller's own, which is never kept.
    pub service_token: bool,
    /// Where it is, as last seen (`succeeded` once its outputs are kept).
    pub status: Status,
    /// Replicate's error, cut to `MAX_DETAILS_CHARS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The seed the caller asked for, or the model logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<Value>,
    pub created_ms: u64,
    #[serde(default)]
    pub updated_ms: u64,
    /// Where its links point (the public base URL it was created under).
    #[serde(default)]
    pub base_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<CallerWebhook>,
}

/// What a prediction read or delivered means for a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing new (a repeat, or older news arriving late).
    Stale,
    /// Still running, further along than known.
    Running,
    /// Succeeded: its outputs are to be kept.
    Succeeded,
    /// Failed, canceled or aborted.
    Ended,
}

/// How far along a status is; a job only moves forward.
fn rank(status: Status) -> u8 {
    match status {
        Status::Starting | Status::Unknown => 0,
        Status::Processing => 1,
        _ => 2,
    }
}

impl JobState {
    /// Whether the job is over (and its outcome recorded).
    pub fn is_over(&self) -> bool {
        self.status.is_terminal()
    }

    /// Moves the job on with `prediction` as read or delivered at `now_ms`.
    /// Terminal states never change; a `succeeded` is applied by the caller
    /// once the outputs are kept (see [`JobState::succeed`]).
    pub fn step(&mut self, prediction: &Prediction, now_ms: u64) -> Step {
        if self.is_over() || rank(prediction.status) < rank(self.status) {
            return Step::Stale;
        }
        match prediction.status {
            Status::Succeeded => Step::Succeeded,
            status if status.is_terminal() => {
                self.status = status;
                self.error = Some(crate::text::cut_chars(&prediction.error_message(), MAX_DETAILS_CHARS));
                self.updated_ms = now_ms;
                Step::Ended
            }
            status if rank(status) > rank(self.status) => {
                self.status = status;
                self.updated_ms = now_ms;
                Step::Running
            }
            _ => Step::Stale,
        }
    }

    /// Records success, once the outputs are kept.
    pub fn succeed(&mut self, prediction: &Prediction, now_ms: u64) {
        self.status = Status::Succeeded;
        self.error = None;
        if self.seed.is_none() {
            self.seed = prediction.seed_from_logs().map(Value::from);
        }
        self.updated_ms = now_ms;
    }

    /// Whether the cron should still look at it: running within
    /// [`FOLLOW_FOR_MS`], or a `completed` delivery still owed.
    pub fn needs_follow_up(&self, now_ms: u64) -> bool {
        let young = now_ms < self.created_ms.saturating_add(FOLLOW_FOR_MS);
        let owed = self.webhook.as_ref().is_some_and(|w| w.owes("completed"));
        young && (!self.is_over() || owed)
    }
}

/// The id of the delivery of `event` for `prediction_id`: the same on every
/// retry, so a receiver can drop repeats.
pub fn delivery_id(prediction_id: &str, event: &str) -> String {
    format!("msg_{prediction_id}_{event}")
}

/// The body of `/generate`'s answer for a job (also its webhook's payload):
/// the prediction's status, the images it will have (or has), the status
/// URL, and Replicate's error when it failed.
pub fn status_body(job: &JobState, prediction_id: &str, images: &[(String, String)], status_url: &str) -> Value {
    let (id, url) = images.first().cloned().unwrap_or_default();
    let mut body = json!({
        "id": id,
        "imageUrl": url,
        "predictionId": prediction_id,
        "model": job.model,
        "status": job.status.as_str(),
        "statusUrl": status_url,
        "images": images.iter().map(|(id, url)| json!({ "id": id, "imageUrl": url })).collect::<Vec<_>>(),
    });
    if let Some(seed) = &job.seed {
        body["seed"] = seed.clone();
    }
    if let Some(error) = &job.error {
        body["error"] = Value::String(error.clone());
    }
    body
}

/// Whether `id` has the shape of a Replicate prediction id (lowercase
/// letters and digits, as in `ctdwaehfz1rm80cmd5nsjd8114`), so that it can
/// name a KV key and a URL path safely.
pub fn is_prediction_id(id: &str) -> bool {
    (8..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prediction(status: &str) -> Prediction {
        serde_json::from_value(json!({"id": "abc123def456", "status": status, "error": "boom"})).unwrap()
    }

    fn job() -> JobState {
        JobState {
            kind: JobKind::Generate,
            model: "black-forest-labs/flux-schnell".into(),
            subject: "key_1".into(),
            service_token: true,
            status: Status::Starting,
            error: None,
            seed: None,
            created_ms: 1_000,
            updated_ms: 1_000,
            base_url: "https://x".into(),
            webhook: Some(CallerWebhook::new("https://hooks.example.com/x".into(), None)),
        }
    }

    #[test]
    fn a_job_only_moves_forward() {
        let mut j = job();
        assert_eq!(j.step(&prediction("processing"), 2_000), Step::Running);
        assert_eq!(j.status, Status::Processing);
        assert_eq!(j.step(&prediction("starting"), 3_000), Step::Stale, "older news arriving late");
        assert_eq!(j.step(&prediction("processing"), 3_000), Step::Stale, "a repeat");
        assert_eq!(j.updated_ms, 2_000);
        assert_eq!(j.step(&prediction("succeeded"), 4_000), Step::Succeeded);
        assert_eq!(j.status, Status::Processing, "success is recorded once the outputs are kept");
        j.succeed(&prediction("succeeded"), 4_000);
        assert!(j.is_over());
        assert_eq!(j.step(&prediction("succeeded"), 5_000), Step::Stale, "a duplicate delivery");
        assert_eq!(j.step(&prediction("failed"), 5_000), Step::Stale, "an end never changes");
        assert_eq!(j.status, Status::Succeeded);
    }

    #[test]
    fn failure_and_cancel_end_a_job_with_the_error() {
        let mut j = job();
        assert_eq!(j.step(&prediction("failed"), 2_000), Step::Ended);
        assert_eq!((j.status, j.error.as_deref()), (Status::Failed, Some("boom")));
        let mut j = job();
        assert_eq!(j.step(&prediction("canceled"), 2_000), Step::Ended);
        assert_eq!(j.status, Status::Canceled);
        assert_eq!(j.step(&prediction("succeeded"), 3_000), Step::Stale);
    }

    #[test]
    fn webhooks_owe_the_filtered_events_once() {
        let mut w = CallerWebhook::new("https://h.example.com".into(), Some(vec!["completed".into()]));
        assert!(!w.owes("start"));
        assert!(w.owes("completed"));
        w.mark_done("completed");
        w.mark_done("completed");
        assert_eq!(w.done, vec!["completed"]);
        assert!(!w.owes("completed"));
        let all = CallerWebhook::new("https://h.example.com".into(), None);
        assert!(WEBHOOK_EVENTS.iter().all(|e| all.owes(e)));
    }

    #[test]
    fn failed_deliveries_back_off_then_give_up() {
        let mut w = CallerWebhook::new("https://h.example.com".into(), None);
        w.failed(0);
        assert_eq!(w.retry_at_ms, Some(60_000));
        w.failed(0);
        assert_eq!(w.retry_at_ms, Some(120_000));
        for _ in 2..MAX_DELIVERY_ATTEMPTS {
            w.failed(0);
        }
        assert!(!w.owes("completed"), "given up");
        assert_eq!(w.retry_at_ms, None);
        assert!(redelivery_delay_ms(40) <= 3_600_000);
    }

    #[test]
    fn follow_up_while_running_or_owing_and_young() {
        let mut j = job();
        assert!(j.needs_follow_up(2_000));
        j.succeed(&prediction("succeeded"), 2_000);
        assert!(j.needs_follow_up(2_000), "completed still owed");
        j.webhook.as_mut().unwrap().mark_done("completed");
        assert!(!j.needs_follow_up(2_000));
        let j = job();
        assert!(!j.needs_follow_up(1_000 + FOLLOW_FOR_MS));
    }

    #[test]
    fn the_status_body() {
        let mut j = job();
        j.seed = Some(json!(7));
        let images = vec![("a.webp".to_owned(), "https://x/image/a.webp".to_owned())];
        let body = status_body(&j, "abc123def456", &images, "https://x/generate/abc123def456");
        assert_eq!(body["status"], "starting");
        assert_eq!(body["id"], "a.webp");
        assert_eq!(body["images"][0]["imageUrl"], "https://x/image/a.webp");
        assert_eq!(body["seed"], 7);
        assert!(body.get("error").is_none());
        j.step(&prediction("failed"), 5);
        assert_eq!(status_body(&j, "p", &images, "u")["error"], "boom");
    }

    #[test]
    fn prediction_ids_are_checked() {
        assert!(is_prediction_id("ctdwaehfz1rm80cmd5nsjd8114"));
        for bad in ["", "short", "ABCDEFGHIJ", "abc/defghij", "abcdefgh:1", &"a".repeat(65)] {
            assert!(!is_prediction_id(bad), "{bad}");
        }
        assert_eq!(delivery_id("p1", "completed"), "msg_p1_completed");
    }
}
