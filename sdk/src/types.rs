//! Response and request bodies of the JSON API.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The dependencies `/api/health` checks, in the order they are reported.
pub const HEALTH_CHECKS: [&str; 5] = ["database", "storage", "temporal", "docker", "registry"];

/// Body of `GET /api/health`. Each check is `"ok"` or an error message; the response is 503
/// when any check is not ok.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthResponse {
    pub status: HealthStatus,
    pub checks: BTreeMap<String, String>,
}

impl HealthResponse {
    pub fn from_checks(checks: BTreeMap<String, String>) -> Self {
        let ok = checks.values().all(|v| v == "ok");
        Self { status: if ok { HealthStatus::Ok } else { HealthStatus::Degraded }, checks }
    }

    pub fn is_ok(&self) -> bool {
        self.status == HealthStatus::Ok
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Ok,
    Degraded,
}

/// Body of `GET /api/version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionResponse {
    pub name: String,
    pub version: String,
    /// Version of the JSON API (`/api/v1`).
    pub api: String,
    /// The commit the server was built from, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_is_degraded_when_any_check_is_not_ok() {
        let mut checks: BTreeMap<String, String> =
            HEALTH_CHECKS.iter().map(|c| (c.to_string(), "ok".to_string())).collect();
        assert!(HealthResponse::from_checks(checks.clone()).is_ok());
        checks.insert("docker".into(), "connection refused".into());
        let h = HealthResponse::from_checks(checks);
        assert_eq!(h.status, HealthStatus::Degraded);
    }
}
