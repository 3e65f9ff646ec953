//! Keeping a finished prediction's outputs: a KV record per output and the
//! prediction's index (its image ids and its input, kept once), then the
//! bytes copied into R2 in `wait_until` (inline `data:` outputs are stored
//! at once: there is no URL to serve them from meanwhile).
//!
//! Only predictions made through this service are kept: `/generate` keeps
//! its own; `/replicate/v1` records each prediction it creates (an index
//! without ids) and keeps those when they succeed. Concurrent readers of one
//! prediction converge on one copy: within an isolate exactly (an in-flight
//! set), across isolates as far as KV allows (the index is written before
//! answering; a copy finding the bytes already in R2 does not fetch them).

use std::cell::RefCell;
use std::collections::HashSet;

use super::join::join_all;
use futures_util::future::LocalBoxFuture;
use serde_json::Value;

use super::net::now_ms;
use super::store::{Prior, Store, COPY_ATTEMPTS, COPY_BUDGET_MS, COPY_TIMEOUT_MS};
use super::RequestContext;
use crate::error::ApiError;
use crate::metadata::{
    compact_input, owner_index_key, records_for, ImageSource, NewImage, PredictionIndex, StoreStatus,
};
use crate::output::ImageKind;
use crate::prediction::Prediction;

thread_local! {
    /// Predictions whose outputs this isolate is keeping right now.
    static IN_FLIGHT: RefCell<HashSet<String>> = RefCell::new(HashSet::new());
}

/// Whether a prediction may have been kept before.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Just created by us: nothing can be recorded for it yet.
    New,
    /// Read through the proxy, whose index said its outputs are not kept
    /// yet: another request may be keeping them right now.
    MaybeBefore,
}

/// Work to do once the outputs are stored, made from the index as written.
pub type AfterCopies<'a> = Box<dyn FnOnce(&PredictionIndex) -> Option<LocalBoxFuture<'static, ()>> + 'a>;

/// What else goes with a prediction's outputs when they are kept.
#[derive(Default)]
pub struct Keeping<'a> {
    /// The index as known so far: its job, and ids announced before the
    /// outputs existed (`awaiting`), which the outputs take in order.
    pub index: PredictionIndex,
    /// Made from the index as written (the kept ids in it), run after the
    /// copies in the same `wait_until` (a webhook delivery, which must come
    /// after the bytes are stored).
    pub then: Option<AfterCopies<'a>>,
}

/// Records and copies `prediction`'s outputs, and answers their image ids in
/// output order. Before answering, the records and the prediction's index
/// are written (concurrently); the copies into R2 follow in `wait_until`.
/// `model` is named when the prediction does not say; `requested` is the
/// image type the input asked for (it names ids before the bytes are seen).
pub async fn keep_outputs(
    cx: &RequestContext,
    model: &str,
    requested: Option<ImageKind>,
    prediction: &Prediction,
    input: &Value,
    seen: Seen,
    keeping: Keeping<'_>,
) -> Result<Vec<String>, ApiError> {
    let store = cx.store()?;
    let config = cx.config()?;
    let model = prediction.model.as_deref().unwrap_or(model);
    let Keeping { index: base, then } = keeping;
    let announced = base.ids.as_deref().filter(|_| base.awaiting).unwrap_or_default();
    let mut images = records_for(prediction, model, input, requested, &config.extra_output_hosts, now_ms(), announced)?;
    // The request's caller; after the request, whoever made the prediction.
    let owner = cx.subject().or_else(|| base.owner.clone()).or_else(|| base.job.as_ref().map(|j| j.subject.clone()));
    for image in &mut images {
        image.record.owner.clone_from(&owner);
    }
    let owned: Vec<String> = match &owner {
        Some(owner) => images.iter().map(|i| owner_index_key(owner, &i.record.created_at, &i.record.id)).collect(),
        None => Vec::new(),
    };
    let ids: Vec<String> = images.iter().map(|image| image.record.id.clone()).collect();
    if ids.is_empty() {
        return Ok(ids);
    }
    let started = IN_FLIGHT.with(|set| set.borrow_mut().insert(prediction.id.clone()));
    if !started && seen == Seen::MaybeBefore {
        // Ids are derived from the prediction: the same as the keeper's.
        return Ok(ids);
    }
    // The owner's index is written alongside the records.
    let owner_index = join_all(owned.iter().map(|key| store.put_text(key, String::new())));
    let index = PredictionIndex {
        ids: Some(ids.clone()),
        input: compact_input(input),
        awaiting: false,
        owner: owner.clone(),
        job: base.job,
    };
    let then = then.and_then(|make| make(&index));
    let (kept, indexed) = futures_util::join!(write_records(cx, store, prediction, index, images), owner_index);
    for written in indexed {
        if let Err(e) = written {
            worker::console_warn!("{e}");
        }
    }
    let to_copy = match kept {
        Ok(to_copy) => to_copy,
        Err(e) => {
            done(&prediction.id);
            return Err(e);
        }
    };
    let predict_time_ms = crate::usage::predict_time_ms(&prediction.rest);
    let store = cx.store().ok().cloned();
    let prediction_id = prediction.id.clone();
    // The request's own usage (the generation) is written with the images'.
    let mut counted = cx.take_usage();
    let prior = if seen == Seen::New { Prior::None } else { Prior::Maybe };
    cx.wait_until(async move {
        if let Some(store) = &store {
            let deadline = now_ms().saturating_add(COPY_BUDGET_MS);
            let copies = to_copy.into_iter().map(|NewImage { record, source }| async move {
                store.copy(record, &source, COPY_ATTEMPTS, deadline, prior).await
            });
            // The owner's usage is written once for all of it: KV takes
            // about one write per second to a key.
            let mut delta = crate::usage::Usage { predict_time_ms, ..Default::default() };
            for (record, fresh) in join_all(copies).await {
                if fresh {
                    delta.images_stored += 1;
                    delta.bytes_stored += record.size.unwrap_or(0);
                }
            }
            if let (Some(owner), true) = (&owner, delta != crate::usage::Usage::default()) {
                counted.push(super::usage::count(owner, delta));
            }
        }
        done(&prediction_id);
        // The usage is written alongside what follows (a write may wait out
        // KV's second per key; a caller's webhook does not wait for it).
        let usage = async {
            if let Some(store) = &store {
                super::usage::write_counted(store.kv().clone(), counted).await;
            }
        };
        let then = async {
            if let Some(then) = then {
                then.await;
            }
        };
        futures_util::join!(usage, then);
    });
    Ok(ids)
}

/// Stores inline outputs (their usage written after the answer), writes
/// every other record and the index; answers the images still to copy.
async fn write_records(
    cx: &RequestContext,
    store: &Store,
    prediction: &Prediction,
    index: PredictionIndex,
    images: Vec<NewImage>,
) -> Result<Vec<NewImage>, ApiError> {
    let (inline, to_copy): (Vec<NewImage>, Vec<NewImage>) =
        images.into_iter().partition(|image| matches!(image.source, ImageSource::Inline(_)));
    for NewImage { record, source } in inline {
        let (kept, counted) = store.persist(record, &source, 1, now_ms().saturating_add(COPY_TIMEOUT_MS)).await;
        if let Some(key) = counted {
            cx.defer_usage(key);
        }
        if kept.status != StoreStatus::Stored {
            return Err(ApiError::generation_failed(
                kept.last_error.unwrap_or_else(|| "could not store the output".into()),
            ));
        }
    }
    let records = join_all(to_copy.iter().map(|image| store.put_record(&image.record)));
    let (records, index) = futures_util::join!(records, store.put_prediction_index(&prediction.id, &index));
    for written in records {
        written?;
    }
    index?;
    Ok(to_copy)
}

fn done(prediction_id: &str) {
    IN_FLIGHT.with(|set| set.borrow_mut().remove(prediction_id));
}
