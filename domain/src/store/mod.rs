//! The typed store: every read and write of the control-plane database goes through `Store`.
//!
//! One code path serves SQLite (the embedded default) and PostgreSQL (production) through
//! `sqlx::Any`, which is why the schema keeps to TEXT, 64-bit integers and bytes, and why every
//! query uses `$1, $2` placeholders (SQLite binds `$N` by number, like PostgreSQL). Operations live
//! in one module per aggregate; each returns plain row structs built from validated domain types.

mod api_tokens;
mod audit;
mod browser_sessions;
mod catalog;
mod ceremonies;
mod connect;
mod device_authorizations;
mod invite_preview;
mod invites;
mod nodes;
mod passkeys;
mod recovery_codes;
mod refresh_tokens;
mod self_checks;
mod sessions;
mod signup;
mod snapshots;
mod templates;
mod usage;
mod users;
mod workspaces;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Decode, Executor, Row, Type};

pub use self::api_tokens::ApiToken;
pub use self::audit::{AuditCursor, AuditEntry, AuditFilter};
pub use self::browser_sessions::BrowserSession;
pub use self::catalog::{
    CatalogChange, CatalogDocument, CatalogEntry, NewPromotion, PROMOTION_ACTIVE_STATES,
    PROMOTION_FINAL_STATES, PROMOTION_KINDS, PromotionRecord, PromotionUpdate,
};
pub use self::ceremonies::{Ceremony, CeremonyKind};
pub use self::connect::{MAX_SSH_KEYS_PER_USER, RuntimeTokenRecord, SshKeyRecord};
pub use self::device_authorizations::{DeviceAuthorization, DevicePoll};
pub use self::invite_preview::InvitePreview;
pub use self::invites::Invite;
pub use self::nodes::NodeRecord;
pub use self::passkeys::PasskeyRecord;
pub use self::refresh_tokens::{CliSession, Rotation};
pub use self::self_checks::SelfCheck;
pub use self::sessions::{
    NewSession, SESSION_ACTIVE_STATES, SESSION_LIVE_STATES, SESSION_RUNNING_STATES,
    SessionEventRecord, SessionFilter, SessionLimits, SessionRecord, SessionRow, SessionWrite,
};
pub use self::signup::NewPasskey;
pub use self::snapshots::{NewSnapshot, SNAPSHOT_TRIGGERS, SnapshotRecord, UploadedSnapshot};
pub use self::templates::{
    BUILD_ACTIVE_STATES, BUILD_FINAL_STATES, BuildRecord, TemplateRecord, TemplateRow,
    VERSION_SETTABLE_STATES, VersionRecord,
};
pub use self::usage::{USAGE_BUILD_MINUTES, UsageRow};
pub use self::users::User;
pub use self::workspaces::{FREE_PLAN_ID, Member, UserWorkspace, Workspace};
use crate::ids::IdError;
pub use crate::ids::Role;

/// Which database a `Store` talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// Tells the backend from the URL scheme, without connecting.
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            // The URL itself is not echoed: it may hold a password.
            Err(StoreError::Invalid(
                "database url: must start with sqlite:// or postgres://".to_owned(),
            ))
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("{what} is already taken")]
    Conflict { what: &'static str },
    #[error("{0}")]
    Invalid(String),
    /// A row that does not parse into its domain type: a bug or a hand-edited database, never bad input.
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl From<IdError> for StoreError {
    fn from(e: IdError) -> Self {
        StoreError::Invalid(e.to_string())
    }
}

/// Per-connection SQLite settings. SQLite waits for a busy lock only if told to, and enforces foreign
/// keys only if told to, on every connection.
const SQLITE_CONNECTION_PRAGMAS: &str = "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;";

#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// The id of each session whose row this process wrote (see [`Store::session_writes`]).
    session_writes: tokio::sync::broadcast::Sender<String>,
}

/// How many session writes a slow [`Store::session_writes`] listener may fall behind before
/// it is told it lagged (and re-reads).
const SESSION_WRITES_BACKLOG: usize = 1024;

impl Store {
    /// Connects to `sqlite://path` (the file is created if missing) or `postgres://…`.
    /// Does not migrate: call [`Store::migrate`].
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        let url = match backend {
            Backend::Sqlite => sqlite_url_creating_file(url),
            Backend::Postgres => url.to_owned(),
        };
        let pool = AnyPoolOptions::new()
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute(SQLITE_CONNECTION_PRAGMAS).await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        if backend == Backend::Sqlite {
            // WAL lets readers proceed during a write. It is a property of the file, set once here
            // rather than per connection: switching needs a lock that busy_timeout does not wait for.
            sqlx::raw_sql("PRAGMA journal_mode = WAL").execute(&pool).await?;
        }
        let (session_writes, _) = tokio::sync::broadcast::channel(SESSION_WRITES_BACKLOG);
        Ok(Store { pool, backend, session_writes })
    }

    /// Hears the id of every session whose state this `Store` (or a clone of it) writes, so
    /// that a request waiting for a session to get somewhere (`?wait`) re-reads its row at once
    /// instead of at its next poll. Only writes made in this process are heard: a waiter must
    /// still poll, for a worker in another process.
    pub fn session_writes(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.session_writes.subscribe()
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Applies the migrations of this backend that are not applied yet.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.migrator().run(&self.pool).await?;
        Ok(())
    }

    fn migrator(&self) -> &'static sqlx::migrate::Migrator {
        match self.backend {
            Backend::Sqlite => &migrations::SQLITE,
            Backend::Postgres => &migrations::POSTGRES,
        }
    }

    /// Versions of the embedded migrations this database has not applied yet. `serve` and
    /// `worker` refuse to start on such a database instead of failing on a missing column later.
    pub async fn pending_migrations(&self) -> Result<Vec<i64>, StoreError> {
        // Before the first `migrate` the bookkeeping table does not exist: everything is pending.
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations")
            .fetch_all(&self.pool)
            .await
            .unwrap_or_default();
        Ok(self
            .migrator()
            .iter()
            .filter(|m| m.migration_type.is_up_migration() && !applied.contains(&m.version))
            .map(|m| m.version)
            .collect())
    }

    /// One round trip to the database, for readiness checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Waits for connections in use to be returned, then closes them all.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The underlying pool, for tests and one-off maintenance. Application code uses the typed
    /// operations so that both backends stay covered by the store's tests.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// sqlx opens an existing SQLite file only, unless the URL asks for `mode=rwc`.
fn sqlite_url_creating_file(url: &str) -> String {
    match url.split_once('?') {
        Some((_, query)) if query.split('&').any(|p| p.starts_with("mode=")) => url.to_owned(),
        Some(_) => format!("{url}&mode=rwc"),
        None => format!("{url}?mode=rwc"),
    }
}

/// Now, in the unit every timestamp column uses: unix milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Sessions and tokens record their last use at most this often, so that authenticating a request
/// is a read, not a write, almost every time.
pub(crate) const TOUCH_INTERVAL_MS: i64 = 60_000;

/// Reads the `n` column of a `SELECT COUNT(*) AS n` row.
pub(crate) fn count(row: AnyRow) -> Result<u64, StoreError> {
    let n: i64 = col(&row, "n")?;
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative count {n}")))
}

/// Turns a unique-constraint violation into `Conflict { what }`; other errors stay database errors.
pub(crate) fn conflict_on_unique(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict { what },
        _ => StoreError::Database(e),
    }
}

/// Reads a column.
pub(crate) fn col<'r, T>(row: &'r AnyRow, name: &str) -> Result<T, StoreError>
where
    T: Decode<'r, Any> + Type<Any>,
{
    Ok(row.try_get(name)?)
}

/// Reads a TEXT column into a validated domain type; a value that does not parse is `Corrupt`.
pub(crate) fn col_parsed<T>(
    row: &AnyRow,
    name: &str,
    parse: impl FnOnce(&str) -> Result<T, IdError>,
) -> Result<T, StoreError> {
    col_parsed_opt(row, name, parse)?
        .ok_or_else(|| StoreError::Corrupt(format!("column {name}: NULL")))
}

/// Like [`col_parsed`] for a nullable column.
pub(crate) fn col_parsed_opt<T>(
    row: &AnyRow,
    name: &str,
    parse: impl FnOnce(&str) -> Result<T, IdError>,
) -> Result<Option<T>, StoreError> {
    let raw: Option<String> = col(row, name)?;
    raw.map(|raw| parse(&raw).map_err(|e| StoreError::Corrupt(format!("column {name}: {e}"))))
        .transpose()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_sqlite_url_is_made_to_create_the_file_unless_it_already_sets_a_mode() {
        assert_eq!(sqlite_url_creating_file("sqlite:///tmp/a.db"), "sqlite:///tmp/a.db?mode=rwc");
        assert_eq!(
            sqlite_url_creating_file("sqlite:///tmp/a.db?cache=shared"),
            "sqlite:///tmp/a.db?cache=shared&mode=rwc"
        );
        assert_eq!(
            sqlite_url_creating_file("sqlite:///tmp/a.db?mode=ro"),
            "sqlite:///tmp/a.db?mode=ro"
        );
    }

    #[test]
    fn an_unknown_database_scheme_is_refused_without_echoing_the_url() {
        let err = Backend::from_url("mysql://root:secret@db/x").unwrap_err();
        assert_eq!(err.to_string(), "database url: must start with sqlite:// or postgres://");
    }
}
