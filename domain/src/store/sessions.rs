//! Dev sessions: their rows, their event history and the plan limits they count against.
//!
//! A session is created here (`provisioning`) when a request asks for one; from then on its
//! `Session` workflow (through activities) is the only writer of its state, with
//! [`Store::write_session_state`]. Listings and lookups read the same rows.

use sqlx::any::AnyRow;

use super::{Store, StoreError, col, col_parsed, conflict_on_unique, count, now_ms};
use crate::ids::{SessionId, TemplateId, TemplateVersionId, UserId, WorkspaceId};

/// Every state a session can be in, as the schema's CHECK lists them.
const SESSION_STATES: [&str; 9] = [
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

/// States in which a session holds (or is about to hold) a runtime: they count toward a plan's
/// `max_sessions`. A session being deleted no longer counts.
pub const SESSION_ACTIVE_STATES: [&str; 5] =
    ["provisioning", "starting", "running", "sleeping", "stopping"];

/// States of a session that exists for its owner: all but `deleted`. A live session's name is
/// taken in its workspace; a deleted one gives it back.
pub const SESSION_LIVE_STATES: [&str; 8] = [
    "provisioning",
    "starting",
    "running",
    "sleeping",
    "stopping",
    "stopped",
    "deleting",
    "failed",
];

/// States in which a session runs (or is about to run) a container: they count toward a plan's
/// `max_running_sessions`.
pub const SESSION_RUNNING_STATES: [&str; 3] = ["provisioning", "starting", "running"];

/// [`SESSION_ACTIVE_STATES`] as an SQL list. Shared with the usage summary so that "active" means
/// the same thing everywhere (a unit test keeps the two equal).
pub(super) const ACTIVE_STATES_SQL: &str =
    "'provisioning', 'starting', 'running', 'sleeping', 'stopping'";

/// `states` as an SQL list of literals. Only ever given the constants of this module.
fn sql_list(states: &[&str]) -> String {
    states.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", ")
}

/// Which sessions [`Store::sessions_in_workspace`] lists. The default lists the active sessions
/// of everyone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionFilter {
    /// Also list sessions that ended (`stopped`, `failed`). Deleted ones are never listed.
    pub include_ended: bool,
    /// Only this person's sessions.
    pub owner: Option<UserId>,
}

/// A session as listed, with the names of its template and owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub id: SessionId,
    pub name: String,
    /// One of `sdk::SESSION_STATES`, never `deleted`.
    pub state: String,
    pub template_name: String,
    pub owner_id: UserId,
    pub owner_name: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_active_at: Option<i64>,
}

fn session_row_from_row(row: &AnyRow) -> Result<SessionRow, StoreError> {
    Ok(SessionRow {
        id: col_parsed(row, "id", SessionId::parse)?,
        name: col(row, "name")?,
        state: col(row, "state")?,
        template_name: col(row, "template_name")?,
        owner_id: col_parsed(row, "owner_user_id", UserId::parse)?,
        owner_name: col(row, "owner_name")?,
        created_at: col(row, "created_at")?,
        updated_at: col(row, "updated_at")?,
        last_active_at: col(row, "last_active_at")?,
    })
}

/// A session row, with the names of its owner, template and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: SessionId,
    pub workspace_id: WorkspaceId,
    pub owner: UserId,
    pub owner_name: String,
    pub template_id: TemplateId,
    pub template_name: String,
    pub version_id: TemplateVersionId,
    /// The version's number ("1", "2", …).
    pub version: String,
    pub name: String,
    /// One of the nine session states.
    pub state: String,
    /// `session-<id>`.
    pub workflow_id: String,
    /// The runtime host the session is pinned to, once placed.
    pub node_id: Option<String>,
    /// Container generation: each new container of the session gets the next one (0 before the
    /// first).
    pub generation: u64,
    pub container_id: Option<String>,
    pub image_ref: Option<String>,
    /// Why the session failed, in words for its owner.
    pub error: Option<String>,
    pub idle_timeout_minutes: u32,
    pub created_at: i64,
    pub updated_at: i64,
    /// When it last became `running`.
    pub started_at: Option<i64>,
    /// When it last became `stopped`, `sleeping` or `failed`.
    pub stopped_at: Option<i64>,
    pub last_active_at: Option<i64>,
    pub deleted_at: Option<i64>,
}

/// Selects sessions as `s` with what [`session_from_row`] reads; callers add WHERE.
const SESSION_SELECT: &str = "SELECT s.id, s.workspace_id, s.owner_user_id,
        u.display_name AS owner_name, s.template_id, t.name AS template_name,
        s.template_version_id, v.version, s.name, s.state, s.workflow_id, s.node_id,
        s.generation, s.container_id, s.image_ref, s.error, s.idle_timeout_minutes,
        s.created_at, s.updated_at, s.started_at, s.stopped_at, s.last_active_at, s.deleted_at
     FROM sessions s
     JOIN users u ON u.id = s.owner_user_id
     JOIN templates t ON t.id = s.template_id
     JOIN template_versions v ON v.id = s.template_version_id";

fn session_from_row(row: &AnyRow) -> Result<SessionRecord, StoreError> {
    let generation: i64 = col(row, "generation")?;
    let idle: i64 = col(row, "idle_timeout_minutes")?;
    Ok(SessionRecord {
        id: col_parsed(row, "id", SessionId::parse)?,
        workspace_id: col_parsed(row, "workspace_id", WorkspaceId::parse)?,
        owner: col_parsed(row, "owner_user_id", UserId::parse)?,
        owner_name: col(row, "owner_name")?,
        template_id: col_parsed(row, "template_id", TemplateId::parse)?,
        template_name: col(row, "template_name")?,
        version_id: col_parsed(row, "template_version_id", TemplateVersionId::parse)?,
        version: col(row, "version")?,
        name: col(row, "name")?,
        state: col(row, "state")?,
        workflow_id: col(row, "workflow_id")?,
        node_id: col(row, "node_id")?,
        generation: u64::try_from(generation)
            .map_err(|_| StoreError::Corrupt(format!("session generation {generation}")))?,
        container_id: col(row, "container_id")?,
        image_ref: col(row, "image_ref")?,
        error: col(row, "error")?,
        idle_timeout_minutes: u32::try_from(idle)
            .map_err(|_| StoreError::Corrupt(format!("session idle_timeout_minutes {idle}")))?,
        created_at: col(row, "created_at")?,
        updated_at: col(row, "updated_at")?,
        started_at: col(row, "started_at")?,
        stopped_at: col(row, "stopped_at")?,
        last_active_at: col(row, "last_active_at")?,
        deleted_at: col(row, "deleted_at")?,
    })
}

/// What [`Store::create_session`] needs.
#[derive(Debug, Clone, Copy)]
pub struct NewSession<'a> {
    pub workspace: &'a WorkspaceId,
    pub owner: &'a UserId,
    pub template: &'a TemplateId,
    pub version: &'a TemplateVersionId,
    pub name: &'a str,
    /// The image the session runs (the version's build).
    pub image_ref: &'a str,
    pub idle_timeout_minutes: u32,
    /// Makes a retried create return the session the first one made.
    pub idempotency_key: Option<&'a str>,
}

/// The workflow's write of a session's state, for [`Store::write_session_state`]. `None` leaves a
/// field as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionWrite<'a> {
    /// One of the nine session states.
    pub state: &'a str,
    /// When (unix ms): becomes `updated_at`, and `started_at`, `stopped_at` or `deleted_at`
    /// depending on the state.
    pub at: i64,
    pub node_id: Option<&'a str>,
    pub generation: Option<u64>,
    /// `Some(None)` clears it.
    pub container_id: Option<Option<&'a str>>,
    /// `Some(None)` clears it.
    pub error: Option<Option<&'a str>>,
}

impl<'a> SessionWrite<'a> {
    /// A write of `state` at `at` that leaves every other field as it is.
    pub fn state(state: &'a str, at: i64) -> Self {
        SessionWrite { state, at, node_id: None, generation: None, container_id: None, error: None }
    }
}

/// One entry of a session's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEventRecord {
    /// Per session, chosen by the workflow; unique, increasing.
    pub seq: u64,
    /// e.g. `state.running`, `op.sleep.accepted`.
    pub kind: String,
    pub detail: serde_json::Value,
    pub at: i64,
}

/// A workspace's session limits from its plan and quota overrides; `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Sessions in [`SESSION_ACTIVE_STATES`], per workspace.
    pub max_sessions: Option<u64>,
    /// Sessions in [`SESSION_RUNNING_STATES`], per workspace.
    pub max_running_sessions: Option<u64>,
    /// Bytes of file content in one snapshot of a session's persisted paths.
    pub max_snapshot_bytes: Option<u64>,
}

fn check_state(state: &str) -> Result<(), StoreError> {
    if SESSION_STATES.contains(&state) {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "session state: {state:?} is not one of {}",
            SESSION_STATES.join(", ")
        )))
    }
}

fn to_i64(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Invalid(format!("{what} {value} is too large")))
}

/// A referenced row (workspace, owner, template, version, session) that does not exist is
/// `NotFound`; other errors stay database errors.
fn not_found_on_foreign_key(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
        _ => StoreError::Database(e),
    }
}

/// Reads limit `key` of a merged limits object: absent or `null` is unlimited.
fn limit(
    limits: &serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Result<Option<u64>, StoreError> {
    match limits.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .map(Some)
            .ok_or_else(|| StoreError::Corrupt(format!("plan limit {key}: {value}"))),
    }
}

/// Parses a JSON object column; anything else is `Corrupt`.
fn json_object(
    raw: &str,
    what: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, StoreError> {
    match serde_json::from_str(raw) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(other) => Err(StoreError::Corrupt(format!("{what}: not an object: {other}"))),
        Err(e) => Err(StoreError::Corrupt(format!("{what}: {e}"))),
    }
}

impl Store {
    /// The sessions of `workspace` that match `filter`, most recently changed first. Deleted
    /// sessions are never listed: their names are free for reuse and they are gone for the user.
    /// The active listing includes sessions being stopped or deleted.
    pub async fn sessions_in_workspace(
        &self,
        workspace: &WorkspaceId,
        filter: SessionFilter,
    ) -> Result<Vec<SessionRow>, StoreError> {
        let states = if filter.include_ended {
            format!("{ACTIVE_STATES_SQL}, 'deleting', 'stopped', 'failed'")
        } else {
            format!("{ACTIVE_STATES_SQL}, 'deleting'")
        };
        // $2 is bound either way and only referenced when filtering by owner (neither backend
        // minds an unreferenced parameter).
        let by_owner = if filter.owner.is_some() { "AND s.owner_user_id = $2" } else { "" };
        let sql = format!(
            "SELECT s.id, s.name, s.state, t.name AS template_name, s.owner_user_id,
                    u.display_name AS owner_name, s.created_at, s.updated_at, s.last_active_at
             FROM sessions s
             JOIN templates t ON t.id = s.template_id
             JOIN users u ON u.id = s.owner_user_id
             WHERE s.workspace_id = $1 AND s.state IN ({states}) {by_owner}
             ORDER BY s.updated_at DESC, s.id DESC"
        );
        let rows = sqlx::query(&sql)
            .bind(workspace.as_str())
            .bind(filter.owner.as_ref().map(UserId::as_str))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(session_row_from_row).collect()
    }

    /// Inserts a `provisioning` session with workflow id `session-<id>`. Returns the session and
    /// whether this call created it: with an idempotency key this owner already used in this
    /// workspace, the session that key made, whatever its state, and `false`. A live session of
    /// the workspace with the same name is `Conflict { what: "session name" }`; a workspace,
    /// owner, template or version that does not exist is `NotFound`.
    pub async fn create_session(
        &self,
        new: &NewSession<'_>,
    ) -> Result<(SessionRecord, bool), StoreError> {
        if let Some(key) = new.idempotency_key
            && let Some(existing) =
                self.session_by_idempotency_key(new.workspace, new.owner, key).await?
        {
            return Ok((existing, false));
        }
        let id = SessionId::new();
        let now = now_ms();
        let inserted = sqlx::query(
            "INSERT INTO sessions
                 (id, workspace_id, owner_user_id, template_id, template_version_id, name, state,
                  workflow_id, image_ref, idle_timeout_minutes, idempotency_key, created_at,
                  updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, 'provisioning', $7, $8, $9, $10, $11, $11)",
        )
        .bind(id.as_str())
        .bind(new.workspace.as_str())
        .bind(new.owner.as_str())
        .bind(new.template.as_str())
        .bind(new.version.as_str())
        .bind(new.name)
        .bind(format!("session-{id}"))
        .bind(new.image_ref)
        .bind(i64::from(new.idle_timeout_minutes))
        .bind(new.idempotency_key)
        .bind(now)
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => {}
            Err(sqlx::Error::Database(db)) if db.is_foreign_key_violation() => {
                return Err(StoreError::NotFound);
            }
            Err(e) => {
                let err = conflict_on_unique("session name")(e);
                // A concurrent create with the same key won the race: answer with its session.
                if let (StoreError::Conflict { .. }, Some(key)) = (&err, new.idempotency_key)
                    && let Some(existing) =
                        self.session_by_idempotency_key(new.workspace, new.owner, key).await?
                {
                    return Ok((existing, false));
                }
                return Err(err);
            }
        }
        let session = self.session_by_id(&id).await?.ok_or(StoreError::NotFound)?;
        Ok((session, true))
    }

    /// The session `owner` created in `ws` with idempotency key `key`, whatever its state.
    pub async fn session_by_idempotency_key(
        &self,
        ws: &WorkspaceId,
        owner: &UserId,
        key: &str,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let sql = format!(
            "{SESSION_SELECT}
             WHERE s.workspace_id = $1 AND s.owner_user_id = $2 AND s.idempotency_key = $3"
        );
        let row = sqlx::query(&sql)
            .bind(ws.as_str())
            .bind(owner.as_str())
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    /// The session `id`, whatever its workspace and state (for workflows and activities).
    pub async fn session_by_id(&self, id: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
        let sql = format!("{SESSION_SELECT} WHERE s.id = $1");
        let row = sqlx::query(&sql).bind(id.as_str()).fetch_optional(&self.pool).await?;
        row.as_ref().map(session_from_row).transpose()
    }

    /// `ws`'s session with id or name `id_or_name`. Names find live sessions only (a deleted
    /// session gave its name back); a deleted session is still found by its id.
    pub async fn session_in_workspace(
        &self,
        ws: &WorkspaceId,
        id_or_name: &str,
    ) -> Result<Option<SessionRecord>, StoreError> {
        if let Ok(id) = SessionId::parse(id_or_name) {
            let sql = format!("{SESSION_SELECT} WHERE s.id = $1 AND s.workspace_id = $2");
            let row = sqlx::query(&sql)
                .bind(id.as_str())
                .bind(ws.as_str())
                .fetch_optional(&self.pool)
                .await?;
            if let Some(row) = row {
                return session_from_row(&row).map(Some);
            }
        }
        let sql = format!(
            "{SESSION_SELECT} WHERE s.workspace_id = $1 AND s.name = $2 AND s.state <> 'deleted'"
        );
        let row =
            sqlx::query(&sql).bind(ws.as_str()).bind(id_or_name).fetch_optional(&self.pool).await?;
        row.as_ref().map(session_from_row).transpose()
    }

    /// How many of `ws`'s sessions are in [`SESSION_ACTIVE_STATES`] (what `max_sessions`
    /// limits), all of them or only `owner`'s.
    pub async fn count_live_sessions(
        &self,
        ws: &WorkspaceId,
        owner: Option<&UserId>,
    ) -> Result<u64, StoreError> {
        let by_owner = if owner.is_some() { "AND owner_user_id = $2" } else { "" };
        let sql = format!(
            "SELECT COUNT(*) AS n FROM sessions
             WHERE workspace_id = $1 AND state IN ({ACTIVE_STATES_SQL}) {by_owner}"
        );
        let row = sqlx::query(&sql)
            .bind(ws.as_str())
            .bind(owner.map(UserId::as_str))
            .fetch_one(&self.pool)
            .await?;
        count(row)
    }

    /// How many of `ws`'s sessions are in [`SESSION_RUNNING_STATES`] (what
    /// `max_running_sessions` limits).
    pub async fn count_running_sessions(&self, ws: &WorkspaceId) -> Result<u64, StoreError> {
        let sql = format!(
            "SELECT COUNT(*) AS n FROM sessions WHERE workspace_id = $1 AND state IN ({})",
            sql_list(&SESSION_RUNNING_STATES)
        );
        count(sqlx::query(&sql).bind(ws.as_str()).fetch_one(&self.pool).await?)
    }

    /// The workflow's write: sets the state (one of the nine, else `Invalid`) and the fields
    /// given, `updated_at = at`; `started_at = at` whenever the state becomes `running`,
    /// `stopped_at = at` when it becomes `stopped`, `sleeping` or `failed`, `deleted_at = at`
    /// when it becomes `deleted`. Unconditional: the workflow is the only writer, and a retried
    /// write writes the same values. `NotFound` if the session does not exist; making a deleted
    /// session live again while another live one has its name is
    /// `Conflict { what: "session name" }`.
    pub async fn write_session_state(
        &self,
        id: &SessionId,
        w: &SessionWrite<'_>,
    ) -> Result<SessionRecord, StoreError> {
        check_state(w.state)?;
        let generation = w.generation.map(|g| to_i64(g, "session generation")).transpose()?;
        let started_at = (w.state == "running").then_some(w.at);
        let stopped_at = matches!(w.state, "stopped" | "sleeping" | "failed").then_some(w.at);
        let deleted_at = (w.state == "deleted").then_some(w.at);
        let changed = sqlx::query(
            "UPDATE sessions
             SET state = $2, updated_at = $3, node_id = COALESCE($4, node_id),
                 generation = COALESCE($5, generation),
                 container_id = CASE WHEN $6 = 1 THEN $7 ELSE container_id END,
                 error = CASE WHEN $8 = 1 THEN $9 ELSE error END,
                 started_at = COALESCE($10, started_at), stopped_at = COALESCE($11, stopped_at),
                 deleted_at = COALESCE($12, deleted_at)
             WHERE id = $1",
        )
        .bind(id.as_str())
        .bind(w.state)
        .bind(w.at)
        .bind(w.node_id)
        .bind(generation)
        .bind(i64::from(w.container_id.is_some()))
        .bind(w.container_id.flatten())
        .bind(i64::from(w.error.is_some()))
        .bind(w.error.flatten())
        .bind(started_at)
        .bind(stopped_at)
        .bind(deleted_at)
        .execute(&self.pool)
        .await
        .map_err(conflict_on_unique("session name"))?
        .rows_affected();
        if changed == 0 {
            return Err(StoreError::NotFound);
        }
        // No listener is fine: nobody waits.
        let _ = self.session_writes.send(id.to_string());
        self.session_by_id(id).await?.ok_or(StoreError::NotFound)
    }

    /// Records activity in the session at `at`: `last_active_at` only ever moves forward.
    /// `NotFound` if the session does not exist.
    pub async fn touch_session_activity(&self, id: &SessionId, at: i64) -> Result<(), StoreError> {
        let matched = sqlx::query(
            "UPDATE sessions
             SET last_active_at = CASE WHEN last_active_at IS NULL OR last_active_at < $2
                                       THEN $2 ELSE last_active_at END
             WHERE id = $1",
        )
        .bind(id.as_str())
        .bind(at)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if matched == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }

    /// Appends event `seq` to the session's history. Idempotent by (session, seq): a second
    /// append of the same seq (a retried activity) changes nothing and returns `false`.
    /// `NotFound` if the session does not exist.
    pub async fn append_session_event(
        &self,
        id: &SessionId,
        seq: u64,
        kind: &str,
        detail: &serde_json::Value,
        at: i64,
    ) -> Result<bool, StoreError> {
        let seq = to_i64(seq, "session event seq")?;
        let detail = serde_json::to_string(detail)
            .map_err(|e| StoreError::Invalid(format!("session event detail: {e}")))?;
        let inserted = sqlx::query(
            "INSERT INTO session_events (session_id, seq, kind, detail_json, at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (session_id, seq) DO NOTHING",
        )
        .bind(id.as_str())
        .bind(seq)
        .bind(kind)
        .bind(detail)
        .bind(at)
        .execute(&self.pool)
        .await
        .map_err(not_found_on_foreign_key)?
        .rows_affected();
        Ok(inserted == 1)
    }

    /// The session's events with a seq above `after_seq`, oldest first, at most `limit`.
    pub async fn session_events(
        &self,
        id: &SessionId,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<SessionEventRecord>, StoreError> {
        // A cursor beyond every storable seq finds nothing, rather than failing.
        let after = i64::try_from(after_seq).unwrap_or(i64::MAX);
        let rows = sqlx::query(
            "SELECT seq, kind, detail_json, at FROM session_events
             WHERE session_id = $1 AND seq > $2
             ORDER BY seq LIMIT $3",
        )
        .bind(id.as_str())
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let seq: i64 = col(row, "seq")?;
                let detail: String = col(row, "detail_json")?;
                Ok(SessionEventRecord {
                    seq: u64::try_from(seq)
                        .map_err(|_| StoreError::Corrupt(format!("session event seq {seq}")))?,
                    kind: col(row, "kind")?,
                    detail: serde_json::from_str(&detail)
                        .map_err(|e| StoreError::Corrupt(format!("session event detail: {e}")))?,
                    at: col(row, "at")?,
                })
            })
            .collect()
    }

    /// `ws`'s session limits: its plan's `limits_json` (through `workspaces.plan_id`) with the
    /// workspace's `quotas.overrides_json`, when it has a quotas row, merged on top key by key.
    /// A limit that is `null` or absent is unlimited. `NotFound` if the workspace does not exist.
    pub async fn session_limits(&self, ws: &WorkspaceId) -> Result<SessionLimits, StoreError> {
        let row = sqlx::query(
            "SELECT p.limits_json, q.overrides_json
             FROM workspaces w
             JOIN plans p ON p.id = w.plan_id
             LEFT JOIN quotas q ON q.workspace_id = w.id
             WHERE w.id = $1",
        )
        .bind(ws.as_str())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        let limits: String = col(&row, "limits_json")?;
        let overrides: Option<String> = col(&row, "overrides_json")?;
        let mut limits = json_object(&limits, "plan limits")?;
        if let Some(overrides) = overrides {
            limits.extend(json_object(&overrides, "quota overrides")?);
        }
        Ok(SessionLimits {
            max_sessions: limit(&limits, "max_sessions")?,
            max_running_sessions: limit(&limits, "max_running_sessions")?,
            max_snapshot_bytes: limit(&limits, "max_snapshot_bytes")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_lists_agree_with_each_other_and_with_the_sdk() {
        assert_eq!(SESSION_STATES, sdk::SESSION_STATES);
        assert_eq!(ACTIVE_STATES_SQL, sql_list(&SESSION_ACTIVE_STATES));
        let live: Vec<&str> = SESSION_STATES.into_iter().filter(|s| *s != "deleted").collect();
        assert_eq!(live, SESSION_LIVE_STATES);
        for state in SESSION_ACTIVE_STATES.iter().chain(&SESSION_RUNNING_STATES) {
            assert!(SESSION_LIVE_STATES.contains(state), "{state}");
        }
        assert!(check_state("stopping").is_ok());
        assert!(matches!(check_state("paused"), Err(StoreError::Invalid(_))));
    }
}
