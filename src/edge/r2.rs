//! The R2 bucket, called directly: one call per operation, its options
//! handed over as one JSON text, and an object's fields read as the routes
//! need them. The worker crate's builders set every option one boundary
//! crossing at a time (all seven HTTP metadata fields on every put) and read
//! all of an object's HTTP metadata to give its type.

use serde::Serialize;
use serde_json::{json, Map, Value};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use worker::js_sys::{self, Promise};
use worker::web_sys::ReadableStream;
use worker::Env;

use super::promise::settled;
use super::BindingError;

#[wasm_bindgen]
extern "C" {
    /// The runtime's `R2Bucket`.
    #[derive(Clone)]
    type R2Bucket;

    #[wasm_bindgen(method, catch)]
    fn head(this: &R2Bucket, key: &str) -> Result<Promise, JsValue>;

    #[wasm_bindgen(method, catch)]
    fn get(this: &R2Bucket, key: &str, options: &JsValue) -> Result<Promise, JsValue>;

    #[wasm_bindgen(method, catch)]
    fn put(this: &R2Bucket, key: &str, value: &JsValue, options: &JsValue) -> Result<Promise, JsValue>;

    #[wasm_bindgen(method, catch)]
    fn delete(this: &R2Bucket, key: &str) -> Result<Promise, JsValue>;

    #[wasm_bindgen(method, catch)]
    fn list(this: &R2Bucket, options: &JsValue) -> Result<Promise, JsValue>;

    /// The runtime's `R2Object`, or `R2ObjectBody` when read with its bytes.
    pub type Object;

    #[wasm_bindgen(method, getter, js_name = size)]
    fn size_js(this: &Object) -> f64;

    #[wasm_bindgen(method, getter, js_name = httpEtag)]
    pub fn http_etag(this: &Object) -> String;

    #[wasm_bindgen(method, getter, js_name = httpMetadata)]
    fn http_metadata(this: &Object) -> JsValue;

    #[wasm_bindgen(method, getter, js_name = customMetadata)]
    fn custom_metadata(this: &Object) -> JsValue;

    /// Undefined on an object read without its bytes (a head, or a read
    /// whose ETag condition was unmet).
    #[wasm_bindgen(method, getter)]
    pub fn body(this: &Object) -> Option<ReadableStream>;

    #[wasm_bindgen(method, getter)]
    fn key(this: &Object) -> String;

    #[wasm_bindgen(method, getter)]
    fn uploaded(this: &Object) -> js_sys::Date;
}

impl Object {
    pub fn size(&self) -> u64 {
        let size = self.size_js();
        if size.is_finite() && size >= 0.0 {
            size as u64
        } else {
            0
        }
    }

    /// The type it was stored with, if any.
    pub fn content_type(&self) -> Option<String> {
        let metadata = self.http_metadata();
        js_sys::Reflect::get(&metadata, &JsValue::from_str("contentType")).ok()?.as_string()
    }

    /// One of its custom metadata values.
    pub fn custom(&self, name: &str) -> Option<String> {
        js_sys::Reflect::get(&self.custom_metadata(), &JsValue::from_str(name)).ok()?.as_string()
    }
}

/// The part of an object to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Range {
    OffsetWithLength { offset: u64, length: u64 },
    OffsetToEnd { offset: u64 },
    Suffix { suffix: u64 },
}

impl Range {
    fn to_json(&self) -> Value {
        match *self {
            Range::OffsetWithLength { offset, length } => json!({ "offset": offset, "length": length }),
            Range::OffsetToEnd { offset } => json!({ "offset": offset }),
            Range::Suffix { suffix } => json!({ "suffix": suffix }),
        }
    }
}

/// What a put stores beside the bytes.
#[derive(Serialize)]
pub struct ObjectMetadata {
    #[serde(rename = "httpMetadata")]
    http_metadata: Map<String, Value>,
    #[serde(rename = "customMetadata", skip_serializing_if = "Option::is_none")]
    custom_metadata: Option<Map<String, Value>>,
}

impl ObjectMetadata {
    /// Stored with its content type.
    pub fn typed(content_type: &str) -> Self {
        let mut http_metadata = Map::new();
        http_metadata.insert("contentType".into(), Value::from(content_type));
        ObjectMetadata { http_metadata, custom_metadata: None }
    }

    /// And with custom metadata.
    pub fn custom(mut self, entries: &[(&str, String)]) -> Self {
        // Inserted one by one: collecting a map sorts first, one more sort
        // compiled in for this entry type.
        let mut map = Map::new();
        for (name, value) in entries {
            map.insert((*name).to_owned(), Value::from(value.as_str()));
        }
        self.custom_metadata = Some(map);
        self
    }
}

/// One page of a listing: the objects, and the cursor of the next page if any.
pub struct Listed {
    pub objects: Vec<Listing>,
    pub cursor: Option<String>,
}

/// A listed object: key, when stored (ms since the epoch), and the custom
/// metadata value asked for.
pub struct Listing {
    pub key: String,
    pub uploaded_ms: u64,
    pub custom: Option<String>,
}

#[derive(Clone)]
pub struct Bucket(R2Bucket);

impl Bucket {
    /// The bucket bound as `binding`; `None` when there is none.
    pub fn from_env(env: &Env, binding: &str) -> Option<Bucket> {
        super::binding(env, binding).map(|value| Bucket(value.unchecked_into()))
    }

    /// The object's metadata, without its bytes; `None` when there is none.
    pub async fn head(&self, key: &str) -> Result<Option<Object>, BindingError> {
        let found = settled(&self.0.head(key)?).await?;
        Ok(object(found))
    }

    /// The object with its bytes, or the `range` of them; without its bytes
    /// when its ETag is `unless_etag`. `None` when there is no object.
    pub async fn get(
        &self,
        key: &str,
        range: Option<&Range>,
        unless_etag: Option<&str>,
    ) -> Result<Option<Object>, BindingError> {
        let options = match (range, unless_etag) {
            (None, None) => JsValue::UNDEFINED,
            _ => {
                let mut options = Map::new();
                if let Some(range) = range {
                    options.insert("range".into(), range.to_json());
                }
                if let Some(etag) = unless_etag {
                    options.insert("onlyIf".into(), json!({ "etagDoesNotMatch": etag }));
                }
                js_sys::JSON::parse(&Value::Object(options).to_string())?
            }
        };
        let found = settled(&self.0.get(key, &options)?).await?;
        Ok(object(found))
    }

    /// Stores `value` (bytes or a stream) under `key`; the stored object.
    pub async fn put(&self, key: &str, value: &JsValue, metadata: &ObjectMetadata) -> Result<Object, BindingError> {
        let options = serde_json::to_string(metadata).map_err(|e| BindingError(e.to_string()))?;
        let stored = settled(&self.0.put(key, value, &js_sys::JSON::parse(&options)?)?).await?;
        object(stored).ok_or_else(|| BindingError("R2 put stored nothing".into()))
    }

    /// Stores `bytes` under `key`.
    pub async fn put_bytes(&self, key: &str, bytes: &[u8], metadata: &ObjectMetadata) -> Result<Object, BindingError> {
        let array = js_sys::Uint8Array::from(bytes);
        self.put(key, &array, metadata).await
    }

    pub async fn delete(&self, key: &str) -> Result<(), BindingError> {
        settled(&self.0.delete(key)?).await?;
        Ok(())
    }

    /// One page of the objects under `prefix`, from `cursor`, each with its
    /// custom metadata value `custom`.
    pub async fn list(&self, prefix: &str, cursor: Option<&str>, custom: &str) -> Result<Listed, BindingError> {
        let mut options = json!({ "prefix": prefix, "include": ["customMetadata"] });
        if let Some(cursor) = cursor {
            options["cursor"] = Value::from(cursor);
        }
        let page = settled(&self.0.list(&js_sys::JSON::parse(&options.to_string())?)?).await?;
        let field = |name: &str| js_sys::Reflect::get(&page, &JsValue::from_str(name)).unwrap_or_default();
        let objects = js_sys::Array::from(&field("objects"))
            .iter()
            .map(|o| {
                let o: Object = o.unchecked_into();
                let uploaded = o.uploaded().get_time();
                let uploaded_ms = if uploaded.is_finite() && uploaded >= 0.0 { uploaded as u64 } else { 0 };
                Listing { key: o.key(), uploaded_ms, custom: o.custom(custom) }
            })
            .collect();
        let cursor = field("truncated").is_truthy().then(|| field("cursor").as_string()).flatten();
        Ok(Listed { objects, cursor })
    }
}

fn object(value: JsValue) -> Option<Object> {
    value.is_object().then(|| value.unchecked_into())
}
