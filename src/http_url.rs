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

/// Whether `host` (as `HttpUrl` writes it) is a public internet host: not
/// `localhost` or a name under `.localhost`, `.local`, `.internal` or
/// `.home.arpa`, and not an IP address that is loopback, private, link-local,
/// shared (CGNAT), unspecified, multicast, broadcast or documentation, nor an
/// IPv6 address embedding one (IPv4-mapped, NAT64).
pub fn is_public_host(host: &str) -> bool {
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().is_ok_and(is_public_v6);
    }
    if let Ok(v4) = host.parse::<std::net::Ipv4Addr>() {
        return is_public_v4(v4);
    }
    let name = host.trim_end_matches('.');
    let local_suffix = [".localhost", ".local", ".internal", ".home.arpa"].iter().any(|s| name.ends_with(s));
    !name.is_empty() && name != "localhost" && !local_suffix && name.contains('.')
}

fn is_public_v4(ip: std::net::Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (18..20).contains(&b))
        || a >= 240)
}

fn is_public_v6(ip: std::net::Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    let nat64 = s[0] == 0x64 && s[1] == 0xff9b;
    if nat64 {
        let v4 = std::net::Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
        return is_public_v4(v4);
    }
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00
        || (s[0] & 0xffc0) == 0xfe80
        || (s[0] == 0x2001 && s[1] == 0x0db8)
        || s[0..6] == [0, 0, 0, 0, 0, 0])
}

/// Whether `url` is on the operator-listed `entry` (`host` or `host:port`,
/// any case). An entry is read as the authority of a URL, with the same
/// strictness. A bare `host` matches the scheme's default port only, or any
/// port when `any_port`.
pub fn on_listed_host(url: &HttpUrl, entry: &str, any_port: bool) -> bool {
    let entry = entry.trim();
    if entry.is_empty() || entry.contains(['/', '?', '#']) {
        return false;
    }
    let Some(listed) = parse_http_url(&format!("http://{entry}")) else { return false };
    let after_host = entry.rsplit_once(']').map_or(entry, |(_, after)| after);
    let explicit_port = after_host.contains(':');
    listed.host == url.host
        && match explicit_port {
            true => listed.effective_port() == url.effective_port(),
            false => any_port || url.is_default_port(),
        }
}

/// Why `raw` cannot receive webhooks, if it cannot: it must be an https URL
/// (strictly parsed) on a public host, or an http(s) URL on one of
/// `listed_hosts` (`EXTRA_WEBHOOK_HOSTS`: `host` for any port, or
/// `host:port`), which the operator allows for local development.
pub fn webhook_target_problem(raw: &str, listed_hosts: &[String]) -> Option<&'static str> {
    match parse_http_url(raw) {
        Some(url) if listed_hosts.iter().any(|entry| on_listed_host(&url, entry, true)) => None,
        Some(url) if url.https && is_public_host(&url.host) => None,
        Some(url) if url.https => Some("webhook must point at a public host"),
        _ => Some("webhook must be an https:// URL"),
    }
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

    /// Without Unicode tables in the wasm (`idna_adapter` 1.0 in Cargo.toml),
    /// a host must be sent in its ASCII (Punycode) form, as browsers and
    /// `new URL()` serialize it.
    #[test]
    fn hosts_are_taken_in_their_ascii_form_only() {
        assert!(parse_http_url("https://b\u{fc}cher.example/hook").is_none());
        let ascii = parse_http_url("https://xn--bcher-kva.example/hook").unwrap();
        assert_eq!(ascii.host, "xn--bcher-kva.example");
        assert_eq!(
            webhook_target_problem("https://b\u{fc}cher.example/hook", &[]),
            Some("webhook must be an https:// URL")
        );
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

    #[test]
    fn public_hosts() {
        for host in ["example.com", "replicate.delivery", "8.8.8.8", "[2606:4700::1111]"] {
            assert!(is_public_host(host), "{host}");
        }
        for host in [
            "localhost",
            "api.localhost",
            "printer.local",
            "metadata.internal",
            "x.home.arpa",
            "intranet",
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "198.18.0.1",
            "[::1]",
            "[::]",
            "[fe80::1]",
            "[fd00::1]",
            "[fc00::1]",
            "[::ffff:127.0.0.1]",
            "[::ffff:169.254.169.254]",
            "[64:ff9b::a9fe:a9fe]",
            "[2001:db8::1]",
            "[::127.0.0.1]",
        ] {
            assert!(!is_public_host(host), "{host}");
        }
    }

    #[test]
    fn webhook_targets() {
        assert_eq!(webhook_target_problem("https://hooks.example.com/x", &[]), None);
        for raw in [
            "https://169.254.169.254/latest/meta-data",
            "https://localhost/x",
            "https://[::1]/x",
            "https://127.0.0.1:8443/x",
            "https://0x7f.1/x",
            "https://2130706433/x",
            "https://10.1.2.3/x",
        ] {
            assert_eq!(webhook_target_problem(raw, &[]), Some("webhook must point at a public host"), "{raw}");
        }
        assert_eq!(webhook_target_problem("http://hooks.example.com/x", &[]), Some("webhook must be an https:// URL"));
        let listed = ["127.0.0.1".to_owned(), "dev.test:8080".to_owned()];
        assert_eq!(webhook_target_problem("http://127.0.0.1:41234/hook", &listed), None);
        assert_eq!(webhook_target_problem("http://dev.test:8080/hook", &listed), None);
        assert_eq!(
            webhook_target_problem("http://dev.test:8081/hook", &listed),
            Some("webhook must be an https:// URL")
        );
        assert_eq!(webhook_target_problem("https://10.0.0.1/x", &listed), Some("webhook must point at a public host"));
    }
}
