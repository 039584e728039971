//! Accounts, passkeys, browser sessions, API tokens, recovery codes, workspaces, members,
//! invites and the audit log: the bodies of `/api/v1/auth/*`, `/api/v1/me/*` and
//! `/api/v1/workspaces/*`.
//!
//! WebAuthn options and credentials travel as JSON values in the shape webauthn-rs and the
//! browser's `navigator.credentials` use (binary fields base64url without padding).

use serde::{Deserialize, Serialize};

/// `POST /api/v1/auth/signup/start`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignupStart {
    pub email: String,
    pub display_name: String,
    /// The bot-check widget's response, when the server asks for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot_check: Option<String>,
}

/// `POST /api/v1/auth/signin/start`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SigninStart {
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot_check: Option<String>,
}

/// Answer of every `.../start` of a WebAuthn ceremony: pass `options` to
/// `navigator.credentials.create/get`, then send the credential with `ceremony_id` to `.../finish`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CeremonyChallenge {
    pub ceremony_id: String,
    pub options: serde_json::Value,
}

/// `POST .../finish` of a WebAuthn ceremony.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CeremonyFinish {
    pub ceremony_id: String,
    pub credential: serde_json::Value,
}

/// `POST /api/v1/auth/signup/finish`: the new account, and its recovery codes (shown once).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignupDone {
    pub user: UserInfo,
    pub recovery_codes: Vec<String>,
}

/// `POST /api/v1/auth/recover`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecoverRequest {
    pub email: String,
    pub code: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub id: String,
    pub email: String,
    pub display_name: String,
}

/// `GET /api/v1/me`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Me {
    pub user: UserInfo,
    pub workspaces: Vec<WorkspaceSummary>,
    /// Signed in with a recovery code: the account must add a passkey before anything else.
    pub must_add_passkey: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceSummary {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub personal: bool,
    /// The caller's role: owner, admin, member or viewer.
    pub role: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PasskeyInfo {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// `POST /api/v1/me/passkeys/start` and `PATCH /api/v1/me/passkeys/{id}`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PasskeyName {
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BrowserSessionInfo {
    pub id: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The session making this request.
    pub current: bool,
}

/// `POST /api/v1/me/tokens`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateToken {
    pub name: String,
    /// 1 to 366 days; absent means 30 days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_days: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

/// The token's secret is in this answer only; the server keeps a hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedToken {
    pub token: TokenInfo,
    pub secret: String,
}

/// `POST /api/v1/me/recovery-codes`: a new set; the old one stops working.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecoveryCodes {
    pub codes: Vec<String>,
}

/// `POST /api/v1/workspaces`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateWorkspace {
    pub name: String,
    pub slug: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberInfo {
    pub user: UserInfo,
    pub role: String,
    pub joined_at: i64,
}

/// `PATCH /api/v1/workspaces/{ws}/members/{user}`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetRole {
    pub role: String,
}

/// `POST /api/v1/workspaces/{ws}/invites`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateInvite {
    pub email: String,
    pub role: String,
    /// 1 to 30 days; absent means 7 days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_days: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InviteInfo {
    pub id: String,
    pub email: String,
    pub role: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// The invite link is in this answer only.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedInvite {
    pub invite: InviteInfo,
    pub link: String,
}

/// `POST /api/v1/invites/accept`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AcceptInvite {
    pub token: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub id: String,
    pub at: i64,
    pub actor: Option<String>,
    pub action: String,
    pub target_kind: Option<String>,
    pub target_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub detail: serde_json::Value,
}

/// `GET /api/v1/workspaces/{ws}/audit`: newest first; pass `next` as `before` for the next page.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    pub next: Option<String>,
}
