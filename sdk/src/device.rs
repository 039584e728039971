//! Device authorization (RFC 8628) and CLI tokens: `flare auth login` asks for a device code,
//! the person approves it in the browser, and the CLI polls for a short-lived access token and a
//! rotating refresh token.

use serde::{Deserialize, Serialize};

/// `POST /api/v1/device/code`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceCodeRequest {
    /// Shown on the approval page, e.g. "flare 0.1.0 on alice-laptop".
    pub client_name: String,
}

/// RFC 8628 section 3.2.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceCodeResponse {
    pub device_code: String,
    /// `XXXX-XXXX` from BCDFGHJKLMNPQRSTVWXZ.
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: String,
    /// Seconds.
    pub expires_in: u64,
    /// Seconds between polls.
    pub interval: u64,
}

/// `POST /api/v1/device/token`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceTokenRequest {
    /// Always `urn:ietf:params:oauth:grant-type:device_code`.
    pub grant_type: String,
    pub device_code: String,
}

pub const DEVICE_GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// A token pair for the CLI (RFC 6749 section 5.1).
#[derive(Clone, Serialize, Deserialize)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

impl std::fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenPair").field("expires_in", &self.expires_in).finish_non_exhaustive()
    }
}

/// RFC 8628 section 3.5 / RFC 6749 section 5.2 error body of `/device/token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthError {
    /// `authorization_pending`, `slow_down`, `access_denied`, `expired_token`, `invalid_grant`.
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

/// `POST /api/v1/token/refresh` and `POST /api/v1/token/revoke`
#[derive(Clone, Serialize, Deserialize)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

impl std::fmt::Debug for RefreshRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshRequest { .. }")
    }
}

/// A CLI login (one refresh-token family) as listed under `/api/v1/me/cli-sessions`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CliSessionInfo {
    pub id: String,
    pub client_name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}
