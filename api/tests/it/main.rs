//! Integration tests of the `burstflare` service against real dependencies: SQLite and
//! PostgreSQL, the embedded S3 server, the Temporal dev server, Docker, the OCI registry, and a
//! software passkey authenticator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod authz;
mod browser;
mod browserish;
mod builds;
mod chunks;
mod commands;
mod connect;
mod dev_command;
mod device;
mod flare_cli;
mod health;
mod helpers;
mod identity;
mod promotion_pages;
mod promotions;
mod sessions;
mod shell;
mod snapshot_pages;
mod snapshots;
