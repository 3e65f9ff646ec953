//! Maps a method and path to the route that serves it.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Health,
    /// Anything no route serves: a JSON 404.
    NotFound,
    /// The path exists, but not for this method.
    MethodNotAllowed { allowed: &'static str },
}

pub fn resolve(method: &str, path: &str) -> Route {
    let path = path.strip_suffix('/').filter(|p| !p.is_empty()).unwrap_or(path);
    match path {
        "/health" => only(method, "GET, HEAD", Route::Health),
        _ => Route::NotFound,
    }
}

fn only(method: &str, allowed: &'static str, route: Route) -> Route {
    if allowed.split(", ").any(|m| m == method) {
        route
    } else {
        Route::MethodNotAllowed { allowed }
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
    fn unknown_paths_are_not_found() {
        assert_eq!(resolve("GET", "/"), Route::NotFound);
        assert_eq!(resolve("GET", "/healthz"), Route::NotFound);
        assert_eq!(resolve("GET", "/health/x"), Route::NotFound);
    }
}
