//! Templates, their versions and builds: what `flare template …` and the template pages show.
//!
//! A template is a named entry in a workspace's catalog. Each bundle upload makes a new
//! version ("1", "2", …); each version is built by one or more build attempts (a retry is a
//! new attempt of the same version). The `TemplateBuild` workflow moves a build through
//! [`BUILD_STATES`].

use serde::{Deserialize, Serialize};

use crate::UserRef;
use crate::bundle::ManifestView;

/// States of a template version, in lifecycle order: `draft` (created, waiting for its bundle),
/// `uploaded` (bundle verified), `building`, `built` (an image exists), `failed`.
pub const VERSION_STATES: [&str; 5] = ["draft", "uploaded", "building", "built", "failed"];

/// States of a build attempt: the active ones in order, then the three final ones.
pub const BUILD_STATES: [&str; 7] =
    ["queued", "validating", "building", "pushing", "succeeded", "failed", "cancelled"];

/// Whether a build in `status` has finished (succeeded, failed or was cancelled).
pub fn build_is_final(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "cancelled")
}

/// `POST /api/v1/workspaces/{ws}/templates`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateTemplate {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

/// `GET /api/v1/workspaces/{ws}/templates/{name}`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateDetail {
    pub id: String,
    pub name: String,
    pub description: String,
    /// The promoted version new sessions use, if any.
    pub active_version: Option<String>,
    /// The newest version, whatever its state.
    pub latest_version: Option<TemplateVersion>,
    /// The newest version that built successfully.
    pub latest_built_version: Option<TemplateVersion>,
    pub versions: u64,
    pub created_at: i64,
    pub updated_at: i64,
    pub archived_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateVersion {
    pub id: String,
    pub template: String,
    /// "1", "2", …: assigned by the server, in upload order.
    pub version: String,
    /// One of [`VERSION_STATES`].
    pub status: String,
    pub bundle_size: Option<u64>,
    pub bundle_sha256: Option<String>,
    /// The manifest from the bundle once it is accepted; values of secret variables removed.
    pub manifest: Option<ManifestView>,
    /// `registry/repository:tag` once built.
    pub image_ref: Option<String>,
    /// The registry's content digest (`sha256:…`) of the pushed image.
    pub image_digest: Option<String>,
    pub created_by: Option<UserRef>,
    pub created_at: i64,
    pub updated_at: i64,
    /// The newest build attempt of this version.
    pub latest_build: Option<TemplateBuild>,
}

/// `POST /api/v1/workspaces/{ws}/templates/{name}/versions`: asks for an upload URL for a bundle
/// of exactly `size` bytes whose sha256 is `sha256` (lowercase hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateVersion {
    pub size: u64,
    pub sha256: String,
    /// Create the template first if it does not exist (what `flare template upload` does).
    #[serde(default)]
    pub create_template: bool,
    /// Description for a template created by this request.
    #[serde(default)]
    pub description: String,
}

/// Where and how to upload a version's bundle: a presigned S3 `PUT` that accepts exactly
/// `size` bytes until `expires_at`. Then `POST …/versions/{version}/confirm`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadTicket {
    pub version: TemplateVersion,
    /// Carries a signature: never log it.
    pub upload_url: String,
    pub method: String,
    /// Headers the upload must send exactly as given (they are part of the signature).
    pub headers: Vec<(String, String)>,
    pub expires_at: i64,
    /// The server's bundle size limit.
    pub max_bytes: u64,
}

/// `POST /api/v1/workspaces/{ws}/templates/{name}/versions/{version}/confirm`: the version,
/// accepted, with its first build queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfirmedVersion {
    pub version: TemplateVersion,
    pub build: TemplateBuild,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateBuild {
    pub id: String,
    pub template: String,
    pub version: String,
    pub attempt: u32,
    /// One of [`BUILD_STATES`].
    pub status: String,
    /// The Temporal workflow running this attempt (for operators: `temporal workflow show`).
    pub workflow_id: String,
    pub requested_by: Option<UserRef>,
    pub image_ref: Option<String>,
    pub image_digest: Option<String>,
    /// Why the build failed, in words meant for the person who uploaded the bundle.
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

/// `GET /api/v1/workspaces/{ws}/builds/{id}/log?from=N`: log text from chunk `from` on.
/// Poll again with `from = next` until `done`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildLog {
    pub build: TemplateBuild,
    pub text: String,
    /// The chunk to ask for next.
    pub next: u64,
    /// The build has finished and every chunk has been returned.
    pub done: bool,
}
