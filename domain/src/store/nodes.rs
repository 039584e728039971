//! Runtime hosts (`burstflare node`), as their heartbeats report them. Sessions are placed on
//! recently seen nodes, least loaded first.

use sqlx::any::AnyRow;

use super::sessions::SESSION_LIVE_STATES;
use super::{Store, StoreError, col, now_ms};

/// A runtime host and its load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// The node's configured id (`[node] id`).
    pub id: String,
    pub docker_version: String,
    pub agent_version: Option<String>,
    pub first_seen_at: i64,
    pub last_seen_at: i64,
    /// Where the API reaches this node's tunnel (SSH and terminal WebSockets), once reported.
    pub tunnel_url: Option<String>,
    /// Live sessions (any state but `deleted`) pinned to it.
    pub sessions: u64,
}

fn node_from_row(row: &AnyRow) -> Result<NodeRecord, StoreError> {
    let sessions: i64 = col(row, "sessions")?;
    Ok(NodeRecord {
        id: col(row, "id")?,
        docker_version: col(row, "docker_version")?,
        agent_version: col(row, "agent_version")?,
        first_seen_at: col(row, "first_seen_at")?,
        last_seen_at: col(row, "last_seen_at")?,
        tunnel_url: col(row, "tunnel_url")?,
        sessions: u64::try_from(sessions)
            .map_err(|_| StoreError::Corrupt(format!("negative count {sessions}")))?,
    })
}

impl Store {
    /// Records that node `id` is up, with what it runs: inserts it the first time
    /// (`first_seen_at`), then updates its versions and `last_seen_at` (now). An empty id is
    /// `Invalid`.
    pub async fn heartbeat_node(
        &self,
        id: &str,
        docker_version: &str,
        agent_version: Option<&str>,
        tunnel_url: Option<&str>,
    ) -> Result<(), StoreError> {
        if id.trim().is_empty() {
            return Err(StoreError::Invalid("node id: must not be empty".to_owned()));
        }
        sqlx::query(
            "INSERT INTO nodes (id, docker_version, agent_version, first_seen_at, last_seen_at,
                                tunnel_url)
             VALUES ($1, $2, $3, $4, $4, $5)
             ON CONFLICT (id) DO UPDATE
             SET docker_version = excluded.docker_version,
                 agent_version = excluded.agent_version,
                 last_seen_at = excluded.last_seen_at,
                 tunnel_url = excluded.tunnel_url",
        )
        .bind(id)
        .bind(docker_version)
        .bind(agent_version)
        .bind(now_ms())
        .bind(tunnel_url)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Nodes seen at or after `since` (unix ms), with how many live sessions each has, least
    /// loaded first (ties by id).
    pub async fn live_nodes(&self, since: i64) -> Result<Vec<NodeRecord>, StoreError> {
        let live = SESSION_LIVE_STATES.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>();
        let sql = format!(
            "SELECT n.id, n.docker_version, n.agent_version, n.first_seen_at, n.last_seen_at,
                    n.tunnel_url,
                    (SELECT COUNT(*) FROM sessions s
                     WHERE s.node_id = n.id AND s.state IN ({})) AS sessions
             FROM nodes n
             WHERE n.last_seen_at >= $1",
            live.join(", ")
        );
        let rows = sqlx::query(&sql).bind(since).fetch_all(&self.pool).await?;
        let mut nodes = rows.iter().map(node_from_row).collect::<Result<Vec<_>, _>>()?;
        // Sorted here rather than by ORDER BY: PostgreSQL orders text by the database's locale
        // and SQLite by bytes, and placement should not depend on the backend.
        nodes.sort_by(|a, b| a.sessions.cmp(&b.sessions).then_with(|| a.id.cmp(&b.id)));
        Ok(nodes)
    }

    /// Node `id` (with its live session count), however long ago it was seen.
    pub async fn node_by_id(&self, id: &str) -> Result<Option<NodeRecord>, StoreError> {
        let live = SESSION_LIVE_STATES.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>();
        let sql = format!(
            "SELECT n.id, n.docker_version, n.agent_version, n.first_seen_at, n.last_seen_at,
                    n.tunnel_url,
                    (SELECT COUNT(*) FROM sessions s
                     WHERE s.node_id = n.id AND s.state IN ({})) AS sessions
             FROM nodes n
             WHERE n.id = $1",
            live.join(", ")
        );
        let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(node_from_row).transpose()
    }
}
