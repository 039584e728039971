//! Fresh, migrated stores for each test.

use domain::Store;
use tempfile::TempDir;
use testkit::postgres::TestPostgres;

/// A store on a new SQLite file, not migrated. Keep the `TempDir` alive as long as the store.
pub async fn sqlite_unmigrated() -> (Store, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("burstflare.db").display());
    (Store::connect(&url).await.unwrap(), dir)
}

/// A store on a new PostgreSQL database, not migrated.
pub async fn postgres_unmigrated() -> Store {
    let pg = TestPostgres::start().await.unwrap();
    let url = pg.fresh_database().await.unwrap();
    Store::connect(&url).await.unwrap()
}

pub async fn sqlite() -> (Store, TempDir) {
    let (store, dir) = sqlite_unmigrated().await;
    store.migrate().await.unwrap();
    (store, dir)
}

pub async fn postgres() -> Store {
    let store = postgres_unmigrated().await;
    store.migrate().await.unwrap();
    store
}

/// Generates two `#[tokio::test]`s that tell the same story (an `async fn(&Store)`), one on a fresh
/// SQLite file and one on a fresh PostgreSQL database.
macro_rules! on_both_backends {
    ($story:ident => $on_sqlite:ident, $on_postgres:ident) => {
        #[tokio::test]
        async fn $on_sqlite() {
            let (store, _dir) = support::sqlite().await;
            $story(&store).await;
        }

        #[tokio::test]
        async fn $on_postgres() {
            $story(&support::postgres().await).await;
        }
    };
}
pub(crate) use on_both_backends;
