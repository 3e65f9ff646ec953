//! fluxgate: image generation at the edge.
//!
//! Everything outside `edge` is plain Rust with no Workers types, unit-tested
//! natively with `cargo test`. `edge` (wasm32 only) is the thin glue that binds
//! those functions to requests, R2, KV and outbound fetch.

pub mod api_keys;
pub mod backoff;
pub mod cache_key;
pub mod config;
pub mod cors;
pub mod credentials;
pub mod error;
pub mod generation;
pub mod health;
pub mod http_range;
pub mod http_url;
pub mod image_id;
pub mod image_inputs;
pub mod jobs;
pub mod metadata;
pub mod model_schema;
pub mod models;
pub mod multipart;
pub mod output;
pub mod prediction;
pub mod proxy;
pub mod request_log;
pub mod routes;
pub mod secret_scrub;
pub mod text;
pub mod uploads;
pub mod usage;
pub mod webhook_signature;

#[cfg(target_arch = "wasm32")]
mod edge;

/// The service version reported by `/health`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
