//! What `/health` decides: whether the service can work, and what is
//! missing when it cannot.

/// What is configured, as the edge sees it.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    pub config_ok: bool,
    pub r2: bool,
    pub kv: bool,
    pub replicate_token: bool,
    pub auth_token: bool,
    pub allow_user_tokens: bool,
}

/// What the service is missing to work; empty when it is whole.
pub fn missing(setup: &Setup) -> Vec<&'static str> {
    let mut missing = Vec::new();
    if !setup.config_ok {
        missing.push("a valid configuration (see config_error)");
    }
    if !setup.r2 {
        missing.push("the R2 binding IMAGES");
    }
    if !setup.kv {
        missing.push("the KV binding IMAGE_META");
    }
    if !setup.replicate_token && !setup.allow_user_tokens {
        missing.push("REPLICATE_API_TOKEN (and callers may not bring their own)");
    }
    if !setup.auth_token {
        missing.push("AUTH_TOKEN (no operator: keys cannot be managed)");
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    const WHOLE: Setup =
        Setup { config_ok: true, r2: true, kv: true, replicate_token: true, auth_token: true, allow_user_tokens: true };

    #[test]
    fn whole_or_missing() {
        assert!(missing(&WHOLE).is_empty());
        let no_tokens = Setup { replicate_token: false, auth_token: false, allow_user_tokens: false, ..WHOLE };
        assert_eq!(missing(&no_tokens).len(), 2);
        assert_eq!(missing(&Setup { r2: false, ..WHOLE }), vec!["the R2 binding IMAGES"]);
        assert!(missing(&Setup { replicate_token: false, ..WHOLE }).is_empty(), "callers may bring their own");
    }
}
