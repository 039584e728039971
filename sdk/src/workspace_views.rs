//! What the web shell and `flare` show about a workspace: its sessions, template catalog,
//! usage and settings.

use serde::{Deserialize, Serialize};

/// Lifecycle states of a session, as stored and shown.
pub const SESSION_STATES: [&str; 9] = [
    "provisioning",
    "starting",
    "running",
    "sleeping",
    "stopping",
    "stopped",
    "deleting",
    "deleted",
    "failed",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSummary {
    pub id: String,
    pub name: String,
    /// One of [`SESSION_STATES`].
    pub state: String,
    pub template: String,
    pub owner: UserRef,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_active_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRef {
    pub id: String,
    pub display_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateSummary {
    pub id: String,
    pub name: String,
    pub description: String,
    /// The promoted version new sessions use, if any.
    pub active_version: Option<String>,
    pub versions: u64,
    pub updated_at: i64,
    pub archived: bool,
}

/// Usage of a workspace since `since` (unix ms), summed from usage events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageSummary {
    pub since: i64,
    pub runtime_minutes: i64,
    pub build_minutes: i64,
    pub storage_bytes: i64,
    pub active_sessions: u64,
}

/// `GET /api/v1/workspaces/{ws}/dashboard`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dashboard {
    pub workspace: crate::WorkspaceSummary,
    /// Sessions that are not stopped, deleted or failed.
    pub active_sessions: Vec<SessionSummary>,
    /// The newest audit events (only for roles that may read the audit log).
    pub recent_activity: Option<Vec<crate::AuditEvent>>,
    pub usage: UsageSummary,
}

/// `PATCH /api/v1/workspaces/{ws}`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpdateWorkspace {
    pub name: String,
}
