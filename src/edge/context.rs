//! What every handler needs, built once per request: the configuration and
//! the secrets (each read once per isolate: vars and secrets cannot change
//! without a new deployment, hence a new isolate), the store, the base URL
//! links are built on, a request id, and the one place where a caller is
//! identified.

use std::cell::RefCell;
use std::sync::OnceLock;

use super::request::Request;
use worker::{Context, Env};

use super::replicate::Replicate;
use super::store::Store;
use super::usage::UsageKey;
use crate::api_keys::KeyRecord;
use crate::config::Config;
use crate::credentials::{self, Credential, CredentialSources, ServiceSecrets};
use crate::error::ApiError;
use crate::request_log::Noted;
use crate::usage::{token_subject, SERVICE_SUBJECT};

static CONFIG: OnceLock<Result<Config, ApiError>> = OnceLock::new();
static SECRETS: OnceLock<Secrets> = OnceLock::new();

/// The configuration, read from the vars once per isolate.
pub fn config_of(env: &Env) -> &'static Result<Config, ApiError> {
    CONFIG.get_or_init(|| Config::from_vars(|name| env.var(name).ok().map(|v| v.to_string())))
}

/// The service's secrets, as set with `wrangler secret put`.
pub struct Secrets {
    pub auth_token: Option<String>,
    pub replicate_token: Option<String>,
    /// The secret Replicate signs its webhooks with (`whsec_…`): with it the
    /// service registers and verifies its own webhook on what it creates.
    pub replicate_webhook_secret: Option<String>,
    /// The key callers' webhook secrets are derived from
    /// (`WEBHOOK_SIGNING_KEY`, else `AUTH_TOKEN`).
    pub webhook_signing_key: Option<String>,
}

impl Secrets {
    fn read(env: &Env) -> Self {
        let read = |name: &str| env.secret(name).ok().map(|s| s.to_string()).filter(|s| !s.is_empty());
        let auth_token = read("AUTH_TOKEN");
        Secrets {
            webhook_signing_key: read("WEBHOOK_SIGNING_KEY").or_else(|| auth_token.clone()),
            auth_token,
            replicate_token: read("REPLICATE_API_TOKEN"),
            replicate_webhook_secret: read("REPLICATE_WEBHOOK_SECRET"),
        }
    }

    pub fn borrow(&self) -> ServiceSecrets<'_> {
        ServiceSecrets { auth_token: self.auth_token.as_deref(), replicate_token: self.replicate_token.as_deref() }
    }
}

/// Where a caller may have put a Replicate token of their own, besides the
/// headers (which the context reads itself).
#[derive(Default)]
pub struct TokenHints<'a> {
    /// `replicate_token` in a POST body.
    pub body: Option<&'a str>,
    /// `replicate_token` in a GET query.
    pub query: Option<&'a str>,
}

/// Who a request comes from: the Replicate token it runs on, the usage
/// subject it is counted (and owns images) as, and its API key, if any.
/// Derefs to the credential.
pub struct Caller {
    pub credential: Credential,
    /// `service` (AUTH_TOKEN), a key id, or `tok_<hash>` of a caller's own token.
    pub subject: String,
    pub key: Option<KeyRecord>,
}

impl Caller {
    fn from_credential(credential: Credential) -> Self {
        let subject = match &credential {
            Credential::User(token) => token_subject(token),
            Credential::Service(_) => SERVICE_SUBJECT.to_owned(),
        };
        Caller { credential, subject, key: None }
    }

    /// The operator: `AUTH_TOKEN`, not an API key.
    pub fn is_operator(&self) -> bool {
        self.key.is_none() && !self.credential.is_user()
    }

    /// The models the caller's key is restricted to, if any.
    pub fn allowed_models(&self) -> Option<&[String]> {
        self.key.as_ref().and_then(|k| k.models.as_deref())
    }
}

impl std::ops::Deref for Caller {
    type Target = Credential;
    fn deref(&self) -> &Credential {
        &self.credential
    }
}

pub struct RequestContext {
    pub env: Env,
    /// The request's; `None` for work done after a request or by the cron,
    /// whose background work is kept in `pending` until `settle`.
    ctx: Option<Context>,
    pending: RefCell<Vec<futures_util::future::LocalBoxFuture<'static, ()>>>,
    config: &'static Result<Config, ApiError>,
    pub secrets: &'static Secrets,
    store: Result<Store, ApiError>,
    /// Where links handed out point: `PUBLIC_BASE_URL`, else the request's origin.
    pub base_url: String,
    /// Whether `base_url` comes from the request (no `PUBLIC_BASE_URL`).
    pub base_from_request: bool,
    /// Names this request in log lines.
    pub request_id: String,
    authorization: Option<String>,
    header_token: Option<String>,
    /// The subject of the caller, once identified.
    subject: RefCell<Option<String>>,
    /// What handlers note for the request's log line.
    noted: RefCell<Noted>,
    /// The caller's nearest limit, as `RateLimit-*` headers for the answer.
    rate_limit: RefCell<Option<Vec<(&'static str, String)>>>,
    /// Usage this request counted whose write to KV is not scheduled yet
    /// (see `usage::count_later`).
    counted: RefCell<Vec<UsageKey>>,
}

impl RequestContext {
    pub fn new(req: &Request, env: Env, ctx: Context) -> Self {
        let config = config_of(&env);
        let secrets = SECRETS.get_or_init(|| Secrets::read(&env));
        let configured_base = config.as_ref().ok().and_then(|c| c.public_base_url.clone());
        let base_from_request = configured_base.is_none();
        let base_url = configured_base.unwrap_or_else(|| req.origin().to_owned());
        let header = |name: &str| req.headers().get(name).ok().flatten();
        Self {
            store: Store::from_env(&env),
            env,
            ctx: Some(ctx),
            pending: RefCell::new(Vec::new()),
            config,
            secrets,
            base_url,
            base_from_request,
            request_id: request_id(),
            authorization: header("Authorization"),
            header_token: header("X-Replicate-Token"),
            subject: RefCell::new(None),
            noted: RefCell::new(Noted::default()),
            rate_limit: RefCell::new(None),
            counted: RefCell::new(Vec::new()),
        }
    }

    /// A context for work outside any request (after one, or the cron):
    /// links are built on `base_url`, and no caller is known.
    pub fn detached(env: Env, base_url: String) -> Result<Self, ApiError> {
        let config = config_of(&env);
        let secrets = SECRETS.get_or_init(|| Secrets::read(&env));
        let store = Store::from_env(&env);
        store.as_ref().map_err(Clone::clone)?;
        Ok(Self {
            store,
            env,
            ctx: None,
            pending: RefCell::new(Vec::new()),
            config,
            secrets,
            base_url,
            base_from_request: false,
            request_id: request_id(),
            authorization: None,
            header_token: None,
            subject: RefCell::new(None),
            noted: RefCell::new(Noted::default()),
            rate_limit: RefCell::new(None),
            counted: RefCell::new(Vec::new()),
        })
    }

    /// Runs the background work a detached context was given.
    pub async fn settle(&self) {
        loop {
            let work: Vec<_> = self.pending.borrow_mut().drain(..).collect();
            if work.is_empty() {
                return;
            }
            super::join::join_all(work).await;
        }
    }

    pub fn config(&self) -> Result<&'static Config, ApiError> {
        self.config.as_ref().map_err(Clone::clone)
    }

    /// The configuration error, if the vars are malformed.
    pub fn config_error(&self) -> Option<&'static ApiError> {
        self.config.as_ref().err()
    }

    pub fn store(&self) -> Result<&Store, ApiError> {
        self.store.as_ref().map_err(Clone::clone)
    }

    /// Notes usage counted under `key`, to be written later.
    pub fn defer_usage(&self, key: UsageKey) {
        self.counted.borrow_mut().push(key);
    }

    /// The usage counted so far whose write is not scheduled: whoever takes
    /// it writes it (`usage::write_counted`).
    pub fn take_usage(&self) -> Vec<UsageKey> {
        std::mem::take(&mut *self.counted.borrow_mut())
    }

    /// Runs `work` after the answer, within the platform's `waitUntil` budget.
    pub fn wait_until(&self, work: impl std::future::Future<Output = ()> + 'static) {
        match &self.ctx {
            Some(ctx) => ctx.wait_until(work),
            None => self.pending.borrow_mut().push(Box::pin(work)),
        }
    }

    /// Who a `/generate` request comes from and the Replicate token it runs
    /// on: a token of the caller's own (header, body or query), an API key
    /// (`Bearer fg_…`, on the service's token), or the service's token for a
    /// caller presenting `AUTH_TOKEN` (see `credentials::resolve`).
    pub async fn caller(&self, hints: TokenHints<'_>) -> Result<Caller, ApiError> {
        let sources = CredentialSources {
            header_token: self.header_token.as_deref(),
            body_token: hints.body,
            query_token: hints.query,
            authorization: self.authorization.as_deref(),
        };
        let own_token = [sources.header_token, sources.body_token, sources.query_token]
            .into_iter()
            .any(|t| t.is_some_and(|t| !t.trim().is_empty()));
        let caller = match self.api_key() {
            Some(key) if !own_token => self.key_caller(key).await?,
            _ => Caller::from_credential(credentials::resolve(
                &sources,
                &self.secrets.borrow(),
                self.config()?.allow_user_tokens,
            )?),
        };
        self.subject.replace(Some(caller.subject.clone()));
        Ok(caller)
    }

    /// Who a `/replicate/v1` request comes from, whose clients only send a
    /// bearer (see `credentials::resolve_bearer`): an API key is one too.
    pub async fn bearer_caller(&self) -> Result<Caller, ApiError> {
        let own_token = self.header_token.as_deref().is_some_and(|t| !t.trim().is_empty());
        let caller = match self.api_key() {
            Some(key) if !own_token => self.key_caller(key).await?,
            _ => Caller::from_credential(credentials::resolve_bearer(
                self.authorization.as_deref(),
                self.header_token.as_deref(),
                &self.secrets.borrow(),
                self.config()?.allow_user_tokens,
            )?),
        };
        self.subject.replace(Some(caller.subject.clone()));
        Ok(caller)
    }

    /// Whether the request presents `AUTH_TOKEN` itself.
    pub fn is_operator(&self) -> bool {
        let bearer = self.authorization.as_deref().and_then(credentials::bearer_token);
        let expected = self.secrets.auth_token.as_deref().filter(|t| !t.trim().is_empty());
        matches!((bearer, expected), (Some(b), Some(e)) if credentials::constant_time_eq(b, e.trim()))
    }

    /// The subject of the caller identified for this request, if any.
    /// Notes something for the request's log line.
    pub fn note(&self, f: impl FnOnce(&mut Noted)) {
        f(&mut self.noted.borrow_mut());
    }

    /// Records the caller's nearest limit for the answer's headers.
    pub fn set_rate_limit(&self, headers: Vec<(&'static str, String)>) {
        self.rate_limit.replace(Some(headers));
    }

    /// The `RateLimit-*` headers for the answer, if a limit applied.
    pub fn rate_limit(&self) -> Option<Vec<(&'static str, String)>> {
        self.rate_limit.borrow().clone()
    }

    pub fn noted(&self) -> Noted {
        self.noted.borrow().clone()
    }

    pub fn subject(&self) -> Option<String> {
        self.subject.borrow().clone()
    }

    /// The bearer, when it has the shape of an API key.
    fn api_key(&self) -> Option<&str> {
        let bearer = self.authorization.as_deref().and_then(credentials::bearer_token)?;
        bearer.starts_with(crate::api_keys::KEY_PREFIX).then_some(bearer)
    }

    async fn key_caller(&self, key: &str) -> Result<Caller, ApiError> {
        let record = super::keys::verify(self, key).await?;
        let credential = credentials::resolve_service(&self.secrets.borrow())?;
        Ok(Caller { credential, subject: record.id.clone(), key: Some(record) })
    }

    /// A client for Replicate's API on `credential`.
    pub fn replicate(&self, credential: &Credential) -> Result<Replicate, ApiError> {
        Ok(Replicate::new(&self.config()?.api_base, credential))
    }

    /// A link to one stored image.
    pub fn image_url(&self, id: &str) -> String {
        format!("{}/image/{id}", self.base_url)
    }

    /// Logs an error that is ours (5xx), with its cause.
    pub fn log_error(&self, e: &ApiError) {
        if e.status >= 500 {
            worker::console_error!("[{}] {e}", self.request_id);
        }
    }
}

/// 16 hex digits from the platform's random source.
fn request_id() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return String::from("0000000000000000");
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
