//! Which Replicate token a request runs with, and whether it may run at all.
//!
//! A caller either brings their own Replicate token (a "user" token, which
//! needs no service auth) or proves it knows the service's `AUTH_TOKEN` with
//! `Authorization: Bearer …` and runs on the service's `REPLICATE_API_TOKEN`.
//! No error built here ever contains a token.

use crate::error::ApiError;
use crate::secret_scrub::check_token_shape;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The error every authentication failure answers with.
pub const UNAUTHORIZED: &str = "Unauthorized access 🚫";
/// Details of the 401 given when a user token arrives but they are disabled.
pub const USER_TOKENS_DISABLED: &str = "User Replicate tokens are disabled on this service";

/// Where a request may carry a token, each as received (untrimmed).
#[derive(Clone, Copy, Default)]
pub struct CredentialSources<'a> {
    /// The `X-Replicate-Token` header.
    pub header_token: Option<&'a str>,
    /// `"replicate_token"` in a POST JSON body.
    pub body_token: Option<&'a str>,
    /// The `replicate_token` query parameter (GET).
    pub query_token: Option<&'a str>,
    /// The raw `Authorization` header value.
    pub authorization: Option<&'a str>,
}

impl std::fmt::Debug for CredentialSources<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialSources")
            .field("header_token", &redacted(self.header_token))
            .field("body_token", &redacted(self.body_token))
            .field("query_token", &redacted(self.query_token))
            .field("authorization", &redacted(self.authorization))
            .finish()
    }
}

/// The service's own secrets; `None` or blank means not configured.
#[derive(Clone, Copy, Default)]
pub struct ServiceSecrets<'a> {
    /// `AUTH_TOKEN`: the bearer callers present to use the service's token.
    pub auth_token: Option<&'a str>,
    /// `REPLICATE_API_TOKEN`: the service's Replicate token.
    pub replicate_token: Option<&'a str>,
}

impl std::fmt::Debug for ServiceSecrets<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceSecrets")
            .field("auth_token", &redacted(self.auth_token))
            .field("replicate_token", &redacted(self.replicate_token))
            .finish()
    }
}

/// The Replicate token a request runs with, and whose it is.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// A token the caller brought.
    User(String),
    /// The service's `REPLICATE_API_TOKEN`.
    Service(String),
}

impl Credential {
    /// The Replicate token itself, for the `Authorization` header to Replicate.
    pub fn token(&self) -> &str {
        match self {
            Credential::User(token) | Credential::Service(token) => token,
        }
    }

    /// Whether the caller brought this token.
    pub fn is_user(&self) -> bool {
        matches!(self, Credential::User(_))
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::User(_) => f.write_str("User(<redacted>)"),
            Credential::Service(_) => f.write_str("Service(<redacted>)"),
        }
    }
}

/// The credential for the `/generate` routes.
///
/// The first non-blank of `header_token`, `body_token`, `query_token` is a
/// user token (trimmed) and needs no service auth; if user tokens are
/// disabled it is a 401. Without one, `authorization` must be
/// `Bearer <auth_token>`, which gives the service's Replicate token.
pub fn resolve(
    sources: &CredentialSources,
    secrets: &ServiceSecrets,
    allow_user_tokens: bool,
) -> Result<Credential, ApiError> {
    let user_token = [sources.header_token, sources.body_token, sources.query_token]
        .into_iter()
        .find_map(|source| source.and_then(non_blank));
    if let Some(token) = user_token {
        return user(token, allow_user_tokens);
    }
    match sources.authorization.and_then(bearer_token) {
        Some(bearer) if is_service_bearer(bearer, secrets) => service(secrets),
        _ => Err(unauthorized()),
    }
}

/// The credential for the Replicate-compatible proxy, whose clients can only
/// send a bearer.
///
/// A non-blank `header_token` (`X-Replicate-Token`) is a user token. Else the
/// bearer decides: the service's `auth_token` gives the service's Replicate
/// token; any other bearer is the caller's own Replicate token, or a plain
/// 401 when user tokens are disabled (it may just be a wrong service token).
/// No bearer at all is a 401.
pub fn resolve_bearer(
    authorization: Option<&str>,
    header_token: Option<&str>,
    secrets: &ServiceSecrets,
    allow_user_tokens: bool,
) -> Result<Credential, ApiError> {
    if let Some(token) = header_token.and_then(non_blank) {
        return user(token, allow_user_tokens);
    }
    match authorization.and_then(bearer_token) {
        Some(bearer) if is_service_bearer(bearer, secrets) => service(secrets),
        Some(bearer) if allow_user_tokens => user(bearer, true),
        _ => Err(unauthorized()),
    }
}

/// The token of an `Authorization: Bearer <token>` value: the scheme is
/// matched case-insensitively, the token is trimmed, and a missing, blank or
/// space-containing token is `None`.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let value = authorization.trim();
    let (scheme, token) = value.split_once(|c: char| c.is_ascii_whitespace())?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    let is_single_word = !token.is_empty() && !token.contains(|c: char| c.is_whitespace());
    is_single_word.then_some(token)
}

/// Whether `a` equals `b`, in time that depends on neither's content nor
/// length: their SHA-256 digests are compared in constant time.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let a = Sha256::digest(a.as_bytes());
    let b = Sha256::digest(b.as_bytes());
    a.as_slice().ct_eq(b.as_slice()).into()
}

/// What `Debug` shows of a secret: only whether it is there.
fn redacted(value: Option<&str>) -> Option<&'static str> {
    value.map(|_| "<redacted>")
}

fn non_blank(value: &str) -> Option<&str> {
    Some(value.trim()).filter(|v| !v.is_empty())
}

fn is_service_bearer(bearer: &str, secrets: &ServiceSecrets) -> bool {
    secrets.auth_token.and_then(non_blank).is_some_and(|expected| constant_time_eq(bearer, expected))
}

/// A caller's own token, once its shape is checked (printable ASCII, no
/// whitespace, bounded): anything else is refused before any use, with an
/// error that does not repeat it.
fn user(token: &str, allow_user_tokens: bool) -> Result<Credential, ApiError> {
    if allow_user_tokens {
        check_token_shape(token)?;
        Ok(Credential::User(token.to_owned()))
    } else {
        Err(unauthorized().with_details(USER_TOKENS_DISABLED))
    }
}

/// The service's Replicate token, for a caller already authenticated
/// otherwise (an API key); a 500 when it is not set.
pub fn resolve_service(secrets: &ServiceSecrets) -> Result<Credential, ApiError> {
    service(secrets)
}

fn service(secrets: &ServiceSecrets) -> Result<Credential, ApiError> {
    match secrets.replicate_token.and_then(non_blank) {
        Some(token) => Ok(Credential::Service(token.to_owned())),
        None => Err(ApiError::new(500, "Server misconfiguration").with_details("REPLICATE_API_TOKEN is not set")),
    }
}

fn unauthorized() -> ApiError {
    ApiError::new(401, UNAUTHORIZED)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUTH: &str = "service-auth-secret";
    const REPLICATE: &str = "r8_service_token";
    const SECRETS: ServiceSecrets<'static> =
        ServiceSecrets { auth_token: Some(AUTH), replicate_token: Some(REPLICATE) };

    /// The expected outcome of one case, compared without ever printing a token.
    #[derive(Debug, PartialEq)]
    enum Outcome {
        User(&'static str),
        Service,
        Unauthorized,
        Disabled,
        Misconfigured,
    }

    fn outcome(result: Result<Credential, ApiError>, user_tokens: &[&'static str]) -> Outcome {
        match result {
            Ok(Credential::Service(t)) => {
                assert_eq!(t, REPLICATE);
                Outcome::Service
            }
            Ok(Credential::User(t)) => {
                Outcome::User(user_tokens.iter().copied().find(|u| u.trim() == t).expect("a token that was sent"))
            }
            Err(e) => {
                for token in user_tokens.iter().chain([&AUTH, &REPLICATE]) {
                    assert!(!e.body().contains(token.trim()), "{e} leaks a token");
                    assert!(!e.to_string().contains(token.trim()), "{e} leaks a token");
                }
                match (e.status, e.error.as_str(), e.details.as_deref()) {
                    (401, UNAUTHORIZED, None) => Outcome::Unauthorized,
                    (401, UNAUTHORIZED, Some(USER_TOKENS_DISABLED)) => Outcome::Disabled,
                    (500, "Server misconfiguration", Some("REPLICATE_API_TOKEN is not set")) => Outcome::Misconfigured,
                    _ => panic!("unexpected error {e}"),
                }
            }
        }
    }

    #[test]
    fn resolve_over_every_combination_of_sources() {
        let headers = [None, Some("r8_header")];
        let bodies = [None, Some("r8_body")];
        let queries = [None, Some("r8_query")];
        let auths = [None, Some("Bearer service-auth-secret"), Some("Bearer wrong")];
        for header in headers {
            for body in bodies {
                for query in queries {
                    for authorization in auths {
                        for allow in [true, false] {
                            let sources = CredentialSources {
                                header_token: header,
                                body_token: body,
                                query_token: query,
                                authorization,
                            };
                            let got =
                                outcome(resolve(&sources, &SECRETS, allow), &["r8_header", "r8_body", "r8_query"]);
                            let user = header.or(body).or(query);
                            let expected = match (user, authorization) {
                                (Some(_), _) if !allow => Outcome::Disabled,
                                (Some(u), _) => Outcome::User(u),
                                (None, Some(a)) if a.ends_with(AUTH) => Outcome::Service,
                                (None, _) => Outcome::Unauthorized,
                            };
                            assert_eq!(got, expected, "{sources:?} allow={allow}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn resolve_skips_blank_sources_and_trims_tokens() {
        let sources = CredentialSources {
            header_token: Some("  "),
            body_token: Some(""),
            query_token: Some(" r8_query "),
            authorization: None,
        };
        assert_eq!(resolve(&sources, &SECRETS, true).unwrap(), Credential::User("r8_query".into()));
        let blank_only = CredentialSources { header_token: Some(" "), ..Default::default() };
        assert_eq!(outcome(resolve(&blank_only, &SECRETS, false), &[]), Outcome::Unauthorized);
    }

    #[test]
    fn resolve_without_configured_secrets() {
        let with_bearer = CredentialSources { authorization: Some("Bearer service-auth-secret"), ..Default::default() };
        let no_auth = ServiceSecrets { auth_token: None, replicate_token: Some(REPLICATE) };
        let blank_auth = ServiceSecrets { auth_token: Some(" "), replicate_token: Some(REPLICATE) };
        let no_replicate = ServiceSecrets { auth_token: Some(AUTH), replicate_token: None };
        let blank_replicate = ServiceSecrets { auth_token: Some(AUTH), replicate_token: Some("") };
        assert_eq!(outcome(resolve(&with_bearer, &no_auth, true), &[]), Outcome::Unauthorized);
        assert_eq!(outcome(resolve(&with_bearer, &blank_auth, true), &[]), Outcome::Unauthorized);
        assert_eq!(outcome(resolve(&with_bearer, &no_replicate, true), &[]), Outcome::Misconfigured);
        assert_eq!(outcome(resolve(&with_bearer, &blank_replicate, true), &[]), Outcome::Misconfigured);
        // Auth is checked before the missing Replicate token is revealed.
        let wrong = CredentialSources { authorization: Some("Bearer nope"), ..Default::default() };
        assert_eq!(outcome(resolve(&wrong, &no_replicate, true), &[]), Outcome::Unauthorized);
        // A user token needs neither secret.
        let user = CredentialSources { header_token: Some("r8_u"), ..Default::default() };
        let none = ServiceSecrets::default();
        assert_eq!(outcome(resolve(&user, &none, true), &["r8_u"]), Outcome::User("r8_u"));
        // An empty bearer never matches an unset auth token.
        let empty_bearer = CredentialSources { authorization: Some("Bearer "), ..Default::default() };
        assert_eq!(outcome(resolve(&empty_bearer, &none, true), &[]), Outcome::Unauthorized);
    }

    #[test]
    fn resolve_bearer_over_every_combination() {
        let headers = [None, Some("r8_header"), Some("  ")];
        let auths =
            [None, Some("Bearer service-auth-secret"), Some("Bearer r8_bearer"), Some("Basic abc"), Some("Bearer ")];
        for header in headers {
            for authorization in auths {
                for allow in [true, false] {
                    let got =
                        outcome(resolve_bearer(authorization, header, &SECRETS, allow), &["r8_header", "r8_bearer"]);
                    let header = header.filter(|h| !h.trim().is_empty());
                    let expected = match (header, authorization) {
                        (Some(_), _) if !allow => Outcome::Disabled,
                        (Some(h), _) => Outcome::User(h),
                        (None, Some(a)) if a.ends_with(AUTH) => Outcome::Service,
                        (None, Some("Bearer r8_bearer")) if allow => Outcome::User("r8_bearer"),
                        (None, _) => Outcome::Unauthorized,
                    };
                    assert_eq!(got, expected, "header={header:?} auth={authorization:?} allow={allow}");
                }
            }
        }
    }

    #[test]
    fn resolve_bearer_without_configured_secrets() {
        let none = ServiceSecrets::default();
        let no_replicate = ServiceSecrets { auth_token: Some(AUTH), replicate_token: None };
        let bearer = Some("Bearer service-auth-secret");
        assert_eq!(outcome(resolve_bearer(bearer, None, &no_replicate, true), &[]), Outcome::Misconfigured);
        // With no auth token configured, every bearer is the caller's own.
        assert_eq!(
            outcome(resolve_bearer(bearer, None, &none, true), &["service-auth-secret"]),
            Outcome::User("service-auth-secret")
        );
        assert_eq!(outcome(resolve_bearer(bearer, None, &none, false), &[]), Outcome::Unauthorized);
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER   abc  "), Some("abc"));
        assert_eq!(bearer_token("  Bearer\tabc"), Some("abc"));
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer    "), None);
        assert_eq!(bearer_token("Bearerabc"), None);
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Token abc"), None);
        assert_eq!(bearer_token("Bearer a b"), None);
        assert_eq!(bearer_token(""), None);
        assert_eq!(bearer_token("Bé abc"), None);
    }

    #[test]
    fn constant_time_equality() {
        assert!(constant_time_eq("secret", "secret"));
        assert!(constant_time_eq("", ""));
        assert!(!constant_time_eq("secret", "secreT"));
        assert!(!constant_time_eq("secret", "secret2"));
        assert!(!constant_time_eq("secret", ""));
    }

    #[test]
    fn debug_never_prints_a_token() {
        let user = Credential::User("r8_user_secret".into());
        let service = Credential::Service("r8_service_secret".into());
        assert_eq!(format!("{user:?}"), "User(<redacted>)");
        assert_eq!(format!("{service:?}"), "Service(<redacted>)");
        assert!(!format!("{SECRETS:?}").contains(AUTH));
        assert!(!format!("{SECRETS:?}").contains(REPLICATE));
        let sources = CredentialSources {
            header_token: Some("r8_h"),
            body_token: Some("r8_b"),
            query_token: None,
            authorization: Some("Bearer xyz"),
        };
        let printed = format!("{sources:?}");
        assert!(printed.contains("<redacted>") && printed.contains("None"), "{printed}");
        for secret in ["r8_h", "r8_b", "xyz"] {
            assert!(!printed.contains(secret), "{printed}");
        }
    }

    #[test]
    fn token_and_is_user() {
        let user = Credential::User("u".into());
        let service = Credential::Service("s".into());
        assert_eq!(user.token(), "u");
        assert_eq!(service.token(), "s");
        assert!(user.is_user());
        assert!(!service.is_user());
    }

    #[test]
    fn malformed_user_tokens_are_refused_without_echo() {
        let secrets = ServiceSecrets { auth_token: Some("svc-auth"), replicate_token: Some("r8_service") };
        for token in ["r8_abc\u{201d}", "r8_abc…", "r8_é", "r8_a\rb", "r8_a\0b", "r8_a\nX-Evil: 1", &"r".repeat(300)]
        {
            let sources = CredentialSources { header_token: Some(token), ..Default::default() };
            let e = resolve(&sources, &secrets, true).unwrap_err();
            assert_eq!((e.status, e.error.as_str()), (400, "Malformed token"), "{token:?}");
            assert!(!e.body().contains(token.trim()), "{token:?} echoed");
            let bearer = format!("Bearer {token}");
            if let Err(e) = resolve_bearer(Some(&bearer), None, &secrets, true) {
                assert!(!e.body().contains(token.trim()));
                assert!(e.status == 400 || e.status == 401);
            } else {
                panic!("{token:?} accepted as a bearer");
            }
        }
    }
}
