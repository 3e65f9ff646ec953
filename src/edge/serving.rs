//! Stored bytes answered to `GET|HEAD`, for images and uploads alike.
//!
//! A GET, conditional (`If-None-Match`) or ranged (`Range`) included, is one
//! R2 get: R2 checks the ETag itself (when it matches, the object comes
//! without its bytes: a 304) and reads only the range asked for, which it
//! can do before anyone knows the size. The answer follows
//! `crate::http_range` on the size R2 reports: one range is served (206), a
//! malformed one or several are ignored (200), one starting past the end is
//! a 416, and a matching ETag comes before any range. Only when R2 refuses a
//! range (one starting past the end) is the size read first, then the
//! bytes. A HEAD is one R2 head, and ignores `Range` (RFC 9110 defines it
//! for GET only).

use super::r2::{Object, Range};
use super::request::Request;
use worker::{Headers, Method, Response, ResponseBody};

use super::respond;
use super::store::Read;
use crate::error::ApiError;
use crate::http_range::{content_range, etag_matches, parse_range, unsatisfied_range, RangeRequest};

/// Larger than any R2 object (5 TiB), and exact as a JS number (R2 takes
/// offsets and lengths as numbers).
const BEYOND_ANY_SIZE: u64 = (1 << 53) - 1;

/// Bytes of one kind in R2: how they are read and what their answers say.
pub trait Stored {
    /// The object's metadata, without its bytes; `None` when there is none to serve.
    async fn head(&self) -> Result<Option<Object>, ApiError>;
    /// The object as one R2 read asks for it; `None` when there is none to serve.
    async fn read(&self, read: Read) -> Result<Option<Object>, ApiError>;
    /// The headers of every answer about the object: its type, ETag, caching.
    fn headers(&self, object: &Object) -> Result<Headers, ApiError>;
}

/// What a request asks of stored bytes.
struct Ask {
    head_only: bool,
    if_none_match: Option<String>,
    range: Option<String>,
}

impl Ask {
    /// Whether the client already has the object (its ETag matches).
    fn has(&self, object: &Object) -> bool {
        self.if_none_match.as_deref().is_some_and(|v| etag_matches(v, &object.http_etag()))
    }
}

/// What to ask R2 for, for a `Range` header, before the object's size is known.
enum Wanted {
    /// The whole object: no range, or one `http_range` ignores.
    Whole,
    /// A part, in R2's terms.
    Part(Range),
    /// A range no object can satisfy (`bytes=-0`, or a start past any size).
    Nothing,
}

/// The answer to `req` from `stored`, or `None` when there is nothing to serve.
pub async fn answer(req: &Request, stored: &impl Stored) -> Result<Option<Response>, ApiError> {
    let ask = Ask {
        head_only: req.method() == Method::Head,
        if_none_match: req.headers().get("If-None-Match")?,
        range: req.headers().get("Range")?,
    };
    if ask.head_only {
        return match stored.head().await? {
            Some(meta) => head(&ask, stored, &meta).map(Some),
            None => Ok(None),
        };
    }
    let range = match wanted(ask.range.as_deref()) {
        Wanted::Whole => None,
        Wanted::Part(range) => Some(range),
        Wanted::Nothing => return sized(&ask, stored).await,
    };
    let ranged = range.is_some();
    let read = Read { range, unless_etag: ask.if_none_match.as_deref().and_then(bare_etag) };
    match stored.read(read).await {
        Ok(Some(object)) => respond(&ask, stored, object).map(Some),
        Ok(None) => Ok(None),
        // R2 refuses a range starting past the end: the size decides the answer.
        Err(_) if ranged => sized(&ask, stored).await,
        Err(e) => Err(e),
    }
}

/// The part of an object of unknown size that a `Range` header asks for.
/// `parse_range` needs a size, so it is asked about two sizes larger than
/// any object: a range that moves with the size counts from the end (a
/// suffix); one that reaches the end of the larger is open; any other is
/// closed (R2 stops it at the object's end, as `parse_range` does).
fn wanted(header: Option<&str>) -> Wanted {
    let larger = parse_range(header, BEYOND_ANY_SIZE);
    let smaller = parse_range(header, BEYOND_ANY_SIZE - 1);
    match (larger, smaller) {
        (RangeRequest::Full, _) => Wanted::Whole,
        (RangeRequest::Unsatisfiable, _) => Wanted::Nothing,
        (RangeRequest::Partial { start, end }, RangeRequest::Partial { start: moved, .. }) if moved != start => {
            Wanted::Part(Range::Suffix { suffix: end - start + 1 })
        }
        (RangeRequest::Partial { start, end }, _) if end == BEYOND_ANY_SIZE - 1 => {
            Wanted::Part(Range::OffsetToEnd { offset: start })
        }
        (RangeRequest::Partial { start, end }, _) => {
            Wanted::Part(Range::OffsetWithLength { offset: start, length: end - start + 1 })
        }
    }
}

/// The one entity tag of an `If-None-Match` value, as R2's
/// `etagDoesNotMatch` takes it: `"abc"` and `W/"abc"` give `abc`, `*` stays.
/// A list (or anything else) gives `None`: R2 then reads the bytes and the
/// ETag is compared here, still in the same call.
fn bare_etag(value: &str) -> Option<String> {
    let value = value.trim();
    if value == "*" {
        return Some(value.to_owned());
    }
    let tag = value.strip_prefix("W/").unwrap_or(value);
    let opaque = tag.strip_prefix('"')?.strip_suffix('"')?;
    (!opaque.is_empty() && !opaque.contains('"')).then(|| opaque.to_owned())
}

/// The answer when the size must be known first: R2's metadata, then
/// (unless a 304 or a 416 is due) exactly the bytes to serve.
async fn sized(ask: &Ask, stored: &impl Stored) -> Result<Option<Response>, ApiError> {
    let Some(meta) = stored.head().await? else { return Ok(None) };
    if ask.has(&meta) {
        return not_modified(stored, &meta).map(Some);
    }
    let range = match parse_range(ask.range.as_deref(), meta.size()) {
        RangeRequest::Unsatisfiable => return unsatisfiable(meta.size()).map(Some),
        RangeRequest::Full => None,
        RangeRequest::Partial { start, end } => {
            Some(Range::OffsetWithLength { offset: start, length: end - start + 1 })
        }
    };
    match stored.read(Read { range, unless_etag: None }).await? {
        Some(object) => respond(ask, stored, object).map(Some),
        None => Ok(None),
    }
}

/// The answer to a GET from what R2 gave: 304 when the client has the
/// object (R2 then left its bytes out), else 200, 206 or 416 as
/// `parse_range` says for the object's size. R2 read the same part.
fn respond(ask: &Ask, stored: &impl Stored, object: Object) -> Result<Response, ApiError> {
    if ask.has(&object) {
        return not_modified(stored, &object);
    }
    let size = object.size();
    let headers = headers_of(stored, &object)?;
    let (status, length) = match parse_range(ask.range.as_deref(), size) {
        RangeRequest::Unsatisfiable => return unsatisfiable(size),
        RangeRequest::Full => (200, size),
        RangeRequest::Partial { start, end } => {
            set(&headers, "Content-Range", &content_range(start, end, size))?;
            (206, end - start + 1)
        }
    };
    set(&headers, "Content-Length", &length.to_string())?;
    let body = object.body().ok_or_else(|| ApiError::internal().with_cause("R2 object without a body"))?;
    Ok(Response::from_body(ResponseBody::Stream(body))?.with_status(status).with_headers(headers))
}

/// The answer to a HEAD: a GET's headers for the whole object, no bytes.
fn head(ask: &Ask, stored: &impl Stored, meta: &Object) -> Result<Response, ApiError> {
    if ask.has(meta) {
        return not_modified(stored, meta);
    }
    let headers = headers_of(stored, meta)?;
    set(&headers, "Content-Length", &meta.size().to_string())?;
    Ok(Response::empty()?.with_headers(headers))
}

fn not_modified(stored: &impl Stored, object: &Object) -> Result<Response, ApiError> {
    Ok(Response::empty()?.with_status(304).with_headers(headers_of(stored, object)?))
}

fn unsatisfiable(size: u64) -> Result<Response, ApiError> {
    let mut response = respond::error(&ApiError::new(416, "Range Not Satisfiable"));
    set(response.headers_mut(), "Content-Range", &unsatisfied_range(size))?;
    Ok(response)
}

/// The kind's own headers, and that ranges are served.
fn headers_of(stored: &impl Stored, object: &Object) -> Result<Headers, ApiError> {
    let headers = stored.headers(object)?;
    set(&headers, "Accept-Ranges", "bytes")?;
    Ok(headers)
}

fn set(headers: &Headers, name: &str, value: &str) -> Result<(), ApiError> {
    Ok(headers.set(name, value)?)
}
