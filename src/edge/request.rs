//! The incoming request, read from the runtime's object only as far as a
//! route needs it: its method and URL once (every request is routed by
//! them), the rest on demand. The worker crate's `Request` also copies the
//! `cf` properties (which workerd builds from JSON) on every request; nothing
//! here uses them.

use worker::{web_sys, Headers, Method};

pub struct Request {
    raw: web_sys::Request,
    method: String,
    url: String,
    /// Read once: each read of `headers` is a call into the runtime.
    headers: Headers,
}

impl worker::FromRequest for Request {
    fn from_raw(raw: web_sys::Request) -> Result<Self, impl Into<Box<dyn std::error::Error>>> {
        Ok::<_, worker::Error>(Request { method: raw.method(), url: raw.url(), headers: Headers(raw.headers()), raw })
    }
}

impl Request {
    pub fn method(&self) -> Method {
        Method::from(self.method.clone())
    }

    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The URL, parsed (the runtime serialized it: it parses).
    pub fn url(&self) -> worker::Result<url::Url> {
        url::Url::parse(&self.url).map_err(|e| worker::Error::RustError(e.to_string()))
    }

    /// `scheme://host[:port]`, without parsing the URL.
    pub fn origin(&self) -> &str {
        crate::routes::origin_of_url(&self.url)
    }

    /// The path, without the query, not percent-decoded.
    pub fn path(&self) -> &str {
        crate::routes::path_of_url(&self.url)
    }

    /// The runtime's own request object.
    pub fn inner(&self) -> &web_sys::Request {
        &self.raw
    }
}
