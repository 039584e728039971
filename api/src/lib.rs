//! The BurstFlare service: the axum API (JSON under `/api`, HTML pages, metrics), the
//! process orchestration of `burstflare dev`, and the `burstflare` subcommands.

pub mod auth;
pub mod bootstrap;
pub mod children;
pub mod connect;
pub mod dev;
pub mod device;
pub mod error;
pub mod health;
pub mod http;
pub mod identity;
pub mod metrics;
pub mod pages;
pub mod promotions;
pub mod routes;
pub mod s3;
pub mod sessions;
pub mod snapshots;
pub mod state;
pub mod templates;
pub mod temporal;
pub mod tunnel;
pub mod v1;
pub mod workers;
pub mod workspaces;

pub use error::AppError;
pub use state::AppState;

/// The version string of this build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
