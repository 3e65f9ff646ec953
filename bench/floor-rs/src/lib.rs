//! The floor in Rust: bench/floor-worker.mjs (without its checks) written in
//! Rust, the same KV, R2 and fetch calls per request and nothing else. The
//! calls go through `platform`, in one of two ways:
//! - `stock` (the default): the worker crate's own API, the way its
//!   documentation shows;
//! - `lean` (`--features lean`): fluxgate's own paths to the runtime, its
//!   `src/edge/{promise,kv,r2}.rs` compiled in as they are, fetches and
//!   bodies as `src/edge/net.rs` makes them.
//!
//! What the stock floor costs over the JavaScript floor is what the stack
//! costs for those calls as a Rust worker is usually written; the lean one,
//! what it costs at its leanest known. Built by bench/floor-rs.mjs; keep the
//! calls in step with the JavaScript floor's (the bench compares them before
//! measuring).
use std::cell::RefCell;
use std::collections::BTreeMap;

use futures_util::future::{join, join4};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use worker::{event, js_sys, Context, Date, Delay, Env, Response, Result};

#[cfg(feature = "lean")]
#[path = "lean.rs"]
mod platform;
#[cfg(not(feature = "lean"))]
#[path = "stock.rs"]
mod platform;

use platform::{Incoming, Platform};

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
    static LOST: RefCell<Option<(u64, u64)>> = const { RefCell::new(None) };
    static LOST_READING: RefCell<bool> = const { RefCell::new(false) };
    static MODEL: RefCell<Option<String>> = const { RefCell::new(None) };
    static LEDGER: RefCell<Ledger> = RefCell::default();
}

#[event(fetch)]
async fn fetch(req: Incoming, env: Env, ctx: Context) -> Result<Response> {
    let path = platform::path(&req);
    if path == "/health" {
        return health(&env).await;
    }
    if path == "/generate" && platform::is_post(&req) {
        return generate(req, env, ctx).await;
    }
    if let Some(id) = path.strip_prefix("/image/") {
        return match Platform::new(&env)?.image(id).await? {
            Some(response) => Ok(response),
            None => json_response(404, &json!({ "error": "Image not found" })),
        };
    }
    json_response(404, &json!({ "error": "Not found" }))
}

fn json_response(status: u16, value: &Value) -> Result<Response> {
    let mut response = Response::ok(value.to_string())?.with_status(status);
    response.headers_mut().set("content-type", "application/json")?;
    Ok(response)
}

async fn health(env: &Env) -> Result<Response> {
    let now = Date::now().as_millis();
    let stale = LOST.with_borrow(|l| match l {
        None => true,
        Some((_, at)) => now.saturating_sub(*at) >= 10_000 && !LOST_READING.with_borrow(|r| *r),
    });
    if stale {
        LOST_READING.with_borrow_mut(|r| *r = true);
        let text = Platform::new(env)?.kv_text("stats:lost").await;
        LOST_READING.with_borrow_mut(|r| *r = false);
        let count = text?.and_then(|t| t.parse().ok()).unwrap_or(0);
        LOST.with_borrow_mut(|l| *l = Some((count, now)));
    }
    let lost = LOST.with_borrow(|l| l.map(|(count, _)| count));
    json_response(200, &json!({ "status": "ok", "service": "floor", "lost_images": lost }))
}

fn var(env: &Env, name: &str) -> Option<String> {
    env.var(name).ok().map(|v| v.to_string())
}

fn default_model(env: &Env) -> String {
    MODEL.with_borrow_mut(|m| {
        m.get_or_insert_with(|| {
            let models = var(env, "MODELS").unwrap_or_default();
            let default = var(env, "DEFAULT_MODEL").unwrap_or_default();
            let entries: BTreeMap<&str, &str> =
                models.split(',').filter_map(|e| e.trim().split_once('=').map(|(k, v)| (k.trim(), v.trim()))).collect();
            entries
                .get(default.as_str())
                .map(|m| m.to_string())
                .or_else(|| var(env, "REPLICATE_MODEL"))
                .unwrap_or_else(|| "black-forest-labs/flux-schnell".into())
        })
        .clone()
    })
}

/// Adds `delta` to the subject's usage of today: counted at once; one
/// writer at a time reads, adds what was counted and writes, at most once a
/// second, until nothing counted is left.
async fn add_usage(env: &Env, delta: &[(&str, f64)]) -> Result<()> {
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
    let written = write_usage(&Platform::new(env)?).await;
    LEDGER.with_borrow_mut(|l| l.writing = false);
    written
}

async fn write_usage(platform: &Platform) -> Result<()> {
    while LEDGER.with_borrow(|l| l.unwritten.is_some()) {
        let due = LEDGER.with_borrow(|l| l.written_at) + WRITE_SPACING_MS;
        let now = Date::now().as_millis();
        if due > now {
            Delay::from(std::time::Duration::from_millis(due - now)).await;
        }
        let day = js_sys::Date::new_0().to_iso_string().as_string().unwrap_or_default();
        let day = day.get(..10).unwrap_or_default();
        let key = format!("usage:{SUBJECT}:{day}");
        let text = platform.kv_text(&key).await?;
        let mut usage: Map<String, Value> =
            text.as_deref().and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default();
        let unwritten = LEDGER.with_borrow_mut(|l| {
            l.written_at = Date::now().as_millis();
            l.unwritten.take().unwrap_or_default()
        });
        for (name, value) in unwritten {
            let old = usage.get(&name).and_then(Value::as_f64).unwrap_or(0.0);
            usage.insert(name, json!(old + value));
        }
        platform.kv_put(&key, &Value::Object(usage).to_string(), None, None).await?;
        if text.is_none() {
            platform.kv_put(&format!("usage-day:{day}:{SUBJECT}"), "", None, None).await?;
        }
    }
    Ok(())
}

async fn put_record(platform: &Platform, record: &Value) -> Result<()> {
    let metadata = json!({
        "status": record["status"],
        "content_type": record.get("content_type"),
        "size": record.get("size"),
        "prediction_id": record["prediction_id"],
        "created_at": record["created_at"],
    });
    let key = format!("image:{}", record["id"].as_str().unwrap_or_default());
    platform.kv_put(&key, &record.to_string(), None, Some(metadata)).await
}

async fn generate(mut req: Incoming, env: Env, ctx: Context) -> Result<Response> {
    let body = platform::json_body(&mut req).await?;
    let input = body.get("input").cloned().unwrap_or(Value::Null);
    let model = default_model(&env);
    let base = var(&env, "REPLICATE_API_BASE").unwrap_or_default();
    let token = env.secret("REPLICATE_API_TOKEN").map(|s| s.to_string()).unwrap_or_default();
    let platform = Platform::new(&env)?;
    let authorization = format!("Bearer {token}");
    let headers =
        [("authorization", authorization.as_str()), ("content-type", "application/json"), ("prefer", "wait=60")];
    let url = format!("{base}/v1/models/{model}/predictions");
    let prediction = platform.post_json(&url, &headers, &json!({ "input": input }).to_string()).await?;
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
    let inverted = format!("{:013}", INVERTED_FROM_MS.saturating_sub(created_at.get_time() as u64));
    let index = json!({ "ids": [id], "input": input }).to_string();
    let (a, b, c, d) = join4(
        platform.kv_put(&format!("owner:{SUBJECT}:{inverted}:{id}"), "", None, None),
        put_record(&platform, &record),
        platform.kv_put(&format!("pending:{id}"), "", Some(PENDING_TTL_SECONDS), None),
        platform.kv_put(&format!("prediction:{prediction_id}"), &index, None, None),
    )
    .await;
    a?;
    b?;
    c?;
    d?;
    // Keyed by the request, as fluxgate's is.
    let hash = Sha256::digest(json!({ "model": model, "input": input }).to_string().as_bytes());
    let cache_key = format!("cache:{}", hash.iter().map(|b| format!("{b:02x}")).collect::<String>());
    let entry = json!({ "prediction_id": prediction_id, "model": model, "seed": input.get("seed"), "ids": [id] });
    let cache_platform = Platform::new(&env)?;
    ctx.wait_until(async move {
        let _ = cache_platform.kv_put(&cache_key, &entry.to_string(), Some(CACHE_TTL_SECONDS), None).await;
    });
    let predict_time_ms = (prediction["metrics"]["predict_time"].as_f64().unwrap_or(0.0) * 1000.0).round();
    ctx.wait_until(async move {
        if let Err(e) = persist(&env, record, predict_time_ms).await {
            worker::console_error!("{e}");
        }
    });
    let origin = platform::origin(&req);
    json_response(200, &json!({ "id": id, "imageUrl": format!("{origin}/image/{id}"), "predictionId": prediction_id }))
}

/// Copies the output into R2, marks the record stored and counts the usage.
async fn persist(env: &Env, mut record: Value, predict_time_ms: f64) -> Result<()> {
    let platform = Platform::new(env)?;
    let id = record["id"].as_str().unwrap_or_default().to_string();
    let (size, content_type) = platform.copy(record["source_url"].as_str().unwrap_or_default(), &id).await?;
    record["status"] = json!("stored");
    record["content_type"] = json!(content_type);
    record["size"] = json!(size);
    record["attempts"] = json!(1);
    let (a, b) = join(put_record(&platform, &record), platform.kv_delete(&format!("pending:{id}"))).await;
    a?;
    b?;
    let delta = [
        ("generations", 1.0),
        ("images_stored", 1.0),
        ("bytes_stored", size as f64),
        ("predict_time_ms", predict_time_ms),
    ];
    add_usage(env, &delta).await
}
