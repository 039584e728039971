//! Integration tests of the `burstflare` service against real dependencies: SQLite, the
//! embedded S3 server, the Temporal dev server, Docker and the OCI registry.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod commands;
mod dev_command;
mod health;
mod helpers;
