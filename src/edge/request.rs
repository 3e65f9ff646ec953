//! The incoming request, read from the runtime's object only as far as a
//! route needs it. The worker crate's `Request` copies the method, the URL
//! and the `cf` properties (which workerd builds from JSON) on every
//! request; nothing here uses `cf`, and most routes never need the URL.

use worker::{web_sys, Headers, Method};

pub struct Request(web_sys::Request);

impl worker::FromRequest for Request {
    fn from_raw(request: web_sys::Request) -> Result<Self, impl Into<Box<dyn std::error::Error>>> {
        Ok::<_, worker::Error>(Request(request))
    }
}

impl Request {
    pub fn method(&self) -> Method {
        Method::from(self.0.method())
    }

    pub fn headers(&self) -> Headers {
        Headers(self.0.headers())
    }

    /// The URL, parsed (the runtime serialized it: it parses).
    pub fn url(&self) -> worker::Result<url::Url> {
        url::Url::parse(&self.0.url()).map_err(|e| worker::Error::RustError(e.to_string()))
    }

    /// `scheme://host[:port]`, without parsing the URL.
    pub fn origin(&self) -> String {
        crate::routes::origin_of_url(&self.0.url()).to_owned()
    }

    /// The path, without the query, not percent-decoded.
    pub fn path(&self) -> String {
        crate::routes::path_of_url(&self.0.url()).to_owned()
    }

    /// The runtime's own request object.
    pub fn inner(&self) -> &web_sys::Request {
        &self.0
    }
}
