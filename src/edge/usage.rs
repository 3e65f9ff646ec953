//! Usage per subject and UTC day, and the limits checked before a
//! generation reaches Replicate: a key's rate (the `KEY_LIMITER` binding,
//! and its own `per_minute` with a KV counter), a key's daily quota, and
//! the daily storage cap of callers with their own Replicate token.
//!
//! Counters are JSON under `usage:<subject>:<day>` in KV, which has no
//! atomic increment: each update reads, adds and writes. Within an isolate
//! updates are exact (a running total kept in memory is joined with what KV
//! says, by maximum, and what is counted but not yet written is added to
//! every read); across isolates, two updates within one KV round trip (or
//! KV's propagation delay, up to a minute between locations) may lose one
//! increment. Quotas are therefore approximate: a key may overrun its daily
//! quota by about the number of its concurrent requests.
//!
//! A generation is counted in this isolate before it is sent to Replicate,
//! and written to KV after the answer (`wait_until`): the KV round trips are
//! not on the caller's wait. When the request keeps outputs, the generation
//! is written with them, once they are copied into R2 (one read and one
//! write of the key per generation, not two); otherwise once the request
//! is answered; images stored before an answer are counted at once and
//! written after it too. No answer waits for a usage write. One write per
//! key runs at a time in an isolate, at most one a second (KV takes about
//! one write per second to a key); what is counted meanwhile goes into its
//! next turn, so requests arriving faster than that write their key once a
//! second between them, not once each. The latest request to find a write
//! under way waits to take over from it, so that a writer stopping at its
//! time budget leaves nothing unwritten while a request's time is left.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use super::kv::{Kv, PutOptions};
use super::request::Request;
use serde_json::json;
use worker::Response;

use super::context::{Caller, TokenHints};
use super::net::{now_ms, sleep_ms};
use super::{respond, RequestContext};
use crate::error::ApiError;
use crate::metadata::ImageRecord;
use crate::usage::{
    day_of, is_day, minute_counter, quota_remaining, rate_limit_headers, seconds_until_utc_midnight, usage_kv_key,
    Ledger, Usage, Waiting, WRITER_BUDGET_MS,
};

/// The Rate Limiting binding, as declared in wrangler.toml.
pub const KEY_LIMITER: &str = "KEY_LIMITER";
/// The prefix of the per-day index of subjects with usage.
const DAY_INDEX_PREFIX: &str = "usage-day:";
/// `USER_TOKEN_DAILY_BYTES` when unset: 100 MiB a day per caller token.
const DEFAULT_USER_TOKEN_DAILY_BYTES: u64 = 100 * 1024 * 1024;
/// `KEY_LIMITER_LIMIT` when unset: what wrangler.toml declares.
const DEFAULT_KEY_LIMITER_LIMIT: u32 = 60;

thread_local! {
    /// This isolate's usage: running totals, what is counted and not yet written.
    static LEDGER: RefCell<Ledger> = RefCell::new(Ledger::default());
}

/// What `subject` used on `day`, as far as this isolate and KV know.
pub async fn read(kv: &Kv, subject: &str, day: &str) -> Usage {
    let key = usage_kv_key(subject, day);
    let stored = stored(kv, &key).await;
    LEDGER.with(|l| l.borrow().view(&key, stored.as_ref()))
}

async fn stored(kv: &Kv, key: &str) -> Option<Usage> {
    kv.get_text(key).await.ok().flatten().and_then(|t| serde_json::from_str(&t).ok())
}

/// Counts `delta` for `subject` today in this isolate (every read here sees
/// it at once); answers the key to write (`write_counted`).
pub fn count(subject: &str, delta: Usage) -> UsageKey {
    let day = day_of(now_ms());
    LEDGER.with(|l| l.borrow_mut().count(&usage_kv_key(subject, &day), &delta));
    (subject.to_owned(), day)
}

/// Counts `delta` for `subject` today, written to KV after the answer: by
/// the request's copies into R2 when it keeps outputs (`persist`: one write
/// for the generation and its images, as KV takes about one write per
/// second to a key), else once the request is answered (`write_counted`).
fn count_later(cx: &RequestContext, subject: &str, delta: Usage) {
    cx.defer_usage(count(subject, delta));
}

/// A subject and a UTC day with usage counted in this isolate, to be
/// written to KV (`write_counted`).
pub type UsageKey = (String, String);

/// Writes what was counted under each key of `counted` (named as often as
/// it was counted in), the keys concurrently; nothing is read or written
/// for a key with nothing left to write.
pub async fn write_counted(kv: Kv, counted: Vec<UsageKey>) {
    let mut keys: Vec<UsageKey> = Vec::with_capacity(counted.len());
    for key in counted {
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    super::join::join_all(keys.into_iter().map(|(subject, day)| write(kv.clone(), subject, day))).await;
}

/// Writes what this isolate counted for `subject` on `day`. When a write
/// of the key is already under way it takes what is counted meanwhile, and
/// this request waits to take over in case that write stops with something
/// left (past `WRITER_BUDGET_MS`), until a later request waits in its place.
async fn write(kv: Kv, subject: String, day: String) {
    let key = usage_kv_key(&subject, &day);
    loop {
        if let Some(writing) = Writing::start(&key) {
            return write_turns(&kv, &subject, &day, &key, writing).await;
        }
        let (token, displaced) = LEDGER.with(|l| l.borrow_mut().wait_to_write(&key));
        if let Some(displaced) = displaced {
            wake(displaced);
        }
        let next = Handover { key: &key, token }.await;
        LEDGER.with(|l| l.borrow_mut().stop_waiting(&key, token));
        if next == Waiting::Displaced || !LEDGER.with(|l| l.borrow().has_unwritten(&key)) {
            return;
        }
    }
}

/// The writer of `key`: reads KV, joins it with the running total, adds what
/// was counted and writes the sum, until nothing counted is left, waiting
/// out `WRITE_SPACING_MS` between two writes; past `WRITER_BUDGET_MS` it
/// stops after its turn.
async fn write_turns(kv: &Kv, subject: &str, day: &str, key: &str, writing: Writing) {
    while LEDGER.with(|l| l.borrow().has_unwritten(key)) {
        let wait = LEDGER.with(|l| l.borrow().next_write_at(key)).saturating_sub(now_ms());
        if wait > 0 {
            sleep_ms(wait).await;
        }
        let stored = stored(kv, key).await;
        let Some((total, first)) = LEDGER.with(|l| l.borrow_mut().settle(key, day, stored.as_ref(), now_ms())) else {
            break;
        };
        let Ok(text) = serde_json::to_string(&total) else { break };
        if let Err(e) = kv.put(key, &text, PutOptions::none()).await {
            worker::console_warn!("KV write {key}: {e}");
        }
        if first {
            let index = format!("{DAY_INDEX_PREFIX}{day}:{subject}");
            if let Err(e) = kv.put(&index, "", PutOptions::none()).await {
                worker::console_warn!("KV write {index}: {e}");
            }
        }
        if now_ms().saturating_sub(writing.since) >= WRITER_BUDGET_MS {
            break;
        }
    }
}

/// A usage key's write under way in this isolate; it ends when dropped. The
/// runtime may stop a request's work without dropping it: the Ledger lets
/// another start once it is `WRITER_STALE_MS` old.
struct Writing {
    key: String,
    since: u64,
}

impl Writing {
    fn start(key: &str) -> Option<Self> {
        let since = now_ms();
        LEDGER.with(|l| l.borrow_mut().start_writing(key, since)).then(|| Writing { key: key.to_owned(), since })
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        let successor = LEDGER.with(|l| {
            let mut ledger = l.borrow_mut();
            ledger.stop_writing(&self.key, self.since);
            ledger.successor(&self.key)
        });
        if let Some(token) = successor {
            wake(token);
        }
    }
}

thread_local! {
    /// The wakers of requests waiting to take over a usage key's writes, by token.
    static WAITING: RefCell<HashMap<u64, Waker>> = RefCell::default();
}

fn wake(token: u64) {
    if let Some(waker) = WAITING.with_borrow_mut(|w| w.remove(&token)) {
        waker.wake();
    }
}

/// Ready once the request holding `token` no longer waits for the write of
/// `key` under way: it was displaced by a later one, or the write ended.
struct Handover<'a> {
    key: &'a str,
    token: u64,
}

impl Future for Handover<'_> {
    type Output = Waiting;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Waiting> {
        let next = LEDGER.with(|l| l.borrow().waiting(self.key, self.token, now_ms()));
        WAITING.with_borrow_mut(|w| match next {
            Waiting::Wait => w.insert(self.token, cx.waker().clone()),
            _ => w.remove(&self.token),
        });
        match next {
            Waiting::Wait => Poll::Pending,
            done => Poll::Ready(done),
        }
    }
}

/// Counts a stored image for its owner in this isolate; answers the key to
/// write (`write_counted`), when the image has an owner.
pub fn count_stored(record: &ImageRecord) -> Option<UsageKey> {
    let owner = record.owner.as_ref()?;
    Some(count(owner, Usage { images_stored: 1, bytes_stored: record.size.unwrap_or(0), ..Usage::default() }))
}

fn too_many(limit: u32, reset_secs: u32, details: &str) -> ApiError {
    ApiError::new(429, "Rate limit exceeded")
        .with_details(details)
        .with_retry_after(reset_secs.max(1))
        .with_headers(rate_limit_headers(limit, 0, reset_secs, false))
}

fn var_number(cx: &RequestContext, name: &str) -> Result<Option<u64>, ApiError> {
    let Ok(value) = cx.env.var(name) else { return Ok(None) };
    let value = value.to_string();
    if value.trim().is_empty() {
        return Ok(None);
    }
    crate::text::decimal(value.trim())
        .map(Some)
        .ok_or_else(|| ApiError::misconfigured(500, format!("{name} must be a whole number")))
}

/// The daily storage cap of a caller's own Replicate token, in bytes.
pub fn user_token_daily_bytes(cx: &RequestContext) -> Result<u64, ApiError> {
    Ok(var_number(cx, "USER_TOKEN_DAILY_BYTES")?.unwrap_or(DEFAULT_USER_TOKEN_DAILY_BYTES))
}

/// Counts a cache hit for the caller, apart from generations.
pub fn count_cache_hit(cx: &RequestContext) {
    let Some(subject) = cx.subject() else { return };
    count_later(cx, &subject, Usage::cache_hit());
}

/// Checks the caller's limits before a generation is sent to Replicate
/// (a 429 with `Retry-After` and `RateLimit-*` when over one), then counts
/// the generation. The operator has no limits; callers with their own
/// Replicate token have none on generations, only on what they store.
pub async fn admit(cx: &RequestContext, caller: &Caller) -> Result<(), ApiError> {
    let store = cx.store()?;
    let kv = store.kv();
    let now = now_ms();
    let day = day_of(now);
    if let Some(key) = &caller.key {
        if let Ok(limiter) = cx.env.rate_limiter(KEY_LIMITER) {
            match limiter.limit(key.id.clone()).await {
                Ok(outcome) if !outcome.success => {
                    let limit = var_number(cx, "KEY_LIMITER_LIMIT")?
                        .and_then(|n| u32::try_from(n).ok())
                        .unwrap_or(DEFAULT_KEY_LIMITER_LIMIT);
                    let (_, reset) = minute_counter(&key.id, now);
                    return Err(too_many(limit, reset, "This API key made too many requests this minute"));
                }
                Ok(_) => {}
                Err(e) => worker::console_warn!("{KEY_LIMITER}: {e}"),
            }
        }
        if let Some(per_minute) = key.limits.per_minute {
            let (counter, reset) = minute_counter(&key.id, now);
            let used = store.get_text(&counter).await?.and_then(|t| crate::text::decimal(t.trim())).unwrap_or(0);
            if used >= u64::from(per_minute) {
                return Err(too_many(per_minute, reset, "This API key made too many requests this minute"));
            }
            if let Err(e) = store.put_text_for(&counter, (used + 1).to_string(), 120).await {
                worker::console_warn!("{e}");
            }
            let remaining = u32::try_from(u64::from(per_minute).saturating_sub(used + 1)).unwrap_or(0);
            cx.set_rate_limit(rate_limit_headers(per_minute, remaining, reset, false));
        }
        if let Some(per_day) = key.limits.per_day {
            let used = read(kv, &key.id, &day).await.quota_used();
            match quota_remaining(per_day, used, now) {
                Err(reset) => return Err(too_many(per_day, reset, "This API key has used its daily quota")),
                // The per-minute limit, when there is one, is the nearer.
                Ok(_) if key.limits.per_minute.is_some() => {}
                Ok(left) => {
                    let left = left.saturating_sub(1);
                    cx.set_rate_limit(rate_limit_headers(per_day, left, seconds_until_utc_midnight(now), false));
                }
            }
        }
    } else if caller.is_user() {
        let cap = user_token_daily_bytes(cx)?;
        if read(kv, &caller.subject, &day).await.bytes_stored >= cap {
            let reset = seconds_until_utc_midnight(now);
            let limit = u32::try_from(cap).unwrap_or(u32::MAX);
            return Err(too_many(limit, reset, "This Replicate token has stored its daily allowance of bytes here"));
        }
    }
    count_later(cx, &caller.subject, Usage { generations: 1, ..Usage::default() });
    Ok(())
}

/// `GET /usage`: the caller's own usage today and their limits.
pub async fn get(req: &Request, cx: &RequestContext) -> Result<Response, ApiError> {
    let url = req.url().map_err(|_| ApiError::bad_request("Invalid URL"))?;
    let query_token = url.query_pairs().find(|(k, _)| k == "replicate_token").map(|(_, v)| v.into_owned());
    let caller = cx.caller(TokenHints { query: query_token.as_deref(), ..TokenHints::default() }).await?;
    let day = day_of(now_ms());
    let usage = read(cx.store()?.kv(), &caller.subject, &day).await;
    let limits = match &caller.key {
        Some(key) => json!({ "per_minute": key.limits.per_minute, "per_day": key.limits.per_day }),
        None if caller.is_user() => json!({ "bytes_per_day": user_token_daily_bytes(cx)? }),
        None => json!({}),
    };
    respond::json(200, &json!({ "subject": caller.subject, "day": day, "usage": usage, "limits": limits }))
}

/// `GET /admin/usage?day=YYYY-MM-DD` (today by default): every subject's usage that day.
pub async fn admin(req: &Request, cx: &RequestContext) -> Result<Response, ApiError> {
    super::keys::require_operator(cx)?;
    let url = req.url().map_err(|_| ApiError::bad_request("Invalid URL"))?;
    let day = url.query_pairs().find(|(k, _)| k == "day").map(|(_, v)| v.into_owned());
    let day = day.unwrap_or_else(|| day_of(now_ms()));
    if !is_day(&day) {
        return Err(ApiError::invalid_input("day must be YYYY-MM-DD"));
    }
    let kv = cx.store()?.kv();
    let prefix = format!("{DAY_INDEX_PREFIX}{day}:");
    let names = kv.all_names(&prefix).await.map_err(|e| ApiError::internal().with_cause(format!("KV list: {e}")))?;
    let subjects: Vec<String> = names.into_iter().map(|name| name[prefix.len()..].to_owned()).collect();
    let usages = super::join::join_all(subjects.iter().map(|s| read(kv, s, &day))).await;
    let usage: Vec<_> =
        subjects.iter().zip(usages).map(|(subject, usage)| json!({ "subject": subject, "usage": usage })).collect();
    respond::json(200, &json!({ "day": day, "usage": usage }))
}
