//! Keeping a finished prediction's outputs: a KV record per output and an
//! index of the prediction's image ids, then the bytes copied into R2 in
//! `wait_until` (inline `data:` outputs are stored at once: there is no URL
//! to serve them from meanwhile).

use futures_util::future::join_all;
use serde_json::Value;
use worker::{Context, Env};

use super::net::now_ms;
use super::store::{Store, COPY_ATTEMPTS};
use crate::config::Config;
use crate::error::ApiError;
use crate::metadata::{prediction_key, records_for, StoreStatus};
use crate::prediction::Prediction;

/// Whether a prediction may have been kept before.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Just created by us: nothing can be recorded for it yet.
    New,
    /// Read through the proxy: it may have been kept on an earlier poll.
    MaybeBefore,
}

/// Records and copies `prediction`'s outputs unless that was done before,
/// and answers their image ids in output order. Before answering, only the
/// records the image URLs need are written (concurrently); the prediction's
/// index and the copies into R2 follow in `wait_until`.
pub async fn keep_outputs(
    env: &Env,
    ctx: &Context,
    config: &Config,
    prediction: &Prediction,
    input: &Value,
    seen: Seen,
) -> Result<Vec<String>, ApiError> {
    let store = Store::from_env(env)?;
    if seen == Seen::MaybeBefore {
        if let Some(ids) = known_outputs(&store, &prediction.id).await? {
            return Ok(ids);
        }
    }
    let records = records_for(prediction, &config.model, input, &config.extra_output_hosts, now_ms())?;
    let ids: Vec<String> = records.iter().map(|(r, _)| r.id.clone()).collect();
    let mut pending = Vec::new();
    let mut inline = Vec::new();
    for (record, data) in records {
        match data {
            Some(bytes) => inline.push((record, bytes)),
            None => pending.push(record),
        }
    }
    for (record, bytes) in inline {
        let kept = store.persist(record, Some(bytes), 1).await;
        if kept.status != StoreStatus::Stored {
            return Err(ApiError::new(502, "Failed to generate image")
                .with_details(kept.last_error.unwrap_or_else(|| "could not store the output".into())));
        }
    }
    for written in join_all(pending.iter().map(|record| store.put_record(record))).await {
        written?;
    }
    if !ids.is_empty() {
        let index = serde_json::to_string(&ids).map_err(|_| ApiError::internal())?;
        let key = prediction_key(&prediction.id);
        let env = env.clone();
        ctx.wait_until(async move {
            let Ok(store) = Store::from_env(&env) else { return };
            let _ = store.put_text(&key, index).await;
            for record in pending {
                store.persist(record, None, COPY_ATTEMPTS).await;
            }
        });
    }
    Ok(ids)
}

/// The image ids already recorded for a prediction, if any.
pub async fn known_outputs(store: &Store, prediction_id: &str) -> Result<Option<Vec<String>>, ApiError> {
    let index = store.get_text(&prediction_key(prediction_id)).await?;
    Ok(index.and_then(|text| serde_json::from_str(&text).ok()))
}
