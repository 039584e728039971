//! The runtime catalog (which version, and so which image, new sessions of each template get),
//! its numbered history, template promotions and the workspace's promotion policy
//! (docs/catalog.md).
//!
//! Only [`Store::set_catalog_version`] and [`Store::clear_catalog_version`] write
//! `runtime_catalog`. Each change happens in one transaction that first locks the single
//! `catalog_head` row (a no-op write: the row's lock on PostgreSQL, the write lock on SQLite), so
//! changes of different templates still get revisions 1, 2, 3, … one at a time; it then updates
//! the template's row, and appends a `catalog_revisions` row holding the whole catalog after the
//! change. [`Store::catalog`] is that latest document, so what runtime hosts render is exactly a
//! recorded revision. Changes are idempotent on their `change_key` (the workflow id and step that
//! made them).

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};

use super::{Store, StoreError, col, col_parsed, col_parsed_opt, now_ms};
use crate::ids::{TemplateId, TemplateVersionId, UserId, WorkspaceId};

/// One template's entry in the catalog: what its new sessions run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogEntry {
    pub workspace_id: String,
    pub workspace_slug: String,
    pub template_id: String,
    pub template_name: String,
    /// The active version.
    pub version_id: String,
    /// Its number ("1", "2", …).
    pub version: String,
    /// The active version's image.
    pub image_ref: String,
    /// The version that was active before it, if any: what a demote goes back to.
    pub previous_version_id: Option<String>,
    pub previous_version: Option<String>,
    /// When the entry last changed (unix ms).
    pub updated_at: i64,
    /// The catalog revision that last changed the entry.
    pub revision: u64,
    /// The version's manifest resources.
    pub cpu_millis: u32,
    pub memory_mb: u32,
    /// Whether the template was archived when the document was made (no new sessions).
    pub archived: bool,
}

/// The whole catalog at one revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogDocument {
    /// 0 before the first change.
    pub revision: u64,
    /// When the revision was made (unix ms; 0 for revision 0).
    pub generated_at: i64,
    /// Sorted by workspace slug, then template name (bytewise, whatever the backend).
    pub entries: Vec<CatalogEntry>,
}

/// What a catalog change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogChange {
    /// The revision the change made; for a change that wrote nothing, the revision of the first
    /// change with the same key, or else the current revision.
    pub revision: u64,
    /// The template's active version before the change (what undoing it goes back to): `None`
    /// if it had none; for a change to the version already active, that version.
    pub previous_version_id: Option<String>,
    /// Whether this call changed the catalog.
    pub changed: bool,
}

/// Kinds of promotion, as the schema's CHECK lists them.
pub const PROMOTION_KINDS: [&str; 4] = ["promote", "demote", "rollback", "archive"];
/// States of a promotion that is still going.
pub const PROMOTION_ACTIVE_STATES: [&str; 2] = ["running", "awaiting_approval"];
/// States of a promotion that has finished; a promotion in one of them never changes again.
pub const PROMOTION_FINAL_STATES: [&str; 4] = ["succeeded", "rolled_back", "failed", "cancelled"];

/// Longest `error` kept for a promotion, in characters.
const MAX_ERROR_CHARS: usize = 2000;

/// What [`Store::create_promotion`] needs.
#[derive(Debug, Clone, Copy)]
pub struct NewPromotion<'a> {
    /// Chosen by the caller, so that a retried create finds the row the first one made.
    pub id: &'a str,
    pub workspace: &'a WorkspaceId,
    pub template: &'a TemplateId,
    /// The version the promotion makes active (for a demote or rollback: the one it goes back to).
    pub version: &'a TemplateVersionId,
    pub workflow_id: &'a str,
    /// One of [`PROMOTION_KINDS`].
    pub kind: &'a str,
    pub requested_by: &'a UserId,
    /// When (unix ms).
    pub at: i64,
}

/// What [`Store::update_promotion`] changes; `None` keeps a field as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct PromotionUpdate<'a> {
    /// One of [`PROMOTION_ACTIVE_STATES`] or [`PROMOTION_FINAL_STATES`].
    pub status: Option<&'a str>,
    pub step: Option<&'a str>,
    /// `Some(None)` clears the error.
    pub error: Option<Option<&'a str>>,
    /// The rollout's progress per runtime node.
    pub progress: Option<&'a serde_json::Value>,
    /// When (unix ms): `updated_at`, and `finished_at` when the status is final.
    pub at: i64,
}

/// A promotion row, with the number of the version it promotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromotionRecord {
    pub id: String,
    pub workspace_id: WorkspaceId,
    pub template_id: TemplateId,
    pub version_id: TemplateVersionId,
    /// The version's number ("1", "2", …).
    pub version: String,
    pub workflow_id: String,
    /// One of [`PROMOTION_KINDS`].
    pub kind: String,
    /// One of [`PROMOTION_ACTIVE_STATES`] or [`PROMOTION_FINAL_STATES`].
    pub status: String,
    /// The workflow's current step, in its own words.
    pub step: Option<String>,
    /// Why it failed or was rolled back.
    pub error: Option<String>,
    /// `None` once that person is deleted.
    pub requested_by: Option<UserId>,
    /// Who approved it, when the policy asked for an approval.
    pub approved_by: Option<UserId>,
    pub approved_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    /// When it reached a final state.
    pub finished_at: Option<i64>,
    /// The rollout's progress per runtime node (`{}` until the rollout starts).
    pub progress: serde_json::Value,
}

const PROMOTION_SELECT: &str = "SELECT p.id, p.workspace_id, p.template_id, p.version_id,
        v.version, p.workflow_id, p.kind, p.status, p.step, p.error, p.requested_by,
        p.approved_by, p.approved_at, p.created_at, p.updated_at, p.finished_at, p.progress
     FROM template_promotions p
     JOIN template_versions v ON v.id = p.version_id";

fn promotion_from_row(row: &AnyRow) -> Result<PromotionRecord, StoreError> {
    let progress: String = col(row, "progress")?;
    Ok(PromotionRecord {
        id: col(row, "id")?,
        workspace_id: col_parsed(row, "workspace_id", WorkspaceId::parse)?,
        template_id: col_parsed(row, "template_id", TemplateId::parse)?,
        version_id: col_parsed(row, "version_id", TemplateVersionId::parse)?,
        version: col(row, "version")?,
        workflow_id: col(row, "workflow_id")?,
        kind: col(row, "kind")?,
        status: col(row, "status")?,
        step: col(row, "step")?,
        error: col(row, "error")?,
        requested_by: col_parsed_opt(row, "requested_by", UserId::parse)?,
        approved_by: col_parsed_opt(row, "approved_by", UserId::parse)?,
        approved_at: col(row, "approved_at")?,
        created_at: col(row, "created_at")?,
        updated_at: col(row, "updated_at")?,
        finished_at: col(row, "finished_at")?,
        progress: serde_json::from_str(&progress)
            .map_err(|e| StoreError::Corrupt(format!("promotion progress: {e}")))?,
    })
}

fn u64_of(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} {value}")))
}

fn i64_of(revision: u64) -> Result<i64, StoreError> {
    i64::try_from(revision)
        .map_err(|_| StoreError::Invalid(format!("revision: {revision} is too large")))
}

/// Selects every catalog entry with what [`entry_from_row`] reads.
const ENTRY_SELECT: &str = "SELECT rc.template_id, rc.active_version_id, rc.image_ref,
        rc.previous_version_id, rc.updated_at, rc.revision, t.name AS template_name,
        t.archived_at, t.workspace_id, w.slug AS workspace_slug, v.version, v.manifest_json,
        pv.version AS previous_version
     FROM runtime_catalog rc
     JOIN templates t ON t.id = rc.template_id
     JOIN workspaces w ON w.id = t.workspace_id
     JOIN template_versions v ON v.id = rc.active_version_id
     LEFT JOIN template_versions pv ON pv.id = rc.previous_version_id";

/// The part of a manifest the catalog carries. Lenient on purpose: a stored manifest was checked
/// when its bundle was accepted, and one without resources gets the defaults.
#[derive(Deserialize)]
struct ManifestResources {
    #[serde(default)]
    resources: sdk::bundle::Resources,
}

fn entry_from_row(row: &AnyRow) -> Result<CatalogEntry, StoreError> {
    let manifest: String = col(row, "manifest_json")?;
    let resources = serde_json::from_str::<ManifestResources>(&manifest)
        .map_err(|e| StoreError::Corrupt(format!("manifest of a catalog version: {e}")))?
        .resources;
    let revision: Option<i64> = col(row, "revision")?;
    let archived_at: Option<i64> = col(row, "archived_at")?;
    Ok(CatalogEntry {
        workspace_id: col(row, "workspace_id")?,
        workspace_slug: col(row, "workspace_slug")?,
        template_id: col(row, "template_id")?,
        template_name: col(row, "template_name")?,
        version_id: col(row, "active_version_id")?,
        version: col(row, "version")?,
        image_ref: col(row, "image_ref")?,
        previous_version_id: col(row, "previous_version_id")?,
        previous_version: col(row, "previous_version")?,
        updated_at: col(row, "updated_at")?,
        revision: revision.map(|r| u64_of(r, "catalog entry revision")).transpose()?.unwrap_or(0),
        cpu_millis: resources.cpu_millis,
        memory_mb: resources.memory_mb,
        archived: archived_at.is_some(),
    })
}

/// What a change is about, to compare a repeated `change_key` with the first use.
#[derive(Clone, Copy)]
struct ChangeTarget<'a> {
    template: &'a TemplateId,
    /// `None` for a clear.
    version: Option<&'a TemplateVersionId>,
}

/// A change recorded under a key, if any. `Conflict { what: "catalog change key" }` if the key
/// was used for another change.
async fn recorded_change(
    tx: &mut Transaction<'static, Any>,
    change_key: &str,
    target: ChangeTarget<'_>,
) -> Result<Option<CatalogChange>, StoreError> {
    let Some(row) = sqlx::query(
        "SELECT revision, template_id, version_id, previous_version_id
         FROM catalog_revisions WHERE change_key = $1",
    )
    .bind(change_key)
    .fetch_optional(&mut **tx)
    .await?
    else {
        return Ok(None);
    };
    let template: Option<String> = col(&row, "template_id")?;
    let version: Option<String> = col(&row, "version_id")?;
    if template.as_deref() != Some(target.template.as_str())
        || version.as_deref() != target.version.map(TemplateVersionId::as_str)
    {
        return Err(StoreError::Conflict { what: "catalog change key" });
    }
    let revision: i64 = col(&row, "revision")?;
    Ok(Some(CatalogChange {
        revision: u64_of(revision, "catalog revision")?,
        previous_version_id: col(&row, "previous_version_id")?,
        changed: false,
    }))
}

/// Locks `catalog_head` for the rest of `tx` (its first statement, see the module's
/// documentation) and returns the current revision.
async fn lock_head(tx: &mut Transaction<'static, Any>) -> Result<u64, StoreError> {
    let locked = sqlx::query("UPDATE catalog_head SET revision = revision WHERE id = 1")
        .execute(&mut **tx)
        .await?
        .rows_affected();
    if locked != 1 {
        return Err(StoreError::Corrupt("catalog_head has no row".to_owned()));
    }
    let revision: i64 = sqlx::query_scalar("SELECT revision FROM catalog_head WHERE id = 1")
        .fetch_one(&mut **tx)
        .await?;
    u64_of(revision, "catalog revision")
}

/// The template's current entry: (active version id, image ref).
async fn current_entry(
    tx: &mut Transaction<'static, Any>,
    template: &TemplateId,
) -> Result<Option<(String, String)>, StoreError> {
    let row = sqlx::query(
        "SELECT active_version_id, image_ref FROM runtime_catalog WHERE template_id = $1",
    )
    .bind(template.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|row| Ok((col(&row, "active_version_id")?, col(&row, "image_ref")?))).transpose()
}

async fn entries_in(tx: &mut Transaction<'static, Any>) -> Result<Vec<CatalogEntry>, StoreError> {
    let rows = sqlx::query(ENTRY_SELECT).fetch_all(&mut **tx).await?;
    let mut entries = rows.iter().map(entry_from_row).collect::<Result<Vec<_>, _>>()?;
    // Sorted here rather than by ORDER BY: PostgreSQL orders text by the database's locale and
    // SQLite by bytes, and the document must not depend on the backend.
    entries.sort_by(|a, b| {
        (a.workspace_slug.as_str(), a.template_name.as_str(), a.template_id.as_str()).cmp(&(
            b.workspace_slug.as_str(),
            b.template_name.as_str(),
            b.template_id.as_str(),
        ))
    });
    Ok(entries)
}

/// A recorded change, for [`append_revision`].
struct Revision<'a> {
    revision: u64,
    at: i64,
    reason: &'a str,
    change_key: &'a str,
    actor: Option<&'a UserId>,
    target: ChangeTarget<'a>,
    previous_version_id: Option<&'a str>,
}

/// Appends revision `r` with the catalog as it is now in `tx`, and moves `catalog_head` to it.
async fn append_revision(
    tx: &mut Transaction<'static, Any>,
    r: &Revision<'_>,
) -> Result<(), StoreError> {
    let document = CatalogDocument {
        revision: r.revision,
        generated_at: r.at,
        entries: entries_in(tx).await?,
    };
    let document = serde_json::to_string(&document)
        .map_err(|e| StoreError::Invalid(format!("catalog document: {e}")))?;
    let revision = i64_of(r.revision)?;
    sqlx::query(
        "INSERT INTO catalog_revisions
             (revision, created_at, reason, change_key, actor_user_id, template_id, version_id,
              previous_version_id, document)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(revision)
    .bind(r.at)
    .bind(r.reason)
    .bind(r.change_key)
    .bind(r.actor.map(UserId::as_str))
    .bind(r.target.template.as_str())
    .bind(r.target.version.map(TemplateVersionId::as_str))
    .bind(r.previous_version_id)
    .bind(document)
    .execute(&mut **tx)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
        _ => StoreError::Database(e),
    })?;
    sqlx::query("UPDATE catalog_head SET revision = $1 WHERE id = 1")
        .bind(revision)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn check_reason_and_key(reason: &str, change_key: &str) -> Result<(), StoreError> {
    if reason.trim().is_empty() {
        return Err(StoreError::Invalid("reason: must not be empty".to_owned()));
    }
    if change_key.trim().is_empty() {
        return Err(StoreError::Invalid("change_key: must not be empty".to_owned()));
    }
    Ok(())
}

fn check_one_of(field: &str, value: &str, allowed: &[&str]) -> Result<(), StoreError> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!("{field}: {value:?} is not one of {}", allowed.join(", "))))
    }
}

impl Store {
    /// The current catalog: the document of the latest revision (revision 0 and no entries
    /// before the first change).
    pub async fn catalog(&self) -> Result<CatalogDocument, StoreError> {
        let row = sqlx::query(
            "SELECT document FROM catalog_revisions
             WHERE revision = (SELECT revision FROM catalog_head WHERE id = 1)",
        )
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => parse_document(&col::<String>(&row, "document")?),
            None => Ok(CatalogDocument { revision: 0, generated_at: 0, entries: Vec::new() }),
        }
    }

    /// Revision `revision` of the catalog: its document, reason, who made it (while they exist)
    /// and when.
    pub async fn catalog_revision(
        &self,
        revision: u64,
    ) -> Result<Option<(CatalogDocument, String, Option<UserId>, i64)>, StoreError> {
        let Ok(revision) = i64::try_from(revision) else { return Ok(None) };
        let row = sqlx::query(
            "SELECT document, reason, actor_user_id, created_at FROM catalog_revisions
             WHERE revision = $1",
        )
        .bind(revision)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok((
                parse_document(&col::<String>(&row, "document")?)?,
                col(&row, "reason")?,
                col_parsed_opt(&row, "actor_user_id", UserId::parse)?,
                col(&row, "created_at")?,
            ))
        })
        .transpose()
    }

    /// The latest `limit` revisions, newest first: (revision, reason, template id, created_at).
    pub async fn catalog_revisions(
        &self,
        limit: u32,
    ) -> Result<Vec<(u64, String, Option<String>, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT revision, reason, template_id, created_at FROM catalog_revisions
             ORDER BY revision DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let revision: i64 = col(row, "revision")?;
                Ok((
                    u64_of(revision, "catalog revision")?,
                    col(row, "reason")?,
                    col(row, "template_id")?,
                    col(row, "created_at")?,
                ))
            })
            .collect()
    }

    /// Points `template` at `version` in one transaction: upserts its `runtime_catalog` row
    /// (`previous_*` = the version active until now, if any), appends a revision holding the
    /// whole catalog after the change, and sets the row's `revision` to it.
    ///
    /// Idempotent on `change_key`: a key already recorded returns that change with
    /// `changed: false` and writes nothing (`Conflict { what: "catalog change key" }` if it was
    /// recorded for another template or version). Setting the version already active writes
    /// nothing and records nothing, and returns the current revision with `changed: false`.
    ///
    /// `NotFound` if the template or the version does not exist (or `actor` is unknown);
    /// `Invalid` if the version is another template's, is not `built` or has no image.
    pub async fn set_catalog_version(
        &self,
        template: &TemplateId,
        version: &TemplateVersionId,
        reason: &str,
        change_key: &str,
        actor: Option<&UserId>,
    ) -> Result<CatalogChange, StoreError> {
        check_reason_and_key(reason, change_key)?;
        let target = ChangeTarget { template, version: Some(version) };
        let mut tx = self.pool.begin().await?;
        let head = lock_head(&mut tx).await?;
        if let Some(change) = recorded_change(&mut tx, change_key, target).await? {
            return Ok(change);
        }
        let template_exists: Option<String> =
            sqlx::query_scalar("SELECT id FROM templates WHERE id = $1")
                .bind(template.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        if template_exists.is_none() {
            return Err(StoreError::NotFound);
        }
        let row = sqlx::query(
            "SELECT template_id, version, status, image_ref FROM template_versions WHERE id = $1",
        )
        .bind(version.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
        let (of, number, status, image): (String, String, String, Option<String>) = (
            col(&row, "template_id")?,
            col(&row, "version")?,
            col(&row, "status")?,
            col(&row, "image_ref")?,
        );
        if of != template.as_str() {
            return Err(StoreError::Invalid(format!(
                "version: {version} is not a version of template {template}"
            )));
        }
        if status != "built" {
            return Err(StoreError::Invalid(format!(
                "version: version {number} is {status}, only a built version can be active"
            )));
        }
        let Some(image) = image.filter(|i| !i.is_empty()) else {
            return Err(StoreError::Invalid(format!("version: version {number} has no image")));
        };
        let current = current_entry(&mut tx, template).await?;
        if let Some((active, _)) = &current
            && active == version.as_str()
        {
            return Ok(CatalogChange {
                revision: head,
                previous_version_id: Some(active.clone()),
                changed: false,
            });
        }
        let at = now_ms();
        let revision = head + 1;
        let (previous, previous_image) = current.unzip();
        sqlx::query(
            "INSERT INTO runtime_catalog
                 (template_id, active_version_id, image_ref, previous_version_id,
                  previous_image_ref, updated_at, revision)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (template_id) DO UPDATE
             SET active_version_id = excluded.active_version_id,
                 image_ref = excluded.image_ref,
                 previous_version_id = excluded.previous_version_id,
                 previous_image_ref = excluded.previous_image_ref,
                 updated_at = excluded.updated_at,
                 revision = excluded.revision",
        )
        .bind(template.as_str())
        .bind(version.as_str())
        .bind(image.as_str())
        .bind(previous.as_deref())
        .bind(previous_image.as_deref())
        .bind(at)
        .bind(i64_of(revision)?)
        .execute(&mut *tx)
        .await?;
        append_revision(
            &mut tx,
            &Revision {
                revision,
                at,
                reason,
                change_key,
                actor,
                target,
                previous_version_id: previous.as_deref(),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(CatalogChange { revision, previous_version_id: previous, changed: true })
    }

    /// Removes `template` from the catalog (no active version, so no new sessions), with the
    /// same transaction and idempotency rules as [`Store::set_catalog_version`]; `reason` is e.g.
    /// "archive". A template not in the catalog: nothing is written or recorded, and the current
    /// revision comes back with `changed: false`.
    pub async fn clear_catalog_version(
        &self,
        template: &TemplateId,
        reason: &str,
        change_key: &str,
        actor: Option<&UserId>,
    ) -> Result<CatalogChange, StoreError> {
        check_reason_and_key(reason, change_key)?;
        let target = ChangeTarget { template, version: None };
        let mut tx = self.pool.begin().await?;
        let head = lock_head(&mut tx).await?;
        if let Some(change) = recorded_change(&mut tx, change_key, target).await? {
            return Ok(change);
        }
        let Some((previous, _)) = current_entry(&mut tx, template).await? else {
            return Ok(CatalogChange { revision: head, previous_version_id: None, changed: false });
        };
        sqlx::query("DELETE FROM runtime_catalog WHERE template_id = $1")
            .bind(template.as_str())
            .execute(&mut *tx)
            .await?;
        let revision = head + 1;
        append_revision(
            &mut tx,
            &Revision {
                revision,
                at: now_ms(),
                reason,
                change_key,
                actor,
                target,
                previous_version_id: Some(&previous),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(CatalogChange { revision, previous_version_id: Some(previous), changed: true })
    }

    /// Records a promotion, `running`. Idempotent on id: the same id again returns the existing
    /// row unchanged (`Conflict { what: "promotion id" }` if that row is another template's).
    /// `Invalid` for an unknown kind, a template not in `workspace` or a version not of
    /// `template`; `NotFound` if the template, version or requester does not exist.
    pub async fn create_promotion(
        &self,
        p: &NewPromotion<'_>,
    ) -> Result<PromotionRecord, StoreError> {
        check_one_of("kind", p.kind, &PROMOTION_KINDS)?;
        if p.id.trim().is_empty() || p.workflow_id.trim().is_empty() {
            return Err(StoreError::Invalid("promotion id and workflow id must be set".to_owned()));
        }
        if let Some(existing) = self.promotion(p.id).await? {
            if existing.template_id != *p.template {
                return Err(StoreError::Conflict { what: "promotion id" });
            }
            return Ok(existing);
        }
        let row = sqlx::query(
            "SELECT t.workspace_id, v.template_id FROM template_versions v
             JOIN templates t ON t.id = v.template_id WHERE v.id = $1",
        )
        .bind(p.version.as_str())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        let (workspace, of): (String, String) =
            (col(&row, "workspace_id")?, col(&row, "template_id")?);
        if of != p.template.as_str() {
            return Err(StoreError::Invalid(format!(
                "version: {} is not a version of template {}",
                p.version, p.template
            )));
        }
        if workspace != p.workspace.as_str() {
            return Err(StoreError::Invalid(format!(
                "workspace: template {} is not in workspace {}",
                p.template, p.workspace
            )));
        }
        sqlx::query(
            "INSERT INTO template_promotions
                 (id, workspace_id, template_id, version_id, workflow_id, kind, status,
                  requested_by, created_at, updated_at, progress)
             VALUES ($1, $2, $3, $4, $5, $6, 'running', $7, $8, $8, '{}')
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(p.id)
        .bind(p.workspace.as_str())
        .bind(p.template.as_str())
        .bind(p.version.as_str())
        .bind(p.workflow_id)
        .bind(p.kind)
        .bind(p.requested_by.as_str())
        .bind(p.at)
        .execute(&self.pool)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
            _ => StoreError::Database(e),
        })?;
        let record = self.promotion(p.id).await?.ok_or(StoreError::NotFound)?;
        if record.template_id != *p.template {
            return Err(StoreError::Conflict { what: "promotion id" });
        }
        Ok(record)
    }

    /// The promotion `id`, whichever workspace it belongs to.
    pub async fn promotion(&self, id: &str) -> Result<Option<PromotionRecord>, StoreError> {
        let sql = format!("{PROMOTION_SELECT} WHERE p.id = $1");
        let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(promotion_from_row).transpose()
    }

    /// The promotions of `template`, newest first, at most `limit`.
    pub async fn promotions_of_template(
        &self,
        template: &TemplateId,
        limit: u32,
    ) -> Result<Vec<PromotionRecord>, StoreError> {
        let sql = format!(
            "{PROMOTION_SELECT} WHERE p.template_id = $1
             ORDER BY p.created_at DESC, p.id DESC LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(template.as_str())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(promotion_from_row).collect()
    }

    /// Changes a promotion's status, step, error (its first 2000 characters) and progress, and
    /// sets `updated_at = u.at`; a final status also sets `finished_at = u.at`. A promotion
    /// already in a final state is never changed again: it is returned as it is. `Invalid` for
    /// an unknown status; `NotFound` for an unknown promotion.
    pub async fn update_promotion(
        &self,
        id: &str,
        u: &PromotionUpdate<'_>,
    ) -> Result<PromotionRecord, StoreError> {
        if let Some(status) = u.status {
            let all: Vec<&str> =
                PROMOTION_ACTIVE_STATES.iter().chain(&PROMOTION_FINAL_STATES).copied().collect();
            check_one_of("status", status, &all)?;
        }
        let finished = u.status.is_some_and(|s| PROMOTION_FINAL_STATES.contains(&s));
        let error: Option<String> =
            u.error.flatten().map(|e| e.chars().take(MAX_ERROR_CHARS).collect());
        let progress = u.progress.map(serde_json::Value::to_string);
        let sql = format!(
            "UPDATE template_promotions
             SET status = COALESCE($2, status), step = COALESCE($3, step),
                 error = CASE WHEN $4 = 1 THEN $5 ELSE error END,
                 progress = COALESCE($6, progress), updated_at = $7,
                 finished_at = CASE WHEN $8 = 1 THEN $7 ELSE finished_at END
             WHERE id = $1 AND status NOT IN ({})",
            PROMOTION_FINAL_STATES.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", ")
        );
        sqlx::query(&sql)
            .bind(id)
            .bind(u.status)
            .bind(u.step)
            .bind(i64::from(u.error.is_some()))
            .bind(error)
            .bind(progress)
            .bind(u.at)
            .bind(i64::from(finished))
            .execute(&self.pool)
            .await?;
        self.promotion(id).await?.ok_or(StoreError::NotFound)
    }

    /// Records `by`'s approval of a promotion that is `awaiting_approval`: `approved_by` and
    /// `approved_at` (the first approval is kept, so a retry changes nothing). The status stays
    /// as it is: the promotion's workflow moves on when the approval signal reaches it. Any
    /// other state: `Invalid`; unknown: `NotFound`. Who may approve is the caller's check.
    pub async fn approve_promotion(
        &self,
        id: &str,
        by: &UserId,
        at: i64,
    ) -> Result<PromotionRecord, StoreError> {
        sqlx::query(
            "UPDATE template_promotions
             SET approved_by = $2, approved_at = $3, updated_at = $3
             WHERE id = $1 AND status = 'awaiting_approval' AND approved_at IS NULL",
        )
        .bind(id)
        .bind(by.as_str())
        .bind(at)
        .execute(&self.pool)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
            _ => StoreError::Database(e),
        })?;
        let record = self.promotion(id).await?.ok_or(StoreError::NotFound)?;
        if record.status != "awaiting_approval" {
            return Err(StoreError::Invalid(format!(
                "promotion {id} is {}: only a promotion awaiting approval can be approved",
                record.status
            )));
        }
        Ok(record)
    }

    /// Sets `workspace`'s promotion policy: whether a promotion waits for an owner's or admin's
    /// approval. `NotFound` for an unknown workspace.
    pub async fn set_promotion_policy(
        &self,
        workspace: &WorkspaceId,
        requires_approval: bool,
    ) -> Result<(), StoreError> {
        let updated = sqlx::query(
            "UPDATE workspaces SET promotion_requires_approval = $2, updated_at = $3 WHERE id = $1",
        )
        .bind(workspace.as_str())
        .bind(i64::from(requires_approval))
        .bind(now_ms())
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated == 1 { Ok(()) } else { Err(StoreError::NotFound) }
    }

    /// Whether promotions in `workspace` wait for an approval. `NotFound` for an unknown
    /// workspace.
    pub async fn promotion_requires_approval(
        &self,
        workspace: &WorkspaceId,
    ) -> Result<bool, StoreError> {
        let value: Option<i64> =
            sqlx::query_scalar("SELECT promotion_requires_approval FROM workspaces WHERE id = $1")
                .bind(workspace.as_str())
                .fetch_optional(&self.pool)
                .await?;
        value.map(|v| v != 0).ok_or(StoreError::NotFound)
    }
}

fn parse_document(raw: &str) -> Result<CatalogDocument, StoreError> {
    serde_json::from_str(raw).map_err(|e| StoreError::Corrupt(format!("catalog document: {e}")))
}
