//! The BurstFlare service: the axum API (JSON under `/api`, HTML pages, metrics), the
//! process orchestration of `burstflare dev`, and the `burstflare` subcommands.

pub mod children;
pub mod dev;
pub mod error;
pub mod health;
pub mod http;
pub mod metrics;
pub mod s3;
pub mod state;
pub mod temporal;
pub mod workers;

pub use error::AppError;
pub use state::AppState;

/// The version string of this build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
