//! The floor in Rust: bench/floor-worker.mjs (without its checks) written
//! with the worker crate's own API, the way its documentation shows: the
//! same KV, R2 and fetch calls per request, nothing else. What it costs over
//! the JavaScript floor is the stack's own cost for those calls (wasm,
//! wasm-bindgen and the worker crate); what fluxgate costs over it is
//! fluxgate's code. Built by bench/floor-rs.mjs; keep its calls in step
//! with the JavaScript floor's (the bench compares them before measuring).
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::{join, join4};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use worker::*;

const PENDING_TTL_SECONDS: u64 = 2 * 60 * 60;
const CACHE_TTL_SECONDS: u64 = 7 * 24 * 60 * 60;
const SUBJECT: &str = "service";
const INVERTED_FROM_MS: u64 = 9_999_999_999_999;
const WRITE_SPACING_MS: u64 = 1000;

#[derive(Default)]
struct Ledger {
    unwritten: Option<BTreeMap<String, f64>>,
    writing: bool,
    written_at: u64,
}

thread_local! {
    static LOST: RefCell<Option<(Value, u64)>> = const { RefCell::new(None) };
    static LOST_READING: RefCell<bool> = const { RefCell::new(false) };
    static MODEL: RefCell<Option<String>> = const { RefCell::new(None) };
    static LEDGER: RefCell<Ledger> = RefCell::default();
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
    let path = req.path();
    if path == "/health" {
        return health(&env).await;
    }
    if path == "/generate" && req.method() == Method::Post {
        return generate(req, env, ctx).await;
    }
    if let Some(id) = path.strip_prefix("/image/") {
        return image(&env, id).await;
    }
    Ok(Response::from_json(&json!({ "error": "Not found" }))?.with_status(404))
}

async fn health(env: &Env) -> Result<Response> {
    let now = Date::now().as_millis();
    let stale = LOST.with_borrow(|l| match l {
        None => true,
        Some((_, at)) => now.saturating_sub(*at) >= 10_000 && !LOST_READING.with_borrow(|r| *r),
    });
    if stale {
        LOST_READING.with_borrow_mut(|r| *r = true);
        let text = env.kv("IMAGE_META")?.get("stats:lost").text().await;
        LOST_READING.with_borrow_mut(|r| *r = false);
        let count: u64 = text?.and_then(|t| t.parse().ok()).unwrap_or(0);
        LOST.with_borrow_mut(|l| *l = Some((json!(count), now)));
    }
    let lost = LOST.with_borrow(|l| l.as_ref().map(|(v, _)| v.clone()).unwrap_or(Value::Null));
    Response::from_json(&json!({ "status": "ok", "service": "floor", "lost_images": lost }))
}

fn default_model(env: &Env) -> String {
    MODEL.with_borrow_mut(|m| {
        m.get_or_insert_with(|| {
            let models = env.var("MODELS").map(|v| v.to_string()).unwrap_or_default();
            let default = env.var("DEFAULT_MODEL").map(|v| v.to_string()).unwrap_or_default();
            let entries: BTreeMap<String, String> = models
                .split(',')
                .filter_map(|e| e.trim().split_once('=').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
                .collect();
            entries
                .get(&default)
                .cloned()
                .or_else(|| env.var("REPLICATE_MODEL").ok().map(|v| v.to_string()))
                .unwrap_or_else(|| "black-forest-labs/flux-schnell".into())
        })
        .clone()
    })
}

async fn add_usage(env: Env, delta: Vec<(&'static str, f64)>) -> Result<()> {
    let start = LEDGER.with_borrow_mut(|l| {
        let unwritten = l.unwritten.get_or_insert_with(BTreeMap::new);
        for (name, value) in delta {
            *unwritten.entry(name.to_string()).or_default() += value;
        }
        !std::mem::replace(&mut l.writing, true)
    });
    if !start {
        return Ok(());
    }
    let kv = env.kv("IMAGE_META")?;
    loop {
        let written_at = LEDGER.with_borrow(|l| l.written_at);
        let now = Date::now().as_millis();
        if written_at + WRITE_SPACING_MS > now {
            Delay::from(Duration::from_millis(written_at + WRITE_SPACING_MS - now)).await;
        }
        let day: String = js_sys::Date::new_0().to_iso_string().as_string().unwrap_or_default()[..10].to_string();
        let key = format!("usage:{SUBJECT}:{day}");
        let text = kv.get(&key).text().await?;
        let mut usage: Map<String, Value> =
            text.as_deref().and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default();
        let Some(unwritten) = LEDGER.with_borrow_mut(|l| {
            l.written_at = Date::now().as_millis();
            l.unwritten.take()
        }) else {
            LEDGER.with_borrow_mut(|l| l.writing = false);
            return Ok(());
        };
        for (name, value) in unwritten {
            let old = usage.get(&name).and_then(Value::as_f64).unwrap_or(0.0);
            usage.insert(name, json!(old + value));
        }
        kv.put(&key, serde_json::to_string(&usage)?)?.execute().await?;
        if text.is_none() {
            kv.put(&format!("usage-day:{day}:{SUBJECT}"), "")?.execute().await?;
        }
        if LEDGER.with_borrow(|l| l.unwritten.is_none()) {
            LEDGER.with_borrow_mut(|l| l.writing = false);
            return Ok(());
        }
    }
}

async fn put_record(kv: &kv::KvStore, record: &Value) -> Result<()> {
    let metadata = json!({
        "status": record["status"],
        "content_type": record.get("content_type"),
        "size": record.get("size"),
        "prediction_id": record["prediction_id"],
        "created_at": record["created_at"],
    });
    let key = format!("image:{}", record["id"].as_str().unwrap_or_default());
    kv.put(&key, serde_json::to_string(record)?)?.metadata(metadata)?.execute().await?;
    Ok(())
}

async fn generate(mut req: Request, env: Env, ctx: Context) -> Result<Response> {
    let body: Value = req.json().await?;
    let input = body.get("input").cloned().unwrap_or(Value::Null);
    let model = default_model(&env);
    let base = env.var("REPLICATE_API_BASE")?.to_string();
    let token = env.secret("REPLICATE_API_TOKEN").map(|s| s.to_string()).unwrap_or_default();
    let headers = Headers::new();
    headers.set("authorization", &format!("Bearer {token}"))?;
    headers.set("content-type", "application/json")?;
    headers.set("prefer", "wait=60")?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(serde_json::to_string(&json!({ "input": input }))?.into()));
    let url = format!("{base}/v1/models/{model}/predictions");
    let mut created = Fetch::Request(Request::new_with_init(&url, &init)?).send().await?;
    let prediction: Value = created.json().await?;
    let prediction_id = prediction["id"].as_str().unwrap_or_default().to_string();
    let format = input.get("output_format").and_then(Value::as_str).unwrap_or("webp");
    let id = format!("{prediction_id}.{format}");
    let created_at = js_sys::Date::new_0();
    let record = json!({
        "id": id,
        "prediction_id": prediction_id,
        "model": model,
        "status": "pending",
        "source_url": prediction["output"][0],
        "created_at": created_at.to_iso_string().as_string(),
        "owner": SUBJECT,
        "attempts": 0,
    });
    let inverted = format!("{:013}", INVERTED_FROM_MS - created_at.get_time() as u64);
    let kv = env.kv("IMAGE_META")?;
    let owner_key = format!("owner:{SUBJECT}:{inverted}:{id}");
    let pending_key = format!("pending:{id}");
    let prediction_key = format!("prediction:{prediction_id}");
    let index = serde_json::to_string(&json!({ "ids": [id], "input": input }))?;
    let (a, b, c, d) = join4(
        async { kv.put(&owner_key, "")?.execute().await.map_err(Error::from) },
        put_record(&kv, &record),
        async { kv.put(&pending_key, "")?.expiration_ttl(PENDING_TTL_SECONDS).execute().await.map_err(Error::from) },
        async { kv.put(&prediction_key, index)?.execute().await.map_err(Error::from) },
    )
    .await;
    a?;
    b?;
    c?;
    d?;
    let hash = Sha256::digest(serde_json::to_string(&json!({ "model": model, "input": input }))?.as_bytes());
    let cache_key = format!("cache:{}", hash.iter().map(|b| format!("{b:02x}")).collect::<String>());
    let entry = serde_json::to_string(&json!({
        "prediction_id": prediction_id, "model": model, "seed": input.get("seed"), "ids": [id],
    }))?;
    let kv2 = kv.clone();
    ctx.wait_until(async move {
        if let Ok(put) = kv2.put(&cache_key, entry) {
            let _ = put.expiration_ttl(CACHE_TTL_SECONDS).execute().await;
        }
    });
    let predict_time_ms = (prediction["metrics"]["predict_time"].as_f64().unwrap_or(0.0) * 1000.0).round();
    ctx.wait_until(async move {
        if let Err(e) = persist(env, record, predict_time_ms).await {
            console_error!("{e}");
        }
    });
    let origin = req.url()?.origin().ascii_serialization();
    Response::from_json(&json!({ "id": id, "imageUrl": format!("{origin}/image/{id}"), "predictionId": prediction_id }))
}

async fn persist(env: Env, mut record: Value, predict_time_ms: f64) -> Result<()> {
    let source = record["source_url"].as_str().unwrap_or_default().to_string();
    let upstream = Fetch::Url(source.parse()?).send().await?;
    let content_type = upstream.headers().get("content-type")?;
    let body = match upstream.body() {
        ResponseBody::Stream(stream) => stream.clone(),
        _ => return Err("no body".into()),
    };
    let id = record["id"].as_str().unwrap_or_default().to_string();
    let stored = env
        .bucket("IMAGES")?
        .put(&id, Data::ReadableStream(body))
        .http_metadata(HttpMetadata { content_type: content_type.clone(), ..Default::default() })
        .execute()
        .await?;
    let size = stored.ok_or("not stored")?.size();
    record["status"] = json!("stored");
    record["content_type"] = json!(content_type);
    record["size"] = json!(size);
    record["attempts"] = json!(1);
    let kv = env.kv("IMAGE_META")?;
    let pending = format!("pending:{id}");
    let (a, b) = join(put_record(&kv, &record), async { kv.delete(&pending).await.map_err(Error::from) }).await;
    a?;
    b?;
    add_usage(
        env,
        vec![
            ("generations", 1.0),
            ("images_stored", 1.0),
            ("bytes_stored", size as f64),
            ("predict_time_ms", predict_time_ms),
        ],
    )
    .await
}

async fn image(env: &Env, id: &str) -> Result<Response> {
    let Some(object) = env.bucket("IMAGES")?.get(id).execute().await? else {
        return Ok(Response::from_json(&json!({ "error": "Image not found" }))?.with_status(404));
    };
    let headers = Headers::new();
    headers.set(
        "content-type",
        &object.http_metadata().content_type.unwrap_or_else(|| "application/octet-stream".into()),
    )?;
    headers.set("content-length", &object.size().to_string())?;
    headers.set("etag", &object.http_etag())?;
    headers.set("cache-control", "public, max-age=31536000, immutable")?;
    let body = object.body().ok_or("no body")?.response_body()?;
    Ok(Response::from_body(body)?.with_headers(headers))
}
