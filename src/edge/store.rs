//! R2 holds image bytes under the image id; KV holds an `ImageRecord` per
//! image. Order of writes: the record (pending, with the upstream URL), then
//! the bytes in R2, then the record marked stored. The record never claims
//! bytes that R2 does not have. Every R2 and KV call goes through `Store`.
//!
//! Copies still to do are indexed under `pending:<id>` (written with the
//! pending record, removed once stored, expiring on their own after
//! `PENDING_INDEX_TTL_SECS`), so the cron's work grows with what is left to
//! do, not with every image ever stored.

use worker::wasm_bindgen::JsCast;
use worker::web_sys::ReadableStream;
use worker::Env;

use super::kv::{Kv, PutOptions};
use super::r2::{Bucket, Object, ObjectMetadata, Range};
use super::usage::UsageKey;
use super::BindingError;

use super::context::config_of;
use super::net::{discard, fetch_output, now_ms, read_capped, sleep_ms, NetError};
use super::{IMAGES_BUCKET, METADATA_KV};
use crate::backoff::retry_delay_ms;
use crate::error::ApiError;
use crate::jobs::CallerWebhook;
use crate::metadata::{kv_key, kv_metadata, prediction_key, ImageRecord, ImageSource, PredictionIndex, StoreStatus};
use crate::output::sniff_image;

/// How long one copy may take when the cron (or a reader) makes it.
pub const COPY_TIMEOUT_MS: u64 = 60_000;
/// How long the copies made after a request's answer may take in all: the
/// platform lets `waitUntil` work run about 30 s after the answer. What is
/// not done by then is left to the cron.
pub const COPY_BUDGET_MS: u64 = 25_000;
/// Copies tried within one request's `wait_until` before leaving it to the cron.
pub const COPY_ATTEMPTS: u32 = 3;

/// Whether an image's bytes may have been copied into R2 before this copy.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Prior {
    /// By a copy elsewhere (another request, isolate or the cron): R2 is
    /// checked before the output is downloaded.
    Maybe,
    /// Not before the first attempt: the outputs of a prediction this
    /// request created, whose ids nobody else had until the answer. Readers
    /// and the cron leave a pending copy alone until the prediction is 30 s
    /// and 2 minutes old (their `PENDING_GRACE_MS`); a reader that starts
    /// while a slow first attempt still runs writes the same checked bytes.
    /// Retries check R2 as for `Maybe`.
    None,
}

/// An output without Content-Length is read into memory, never past this
/// size (nor past the configured maximum output size).
const MAX_UNSIZED_BYTES: u64 = 32 * 1024 * 1024;
/// Bytes read to tell an image by its magic numbers.
const SNIFF_BYTES: usize = 16;

/// What a copy may fetch, and how much.
#[derive(Clone, Copy)]
struct CopyLimits {
    extra_hosts: &'static [String],
    max_output_bytes: u64,
}

/// The KV prefix of the index of copies still to do.
pub const PENDING_PREFIX: &str = "pending:";
/// The KV prefix of short leases on copies made by readers of an image.
const LEASE_PREFIX: &str = "lease:";
/// The KV key counting images lost (never stored before their upstream
/// output was removed).
const LOST_COUNT_KEY: &str = "stats:lost";
/// How long a lost count read (or written) here answers `/health` again
/// without reading KV.
const LOST_COUNT_FRESH_MS: u64 = 10_000;

thread_local! {
    static BINDINGS: std::cell::OnceCell<(Option<Bucket>, Option<Kv>)> = const { std::cell::OnceCell::new() };
    /// The lost count as this isolate last read or wrote it, and when.
    static LOST_SEEN: std::cell::Cell<Option<(u64, u64)>> = const { std::cell::Cell::new(None) };
    /// Whether a request of this isolate is reading the lost count from KV.
    static LOST_READING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks this isolate's read of the lost count under way until dropped
/// (also when the request reading it is dropped before KV answers).
struct LostReading;

impl LostReading {
    fn start() -> Self {
        LOST_READING.set(true);
        LostReading
    }
}

impl Drop for LostReading {
    fn drop(&mut self) {
        LOST_READING.set(false);
    }
}
/// The KV prefix of the jobs the cron follows (see `crate::jobs`).
pub const OPEN_JOB_PREFIX: &str = "open:";
/// The KV prefix of what was delivered to a job's webhook.
const HOOK_PREFIX: &str = "hook:";
/// The KV prefix of a `completed` delivery's payload, kept for the cron.
const PAYLOAD_PREFIX: &str = "payload:";
/// How long a job's keys live: past the time it is followed.
const JOB_KEYS_TTL_SECS: u64 = crate::jobs::FOLLOW_FOR_MS / 1000 + 3600;
/// How long an index entry outlives its image's upstream output (an hour).
const PENDING_INDEX_TTL_SECS: u64 = 2 * 60 * 60;

/// What one R2 read of an object asks for: its bytes, or the `range` of them,
/// and none at all when its ETag is `unless_etag` (bare, or `*` for any).
/// R2 checks the ETag itself: the object then comes without a body, in the
/// same call.
#[derive(Debug, Clone, Default)]
pub struct Read {
    pub range: Option<Range>,
    pub unless_etag: Option<String>,
}

#[derive(Clone)]
pub struct Store {
    bucket: Bucket,
    kv: Kv,
    limits: CopyLimits,
}

/// The bucket and the namespace bound as `IMAGES` and `IMAGE_META`, if
/// bound. Looked up once per isolate: the runtime hands every request of an
/// isolate the same `env`, with the same binding objects (a lookup is three
/// calls into the runtime).
pub fn bindings(env: &Env) -> (Option<Bucket>, Option<Kv>) {
    BINDINGS.with(|b| b.get_or_init(|| (Bucket::from_env(env, IMAGES_BUCKET), Kv::from_env(env, METADATA_KV))).clone())
}

impl Store {
    pub fn from_env(env: &Env) -> Result<Self, ApiError> {
        let (bucket, kv) = bindings(env);
        let bucket = bucket.ok_or_else(|| misconfigured(IMAGES_BUCKET))?;
        let kv = kv.ok_or_else(|| misconfigured(METADATA_KV))?;
        let config = config_of(env).as_ref().map_err(Clone::clone)?;
        let limits = CopyLimits { extra_hosts: &config.extra_output_hosts, max_output_bytes: config.max_output_bytes };
        Ok(Self { bucket, kv, limits })
    }

    /// The KV namespace, for what keeps its own keys there (keys, usage, indexes).
    pub fn kv(&self) -> &Kv {
        &self.kv
    }

    pub fn bucket(&self) -> &Bucket {
        &self.bucket
    }

    pub async fn record(&self, id: &str) -> Result<Option<ImageRecord>, ApiError> {
        let read = self.kv.get_json::<ImageRecord>(&kv_key(id)).await;
        read.map_err(|e| ApiError::internal().with_cause(format!("KV read {id}: {e}")))
    }

    pub async fn get_text(&self, key: &str) -> Result<Option<String>, ApiError> {
        let read = self.kv.get_text(key).await;
        read.map_err(|e| ApiError::internal().with_cause(format!("KV read {key}: {e}")))
    }

    pub async fn put_text(&self, key: &str, value: String) -> Result<(), ApiError> {
        let result = self.kv.put(key, &value, PutOptions::none()).await;
        result.map_err(|e| ApiError::internal().with_cause(format!("KV write {key}: {e}")))
    }

    /// Writes `value` under `key`, expiring after `ttl_secs` (at least 60).
    pub async fn put_text_for(&self, key: &str, value: impl Into<String>, ttl_secs: u64) -> Result<(), ApiError> {
        let value: String = value.into();
        let result = self.kv.put(key, &value, PutOptions::ttl(ttl_secs)).await;
        result.map_err(|e| ApiError::internal().with_cause(format!("KV write {key}: {e}")))
    }

    /// Writes `record`; a new pending one is also indexed as a copy to do,
    /// a stored one leaves the index.
    pub async fn put_record(&self, record: &ImageRecord) -> Result<(), ApiError> {
        // Serialized here: serde-wasm-bindgen would turn the input's JSON map into a JS Map.
        let value = serde_json::to_string(record).map_err(|e| ApiError::internal().with_cause(e))?;
        let key = kv_key(&record.id);
        let put = self.kv.put(&key, &value, PutOptions { ttl_secs: None, metadata: Some(kv_metadata(record)) });
        let index = async {
            let key = format!("{PENDING_PREFIX}{}", record.id);
            match record.status {
                StoreStatus::Pending if record.attempts == 0 => {
                    self.kv.put(&key, "", PutOptions::ttl(PENDING_INDEX_TTL_SECS)).await
                }
                StoreStatus::Stored | StoreStatus::Lost => self.kv.delete(&key).await,
                _ => Ok(()),
            }
        };
        let (put, index) = futures_util::join!(put, index);
        put.and(index).map_err(|e| ApiError::internal().with_cause(format!("KV write {}: {e}", record.id)))
    }

    /// What is kept of a prediction made through this service, if anything.
    pub async fn prediction_index(&self, prediction_id: &str) -> Result<Option<PredictionIndex>, ApiError> {
        Ok(self.get_text(&prediction_key(prediction_id)).await?.and_then(|text| PredictionIndex::parse(&text)))
    }

    pub async fn put_prediction_index(&self, prediction_id: &str, index: &PredictionIndex) -> Result<(), ApiError> {
        let text = serde_json::to_string(index).map_err(|e| ApiError::internal().with_cause(e))?;
        self.put_text(&prediction_key(prediction_id), text).await
    }

    /// Removes an image's record (an announced image its generation never gave).
    pub async fn delete_record(&self, id: &str) {
        if let Err(e) = self.kv.delete(&kv_key(id)).await {
            worker::console_warn!("KV delete {id}: {e}");
        }
    }

    /// Lists a job for the cron to follow (see `crate::jobs`).
    pub async fn open_job(&self, prediction_id: &str) -> Result<(), ApiError> {
        self.put_text_for(&format!("{OPEN_JOB_PREFIX}{prediction_id}"), "", JOB_KEYS_TTL_SECS).await
    }

    /// Takes a job off the cron's list.
    pub async fn close_job(&self, prediction_id: &str) {
        if let Err(e) = self.kv.delete(&format!("{OPEN_JOB_PREFIX}{prediction_id}")).await {
            worker::console_warn!("KV delete {OPEN_JOB_PREFIX}{prediction_id}: {e}");
        }
    }

    /// One page of the jobs the cron follows, and the cursor of the next.
    pub async fn open_jobs_page(&self, cursor: Option<String>) -> Result<(Vec<String>, Option<String>), ApiError> {
        self.ids_page(OPEN_JOB_PREFIX, cursor).await
    }

    /// What was delivered to a job's webhook, once anything was tried.
    pub async fn hook_state(&self, prediction_id: &str) -> Option<CallerWebhook> {
        let text = self.get_text(&format!("{HOOK_PREFIX}{prediction_id}")).await.ok()??;
        serde_json::from_str(&text).ok()
    }

    pub async fn put_hook_state(&self, prediction_id: &str, hook: &CallerWebhook) {
        let Ok(text) = serde_json::to_string(hook) else { return };
        if let Err(e) = self.put_text_for(&format!("{HOOK_PREFIX}{prediction_id}"), text, JOB_KEYS_TTL_SECS).await {
            worker::console_warn!("{e}");
        }
    }

    /// The payload of a `completed` delivery left to the cron.
    pub async fn delivery_payload(&self, prediction_id: &str) -> Option<String> {
        self.get_text(&format!("{PAYLOAD_PREFIX}{prediction_id}")).await.ok()?
    }

    pub async fn put_delivery_payload(&self, prediction_id: &str, payload: &str) {
        let key = format!("{PAYLOAD_PREFIX}{prediction_id}");
        if let Err(e) = self.put_text_for(&key, payload.to_owned(), JOB_KEYS_TTL_SECS).await {
            worker::console_warn!("{e}");
        }
    }

    /// One page of the ids of copies still to do, and the cursor of the next.
    pub async fn pending_page(&self, cursor: Option<String>) -> Result<(Vec<String>, Option<String>), ApiError> {
        self.ids_page(PENDING_PREFIX, cursor).await
    }

    /// One page of the ids after `prefix` in KV key names, and the cursor of the next.
    async fn ids_page(&self, prefix: &str, cursor: Option<String>) -> Result<(Vec<String>, Option<String>), ApiError> {
        let (keys, next) = self.kv_page(prefix, cursor, 1000).await?;
        Ok((keys.iter().map(|k| k.name.trim_start_matches(prefix).to_owned()).collect(), next))
    }

    /// Records that an image can no longer be stored (its upstream output is
    /// gone), and counts it under `LOST_COUNT_KEY` for the operator.
    pub async fn mark_lost(&self, mut record: ImageRecord) {
        record.status = StoreStatus::Lost;
        if let Err(e) = self.put_record(&record).await {
            worker::console_warn!("marking {} lost: {e}", record.id);
            return;
        }
        worker::console_warn!("image {} lost: {}", record.id, record.last_error.as_deref().unwrap_or("never copied"));
        let count = self.lost_count().await.unwrap_or(0).saturating_add(1);
        match self.put_text(LOST_COUNT_KEY, count.to_string()).await {
            Ok(()) => LOST_SEEN.set(Some((count, now_ms()))),
            Err(e) => worker::console_warn!("{e}"),
        }
    }

    /// How many images were lost (approximate: the cron counts them alone,
    /// but a reader marking one at the same time may be missed).
    pub async fn lost_count(&self) -> Result<u64, ApiError> {
        Ok(self.get_text(LOST_COUNT_KEY).await?.and_then(|t| crate::text::decimal(t.trim())).unwrap_or(0))
    }

    /// The lost count for `/health`: this isolate's reading of the last
    /// `LOST_COUNT_FRESH_MS` (its own marks included), else KV's. Monitors
    /// polling `/health` read KV once per isolate per ten seconds: while one
    /// request reads it, the others of the isolate answer the last reading.
    pub async fn lost_count_recent(&self) -> Result<u64, ApiError> {
        let now = now_ms();
        if let Some((count, at)) = LOST_SEEN.get() {
            if now.saturating_sub(at) < LOST_COUNT_FRESH_MS || LOST_READING.get() {
                return Ok(count);
            }
        }
        let reading = LostReading::start();
        let count = self.lost_count().await?;
        drop(reading);
        // A mark made here meanwhile is newer than this reading.
        if LOST_SEEN.get().is_none_or(|(_, at)| at < now) {
            LOST_SEEN.set(Some((count, now)));
        }
        Ok(count)
    }

    /// Claims the copy of `id` for this request for a minute, unless another
    /// holds it. KV has no compare-and-set: two readers arriving within one
    /// KV round trip (or one propagation delay, across locations) may both
    /// win; more cannot.
    pub async fn take_copy_lease(&self, id: &str) -> bool {
        let key = format!("{LEASE_PREFIX}{id}");
        match self.kv.get_text(&key).await {
            Ok(None) => {}
            _ => return false,
        }
        self.kv.put(&key, "", PutOptions::ttl(60)).await.is_ok()
    }

    /// Drops an id from the index of copies to do.
    pub async fn forget_pending(&self, id: &str) {
        if let Err(e) = self.kv.delete(&format!("{PENDING_PREFIX}{id}")).await {
            worker::console_warn!("KV delete {PENDING_PREFIX}{id}: {e}");
        }
    }

    /// The stored object's metadata, without its bytes.
    pub async fn head(&self, id: &str) -> Result<Option<Object>, ApiError> {
        self.bucket.head(id).await.map_err(r2_error)
    }

    /// The stored object, as one R2 read asks for it (see `Read`).
    pub async fn object(&self, id: &str, read: Read) -> Result<Option<Object>, ApiError> {
        self.get(id, read).await
    }

    /// One R2 get: the bytes `read` names, or none when R2 finds its ETag condition unmet.
    async fn get(&self, key: &str, read: Read) -> Result<Option<Object>, ApiError> {
        self.bucket.get(key, read.range.as_ref(), read.unless_etag.as_deref()).await.map_err(r2_error)
    }

    /// Copies the record's output into R2, then marks the record stored and
    /// counts it in its owner's usage in this isolate. Tries up to
    /// `attempts` times while `deadline_ms` leaves time; a last failure is
    /// recorded as `failed` for the cron to retry. Answers the record as kept
    /// and the usage key it counted in, for the caller to have written after
    /// its answer (`usage::write_counted`): a usage write can wait out KV's
    /// second per key, which no answer should.
    pub async fn persist(
        &self,
        record: ImageRecord,
        source: &ImageSource,
        attempts: u32,
        deadline_ms: u64,
    ) -> (ImageRecord, Option<UsageKey>) {
        let (record, fresh) = self.copy(record, source, attempts, deadline_ms, Prior::Maybe).await;
        let counted = if fresh { super::usage::count_stored(&record) } else { None };
        (record, counted)
    }

    /// `persist` without the usage: the record as kept, and whether this
    /// copy wrote the bytes (true: the caller counts them). `Prior::None`
    /// (the outputs of a prediction this request created) skips the first
    /// attempt's R2 check for bytes a copy elsewhere stored.
    pub async fn copy(
        &self,
        mut record: ImageRecord,
        source: &ImageSource,
        attempts: u32,
        deadline_ms: u64,
        prior: Prior,
    ) -> (ImageRecord, bool) {
        for attempt in 0..attempts {
            if attempt > 0 {
                let delay = retry_delay_ms(attempt - 1);
                if now_ms().saturating_add(delay) >= deadline_ms {
                    break;
                }
                sleep_ms(delay).await;
            }
            record.attempts += 1;
            let mut fresh = true;
            let copied = match source {
                ImageSource::Inline(bytes) => self.put_bytes(&record.id, bytes.clone()).await,
                ImageSource::Fetch(url) => {
                    // A retry checks R2 whatever `prior` says: a reader may
                    // have copied the image meanwhile.
                    let checked = prior == Prior::Maybe || attempt > 0;
                    let stored = if checked { self.already_stored(&record.id).await } else { None };
                    match stored {
                        Some(stored) => {
                            fresh = false;
                            Ok(stored)
                        }
                        None => self.copy_from(&record.id, url, deadline_ms).await,
                    }
                }
            };
            match copied {
                Ok((content_type, size)) => {
                    record.status = StoreStatus::Stored;
                    record.content_type = Some(content_type);
                    record.size = Some(size);
                    record.last_error = None;
                    match self.put_record(&record).await {
                        Ok(()) => {
                            log_copy(&record, fresh);
                            return (record, fresh);
                        }
                        Err(e) => worker::console_warn!("copy {}: {e}", record.id),
                    }
                }
                Err(why) => {
                    worker::console_warn!("copy {} (attempt {}): {why}", record.id, record.attempts);
                    record.status = StoreStatus::Failed;
                    record.last_error = Some(why);
                }
            }
        }
        let _ = self.put_record(&record).await;
        log_copy(&record, true);
        (record, false)
    }

    /// The type and size of bytes already in R2 (put there by a copy made
    /// elsewhere: only checked images are ever written).
    async fn already_stored(&self, id: &str) -> Option<(String, u64)> {
        let object = self.bucket.head(id).await.ok()??;
        let content_type = object.content_type()?;
        Some((content_type, object.size()))
    }

    async fn copy_from(&self, id: &str, url: &str, deadline_ms: u64) -> Result<(String, u64), String> {
        let bucket = &self.bucket;
        let limits = &self.limits;
        let copied = fetch_output(url, limits.extra_hosts, deadline_ms, |response| async move {
            let fail = NetError::Failed;
            if response.status() != 200 {
                discard(&response);
                return Err(fail(format!("upstream answered {}", response.status())));
            }
            let declared =
                response.headers().get("Content-Length").ok().flatten().and_then(|v| crate::text::decimal(&v));
            if declared.is_some_and(|n| n > limits.max_output_bytes) {
                discard(&response);
                return Err(fail(too_large(limits.max_output_bytes)));
            }
            let Some(body) = response.body() else {
                return Err(fail("output is empty".into()));
            };
            match declared {
                // Streamed into R2 without entering wasm: only the first
                // bytes are read (from one branch of a tee) to check that
                // they are an image before anything is written. The branch
                // put keeps the declared length, which the runtime enforces:
                // a body cut short fails the put (tested), so nothing
                // half-written is ever stored. (Piping it through a
                // FixedLengthStream as well cost about 0.24 ms per copy.)
                Some(length) => {
                    let branches = body.tee();
                    let to_store: ReadableStream = branches.get(0).unchecked_into();
                    let to_sniff: ReadableStream = branches.get(1).unchecked_into();
                    let prefix = read_capped(&to_sniff, SNIFF_BYTES).await?;
                    let Some(kind) = sniff_image(&prefix) else {
                        let _ = to_store.cancel();
                        return Err(fail("output is not an image".into()));
                    };
                    let metadata = ObjectMetadata::typed(kind.content_type);
                    let stored = bucket.put(id, &to_store, &metadata).await;
                    let size = stored.map_err(|e| fail(format!("R2 put: {e}")))?.size();
                    if size != length {
                        let _ = bucket.delete(id).await;
                        return Err(fail(format!("stored {size} of {length} bytes")));
                    }
                    Ok((kind.content_type.to_string(), size))
                }
                // No length given: read into memory, but never past the limit.
                None => {
                    let cap = limits.max_output_bytes.min(MAX_UNSIZED_BYTES);
                    let bytes =
                        read_capped(&body, usize::try_from(cap).unwrap_or(usize::MAX).saturating_add(1)).await?;
                    if bytes.len() as u64 > cap {
                        return Err(fail(too_large(cap)));
                    }
                    let kind = sniff_image(&bytes).ok_or_else(|| fail("output is not an image".into()))?;
                    let size = bytes.len() as u64;
                    let metadata = ObjectMetadata::typed(kind.content_type);
                    bucket.put_bytes(id, &bytes, &metadata).await.map_err(|e| fail(format!("R2 put: {e}")))?;
                    Ok((kind.content_type.to_string(), size))
                }
            }
        })
        .await;
        copied.map_err(|e| match e {
            NetError::Timeout => "copy timed out".to_string(),
            NetError::Failed(why) => why,
        })
    }

    async fn put_bytes(&self, id: &str, bytes: Vec<u8>) -> Result<(String, u64), String> {
        let kind = sniff_image(&bytes).ok_or("output is not an image")?;
        let size = bytes.len() as u64;
        let metadata = ObjectMetadata::typed(kind.content_type);
        self.bucket.put_bytes(id, &bytes, &metadata).await.map_err(|e| format!("R2 put: {e}"))?;
        Ok((kind.content_type.to_string(), size))
    }
}

fn too_large(limit: u64) -> String {
    format!("output is larger than the {limit}-byte limit")
}

/// Whether a record's upstream output may still exist (Replicate keeps
/// outputs for an hour).
pub fn source_still_valid(record: &ImageRecord) -> bool {
    let created = crate::image_id::rfc3339_to_ms(&record.created_at).unwrap_or(0);
    record.source_url.is_some() && now_ms() < created.saturating_add(60 * 60 * 1000)
}

/// The structured line of one copy's outcome (`already` when the bytes were
/// found in R2, copied by someone else).
fn log_copy(record: &ImageRecord, fresh: bool) {
    let line = serde_json::json!({
        "copy": record.id,
        "prediction_id": record.prediction_id,
        "status": record.status.as_str(),
        "already": !fresh,
        "bytes": record.size,
        "attempts": record.attempts,
        "error": record.last_error,
    });
    worker::console_log!("{line}");
}

fn misconfigured(binding: &str) -> ApiError {
    ApiError::misconfigured(500, format!("binding {binding} is missing"))
}

fn r2_error(e: BindingError) -> ApiError {
    ApiError::internal().with_cause(format!("R2: {e}"))
}

pub use upload_storage::upload_expiry;

/// Uploads (see `crate::uploads`), kept apart from the images' storage.
mod upload_storage {
    use super::{r2_error, Read, Store};
    use crate::edge::kv::{Key, PutOptions};
    use crate::edge::r2::{Object, ObjectMetadata};
    use crate::error::ApiError;
    use crate::uploads::{
        id_of_index_key, kv_key as upload_kv_key, owner_index_prefix, r2_key as upload_r2_key, UploadRecord,
        UploadSummary, KV_PREFIX as UPLOAD_KV_PREFIX, R2_PREFIX as UPLOAD_R2_PREFIX,
    };

    /// Uploads (see `crate::uploads`): bytes in R2 under `uploads/<id>`, with
    /// their expiry as custom metadata; the record in KV under `upload:<id>`,
    /// with its summary as the key's metadata; an index entry per owner. Record
    /// and index entry expire by TTL with the upload; the cron removes the bytes.
    impl Store {
        /// Stores an upload: the bytes, then its record and index entry. If the
        /// record cannot be written the bytes are removed again.
        pub async fn put_upload(&self, record: &UploadRecord, bytes: Vec<u8>, now_ms: u64) -> Result<(), ApiError> {
            let key = upload_r2_key(&record.id);
            let metadata = ObjectMetadata::typed(&record.content_type).custom(&[
                (UPLOAD_EXPIRES_META, record.expires_at_ms().to_string()),
                (UPLOAD_OWNER_META, record.owner.clone()),
            ]);
            self.bucket.put_bytes(&key, &bytes, &metadata).await.map_err(r2_error)?;
            let value = serde_json::to_string(record).map_err(|e| ApiError::internal().with_cause(e))?;
            let ttl = record.ttl_secs(now_ms);
            let (record_key, index_key) = (upload_kv_key(&record.id), record.owner_index_key());
            let put = self.kv.put(
                &record_key,
                &value,
                PutOptions { ttl_secs: Some(ttl.max(60)), metadata: Some(record.summary()) },
            );
            let index = self.kv.put(&index_key, "", PutOptions::ttl(ttl));
            let (put, index) = futures_util::join!(put, index);
            if let Err(e) = put.and(index) {
                let _ = self.bucket.delete(&key).await;
                return Err(ApiError::internal().with_cause(format!("KV write upload {}: {e}", record.id)));
            }
            Ok(())
        }

        pub async fn upload_record(&self, id: &str) -> Result<Option<UploadRecord>, ApiError> {
            let read = self.kv.get_json::<UploadRecord>(&upload_kv_key(id)).await;
            read.map_err(|e| ApiError::internal().with_cause(format!("KV read upload {id}: {e}")))
        }

        /// An upload's object as one R2 read asks for it (see `Read`), or only
        /// its metadata (`None`), and when the upload expires (see `upload_expiry`).
        pub async fn upload_object(
            &self,
            id: &str,
            read: Option<Read>,
        ) -> Result<Option<(Object, Option<u64>)>, ApiError> {
            let key = upload_r2_key(id);
            let object = match read {
                Some(read) => self.get(&key, read).await?,
                None => self.bucket.head(&key).await.map_err(r2_error)?,
            };
            Ok(object.map(|o| {
                let expires = upload_expiry(&o);
                (o, expires)
            }))
        }

        /// Removes an upload: its bytes, its record and, when known, its index entry.
        pub async fn delete_upload(&self, id: &str, index_key: Option<String>) -> Result<(), ApiError> {
            self.bucket.delete(&upload_r2_key(id)).await.map_err(r2_error)?;
            let record_key = upload_kv_key(id);
            let record = self.kv.delete(&record_key);
            let index = async {
                match &index_key {
                    Some(key) => self.kv.delete(key).await,
                    None => Ok(()),
                }
            };
            let (record, index) = futures_util::join!(record, index);
            record.and(index).map_err(|e| ApiError::internal().with_cause(format!("KV delete upload {id}: {e}")))
        }

        /// One page of an owner's upload ids, newest first, and the cursor of the next.
        pub async fn upload_ids_of(
            &self,
            owner: &str,
            cursor: Option<String>,
            limit: usize,
        ) -> Result<(Vec<String>, Option<String>), ApiError> {
            let (keys, next) = self.kv_page(&owner_index_prefix(owner), cursor, limit).await?;
            Ok((keys.iter().filter_map(|k| id_of_index_key(&k.name).map(str::to_owned)).collect(), next))
        }

        /// One page of upload records' ids with their summaries (`None` for a
        /// record written without one), and the cursor of the next.
        pub async fn upload_summaries(
            &self,
            cursor: Option<String>,
        ) -> Result<(Vec<(String, Option<UploadSummary>)>, Option<String>), ApiError> {
            let (keys, next) = self.kv_page(UPLOAD_KV_PREFIX, cursor, 1000).await?;
            let entries = keys
                .into_iter()
                .map(|k| {
                    let summary = k.metadata.and_then(|m| serde_json::from_value::<UploadSummary>(m).ok());
                    (k.name.trim_start_matches(UPLOAD_KV_PREFIX).to_owned(), summary)
                })
                .collect();
            Ok((entries, next))
        }

        /// One page of stored upload bytes: id, when stored (ms), when they
        /// expire (if their metadata says), and the cursor of the next page.
        pub async fn upload_objects(
            &self,
            cursor: Option<String>,
        ) -> Result<(Vec<(String, u64, Option<u64>)>, Option<String>), ApiError> {
            let page =
                self.bucket.list(UPLOAD_R2_PREFIX, cursor.as_deref(), UPLOAD_EXPIRES_META).await.map_err(r2_error)?;
            let objects = page
                .objects
                .into_iter()
                .map(|o| {
                    let expires = o.custom.as_deref().and_then(crate::text::decimal);
                    (o.key.trim_start_matches(UPLOAD_R2_PREFIX).to_owned(), o.uploaded_ms, expires)
                })
                .collect();
            Ok((objects, page.cursor))
        }

        pub(super) async fn kv_page(
            &self,
            prefix: &str,
            cursor: Option<String>,
            limit: usize,
        ) -> Result<(Vec<Key>, Option<String>), ApiError> {
            let page = self.kv.page(prefix, cursor.as_deref(), limit).await;
            let page = page.map_err(|e| ApiError::internal().with_cause(format!("KV list: {e}")))?;
            Ok((page.keys, page.cursor))
        }
    }

    /// When an upload's bytes expire (ms), from their custom metadata; `None` if unreadable.
    pub fn upload_expiry(object: &Object) -> Option<u64> {
        object.custom(UPLOAD_EXPIRES_META).as_deref().and_then(crate::text::decimal)
    }

    /// Custom metadata of upload bytes in R2.
    const UPLOAD_EXPIRES_META: &str = "expires_at_ms";
    const UPLOAD_OWNER_META: &str = "owner";
}
