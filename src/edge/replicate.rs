//! Replicate's HTTP API: create, read and cancel predictions, with retries
//! on rate limits and (for reads only) server errors, inside a deadline.

use serde_json::{Map, Value};
use worker::wasm_bindgen::JsValue;
use worker::{Headers, Method};

use super::net::{fetch_with_timeout, now_ms, sleep_ms, text_of, NetError, Outbound};
use crate::backoff::{parse_retry_after, retry_delay_ms};
use crate::credentials::Credential;
use crate::error::ApiError;
use crate::prediction::{upstream_error, Prediction};
use crate::secret_scrub::scrub;

/// How long one read or cancel may take.
pub const READ_TIMEOUT_MS: u64 = 15_000;
/// Slack on top of `Prefer: wait` for a create's answer to arrive.
const CREATE_SLACK_MS: u64 = 10_000;
/// How long a create passed through may take: `Prefer: wait` holds it for
/// up to 60 s.
pub const CREATE_TIMEOUT_MS: u64 = 60_000 + CREATE_SLACK_MS;

/// One answer from Replicate, as received.
pub struct Answer {
    pub status: u16,
    pub headers: Headers,
    pub body: String,
}

impl Answer {
    fn retry_after_secs(&self) -> Option<u64> {
        self.headers.get("Retry-After").ok().flatten().and_then(|v| parse_retry_after(&v))
    }
}

#[derive(Clone)]
pub struct Replicate {
    base: String,
    credential: Credential,
}

impl Replicate {
    pub fn new(api_base: &str, credential: &Credential) -> Self {
        Self { base: api_base.to_owned(), credential: credential.clone() }
    }

    /// One call, no retries. `path` starts with `/v1/`; `body` is JSON text
    /// or a stream passed through; `extra_headers` come last and win.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<JsValue>,
        extra_headers: &[(&str, &str)],
        timeout_ms: u64,
    ) -> Result<Answer, ApiError> {
        let authorization = format!("Bearer {}", self.credential.token());
        let mut headers: Vec<(&str, &str)> = vec![
            ("Authorization", &authorization),
            ("Accept", "application/json"),
            ("User-Agent", concat!("fluxgate/", env!("CARGO_PKG_VERSION"))),
        ];
        if body.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        headers.extend_from_slice(extra_headers);
        let url = format!("{}{}", self.base, path);
        let method = method.to_string();
        let outbound =
            Outbound { method: &method, url: &url, headers: &headers, body: body.as_ref(), manual_redirect: false };
        let token = self.credential.token();
        let answer = fetch_with_timeout(&outbound, timeout_ms, |response| async move {
            let body = text_of(&response).await?;
            // Whatever Replicate (or something in its place) sends back may
            // echo the request; the token it carried never goes further.
            let body = scrub(&body, &[token]);
            Ok(Answer { status: response.status(), headers: Headers(response.headers()), body })
        })
        .await;
        answer.map_err(|e| match e {
            NetError::Timeout => ApiError::new(504, "Replicate did not answer in time"),
            NetError::Failed(why) => {
                ApiError::replicate("could not reach Replicate").with_cause(format!("{path}: {why}"))
            }
        })
    }

    /// Creates a prediction, held open by `Prefer: wait` for up to
    /// `wait_secs` (`None`: answered at once, as it starts).
    /// A 429 is retried (the create was refused, so nothing is paid twice)
    /// while `deadline_ms` allows; a 5xx is not retried.
    pub async fn create(
        &self,
        path: &str,
        body: &Map<String, Value>,
        wait_secs: Option<u64>,
        deadline_ms: u64,
    ) -> Result<Prediction, ApiError> {
        let body = Value::Object(body.clone()).to_string();
        let prefer = wait_secs.map(|secs| format!("wait={secs}"));
        let headers: Vec<(&str, &str)> = prefer.iter().map(|p| ("Prefer", p.as_str())).collect();
        let timeout = wait_secs.unwrap_or(0).saturating_mul(1000).saturating_add(CREATE_SLACK_MS);
        let mut attempt = 0;
        loop {
            let answer = self
                .send(
                    Method::Post,
                    path,
                    Some(body.as_str().into()),
                    &headers,
                    timeout.min(deadline_ms.saturating_sub(now_ms())),
                )
                .await?;
            if answer.status == 429 && self.wait_for_retry(&answer, attempt, deadline_ms).await {
                attempt += 1;
                continue;
            }
            return self.prediction(answer);
        }
    }

    /// Reads a prediction; 429, 5xx and network failures are retried with
    /// backoff while `deadline_ms` allows.
    pub async fn get(&self, id: &str, deadline_ms: u64) -> Result<Prediction, ApiError> {
        let path = format!("/v1/predictions/{id}");
        let mut attempt = 0;
        loop {
            let timeout = READ_TIMEOUT_MS.min(deadline_ms.saturating_sub(now_ms()));
            let result = self.send(Method::Get, &path, None, &[], timeout).await;
            let retry = match &result {
                Ok(answer) if answer.status == 429 || answer.status >= 500 => {
                    self.wait_for_retry(answer, attempt, deadline_ms).await
                }
                Ok(_) => false,
                Err(_) => {
                    let delay = retry_delay_ms(attempt);
                    if now_ms().saturating_add(delay) < deadline_ms {
                        sleep_ms(delay).await;
                        true
                    } else {
                        false
                    }
                }
            };
            if retry {
                attempt += 1;
                continue;
            }
            return self.prediction(result?);
        }
    }

    /// Asks Replicate to cancel; failures are only logged.
    pub async fn cancel(&self, id: &str) {
        let path = format!("/v1/predictions/{id}/cancel");
        match self.send(Method::Post, &path, None, &[], READ_TIMEOUT_MS).await {
            Ok(a) if a.status < 300 => {}
            Ok(a) => worker::console_warn!("cancel {id}: Replicate answered {}", a.status),
            Err(e) => worker::console_warn!("cancel {id}: {e}"),
        }
    }

    /// Cancels a prediction and answers it as Replicate then describes it.
    pub async fn cancel_prediction(&self, id: &str) -> Result<Prediction, ApiError> {
        let path = format!("/v1/predictions/{id}/cancel");
        let answer = self.send(Method::Post, &path, None, &[], READ_TIMEOUT_MS).await?;
        self.prediction(answer)
    }

    /// Sleeps before a retry when the deadline allows it; false when it does not.
    async fn wait_for_retry(&self, answer: &Answer, attempt: u32, deadline_ms: u64) -> bool {
        let delay =
            answer.retry_after_secs().map(|s| s.saturating_mul(1000)).unwrap_or_else(|| retry_delay_ms(attempt));
        if now_ms().saturating_add(delay) >= deadline_ms {
            return false;
        }
        sleep_ms(delay).await;
        true
    }

    fn prediction(&self, answer: Answer) -> Result<Prediction, ApiError> {
        if !(200..300).contains(&answer.status) {
            return Err(upstream_error(answer.status, &answer.body, &self.credential, answer.retry_after_secs()));
        }
        serde_json::from_str(&answer.body)
            .map_err(|e| ApiError::replicate("unreadable prediction").with_cause(format!("unreadable prediction: {e}")))
    }
}
