//! The schema applies to empty databases of both backends, applies only once, and is the same on both.

use std::collections::BTreeSet;

use domain::Store;
use domain::store::{Backend, FREE_PLAN_ID};
use sqlx::Row;

use crate::support;

async fn applied_versions(store: &Store) -> Vec<i64> {
    sqlx::query("SELECT version FROM _sqlx_migrations ORDER BY version")
        .fetch_all(store.pool())
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<i64, _>("version"))
        .collect()
}

/// (table, column, type class) for every column of the application's tables.
async fn columns(store: &Store) -> BTreeSet<(String, String, &'static str)> {
    let sql = match store.backend() {
        Backend::Sqlite => {
            "SELECT m.name AS table_name, c.name AS column_name, c.type AS column_type
             FROM sqlite_master m JOIN pragma_table_info(m.name) c
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name <> '_sqlx_migrations'"
        }
        Backend::Postgres => {
            "SELECT table_name::text AS table_name, column_name::text AS column_name,
                    data_type::text AS column_type
             FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations'"
        }
    };
    let rows = sqlx::query(sql).fetch_all(store.pool()).await.unwrap();
    rows.iter()
        .map(|row| {
            let ty: String = row.get("column_type");
            let class = match ty.to_lowercase().as_str() {
                "integer" | "bigint" => "integer",
                "text" => "text",
                "blob" | "bytea" => "bytes",
                other => panic!("column type {other} is neither 64-bit integer, text nor bytes"),
            };
            (row.get("table_name"), row.get("column_name"), class)
        })
        .collect()
}

async fn migrating_twice_applies_each_migration_once(
    store: &Store,
    migrator: &sqlx::migrate::Migrator,
) {
    store.migrate().await.unwrap();
    let expected: Vec<i64> = migrator.iter().map(|m| m.version).collect();
    assert_eq!(applied_versions(store).await, expected);
    let tables_before = columns(store).await;
    assert!(tables_before.iter().any(|(table, _, _)| table == "self_checks"));

    store.migrate().await.unwrap();
    assert_eq!(applied_versions(store).await, expected);
    assert_eq!(columns(store).await, tables_before);

    let plan: String = sqlx::query("SELECT name FROM plans WHERE id = $1")
        .bind(FREE_PLAN_ID)
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get("name");
    assert_eq!(plan, "free");
}

#[tokio::test]
async fn migrations_apply_to_a_fresh_sqlite_file_and_applying_them_again_changes_nothing() {
    let (store, dir) = support::sqlite_unmigrated().await;
    assert!(dir.path().join("burstflare.db").exists(), "connect creates the file");
    migrating_twice_applies_each_migration_once(&store, &::migrations::SQLITE).await;
}

#[tokio::test]
async fn migrations_apply_to_a_fresh_postgres_database_and_applying_them_again_changes_nothing() {
    let store = support::postgres_unmigrated().await;
    migrating_twice_applies_each_migration_once(&store, &::migrations::POSTGRES).await;
}

#[tokio::test]
async fn both_backends_end_up_with_the_same_tables_and_columns() {
    let (sqlite, _dir) = support::sqlite().await;
    let postgres = support::postgres().await;
    assert_eq!(columns(&sqlite).await, columns(&postgres).await);
}

async fn constraints_hold(store: &Store) {
    // A role outside the CHECK list is refused by the database itself, not only by Role::parse.
    let (user, workspace) = store
        .create_user_with_personal_workspace(
            &domain::ids::Email::parse("check@example.com").unwrap(),
            &domain::ids::DisplayName::parse("Check").unwrap(),
        )
        .await
        .unwrap();
    let err = sqlx::query("UPDATE memberships SET role = 'superuser' WHERE workspace_id = $1")
        .bind(workspace.id.as_str())
        .execute(store.pool())
        .await
        .unwrap_err();
    assert!(err.as_database_error().unwrap().is_check_violation(), "{err}");

    // Foreign keys are enforced (SQLite only does so when asked, per connection).
    let err = sqlx::query(
        "INSERT INTO memberships (workspace_id, user_id, role, created_at) VALUES ($1, $2, 'member', 0)",
    )
    .bind(workspace.id.as_str())
    .bind(domain::ids::UserId::new().as_str())
    .execute(store.pool())
    .await
    .unwrap_err();
    assert!(err.as_database_error().unwrap().is_foreign_key_violation(), "{err}");

    // One personal workspace per user.
    let err = sqlx::query(
        "INSERT INTO workspaces (id, name, slug, personal, owner_user_id, plan_id, created_at, updated_at)
         VALUES ($1, 'Second', 'second-personal', 1, $2, $3, 0, 0)",
    )
    .bind(domain::ids::WorkspaceId::new().as_str())
    .bind(user.id.as_str())
    .bind(FREE_PLAN_ID)
    .execute(store.pool())
    .await
    .unwrap_err();
    assert!(err.as_database_error().unwrap().is_unique_violation(), "{err}");
}

#[tokio::test]
async fn the_sqlite_schema_enforces_roles_foreign_keys_and_one_personal_workspace() {
    let (store, _dir) = support::sqlite().await;
    constraints_hold(&store).await;
}

#[tokio::test]
async fn the_postgres_schema_enforces_roles_foreign_keys_and_one_personal_workspace() {
    constraints_hold(&support::postgres().await).await;
}
