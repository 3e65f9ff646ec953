//! R2 holds image bytes under the image id; KV holds an `ImageRecord` per
//! image. Order of writes: the record (pending, with the upstream URL), then
//! the bytes in R2, then the record marked stored. The record never claims
//! bytes that R2 does not have. Every R2 and KV call goes through `Store`.
//!
//! Copies still to do are indexed under `pending:<id>` (written with the
//! pending record, removed once stored, expiring on their own after
//! `PENDING_INDEX_TTL_SECS`), so the cron's work grows with what is left to
//! do, not with every image ever stored.

use worker::{kv::KvStore, Bucket, Env, HttpMetadata, Method, Object, Range, Request, RequestInit};

use super::net::{fetch_with_timeout, now_ms, sleep_ms, NetError};
use super::{IMAGES_BUCKET, METADATA_KV};
use crate::backoff::retry_delay_ms;
use crate::error::ApiError;
use crate::metadata::{kv_key, kv_metadata, ImageRecord, ImageSource, StoreStatus};
use crate::output::{sniff_image, ImageKind};

/// How long fetching one output may take.
const COPY_TIMEOUT_MS: u64 = 60_000;
/// Copies tried within one request's `wait_until` before leaving it to the cron.
pub const COPY_ATTEMPTS: u32 = 3;
/// An output without Content-Length is read into memory up to this size.
const MAX_UNSIZED_BYTES: usize = 20 * 1024 * 1024;

/// The KV prefix of the index of copies still to do.
pub const PENDING_PREFIX: &str = "pending:";
/// How long an index entry outlives its image's upstream output (an hour).
const PENDING_INDEX_TTL_SECS: u64 = 2 * 60 * 60;

pub struct Store {
    bucket: Bucket,
    kv: KvStore,
}

impl Store {
    pub fn from_env(env: &Env) -> Result<Self, ApiError> {
        let bucket = env.bucket(IMAGES_BUCKET).map_err(|_| misconfigured(IMAGES_BUCKET))?;
        let kv = env.kv(METADATA_KV).map_err(|_| misconfigured(METADATA_KV))?;
        Ok(Self { bucket, kv })
    }

    pub async fn record(&self, id: &str) -> Result<Option<ImageRecord>, ApiError> {
        let read = self.kv.get(&kv_key(id)).json::<ImageRecord>().await;
        read.map_err(|e| ApiError::internal().with_cause(format!("KV read {id}: {e}")))
    }

    pub async fn get_text(&self, key: &str) -> Result<Option<String>, ApiError> {
        let read = self.kv.get(key).text().await;
        read.map_err(|e| ApiError::internal().with_cause(format!("KV read {key}: {e}")))
    }

    pub async fn put_text(&self, key: &str, value: String) -> Result<(), ApiError> {
        let result = async { self.kv.put(key, value)?.execute().await }.await;
        result.map_err(|e| ApiError::internal().with_cause(format!("KV write {key}: {e}")))
    }

    /// Writes `record`; a new pending one is also indexed as a copy to do,
    /// a stored one leaves the index.
    pub async fn put_record(&self, record: &ImageRecord) -> Result<(), ApiError> {
        // Serialized here: serde-wasm-bindgen would turn the input's JSON map into a JS Map.
        let value = serde_json::to_string(record).map_err(|e| ApiError::internal().with_cause(e))?;
        let put = async { self.kv.put(&kv_key(&record.id), value)?.metadata(kv_metadata(record))?.execute().await };
        let index = async {
            let key = format!("{PENDING_PREFIX}{}", record.id);
            match record.status {
                StoreStatus::Pending if record.attempts == 0 => {
                    self.kv.put(&key, "")?.expiration_ttl(PENDING_INDEX_TTL_SECS).execute().await
                }
                StoreStatus::Stored => self.kv.delete(&key).await,
                _ => Ok(()),
            }
        };
        let (put, index) = futures_util::join!(put, index);
        put.and(index).map_err(|e| ApiError::internal().with_cause(format!("KV write {}: {e}", record.id)))
    }

    /// One page of the ids of copies still to do, and the cursor of the next.
    pub async fn pending_page(&self, cursor: Option<String>) -> Result<(Vec<String>, Option<String>), ApiError> {
        let mut list = self.kv.list().prefix(PENDING_PREFIX.into()).limit(1000);
        if let Some(c) = cursor {
            list = list.cursor(c);
        }
        let page = list.execute().await.map_err(|e| ApiError::internal().with_cause(format!("KV list: {e}")))?;
        let ids = page.keys.iter().map(|k| k.name.trim_start_matches(PENDING_PREFIX).to_owned()).collect();
        let next = page.cursor.filter(|_| !page.list_complete);
        Ok((ids, next))
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

    /// The stored object, whole or the byte range `start..=end`.
    pub async fn object(&self, id: &str, part: Option<(u64, u64)>) -> Result<Option<Object>, ApiError> {
        let mut get = self.bucket.get(id);
        if let Some((start, end)) = part {
            get = get.range(Range::OffsetWithLength { offset: start, length: end - start + 1 });
        }
        get.execute().await.map_err(r2_error)
    }

    /// Copies the record's output into R2 (unless it is there already), then
    /// marks the record stored. Tries `attempts` times; a last failure is
    /// recorded as `failed` for the cron to retry.
    pub async fn persist(&self, mut record: ImageRecord, source: &ImageSource, attempts: u32) -> ImageRecord {
        for attempt in 0..attempts {
            if attempt > 0 {
                sleep_ms(retry_delay_ms(attempt - 1)).await;
            }
            record.attempts += 1;
            let copied = match source {
                ImageSource::Inline(bytes) => self.put_bytes(&record.id, bytes.clone()).await,
                ImageSource::Fetch(url) => self.copy_from(&record.id, url).await,
            };
            match copied {
                Ok((content_type, size)) => {
                    record.status = StoreStatus::Stored;
                    record.content_type = Some(content_type);
                    record.size = Some(size);
                    record.last_error = None;
                    match self.put_record(&record).await {
                        Ok(()) => return record,
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
        record
    }

    async fn copy_from(&self, id: &str, url: &str) -> Result<(String, u64), String> {
        let mut init = RequestInit::new();
        init.with_method(Method::Get);
        let request = Request::new_with_init(url, &init).map_err(|e| e.to_string())?;
        let bucket = &self.bucket;
        let guess = guess_content_type(id);
        let copied = fetch_with_timeout(request, COPY_TIMEOUT_MS, |mut response| async move {
            let fail = NetError::Failed;
            if response.status_code() != 200 {
                return Err(fail(format!("upstream answered {}", response.status_code())));
            }
            let length = response.headers().get("Content-Length").ok().flatten().and_then(|v| v.parse::<u64>().ok());
            let metadata = HttpMetadata { content_type: Some(guess.into()), ..Default::default() };
            let put = match (length, response.body()) {
                // Streamed from the upstream body into R2: the bytes never enter wasm.
                (Some(_), worker::ResponseBody::Stream(stream)) => {
                    bucket.put(id, worker::Data::ReadableStream(stream.clone())).http_metadata(metadata).execute().await
                }
                _ => {
                    let bytes = response.bytes().await.map_err(|e| fail(e.to_string()))?;
                    if bytes.len() > MAX_UNSIZED_BYTES {
                        return Err(fail("output too large".into()));
                    }
                    bucket.put(id, bytes).http_metadata(metadata).execute().await
                }
            };
            let size = put.map_err(|e| fail(format!("R2 put: {e}")))?.map(|o| o.size()).unwrap_or(0);
            match length {
                Some(expected) if size != expected => {
                    let _ = bucket.delete(id).await;
                    Err(fail(format!("stored {size} of {expected} bytes")))
                }
                _ => Ok(()),
            }
        })
        .await;
        copied.map_err(|e| match e {
            NetError::Timeout => "copy timed out".to_string(),
            NetError::Failed(why) => why,
        })?;
        self.verify_content_type(id, guess).await
    }

    async fn put_bytes(&self, id: &str, bytes: Vec<u8>) -> Result<(String, u64), String> {
        let kind = sniff_image(&bytes).ok_or("output is not an image")?;
        let size = bytes.len() as u64;
        let metadata = HttpMetadata { content_type: Some(kind.content_type.into()), ..Default::default() };
        self.bucket.put(id, bytes).http_metadata(metadata).execute().await.map_err(|e| format!("R2 put: {e}"))?;
        Ok((kind.content_type.to_string(), size))
    }

    /// The stored type comes from the bytes' magic numbers: read the first
    /// bytes back; when they disagree with the guess, rewrite the object's
    /// metadata (R2 to R2, streamed); when they are no image, delete it.
    async fn verify_content_type(&self, id: &str, guess: &str) -> Result<(String, u64), String> {
        let head = self
            .bucket
            .get(id)
            .range(Range::Prefix { length: 16 })
            .execute()
            .await
            .map_err(|e| format!("R2 read back: {e}"))?
            .ok_or("R2 read back: object missing")?;
        let size = head.size();
        let prefix = match head.body() {
            Some(body) => body.bytes().await.map_err(|e| format!("R2 read back: {e}"))?,
            None => Vec::new(),
        };
        let Some(kind) = sniff_image(&prefix) else {
            let _ = self.bucket.delete(id).await;
            return Err("output is not an image".into());
        };
        if kind.content_type != guess {
            let object = self.bucket.get(id).execute().await.map_err(|e| e.to_string())?.ok_or("object missing")?;
            let body = object.body().ok_or("object has no body")?.stream().map_err(|e| e.to_string())?;
            let stream = worker::FixedLengthStream::wrap(body, size);
            let metadata = HttpMetadata { content_type: Some(kind.content_type.into()), ..Default::default() };
            self.bucket
                .put(id, stream)
                .http_metadata(metadata)
                .execute()
                .await
                .map_err(|e| format!("R2 rewrite: {e}"))?;
        }
        Ok((kind.content_type.to_string(), size))
    }
}

/// The content type an id's extension implies, before the bytes confirm it.
pub fn guess_content_type(id: &str) -> &'static str {
    id.rsplit_once('.').and_then(|(_, ext)| ImageKind::from_ext(ext)).unwrap_or(ImageKind::WEBP).content_type
}

/// Whether a record's upstream output may still exist (Replicate keeps
/// outputs for an hour).
pub fn source_still_valid(record: &ImageRecord) -> bool {
    let created = crate::image_id::rfc3339_to_ms(&record.created_at).unwrap_or(0);
    record.source_url.is_some() && now_ms() < created + 60 * 60 * 1000
}

fn misconfigured(binding: &str) -> ApiError {
    ApiError::misconfigured(500, format!("binding {binding} is missing"))
}

fn r2_error(e: worker::Error) -> ApiError {
    ApiError::internal().with_cause(format!("R2: {e}"))
}
