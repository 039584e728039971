//! The operator subcommands of `burstflare`, run as binaries.

use std::process::Command;

use testkit::postgres::TestPostgres;

const BIN: &str = env!("CARGO_BIN_EXE_burstflare");

#[tokio::test]
async fn migrate_applies_the_schema_to_a_configured_postgres_database_and_is_idempotent() {
    let pg = TestPostgres::start().await.unwrap();
    let url = pg.fresh_database().await.unwrap();
    for _ in 0..2 {
        let out = Command::new(BIN)
            .arg("migrate")
            .env("BURSTFLARE_DATABASE__URL", &url)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "database is up to date");
    }
    let store = domain::Store::connect(&url).await.unwrap();
    assert_eq!(store.backend(), domain::store::Backend::Postgres);
    assert_eq!(store.count_users().await.unwrap(), 0);
    store.close().await;
}

#[test]
fn admin_config_prints_the_effective_configuration_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("burstflare.toml");
    std::fs::write(&file, "[storage]\nbucket = \"from-file\"\naccess_key_id = \"AKIDFILE\"\n")
        .unwrap();
    let out = Command::new(BIN)
        .args(["admin", "config", "--config"])
        .arg(&file)
        .env("BURSTFLARE_DATABASE__URL", "postgres://bf:pg-pass-123@db:5432/bf")
        .env("BURSTFLARE_STORAGE__SECRET_ACCESS_KEY", "s3-secret-456")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("bucket = \"from-file\""), "{text}");
    assert!(text.contains("AKIDFILE"), "{text}");
    assert!(!text.contains("pg-pass-123") && !text.contains("s3-secret-456"), "{text}");
    assert!(text.contains("[redacted]"), "{text}");
}

#[test]
fn a_bad_configuration_value_is_refused_naming_the_field_and_the_limit() {
    let out = Command::new(BIN)
        .args(["admin", "config"])
        .env("BURSTFLARE_DATABASE__MAX_CONNECTIONS", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("database.max_connections: must be between 1 and 1000"), "{err}");
}
