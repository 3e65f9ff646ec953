//! Cross-origin (CORS) decisions, as header lists the edge adds to responses.
//!
//! The API policy comes from the `CORS_ORIGINS` var, a comma-separated list:
//! - unset or blank: no cross-origin access (no CORS headers, preflights
//!   refused);
//! - exact origins such as `https://app.example.com` (scheme `http` or
//!   `https`, a host, an optional port; no path, query or userinfo): those
//!   origins are echoed in `Access-Control-Allow-Origin` with
//!   `Access-Control-Allow-Credentials: true`, and every answer carries
//!   `Vary: Origin`;
//! - `*` alone: any origin, answered with a literal `*` and never with
//!   credentials.
//!
//! `null` (the origin of sandboxed frames and local files) is never an
//! allowed exact origin. `/image/{id}` uses [`CorsPolicy::public_read`]: any
//! origin, `*`, no credentials, reads only.

use crate::error::ApiError;

/// Methods the API policy allows cross-origin.
pub const API_METHODS: &[&str] = &["GET", "HEAD", "POST", "DELETE"];
/// Request headers the API policy allows cross-origin (besides the
/// CORS-safelisted ones): credentials (`Authorization`, `X-Replicate-Token`),
/// the body's type, Replicate's `Prefer: wait` and `Cancel-After`, and retry
/// and cache control.
pub const API_REQUEST_HEADERS: &[&str] = &[
    "Authorization",
    "Content-Type",
    "X-Replicate-Token",
    "Prefer",
    "Cancel-After",
    "Idempotency-Key",
    "Cache-Control",
    "If-None-Match",
];
/// Response headers the API policy lets scripts read.
pub const API_EXPOSED_HEADERS: &[&str] = &[
    "Location",
    "Retry-After",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "X-Request-Id",
    "X-Cache",
    "ETag",
    "Content-Range",
];
/// Methods [`CorsPolicy::public_read`] allows.
pub const READ_METHODS: &[&str] = &["GET", "HEAD"];
/// Request headers [`CorsPolicy::public_read`] allows.
pub const READ_REQUEST_HEADERS: &[&str] = &["Range", "If-None-Match", "If-Modified-Since", "If-Range"];
/// Response headers [`CorsPolicy::public_read`] lets scripts read.
pub const READ_EXPOSED_HEADERS: &[&str] =
    &["Content-Range", "Content-Length", "Accept-Ranges", "ETag", "Last-Modified", "X-Request-Id"];
/// How long a browser may cache a preflight, in seconds (Chromium's cap).
pub const MAX_AGE_SECS: u32 = 7200;

/// A header list to add to a response.
pub type Headers = Vec<(&'static str, String)>;

/// Which origins a policy allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origins {
    /// No cross-origin access.
    None,
    /// Any origin, answered with `*`, never with credentials.
    Any,
    /// Exactly these origins (normalised: lowercase, no default port),
    /// echoed, with credentials.
    List(Vec<String>),
}

/// The answer to a preflight (`OPTIONS` with `Access-Control-Request-Method`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preflight {
    /// Answer 204 with these headers.
    Allowed(Headers),
    /// Answer without CORS headers (the browser then blocks the request);
    /// carries `Vary: Origin` when the answer depends on the origin.
    Refused(Headers),
}

/// A CORS policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsPolicy {
    pub origins: Origins,
    methods: &'static [&'static str],
    request_headers: &'static [&'static str],
    exposed_headers: &'static [&'static str],
}

impl CorsPolicy {
    /// The API policy from the `CORS_ORIGINS` var. A malformed entry is a
    /// 500 naming it, as for other vars.
    pub fn parse(var: Option<&str>) -> Result<Self, ApiError> {
        let entries: Vec<&str> = var.unwrap_or_default().split(',').map(str::trim).filter(|e| !e.is_empty()).collect();
        let origins = if entries.is_empty() {
            Origins::None
        } else if entries.contains(&"*") {
            if entries.len() > 1 {
                return Err(misconfigured("'*' must stand alone".to_owned()));
            }
            Origins::Any
        } else {
            let mut list: Vec<String> = Vec::with_capacity(entries.len());
            for entry in entries {
                let origin = normalize_origin(entry).ok_or_else(|| {
                    misconfigured(format!("'{entry}' is not an origin such as https://app.example.com"))
                })?;
                if !list.contains(&origin) {
                    list.push(origin);
                }
            }
            Origins::List(list)
        };
        Ok(Self {
            origins,
            methods: API_METHODS,
            request_headers: API_REQUEST_HEADERS,
            exposed_headers: API_EXPOSED_HEADERS,
        })
    }

    /// The policy of public images: any origin, `*`, no credentials, reads only.
    pub fn public_read() -> Self {
        Self {
            origins: Origins::Any,
            methods: READ_METHODS,
            request_headers: READ_REQUEST_HEADERS,
            exposed_headers: READ_EXPOSED_HEADERS,
        }
    }

    /// Whether a request's `Origin` value may read responses.
    pub fn allows_origin(&self, origin: &str) -> bool {
        match &self.origins {
            Origins::None => false,
            Origins::Any => true,
            Origins::List(list) => list.iter().any(|allowed| allowed == origin),
        }
    }

    /// The answer to a preflight, from its `Origin`,
    /// `Access-Control-Request-Method` and `Access-Control-Request-Headers`.
    /// Allowed only when the origin is, the method is one of the policy's
    /// (exact, case-sensitive) and every requested header is one of the
    /// policy's (any case).
    pub fn preflight(&self, origin: Option<&str>, method: Option<&str>, request_headers: Option<&str>) -> Preflight {
        let method_ok = method.is_some_and(|m| self.methods.contains(&m));
        let headers_ok = request_headers
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .all(|h| self.request_headers.iter().any(|allowed| allowed.eq_ignore_ascii_case(h)));
        let origin = match origin {
            Some(origin) if self.allows_origin(origin) && method_ok && headers_ok => origin,
            _ => return Preflight::Refused(self.vary()),
        };
        let mut headers = self.allow_origin(origin);
        headers.push(("Access-Control-Allow-Methods", self.methods.join(", ")));
        headers.push(("Access-Control-Allow-Headers", self.request_headers.join(", ")));
        headers.push(("Access-Control-Max-Age", MAX_AGE_SECS.to_string()));
        Preflight::Allowed(headers)
    }

    /// The CORS headers of an ordinary response to a request with `origin`:
    /// none when the origin is absent or not allowed (but `Vary: Origin`
    /// under a list policy).
    pub fn actual(&self, origin: Option<&str>) -> Headers {
        match origin {
            Some(origin) if self.allows_origin(origin) => {
                let mut headers = self.allow_origin(origin);
                headers.push(("Access-Control-Expose-Headers", self.exposed_headers.join(", ")));
                headers
            }
            _ => self.vary(),
        }
    }

    /// `Access-Control-Allow-Origin` (and credentials, and `Vary`) for an
    /// allowed origin.
    fn allow_origin(&self, origin: &str) -> Headers {
        match self.origins {
            Origins::List(_) => vec![
                ("Access-Control-Allow-Origin", origin.to_owned()),
                ("Access-Control-Allow-Credentials", "true".to_owned()),
                ("Vary", "Origin".to_owned()),
            ],
            _ => vec![("Access-Control-Allow-Origin", "*".to_owned())],
        }
    }

    /// `Vary: Origin` when answers depend on the origin.
    fn vary(&self) -> Headers {
        match self.origins {
            Origins::List(_) => vec![("Vary", "Origin".to_owned())],
            _ => Vec::new(),
        }
    }
}

/// `scheme://host[:port]` lowercased, without a default port and without a
/// single trailing `/`; `None` for anything else (paths, queries, userinfo,
/// wildcards, `null`, schemes other than http and https).
pub fn normalize_origin(entry: &str) -> Option<String> {
    let lower = entry.trim().to_ascii_lowercase();
    let lower = lower.strip_suffix('/').unwrap_or(&lower);
    let (scheme, authority) = lower.split_once("://")?;
    let default_port = match scheme {
        "https" => "443",
        "http" => "80",
        _ => return None,
    };
    let (host, port) = split_port(authority)?;
    if !is_host(host) {
        return None;
    }
    match port {
        Some(port) if port != default_port => Some(format!("{scheme}://{host}:{port}")),
        _ => Some(format!("{scheme}://{host}")),
    }
}

/// Host and optional port of an authority; the port is 1 to 65535 without
/// leading zeros.
fn split_port(authority: &str) -> Option<(&str, Option<&str>)> {
    let (host, port) = match authority.rsplit_once(':') {
        // A bracketed IPv6 host has colons of its own.
        Some((host, port)) if !port.contains(']') => (host, Some(port)),
        _ => (authority, None),
    };
    let port_ok = port.is_none_or(|p| {
        !p.starts_with('0') && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok()
    });
    port_ok.then_some((host, port))
}

/// A DNS name or IPv4 address (labels of `a-z0-9-`, not starting or ending
/// with `-`), or a bracketed IPv6 address.
fn is_host(host: &str) -> bool {
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.contains(':') && v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

fn misconfigured(why: String) -> ApiError {
    ApiError::new(500, "Server misconfiguration").with_details(format!("CORS_ORIGINS: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = "https://app.example.com";

    fn list() -> CorsPolicy {
        CorsPolicy::parse(Some("https://app.example.com, http://localhost:5173")).unwrap()
    }

    fn get<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
        headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn allowed(p: Preflight) -> Headers {
        match p {
            Preflight::Allowed(h) => h,
            Preflight::Refused(_) => panic!("refused"),
        }
    }

    fn never_star_with_credentials(headers: &Headers) {
        if get(headers, "Access-Control-Allow-Origin") == Some("*") {
            assert_eq!(get(headers, "Access-Control-Allow-Credentials"), None, "{headers:?}");
        }
    }

    #[test]
    fn parse_normalises_and_validates() {
        let p = CorsPolicy::parse(Some(
            " HTTPS://App.Example.COM/ ,http://localhost:5173,https://a.example:443,http://b.example:80,\
             http://[::1]:8080,https://app.example.com,,",
        ))
        .unwrap();
        assert_eq!(
            p.origins,
            Origins::List(vec![
                APP.into(),
                "http://localhost:5173".into(),
                "https://a.example".into(),
                "http://b.example".into(),
                "http://[::1]:8080".into(),
            ])
        );
        assert_eq!(CorsPolicy::parse(None).unwrap().origins, Origins::None);
        assert_eq!(CorsPolicy::parse(Some(" , ")).unwrap().origins, Origins::None);
        assert_eq!(CorsPolicy::parse(Some(" * ")).unwrap().origins, Origins::Any);
    }

    #[test]
    fn parse_refuses_malformed_entries_by_name() {
        for bad in [
            "app.example.com",
            "ftp://app.example.com",
            "https://app.example.com/path",
            "https://app.example.com?x=1",
            "https://user@app.example.com",
            "https://*.example.com",
            "https://",
            "https://app.example.com:0",
            "https://app.example.com:65536",
            "https://app.example.com:08080",
            "https://app.example.com:",
            "https://-bad.example.com",
            "https://app..example.com",
            "https://app_example.com",
            "null",
            "https://app.example.com, *",
        ] {
            let e = CorsPolicy::parse(Some(bad)).unwrap_err();
            assert_eq!(e.status, 500, "{bad}");
            assert!(e.details.unwrap().starts_with("CORS_ORIGINS"), "{bad}");
        }
        let e = CorsPolicy::parse(Some("https://ok.example, https://bad.example/x")).unwrap_err();
        assert!(e.details.unwrap().contains("https://bad.example/x"));
    }

    #[test]
    fn listed_origins_are_echoed_with_credentials() {
        let h = list().actual(Some(APP));
        assert_eq!(get(&h, "Access-Control-Allow-Origin"), Some(APP));
        assert_eq!(get(&h, "Access-Control-Allow-Credentials"), Some("true"));
        assert_eq!(get(&h, "Vary"), Some("Origin"));
        let exposed = get(&h, "Access-Control-Expose-Headers").unwrap();
        for name in ["Location", "Retry-After", "RateLimit-Remaining", "X-Request-Id", "ETag"] {
            assert!(exposed.contains(name), "{exposed}");
        }
        let local = list().actual(Some("http://localhost:5173"));
        assert_eq!(get(&local, "Access-Control-Allow-Origin"), Some("http://localhost:5173"));
    }

    #[test]
    fn other_origins_get_only_vary() {
        for origin in [
            "https://evil.example.com",
            "http://app.example.com",
            "https://app.example.com:8443",
            "https://app.example.com.evil.com",
            "https://sub.app.example.com",
            "https://app.example.co",
            "null",
            "",
            "*",
        ] {
            assert_eq!(list().actual(Some(origin)), vec![("Vary", "Origin".to_owned())], "{origin}");
        }
        assert_eq!(list().actual(None), vec![("Vary", "Origin".to_owned())]);
    }

    #[test]
    fn no_policy_means_no_headers() {
        let none = CorsPolicy::parse(None).unwrap();
        assert!(none.actual(Some(APP)).is_empty());
        assert_eq!(none.preflight(Some(APP), Some("GET"), None), Preflight::Refused(Vec::new()));
    }

    #[test]
    fn any_origin_is_a_star_without_credentials() {
        let any = CorsPolicy::parse(Some("*")).unwrap();
        for origin in [APP, "null", "https://anything.example"] {
            let h = any.actual(Some(origin));
            assert_eq!(get(&h, "Access-Control-Allow-Origin"), Some("*"));
            assert_eq!(get(&h, "Vary"), None);
            never_star_with_credentials(&h);
            let p = allowed(any.preflight(Some(origin), Some("POST"), Some("content-type")));
            assert_eq!(get(&p, "Access-Control-Allow-Origin"), Some("*"));
            never_star_with_credentials(&p);
        }
        assert!(any.actual(None).is_empty());
    }

    #[test]
    fn preflight_of_an_allowed_request() {
        let h =
            allowed(list().preflight(Some(APP), Some("POST"), Some("authorization,content-type,x-replicate-token")));
        assert_eq!(get(&h, "Access-Control-Allow-Origin"), Some(APP));
        assert_eq!(get(&h, "Access-Control-Allow-Credentials"), Some("true"));
        assert_eq!(get(&h, "Vary"), Some("Origin"));
        assert_eq!(get(&h, "Access-Control-Allow-Methods"), Some("GET, HEAD, POST, DELETE"));
        let allow_headers = get(&h, "Access-Control-Allow-Headers").unwrap();
        assert!(allow_headers.contains("Authorization") && allow_headers.contains("X-Replicate-Token"));
        assert_eq!(get(&h, "Access-Control-Max-Age"), Some("7200"));
        // No or empty request headers, any case, extra spaces.
        allowed(list().preflight(Some(APP), Some("GET"), None));
        allowed(list().preflight(Some(APP), Some("GET"), Some("")));
        allowed(list().preflight(Some(APP), Some("POST"), Some(" Prefer , IDEMPOTENCY-KEY,,cancel-after ")));
    }

    #[test]
    fn preflight_refusals() {
        let vary = Preflight::Refused(vec![("Vary", "Origin".to_owned())]);
        let p = list();
        assert_eq!(p.preflight(Some(APP), Some("POST"), Some("content-type, x-evil")), vary);
        assert_eq!(p.preflight(Some(APP), Some("POST"), Some("cookie")), vary);
        assert_eq!(p.preflight(Some(APP), Some("PUT"), None), vary);
        assert_eq!(p.preflight(Some(APP), Some("post"), None), vary);
        assert_eq!(p.preflight(Some(APP), None, None), vary);
        assert_eq!(p.preflight(Some("https://evil.example"), Some("GET"), None), vary);
        assert_eq!(p.preflight(Some("null"), Some("GET"), None), vary);
        assert_eq!(p.preflight(None, Some("GET"), None), vary);
    }

    #[test]
    fn public_read_is_any_origin_reads_only() {
        let read = CorsPolicy::public_read();
        let h = read.actual(Some(APP));
        assert_eq!(get(&h, "Access-Control-Allow-Origin"), Some("*"));
        never_star_with_credentials(&h);
        let exposed = get(&h, "Access-Control-Expose-Headers").unwrap();
        assert!(exposed.contains("Content-Range") && exposed.contains("ETag"));
        let p = allowed(read.preflight(Some("null"), Some("GET"), Some("range")));
        assert_eq!(get(&p, "Access-Control-Allow-Methods"), Some("GET, HEAD"));
        never_star_with_credentials(&p);
        assert_eq!(read.preflight(Some(APP), Some("POST"), None), Preflight::Refused(Vec::new()));
        assert_eq!(read.preflight(Some(APP), Some("GET"), Some("authorization")), Preflight::Refused(Vec::new()));
    }

    #[test]
    fn star_never_comes_with_credentials() {
        for policy in [list(), CorsPolicy::parse(Some("*")).unwrap(), CorsPolicy::public_read()] {
            for origin in [APP, "null", "https://x.example"] {
                never_star_with_credentials(&policy.actual(Some(origin)));
                if let Preflight::Allowed(h) = policy.preflight(Some(origin), Some("GET"), None) {
                    never_star_with_credentials(&h);
                    assert_ne!(get(&h, "Access-Control-Allow-Origin"), Some("null"));
                }
            }
        }
    }
}
