//! The runtime catalog and template promotions (docs/catalog.md): what the API answers for
//! `…/catalog`, `…/templates/{name}/promote|demote|rollback|promotions` and
//! `…/promotions/{id}[/approve]`.

use serde::{Deserialize, Serialize};

use crate::UserRef;

/// What a promotion run does: `promote` (canary, optional approval, catalog, rollout), `demote`
/// (back to the version that was active before), `rollback` (to any earlier built version),
/// `archive` (the template leaves the catalog and offers no new sessions).
pub const PROMOTION_KINDS: [&str; 4] = ["promote", "demote", "rollback", "archive"];

/// Where a promotion is: `running` and `awaiting_approval` while it goes, then one of the four
/// final states. `failed` before the catalog changed leaves the previous version active;
/// `rolled_back` means the catalog changed, the rollout failed and the previous version is
/// active again; `cancelled` is an approval that timed out.
pub const PROMOTION_STATES: [&str; 6] =
    ["running", "awaiting_approval", "succeeded", "rolled_back", "failed", "cancelled"];

/// Whether a promotion in `status` has ended.
pub fn promotion_is_final(status: &str) -> bool {
    matches!(status, "succeeded" | "rolled_back" | "failed" | "cancelled")
}

/// `POST /api/v1/workspaces/{ws}/templates/{name}/promote`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromoteRequest {
    /// The version to promote ("3"); default: the newest built version.
    #[serde(default)]
    pub version: Option<String>,
}

/// `POST /api/v1/workspaces/{ws}/templates/{name}/rollback`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackRequest {
    /// Any earlier built version ("2").
    pub version: String,
}

/// One runtime host's part of a rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionNode {
    pub node: String,
    /// `pending`, `ready` (the image is on the host) or `failed`.
    pub state: String,
}

/// One promotion, demotion, rollback or archive run of a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promotion {
    pub id: String,
    /// The template's name and id.
    pub template: String,
    pub template_id: String,
    /// One of [`PROMOTION_KINDS`].
    pub kind: String,
    /// The version this run makes active ("3"; for `archive`, the version that was active).
    pub version: String,
    pub version_id: String,
    pub image_ref: Option<String>,
    /// One of [`PROMOTION_STATES`].
    pub status: String,
    /// Where it is, in words ("canary", "awaiting approval", "rolling out to node-1", …).
    pub step: Option<String>,
    /// Why it failed, was rolled back or cancelled.
    pub error: Option<String>,
    /// The rollout per runtime host, once it started.
    pub nodes: Vec<PromotionNode>,
    /// The Temporal workflow (`promote-<template id>`), for operators.
    pub workflow_id: String,
    pub requested_by: Option<UserRef>,
    pub approved_by: Option<UserRef>,
    pub approved_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

/// `GET /api/v1/workspaces/{ws}/catalog`: the latest catalog revision, with this workspace's
/// entries (the revision counts changes of the whole installation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogView {
    /// 0 before the first change.
    pub revision: u64,
    /// The revision's time (unix ms); 0 for revision 0.
    pub generated_at: i64,
    /// Sorted by template name.
    pub entries: Vec<CatalogEntryView>,
}

/// A template's active version: the one new sessions get.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogEntryView {
    pub template: String,
    pub template_id: String,
    pub version: String,
    pub version_id: String,
    pub image_ref: String,
    /// What `demote` goes back to.
    pub previous_version: Option<String>,
    /// The revision that last changed this entry.
    pub revision: u64,
    pub updated_at: i64,
    pub cpu_millis: u32,
    pub memory_mb: u32,
    /// The template is archived (its entry goes when the archive run ends).
    pub archived: bool,
}

/// `GET|PUT /api/v1/workspaces/{ws}/promotion-policy`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionPolicy {
    /// A promotion waits after its canary for an owner's or admin's approval (not the
    /// requester's own).
    pub requires_approval: bool,
    /// How long it waits before it is cancelled (the server's `[promotion]
    /// approval_timeout_secs`; ignored in a `PUT`).
    #[serde(default)]
    pub approval_timeout_secs: u64,
}
