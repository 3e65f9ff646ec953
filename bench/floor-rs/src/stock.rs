//! The calls through the worker crate's own API, as its documentation shows.
use serde_json::Value;
use worker::{
    kv::KvStore, Bucket, Data, Env, Fetch, Headers, HttpMetadata, Method, Request, RequestInit, Response, ResponseBody,
    Result,
};

pub type Incoming = Request;

pub fn path(req: &Incoming) -> String {
    req.path()
}

pub fn is_post(req: &Incoming) -> bool {
    req.method() == Method::Post
}

pub async fn json_body(req: &mut Incoming) -> Result<Value> {
    req.json().await
}

pub fn origin(req: &Incoming) -> String {
    req.url().map(|u| u.origin().ascii_serialization()).unwrap_or_default()
}

pub struct Platform {
    kv: KvStore,
    bucket: Bucket,
}

impl Platform {
    pub fn new(env: &Env) -> Result<Self> {
        Ok(Platform { kv: env.kv("IMAGE_META")?, bucket: env.bucket("IMAGES")? })
    }

    pub async fn kv_text(&self, key: &str) -> Result<Option<String>> {
        Ok(self.kv.get(key).text().await?)
    }

    pub async fn kv_put(&self, key: &str, value: &str, ttl: Option<u64>, metadata: Option<Value>) -> Result<()> {
        let mut put = self.kv.put(key, value)?;
        if let Some(ttl) = ttl {
            put = put.expiration_ttl(ttl);
        }
        if let Some(metadata) = metadata {
            put = put.metadata(metadata)?;
        }
        Ok(put.execute().await?)
    }

    pub async fn kv_delete(&self, key: &str) -> Result<()> {
        Ok(self.kv.delete(key).await?)
    }

    pub async fn post_json(&self, url: &str, headers: &[(&str, &str)], body: &str) -> Result<Value> {
        let set = Headers::new();
        for (name, value) in headers {
            set.set(name, value)?;
        }
        let mut init = RequestInit::new();
        init.with_method(Method::Post).with_headers(set).with_body(Some(body.into()));
        Fetch::Request(Request::new_with_init(url, &init)?).send().await?.json().await
    }

    /// The output fetched and its body streamed into R2: its size and type.
    pub async fn copy(&self, url: &str, key: &str) -> Result<(u64, Option<String>)> {
        let upstream = Fetch::Url(url.parse()?).send().await?;
        let content_type = upstream.headers().get("content-type")?;
        let ResponseBody::Stream(body) = upstream.body() else {
            return Err("the output has no body".into());
        };
        let metadata = HttpMetadata { content_type: content_type.clone(), ..Default::default() };
        let stored = self.bucket.put(key, Data::ReadableStream(body.clone())).http_metadata(metadata).execute().await?;
        Ok((stored.ok_or("nothing stored")?.size(), content_type))
    }

    pub async fn image(&self, key: &str) -> Result<Option<Response>> {
        let Some(object) = self.bucket.get(key).execute().await? else {
            return Ok(None);
        };
        let headers = Headers::new();
        let content_type = object.http_metadata().content_type.unwrap_or_else(|| "application/octet-stream".into());
        headers.set("content-type", &content_type)?;
        headers.set("content-length", &object.size().to_string())?;
        headers.set("etag", &object.http_etag())?;
        headers.set("cache-control", "public, max-age=31536000, immutable")?;
        let body = object.body().ok_or("the object has no body")?.response_body()?;
        Ok(Some(Response::from_body(body)?.with_headers(headers)))
    }
}
