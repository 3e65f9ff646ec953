//! The KV namespace, called directly: one call per operation, its options
//! handed over as one JSON text. The worker crate's `KvStore` looks up five
//! methods each time it is made (once per request here) and builds every
//! call's options through serde-wasm-bindgen, one boundary crossing per
//! field.

use super::promise::settled;
use super::BindingError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use worker::js_sys::{self, Promise};
use worker::Env;

#[wasm_bindgen]
extern "C" {
    /// The runtime's `KVNamespace`.
    #[derive(Clone)]
    type KvNamespace;

    #[wasm_bindgen(method, catch)]
    fn get(this: &KvNamespace, key: &str) -> Result<Promise, JsValue>;

    #[wasm_bindgen(method, catch)]
    fn put(this: &KvNamespace, key: &str, value: &str, options: &JsValue) -> Result<Promise, JsValue>;

    #[wasm_bindgen(method, catch)]
    fn delete(this: &KvNamespace, key: &str) -> Result<Promise, JsValue>;

    #[wasm_bindgen(method, catch)]
    fn list(this: &KvNamespace, options: &JsValue) -> Result<Promise, JsValue>;
}

/// How a value is written: when it expires, and the metadata kept with it.
#[derive(Serialize, Default)]
pub struct PutOptions<M: Serialize = Value> {
    #[serde(rename = "expirationTtl", skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<M>,
}

impl PutOptions {
    /// Kept until deleted, with no metadata.
    pub fn none() -> Self {
        PutOptions { ttl_secs: None, metadata: None }
    }

    /// Expiring after `secs` (KV's least is 60).
    pub fn ttl(secs: u64) -> Self {
        PutOptions { ttl_secs: Some(secs.max(60)), metadata: None }
    }
}

/// A listed key.
#[derive(Deserialize, Debug)]
pub struct Key {
    pub name: String,
    #[serde(default)]
    pub metadata: Option<Value>,
}

/// One page of a listing; `cursor` names the next, if any.
pub struct Page {
    pub keys: Vec<Key>,
    pub cursor: Option<String>,
}

#[derive(Deserialize)]
struct RawPage {
    keys: Vec<Key>,
    #[serde(default)]
    list_complete: bool,
    #[serde(default)]
    cursor: Option<String>,
}

#[derive(Serialize)]
struct ListOptions<'a> {
    prefix: &'a str,
    limit: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<&'a str>,
}

#[derive(Clone)]
pub struct Kv(KvNamespace);

impl Kv {
    /// The namespace bound as `binding`; `None` when there is none.
    pub fn from_env(env: &Env, binding: &str) -> Option<Kv> {
        super::binding(env, binding).map(|value| Kv(value.unchecked_into()))
    }

    pub async fn get_text(&self, key: &str) -> Result<Option<String>, BindingError> {
        let value = settled(&self.0.get(key)?).await?;
        Ok(value.as_string())
    }

    /// The value under `key` parsed as `T`; unreadable JSON is an error.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, BindingError> {
        match self.get_text(key).await? {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text).map(Some).map_err(|e| BindingError(format!("{key}: {e}"))),
        }
    }

    pub async fn put<M: Serialize>(&self, key: &str, value: &str, options: PutOptions<M>) -> Result<(), BindingError> {
        let options = if options.ttl_secs.is_none() && options.metadata.is_none() {
            JsValue::UNDEFINED
        } else {
            let text = serde_json::to_string(&options).map_err(|e| BindingError(e.to_string()))?;
            js_sys::JSON::parse(&text)?
        };
        settled(&self.0.put(key, value, &options)?).await?;
        Ok(())
    }

    pub async fn delete(&self, key: &str) -> Result<(), BindingError> {
        settled(&self.0.delete(key)?).await?;
        Ok(())
    }

    /// One page of at most `limit` keys under `prefix`, from `cursor`.
    pub async fn page(&self, prefix: &str, cursor: Option<&str>, limit: usize) -> Result<Page, BindingError> {
        let options =
            serde_json::to_string(&ListOptions { prefix, limit, cursor }).map_err(|e| BindingError(e.to_string()))?;
        let listed = settled(&self.0.list(&js_sys::JSON::parse(&options)?)?).await?;
        let text = String::from(js_sys::JSON::stringify(&listed)?);
        let page: RawPage = serde_json::from_str(&text).map_err(|e| BindingError(format!("KV list: {e}")))?;
        let cursor = page.cursor.filter(|c| !page.list_complete && !c.is_empty());
        Ok(Page { keys: page.keys, cursor })
    }

    /// The names of every key under `prefix`, page after page.
    pub async fn all_names(&self, prefix: &str) -> Result<Vec<String>, BindingError> {
        let mut names = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.page(prefix, cursor.as_deref(), 1000).await?;
            names.extend(page.keys.into_iter().map(|k| k.name));
            match page.cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(names),
            }
        }
    }
}
