//! The Replicate-compatible API under `/replicate/v1`: which routes it
//! serves, how its errors look (Replicate's shape, which the official clients
//! parse), and how prediction objects are rewritten to point back at us.

use serde_json::{json, Value};

use crate::error::ApiError;
use crate::models::ModelRef;

/// Where the compatible API is mounted.
pub const PREFIX: &str = "/replicate/v1";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyRoute {
    /// `POST models/{owner}/{name}/predictions`
    CreateForModel,
    /// `POST predictions` (with `version`)
    Create,
    /// `POST deployments/{owner}/{name}/predictions`
    CreateForDeployment,
    /// `GET predictions/{id}`
    Get(String),
    /// `POST predictions/{id}/cancel`
    Cancel(String),
    /// `GET predictions`
    List,
    /// `GET models/{owner}/{name}`
    Model,
    /// `GET models/{owner}/{name}/versions/{id}`
    Version,
    /// `POST files`: answered here, from R2, not by Replicate.
    CreateFile,
    /// `GET files`: the caller's own files.
    ListFiles,
    /// `GET files/{id}`
    GetFile(String),
    /// `DELETE files/{id}`
    DeleteFile(String),
    /// `GET files/{id}/download`
    DownloadFile(String),
    /// `GET webhooks/default/secret`: the caller's secret for this
    /// service's deliveries, answered here.
    WebhookSecret,
}

impl ProxyRoute {
    /// Whether the request creates a prediction.
    pub fn creates_prediction(&self) -> bool {
        matches!(self, Self::CreateForModel | Self::Create | Self::CreateForDeployment)
    }

    /// Whether the route is one of the Files API's, served by this service
    /// itself (uploads in R2) rather than passed to Replicate.
    pub fn is_files(&self) -> bool {
        matches!(
            self,
            Self::CreateFile | Self::ListFiles | Self::GetFile(_) | Self::DeleteFile(_) | Self::DownloadFile(_)
        )
    }

    /// Whether the answer holds one prediction object.
    pub fn answers_prediction(&self) -> bool {
        matches!(self, Self::CreateForModel | Self::Create | Self::CreateForDeployment | Self::Get(_) | Self::Cancel(_))
    }
}

/// The route for `method` and `rest`, the path after [`PREFIX`].
/// Unknown paths are 404s and known paths with another method 405s, both in
/// Replicate's shape (see [`error_body`]).
pub fn resolve(method: &str, rest: &str) -> Result<ProxyRoute, ApiError> {
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let segments: Vec<&str> = rest.split('/').collect();
    if !segments.iter().all(|s| is_segment(s)) {
        return Err(not_found());
    }
    let (route, allowed) = match segments.as_slice() {
        ["models", _, _, "predictions"] => (ProxyRoute::CreateForModel, "POST"),
        ["deployments", _, _, "predictions"] => (ProxyRoute::CreateForDeployment, "POST"),
        ["predictions"] if method == "POST" => (ProxyRoute::Create, "POST"),
        ["predictions"] => (ProxyRoute::List, "GET, POST"),
        ["predictions", id] => (ProxyRoute::Get((*id).to_owned()), "GET"),
        ["predictions", id, "cancel"] => (ProxyRoute::Cancel((*id).to_owned()), "POST"),
        ["models", _, _] => (ProxyRoute::Model, "GET"),
        ["models", _, _, "versions", _] => (ProxyRoute::Version, "GET"),
        ["files"] if method == "POST" => (ProxyRoute::CreateFile, "POST"),
        ["files"] => (ProxyRoute::ListFiles, "GET, POST"),
        ["files", id] if method == "DELETE" => (ProxyRoute::DeleteFile((*id).to_owned()), "DELETE"),
        ["files", id] => (ProxyRoute::GetFile((*id).to_owned()), "GET, DELETE"),
        ["files", id, "download"] => (ProxyRoute::DownloadFile((*id).to_owned()), "GET"),
        ["webhooks", "default", "secret"] => (ProxyRoute::WebhookSecret, "GET"),
        _ => return Err(not_found()),
    };
    let method_ok = allowed.split(", ").any(|m| m == method) || (method == "HEAD" && allowed.contains("GET"));
    if method_ok {
        Ok(route)
    } else {
        Err(ApiError::method_not_allowed(allowed))
    }
}

/// The model a create names, as far as the request says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedModel {
    /// From the path (`models/{owner}/{name}/predictions`) or a `version` of
    /// the form `owner/name:version`.
    Model(ModelRef),
    /// A bare version id in the body.
    Version(String),
    /// A deployment, or a body that names nothing readable.
    Unknown,
}

/// What model a create for `route` at `rest` (the path after [`PREFIX`])
/// with `body` would run.
pub fn named_model(route: &ProxyRoute, rest: &str, body: Option<&str>) -> NamedModel {
    match route {
        ProxyRoute::CreateForModel => {
            let parts: Vec<&str> = rest.trim_matches('/').split('/').collect();
            match parts.as_slice() {
                ["models", owner, name, "predictions"] => {
                    ModelRef::parse(&format!("{owner}/{name}")).map(NamedModel::Model).unwrap_or(NamedModel::Unknown)
                }
                _ => NamedModel::Unknown,
            }
        }
        ProxyRoute::Create => {
            let version = body
                .and_then(|b| serde_json::from_str::<Value>(b).ok())
                .and_then(|v| v.get("version").and_then(Value::as_str).map(str::to_owned));
            match version {
                Some(v) if v.contains('/') => ModelRef::parse(&v).map(NamedModel::Model).unwrap_or(NamedModel::Unknown),
                Some(v) => NamedModel::Version(v.trim().to_ascii_lowercase()),
                None => NamedModel::Unknown,
            }
        }
        _ => NamedModel::Unknown,
    }
}

/// Letters, digits, `-`, `_`, `.` (not `.`/`..` alone): what Replicate's
/// owners, names, ids and versions are made of.
fn is_segment(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.len() <= 128
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

pub fn not_found() -> ApiError {
    ApiError::new(404, "Not found.")
}

/// An error as Replicate shapes it: `{"title", "detail", "status"}`
/// (RFC 7807). A 401 carries Replicate's own wording.
pub fn error_body(e: &ApiError) -> String {
    let detail = match (e.status, &e.details) {
        (401, None) => "You did not pass a valid authentication token".to_owned(),
        (401, Some(d)) => format!("You did not pass a valid authentication token: {d}"),
        (_, None) => e.error.clone(),
        (_, Some(d)) => format!("{}: {d}", e.error),
    };
    json!({ "title": title(e.status), "detail": detail, "status": e.status }).to_string()
}

fn title(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthenticated",
        402 => "Payment Required",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        422 => "Input validation failed",
        429 => "Too Many Requests",
        502 => "Bad Gateway",
        504 => "Gateway Timeout",
        _ => "Internal Server Error",
    }
}

/// Rewrites what Replicate answers so that clients come back through us.
pub struct Rewriter<'a> {
    /// Replicate's API base as configured (no `/v1`).
    pub api_base: &'a str,
    /// Our origin (or public base URL).
    pub our_base: &'a str,
}

impl Rewriter<'_> {
    /// A Replicate API URL turned into ours; other URLs are left alone.
    pub fn api_url(&self, url: &str) -> String {
        match url.strip_prefix(self.api_base).filter(|rest| rest.starts_with("/v1/") || *rest == "/v1") {
            Some(rest) => format!("{}{}{}", self.our_base, PREFIX, &rest[3..]),
            None => url.to_owned(),
        }
    }

    /// `urls.get`/`urls.cancel` point back through us; when `image_ids` are
    /// known, `output` becomes our image URLs (keeping its shape: one string
    /// or a list).
    pub fn prediction(&self, prediction: &mut Value, image_ids: Option<&[String]>) {
        if let Some(urls) = prediction.get_mut("urls").and_then(Value::as_object_mut) {
            for key in ["get", "cancel"] {
                if let Some(Value::String(url)) = urls.get_mut(key) {
                    *url = self.api_url(url);
                }
            }
        }
        let Some(ids) = image_ids.filter(|ids| !ids.is_empty()) else { return };
        let ours: Vec<Value> = ids.iter().map(|id| Value::String(format!("{}/image/{id}", self.our_base))).collect();
        let output = match prediction.get("output") {
            Some(Value::String(_)) if ours.len() == 1 => ours.into_iter().next().unwrap_or(Value::Null),
            _ => Value::Array(ours),
        };
        if let Some(object) = prediction.as_object_mut() {
            object.insert("output".into(), output);
        }
    }

    /// A list page's `next`/`previous` point back through us.
    pub fn page_links(&self, page: &mut Value) {
        for key in ["next", "previous"] {
            if let Some(Value::String(url)) = page.get_mut(key) {
                *url = self.api_url(url);
            }
        }
    }
}

/// Request headers passed on to Replicate as they are.
pub const FORWARDED_REQUEST_HEADERS: [&str; 4] = ["content-type", "prefer", "cancel-after", "accept"];

/// Response headers passed back to the client as they are (besides
/// `Location`, which is rewritten).
pub fn is_forwarded_response_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(name.as_str(), "content-type" | "retry-after" | "preference-applied")
        || name.starts_with("ratelimit")
        || name.starts_with("x-ratelimit")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_method_and_path() {
        let cases = [
            ("POST", "/models/black-forest-labs/flux-schnell/predictions", ProxyRoute::CreateForModel),
            ("POST", "/predictions", ProxyRoute::Create),
            ("POST", "/deployments/acme/my-app/predictions", ProxyRoute::CreateForDeployment),
            ("GET", "/predictions/qpt5jq1fssrmc0cmd5hvy31mdg", ProxyRoute::Get("qpt5jq1fssrmc0cmd5hvy31mdg".into())),
            ("POST", "/predictions/abc/cancel", ProxyRoute::Cancel("abc".into())),
            ("GET", "/predictions", ProxyRoute::List),
            ("GET", "/predictions/", ProxyRoute::List),
            ("GET", "/models/black-forest-labs/flux-schnell", ProxyRoute::Model),
            (
                "GET",
                "/models/a/b/versions/5599ed30703defd1d160a25a63321b4dec97101d98b4674bcc56e41f62f35637",
                ProxyRoute::Version,
            ),
        ];
        for (method, path, route) in cases {
            assert_eq!(resolve(method, path), Ok(route), "{method} {path}");
        }
    }

    #[test]
    fn unknown_paths_are_404_and_wrong_methods_405() {
        for path in [
            "",
            "/",
            "/account",
            "/models/a",
            "/predictions/a/b",
            "/files/a/b",
            "/predictions/../account",
            "/predictions/a%2Fb",
        ] {
            assert_eq!(resolve("GET", path).unwrap_err().status, 404, "{path}");
        }
        assert_eq!(resolve("GET", "/models/a/b/predictions").unwrap_err().status, 405);
        assert_eq!(resolve("DELETE", "/predictions/abc").unwrap_err().status, 405);
        assert_eq!(resolve("GET", "/predictions/abc/cancel").unwrap_err().status, 405);
        assert_eq!(resolve("PUT", "/predictions").unwrap_err().status, 405);
    }

    #[test]
    fn files_routes_are_served_here() {
        let id = "0123456789abcdef0123456789abcdef.png";
        let cases = [
            ("POST", "/files".to_owned(), ProxyRoute::CreateFile),
            ("GET", "/files".to_owned(), ProxyRoute::ListFiles),
            ("GET", "/files/".to_owned(), ProxyRoute::ListFiles),
            ("GET", format!("/files/{id}"), ProxyRoute::GetFile(id.into())),
            ("DELETE", format!("/files/{id}"), ProxyRoute::DeleteFile(id.into())),
            ("GET", format!("/files/{id}/download"), ProxyRoute::DownloadFile(id.into())),
        ];
        for (method, path, route) in cases {
            assert!(route.is_files());
            assert!(!route.creates_prediction() && !route.answers_prediction());
            assert_eq!(resolve(method, &path), Ok(route), "{method} {path}");
        }
        assert_eq!(resolve("PUT", "/files").unwrap_err().status, 405);
        assert_eq!(resolve("POST", "/files/abc").unwrap_err().status, 405);
        assert_eq!(resolve("DELETE", "/files/abc/download").unwrap_err().status, 405);
        assert_eq!(resolve("GET", "/files/../account").unwrap_err().status, 404);
        assert!(!ProxyRoute::List.is_files());
        assert_eq!(resolve("GET", "/webhooks/default/secret"), Ok(ProxyRoute::WebhookSecret));
        assert_eq!(resolve("POST", "/webhooks/default/secret").unwrap_err().status, 405);
    }

    #[test]
    fn the_model_a_create_names() {
        let schnell = ModelRef::parse("black-forest-labs/flux-schnell").unwrap();
        let route = ProxyRoute::CreateForModel;
        assert_eq!(
            named_model(&route, "/models/black-forest-labs/flux-schnell/predictions", None),
            NamedModel::Model(schnell)
        );
        let v = "a".repeat(64);
        let body = format!(r#"{{"version": "{v}", "input": {{}}}}"#);
        assert_eq!(named_model(&ProxyRoute::Create, "/predictions", Some(&body)), NamedModel::Version(v.clone()));
        let body = format!(r#"{{"version": "o/n:{v}"}}"#);
        assert_eq!(
            named_model(&ProxyRoute::Create, "/predictions", Some(&body)),
            NamedModel::Model(ModelRef::parse(&format!("o/n:{v}")).unwrap())
        );
        assert_eq!(named_model(&ProxyRoute::Create, "/predictions", Some("{}")), NamedModel::Unknown);
        assert_eq!(named_model(&ProxyRoute::Create, "/predictions", Some("not json")), NamedModel::Unknown);
        let deployment = ProxyRoute::CreateForDeployment;
        assert_eq!(named_model(&deployment, "/deployments/o/d/predictions", None), NamedModel::Unknown);
    }

    #[test]
    fn answers_prediction_only_for_single_prediction_routes() {
        assert!(ProxyRoute::Get("a".into()).answers_prediction());
        assert!(ProxyRoute::CreateForModel.answers_prediction());
        assert!(!ProxyRoute::List.answers_prediction());
        assert!(!ProxyRoute::Model.answers_prediction());
    }

    #[test]
    fn errors_have_replicates_shape() {
        let body: Value = serde_json::from_str(&error_body(&ApiError::new(401, "Unauthorized access 🚫"))).unwrap();
        assert_eq!(
            body,
            json!({"title": "Unauthenticated", "detail": "You did not pass a valid authentication token", "status": 401})
        );
        let body: Value = serde_json::from_str(&error_body(&not_found())).unwrap();
        assert_eq!(body, json!({"title": "Not Found", "detail": "Not found.", "status": 404}));
        let e = ApiError::new(502, "Replicate API error").with_details("could not reach Replicate");
        let body: Value = serde_json::from_str(&error_body(&e)).unwrap();
        assert_eq!(body["detail"], "Replicate API error: could not reach Replicate");
        assert_eq!(body["status"], 502);
    }

    fn rewriter() -> Rewriter<'static> {
        Rewriter { api_base: "https://api.replicate.com", our_base: "https://img.example.com" }
    }

    #[test]
    fn api_urls_point_back_through_us() {
        let r = rewriter();
        assert_eq!(
            r.api_url("https://api.replicate.com/v1/predictions/abc"),
            "https://img.example.com/replicate/v1/predictions/abc"
        );
        assert_eq!(
            r.api_url("https://api.replicate.com/v1/predictions?cursor=xyz"),
            "https://img.example.com/replicate/v1/predictions?cursor=xyz"
        );
        assert_eq!(r.api_url("https://stream.replicate.com/v1/files/x"), "https://stream.replicate.com/v1/files/x");
        assert_eq!(r.api_url("https://api.replicate.com.evil/v1/x"), "https://api.replicate.com.evil/v1/x");
        assert_eq!(r.api_url("https://api.replicate.com/v10/x"), "https://api.replicate.com/v10/x");
    }

    #[test]
    fn predictions_get_our_urls_and_outputs() {
        let mut p = json!({
            "id": "abc",
            "output": ["https://replicate.delivery/x/out-0.webp"],
            "urls": {
                "get": "https://api.replicate.com/v1/predictions/abc",
                "cancel": "https://api.replicate.com/v1/predictions/abc/cancel",
                "stream": "https://stream.replicate.com/v1/files/s",
                "web": "https://replicate.com/p/abc"
            }
        });
        rewriter().prediction(&mut p, Some(&["01abc.webp".to_string()]));
        assert_eq!(p["output"], json!(["https://img.example.com/image/01abc.webp"]));
        assert_eq!(p["urls"]["get"], "https://img.example.com/replicate/v1/predictions/abc");
        assert_eq!(p["urls"]["cancel"], "https://img.example.com/replicate/v1/predictions/abc/cancel");
        assert_eq!(p["urls"]["stream"], "https://stream.replicate.com/v1/files/s");
        assert_eq!(p["urls"]["web"], "https://replicate.com/p/abc");
    }

    #[test]
    fn outputs_keep_their_shape_and_removed_data_is_restored() {
        let mut single = json!({"output": "https://replicate.delivery/x/out.png"});
        rewriter().prediction(&mut single, Some(&["1.png".to_string()]));
        assert_eq!(single["output"], "https://img.example.com/image/1.png");

        let mut removed = json!({"output": null, "data_removed": true});
        rewriter().prediction(&mut removed, Some(&["1.png".to_string(), "2.png".to_string()]));
        assert_eq!(
            removed["output"],
            json!(["https://img.example.com/image/1.png", "https://img.example.com/image/2.png"])
        );

        let mut untouched = json!({"output": ["https://replicate.delivery/x/out.png"]});
        rewriter().prediction(&mut untouched, None);
        assert_eq!(untouched["output"], json!(["https://replicate.delivery/x/out.png"]));
        rewriter().prediction(&mut untouched, Some(&[]));
        assert_eq!(untouched["output"], json!(["https://replicate.delivery/x/out.png"]));
    }

    #[test]
    fn page_links_point_back_through_us() {
        let mut page =
            json!({"next": "https://api.replicate.com/v1/predictions?cursor=n", "previous": null, "results": []});
        rewriter().page_links(&mut page);
        assert_eq!(page["next"], "https://img.example.com/replicate/v1/predictions?cursor=n");
        assert_eq!(page["previous"], Value::Null);
    }

    #[test]
    fn forwarded_headers() {
        assert!(is_forwarded_response_header("Retry-After"));
        assert!(is_forwarded_response_header("X-RateLimit-Remaining"));
        assert!(is_forwarded_response_header("ratelimit-reset"));
        assert!(!is_forwarded_response_header("Set-Cookie"));
        assert!(!is_forwarded_response_header("Authorization"));
    }
}
