//! The BurstFlare API contract: request/response types, the error body, route paths and a
//! typed HTTP client. The server writes these types, the CLI and the web pages read them.
//! Nothing here knows about axum or sqlx.

pub mod bundle;
pub mod catalog;
pub mod client;
pub mod connect;
pub mod device;
pub mod error;
pub mod identity;
pub mod routes;
pub mod sessions;
pub mod snapshots;
pub mod templates;
pub mod types;
pub mod workspace_views;

pub use catalog::*;
pub use client::{Client, ClientError};
pub use connect::*;
pub use device::*;
pub use error::{ApiError, ErrorCode};
pub use identity::*;
pub use sessions::*;
pub use snapshots::*;
pub use templates::*;
pub use types::*;
pub use workspace_views::*;
