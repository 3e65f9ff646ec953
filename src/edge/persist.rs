//! Keeping a finished prediction's outputs: a KV record per output and an
//! index of the prediction's image ids, then the bytes copied into R2 in
//! `wait_until` (inline `data:` outputs are stored at once: there is no URL
//! to serve them from meanwhile).

use futures_util::future::join_all;
use serde_json::Value;

use super::net::now_ms;
use super::store::{Store, COPY_ATTEMPTS};
use super::RequestContext;
use crate::error::ApiError;
use crate::input_schema::schema_or_default;
use crate::metadata::{prediction_key, records_for, ImageSource, NewImage, StoreStatus};
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
/// index and the copies into R2 follow in `wait_until`. `model` is named
/// when the prediction does not say.
pub async fn keep_outputs(
    cx: &RequestContext,
    model: &str,
    prediction: &Prediction,
    input: &Value,
    seen: Seen,
) -> Result<Vec<String>, ApiError> {
    let store = cx.store()?;
    if seen == Seen::MaybeBefore {
        if let Some(ids) = known_outputs(store, &prediction.id).await? {
            return Ok(ids);
        }
    }
    let config = cx.config()?;
    let model = prediction.model.as_deref().unwrap_or(model);
    let requested = input.as_object().and_then(|input| schema_or_default(model).output_kind(input));
    let images = records_for(prediction, model, input, requested, &config.extra_output_hosts, now_ms())?;
    let ids: Vec<String> = images.iter().map(|image| image.record.id.clone()).collect();
    let (inline, to_copy): (Vec<NewImage>, Vec<NewImage>) =
        images.into_iter().partition(|image| matches!(image.source, ImageSource::Inline(_)));
    for NewImage { record, source } in inline {
        let kept = store.persist(record, &source, 1).await;
        if kept.status != StoreStatus::Stored {
            return Err(ApiError::generation_failed(
                kept.last_error.unwrap_or_else(|| "could not store the output".into()),
            ));
        }
    }
    for written in join_all(to_copy.iter().map(|image| store.put_record(&image.record))).await {
        written?;
    }
    if !ids.is_empty() {
        let index = serde_json::to_string(&ids).map_err(|e| ApiError::internal().with_cause(e))?;
        let key = prediction_key(&prediction.id);
        let env = cx.env.clone();
        cx.wait_until(async move {
            let Ok(store) = Store::from_env(&env) else { return };
            if let Err(e) = store.put_text(&key, index).await {
                worker::console_warn!("{e}");
            }
            for NewImage { record, source } in to_copy {
                store.persist(record, &source, COPY_ATTEMPTS).await;
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
