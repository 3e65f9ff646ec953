//! Image inputs of a model (its `format: uri` fields): what a caller may
//! give, and the URL Replicate is then sent.
//!
//! Accepted: an https URL on a public host (passed on as it is), a base64
//! `data:` URI of an image within a size limit, an image this service stored
//! (its id or its `{base}/image/{id}` URL) or an upload (its id or its
//! `{base}/upload/{id}` URL). Everything else is refused with a 400 naming
//! the field: plain http (except this service's own URLs), userinfo, private
//! or local hosts, other paths of this service, data URIs that are not
//! base64 images.

use base64::Engine;

use crate::error::ApiError;
use crate::http_url::{is_public_host, parse_http_url};
use crate::image_id::parse_image_id;
use crate::output::{sniff_image, BASE64};
use crate::uploads::{parse_upload_id, upload_url};

/// The longest URL accepted as an image input.
pub const MAX_URL_CHARS: usize = 4096;

/// Where an image input comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageInput {
    /// An https URL on a public host, passed to Replicate as it is.
    Remote(String),
    /// A base64 `data:` URI of an image, as given.
    Data(String),
    /// The id of an image this service stored.
    Stored(String),
    /// The id of an upload.
    Upload(String),
}

/// Reads the value of image field `field`; `base_url` is this service's
/// public base (links to it are recognised), `max_data_uri_bytes` bounds a
/// `data:` URI's decoded size.
pub fn resolve(field: &str, value: &str, base_url: &str, max_data_uri_bytes: usize) -> Result<ImageInput, ApiError> {
    let invalid = |why: &str| ApiError::invalid_input(format!("{field} {why}"));
    if value.get(..5).is_some_and(|scheme| scheme.eq_ignore_ascii_case("data:")) {
        return check_data_uri(value, max_data_uri_bytes).map(|()| ImageInput::Data(value.to_owned())).map_err(invalid);
    }
    if parse_image_id(value).is_some() {
        return Ok(ImageInput::Stored(value.to_owned()));
    }
    if parse_upload_id(value).is_some() {
        return Ok(ImageInput::Upload(value.to_owned()));
    }
    const EXPECTED: &str =
        "must be an https URL, a data: URI of an image, or the id or URL of an image or upload of this service";
    if value.len() > MAX_URL_CHARS {
        return Err(invalid(&format!("is longer than {MAX_URL_CHARS} characters")));
    }
    let parsed = parse_http_url(value).ok_or_else(|| invalid(EXPECTED))?;
    if let Some(path) = own_path(value, base_url) {
        return own_input(&path).ok_or_else(|| invalid("must link to /image/{id} or /upload/{id} of this service"));
    }
    if !parsed.https {
        return Err(invalid("must be an https URL (http is refused)"));
    }
    if !is_public_host(&parsed.host) {
        return Err(invalid("must point at a public host"));
    }
    Ok(ImageInput::Remote(value.to_owned()))
}

/// The URL Replicate is sent for `input`: ours for stored images and
/// uploads, the given one otherwise.
pub fn public_url(input: &ImageInput, base_url: &str) -> String {
    match input {
        ImageInput::Remote(url) | ImageInput::Data(url) => url.clone(),
        ImageInput::Stored(id) => format!("{base_url}/image/{id}"),
        ImageInput::Upload(id) => upload_url(base_url, id),
    }
}

/// The path of `value` after `base_url`'s, when `value` is on this service
/// (same scheme, host and port); `None` otherwise. A link to this service
/// that is not plainly under the base's path (a query, a fragment, `..` or
/// anything else the parser would rewrite) gives an empty path, to be refused.
fn own_path(value: &str, base_url: &str) -> Option<String> {
    let ours = url::Url::parse(base_url).ok()?;
    let theirs = url::Url::parse(value).ok()?;
    let same_origin = ours.scheme() == theirs.scheme()
        && ours.host() == theirs.host()
        && ours.port_or_known_default() == theirs.port_or_known_default();
    if !same_origin {
        return None;
    }
    let after_authority = value.split_once("://")?.1;
    let raw_path = after_authority.find('/').map_or("", |start| &after_authority[start..]);
    if theirs.query().is_some() || theirs.fragment().is_some() || raw_path != theirs.path() {
        return Some(String::new());
    }
    let base_path = ours.path().trim_end_matches('/');
    let rest = theirs.path().strip_prefix(base_path).filter(|rest| rest.starts_with('/'));
    Some(rest.unwrap_or_default().to_owned())
}

/// An image or upload of this service, from the path after the base.
fn own_input(path: &str) -> Option<ImageInput> {
    if let Some(id) = path.strip_prefix("/image/") {
        return parse_image_id(id).is_some().then(|| ImageInput::Stored(id.to_owned()));
    }
    let id = path.strip_prefix("/upload/")?;
    parse_upload_id(id).is_some().then(|| ImageInput::Upload(id.to_owned()))
}

/// A `data:` URI must be base64 (no whitespace), decode to at most
/// `max_bytes`, and hold an image by its magic numbers. Its declared media
/// type is not trusted either way.
fn check_data_uri(uri: &str, max_bytes: usize) -> Result<(), &'static str> {
    let (meta, payload) = uri[5..].split_once(',').ok_or("is a malformed data: URI")?;
    let is_base64 = meta.rsplit(';').next().is_some_and(|p| p.trim().eq_ignore_ascii_case("base64"));
    if !is_base64 {
        return Err("must be a base64 data: URI");
    }
    if payload.len() > max_bytes.div_ceil(3).saturating_mul(4) {
        return Err("is larger than the data: URI limit; upload it and pass its URL instead");
    }
    let bytes = BASE64.decode(payload).map_err(|_| "is not valid base64")?;
    if bytes.len() > max_bytes {
        return Err("is larger than the data: URI limit; upload it and pass its URL instead");
    }
    sniff_image(&bytes).map(|_| ()).ok_or("is not a PNG, JPEG, WebP or GIF image")
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    const BASE: &str = "https://img.example.com";
    const IMAGE_ID: &str = "01jhmppcn8a1b2c3d4e5f6g7h8.png";
    const UPLOAD_ID: &str = "0123456789abcdef0123456789abcdef.webp";
    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    fn ok(value: &str) -> ImageInput {
        resolve("image", value, BASE, 1024).unwrap_or_else(|e| panic!("{value}: {e}"))
    }

    fn refused(value: &str) -> String {
        let e = resolve("image", value, BASE, 1024).expect_err(value);
        assert_eq!((e.status, e.error.as_str()), (400, "Invalid input"), "{value}");
        let details = e.details.unwrap();
        assert!(details.starts_with("image "), "{details}");
        details
    }

    fn data_uri(media: &str, bytes: &[u8]) -> String {
        format!("data:{media};base64,{}", STANDARD.encode(bytes))
    }

    #[test]
    fn public_https_urls_pass_as_they_are() {
        for url in [
            "https://replicate.delivery/pbxt/abc/cat.png",
            "https://example.com/a.jpg?size=large#x",
            "https://example.com:8443/a.png",
            "https://8.8.8.8/a.png",
        ] {
            assert_eq!(ok(url), ImageInput::Remote(url.into()));
            assert_eq!(public_url(&ok(url), BASE), url);
        }
    }

    #[test]
    fn plain_http_userinfo_and_odd_urls_are_refused() {
        assert!(refused("http://example.com/a.png").contains("https"));
        for bad in [
            "https://user:pass@example.com/a.png",
            "https://user@example.com/a.png",
            "https://example.com\\@evil.com/a.png",
            "https://exa mple.com/a.png",
            " https://example.com/a.png",
            "ftp://example.com/a.png",
            "file:///etc/passwd",
            "javascript:alert(1)",
            "https:example.com/a.png",
            "//example.com/a.png",
            "a.png",
            "",
        ] {
            refused(bad);
        }
        refused(&format!("https://example.com/{}", "a".repeat(MAX_URL_CHARS)));
        for multibyte in ["dataé:x", "ééé", "dat\u{1F600}"] {
            refused(multibyte);
        }
    }

    #[test]
    fn private_and_local_hosts_are_refused() {
        for host in [
            "localhost",
            "127.0.0.1",
            "10.0.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "[::1]",
            "[::ffff:127.0.0.1]",
            "0x7f.1",
            "2130706433",
            "metadata.internal",
            "intranet",
        ] {
            let details = refused(&format!("https://{host}/a.png"));
            assert!(details.contains("public host"), "{host}: {details}");
        }
    }

    #[test]
    fn stored_images_by_id_or_url() {
        assert_eq!(ok(IMAGE_ID), ImageInput::Stored(IMAGE_ID.into()));
        assert_eq!(ok(&format!("{BASE}/image/{IMAGE_ID}")), ImageInput::Stored(IMAGE_ID.into()));
        assert_eq!(ok(&format!("HTTPS://IMG.example.com:443/image/{IMAGE_ID}")), ImageInput::Stored(IMAGE_ID.into()));
        assert_eq!(public_url(&ok(IMAGE_ID), BASE), format!("{BASE}/image/{IMAGE_ID}"));
    }

    #[test]
    fn uploads_by_id_or_url() {
        assert_eq!(ok(UPLOAD_ID), ImageInput::Upload(UPLOAD_ID.into()));
        assert_eq!(ok(&format!("{BASE}/upload/{UPLOAD_ID}")), ImageInput::Upload(UPLOAD_ID.into()));
        assert_eq!(public_url(&ok(UPLOAD_ID), BASE), format!("{BASE}/upload/{UPLOAD_ID}"));
    }

    #[test]
    fn our_own_http_urls_are_accepted_for_a_local_base() {
        let base = "http://127.0.0.1:8787";
        let url = format!("{base}/upload/{UPLOAD_ID}");
        assert_eq!(resolve("image", &url, base, 10), Ok(ImageInput::Upload(UPLOAD_ID.into())));
        assert_eq!(public_url(&ImageInput::Upload(UPLOAD_ID.into()), base), url);
        // Another port of the same host is not us, and is private.
        assert!(resolve("image", &format!("http://127.0.0.1:9999/upload/{UPLOAD_ID}"), base, 10).is_err());
    }

    #[test]
    fn a_base_with_a_path_is_respected() {
        let base = "https://example.com/img";
        let url = format!("{base}/image/{IMAGE_ID}");
        assert_eq!(resolve("image", &url, base, 10), Ok(ImageInput::Stored(IMAGE_ID.into())));
        assert!(resolve("image", &format!("https://example.com/image/{IMAGE_ID}"), base, 10).is_err());
        assert!(resolve("image", &format!("https://example.com/imgx/image/{IMAGE_ID}"), base, 10).is_err());
    }

    #[test]
    fn other_links_to_this_service_are_refused() {
        for bad in [
            format!("{BASE}/generate?prompt=x&replicate_token=r8_x"),
            format!("{BASE}/image/not-an-id.png"),
            format!("{BASE}/upload/{IMAGE_ID}"),
            format!("{BASE}/image/{UPLOAD_ID}"),
            format!("{BASE}/image/{IMAGE_ID}?x=1"),
            format!("{BASE}/image/{IMAGE_ID}#x"),
            format!("{BASE}/upload/{UPLOAD_ID}/"),
            format!("{BASE}/upload/..%2Fimage%2F{IMAGE_ID}"),
            format!("{BASE}/x/../upload/{UPLOAD_ID}"),
            format!("{BASE}/health"),
        ] {
            assert!(refused(&bad).contains("this service"), "{bad}");
        }
    }

    #[test]
    fn data_uris_of_images_within_the_limit() {
        let uri = data_uri("image/png", PNG);
        assert_eq!(ok(&uri), ImageInput::Data(uri.clone()));
        assert_eq!(public_url(&ok(&uri), BASE), uri);
        // The declared type does not decide; the bytes do.
        let mislabeled = data_uri("application/octet-stream", PNG);
        assert_eq!(ok(&mislabeled), ImageInput::Data(mislabeled.clone()));
        let unpadded = uri.trim_end_matches('=').to_owned();
        assert!(matches!(ok(&unpadded), ImageInput::Data(_)));
        assert!(matches!(ok(&uri.replacen("data:", "DATA:", 1)), ImageInput::Data(_)));
    }

    #[test]
    fn oversized_data_uris_are_refused_before_decoding() {
        let mut big = PNG.to_vec();
        big.resize(1025, 0);
        assert!(refused(&data_uri("image/png", &big)).contains("limit"));
        let mut exact = PNG.to_vec();
        exact.resize(1024, 0);
        assert!(matches!(ok(&data_uri("image/png", &exact)), ImageInput::Data(_)));
        let huge = format!("data:image/png;base64,{}", "A".repeat(10_000));
        assert!(refused(&huge).contains("limit"));
    }

    #[test]
    fn non_image_and_malformed_data_uris_are_refused() {
        assert!(refused(&data_uri("image/png", b"<html>hi</html>")).contains("not a PNG"));
        assert!(refused(&data_uri("image/svg+xml", b"<svg xmlns='http://www.w3.org/2000/svg'/>")).contains("not a PNG"));
        assert!(refused("data:image/png,%89PNG").contains("base64"));
        assert!(refused("data:image/png;base64").contains("malformed"));
        assert!(refused("data:image/png;base64,!!!!").contains("base64"));
        assert!(refused(&format!("data:image/png;base64,{} ", STANDARD.encode(PNG))).contains("base64"));
    }

    #[test]
    fn the_field_is_named() {
        let e = resolve("input_image", "nope", BASE, 10).unwrap_err();
        assert!(e.details.unwrap().starts_with("input_image must be"));
    }
}
