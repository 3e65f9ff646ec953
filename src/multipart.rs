//! `multipart/form-data` bodies (RFC 7578), read whole and bounded by the
//! caller, split into parts that borrow from the body: no part is copied.
//!
//! Strict where leniency would be a guess: lines end in CRLF, every part has
//! a `Content-Disposition: form-data` header with a `name`, headers are
//! small, parts are few, and the closing delimiter must be there (a body cut
//! short is refused, never taken for a complete one).

use crate::error::ApiError;

/// The most parts one body may have.
pub const MAX_PARTS: usize = 64;
/// The most bytes of headers one part may have.
pub const MAX_PART_HEADER_BYTES: usize = 8 * 1024;
/// The longest boundary RFC 2046 allows.
const MAX_BOUNDARY_CHARS: usize = 70;

/// One part of a form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part<'a> {
    /// The field name.
    pub name: String,
    /// The file name, when the part is a file (`filename` given, even empty).
    pub filename: Option<String>,
    /// The part's own `Content-Type`, if it has one.
    pub content_type: Option<String>,
    pub body: &'a [u8],
}

impl Part<'_> {
    /// Whether the part is a file rather than a text field.
    pub fn is_file(&self) -> bool {
        self.filename.is_some()
    }

    /// Whether the part is a file input left empty (what a browser sends for
    /// a file field with nothing chosen).
    pub fn is_empty_file(&self) -> bool {
        self.filename.as_deref() == Some("") && self.body.is_empty()
    }

    /// The body as text, or a 400 naming the field.
    pub fn text(&self) -> Result<&str, ApiError> {
        std::str::from_utf8(self.body).map_err(|_| {
            ApiError::bad_request("Invalid form").with_details(format!("field {} is not UTF-8", self.name))
        })
    }
}

/// The boundary of a `multipart/form-data` Content-Type, or `None` if the
/// type is another or the boundary is missing or malformed.
pub fn form_boundary(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    let essence = params.next()?.trim();
    if !essence.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    let boundary = params
        .filter_map(|p| p.split_once('='))
        .find_map(|(key, value)| key.trim().eq_ignore_ascii_case("boundary").then(|| unquote(value.trim())))??;
    let valid = !boundary.is_empty()
        && boundary.len() <= MAX_BOUNDARY_CHARS
        && !boundary.ends_with(' ')
        && boundary.bytes().all(|b| b.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(&b));
    valid.then_some(boundary)
}

/// Whether the Content-Type's essence is `multipart/form-data`, whatever its
/// parameters.
pub fn is_form_data(content_type: &str) -> bool {
    content_type.split(';').next().is_some_and(|e| e.trim().eq_ignore_ascii_case("multipart/form-data"))
}

/// The parts of `body`, a `multipart/form-data` body with `boundary`.
pub fn parse<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<Part<'a>>, ApiError> {
    let dash_boundary = format!("--{boundary}");
    let delimiter = format!("\r\n--{boundary}");
    // The first boundary may open the body or follow a preamble.
    let mut at = if body.starts_with(dash_boundary.as_bytes()) {
        dash_boundary.len()
    } else {
        find(body, delimiter.as_bytes(), 0).ok_or_else(|| malformed("no boundary"))? + delimiter.len()
    };
    let mut parts = Vec::new();
    loop {
        let rest = body.get(at..).unwrap_or_default();
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        // Transport padding (spaces, tabs) may follow a boundary before its CRLF.
        let padding = rest.iter().take_while(|b| matches!(b, b' ' | b'\t')).count();
        if !rest[padding..].starts_with(b"\r\n") {
            return Err(malformed("a boundary is not followed by a line break"));
        }
        at += padding + 2;
        if parts.len() == MAX_PARTS {
            return Err(malformed(&format!("more than {MAX_PARTS} parts")));
        }
        let end =
            find(body, delimiter.as_bytes(), at).ok_or_else(|| malformed("the body ends before its last boundary"))?;
        parts.push(part(body.get(at..end).unwrap_or_default())?);
        at = end + delimiter.len();
    }
}

fn part(raw: &[u8]) -> Result<Part<'_>, ApiError> {
    let (head, body) = match raw.strip_prefix(b"\r\n") {
        Some(body) => (&b""[..], body),
        None => {
            let split = find(raw, b"\r\n\r\n", 0).ok_or_else(|| malformed("a part has no end of headers"))?;
            (&raw[..split], &raw[split + 4..])
        }
    };
    if head.len() > MAX_PART_HEADER_BYTES {
        return Err(malformed("a part's headers are too large"));
    }
    let head = std::str::from_utf8(head).map_err(|_| malformed("a part's headers are not UTF-8"))?;
    let mut disposition = None;
    let mut content_type = None;
    for line in head.split("\r\n").filter(|line| !line.is_empty()) {
        let (name, value) = line.split_once(':').ok_or_else(|| malformed("a part has a malformed header"))?;
        let name = name.trim();
        if name.eq_ignore_ascii_case("content-disposition") {
            disposition = Some(value.trim());
        } else if name.eq_ignore_ascii_case("content-type") {
            content_type = Some(value.trim().to_owned()).filter(|v| !v.is_empty());
        }
    }
    let disposition = disposition.ok_or_else(|| malformed("a part has no Content-Disposition"))?;
    let (name, filename) = disposition_params(disposition)?;
    Ok(Part { name, filename, content_type, body })
}

/// `name` and `filename` of `form-data; name="..."; filename="..."`. A
/// `filename*=UTF-8''...` (RFC 5987) is used when no plain `filename` is.
fn disposition_params(value: &str) -> Result<(String, Option<String>), ApiError> {
    let (kind, mut rest) = value.split_once(';').unwrap_or((value, ""));
    if !kind.trim().eq_ignore_ascii_case("form-data") {
        return Err(malformed("a part is not form-data"));
    }
    let (mut name, mut filename, mut filename_ext) = (None, None, None);
    loop {
        rest = rest.trim_start_matches([' ', '\t', ';']);
        if rest.is_empty() {
            break;
        }
        let (key, after) = rest.split_once('=').ok_or_else(|| malformed("a part has a malformed parameter"))?;
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            quoted_string(quoted).ok_or_else(|| malformed("a part has an unterminated quoted parameter"))?
        } else {
            let end = after.find(';').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        match key.trim().to_ascii_lowercase().as_str() {
            "name" => name = Some(value),
            "filename" => filename = Some(value),
            "filename*" => filename_ext = ext_value(&value),
            _ => {}
        }
        rest = remaining;
    }
    let name = name.ok_or_else(|| malformed("a part has no name"))?;
    Ok((name, filename.or(filename_ext)))
}

/// The content of a quoted string whose opening quote is already consumed,
/// and what follows its closing quote. `\x` stands for `x`.
fn quoted_string(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 1..])),
            '\\' => out.push(chars.next()?.1),
            c => out.push(c),
        }
    }
    None
}

/// The value of an RFC 5987 `UTF-8''percent-encoded` parameter.
fn ext_value(value: &str) -> Option<String> {
    let (charset, rest) = value.split_once('\'')?;
    let (_language, encoded) = rest.split_once('\'')?;
    if !charset.eq_ignore_ascii_case("utf-8") {
        return None;
    }
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn unquote(value: &str) -> Option<String> {
    match value.strip_prefix('"') {
        Some(quoted) => quoted_string(quoted).filter(|(_, rest)| rest.trim().is_empty()).map(|(v, _)| v),
        None => Some(value.to_owned()),
    }
}

/// The first index at or after `from` where `needle` starts. The needle
/// starts with CR and the boundary after it holds none, so partial matches
/// never overlap: the search is linear in the body.
fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let first = *needle.first()?;
    let mut i = from;
    while i + needle.len() <= haystack.len() {
        let next = haystack[i..].iter().position(|&b| b == first)?;
        i += next;
        if haystack.get(i..i + needle.len())? == needle {
            return Some(i);
        }
        i += 1;
    }
    None
}

fn malformed(why: &str) -> ApiError {
    ApiError::bad_request("Invalid multipart/form-data body").with_details(why.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: &str = "----formdata-undici-0123456789";

    /// One part to write: name, file name, content type, body.
    type Spec<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a [u8]);

    fn body(parts: &[Spec]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, filename, content_type, content) in parts {
            out.extend_from_slice(format!("--{B}\r\n").as_bytes());
            let mut disposition = format!("Content-Disposition: form-data; name=\"{name}\"");
            if let Some(f) = filename {
                disposition.push_str(&format!("; filename=\"{f}\""));
            }
            out.extend_from_slice(disposition.as_bytes());
            out.extend_from_slice(b"\r\n");
            if let Some(t) = content_type {
                out.extend_from_slice(format!("Content-Type: {t}\r\n").as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(content);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("--{B}--\r\n").as_bytes());
        out
    }

    #[test]
    fn boundaries_from_content_types() {
        assert_eq!(form_boundary(&format!("multipart/form-data; boundary={B}")).as_deref(), Some(B));
        assert_eq!(form_boundary("Multipart/Form-Data;charset=utf-8; BOUNDARY=\"a b:c\"").as_deref(), Some("a b:c"));
        for bad in [
            "multipart/form-data",
            "multipart/form-data; boundary=",
            "multipart/mixed; boundary=abc",
            "application/json",
            "multipart/form-data; boundary=\"unterminated",
            "multipart/form-data; boundary=a\"b",
        ] {
            assert_eq!(form_boundary(bad), None, "{bad}");
        }
        assert_eq!(form_boundary(&format!("multipart/form-data; boundary={}", "x".repeat(71))), None);
        assert!(is_form_data("multipart/form-data"));
        assert!(!is_form_data("multipart/form-datax; boundary=a"));
    }

    #[test]
    fn splits_text_and_file_parts() {
        let png = b"\x89PNG\r\n\x1a\n\r\n--not-the-boundary\r\n";
        let raw = body(&[
            ("prompt", None, None, b"a cat\r\non two lines"),
            ("image", Some("cat.png"), Some("image/png"), png),
            ("empty", None, None, b""),
        ]);
        let parts = parse(&raw, B).unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!((parts[0].name.as_str(), parts[0].text().unwrap()), ("prompt", "a cat\r\non two lines"));
        assert!(!parts[0].is_file());
        assert_eq!(parts[1].filename.as_deref(), Some("cat.png"));
        assert_eq!(parts[1].content_type.as_deref(), Some("image/png"));
        assert_eq!(parts[1].body, png);
        assert!(parts[1].is_file());
        assert_eq!(parts[2].body, b"");
    }

    #[test]
    fn preamble_padding_and_epilogue_are_ignored() {
        let mut raw = b"preamble text\r\n".to_vec();
        raw.extend_from_slice(
            format!("--{B} \t\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--{B}--").as_bytes(),
        );
        raw.extend_from_slice(b"\r\nepilogue");
        let parts = parse(&raw, B).unwrap();
        assert_eq!((parts[0].name.as_str(), parts[0].body), ("a", &b"1"[..]));
    }

    #[test]
    fn quoted_and_extended_names() {
        let raw = format!(
            "--{B}\r\nContent-Disposition: form-data; name=\"a\\\"b\"; filename*=UTF-8''caf%C3%A9.png\r\n\r\nx\r\n--{B}--"
        );
        let parts = parse(raw.as_bytes(), B).unwrap();
        assert_eq!(parts[0].name, "a\"b");
        assert_eq!(parts[0].filename.as_deref(), Some("café.png"));
        let raw = format!("--{B}\r\ncontent-disposition: form-data; filename=\"\"; name=\"file\"\r\n\r\n\r\n--{B}--");
        let parts = parse(raw.as_bytes(), B).unwrap();
        assert!(parts[0].is_empty_file());
    }

    #[test]
    fn malformed_bodies_are_400s() {
        let ok = body(&[("a", None, None, b"1")]);
        let cut = &ok[..ok.len() - 10];
        for bad in [
            b"".to_vec(),
            b"no boundary at all".to_vec(),
            cut.to_vec(),
            format!("--{B}\r\nContent-Type: text/plain\r\n\r\nx\r\n--{B}--").into_bytes(),
            format!("--{B}\r\nContent-Disposition: attachment; name=a\r\n\r\nx\r\n--{B}--").into_bytes(),
            format!("--{B}\r\nContent-Disposition: form-data; filename=x\r\n\r\nx\r\n--{B}--").into_bytes(),
            format!("--{B}\r\nContent-Disposition: form-data; name=\"a\r\n\r\nx\r\n--{B}--").into_bytes(),
            format!("--{B}\r\nno colon\r\n\r\nx\r\n--{B}--").into_bytes(),
            format!("--{B}x\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--{B}--").into_bytes(),
        ] {
            let e = parse(&bad, B).unwrap_err();
            assert_eq!(e.status, 400, "{}", String::from_utf8_lossy(&bad));
        }
    }

    #[test]
    fn parts_and_headers_are_bounded() {
        let many: Vec<Spec> = vec![("a", None, None, b"1"); MAX_PARTS + 1];
        assert!(parse(&body(&many), B).is_err());
        assert_eq!(parse(&body(&many[..MAX_PARTS]), B).unwrap().len(), MAX_PARTS);
        let long = format!(
            "--{B}\r\nContent-Disposition: form-data; name=a\r\nX-Pad: {}\r\n\r\nx\r\n--{B}--",
            "p".repeat(MAX_PART_HEADER_BYTES)
        );
        assert!(parse(long.as_bytes(), B).is_err());
    }

    #[test]
    fn search_is_linear_on_hostile_bodies() {
        // Near-misses of the delimiter everywhere: must stay fast.
        let near = format!("\r\n--{}", &B[..B.len() - 1]);
        let mut raw = format!("--{B}\r\nContent-Disposition: form-data; name=a\r\n\r\n").into_bytes();
        for _ in 0..100_000 {
            raw.extend_from_slice(near.as_bytes());
        }
        raw.extend_from_slice(format!("\r\n--{B}--").as_bytes());
        let parts = parse(&raw, B).unwrap();
        assert_eq!(parts[0].body.len(), near.len() * 100_000);
    }
}
