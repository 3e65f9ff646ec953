//! http(s) URLs from outside (outputs, webhooks, configuration), parsed by
//! the `url` crate behind stricter checks: what that crate would forgive or
//! reinterpret (userinfo, backslashes, whitespace, `%` in a host, `https:x`
//! without `//`) is refused instead.

/// The parts of an http(s) URL that decide where it is fetched from.
#[derive(Debug, PartialEq, Eq)]
pub struct HttpUrl {
    pub https: bool,
    /// Lowercase: a DNS name, an IPv4 address, or a bracketed IPv6 address,
    /// as the `url` crate normalises them (`0x7f.1` is `127.0.0.1`).
    pub host: String,
    /// The port written in the URL, unless it is the scheme's default.
    pub port: Option<u16>,
}

impl HttpUrl {
    /// The port the URL connects to.
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or(if self.https { 443 } else { 80 })
    }

    pub fn is_default_port(&self) -> bool {
        self.effective_port() == if self.https { 443 } else { 80 }
    }
}

/// An http(s) URL parsed by the `url` crate, after refusing what that crate
/// would forgive or reinterpret: whitespace, controls and backslashes
/// anywhere, a missing `//`, userinfo, percent-escapes in the host, an empty
/// port, port 0, and hosts with empty labels or a trailing dot.
pub fn parse_http_url(raw: &str) -> Option<HttpUrl> {
    if raw.chars().any(|c| c.is_whitespace() || c.is_control() || c == '\\') {
        return None;
    }
    let (scheme, rest) = raw.split_once("://")?;
    if !(scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("http")) {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains(['@', '%']) || authority.ends_with(':') {
        return None;
    }
    let parsed = url::Url::parse(raw).ok()?;
    let host = match parsed.host()? {
        url::Host::Domain(name) if is_valid_dns_name(name) => name.to_owned(),
        url::Host::Domain(_) => return None,
        url::Host::Ipv4(ip) => ip.to_string(),
        url::Host::Ipv6(ip) => format!("[{ip}]"),
    };
    if parsed.port() == Some(0) {
        return None;
    }
    Some(HttpUrl { https: parsed.scheme() == "https", host, port: parsed.port() })
}

/// Dot-separated, non-empty labels of `a-z 0-9 - _`, no trailing dot.
fn is_valid_dns_name(host: &str) -> bool {
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        })
}

/// Whether `raw` is an https URL this service accepts as a callback target
/// (strictly parsed, as above).
pub fn is_https_url(raw: &str) -> bool {
    parse_http_url(raw).is_some_and(|u| u.https)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_into_scheme_host_and_port() {
        let parsed = parse_http_url("HTTP://Host.Example:8080/p?q#f").unwrap();
        assert_eq!(parsed, HttpUrl { https: false, host: "host.example".into(), port: Some(8080) });
        assert_eq!(parsed.effective_port(), 8080);
        assert!(!parsed.is_default_port());
        let v6 = parse_http_url("https://[2001:DB8::1]/").unwrap();
        assert_eq!(v6, HttpUrl { https: true, host: "[2001:db8::1]".into(), port: None });
        assert!(parse_http_url("https://[::1/").is_none());
        assert!(parse_http_url("https://[::1]x/").is_none());
        assert!(parse_http_url("https://[zz]/").is_none());
        assert!(parse_http_url("https://a:1:2/").is_none());
    }

    #[test]
    fn https_urls() {
        assert!(is_https_url("https://example.com/hook"));
        assert!(is_https_url("HTTPS://Example.com:8443/hook?x=1"));
        for bad in ["http://example.com/hook", "https://user@example.com/", "https:example.com", "https://", "ftp://x"]
        {
            assert!(!is_https_url(bad), "{bad}");
        }
    }

    #[test]
    fn hosts_are_normalised_by_the_url_crate() {
        assert_eq!(parse_http_url("http://0x7f.1/").unwrap().host, "127.0.0.1");
        assert_eq!(parse_http_url("https://EXAMPLE.com:443/").unwrap().port, None);
    }
}
