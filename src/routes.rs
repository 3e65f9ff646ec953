//! Maps a method and path to the route that serves it.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Health,
    /// `GET /models`: what the service offers.
    Models,
    GenerateGet,
    GeneratePost,
    /// `GET /generate/{prediction_id}`: an async generation's status.
    GenerateStatus(String),
    /// `DELETE /generate/{prediction_id}`: cancels it.
    GenerateCancel(String),
    /// `POST /webhooks/replicate`: Replicate's deliveries about what this
    /// service created.
    ReplicateWebhook,
    /// `GET|HEAD /image/{id}`; the id is checked by the handler.
    Image(String),
    /// `GET|HEAD /upload/{id}`: an uploaded image, public; the id is checked
    /// by the handler.
    Upload(String),
    /// `POST /uploads`: stores an image sent in.
    UploadsPost,
    /// Anything under `/replicate/v1`: the path after the prefix, routed
    /// further by `proxy::resolve`.
    Replicate(String),
    /// `DELETE /image/{id}`: by its owner or the operator.
    ImageDelete(String),
    /// `GET /images`: the caller's own images, newest first.
    Images,
    /// `GET /usage`: the caller's own usage today.
    Usage,
    /// `GET|POST /admin/keys`.
    AdminKeys,
    /// `DELETE /admin/keys/{id}`.
    AdminKey(String),
    /// `GET /admin/usage`.
    AdminUsage,
    /// Any `OPTIONS` request: a CORS preflight.
    Preflight,
    /// Anything no route serves: a JSON 404.
    NotFound,
    /// The path exists, but not for this method.
    MethodNotAllowed {
        allowed: &'static str,
    },
}

pub fn resolve(method: &str, path: &str) -> Route {
    if method == "OPTIONS" {
        return Route::Preflight;
    }
    if let Some(rest) = path.strip_prefix(crate::proxy::PREFIX).filter(|r| r.is_empty() || r.starts_with('/')) {
        return Route::Replicate(rest.to_owned());
    }
    let path = path.strip_suffix('/').filter(|p| !p.is_empty()).unwrap_or(path);
    match path {
        "/health" => only(method, "GET, HEAD", Route::Health),
        "/models" => only(method, "GET, HEAD", Route::Models),
        "/images" => only(method, "GET, HEAD", Route::Images),
        "/usage" => only(method, "GET, HEAD", Route::Usage),
        "/admin/usage" => only(method, "GET", Route::AdminUsage),
        "/admin/keys" => match method {
            "GET" | "POST" => Route::AdminKeys,
            _ => Route::MethodNotAllowed { allowed: "GET, POST" },
        },
        "/generate" => match method {
            "GET" => Route::GenerateGet,
            "POST" => Route::GeneratePost,
            _ => Route::MethodNotAllowed { allowed: "GET, POST" },
        },
        "/uploads" => only(method, "POST", Route::UploadsPost),
        "/webhooks/replicate" => only(method, "POST", Route::ReplicateWebhook),
        _ if path.starts_with("/generate/") => {
            let id = &path["/generate/".len()..];
            match method {
                _ if id.is_empty() || id.contains('/') => Route::NotFound,
                "GET" | "HEAD" => Route::GenerateStatus(id.to_owned()),
                "DELETE" => Route::GenerateCancel(id.to_owned()),
                _ => Route::MethodNotAllowed { allowed: "GET, HEAD, DELETE" },
            }
        }
        _ => match (path.strip_prefix("/image/"), path.strip_prefix("/upload/"), path.strip_prefix("/admin/keys/")) {
            (Some(id), _, _) if !id.is_empty() && !id.contains('/') && method == "DELETE" => {
                Route::ImageDelete(id.to_owned())
            }
            (Some(id), _, _) if !id.is_empty() && !id.contains('/') => {
                only(method, "GET, HEAD, DELETE", Route::Image(id.to_owned()))
            }
            (_, Some(id), _) if !id.is_empty() && !id.contains('/') => {
                only(method, "GET, HEAD", Route::Upload(id.to_owned()))
            }
            (_, _, Some(id)) if !id.is_empty() && !id.contains('/') => {
                only(method, "DELETE", Route::AdminKey(id.to_owned()))
            }
            _ => Route::NotFound,
        },
    }
}

fn only(method: &str, allowed: &'static str, route: Route) -> Route {
    if allowed.split(", ").any(|m| m == method) {
        route
    } else {
        Route::MethodNotAllowed { allowed }
    }
}

/// The origin (`scheme://host[:port]`) of a serialized absolute URL, as the
/// runtime gives a request's: already normalized (lowercase host, no default
/// port), so its prefix is its origin.
pub fn origin_of_url(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let end = url[after_scheme..].find(['/', '?', '#']).map_or(url.len(), |i| after_scheme + i);
    &url[..end]
}

/// The path of a serialized absolute URL (as the runtime gives a request's),
/// without its query or fragment: `/` when it has none.
pub fn path_of_url(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[after_scheme..];
    let Some(start) = rest.find(['/', '?', '#']) else { return "/" };
    let path = &rest[start..];
    let path = &path[..path.find(['?', '#']).unwrap_or(path.len())];
    if path.is_empty() {
        "/"
    } else {
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_for_get_and_head_only() {
        assert_eq!(resolve("GET", "/health"), Route::Health);
        assert_eq!(resolve("HEAD", "/health"), Route::Health);
        assert_eq!(resolve("GET", "/health/"), Route::Health);
        assert_eq!(resolve("POST", "/health"), Route::MethodNotAllowed { allowed: "GET, HEAD" });
    }

    #[test]
    fn models_for_get_and_head_only() {
        assert_eq!(resolve("GET", "/models"), Route::Models);
        assert_eq!(resolve("POST", "/models"), Route::MethodNotAllowed { allowed: "GET, HEAD" });
    }

    #[test]
    fn generate_by_method() {
        assert_eq!(resolve("GET", "/generate"), Route::GenerateGet);
        assert_eq!(resolve("POST", "/generate"), Route::GeneratePost);
        assert_eq!(resolve("DELETE", "/generate"), Route::MethodNotAllowed { allowed: "GET, POST" });
        assert_eq!(resolve("GET", "/generate/abc123"), Route::GenerateStatus("abc123".into()));
        assert_eq!(resolve("DELETE", "/generate/abc123/"), Route::GenerateCancel("abc123".into()));
        assert_eq!(resolve("POST", "/generate/abc123"), Route::MethodNotAllowed { allowed: "GET, HEAD, DELETE" });
        assert_eq!(resolve("GET", "/generate/a/b"), Route::NotFound);
        assert_eq!(resolve("POST", "/webhooks/replicate"), Route::ReplicateWebhook);
        assert_eq!(resolve("GET", "/webhooks/replicate"), Route::MethodNotAllowed { allowed: "POST" });
    }

    #[test]
    fn image_takes_one_segment() {
        assert_eq!(resolve("GET", "/image/abc.png"), Route::Image("abc.png".into()));
        assert_eq!(resolve("HEAD", "/image/abc.png"), Route::Image("abc.png".into()));
        assert_eq!(resolve("PUT", "/image/abc.png"), Route::MethodNotAllowed { allowed: "GET, HEAD, DELETE" });
        assert_eq!(resolve("DELETE", "/image/abc.png"), Route::ImageDelete("abc.png".into()));
        assert_eq!(resolve("GET", "/image/"), Route::NotFound);
        assert_eq!(resolve("GET", "/image/a/b.png"), Route::NotFound);
    }

    #[test]
    fn uploads_are_posted_and_served_by_id() {
        assert_eq!(resolve("POST", "/uploads"), Route::UploadsPost);
        assert_eq!(resolve("POST", "/uploads/"), Route::UploadsPost);
        assert_eq!(resolve("GET", "/uploads"), Route::MethodNotAllowed { allowed: "POST" });
        assert_eq!(resolve("GET", "/upload/abc.png"), Route::Upload("abc.png".into()));
        assert_eq!(resolve("HEAD", "/upload/abc.png"), Route::Upload("abc.png".into()));
        assert_eq!(resolve("DELETE", "/upload/abc.png"), Route::MethodNotAllowed { allowed: "GET, HEAD" });
        assert_eq!(resolve("GET", "/upload/"), Route::NotFound);
        assert_eq!(resolve("GET", "/upload/a/b.png"), Route::NotFound);
        assert_eq!(resolve("POST", "/upload"), Route::NotFound);
    }

    #[test]
    fn replicate_api_takes_everything_under_its_prefix() {
        assert_eq!(resolve("POST", "/replicate/v1/predictions"), Route::Replicate("/predictions".into()));
        assert_eq!(resolve("GET", "/replicate/v1"), Route::Replicate(String::new()));
        assert_eq!(resolve("GET", "/replicate/v1x"), Route::NotFound);
    }

    #[test]
    fn unknown_paths_are_not_found() {
        assert_eq!(resolve("GET", "/"), Route::NotFound);
        assert_eq!(resolve("GET", "/healthz"), Route::NotFound);
        assert_eq!(resolve("GET", "/health/x"), Route::NotFound);
        assert_eq!(resolve("GET", "/image"), Route::NotFound);
    }

    #[test]
    fn keys_usage_images_and_preflights() {
        assert_eq!(resolve("GET", "/images"), Route::Images);
        assert_eq!(resolve("GET", "/usage"), Route::Usage);
        assert_eq!(resolve("POST", "/admin/keys"), Route::AdminKeys);
        assert_eq!(resolve("GET", "/admin/keys"), Route::AdminKeys);
        assert_eq!(resolve("DELETE", "/admin/keys/abcdefgh"), Route::AdminKey("abcdefgh".into()));
        assert_eq!(resolve("GET", "/admin/keys/abcdefgh"), Route::MethodNotAllowed { allowed: "DELETE" });
        assert_eq!(resolve("GET", "/admin/usage"), Route::AdminUsage);
        assert_eq!(resolve("OPTIONS", "/generate"), Route::Preflight);
        assert_eq!(resolve("OPTIONS", "/replicate/v1/predictions"), Route::Preflight);
    }

    #[test]
    fn origin_of_url_is_the_origin_the_url_crate_finds() {
        for raw in [
            "https://example.com/",
            "HTTPS://Example.COM:443/a?b#c",
            "http://127.0.0.1:8787/image/abc.webp",
            "http://[::1]:8787/generate?x=/y",
            "https://example.com?query=/x",
            "https://example.com#frag/y",
            "http://example.com:80",
        ] {
            // As the runtime hands it over: serialized.
            let parsed = url::Url::parse(raw).unwrap();
            assert_eq!(origin_of_url(parsed.as_str()), parsed.origin().ascii_serialization(), "{raw}");
        }
    }

    #[test]
    fn path_of_url_is_the_path_the_url_crate_finds() {
        for url in [
            "https://example.com/",
            "https://example.com/foo/bar",
            "https://example.com/foo?a=1&b=/x",
            "https://example.com/foo#/frag?x",
            "http://127.0.0.1:8787/image/abc.webp",
            "https://example.com/a%3F%23%2Fb?c",
            "https://example.com?query=/x",
            "https://example.com#frag/y",
            "https://user:pw@example.com:8443/generate",
        ] {
            assert_eq!(path_of_url(url), url::Url::parse(url).unwrap().path(), "{url}");
        }
    }
}
