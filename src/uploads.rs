//! Images sent in by callers ("uploads"), to be passed to models as inputs:
//! what is accepted, the ids they get, the record kept of each, and the
//! shapes answered (ours at `POST /uploads`, Replicate's file object under
//! `/replicate/v1/files`).
//!
//! Storage: the bytes in R2 under `uploads/<id>` (with the upload's expiry as
//! custom metadata, so serving needs no KV read), the record in KV under
//! `upload:<id>` (expiring by TTL, with a small summary as the key's
//! metadata for the retention sweep), and an index of each owner's uploads
//! under `uploads-of:<owner>:<newest first>:<id>` for listing.
//!
//! Only images are kept: the magic numbers decide, never the declared type.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::credentials::Credential;
use crate::error::ApiError;
use crate::image_id::{rfc3339_to_ms, ALLOWED_EXTS, MAX_TIMESTAMP_MS};
use crate::multipart::Part;
use crate::output::{sniff_image, ImageKind};

/// The default of `MAX_UPLOAD_BYTES`: 10 MiB.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 10 * 1024 * 1024;
/// The default of `UPLOAD_RETENTION_HOURS`: a day, as Replicate keeps files.
pub const DEFAULT_RETENTION_HOURS: u32 = 24;
/// The R2 prefix of upload bytes.
pub const R2_PREFIX: &str = "uploads/";
/// The KV prefix of upload records.
pub const KV_PREFIX: &str = "upload:";
/// The KV prefix of the index of each owner's uploads.
pub const OWNER_INDEX_PREFIX: &str = "uploads-of:";
/// The KV prefix of caller tokens Replicate recently accepted.
pub const TOKEN_CHECK_PREFIX: &str = "token-ok:";
/// How long a caller's token, once accepted by Replicate, is trusted for
/// uploads without asking again.
pub const TOKEN_CHECK_TTL_SECS: u64 = 10 * 60;
/// The owner of uploads made with the service's `AUTH_TOKEN`.
pub const SERVICE_OWNER: &str = "service";
/// Room for a form's text fields and part headers, on top of its files.
pub const FORM_OVERHEAD_BYTES: u64 = 64 * 1024;
/// The most files one `/generate` form may carry.
pub const MAX_FORM_FILES: usize = 4;
/// The longest file name kept, in bytes (Replicate's limit).
pub const MAX_NAME_BYTES: usize = 255;
/// The largest `metadata` of a file, as JSON text.
pub const MAX_METADATA_BYTES: usize = 8 * 1024;
/// Files per page of `GET /files`.
pub const FILES_PAGE_SIZE: usize = 50;
/// Hex digits of an upload id's random part (128 bits).
const ID_HEX_CHARS: usize = 32;

/// The operator's settings for uploads, read from the vars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadSettings {
    /// The largest image accepted, in bytes (`MAX_UPLOAD_BYTES`).
    pub max_upload_bytes: u64,
    /// How long uploads are kept (`UPLOAD_RETENTION_HOURS`).
    pub retention_hours: u32,
}

impl Default for UploadSettings {
    fn default() -> Self {
        Self { max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES, retention_hours: DEFAULT_RETENTION_HOURS }
    }
}

impl UploadSettings {
    /// Reads `MAX_UPLOAD_BYTES` (1 KiB to 100 MiB) and
    /// `UPLOAD_RETENTION_HOURS` (1 to 720) through `var`; unset or empty
    /// means the default, anything else malformed is an error naming it.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ApiError> {
        let get = |name: &str| var(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let bounded = |name: &str, default: u64, min: u64, max: u64| match get(name) {
            None => Ok(default),
            Some(v) => v.parse::<u64>().ok().filter(|n| (min..=max).contains(n)).ok_or_else(|| {
                ApiError::misconfigured(500, format!("{name} must be a whole number from {min} to {max}"))
            }),
        };
        let max_upload_bytes = bounded("MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES, 1024, 100 * 1024 * 1024)?;
        let retention_hours = bounded("UPLOAD_RETENTION_HOURS", u64::from(DEFAULT_RETENTION_HOURS), 1, 720)?;
        Ok(Self { max_upload_bytes, retention_hours: u32::try_from(retention_hours).unwrap_or(720) })
    }

    pub fn retention_secs(&self) -> u64 {
        u64::from(self.retention_hours) * 3600
    }

    pub fn retention_ms(&self) -> u64 {
        self.retention_secs() * 1000
    }

    /// The largest `multipart/form-data` body carrying up to `files` images.
    pub fn max_form_bytes(&self, files: usize) -> u64 {
        self.max_upload_bytes.saturating_mul(files as u64).saturating_add(FORM_OVERHEAD_BYTES)
    }
}

/// A new upload id: the 128 random bits as 32 lowercase hex digits, a `.`,
/// and the extension of the image's kind (`3f…9a.png`). Its length sets it
/// apart from image ids (26 characters before the `.`).
pub fn new_upload_id(random: &[u8; 16], kind: ImageKind) -> String {
    let mut id: String = random.iter().map(|b| format!("{b:02x}")).collect();
    id.push('.');
    id.push_str(kind.ext);
    id
}

/// Splits a well-formed upload id into its hex part and extension; anything
/// else is `None`.
pub fn parse_upload_id(id: &str) -> Option<(&str, &str)> {
    let (hex, ext) = id.split_once('.')?;
    let hex_ok = hex.len() == ID_HEX_CHARS && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (hex_ok && ALLOWED_EXTS.contains(&ext)).then_some((hex, ext))
}

/// The R2 key of an upload's bytes.
pub fn r2_key(id: &str) -> String {
    format!("{R2_PREFIX}{id}")
}

/// The KV key of an upload's record.
pub fn kv_key(id: &str) -> String {
    format!("{KV_PREFIX}{id}")
}

/// The public URL of an upload: what models are given.
pub fn upload_url(base_url: &str, id: &str) -> String {
    format!("{base_url}/upload/{id}")
}

/// Who an upload belongs to: `service` for callers with the service's
/// `AUTH_TOKEN`; `tok_` and 16 hex digits of SHA-256(token) for callers with
/// a Replicate token of their own (never the token itself).
pub fn owner_of(credential: &Credential) -> String {
    match credential {
        Credential::Service(_) => SERVICE_OWNER.to_owned(),
        Credential::User(token) => {
            let digest = Sha256::digest(token.as_bytes());
            let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
            format!("tok_{hex}")
        }
    }
}

/// The KV key remembering that Replicate accepted the token of `owner`.
pub fn token_check_key(owner: &str) -> String {
    format!("{TOKEN_CHECK_PREFIX}{owner}")
}

/// The KV prefix of `owner`'s index entries.
pub fn owner_index_prefix(owner: &str) -> String {
    format!("{OWNER_INDEX_PREFIX}{owner}:")
}

/// An index entry: the owner, the time inverted (so the newest sort first),
/// the id.
pub fn owner_index_key(owner: &str, created_ms: u64, id: &str) -> String {
    let inverted = MAX_TIMESTAMP_MS.saturating_sub(created_ms.min(MAX_TIMESTAMP_MS));
    format!("{}{inverted:015}:{id}", owner_index_prefix(owner))
}

/// The upload id at the end of an index entry.
pub fn id_of_index_key(key: &str) -> Option<&str> {
    key.rsplit(':').next().filter(|id| parse_upload_id(id).is_some())
}

/// RFC 3339 with milliseconds and `Z`, as Replicate writes file times.
pub fn ms_to_rfc3339(ms: u64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(time).to_string()
}

/// What the caller says of an upload.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadMeta {
    pub name: String,
    pub metadata: Map<String, Value>,
    pub owner: String,
}

/// The KV record of one upload.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct UploadRecord {
    pub id: String,
    pub name: String,
    /// From the magic numbers, not from what the caller declared.
    pub content_type: String,
    pub size: u64,
    /// Hex digests of the bytes.
    pub sha256: String,
    pub md5: String,
    /// The caller's metadata (a JSON object).
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// RFC 3339, milliseconds.
    pub created_at: String,
    pub expires_at: String,
    /// See [`owner_of`].
    pub owner: String,
}

/// The summary kept as the record key's KV metadata: enough for the
/// retention sweep to act without reading the record.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct UploadSummary {
    pub expires_at_ms: u64,
    pub created_at_ms: u64,
    pub owner: String,
}

impl UploadRecord {
    /// The record of `bytes` (already checked to be an image of `kind`),
    /// stored at `created_ms` and kept for `retention_ms`.
    pub fn new(id: &str, kind: ImageKind, bytes: &[u8], meta: UploadMeta, created_ms: u64, retention_ms: u64) -> Self {
        Self {
            id: id.to_owned(),
            name: meta.name,
            content_type: kind.content_type.to_owned(),
            size: bytes.len() as u64,
            sha256: hex(&Sha256::digest(bytes)),
            md5: hex(&md5::Md5::digest(bytes)),
            metadata: meta.metadata,
            created_at: ms_to_rfc3339(created_ms),
            expires_at: ms_to_rfc3339(created_ms.saturating_add(retention_ms)),
            owner: meta.owner,
        }
    }

    pub fn created_at_ms(&self) -> u64 {
        rfc3339_to_ms(&self.created_at).unwrap_or(0)
    }

    /// When it expires; an unreadable time counts as already.
    pub fn expires_at_ms(&self) -> u64 {
        rfc3339_to_ms(&self.expires_at).unwrap_or(0)
    }

    pub fn is_expired(&self, now_ms: u64) -> bool {
        now_ms >= self.expires_at_ms()
    }

    pub fn summary(&self) -> UploadSummary {
        UploadSummary {
            expires_at_ms: self.expires_at_ms(),
            created_at_ms: self.created_at_ms(),
            owner: self.owner.clone(),
        }
    }

    pub fn owner_index_key(&self) -> String {
        owner_index_key(&self.owner, self.created_at_ms(), &self.id)
    }

    /// Seconds from `now_ms` until it expires, at least 60 (KV's shortest TTL).
    pub fn ttl_secs(&self, now_ms: u64) -> u64 {
        (self.expires_at_ms().saturating_sub(now_ms) / 1000).max(60)
    }

    /// Replicate's file object; `urls.get` is our public URL of the bytes
    /// (what a client passes as a model input; opaque to it).
    pub fn file_object(&self, base_url: &str) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "content_type": self.content_type,
            "size": self.size,
            "etag": self.md5,
            "checksums": { "sha256": self.sha256, "md5": self.md5 },
            "metadata": self.metadata,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "urls": { "get": upload_url(base_url, &self.id) },
        })
    }

    /// The answer of `POST /uploads`.
    pub fn upload_answer(&self, base_url: &str) -> Value {
        json!({
            "id": self.id,
            "url": upload_url(base_url, &self.id),
            "content_type": self.content_type,
            "size": self.size,
            "expires_at": self.expires_at,
        })
    }
}

impl UploadSummary {
    /// The KV key of the owner's index entry for upload `id`.
    pub fn owner_index_key(&self, id: &str) -> String {
        owner_index_key(&self.owner, self.created_at_ms, id)
    }
}

/// Whether the sweep removes an object stored at `uploaded_ms` whose
/// metadata says it expires at `expires_at_ms`: once either its expiry or
/// the retention since it was stored has passed.
pub fn object_expired(uploaded_ms: u64, expires_at_ms: Option<u64>, now_ms: u64, retention_ms: u64) -> bool {
    now_ms >= uploaded_ms.saturating_add(retention_ms) || expires_at_ms.is_some_and(|e| now_ms >= e)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The image kind of `bytes`: a 413 past `max_bytes`, a 400 when the magic
/// numbers are not those of a PNG, JPEG, WebP or GIF.
pub fn check_image(bytes: &[u8], max_bytes: u64) -> Result<ImageKind, ApiError> {
    if bytes.len() as u64 > max_bytes {
        return Err(too_large(max_bytes));
    }
    sniff_image(bytes).ok_or_else(not_an_image)
}

pub fn too_large(max_bytes: u64) -> ApiError {
    ApiError::new(413, "Upload too large").with_details(format!("images may be at most {max_bytes} bytes"))
}

pub fn not_an_image() -> ApiError {
    ApiError::bad_request("Not an image").with_details("send a PNG, JPEG, WebP or GIF image")
}

/// How a `POST /uploads` body carries its image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadBody {
    /// `multipart/form-data` with the image in a `file` part.
    Form { boundary: String },
    /// The image itself, sent as `image/*`.
    Raw,
}

/// How the body of the given Content-Type carries its image; a 415 for
/// other types, a 400 for a form without a usable boundary.
pub fn upload_body(content_type: Option<&str>) -> Result<UploadBody, ApiError> {
    let content_type = content_type.unwrap_or_default();
    if crate::multipart::is_form_data(content_type) {
        return match crate::multipart::form_boundary(content_type) {
            Some(boundary) => Ok(UploadBody::Form { boundary }),
            None => Err(ApiError::bad_request("Invalid multipart/form-data body")
                .with_details("the Content-Type has no usable boundary")),
        };
    }
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match essence.strip_prefix("image/") {
        Some(subtype) if !subtype.is_empty() => Ok(UploadBody::Raw),
        _ => Err(ApiError::new(415, "Unsupported Media Type")
            .with_details("send multipart/form-data with a `file` part, or the image itself as image/*")),
    }
}

/// The image part of a `POST /uploads` form: the `file` part.
pub fn upload_part<'p, 'a>(parts: &'p [Part<'a>]) -> Result<&'p Part<'a>, ApiError> {
    parts.iter().find(|p| p.name == "file" && !p.is_empty_file()).ok_or_else(|| {
        ApiError::bad_request("No file").with_details("send the image in a multipart/form-data part named `file`")
    })
}

/// The name kept for an upload: the file name the client gave, without any
/// directory, control characters removed and cut to `MAX_NAME_BYTES`; else
/// `upload.<ext>`.
pub fn display_name(filename: Option<&str>, kind: ImageKind) -> String {
    let base = filename.unwrap_or_default().rsplit(['/', '\\']).next().unwrap_or_default();
    let mut name = String::new();
    for c in base.chars().filter(|c| !c.is_control()) {
        if name.len() + c.len_utf8() > MAX_NAME_BYTES {
            break;
        }
        name.push(c);
    }
    let name = name.trim();
    if name.is_empty() {
        format!("upload.{}", kind.ext)
    } else {
        name.to_owned()
    }
}

/// What a `POST /files` form holds, as Replicate reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct FileForm<'a> {
    /// The `content` part's bytes.
    pub content: &'a [u8],
    /// `filename`, else the `content` part's file name, else `file`.
    pub name: String,
    /// `metadata` (a JSON object), else `{}`.
    pub metadata: Map<String, Value>,
}

/// Reads a `POST /files` form: `content` (required), `filename` (at most
/// 255 bytes), `type` (ignored: the type is the one the bytes show),
/// `metadata` (a JSON object of at most `MAX_METADATA_BYTES`).
pub fn file_form<'a>(parts: &[Part<'a>]) -> Result<FileForm<'a>, ApiError> {
    let content = parts
        .iter()
        .find(|p| p.name == "content")
        .ok_or_else(|| ApiError::bad_request("The file must be sent in a `content` part."))?;
    let filename = match parts.iter().find(|p| p.name == "filename") {
        Some(part) => Some(part.text()?.to_owned()),
        None => content.filename.clone(),
    };
    let name = filename.filter(|n| !n.is_empty()).unwrap_or_else(|| "file".to_owned());
    if name.len() > MAX_NAME_BYTES || name.chars().any(char::is_control) {
        return Err(ApiError::new(422, "filename must be at most 255 bytes, without control characters"));
    }
    let metadata = match parts.iter().find(|p| p.name == "metadata") {
        None => Map::new(),
        Some(part) => parse_metadata(part.body)?,
    };
    Ok(FileForm { content: content.body, name, metadata })
}

fn parse_metadata(text: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if text.len() > MAX_METADATA_BYTES {
        return Err(ApiError::new(422, format!("metadata must be at most {MAX_METADATA_BYTES} bytes")));
    }
    if text.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::new(422, "metadata must be a JSON object")),
        Err(_) => Err(ApiError::new(422, "metadata must be valid JSON")),
    }
}

/// One entry of a `/generate` form, in the order sent.
#[derive(Debug, Clone, PartialEq)]
pub enum FormEntry<'p, 'a> {
    /// A text field.
    Text(String, String),
    /// A file, to be stored as an upload; the field gets its URL.
    File(&'p Part<'a>),
}

/// A `/generate` form taken apart: its entries, and the two fields that are
/// not model input.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateParts<'p, 'a> {
    pub entries: Vec<FormEntry<'p, 'a>>,
    /// `replicate_token`, the first non-blank one.
    pub replicate_token: Option<String>,
    /// `model`, if given.
    pub model: Option<String>,
}

/// Splits a `/generate` form into text fields and files (at most
/// `MAX_FORM_FILES`; empty file inputs are skipped). `replicate_token` and
/// `model` are taken out of the fields; text must be UTF-8.
pub fn generate_parts<'p, 'a>(parts: &'p [Part<'a>]) -> Result<GenerateParts<'p, 'a>, ApiError> {
    let mut out = GenerateParts { entries: Vec::new(), replicate_token: None, model: None };
    let mut files = 0;
    for part in parts {
        if part.is_empty_file() {
            continue;
        }
        if part.is_file() && part.name != "replicate_token" && part.name != "model" {
            files += 1;
            if files > MAX_FORM_FILES {
                return Err(ApiError::bad_request("Too many files")
                    .with_details(format!("a form may carry at most {MAX_FORM_FILES} images")));
            }
            out.entries.push(FormEntry::File(part));
            continue;
        }
        let text = part.text()?;
        match part.name.as_str() {
            "replicate_token" => {
                if out.replicate_token.is_none() && !text.trim().is_empty() {
                    out.replicate_token = Some(text.to_owned());
                }
            }
            "model" => out.model = Some(text.to_owned()),
            name => out.entries.push(FormEntry::Text(name.to_owned(), text.to_owned())),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
    const JPEG: &[u8] = &[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F'];

    fn settings(pairs: &[(&str, &str)]) -> Result<UploadSettings, ApiError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        UploadSettings::from_vars(|k| map.get(k).cloned())
    }

    fn part<'a>(name: &str, filename: Option<&str>, body: &'a [u8]) -> Part<'a> {
        Part { name: name.into(), filename: filename.map(Into::into), content_type: None, body }
    }

    #[test]
    fn settings_defaults_and_bounds() {
        let s = settings(&[]).unwrap();
        assert_eq!(s, UploadSettings { max_upload_bytes: 10 * 1024 * 1024, retention_hours: 24 });
        assert_eq!(s.retention_ms(), 24 * 3600 * 1000);
        assert_eq!(s.max_form_bytes(1), 10 * 1024 * 1024 + FORM_OVERHEAD_BYTES);
        let s = settings(&[("MAX_UPLOAD_BYTES", " 2048 "), ("UPLOAD_RETENTION_HOURS", "1")]).unwrap();
        assert_eq!((s.max_upload_bytes, s.retention_hours), (2048, 1));
        assert_eq!(settings(&[("MAX_UPLOAD_BYTES", "")]).unwrap().max_upload_bytes, DEFAULT_MAX_UPLOAD_BYTES);
        for (name, value) in [
            ("MAX_UPLOAD_BYTES", "10"),
            ("MAX_UPLOAD_BYTES", "1e6"),
            ("MAX_UPLOAD_BYTES", "209715200"),
            ("UPLOAD_RETENTION_HOURS", "0"),
            ("UPLOAD_RETENTION_HOURS", "721"),
            ("UPLOAD_RETENTION_HOURS", "-1"),
        ] {
            let e = settings(&[(name, value)]).unwrap_err();
            assert_eq!(e.status, 500);
            assert!(e.details.unwrap().starts_with(name));
        }
    }

    #[test]
    fn ids_are_128_random_bits_and_an_extension() {
        let id = new_upload_id(&[0xab; 16], ImageKind::PNG);
        assert_eq!(id, format!("{}.png", "ab".repeat(16)));
        assert_eq!(parse_upload_id(&id), Some((&id[..32], "png")));
        assert_eq!(new_upload_id(&[0; 16], ImageKind::JPEG), format!("{}.jpg", "0".repeat(32)));
        for bad in [
            "",
            "abc.png",
            &format!("{}.png", "A".repeat(32)),
            &format!("{}.exe", "a".repeat(32)),
            &format!("{}.PNG", "a".repeat(32)),
            &"a".repeat(32),
            &format!("{}.png", "g".repeat(32)),
            &format!("{}.png", "a".repeat(33)),
            "01jhmppcn8a1b2c3d4e5f6g7h8.png",
            "../../etc/passwd",
        ] {
            assert_eq!(parse_upload_id(bad), None, "{bad}");
        }
        assert_eq!(r2_key(&id), format!("uploads/{id}"));
        assert_eq!(kv_key(&id), format!("upload:{id}"));
    }

    #[test]
    fn owners_never_hold_the_token() {
        assert_eq!(owner_of(&Credential::Service("r8_service".into())), "service");
        let owner = owner_of(&Credential::User("r8_user_token".into()));
        assert_eq!(owner.len(), 4 + 16);
        assert!(owner.starts_with("tok_") && owner[4..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(!owner.contains("r8_user"));
        assert_eq!(owner, owner_of(&Credential::User("r8_user_token".into())));
        assert_ne!(owner, owner_of(&Credential::User("r8_other_token".into())));
        // SHA-256("abc") starts ba7816bf8f01cfea.
        assert_eq!(owner_of(&Credential::User("abc".into())), "tok_ba7816bf8f01cfea");
    }

    #[test]
    fn index_keys_sort_newest_first() {
        let id = new_upload_id(&[1; 16], ImageKind::PNG);
        let older = owner_index_key("service", 1_000, &id);
        let newer = owner_index_key("service", 2_000, &id);
        assert!(newer < older);
        assert!(older.starts_with(&owner_index_prefix("service")));
        assert_eq!(id_of_index_key(&older), Some(id.as_str()));
        assert_eq!(id_of_index_key("uploads-of:service:1:nope"), None);
    }

    #[test]
    fn records_hash_and_expire() {
        let meta = UploadMeta { name: "cat.png".into(), metadata: Map::new(), owner: "service".into() };
        let created = 1_724_329_611_079; // 2024-08-22T12:26:51.079Z
        let r = UploadRecord::new("x.png", ImageKind::PNG, b"", meta, created, 24 * 3600 * 1000);
        // The digests of no bytes, as in Replicate's recorded answer.
        assert_eq!(r.md5, "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(r.sha256, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(r.created_at, "2024-08-22T12:26:51.079Z");
        assert_eq!(r.expires_at, "2024-08-23T12:26:51.079Z");
        assert_eq!(r.created_at_ms(), created);
        assert!(!r.is_expired(created));
        assert!(r.is_expired(created + 24 * 3600 * 1000));
        assert_eq!(r.ttl_secs(created), 24 * 3600);
        assert_eq!(r.ttl_secs(created + 24 * 3600 * 1000), 60);
        assert_eq!(
            r.summary(),
            UploadSummary { expires_at_ms: r.expires_at_ms(), created_at_ms: created, owner: "service".into() }
        );
        assert_eq!(r.summary().owner_index_key("x.png"), r.owner_index_key());
        let garbled = UploadRecord { expires_at: "soon".into(), ..r };
        assert!(garbled.is_expired(0));
    }

    #[test]
    fn file_objects_have_replicates_shape() {
        let mut metadata = Map::new();
        metadata.insert("customer_reference_id".into(), json!("123"));
        let meta = UploadMeta { name: "photo.png".into(), metadata, owner: "service".into() };
        let r = UploadRecord::new("ab.png", ImageKind::PNG, PNG, meta, 0, 3_600_000);
        let v = r.file_object("https://img.example.com");
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        for key in
            ["id", "name", "content_type", "size", "etag", "checksums", "metadata", "created_at", "expires_at", "urls"]
        {
            assert!(keys.contains(&key), "{key}");
        }
        assert_eq!(v["urls"]["get"], "https://img.example.com/upload/ab.png");
        assert_eq!(v["etag"], v["checksums"]["md5"]);
        assert_eq!(v["size"], PNG.len());
        assert_eq!(v["content_type"], "image/png");
        assert_eq!(v["metadata"]["customer_reference_id"], "123");
        assert!(v.get("owner").is_none());
        let a = r.upload_answer("https://img.example.com");
        assert_eq!(
            a,
            json!({"id": "ab.png", "url": "https://img.example.com/upload/ab.png", "content_type": "image/png", "size": PNG.len(), "expires_at": "1970-01-01T01:00:00.000Z"})
        );
    }

    #[test]
    fn records_round_trip_through_json() {
        let meta = UploadMeta { name: "a".into(), metadata: Map::new(), owner: "tok_0123456789abcdef".into() };
        let r = UploadRecord::new("ab.png", ImageKind::PNG, PNG, meta, 5, 10);
        let back: UploadRecord = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn sweep_decisions() {
        let hour = 3_600_000;
        assert!(!object_expired(0, None, hour - 1, hour));
        assert!(object_expired(0, None, hour, hour));
        assert!(object_expired(0, Some(10), 10, hour));
        assert!(!object_expired(0, Some(10), 9, hour));
        assert!(!object_expired(u64::MAX, None, u64::MAX - 1, hour));
    }

    #[test]
    fn only_images_within_the_limit() {
        assert_eq!(check_image(PNG, 1024), Ok(ImageKind::PNG));
        assert_eq!(check_image(JPEG, 1024), Ok(ImageKind::JPEG));
        assert_eq!(check_image(PNG, 4).unwrap_err().status, 413);
        for bad in [&b""[..], b"<svg xmlns='http://www.w3.org/2000/svg'/>", b"%PDF-1.7", b"GIF8", b"RIFF\0\0\0\0WAVE"] {
            assert_eq!(check_image(bad, 1024).unwrap_err().status, 400);
        }
    }

    #[test]
    fn upload_bodies_by_content_type() {
        assert_eq!(upload_body(Some("multipart/form-data; boundary=x")), Ok(UploadBody::Form { boundary: "x".into() }));
        assert_eq!(upload_body(Some("image/png")), Ok(UploadBody::Raw));
        assert_eq!(upload_body(Some("IMAGE/WEBP; q=1")), Ok(UploadBody::Raw));
        assert_eq!(upload_body(Some("multipart/form-data")).unwrap_err().status, 400);
        for bad in [None, Some(""), Some("application/json"), Some("image/"), Some("text/plain"), Some("imagex/png")] {
            assert_eq!(upload_body(bad).unwrap_err().status, 415, "{bad:?}");
        }
    }

    #[test]
    fn the_upload_part_is_the_file_part() {
        let parts = [part("other", Some("a.png"), PNG), part("file", Some(""), b""), part("file", Some("b.png"), PNG)];
        assert_eq!(upload_part(&parts).unwrap().filename.as_deref(), Some("b.png"));
        let e = upload_part(&parts[..2]).unwrap_err();
        assert_eq!((e.status, e.error.as_str()), (400, "No file"));
    }

    #[test]
    fn display_names_are_cleaned() {
        assert_eq!(display_name(Some("cat.png"), ImageKind::PNG), "cat.png");
        assert_eq!(display_name(Some("C:\\Users\\me\\cat.png"), ImageKind::PNG), "cat.png");
        assert_eq!(display_name(Some("../../x/\u{0}cat\n.png"), ImageKind::PNG), "cat.png");
        assert_eq!(display_name(None, ImageKind::JPEG), "upload.jpg");
        assert_eq!(display_name(Some("  "), ImageKind::GIF), "upload.gif");
        let long = "é".repeat(200);
        let name = display_name(Some(&long), ImageKind::PNG);
        assert!(name.len() <= MAX_NAME_BYTES && name.chars().all(|c| c == 'é'));
    }

    #[test]
    fn file_forms_as_replicate_reads_them() {
        let parts = [part("content", Some("buffer_1"), PNG), part("metadata", Some("blob"), br#"{"a": 1}"#)];
        let form = file_form(&parts).unwrap();
        assert_eq!((form.content, form.name.as_str()), (PNG, "buffer_1"));
        assert_eq!(form.metadata["a"], 1);

        let parts =
            [part("filename", None, b"named.png"), part("type", None, b"text/plain"), part("content", None, PNG)];
        let form = file_form(&parts).unwrap();
        assert_eq!(form.name, "named.png");
        assert!(form.metadata.is_empty());
        assert_eq!(file_form(&[part("content", None, PNG)]).unwrap().name, "file");

        assert_eq!(file_form(&[part("file", Some("a.png"), PNG)]).unwrap_err().status, 400);
        let long = "n".repeat(256);
        assert_eq!(file_form(&[part("content", Some(&long), PNG)]).unwrap_err().status, 422);
        for bad in [&b"[1]"[..], b"not json", b"\"text\""] {
            let parts = [part("content", None, PNG), part("metadata", None, bad)];
            assert_eq!(file_form(&parts).unwrap_err().status, 422);
        }
        let big = format!("{{\"a\": \"{}\"}}", "x".repeat(MAX_METADATA_BYTES));
        assert_eq!(
            file_form(&[part("content", None, PNG), part("metadata", None, big.as_bytes())]).unwrap_err().status,
            422
        );
    }

    #[test]
    fn generate_forms_keep_order_and_take_out_token_and_model() {
        let parts = [
            part("prompt", None, b"a cat"),
            part("image", Some("cat.png"), PNG),
            part("replicate_token", None, b"  "),
            part("replicate_token", None, b"r8_abc"),
            part("replicate_token", None, b"r8_later"),
            part("model", None, b"owner/name"),
            part("mask", Some(""), b""),
            part("scale", None, b"2"),
        ];
        let form = generate_parts(&parts).unwrap();
        assert_eq!(form.replicate_token.as_deref(), Some("r8_abc"));
        assert_eq!(form.model.as_deref(), Some("owner/name"));
        assert_eq!(form.entries.len(), 3);
        assert_eq!(form.entries[0], FormEntry::Text("prompt".into(), "a cat".into()));
        assert!(matches!(form.entries[1], FormEntry::File(p) if p.name == "image"));
        assert_eq!(form.entries[2], FormEntry::Text("scale".into(), "2".into()));
    }

    #[test]
    fn generate_forms_are_bounded_and_utf8() {
        let many: Vec<Part> = (0..=MAX_FORM_FILES).map(|_| part("image", Some("a.png"), PNG)).collect();
        assert_eq!(generate_parts(&many).unwrap_err().status, 400);
        assert!(generate_parts(&many[..MAX_FORM_FILES]).is_ok());
        assert_eq!(generate_parts(&[part("prompt", None, b"\xff")]).unwrap_err().status, 400);
    }
}
