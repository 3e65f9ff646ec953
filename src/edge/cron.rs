//! The scheduled trigger: copies that failed (or were cut off with their
//! request) are retried while Replicate still keeps the output. It walks the
//! index of copies still to do, so its cost follows the work left.
//! It also removes uploads past their retention (`sweep_uploads`).

use worker::{Env, ScheduleContext, ScheduledEvent};

use super::net::now_ms;
use super::store::{source_still_valid, Store, COPY_TIMEOUT_MS};
use crate::image_id::rfc3339_to_ms;
use crate::metadata::{ImageRecord, StoreStatus};
use crate::uploads::object_expired;

/// A pending record younger than this may still be in its request's `wait_until`.
const PENDING_GRACE_MS: u64 = 2 * 60 * 1000;
/// Copies tried per run, to stay within one invocation's limits.
const MAX_RETRIES_PER_RUN: usize = 50;

#[worker::event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    let store = match Store::from_env(&env) {
        Ok(store) => store,
        Err(e) => {
            worker::console_error!("scheduled: {e}");
            return;
        }
    };
    sweep_uploads(&store, &env).await;
    follow_jobs(&store, &env).await;
    let mut cursor: Option<String> = None;
    let mut retried = 0;
    // The owners' usage of what this run stores, written once at its end.
    let mut counted = Vec::new();
    loop {
        let (ids, next) = match store.pending_page(cursor.take()).await {
            Ok(page) => page,
            Err(e) => {
                worker::console_error!("scheduled: {e}");
                break;
            }
        };
        for id in ids {
            if retried >= MAX_RETRIES_PER_RUN {
                break;
            }
            let record = match store.record(&id).await {
                Ok(Some(record)) => record,
                Ok(None) => {
                    store.forget_pending(&id).await;
                    continue;
                }
                Err(e) => {
                    worker::console_warn!("scheduled: {e}");
                    continue;
                }
            };
            match (retryable(&record), record.source()) {
                (Retry::Now, Some(source)) => {
                    retried += 1;
                    let (_, key) = store.persist(record, &source, 1, now_ms().saturating_add(COPY_TIMEOUT_MS)).await;
                    counted.extend(key);
                }
                (Retry::Later, _) => {}
                (Retry::Lost, _) | (Retry::Now, None) => store.mark_lost(record).await,
                (Retry::Never, _) => store.forget_pending(&id).await,
            }
        }
        match next {
            Some(c) if retried < MAX_RETRIES_PER_RUN => cursor = Some(c),
            _ => break,
        }
    }
    super::usage::write_counted(store.kv().clone(), counted).await;
    let line = serde_json::json!({ "scheduled": "copies", "retried": retried });
    worker::console_log!("{line}");
}

/// What the cron does with a record still indexed as a copy to do.
enum Retry {
    Now,
    /// Pending and young: its own request's `wait_until` may still copy it.
    Later,
    /// Stored or already lost: nothing to do.
    Never,
    /// Not stored, and its upstream output is gone.
    Lost,
}

fn retryable(record: &ImageRecord) -> Retry {
    let age = now_ms().saturating_sub(rfc3339_to_ms(&record.created_at).unwrap_or(0));
    match record.status {
        StoreStatus::Stored | StoreStatus::Lost | StoreStatus::Awaiting => Retry::Never,
        _ if !source_still_valid(record) => Retry::Lost,
        StoreStatus::Failed => Retry::Now,
        StoreStatus::Pending if age > PENDING_GRACE_MS => Retry::Now,
        StoreStatus::Pending => Retry::Later,
    }
}

/// Jobs looked at per run, at most.
const MAX_JOBS_PER_RUN: usize = 100;
/// A running job on the service's token not heard of for this long is read
/// from Replicate (its delivery may have been lost).
const JOB_QUIET_MS: u64 = 2 * 60 * 1000;

/// Follows the jobs still open (see `crate::jobs`): reads those whose
/// delivery has not come, retries due deliveries to callers' webhooks, and
/// takes finished ones off the list.
async fn follow_jobs(store: &Store, env: &Env) {
    let (ids, _) = match store.open_jobs_page(None).await {
        Ok(page) => page,
        Err(e) => {
            worker::console_warn!("scheduled: jobs: {e}");
            return;
        }
    };
    let mut closed = 0;
    for id in ids.iter().take(MAX_JOBS_PER_RUN) {
        if !super::jobs::follow_up(env, store, id, JOB_QUIET_MS).await {
            store.close_job(id).await;
            closed += 1;
        }
    }
    let line = serde_json::json!({ "scheduled": "jobs", "open": ids.len(), "closed": closed });
    worker::console_log!("{line}");
}

/// Uploads removed per run, at most; the rest wait for the next run.
const MAX_UPLOAD_REMOVALS_PER_RUN: usize = 1000;

/// Removes expired uploads: first those whose record says so (its summary,
/// the key's KV metadata), with their index entries; then bytes whose
/// record is gone (records expire by TTL): R2's `uploaded` time past the
/// retention, or their own expiry past.
async fn sweep_uploads(store: &Store, env: &Env) {
    let retention_ms = match super::uploads::settings_of(env) {
        Ok(settings) => settings.retention_ms(),
        Err(e) => {
            worker::console_error!("scheduled: uploads: {e}");
            return;
        }
    };
    let now = now_ms();
    let mut removed = 0;
    let mut cursor: Option<String> = None;
    while removed < MAX_UPLOAD_REMOVALS_PER_RUN {
        let (entries, next) = match store.upload_summaries(cursor.take()).await {
            Ok(page) => page,
            Err(e) => {
                worker::console_warn!("scheduled: uploads: {e}");
                break;
            }
        };
        for (id, summary) in entries {
            let summary = match summary {
                Some(summary) => Some(summary),
                None => store.upload_record(&id).await.ok().flatten().map(|r| r.summary()),
            };
            let Some(summary) = summary.filter(|s| now >= s.expires_at_ms) else { continue };
            match store.delete_upload(&id, Some(summary.owner_index_key(&id))).await {
                Ok(()) => removed += 1,
                Err(e) => worker::console_warn!("scheduled: removing upload {id}: {e}"),
            }
        }
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    while removed < MAX_UPLOAD_REMOVALS_PER_RUN {
        let (objects, next) = match store.upload_objects(cursor.take()).await {
            Ok(page) => page,
            Err(e) => {
                worker::console_warn!("scheduled: uploads: {e}");
                break;
            }
        };
        for (id, uploaded_ms, expires_ms) in objects {
            if !object_expired(uploaded_ms, expires_ms, now, retention_ms) {
                continue;
            }
            match store.delete_upload(&id, None).await {
                Ok(()) => removed += 1,
                Err(e) => worker::console_warn!("scheduled: removing upload {id}: {e}"),
            }
        }
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let line = serde_json::json!({ "scheduled": "uploads", "removed": removed });
    worker::console_log!("{line}");
}
