//! Outbound HTTP with a timeout on every call, and the clock.

use std::time::Duration;

use futures_util::future::{select, Either};
use worker::{AbortController, Delay, Fetch, Request, Response};

#[derive(Debug)]
pub enum NetError {
    Timeout,
    Failed(String),
}

/// Milliseconds since the epoch (`SystemTime::now` panics on wasm32).
pub fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}

pub async fn sleep_ms(ms: u64) {
    Delay::from(Duration::from_millis(ms)).await;
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
    let timer = Delay::from(Duration::from_millis(timeout_ms));
    futures_util::pin_mut!(work);
    match select(work, timer).await {
        Either::Left((result, _)) => result,
        Either::Right(_) => {
            controller.abort();
            Err(NetError::Timeout)
        }
    }
}
