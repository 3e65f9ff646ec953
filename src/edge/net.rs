//! Outbound HTTP with a deadline on every call, output fetches that follow
//! redirects only to allowed hosts, and the clock.

use std::time::Duration;

use super::promise::settled;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use worker::js_sys;
use worker::web_sys::{self, ReadableStream, ReadableStreamDefaultReader};
use worker::Delay;

use crate::error::ApiError;
use crate::output::{redirect_target, MAX_REDIRECTS};

#[derive(Debug)]
pub enum NetError {
    Timeout,
    Failed(String),
}

impl std::fmt::Display for NetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetError::Timeout => f.write_str("timed out"),
            NetError::Failed(why) => f.write_str(why),
        }
    }
}

/// Milliseconds since the epoch (`SystemTime::now` panics on wasm32).
pub fn now_ms() -> u64 {
    // `Date.now()`: no Date object made per reading.
    worker::js_sys::Date::now() as u64
}

pub async fn sleep_ms(ms: u64) {
    Delay::from(Duration::from_millis(ms)).await;
}

/// An outbound request, sent with the runtime's own `fetch` (no wrapper
/// objects on the way, the body passed as given).
pub struct Outbound<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: Option<&'a JsValue>,
    /// Redirects are answered, not followed.
    pub manual_redirect: bool,
}

#[wasm_bindgen]
extern "C" {
    /// `AbortSignal.timeout(ms)`: a signal the runtime aborts on its own
    /// timer. One native call per deadline instead of a wasm timer, an
    /// `AbortController` and a race of futures: each of those costs the
    /// isolate wasm re-entries on every fetch.
    #[wasm_bindgen(js_namespace = AbortSignal, js_name = timeout)]
    fn abort_after(milliseconds: f64) -> web_sys::AbortSignal;
}

/// Runs `work` with a signal that aborts after `timeout_ms`; whatever
/// `work` fetches or reads with it stops then, and the failure is a timeout.
pub async fn within<T, Fut>(timeout_ms: u64, work: impl FnOnce(web_sys::AbortSignal) -> Fut) -> Result<T, NetError>
where
    Fut: std::future::Future<Output = Result<T, NetError>>,
{
    if timeout_ms == 0 {
        return Err(NetError::Timeout);
    }
    let signal = abort_after(timeout_ms as f64);
    match work(signal.clone()).await {
        Err(_) if signal.aborted() => Err(NetError::Timeout),
        other => other,
    }
}

/// Sends `outbound` with `signal`.
pub async fn send(outbound: &Outbound<'_>, signal: &web_sys::AbortSignal) -> Result<web_sys::Response, NetError> {
    let failed = |e: JsValue| NetError::Failed(describe(&e));
    // Method, headers and redirect mode in one text, parsed by the runtime
    // in one call (a `Headers` object and a call per header cost a crossing
    // each); the signal and the body are set on the parsed object.
    let mut headers = serde_json::Map::new();
    for (name, value) in outbound.headers {
        headers.insert((*name).to_owned(), (*value).into());
    }
    let mut init = serde_json::json!({ "method": outbound.method, "headers": headers });
    if outbound.manual_redirect {
        init["redirect"] = "manual".into();
    }
    let init: web_sys::RequestInit = js_sys::JSON::parse(&init.to_string()).map_err(failed)?.unchecked_into();
    init.set_signal(Some(signal));
    if let Some(body) = outbound.body {
        init.set_body(body);
    }
    let scope: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
    let answer = settled(&scope.fetch_with_str_and_init(outbound.url, &init)).await.map_err(failed)?;
    answer.dyn_into::<web_sys::Response>().map_err(failed)
}

/// Sends `outbound` and runs `read` on the answer, both within `timeout_ms`.
pub async fn fetch_with_timeout<T, F, Fut>(outbound: &Outbound<'_>, timeout_ms: u64, read: F) -> Result<T, NetError>
where
    F: FnOnce(web_sys::Response) -> Fut,
    Fut: std::future::Future<Output = Result<T, NetError>>,
{
    within(timeout_ms, |signal| async move { read(send(outbound, &signal).await?).await }).await
}

/// An answer's whole body as text, read by the runtime in one call.
pub async fn text_of(response: &web_sys::Response) -> Result<String, NetError> {
    let failed = |e: JsValue| NetError::Failed(describe(&e));
    let text = settled(&response.text().map_err(failed)?).await.map_err(failed)?;
    text.as_string().ok_or_else(|| NetError::Failed("the body is not text".into()))
}

/// Drops an answer's body unread.
pub fn discard(response: &web_sys::Response) {
    if let Some(body) = response.body() {
        let _ = body.cancel();
    }
}

fn describe(e: &JsValue) -> String {
    js_message(e).unwrap_or_else(|| "the request failed".into())
}

/// The message of a value the runtime threw or rejected with: a string, or
/// an `Error`'s message.
pub fn js_message(e: &JsValue) -> Option<String> {
    e.as_string().or_else(|| e.dyn_ref::<js_sys::Error>().map(|e| String::from(e.message())))
}

/// Fetches an output URL with no credential, following at most
/// `MAX_REDIRECTS` redirects by hand: each `Location` must itself be an
/// allowed output URL (see `output::redirect_target`), so no hop reaches a
/// host outside the allowlist. Then `read` runs on the final answer; all of
/// it within `deadline_ms`.
pub async fn fetch_output<T, F, Fut>(
    url: &str,
    extra_hosts: &[String],
    deadline_ms: u64,
    read: F,
) -> Result<T, NetError>
where
    F: FnOnce(web_sys::Response) -> Fut,
    Fut: std::future::Future<Output = Result<T, NetError>>,
{
    let left = deadline_ms.saturating_sub(now_ms());
    within(left, |signal| async move {
        let mut current = url.to_owned();
        for _ in 0..=MAX_REDIRECTS {
            let outbound = Outbound { method: "GET", url: &current, headers: &[], body: None, manual_redirect: true };
            let response = send(&outbound, &signal).await?;
            if !matches!(response.status(), 301 | 302 | 303 | 307 | 308) {
                return read(response).await;
            }
            discard(&response);
            let location = response.headers().get("Location").ok().flatten().unwrap_or_default();
            current = redirect_target(&current, &location, extra_hosts)
                .map_err(|e| NetError::Failed(e.details.unwrap_or_default()))?;
        }
        Err(NetError::Failed(format!("output redirected more than {MAX_REDIRECTS} times")))
    })
    .await
}

/// A request body of at most `cap` bytes (empty when there is none). A
/// declared larger one is a 413 before anything is read; a declared one is
/// read by the runtime in one call (which holds it to its declared length);
/// an undeclared one is read in chunks that stop past the cap (413).
pub async fn read_body(req: &super::request::Request, cap: u64) -> Result<Vec<u8>, ApiError> {
    let unreadable = || ApiError::bad_request("Could not read the request body");
    let declared = req.headers().get("Content-Length")?.and_then(|v| crate::text::decimal(v.trim()));
    if declared.is_some_and(|n| n > cap) {
        return Err(ApiError::body_too_large(cap));
    }
    let bytes = match (declared, req.inner().body()) {
        (_, None) => Vec::new(),
        (Some(_), Some(_)) => {
            let buffer =
                settled(&req.inner().array_buffer().map_err(|_| unreadable())?).await.map_err(|_| unreadable())?;
            js_sys::Uint8Array::new(&buffer).to_vec()
        }
        (None, Some(stream)) => read_capped(&stream, usize::try_from(cap).unwrap_or(usize::MAX).saturating_add(1))
            .await
            .map_err(|_| unreadable())?,
    };
    if bytes.len() as u64 > cap {
        return Err(ApiError::body_too_large(cap));
    }
    Ok(bytes)
}

/// Reads `stream` into memory until it ends or `cap` bytes are in (then it
/// is cancelled; a caller that refuses more than `n` bytes asks for `n + 1`).
/// Memory stays bounded by `cap`, whatever the stream holds.
pub async fn read_capped(stream: &ReadableStream, cap: usize) -> Result<Vec<u8>, NetError> {
    let reader: ReadableStreamDefaultReader = stream.get_reader().unchecked_into();
    let mut bytes = Vec::new();
    loop {
        let step = settled(&reader.read()).await.map_err(|_| NetError::Failed("output stream broke off".into()))?;
        let done = js_sys::Reflect::get(&step, &"done".into()).map(|d| d.is_truthy()).unwrap_or(true);
        if done {
            break;
        }
        let chunk = js_sys::Reflect::get(&step, &"value".into()).unwrap_or_default();
        let chunk: js_sys::Uint8Array = chunk.unchecked_into();
        // Only what fits under the cap crosses into wasm, copied once into
        // place (a sniff of 16 bytes must not copy a whole 64 KB chunk).
        let take = (chunk.length() as usize).min(cap - bytes.len());
        let start = bytes.len();
        bytes.resize(start + take, 0);
        chunk.subarray(0, take as u32).copy_to(&mut bytes[start..]);
        if bytes.len() >= cap {
            let _ = reader.cancel();
            break;
        }
    }
    Ok(bytes)
}
