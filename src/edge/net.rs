//! Outbound HTTP with a deadline on every call, output fetches that follow
//! redirects only to allowed hosts, and the clock.

use std::time::Duration;

use futures_util::future::{select, Either};
use worker::js_sys;
use worker::wasm_bindgen::JsCast;
use worker::wasm_bindgen_futures::JsFuture;
use worker::web_sys::{ReadableStream, ReadableStreamDefaultReader};
use worker::{AbortController, Delay, Fetch, Method, Request, RequestInit, RequestRedirect, Response};

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
    worker::Date::now().as_millis()
}

pub async fn sleep_ms(ms: u64) {
    Delay::from(Duration::from_millis(ms)).await;
}

/// Runs `work` until it ends or `deadline_ms` passes; then `on_timeout`
/// runs (to abort what `work` started).
pub async fn until<T>(
    deadline_ms: u64,
    work: impl std::future::Future<Output = Result<T, NetError>>,
    on_timeout: impl FnOnce(),
) -> Result<T, NetError> {
    let left = deadline_ms.saturating_sub(now_ms());
    if left == 0 {
        on_timeout();
        return Err(NetError::Timeout);
    }
    let timer = Delay::from(Duration::from_millis(left));
    futures_util::pin_mut!(work);
    match select(work, timer).await {
        Either::Left((result, _)) => result,
        Either::Right(_) => {
            on_timeout();
            Err(NetError::Timeout)
        }
    }
}

/// Sends `request` and runs `read` on the answer, both within `timeout_ms`;
/// on timeout the request is aborted.
pub async fn fetch_with_timeout<T, F, Fut>(request: Request, timeout_ms: u64, read: F) -> Result<T, NetError>
where
    F: FnOnce(Response) -> Fut,
    Fut: std::future::Future<Output = Result<T, NetError>>,
{
    let controller = AbortController::default();
    let signal = controller.signal();
    let work = async move {
        let response =
            Fetch::Request(request).send_with_signal(&signal).await.map_err(|e| NetError::Failed(e.to_string()))?;
        read(response).await
    };
    until(now_ms().saturating_add(timeout_ms), work, || controller.abort()).await
}

/// Fetches an output URL with no credential, following at most
/// `MAX_REDIRECTS` redirects by hand: each `Location` must itself be an
/// allowed output URL (see `output::redirect_target`), so no hop reaches a
/// host outside the allowlist. Then `read` runs on the final answer; all of
/// it within `deadline_ms`.
pub async fn fetch_output<T, F, Fut>(
    url: &str,
    method: Method,
    extra_hosts: &[String],
    deadline_ms: u64,
    read: F,
) -> Result<T, NetError>
where
    F: FnOnce(Response) -> Fut,
    Fut: std::future::Future<Output = Result<T, NetError>>,
{
    let controller = AbortController::default();
    let signal = controller.signal();
    let work = async {
        let mut current = url.to_owned();
        for _ in 0..=MAX_REDIRECTS {
            let mut init = RequestInit::new();
            init.with_method(method.clone()).with_redirect(RequestRedirect::Manual);
            let request = Request::new_with_init(&current, &init).map_err(|e| NetError::Failed(e.to_string()))?;
            let response =
                Fetch::Request(request).send_with_signal(&signal).await.map_err(|e| NetError::Failed(e.to_string()))?;
            if !matches!(response.status_code(), 301 | 302 | 303 | 307 | 308) {
                return read(response).await;
            }
            let location = response.headers().get("Location").ok().flatten().unwrap_or_default();
            current = redirect_target(&current, &location, extra_hosts)
                .map_err(|e| NetError::Failed(e.details.unwrap_or_default()))?;
        }
        Err(NetError::Failed(format!("output redirected more than {MAX_REDIRECTS} times")))
    };
    until(deadline_ms, work, || controller.abort()).await
}

/// Reads `stream` into memory until it ends or `cap` bytes are in (then it
/// is cancelled; the last chunk may pass `cap`, for the caller to refuse).
/// Memory stays bounded by `cap` plus one chunk, whatever the stream holds.
pub async fn read_capped(stream: &ReadableStream, cap: usize) -> Result<Vec<u8>, NetError> {
    let reader: ReadableStreamDefaultReader = stream.get_reader().unchecked_into();
    let mut bytes = Vec::new();
    loop {
        let step =
            JsFuture::from(reader.read()).await.map_err(|_| NetError::Failed("output stream broke off".into()))?;
        let done = js_sys::Reflect::get(&step, &"done".into()).map(|d| d.is_truthy()).unwrap_or(true);
        if done {
            break;
        }
        let chunk = js_sys::Reflect::get(&step, &"value".into()).unwrap_or_default();
        let chunk: js_sys::Uint8Array = chunk.unchecked_into();
        bytes.extend_from_slice(&chunk.to_vec());
        if bytes.len() >= cap {
            let _ = reader.cancel();
            break;
        }
    }
    Ok(bytes)
}
