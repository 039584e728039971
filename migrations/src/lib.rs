//! The database schema, one directory per SQL dialect, embedded at compile time.
//!
//! `sqlite/` and `postgres/` hold the same migrations (same versions, tables and columns) written in
//! each dialect; `domain::Store::migrate` picks the one matching its backend. Add a migration to both
//! directories in the same change, with the same version number.

/// Migrations for SQLite (the embedded default used by `burstflare dev`).
pub static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./sqlite");

/// Migrations for PostgreSQL (production).
pub static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./postgres");

#[cfg(test)]
mod tests {
    use super::{POSTGRES, SQLITE};

    #[test]
    fn both_dialects_have_the_same_migration_versions_and_descriptions() {
        let names = |m: &sqlx::migrate::Migrator| {
            m.iter().map(|m| (m.version, m.description.to_string())).collect::<Vec<_>>()
        };
        assert_eq!(names(&SQLITE), names(&POSTGRES));
        assert!(SQLITE.iter().count() > 0);
    }
}
