//! The domain crate's integration tests, in one binary (each file under `tests/` would be a
//! separate, slow-to-link binary). Stores run against real SQLite files and a real PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// The short name every other crate of the workspace uses for this one.

mod audit;
mod catalog;
mod device;
mod identity;
mod ids;
mod schema;
mod sessions;
mod snapshots;
mod store;
mod support;
mod templates;
mod workspace_views;
mod workspaces;
