//! The KV record of one image, its key, and the small summary stored as the
//! key's KV metadata so images can be listed without reading every record.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::image_id::{image_id, rfc3339_to_ms};
use crate::output::{classify_output, ext_from_url, sniff_image, ImageKind, OutputSource};
use crate::prediction::Prediction;

/// The prefix of every image record's KV key.
pub const KEY_PREFIX: &str = "image:";
/// The most bytes KV accepts as a key's metadata, serialized.
pub const MAX_KV_METADATA_BYTES: usize = 1024;
/// Budgets, in serialized JSON bytes, of the summary's free-text fields; with
/// the keys they stay far below `MAX_KV_METADATA_BYTES`.
const CONTENT_TYPE_BUDGET: usize = 128;
const PREDICTION_ID_BUDGET: usize = 256;
const CREATED_AT_BUDGET: usize = 64;

/// Whether an image's bytes are in R2 yet.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreStatus {
    /// Announced by an async generation: the model has not given it yet.
    Awaiting,
    /// Known, not stored yet (or being stored).
    Pending,
    /// In R2.
    Stored,
    /// Storing failed; `last_error` says why. Retried while the upstream
    /// output may still exist.
    Failed,
    /// Never stored, and its upstream output is gone: it cannot be recovered.
    Lost,
}

impl StoreStatus {
    /// The name stored in KV, e.g. `"stored"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            StoreStatus::Awaiting => "awaiting",
            StoreStatus::Pending => "pending",
            StoreStatus::Stored => "stored",
            StoreStatus::Failed => "failed",
            StoreStatus::Lost => "lost",
        }
    }
}

/// What is known about one image: where it came from and whether it is stored.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ImageRecord {
    /// The image id (see `image_id`), also its R2 key.
    pub id: String,
    /// The Replicate prediction it is an output of.
    pub prediction_id: String,
    /// Its position in the prediction's outputs.
    pub index: usize,
    /// `owner/name` of the model.
    pub model: String,
    #[serde(default)]
    pub version: Option<String>,
    /// The prompt it was made from, cut to `MAX_RECORD_PROMPT_CHARS`. The
    /// prediction's whole input is kept once, in its `PredictionIndex`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// RFC 3339, as Replicate gave it.
    pub created_at: String,
    #[serde(default)]
    pub content_type: Option<String>,
    /// Bytes, once stored.
    #[serde(default)]
    pub size: Option<u64>,
    pub status: StoreStatus,
    /// The upstream output URL while it may still be valid; `None` for
    /// `data:` outputs.
    #[serde(default)]
    pub source_url: Option<String>,
    /// How many times storing has been tried.
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub last_error: Option<String>,
    /// Who made it: the usage subject of its caller (see `crate::usage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// The prefix of the per-owner index of images.
pub const OWNER_PREFIX: &str = "owner:";
/// A time later than any image's, in ms; index keys hold `this - created`.
const INVERTED_FROM_MS: u64 = 9_999_999_999_999;

/// The prefix of every index key of `owner`'s images.
pub fn owner_prefix(owner: &str) -> String {
    format!("{OWNER_PREFIX}{owner}:")
}

/// The index key of one of `owner`'s images: `owner:<owner>:<inverted
/// time>:<id>`, 13 digits of time, so that listing by prefix (in key
/// order) gives the newest first.
pub fn owner_index_key(owner: &str, created_at: &str, id: &str) -> String {
    let created = rfc3339_to_ms(created_at).unwrap_or(0).min(INVERTED_FROM_MS);
    format!("{OWNER_PREFIX}{owner}:{:013}:{id}", INVERTED_FROM_MS - created)
}

/// The image id at the end of an owner index key.
pub fn id_of_owner_index_key(key: &str) -> Option<&str> {
    key.rsplit_once(':').map(|(_, id)| id).filter(|id| !id.is_empty())
}

/// The KV key of an image's record: `image:<id>`.
pub fn kv_key(image_id: &str) -> String {
    format!("{KEY_PREFIX}{image_id}")
}

/// The KV metadata of an image's key: enough to list images without reading
/// their records.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct KvSummary {
    pub status: StoreStatus,
    pub content_type: Option<String>,
    pub size: Option<u64>,
    pub prediction_id: String,
    pub created_at: String,
}

/// The KV metadata summarising `record`. Text fields are cut to fixed budgets
/// so the serialized summary always stays under `MAX_KV_METADATA_BYTES`.
/// A struct, not a JSON map: it must serialize to a plain JS object.
pub fn kv_metadata(record: &ImageRecord) -> KvSummary {
    KvSummary {
        status: record.status,
        content_type: record.content_type.as_deref().map(|ct| fit_json(ct, CONTENT_TYPE_BUDGET).to_owned()),
        size: record.size,
        prediction_id: fit_json(&record.prediction_id, PREDICTION_ID_BUDGET).to_owned(),
        created_at: fit_json(&record.created_at, CREATED_AT_BUDGET).to_owned(),
    }
}

/// The longest prompt an image record keeps, in characters.
pub const MAX_RECORD_PROMPT_CHARS: usize = 500;
/// The longest string kept in a prediction's stored input, in characters.
pub const MAX_KEPT_STRING_CHARS: usize = 2000;
/// How deep a stored input's nested values are kept.
const MAX_KEPT_DEPTH: usize = 4;

/// A prediction's input as it is kept in KV: without secrets (see
/// `strip_secrets`), `data:` payloads replaced by a note of their size,
/// strings cut to `MAX_KEPT_STRING_CHARS`, nesting cut at `MAX_KEPT_DEPTH`.
/// Bounded whatever a caller sent.
pub fn compact_input(input: &Value) -> Value {
    fn compact(value: &Value, depth: usize) -> Value {
        match value {
            Value::String(s) if s.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("data:")) => {
                Value::String(format!("data:… ({} bytes)", s.len()))
            }
            Value::String(s) => Value::String(crate::text::cut_chars(s, MAX_KEPT_STRING_CHARS)),
            Value::Array(_) | Value::Object(_) if depth >= MAX_KEPT_DEPTH => Value::Null,
            Value::Array(items) => Value::Array(items.iter().take(64).map(|v| compact(v, depth + 1)).collect()),
            Value::Object(map) => Value::Object(
                map.iter()
                    .filter(|(k, _)| !k.to_ascii_lowercase().contains("token"))
                    .take(128)
                    .map(|(k, v)| (crate::text::cut_chars(k, 64), compact(v, depth + 1)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
    compact(input, 0)
}

/// What is kept of a prediction: its image ids once its outputs are known
/// (`None` while it runs) or announced (`awaiting`), its input, kept once
/// for all its images, and, for a prediction followed after the answer, its
/// job. Recorded at creation for predictions made through this service;
/// only those have their outputs kept.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct PredictionIndex {
    #[serde(default)]
    pub ids: Option<Vec<String>>,
    #[serde(default)]
    pub input: Value,
    /// The ids were announced by an async generation; its outputs are not kept yet.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub awaiting: bool,
    /// Who made it (a usage subject): the owner of its images, also when they
    /// are kept after the request (a delivery, the cron).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<crate::jobs::JobState>,
}

impl PredictionIndex {
    /// The ids of its kept outputs, if they are kept.
    pub fn kept_ids(&self) -> Option<&[String]> {
        self.ids.as_deref().filter(|_| !self.awaiting)
    }
}

impl PredictionIndex {
    /// Reads an index as stored (also the bare id list written before).
    pub fn parse(text: &str) -> Option<Self> {
        match serde_json::from_str::<Value>(text).ok()? {
            Value::Array(ids) => {
                let ids = ids.into_iter().map(|v| v.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>()?;
                Some(Self { ids: Some(ids), ..Self::default() })
            }
            other => serde_json::from_value(other).ok(),
        }
    }
}

/// Removes every key whose name contains `token` (any case), such as
/// `replicate_token`, from `input` and from any object nested in it.
pub fn strip_secrets(input: &mut Map<String, Value>) {
    input.retain(|key, _| !key.to_ascii_lowercase().contains("token"));
    for value in input.values_mut() {
        strip_nested(value);
    }
}

fn strip_nested(value: &mut Value) {
    match value {
        Value::Object(object) => strip_secrets(object),
        Value::Array(items) => items.iter_mut().for_each(strip_nested),
        _ => {}
    }
}

/// The longest prefix of `text` whose JSON string form (quotes included)
/// takes at most `budget` bytes.
fn fit_json(text: &str, budget: usize) -> &str {
    let mut used = 2;
    for (at, c) in text.char_indices() {
        used += json_len(c);
        if used > budget {
            return text.get(..at).unwrap_or_default();
        }
    }
    text
}

/// Bytes `c` takes inside a JSON string, at most.
fn json_len(c: char) -> usize {
    match c {
        '"' | '\\' => 2,
        c if c.is_control() => 6,
        c => c.len_utf8(),
    }
}

/// Where a new image's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// An allowed upstream URL, copied into R2 in the background.
    Fetch(String),
    /// Bytes that came inline (a `data:` output), checked to be an image;
    /// stored at once, as there is no URL to serve them from meanwhile.
    Inline(Vec<u8>),
}

/// A record about to be written, with where its bytes come from.
#[derive(Debug, Clone, PartialEq)]
pub struct NewImage {
    pub record: ImageRecord,
    pub source: ImageSource,
}

impl ImageRecord {
    /// Where the bytes can still be copied from: the upstream URL, if any.
    pub fn source(&self) -> Option<ImageSource> {
        self.source_url.clone().map(ImageSource::Fetch)
    }
}

/// One pending record per output of `prediction`, with its source. An
/// output that is neither an allowed URL nor an inline image refuses the
/// whole prediction (a 502). Ids are derived from the prediction, so the
/// same outputs always get the same records. `input` is what the model ran
/// with (secrets stripped here); `requested` is the type the input asked for,
/// which names the id's extension when the URL does not. Ids `announced`
/// before the outputs existed (an async generation) are used for the
/// outputs in order.
pub fn records_for(
    prediction: &Prediction,
    model: &str,
    input: &Value,
    requested: Option<ImageKind>,
    extra_hosts: &[String],
    now_ms: u64,
    announced: &[String],
) -> Result<Vec<NewImage>, ApiError> {
    let created_at = prediction.created_at.clone().unwrap_or_default();
    let created_ms = rfc3339_to_ms(&created_at).unwrap_or(now_ms);
    let prompt =
        input.get("prompt").and_then(Value::as_str).map(|p| crate::text::cut_chars(p, MAX_RECORD_PROMPT_CHARS));
    let requested_ext = requested.unwrap_or(ImageKind::WEBP).ext;
    let mut out = Vec::new();
    for (index, url) in prediction.output_urls().iter().enumerate() {
        let (ext, source) = match classify_output(url, extra_hosts)? {
            OutputSource::Remote(url) => (ext_from_url(&url).unwrap_or(requested_ext), ImageSource::Fetch(url)),
            OutputSource::Data { bytes, .. } => {
                let kind = sniff_image(&bytes).ok_or_else(|| ApiError::generation_failed("output is not an image"))?;
                (kind.ext, ImageSource::Inline(bytes))
            }
        };
        let record = ImageRecord {
            id: announced.get(index).cloned().unwrap_or_else(|| image_id(&prediction.id, created_ms, index, ext)),
            prediction_id: prediction.id.clone(),
            index,
            model: prediction.model.clone().unwrap_or_else(|| model.to_owned()),
            version: prediction.version.clone(),
            prompt: prompt.clone(),
            created_at: created_at.clone(),
            content_type: None,
            size: None,
            status: StoreStatus::Pending,
            source_url: match &source {
                ImageSource::Fetch(url) => Some(url.clone()),
                ImageSource::Inline(_) => None,
            },
            attempts: 0,
            last_error: None,
            owner: None,
        };
        out.push(NewImage { record, source });
    }
    Ok(out)
}

/// The KV key listing the image ids of a prediction's outputs.
pub fn prediction_key(prediction_id: &str) -> String {
    format!("prediction:{prediction_id}")
}

#[cfg(test)]
mod tests {
    /// The type flux-schnell's `output_format` asks for, as the edge reads it.
    fn requested(input: &Value) -> Option<crate::output::ImageKind> {
        let input = input.as_object().cloned().unwrap_or_default();
        let schema = crate::model_schema::flux_schnell_builtin();
        schema.output_format(&input).and_then(crate::output::ImageKind::from_ext)
    }

    fn succeeded(output: Value) -> Prediction {
        serde_json::from_value(json!({
            "id": "ctdwaehfz1rm80cmd5nsjd8114",
            "model": "black-forest-labs/flux-schnell",
            "version": "dp-4d0bcc010b3049749a251855f12800be",
            "status": "succeeded",
            "created_at": "2025-01-15T10:03:39.896Z",
            "output": output,
        }))
        .unwrap()
    }

    #[test]
    fn records_for_each_output_are_deterministic() {
        let p = succeeded(json!([
            "https://replicate.delivery/xezq/abc/out-0.jpg",
            "https://replicate.delivery/xezq/abc/out-1.jpg"
        ]));
        let input = json!({"prompt": "a cat", "output_format": "jpg", "replicate_token": "r8_secret"});
        let records = records_for(&p, "fallback/model", &input, requested(&input), &[], 0, &[]).unwrap();
        assert_eq!(records.len(), 2);
        let NewImage { record: first, source } = &records[0];
        assert!(matches!(source, ImageSource::Fetch(_)));
        assert!(first.id.ends_with(".jpg"));
        assert_eq!(first.index, 0);
        assert_eq!(first.status, StoreStatus::Pending);
        assert_eq!(first.model, "black-forest-labs/flux-schnell");
        assert_eq!(first.source_url.as_deref(), Some("https://replicate.delivery/xezq/abc/out-0.jpg"));
        assert_eq!(first.prompt.as_deref(), Some("a cat"));
        assert!(!serde_json::to_string(first).unwrap().contains("r8_secret"), "no token kept");
        assert_ne!(records[0].record.id, records[1].record.id);
        let again = records_for(&p, "fallback/model", &input, requested(&input), &[], 999, &[]).unwrap();
        assert_eq!(again[0].record, records[0].record, "the same prediction maps to the same records");
    }

    #[test]
    fn records_for_take_the_extension_from_the_url_then_the_input() {
        let p = succeeded(json!("https://replicate.delivery/a/out-0"));
        let records = records_for(
            &p,
            "m/n",
            &json!({"output_format": "png"}),
            requested(&json!({"output_format": "png"})),
            &[],
            0,
            &[],
        )
        .unwrap();
        assert!(records[0].record.id.ends_with(".png"));
        let announced = vec!["0000000000aaaaaaaaaaaaaaaa.webp".to_owned()];
        let records = records_for(&p, "m/n", &json!({}), None, &[], 0, &announced).unwrap();
        assert_eq!(records[0].record.id, announced[0], "announced ids are kept");
        let records = records_for(&p, "m/n", &json!({}), requested(&json!({})), &[], 0, &[]).unwrap();
        assert!(records[0].record.id.ends_with(".webp"));
    }

    #[test]
    fn records_for_decode_data_outputs() {
        let png = [0x89u8, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0];
        use base64::Engine;
        let uri = format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(png));
        let records =
            records_for(&succeeded(json!([uri])), "m/n", &json!({}), requested(&json!({})), &[], 0, &[]).unwrap();
        assert!(records[0].record.id.ends_with(".png"));
        assert_eq!(records[0].record.source_url, None);
        assert_eq!(records[0].source, ImageSource::Inline(png.to_vec()));
        let not_image = format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(b"hello"));
        assert_eq!(
            records_for(&succeeded(json!([not_image])), "m/n", &json!({}), requested(&json!({})), &[], 0, &[])
                .unwrap_err()
                .status,
            502
        );
    }

    #[test]
    fn records_for_refuse_hosts_not_allowed() {
        let p = succeeded(json!(["https://evil.example/out-0.png"]));
        assert_eq!(records_for(&p, "m/n", &json!({}), requested(&json!({})), &[], 0, &[]).unwrap_err().status, 502);
        let allowed =
            records_for(&p, "m/n", &json!({}), requested(&json!({})), &["evil.example".to_string()], 0, &[]).unwrap();
        assert_eq!(allowed.len(), 1);
        assert!(records_for(&succeeded(Value::Null), "m/n", &json!({}), requested(&json!({})), &[], 0, &[])
            .unwrap()
            .is_empty());
    }

    use super::*;
    use serde_json::json;

    fn record() -> ImageRecord {
        ImageRecord {
            id: "01jhmppcn8v2r5gfmmk800p3v8.webp".into(),
            prediction_id: "ctdwaehfz1rm80cmd5nsjd8114".into(),
            index: 0,
            model: "black-forest-labs/flux-schnell".into(),
            version: None,
            prompt: Some("a cat".into()),
            created_at: "2025-01-15T10:03:39.896Z".into(),
            content_type: Some("image/webp".into()),
            size: Some(52_311),
            status: StoreStatus::Stored,
            source_url: Some("https://replicate.delivery/xezq/abc/out-0.webp".into()),
            attempts: 1,
            last_error: None,
            owner: None,
        }
    }

    #[test]
    fn keys() {
        assert_eq!(kv_key("01jhmppcn8v2r5gfmmk800p3v8.png"), "image:01jhmppcn8v2r5gfmmk800p3v8.png");
        assert!(kv_key(&"x".repeat(30)).len() <= 512);
    }

    #[test]
    fn records_round_trip_with_lowercase_status() {
        let r = record();
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains(r#""status":"stored""#), "{text}");
        assert_eq!(serde_json::from_str::<ImageRecord>(&text).unwrap(), r);
        for (status, name) in
            [(StoreStatus::Pending, "pending"), (StoreStatus::Stored, "stored"), (StoreStatus::Failed, "failed")]
        {
            assert_eq!(serde_json::to_value(status).unwrap(), json!(name));
            assert_eq!(status.as_str(), name);
        }
    }

    #[test]
    fn records_missing_optional_fields_still_parse() {
        let minimal = json!({
            "id": "i", "prediction_id": "p", "index": 2, "model": "o/m",
            "created_at": "2025-01-15T10:03:39.896Z", "status": "pending",
        });
        let r: ImageRecord = serde_json::from_value(minimal).unwrap();
        assert_eq!((r.index, r.attempts, r.status), (2, 0, StoreStatus::Pending));
        assert_eq!((r.version, r.content_type, r.size, r.source_url, r.last_error), (None, None, None, None, None));
        assert_eq!(r.prompt, None);
        assert!(serde_json::from_value::<ImageRecord>(json!({"id": "i"})).is_err());
        assert!(serde_json::from_value::<ImageRecord>(json!({
            "id": "i", "prediction_id": "p", "index": 0, "model": "o/m", "created_at": "t", "status": "gone",
        }))
        .is_err());
    }

    #[test]
    fn metadata_summarises_the_record() {
        assert_eq!(
            serde_json::to_value(kv_metadata(&record())).unwrap(),
            json!({
                "status": "stored",
                "content_type": "image/webp",
                "size": 52_311,
                "prediction_id": "ctdwaehfz1rm80cmd5nsjd8114",
                "created_at": "2025-01-15T10:03:39.896Z",
            })
        );
        let pending = ImageRecord { status: StoreStatus::Pending, content_type: None, size: None, ..record() };
        let m = serde_json::to_value(kv_metadata(&pending)).unwrap();
        assert_eq!(
            (m["status"].as_str(), &m["content_type"], &m["size"]),
            (Some("pending"), &Value::Null, &Value::Null)
        );
    }

    #[test]
    fn metadata_stays_small_with_huge_values() {
        for filler in ["x", "\"", "\u{1}", "é", "😀", "\\"] {
            let long = filler.repeat(5000);
            let r = ImageRecord {
                prediction_id: long.clone(),
                created_at: long.clone(),
                content_type: Some(long.clone()),
                size: Some(u64::MAX),
                prompt: Some(long.clone()),
                ..record()
            };
            let m = serde_json::to_value(kv_metadata(&r)).unwrap();
            let serialized = serde_json::to_string(&m).unwrap();
            assert!(serialized.len() < MAX_KV_METADATA_BYTES, "{filler:?}: {} bytes", serialized.len());
            let id = m["prediction_id"].as_str().unwrap();
            assert!(!id.is_empty() && long.starts_with(id), "{filler:?}");
            assert_eq!(m["size"], json!(u64::MAX));
        }
    }

    #[test]
    fn fit_json_cuts_on_char_boundaries_within_budget() {
        assert_eq!(fit_json("abc", 5), "abc");
        assert_eq!(fit_json("abcd", 5), "abc");
        assert_eq!(fit_json("", 2), "");
        assert_eq!(fit_json("a", 2), "");
        assert_eq!(fit_json("éé", 5), "é");
        assert_eq!(fit_json("a\"b", 5), "a\"");
        assert_eq!(fit_json("a\"b", 4), "a");
        for text in ["plain", "quo\"te", "tab\there", "ünï", "😀😀"] {
            for budget in 2..20 {
                let cut = fit_json(text, budget);
                assert!(serde_json::to_string(cut).unwrap().len() <= budget, "{text:?} {budget}");
            }
        }
    }

    #[test]
    fn secrets_are_stripped_at_every_depth() {
        let mut input = match json!({
            "prompt": "a cat",
            "replicate_token": "r8_x",
            "HF_TOKEN": "hf_x",
            "apiToken": "t",
            "tokenizer": "kept? no: contains token",
            "seed": 1,
            "nested": {"access_token": "a", "keep": 1, "deeper": [{"my_token": "b", "ok": true}]},
        }) {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        strip_secrets(&mut input);
        assert_eq!(
            Value::Object(input),
            json!({"prompt": "a cat", "seed": 1, "nested": {"keep": 1, "deeper": [{"ok": true}]}})
        );
    }

    #[test]
    fn stripping_leaves_clean_inputs_alone() {
        let original = json!({"prompt": "token in a value is fine", "go_fast": true, "list": [1, "token"]});
        let mut input = original.as_object().unwrap().clone();
        strip_secrets(&mut input);
        assert_eq!(Value::Object(input), original);
    }

    #[test]
    fn kept_inputs_are_bounded_and_hold_no_payloads_or_tokens() {
        let huge = "x".repeat(10 * 1024 * 1024);
        let data = format!("data:image/png;base64,{}", "A".repeat(100_000));
        let input = json!({"prompt": huge, "image": data, "replicate_token": "r8_secret", "n": 4,
                           "deep": {"a": {"b": {"c": {"d": {"e": 1}}}}}});
        let kept = compact_input(&input);
        let text = kept.to_string();
        assert!(text.len() < 3000, "{} bytes kept", text.len());
        assert_eq!(kept["image"], "data:… (100022 bytes)");
        assert_eq!(kept["n"], 4);
        assert!(!text.contains("r8_secret"));
        assert_eq!(kept["prompt"].as_str().unwrap().chars().count(), MAX_KEPT_STRING_CHARS + 1);
        assert_eq!(kept["deep"]["a"]["b"]["c"], Value::Null);
    }

    #[test]
    fn records_keep_a_short_prompt_only() {
        let p = succeeded(json!(["https://replicate.delivery/a/out-0.png"]));
        let input = json!({"prompt": "y".repeat(5000), "image": "data:image/png;base64,AAAA"});
        let records = records_for(&p, "m/n", &input, None, &[], 0, &[]).unwrap();
        let text = serde_json::to_string(&records[0].record).unwrap();
        assert!(!text.contains("data:"));
        assert_eq!(records[0].record.prompt.as_ref().unwrap().chars().count(), MAX_RECORD_PROMPT_CHARS + 1);
    }

    #[test]
    fn prediction_indexes_old_and_new() {
        let old = PredictionIndex::parse(r#"["a.png","b.png"]"#).unwrap();
        assert_eq!(old.ids, Some(vec!["a.png".to_string(), "b.png".to_string()]));
        let new = PredictionIndex::parse(r#"{"ids":null,"input":{"prompt":"x"}}"#).unwrap();
        assert_eq!((new.ids, new.input), (None, json!({"prompt": "x"})));
        assert!(PredictionIndex::parse("garbage").is_none());
    }

    #[test]
    fn owner_index_keys_list_newest_first() {
        let older = owner_index_key("abcdefgh", "2025-01-15T10:03:39.896Z", "a.png");
        let newer = owner_index_key("abcdefgh", "2025-01-15T10:03:40.000Z", "b.png");
        assert!(newer < older);
        assert!(older.starts_with(&owner_prefix("abcdefgh")));
        assert_eq!(id_of_owner_index_key(&older), Some("a.png"));
        assert_eq!(older.len(), "owner:abcdefgh:".len() + 13 + 1 + "a.png".len());
    }
}
