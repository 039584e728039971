//! Dev sessions: what `flare session …` and the session pages send and show.
//!
//! A session is one container started from a template version, driven by its `Session`
//! workflow (id `session-<id>`), the only writer of its state. Requests that change a session
//! are Temporal updates: the workflow accepts or refuses them (an illegal transition, such as
//! sleeping a stopped session, is refused with a clear error) and applies them one at a time.

use serde::{Deserialize, Serialize};

use crate::UserRef;

/// Operations a session accepts, as path segments: `POST …/sessions/{id}/{op}`.
pub const SESSION_OPS: [&str; 4] = ["start", "stop", "sleep", "restart"];

/// `POST /api/v1/workspaces/{ws}/sessions`. An `Idempotency-Key` header (or the field) makes a
/// retried request answer with the session the first one created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateSession {
    /// Template name.
    pub template: String,
    /// Version number; default: the template's active (promoted) version, else its newest
    /// built version.
    #[serde(default)]
    pub version: Option<String>,
    /// Default: `<template>-<4 random letters>`.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionDetail {
    pub id: String,
    pub name: String,
    /// One of [`crate::SESSION_STATES`].
    pub state: String,
    pub template: String,
    pub version: String,
    pub owner: UserRef,
    /// The runtime host the session is pinned to, once placed.
    pub node: Option<String>,
    pub workflow_id: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub started_at: Option<i64>,
    pub stopped_at: Option<i64>,
    pub last_active_at: Option<i64>,
    /// Why the session failed, in words for its owner.
    pub error: Option<String>,
}

/// `GET …/sessions/{id}/events`: the session's history, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEvent {
    pub seq: u64,
    /// e.g. `state.running`, `op.sleep.accepted`, `idle.extended`.
    pub kind: String,
    pub detail: serde_json::Value,
    pub at: i64,
}

/// `GET …/sessions/{id}/why`: what the session's workflow is doing and why (`flare session why`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionWhy {
    pub state: String,
    /// The step in progress, e.g. `creating container`, `waiting for the agent`.
    pub step: String,
    /// Attempts of the step in progress (1 for the first).
    pub attempts: u32,
    /// When the session sleeps if nothing happens (unix ms), while running.
    pub idle_deadline: Option<i64>,
    /// When the session is stopped whatever happens (maximum lifetime), while running.
    pub lifetime_deadline: Option<i64>,
    /// Operations accepted and not yet applied, oldest first.
    pub pending: Vec<String>,
    pub node: Option<String>,
    /// Container generation: a new container gets the next one.
    pub generation: u64,
    pub last_error: Option<String>,
    /// When a sleep, stop or restart whose snapshot failed is tried again (unix ms); the
    /// session keeps running until then.
    #[serde(default)]
    pub retry_at: Option<i64>,
    /// Which operation waits for that retry.
    #[serde(default)]
    pub retry_op: Option<String>,
}
