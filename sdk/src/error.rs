//! The one error body every JSON endpoint returns: `{code, message, details}`.

use serde::{Deserialize, Serialize};

/// Stable, machine-readable error codes. New codes may be added; clients treat unknown codes
/// by their HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request was malformed or a field failed validation; `details.field` names it.
    InvalidRequest,
    /// No credentials, or credentials that are not valid.
    Unauthenticated,
    /// Authenticated but not allowed (only for resources the caller can already see).
    Forbidden,
    /// The resource does not exist or is not yours: the two are indistinguishable.
    NotFound,
    /// The request conflicts with current state (duplicate name, wrong lifecycle state).
    Conflict,
    /// Too many requests; retry later.
    RateLimited,
    /// A dependency (database, storage, Temporal, Docker, registry) is unavailable.
    Unavailable,
    /// Something failed on the server; the cause is in the server log, not here.
    Internal,
    /// A code this client version does not know.
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), details: serde_json::Value::Null }
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_error_code_from_a_newer_server_still_parses() {
        let e: ApiError = serde_json::from_str(r#"{"code":"brand_new","message":"m"}"#)
            .unwrap_or_else(|e| {
                unreachable!("{e}");
            });
        assert_eq!(e.code, ErrorCode::Unknown);
        assert_eq!(e.details, serde_json::Value::Null);
    }

    #[test]
    fn details_are_omitted_when_empty() {
        let s = serde_json::to_string(&ApiError::new(ErrorCode::NotFound, "session not found"))
            .unwrap_or_default();
        assert_eq!(s, r#"{"code":"not_found","message":"session not found"}"#);
    }
}
