//! Reading the template catalog of a workspace, for listings.

use sqlx::any::AnyRow;

use super::{Store, StoreError, col, col_parsed};
use crate::ids::{TemplateId, WorkspaceId};

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

fn template_from_row(row: &AnyRow) -> Result<TemplateRow, StoreError> {
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
        let mut templates = rows.iter().map(template_from_row).collect::<Result<Vec<_>, _>>()?;
        // Sorted here rather than by ORDER BY: PostgreSQL orders text by the database's locale
        // and SQLite by bytes, and the listing should not depend on the backend.
        templates.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        Ok(templates)
    }
}
