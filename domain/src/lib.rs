//! The BurstFlare domain: validated ids and names, configuration, the typed store over
//! SQLite/PostgreSQL and the S3 blob store. No HTTP lives here.

pub mod blob;
pub mod botcheck;
pub mod config;
pub mod connect;
pub mod ids;
pub mod passkeys;
pub mod policy;
pub mod secrets;
pub mod snapshots;
pub mod store;

pub use config::Config;
pub use store::{Store, StoreError};
