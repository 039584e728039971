//! Workflow tests: saved histories replay against the current code (a non-deterministic
//! change fails here), and fresh histories recorded from a real Temporal dev server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod promotion;
mod record;
mod replay;
