//! The cache of identical requests: the same model version and the same
//! validated input (defaults filled in, keys in one canonical order,
//! credentials left out) answer the images made the first time, without
//! paying Replicate again. Kept in KV under `cache:<sha-256>` for
//! `CACHE_TTL_SECONDS`, and given only while every image still exists.
//!
//! Identical requests arriving while the first still runs join it: exactly
//! within an isolate (they wait for its entry); across isolates only once
//! the entry is in KV, so two isolates receiving the same request within one
//! generation's time may both run it.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::kv::PutOptions;
use super::net::{now_ms, sleep_ms};
use super::store::source_still_valid;
use super::RequestContext;
use crate::cache_key::cache_key;
use crate::config::CacheMode;
use crate::metadata::StoreStatus;
use crate::models::ModelRef;

thread_local! {
    /// Cache keys whose generation runs in this isolate now.
    static RUNNING: RefCell<HashSet<String>> = RefCell::new(HashSet::new());
    /// Entries made in this isolate whose KV write is still under way.
    static KEEPING: RefCell<HashMap<String, Entry>> = RefCell::new(HashMap::new());
}

/// What a cached generation answers again.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Entry {
    pub prediction_id: String,
    pub model: String,
    #[serde(default)]
    pub seed: Option<Value>,
    pub ids: Vec<String>,
}

impl Entry {
    /// The answer's body, as a fresh generation's, with `cached: true`.
    pub fn body(&self, cx: &RequestContext) -> Value {
        let first = self.ids.first().cloned().unwrap_or_default();
        let mut body = json!({
            "id": first,
            "imageUrl": cx.image_url(&first),
            "predictionId": self.prediction_id,
            "model": self.model,
            "cached": true,
        });
        if let Some(seed) = &self.seed {
            body["seed"] = seed.clone();
        }
        if self.ids.len() > 1 {
            body["images"] = self.ids.iter().map(|id| json!({ "id": id, "imageUrl": cx.image_url(id) })).collect();
        }
        body
    }
}

/// Whether and how a request uses the cache.
pub struct Plan {
    pub key: String,
    /// Whether an answer may come from it (`Cache-Control: no-cache` says no;
    /// the new answer is still kept).
    pub read: bool,
}

/// The plan for a request: GET uses the cache, POST only when the input
/// names a seed (without one the caller asks for a new image), both as
/// `CACHE_MODE` allows.
pub fn plan(
    cx: &RequestContext,
    is_get: bool,
    no_cache: bool,
    model: &ModelRef,
    input: &Map<String, Value>,
) -> Option<Plan> {
    let mode = cx.config().ok()?.cache_mode;
    let applies = match mode {
        CacheMode::Off => false,
        CacheMode::All => true,
        CacheMode::Auto => is_get || input.get("seed").is_some_and(|s| !s.is_null()),
    };
    applies.then(|| Plan { key: cache_key(&model.to_string(), input), read: !no_cache })
}

/// The kept answer for `key`, if every one of its images still exists
/// (stored, or still copyable from Replicate); one made here a moment ago
/// (its KV write still under way) as it is.
pub async fn lookup(cx: &RequestContext, key: &str) -> Option<Entry> {
    if let Some(entry) = KEEPING.with(|k| k.borrow().get(key).cloned()) {
        return Some(entry);
    }
    let store = cx.store().ok()?;
    let entry: Entry = serde_json::from_str(&store.get_text(key).await.ok()??).ok()?;
    for id in &entry.ids {
        if store.head(id).await.ok()?.is_some() {
            continue;
        }
        let record = store.record(id).await.ok()??;
        let copyable =
            matches!(record.status, StoreStatus::Pending | StoreStatus::Failed) && source_still_valid(&record);
        if !copyable {
            return None;
        }
    }
    Some(entry)
}

/// Marks `key` as running here; false when another request runs it.
pub fn start(key: &str) -> bool {
    RUNNING.with(|r| r.borrow_mut().insert(key.to_owned()))
}

pub fn finish(key: &str) {
    RUNNING.with(|r| r.borrow_mut().remove(key));
}

/// Waits for the request running `key` in this isolate to end, and answers
/// its entry; `None` when it failed or the wait passed `deadline_ms`.
pub async fn join(cx: &RequestContext, key: &str, deadline_ms: u64) -> Option<Entry> {
    while RUNNING.with(|r| r.borrow().contains(key)) && now_ms() < deadline_ms {
        sleep_ms(100).await;
    }
    lookup(cx, key).await
}

/// Keeps a fresh answer for `CACHE_TTL_SECONDS`: written to KV after the
/// answer (`wait_until`); until it is there, this isolate's lookups find it
/// in memory.
pub fn keep(cx: &RequestContext, key: &str, entry: &Entry) {
    let (Ok(store), Ok(config)) = (cx.store(), cx.config()) else { return };
    let Ok(text) = serde_json::to_string(entry) else { return };
    KEEPING.with(|k| k.borrow_mut().insert(key.to_owned(), entry.clone()));
    let (kv, key, ttl, request_id) =
        (store.kv().clone(), key.to_owned(), config.cache_ttl_seconds, cx.request_id.clone());
    let kept = Kept(key.clone());
    cx.wait_until(async move {
        let _kept = kept;
        if let Err(e) = kv.put(&key, &text, PutOptions::ttl(ttl)).await {
            worker::console_warn!("[{request_id}] KV write {key}: {e}");
        }
    });
}

/// An entry kept in memory while its KV write is under way; forgotten when
/// dropped (the write done, failed, or dropped unfinished by the runtime).
struct Kept(String);

impl Drop for Kept {
    fn drop(&mut self) {
        KEEPING.with(|k| k.borrow_mut().remove(&self.0));
    }
}
