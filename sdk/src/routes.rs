//! Route paths, shared by the router and the client so they cannot drift apart.

pub const HEALTH: &str = "/api/health";
pub const VERSION: &str = "/api/version";
pub const METRICS: &str = "/metrics";
/// Prefix of the versioned JSON API.
pub const API_V1: &str = "/api/v1";
