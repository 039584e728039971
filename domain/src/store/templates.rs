//! Templates, their versions and their builds.
//!
//! A template is a named entry in a workspace's catalog. Each accepted bundle upload is a new
//! version, numbered "1", "2", … per template; each version is built by one or more attempts
//! (`template_builds`), which the `TemplateBuild` workflow moves through
//! [`BUILD_ACTIVE_STATES`] to one of [`BUILD_FINAL_STATES`].

use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};

use super::{Store, StoreError, col, col_parsed, col_parsed_opt, conflict_on_unique, now_ms};
use crate::ids::{TemplateBuildId, TemplateId, TemplateVersionId, UserId, WorkspaceId};

/// A template as listed in its workspace's catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRow {
    pub id: TemplateId,
    pub name: String,
    pub description: String,
    /// The version new sessions get (the runtime catalog's active version); `None` until the
    /// template is first promoted.
    pub active_version: Option<String>,
    /// How many versions exist, whatever their build status.
    pub versions: u64,
    pub updated_at: i64,
    /// Archived templates are listed, flagged, so that their running sessions still make sense.
    pub archived: bool,
}

fn template_row_from_row(row: &AnyRow) -> Result<TemplateRow, StoreError> {
    let versions: i64 = col(row, "versions")?;
    let archived_at: Option<i64> = col(row, "archived_at")?;
    Ok(TemplateRow {
        id: col_parsed(row, "id", TemplateId::parse)?,
        name: col(row, "name")?,
        description: col(row, "description")?,
        active_version: col(row, "active_version")?,
        versions: u64::try_from(versions)
            .map_err(|_| StoreError::Corrupt(format!("negative count {versions}")))?,
        updated_at: col(row, "updated_at")?,
        archived: archived_at.is_some(),
    })
}

/// A template row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRecord {
    pub id: TemplateId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub description: String,
    /// `None` once the person who created it is deleted.
    pub created_by: Option<UserId>,
    pub created_at: i64,
    pub updated_at: i64,
    pub archived_at: Option<i64>,
}

const TEMPLATE_COLUMNS: &str =
    "id, workspace_id, name, description, created_by_user_id, created_at, updated_at, archived_at";

fn template_from_row(row: &AnyRow) -> Result<TemplateRecord, StoreError> {
    Ok(TemplateRecord {
        id: col_parsed(row, "id", TemplateId::parse)?,
        workspace_id: col_parsed(row, "workspace_id", WorkspaceId::parse)?,
        name: col(row, "name")?,
        description: col(row, "description")?,
        created_by: col_parsed_opt(row, "created_by_user_id", UserId::parse)?,
        created_at: col(row, "created_at")?,
        updated_at: col(row, "updated_at")?,
        archived_at: col(row, "archived_at")?,
    })
}

/// The states a version can be set to with [`Store::set_version_status`] (`draft` is only ever
/// the initial state).
pub const VERSION_SETTABLE_STATES: [&str; 4] = ["uploaded", "building", "built", "failed"];

/// A template version: one uploaded bundle, and the image built from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRecord {
    pub id: TemplateVersionId,
    pub template_id: TemplateId,
    /// "1", "2", …: one more than the template's highest version when it was created.
    pub version: String,
    /// `draft` (waiting for its bundle), `uploaded`, `building`, `built` or `failed`.
    pub status: String,
    /// `{}` until the upload is accepted.
    pub manifest_json: String,
    pub bundle_key: Option<String>,
    pub bundle_size: Option<u64>,
    pub bundle_sha256: Option<String>,
    /// When the presigned upload URL handed out with the draft expires.
    pub upload_expires_at: Option<i64>,
    pub image_ref: Option<String>,
    pub image_digest: Option<String>,
    pub created_by: Option<UserId>,
    pub created_at: i64,
    pub updated_at: i64,
}

const VERSION_COLUMNS: &str = "id, template_id, version, status, manifest_json, bundle_key, \
     bundle_size, bundle_sha256, upload_expires_at, image_ref, image_digest, created_by_user_id, \
     created_at, updated_at";

fn version_from_row(row: &AnyRow) -> Result<VersionRecord, StoreError> {
    let bundle_size: Option<i64> = col(row, "bundle_size")?;
    Ok(VersionRecord {
        id: col_parsed(row, "id", TemplateVersionId::parse)?,
        template_id: col_parsed(row, "template_id", TemplateId::parse)?,
        version: col(row, "version")?,
        status: col(row, "status")?,
        manifest_json: col(row, "manifest_json")?,
        bundle_key: col(row, "bundle_key")?,
        bundle_size: bundle_size
            .map(|n| u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("bundle_size {n}"))))
            .transpose()?,
        bundle_sha256: col(row, "bundle_sha256")?,
        upload_expires_at: col(row, "upload_expires_at")?,
        image_ref: col(row, "image_ref")?,
        image_digest: col(row, "image_digest")?,
        created_by: col_parsed_opt(row, "created_by_user_id", UserId::parse)?,
        created_at: col(row, "created_at")?,
        updated_at: col(row, "updated_at")?,
    })
}

/// The number of a version, for ordering and numbering; `None` for a version that is not a
/// number (none are written so, but a hand-made one must not break listings).
fn version_number(version: &str) -> Option<u64> {
    version.parse().ok()
}

/// How many times [`Store::create_draft_version`] tries a number before giving up.
const VERSION_ATTEMPTS: usize = 5;

/// States of a build that is still going, in the order a build goes through them.
pub const BUILD_ACTIVE_STATES: [&str; 4] = ["queued", "validating", "building", "pushing"];
/// States of a build that has finished; a build in one of them never changes again.
pub const BUILD_FINAL_STATES: [&str; 3] = ["succeeded", "failed", "cancelled"];

/// One build attempt of a version, with the names the build pages show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildRecord {
    pub id: TemplateBuildId,
    pub version_id: TemplateVersionId,
    pub template_id: TemplateId,
    pub template_name: String,
    pub workspace_id: WorkspaceId,
    /// The version's number ("1", "2", …).
    pub version: String,
    /// 1 for a version's first build, one more for each retry.
    pub attempt: u32,
    /// One of [`BUILD_ACTIVE_STATES`] or [`BUILD_FINAL_STATES`].
    pub status: String,
    pub workflow_id: String,
    pub requested_by: Option<UserId>,
    /// The requester's display name, while they exist.
    pub requested_by_name: Option<String>,
    pub image_ref: Option<String>,
    pub image_digest: Option<String>,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// When it first left `queued`.
    pub started_at: Option<i64>,
    /// When it reached a final state.
    pub finished_at: Option<i64>,
}

/// Selects builds as `b` with what [`build_from_row`] reads; callers add WHERE and ORDER BY.
const BUILD_SELECT: &str = "SELECT b.id, b.template_version_id, v.template_id, \
        t.name AS template_name, t.workspace_id, v.version, b.attempt, b.status, b.workflow_id, \
        b.requested_by_user_id, u.display_name AS requested_by_name, b.image_ref, \
        b.image_digest, b.error, b.created_at, b.updated_at, b.started_at, b.finished_at
     FROM template_builds b
     JOIN template_versions v ON v.id = b.template_version_id
     JOIN templates t ON t.id = v.template_id
     LEFT JOIN users u ON u.id = b.requested_by_user_id";

fn build_from_row(row: &AnyRow) -> Result<BuildRecord, StoreError> {
    let attempt: i64 = col(row, "attempt")?;
    Ok(BuildRecord {
        id: col_parsed(row, "id", TemplateBuildId::parse)?,
        version_id: col_parsed(row, "template_version_id", TemplateVersionId::parse)?,
        template_id: col_parsed(row, "template_id", TemplateId::parse)?,
        template_name: col(row, "template_name")?,
        workspace_id: col_parsed(row, "workspace_id", WorkspaceId::parse)?,
        version: col(row, "version")?,
        attempt: u32::try_from(attempt)
            .map_err(|_| StoreError::Corrupt(format!("build attempt {attempt}")))?,
        status: col(row, "status")?,
        workflow_id: col(row, "workflow_id")?,
        requested_by: col_parsed_opt(row, "requested_by_user_id", UserId::parse)?,
        requested_by_name: col(row, "requested_by_name")?,
        image_ref: col(row, "image_ref")?,
        image_digest: col(row, "image_digest")?,
        error: col(row, "error")?,
        created_at: col(row, "created_at")?,
        updated_at: col(row, "updated_at")?,
        started_at: col(row, "started_at")?,
        finished_at: col(row, "finished_at")?,
    })
}

/// `states` as an SQL list of literals. Only ever given the constants of this module.
fn sql_list(states: &[&str]) -> String {
    states.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", ")
}

/// The position of an active build state in [`BUILD_ACTIVE_STATES`].
fn active_rank(status: &str) -> Option<usize> {
    BUILD_ACTIVE_STATES.iter().position(|s| *s == status)
}

fn is_final(status: &str) -> bool {
    BUILD_FINAL_STATES.contains(&status)
}

/// Serializes writers of the rows under `sql`'s target row until `tx` ends: a no-op write takes
/// the row's lock on PostgreSQL and the database write lock on SQLite (where it must be the
/// transaction's first statement, so that later reads see the latest data). `NotFound` when the
/// row does not exist.
async fn lock_row(
    tx: &mut Transaction<'static, Any>,
    sql: &str,
    id: &str,
) -> Result<(), StoreError> {
    let locked = sqlx::query(sql).bind(id).execute(&mut **tx).await?.rows_affected();
    if locked == 1 { Ok(()) } else { Err(StoreError::NotFound) }
}

impl Store {
    /// Every template of `workspace`, archived ones included, ordered by name.
    pub async fn templates_in_workspace(
        &self,
        workspace: &WorkspaceId,
    ) -> Result<Vec<TemplateRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT t.id, t.name, t.description, t.updated_at, t.archived_at,
                    av.version AS active_version,
                    (SELECT COUNT(*) FROM template_versions v WHERE v.template_id = t.id) AS versions
             FROM templates t
             LEFT JOIN runtime_catalog rc ON rc.template_id = t.id
             LEFT JOIN template_versions av ON av.id = rc.active_version_id
             WHERE t.workspace_id = $1",
        )
        .bind(workspace.as_str())
        .fetch_all(&self.pool)
        .await?;
        let mut templates =
            rows.iter().map(template_row_from_row).collect::<Result<Vec<_>, _>>()?;
        // Sorted here rather than by ORDER BY: PostgreSQL orders text by the database's locale
        // and SQLite by bytes, and the listing should not depend on the backend.
        templates.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        Ok(templates)
    }

    /// Adds a template to `ws`'s catalog. `Conflict { what: "template name" }` if the workspace
    /// already has one with that name, archived ones included.
    pub async fn create_template(
        &self,
        ws: &WorkspaceId,
        name: &str,
        description: &str,
        created_by: &UserId,
    ) -> Result<TemplateRecord, StoreError> {
        let now = now_ms();
        let template = TemplateRecord {
            id: TemplateId::new(),
            workspace_id: ws.clone(),
            name: name.to_owned(),
            description: description.to_owned(),
            created_by: Some(created_by.clone()),
            created_at: now,
            updated_at: now,
            archived_at: None,
        };
        sqlx::query(
            "INSERT INTO templates
                 (id, workspace_id, name, description, created_by_user_id, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(template.id.as_str())
        .bind(ws.as_str())
        .bind(name)
        .bind(description)
        .bind(created_by.as_str())
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(conflict_on_unique("template name"))?;
        Ok(template)
    }

    /// `ws`'s template called `name`, archived or not.
    pub async fn template_by_name(
        &self,
        ws: &WorkspaceId,
        name: &str,
    ) -> Result<Option<TemplateRecord>, StoreError> {
        let sql = format!(
            "SELECT {TEMPLATE_COLUMNS} FROM templates WHERE workspace_id = $1 AND name = $2"
        );
        let row = sqlx::query(&sql).bind(ws.as_str()).bind(name).fetch_optional(&self.pool).await?;
        row.as_ref().map(template_from_row).transpose()
    }

    /// The template `id` if it belongs to `ws`, archived or not.
    pub async fn template_by_id(
        &self,
        ws: &WorkspaceId,
        id: &TemplateId,
    ) -> Result<Option<TemplateRecord>, StoreError> {
        let sql =
            format!("SELECT {TEMPLATE_COLUMNS} FROM templates WHERE workspace_id = $1 AND id = $2");
        let row = sqlx::query(&sql)
            .bind(ws.as_str())
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(template_from_row).transpose()
    }

    /// Archives a template of `ws`. Idempotent: archiving it again keeps the first time. Returns
    /// the template and whether this call archived it; `NotFound` if `ws` has no such template.
    pub async fn archive_template(
        &self,
        ws: &WorkspaceId,
        id: &TemplateId,
    ) -> Result<(TemplateRecord, bool), StoreError> {
        let changed = sqlx::query(
            "UPDATE templates SET archived_at = $3, updated_at = $3
             WHERE workspace_id = $1 AND id = $2 AND archived_at IS NULL",
        )
        .bind(ws.as_str())
        .bind(id.as_str())
        .bind(now_ms())
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1;
        let template = self.template_by_id(ws, id).await?.ok_or(StoreError::NotFound)?;
        Ok((template, changed))
    }

    /// The version new sessions of `template` get (its runtime catalog entry), if it was promoted.
    pub async fn active_version_of(
        &self,
        template: &TemplateId,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT v.version FROM runtime_catalog rc
             JOIN template_versions v ON v.id = rc.active_version_id
             WHERE rc.template_id = $1",
        )
        .bind(template.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(|row| col(row, "version")).transpose()
    }

    /// Creates a `draft` version of `template`, numbered one more than its highest version, for a
    /// bundle of `size` bytes and digest `sha256` to be uploaded before `upload_expires_at`.
    /// `bundle_key` names the bundle's object from the new version's id. The number is chosen
    /// under a lock on the template, so concurrent creators get distinct numbers; `NotFound` if
    /// the template does not exist.
    pub async fn create_draft_version(
        &self,
        template: &TemplateId,
        size: u64,
        sha256: &str,
        upload_expires_at: i64,
        created_by: &UserId,
        bundle_key: impl Fn(&TemplateVersionId) -> String,
    ) -> Result<VersionRecord, StoreError> {
        let size_i64 = i64::try_from(size)
            .map_err(|_| StoreError::Invalid(format!("bundle size {size} is too large")))?;
        for _ in 0..VERSION_ATTEMPTS {
            let now = now_ms();
            let mut tx = self.pool.begin().await?;
            lock_row(
                &mut tx,
                "UPDATE templates SET updated_at = updated_at WHERE id = $1",
                template.as_str(),
            )
            .await?;
            // Read as text and numbered in Rust: a version that is not a number (none is written
            // so) would make a CAST fail on PostgreSQL.
            let existing: Vec<String> =
                sqlx::query_scalar("SELECT version FROM template_versions WHERE template_id = $1")
                    .bind(template.as_str())
                    .fetch_all(&mut *tx)
                    .await?;
            let number = existing.iter().filter_map(|v| version_number(v)).max().unwrap_or(0) + 1;
            let version = VersionRecord {
                id: TemplateVersionId::new(),
                template_id: template.clone(),
                version: number.to_string(),
                status: "draft".to_owned(),
                manifest_json: "{}".to_owned(),
                bundle_key: None,
                bundle_size: Some(size),
                bundle_sha256: Some(sha256.to_owned()),
                upload_expires_at: Some(upload_expires_at),
                image_ref: None,
                image_digest: None,
                created_by: Some(created_by.clone()),
                created_at: now,
                updated_at: now,
            };
            let version = VersionRecord { bundle_key: Some(bundle_key(&version.id)), ..version };
            // DO NOTHING rather than catching the error: on PostgreSQL a failed statement aborts
            // the whole transaction. The lock above makes a clash all but impossible.
            let inserted = sqlx::query(
                "INSERT INTO template_versions
                     (id, template_id, version, manifest_json, bundle_key, status, bundle_size,
                      bundle_sha256, upload_expires_at, created_by_user_id, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, 'draft', $6, $7, $8, $9, $10, $10)
                 ON CONFLICT (template_id, version) DO NOTHING",
            )
            .bind(version.id.as_str())
            .bind(template.as_str())
            .bind(version.version.as_str())
            .bind(version.manifest_json.as_str())
            .bind(version.bundle_key.as_deref())
            .bind(size_i64)
            .bind(sha256)
            .bind(upload_expires_at)
            .bind(created_by.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(conflict_on_unique("version"))?
            .rows_affected()
                == 1;
            if inserted {
                tx.commit().await?;
                return Ok(version);
            }
            tx.rollback().await?;
        }
        Err(StoreError::Conflict { what: "version" })
    }

    pub async fn version_by_id(
        &self,
        id: &TemplateVersionId,
    ) -> Result<Option<VersionRecord>, StoreError> {
        let sql = format!("SELECT {VERSION_COLUMNS} FROM template_versions WHERE id = $1");
        let row = sqlx::query(&sql).bind(id.as_str()).fetch_optional(&self.pool).await?;
        row.as_ref().map(version_from_row).transpose()
    }

    /// `template`'s version numbered `version`.
    pub async fn version_of(
        &self,
        template: &TemplateId,
        version: &str,
    ) -> Result<Option<VersionRecord>, StoreError> {
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM template_versions WHERE template_id = $1 AND version = $2"
        );
        let row = sqlx::query(&sql)
            .bind(template.as_str())
            .bind(version)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(version_from_row).transpose()
    }

    /// Every version of `template`, drafts included, newest (highest number) first.
    pub async fn versions_of(
        &self,
        template: &TemplateId,
    ) -> Result<Vec<VersionRecord>, StoreError> {
        let sql = format!("SELECT {VERSION_COLUMNS} FROM template_versions WHERE template_id = $1");
        let rows = sqlx::query(&sql).bind(template.as_str()).fetch_all(&self.pool).await?;
        let mut versions = rows.iter().map(version_from_row).collect::<Result<Vec<_>, _>>()?;
        // By number ("10" after "9"), which text ordering gets wrong; anything not a number last.
        versions.sort_by(|a, b| {
            let (na, nb) = (version_number(&a.version), version_number(&b.version));
            nb.cmp(&na).then_with(|| b.version.cmp(&a.version)).then_with(|| b.id.cmp(&a.id))
        });
        Ok(versions)
    }

    /// Accepts a draft's upload: `draft` → `uploaded`, storing the bundle's manifest. Idempotent
    /// for a version already `uploaded` with the same manifest; any other state is
    /// `Conflict { what: "version state" }`, and a missing version `NotFound`.
    pub async fn accept_upload(
        &self,
        id: &TemplateVersionId,
        manifest_json: &str,
    ) -> Result<VersionRecord, StoreError> {
        sqlx::query(
            "UPDATE template_versions SET status = 'uploaded', manifest_json = $2, updated_at = $3
             WHERE id = $1 AND status = 'draft'",
        )
        .bind(id.as_str())
        .bind(manifest_json)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        let version = self.version_by_id(id).await?.ok_or(StoreError::NotFound)?;
        if version.status == "uploaded" && version.manifest_json == manifest_json {
            Ok(version)
        } else {
            Err(StoreError::Conflict { what: "version state" })
        }
    }

    /// Deletes a version while it is a draft, so that a refused upload leaves nothing behind.
    /// Returns whether it was deleted (a version past `draft`, or a missing one, is not).
    pub async fn delete_draft_version(&self, id: &TemplateVersionId) -> Result<bool, StoreError> {
        let deleted =
            sqlx::query("DELETE FROM template_versions WHERE id = $1 AND status = 'draft'")
                .bind(id.as_str())
                .execute(&self.pool)
                .await?
                .rows_affected();
        Ok(deleted == 1)
    }

    /// Sets a version's `status` (one of [`VERSION_SETTABLE_STATES`], else `Invalid`) and, when
    /// given, its image (reference, digest). A `built` version never changes: it is returned as
    /// is. `NotFound` if the version does not exist.
    pub async fn set_version_status(
        &self,
        id: &TemplateVersionId,
        status: &str,
        image: Option<(&str, &str)>,
    ) -> Result<VersionRecord, StoreError> {
        if !VERSION_SETTABLE_STATES.contains(&status) {
            return Err(StoreError::Invalid(format!(
                "version status: {status:?} is not one of {}",
                VERSION_SETTABLE_STATES.join(", ")
            )));
        }
        sqlx::query(
            "UPDATE template_versions
             SET status = $2, image_ref = COALESCE($3, image_ref),
                 image_digest = COALESCE($4, image_digest), updated_at = $5
             WHERE id = $1 AND status <> 'built'",
        )
        .bind(id.as_str())
        .bind(status)
        .bind(image.map(|(r, _)| r))
        .bind(image.map(|(_, d)| d))
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        self.version_by_id(id).await?.ok_or(StoreError::NotFound)
    }

    /// Queues a new build attempt of `version`: attempt one more than its last (1 for the first),
    /// status `queued`, workflow id `build-{version}-{attempt}`. `Conflict { what: "build" }` if
    /// the version has a build that is still active; `NotFound` if the version does not exist.
    pub async fn create_build(
        &self,
        version: &TemplateVersionId,
        requested_by: Option<&UserId>,
    ) -> Result<BuildRecord, StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        lock_row(
            &mut tx,
            "UPDATE template_versions SET updated_at = updated_at WHERE id = $1",
            version.as_str(),
        )
        .await?;
        let active_sql = format!(
            "SELECT COUNT(*) AS n FROM template_builds
             WHERE template_version_id = $1 AND status IN ({})",
            sql_list(&BUILD_ACTIVE_STATES)
        );
        let active = super::count(
            sqlx::query(&active_sql).bind(version.as_str()).fetch_one(&mut *tx).await?,
        )?;
        if active > 0 {
            return Err(StoreError::Conflict { what: "build" });
        }
        let last: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(attempt) FROM template_builds WHERE template_version_id = $1",
        )
        .bind(version.as_str())
        .fetch_one(&mut *tx)
        .await?;
        let attempt = last.unwrap_or(0) + 1;
        let id = TemplateBuildId::new();
        sqlx::query(
            "INSERT INTO template_builds
                 (id, template_version_id, attempt, status, workflow_id, requested_by_user_id,
                  created_at, updated_at)
             VALUES ($1, $2, $3, 'queued', $4, $5, $6, $6)",
        )
        .bind(id.as_str())
        .bind(version.as_str())
        .bind(attempt)
        .bind(format!("build-{version}-{attempt}"))
        .bind(requested_by.map(UserId::as_str))
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(conflict_on_unique("build"))?;
        let sql = format!("{BUILD_SELECT} WHERE b.id = $1");
        let row = sqlx::query(&sql).bind(id.as_str()).fetch_one(&mut *tx).await?;
        let build = build_from_row(&row)?;
        tx.commit().await?;
        Ok(build)
    }

    /// The build `id` if it belongs to a template of `ws`.
    pub async fn build_in_workspace(
        &self,
        ws: &WorkspaceId,
        id: &TemplateBuildId,
    ) -> Result<Option<BuildRecord>, StoreError> {
        let sql = format!("{BUILD_SELECT} WHERE b.id = $1 AND t.workspace_id = $2");
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .bind(ws.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(build_from_row).transpose()
    }

    /// The build `id`, whichever workspace it belongs to (for workflows and activities).
    pub async fn build_by_id(
        &self,
        id: &TemplateBuildId,
    ) -> Result<Option<BuildRecord>, StoreError> {
        let sql = format!("{BUILD_SELECT} WHERE b.id = $1");
        let row = sqlx::query(&sql).bind(id.as_str()).fetch_optional(&self.pool).await?;
        row.as_ref().map(build_from_row).transpose()
    }

    /// The builds of every version of `template`, newest first, at most `limit`.
    pub async fn builds_of_template(
        &self,
        template: &TemplateId,
        limit: u32,
    ) -> Result<Vec<BuildRecord>, StoreError> {
        let sql = format!(
            "{BUILD_SELECT} WHERE v.template_id = $1
             ORDER BY b.created_at DESC, b.attempt DESC, b.id DESC LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(template.as_str())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(build_from_row).collect()
    }

    /// The builds of `version`, latest attempt first.
    pub async fn builds_of_version(
        &self,
        version: &TemplateVersionId,
    ) -> Result<Vec<BuildRecord>, StoreError> {
        let sql =
            format!("{BUILD_SELECT} WHERE b.template_version_id = $1 ORDER BY b.attempt DESC");
        let rows = sqlx::query(&sql).bind(version.as_str()).fetch_all(&self.pool).await?;
        rows.iter().map(build_from_row).collect()
    }

    /// The latest attempt at building `version`, if any.
    pub async fn latest_build_of_version(
        &self,
        version: &TemplateVersionId,
    ) -> Result<Option<BuildRecord>, StoreError> {
        let sql = format!(
            "{BUILD_SELECT} WHERE b.template_version_id = $1 ORDER BY b.attempt DESC LIMIT 1"
        );
        let row = sqlx::query(&sql).bind(version.as_str()).fetch_optional(&self.pool).await?;
        row.as_ref().map(build_from_row).transpose()
    }

    /// Moves build `id` to `to` (one of the seven build states, else `Invalid`), recording
    /// `error` and `image` (reference, digest) when given. Returns the build after the call and
    /// whether this call changed it.
    ///
    /// Nothing changes for a build that has finished, for a move to the state it is in, or for a
    /// move backwards among the active states (`queued` < `validating` < `building` <
    /// `pushing`); any active state may move to any final one. The first move out of `queued`
    /// sets `started_at`, a move to a final state `finished_at`. The update is conditional on
    /// the state it moves from, so of two racing callers only one changes the build.
    pub async fn set_build_status(
        &self,
        id: &TemplateBuildId,
        to: &str,
        error: Option<&str>,
        image: Option<(&str, &str)>,
    ) -> Result<(BuildRecord, bool), StoreError> {
        let to_final = is_final(to);
        let from: Vec<&str> = match active_rank(to) {
            Some(rank) => BUILD_ACTIVE_STATES[..rank].to_vec(),
            None if to_final => BUILD_ACTIVE_STATES.to_vec(),
            None => {
                return Err(StoreError::Invalid(format!(
                    "build status: {to:?} is not one of {}, {}",
                    BUILD_ACTIVE_STATES.join(", "),
                    BUILD_FINAL_STATES.join(", ")
                )));
            }
        };
        let current = self.build_by_id(id).await?.ok_or(StoreError::NotFound)?;
        if !from.contains(&current.status.as_str()) {
            return Ok((current, false));
        }
        let now = now_ms();
        let sql = format!(
            "UPDATE template_builds
             SET status = $2, updated_at = $3, started_at = COALESCE(started_at, $3),
                 finished_at = COALESCE($4, finished_at), error = COALESCE($5, error),
                 image_ref = COALESCE($6, image_ref), image_digest = COALESCE($7, image_digest)
             WHERE id = $1 AND status IN ({})",
            sql_list(&from)
        );
        let changed = sqlx::query(&sql)
            .bind(id.as_str())
            .bind(to)
            .bind(now)
            .bind(to_final.then_some(now))
            .bind(error)
            .bind(image.map(|(r, _)| r))
            .bind(image.map(|(_, d)| d))
            .execute(&self.pool)
            .await?
            .rows_affected()
            == 1;
        let build = self.build_by_id(id).await?.ok_or(StoreError::NotFound)?;
        Ok((build, changed))
    }

    /// Builds still in an active state whose last change is older than `before`, oldest first:
    /// candidates for a reconciler to look at.
    pub async fn stale_active_builds(&self, before: i64) -> Result<Vec<BuildRecord>, StoreError> {
        let sql = format!(
            "{BUILD_SELECT} WHERE b.status IN ({}) AND b.updated_at < $1
             ORDER BY b.updated_at, b.id",
            sql_list(&BUILD_ACTIVE_STATES)
        );
        let rows = sqlx::query(&sql).bind(before).fetch_all(&self.pool).await?;
        rows.iter().map(build_from_row).collect()
    }
}
