//! Where a prediction's outputs may be fetched from, and what their bytes are.
//!
//! Outputs are fetched only from `replicate.delivery` (and its subdomains)
//! over https on the default port, or from hosts the operator lists; `data:`
//! outputs are decoded in place. URLs are parsed by the `url` crate behind
//! strict checks: anything unusual (userinfo, backslashes, whitespace, odd
//! hosts) is refused rather than interpreted.

use crate::error::ApiError;
use crate::http_url::{parse_http_url, HttpUrl};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;

/// The largest decoded `data:` output accepted: 20 MiB.
pub const MAX_DATA_URI_BYTES: usize = 20 * 1024 * 1024;
/// The host Replicate serves output files from; subdomains count too.
pub const REPLICATE_DELIVERY: &str = "replicate.delivery";
/// Content type of a `data:` URI that names none or an unusable one.
const UNKNOWN_CONTENT_TYPE: &str = "application/octet-stream";

/// Standard base64, with or without padding.
pub(crate) const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Where an output's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputSource {
    /// An allowed URL, to fetch as given.
    Remote(String),
    /// A decoded `data:` URI. `content_type` is the URI's media type,
    /// lowercased, without parameters (`application/octet-stream` if none).
    Data { content_type: String, bytes: Vec<u8> },
}

/// An image format this service stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageKind {
    pub content_type: &'static str,
    pub ext: &'static str,
}

impl ImageKind {
    pub const PNG: ImageKind = ImageKind { content_type: "image/png", ext: "png" };
    pub const JPEG: ImageKind = ImageKind { content_type: "image/jpeg", ext: "jpg" };
    pub const WEBP: ImageKind = ImageKind { content_type: "image/webp", ext: "webp" };
    pub const GIF: ImageKind = ImageKind { content_type: "image/gif", ext: "gif" };
    /// Every kind.
    pub const ALL: [ImageKind; 4] = [Self::PNG, Self::JPEG, Self::WEBP, Self::GIF];

    /// The kind with this extension (`jpeg` counts as `jpg`; any case).
    pub fn from_ext(ext: &str) -> Option<ImageKind> {
        let ext = ext.trim_start_matches('.');
        if ext.eq_ignore_ascii_case("jpeg") {
            return Some(Self::JPEG);
        }
        Self::ALL.into_iter().find(|k| k.ext.eq_ignore_ascii_case(ext))
    }

    /// The kind with this content type, parameters ignored (`image/jpg` counts).
    pub fn from_content_type(content_type: &str) -> Option<ImageKind> {
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        if essence.eq_ignore_ascii_case("image/jpg") {
            return Some(Self::JPEG);
        }
        Self::ALL.into_iter().find(|k| k.content_type.eq_ignore_ascii_case(essence))
    }
}

/// Where to get the output at `url`: a `data:` URI is decoded; an http(s)
/// URL is allowed if its host is `replicate.delivery` or a subdomain (https,
/// default port only), or is listed in `extra_hosts` (`host` for the
/// scheme's default port, or `host:port`; any case). Anything else is a 502
/// that does not repeat the URL.
pub fn classify_output(url: &str, extra_hosts: &[String]) -> Result<OutputSource, ApiError> {
    if has_prefix_ignore_case(url, "data:") {
        return decode_data_uri(url);
    }
    let allowed = parse_http_url(url).is_some_and(|parsed| is_allowed(&parsed, extra_hosts));
    if allowed {
        Ok(OutputSource::Remote(url.to_owned()))
    } else {
        Err(output_error("output URL host is not allowed"))
    }
}

/// The most redirects followed from an output URL.
pub const MAX_REDIRECTS: usize = 5;

/// Where a redirect from the output at `current` to `location` leads: the
/// `Location` resolved against `current`, held to the same allowlist as the
/// output itself. A redirect to anywhere else is refused, as is one that
/// cannot be read.
pub fn redirect_target(current: &str, location: &str, extra_hosts: &[String]) -> Result<String, ApiError> {
    let refused = || output_error("output redirected to a host that is not allowed");
    let base = url::Url::parse(current).map_err(|_| refused())?;
    if location.chars().any(|c| c.is_whitespace() || c.is_control() || c == '\\') {
        return Err(refused());
    }
    let next = base.join(location).map_err(|_| refused())?;
    match classify_output(next.as_str(), extra_hosts) {
        Ok(OutputSource::Remote(url)) => Ok(url),
        _ => Err(refused()),
    }
}

/// The image format of `bytes`, by their magic numbers.
pub fn sniff_image(bytes: &[u8]) -> Option<ImageKind> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageKind::PNG)
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageKind::JPEG)
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some(ImageKind::GIF)
    } else if bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP".as_slice()) {
        Some(ImageKind::WEBP)
    } else {
        None
    }
}

/// The image extension of a URL's path (`jpeg` becomes `jpg`), ignoring the
/// query and fragment; `None` for other extensions, no path, or `data:`.
pub fn ext_from_url(url: &str) -> Option<&'static str> {
    if has_prefix_ignore_case(url, "data:") {
        return None;
    }
    let before_suffix = url.split(['?', '#']).next().unwrap_or_default();
    let path = match before_suffix.split_once("://") {
        Some((_, after_scheme)) => after_scheme.get(after_scheme.find('/')?..)?,
        None => before_suffix,
    };
    let file = path.rsplit('/').next().unwrap_or_default();
    let (stem, ext) = file.rsplit_once('.')?;
    if stem.is_empty() {
        return None;
    }
    ImageKind::from_ext(ext).map(|k| k.ext)
}

fn is_allowed(url: &HttpUrl, extra_hosts: &[String]) -> bool {
    is_replicate_delivery(url) || extra_hosts.iter().any(|entry| crate::http_url::on_listed_host(url, entry, false))
}

fn is_replicate_delivery(url: &HttpUrl) -> bool {
    let host_ok = url.host == REPLICATE_DELIVERY
        || url.host.strip_suffix(REPLICATE_DELIVERY).is_some_and(|sub| sub.ends_with('.') && sub.len() > 1);
    url.https && url.is_default_port() && host_ok
}

fn decode_data_uri(uri: &str) -> Result<OutputSource, ApiError> {
    let after_scheme = uri.get("data:".len()..).unwrap_or_default();
    let (meta, payload) = after_scheme.split_once(',').ok_or_else(|| output_error("output data URI is malformed"))?;
    let mut params = meta.split(';');
    let media_type = params.next().unwrap_or_default();
    let is_base64 = params.next_back().is_some_and(|p| p.trim().eq_ignore_ascii_case("base64"));
    if !is_base64 {
        return Err(output_error("output data URI is not base64"));
    }

    let max_encoded = MAX_DATA_URI_BYTES.div_ceil(3) * 4;
    let too_large = || output_error("output data URI is larger than 20 MiB");
    if payload.len() > max_encoded * 2 {
        return Err(too_large());
    }
    let compact: Vec<u8> = payload.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if compact.len() > max_encoded {
        return Err(too_large());
    }
    let bytes = BASE64.decode(&compact).map_err(|_| output_error("output data URI is not valid base64"))?;
    if bytes.len() > MAX_DATA_URI_BYTES {
        return Err(too_large());
    }
    Ok(OutputSource::Data { content_type: content_type_of(media_type), bytes })
}

/// A `data:` URI's media type, lowercased, if it is a plain `type/subtype`.
fn content_type_of(media_type: &str) -> String {
    let media_type = media_type.trim().to_ascii_lowercase();
    let is_token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b));
    match media_type.split_once('/') {
        Some((kind, subtype)) if is_token(kind) && is_token(subtype) => media_type,
        _ => String::from(UNKNOWN_CONTENT_TYPE),
    }
}

fn has_prefix_ignore_case(s: &str, prefix: &str) -> bool {
    s.get(..prefix.len()).is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

fn output_error(details: &str) -> ApiError {
    ApiError::generation_failed(details)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    const PNG_BYTES: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    fn allowed(url: &str, extra: &[&str]) -> bool {
        let extra: Vec<String> = extra.iter().map(|h| h.to_string()).collect();
        match classify_output(url, &extra) {
            Ok(OutputSource::Remote(u)) => {
                assert_eq!(u, url);
                true
            }
            Ok(other) => panic!("{url} gave {other:?}"),
            Err(e) => {
                assert_eq!((e.status, e.error.as_str()), (502, "Failed to generate image"));
                assert_eq!(e.details.as_deref(), Some("output URL host is not allowed"));
                assert!(url.is_empty() || !e.body().contains(url), "the error repeats the URL");
                false
            }
        }
    }

    fn data_error(uri: &str) -> String {
        let err = classify_output(uri, &[]).expect_err("should be refused");
        assert_eq!((err.status, err.error.as_str()), (502, "Failed to generate image"));
        err.details.unwrap_or_default()
    }

    #[test]
    fn replicate_delivery_is_allowed() {
        for url in [
            "https://replicate.delivery/xezq/abc/out-0.webp",
            "https://replicate.delivery",
            "https://replicate.delivery?x=1",
            "https://replicate.delivery#frag",
            "https://pbxt.replicate.delivery/abc/out-0.png",
            "https://a.b.replicate.delivery/x",
            "HTTPS://Replicate.Delivery/x",
            "https://replicate.delivery:443/x",
            "https://replicate.delivery:0443/x",
        ] {
            assert!(allowed(url, &[]), "{url}");
        }
    }

    #[test]
    fn lookalikes_and_tricks_are_refused() {
        for url in [
            "http://replicate.delivery/x",
            "https://evilreplicate.delivery/x",
            "https://replicate.delivery.evil.com/x",
            "https://replicate.delivery@evil.com/x",
            "https://user:pass@replicate.delivery/x",
            "https://evil.com@replicate.delivery/x",
            "https://evil.com#@replicate.delivery/x",
            "https://evil.com?.replicate.delivery/x",
            "https://evil.com/.replicate.delivery/x",
            "https://evil.com\\@replicate.delivery/x",
            "https://replicate.delivery\\@evil.com/x",
            "https://replicate.delivery:8443/x",
            "https://replicate.delivery:/x",
            "https://replicate.delivery:0/x",
            "https://replicate.delivery:99999/x",
            "https://replicate.delivery:+443/x",
            "https://replicate.delivery./x",
            "https://.replicate.delivery/x",
            "https://a..replicate.delivery/x",
            "https://replicate%2edelivery/x",
            "https://repl\u{0131}cate.delivery/x",
            "https://replicate.delivery /x",
            " https://replicate.delivery/x",
            "https://replicate.delivery/x\n",
            "https://evil.com\t.replicate.delivery/x",
            "https:replicate.delivery/x",
            "https:/replicate.delivery/x",
            "//replicate.delivery/x",
            "replicate.delivery/x",
            "ftp://replicate.delivery/x",
            "javascript://replicate.delivery/%0aalert(1)",
            "https:///x",
            "https://",
            "",
            "file:///etc/passwd",
            "https://[::1]/x",
            "https://127.0.0.1/x",
        ] {
            assert!(!allowed(url, &[]), "{url:?}");
        }
    }

    #[test]
    fn extra_hosts_are_allowed_by_host_and_port() {
        let extra = ["127.0.0.1:8790", "Example.test", "[::1]:9000", " cdn.example.com "];
        for url in [
            "http://127.0.0.1:8790/files/out.png",
            "https://127.0.0.1:8790/files/out.png",
            "https://example.test/x.png",
            "http://EXAMPLE.test/x.png",
            "https://example.test:443/x.png",
            "http://[::1]:9000/x",
            "https://cdn.example.com/x",
        ] {
            assert!(allowed(url, &extra), "{url}");
        }
        for url in [
            "http://127.0.0.1/x",
            "http://127.0.0.1:8791/x",
            "http://127.0.0.2:8790/x",
            "https://example.test:8443/x",
            "https://sub.example.test/x",
            "https://example.test.evil.com/x",
            "https://example.test@evil.com/x",
            "http://[::1]/x",
            "http://[::2]:9000/x",
        ] {
            assert!(!allowed(url, &extra), "{url}");
        }
        // Malformed entries allow nothing.
        assert!(!allowed("https://example.test/x", &["", "example.test:", "EXAMPLE.TEST.", "x@example.test"]));
        assert!(!allowed("https://evil.com/x", &["*"]));
    }

    #[test]
    fn extra_host_with_an_explicit_default_port() {
        assert!(allowed("https://example.test/x", &["example.test:443"]));
        assert!(!allowed("http://example.test/x", &["example.test:443"]));
    }

    #[test]
    fn data_uris_are_decoded() {
        let uri = format!("data:image/png;base64,{}", STANDARD.encode(PNG_BYTES));
        assert_eq!(
            classify_output(&uri, &[]).unwrap(),
            OutputSource::Data { content_type: "image/png".into(), bytes: PNG_BYTES.to_vec() }
        );
        // Parameters, case, whitespace and missing padding are all fine.
        let uri = "DATA:Image/WebP;name=x.webp;BASE64,UklG\nRg";
        assert_eq!(
            classify_output(uri, &[]).unwrap(),
            OutputSource::Data { content_type: "image/webp".into(), bytes: b"RIFF".to_vec() }
        );
        let no_type = classify_output("data:;base64,AAAA", &[]).unwrap();
        assert_eq!(no_type, OutputSource::Data { content_type: UNKNOWN_CONTENT_TYPE.into(), bytes: vec![0, 0, 0] });
        let odd_type = classify_output("data:image/png\r\nX-Evil: 1;base64,AAAA", &[]).unwrap();
        assert!(matches!(odd_type, OutputSource::Data { content_type, .. } if content_type == UNKNOWN_CONTENT_TYPE));
        let empty = classify_output("data:image/png;base64,", &[]).unwrap();
        assert_eq!(empty, OutputSource::Data { content_type: "image/png".into(), bytes: vec![] });
    }

    #[test]
    fn bad_data_uris_are_refused() {
        assert_eq!(data_error("data:image/png,rawbytes"), "output data URI is not base64");
        assert_eq!(data_error("data:image/png;base64;charset=x,AAAA"), "output data URI is not base64");
        assert_eq!(data_error("data:image/png;base64"), "output data URI is malformed");
        assert_eq!(data_error("data:image/png;base64,!!!!"), "output data URI is not valid base64");
        assert_eq!(data_error("data:image/png;base64,AA%3D%3D"), "output data URI is not valid base64");
        assert_eq!(data_error("data:image/png;base64,A"), "output data URI is not valid base64");
        assert_eq!(data_error("data:image/png;base64,-_-_"), "output data URI is not valid base64");
    }

    #[test]
    fn data_uris_over_the_limit_are_refused() {
        let at_limit = format!("data:image/png;base64,{}", STANDARD.encode(vec![7u8; MAX_DATA_URI_BYTES]));
        assert!(
            matches!(classify_output(&at_limit, &[]), Ok(OutputSource::Data { bytes, .. }) if bytes.len() == MAX_DATA_URI_BYTES)
        );
        let over = format!("data:image/png;base64,{}", STANDARD.encode(vec![7u8; MAX_DATA_URI_BYTES + 1]));
        assert_eq!(data_error(&over), "output data URI is larger than 20 MiB");
        let huge = format!("data:image/png;base64,{}", "A".repeat(MAX_DATA_URI_BYTES * 3));
        assert_eq!(data_error(&huge), "output data URI is larger than 20 MiB");
        // Whitespace does not count toward the limit, but the bytes do.
        let spaced = format!("data:image/png;base64,{}", STANDARD.encode(vec![7u8; 3000]).replace('c', "c\n "));
        assert!(classify_output(&spaced, &[]).is_ok());
    }

    #[test]
    fn images_are_sniffed_by_magic_numbers() {
        assert_eq!(sniff_image(PNG_BYTES), Some(ImageKind::PNG));
        assert_eq!(sniff_image(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10]), Some(ImageKind::JPEG));
        assert_eq!(sniff_image(b"GIF89a\x01\x00"), Some(ImageKind::GIF));
        assert_eq!(sniff_image(b"GIF87a"), Some(ImageKind::GIF));
        assert_eq!(sniff_image(b"RIFF\x24\0\0\0WEBPVP8 "), Some(ImageKind::WEBP));
        assert_eq!(sniff_image(b"RIFF\x24\0\0\0WAVEfmt "), None);
        assert_eq!(sniff_image(b"RIFF\x24\0\0\0WEB"), None);
        assert_eq!(sniff_image(b"\x89PNG\r\n\x1a"), None);
        assert_eq!(sniff_image(&[0xFF, 0xD8]), None);
        assert_eq!(sniff_image(b"GIF88a"), None);
        assert_eq!(sniff_image(b"<html>"), None);
        assert_eq!(sniff_image(&[]), None);
    }

    #[test]
    fn image_kinds_by_ext_and_content_type() {
        assert_eq!(ImageKind::from_ext("JPEG"), Some(ImageKind::JPEG));
        assert_eq!(ImageKind::from_ext(".png"), Some(ImageKind::PNG));
        assert_eq!(ImageKind::from_ext("webp"), Some(ImageKind::WEBP));
        assert_eq!(ImageKind::from_ext("gif"), Some(ImageKind::GIF));
        assert_eq!(ImageKind::from_ext("svg"), None);
        assert_eq!(ImageKind::from_ext(""), None);
        assert_eq!(ImageKind::from_content_type("image/png"), Some(ImageKind::PNG));
        assert_eq!(ImageKind::from_content_type("Image/JPEG; q=1"), Some(ImageKind::JPEG));
        assert_eq!(ImageKind::from_content_type("image/jpg"), Some(ImageKind::JPEG));
        assert_eq!(ImageKind::from_content_type("image/webp"), Some(ImageKind::WEBP));
        assert_eq!(ImageKind::from_content_type("text/html"), None);
        assert_eq!(ImageKind::from_content_type(""), None);
    }

    #[test]
    fn extensions_from_urls() {
        assert_eq!(ext_from_url("https://replicate.delivery/xezq/abc/out-0.webp"), Some("webp"));
        assert_eq!(ext_from_url("https://replicate.delivery/a/out-0.JPEG?x=1.png"), Some("jpg"));
        assert_eq!(ext_from_url("https://h/a/out.jpg#frag.png"), Some("jpg"));
        assert_eq!(ext_from_url("https://h/a.png/out"), None);
        assert_eq!(ext_from_url("https://h/a/out.tar.gif"), Some("gif"));
        assert_eq!(ext_from_url("https://h/a/out.svg"), None);
        assert_eq!(ext_from_url("https://h/a/.png"), None);
        assert_eq!(ext_from_url("https://example.png"), None);
        assert_eq!(ext_from_url("https://example.png?a=b.png"), None);
        assert_eq!(ext_from_url("out-1.png"), Some("png"));
        assert_eq!(ext_from_url("data:image/png;base64,AAAA.png"), None);
        assert_eq!(ext_from_url(""), None);
    }

    #[test]
    fn redirects_stay_on_allowed_hosts() {
        let extra = vec!["127.0.0.1:8790".to_string()];
        let from = "https://replicate.delivery/a/out-0.png";
        assert_eq!(redirect_target(from, "/b/out-0.png", &[]).unwrap(), "https://replicate.delivery/b/out-0.png");
        assert_eq!(
            redirect_target(from, "https://pbxt.replicate.delivery/x.png", &[]).unwrap(),
            "https://pbxt.replicate.delivery/x.png"
        );
        assert_eq!(
            redirect_target("http://127.0.0.1:8790/d/x.png", "?hop=1", &extra).unwrap(),
            "http://127.0.0.1:8790/d/x.png?hop=1"
        );
        for location in [
            "http://127.0.0.1/internal",
            "http://localhost:8790/x",
            "https://169.254.169.254/latest/meta-data/",
            "//evil.example/x.png",
            "http://replicate.delivery/x.png",
            "https://user@replicate.delivery/x.png",
            "data:image/png;base64,AAAA",
            "file:///etc/passwd",
            "https://evil.example\\@replicate.delivery/",
        ] {
            let e = redirect_target(from, location, &extra).unwrap_err();
            assert_eq!(e.details.as_deref(), Some("output redirected to a host that is not allowed"), "{location}");
        }
    }
}
