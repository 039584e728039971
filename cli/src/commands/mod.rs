//! One module per command group; each function runs one command and prints its result.

pub mod auth;
pub mod config;
pub mod promotion;
pub mod session;
pub mod snapshot;
pub mod ssh;
pub mod template;
pub mod workspace;
