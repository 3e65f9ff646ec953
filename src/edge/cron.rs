//! The scheduled trigger: copies that failed (or were cut off with their
//! request) are retried while Replicate still keeps the output.

use serde_json::Value;
use worker::{Env, ScheduleContext, ScheduledEvent};

use super::net::now_ms;
use super::store::{source_still_valid, Store};
use crate::image_id::rfc3339_to_ms;
use crate::metadata::{ImageRecord, StoreStatus};

/// A pending record younger than this may still be in its request's `wait_until`.
const PENDING_GRACE_MS: u64 = 2 * 60 * 1000;
/// Records examined per run, to stay within one invocation's limits.
const MAX_RETRIES_PER_RUN: usize = 50;

#[worker::event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    let Ok(store) = Store::from_env(&env) else {
        worker::console_error!("scheduled: R2 or KV binding missing");
        return;
    };
    let mut cursor: Option<String> = None;
    let mut retried = 0;
    loop {
        let mut list = store.kv.list().prefix("image:".into()).limit(1000);
        if let Some(c) = cursor.take() {
            list = list.cursor(c);
        }
        let Ok(page) = list.execute().await else {
            worker::console_error!("scheduled: KV list failed");
            return;
        };
        for key in &page.keys {
            if retried >= MAX_RETRIES_PER_RUN {
                return;
            }
            if !needs_retry(key.metadata.as_ref()) {
                continue;
            }
            let id = key.name.trim_start_matches("image:");
            let Ok(Some(record)) = store.record(id).await else { continue };
            if retryable(&record) {
                retried += 1;
                let result = store.persist(record, None, 1).await;
                worker::console_log!("scheduled: retried {id}: {:?}", result.status);
            }
        }
        match page.cursor {
            Some(c) if !page.list_complete => cursor = Some(c),
            _ => break,
        }
    }
}

/// From the key's metadata alone: anything not yet stored.
fn needs_retry(metadata: Option<&Value>) -> bool {
    metadata.and_then(|m| m.get("status")).and_then(Value::as_str) != Some("stored")
}

fn retryable(record: &ImageRecord) -> bool {
    let age = now_ms().saturating_sub(rfc3339_to_ms(&record.created_at).unwrap_or(0));
    match record.status {
        StoreStatus::Stored => false,
        StoreStatus::Failed => source_still_valid(record),
        StoreStatus::Pending => age > PENDING_GRACE_MS && source_still_valid(record),
    }
}
