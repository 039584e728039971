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

#[tokio::test]
async fn bootstrap_creates_the_first_owner_once_and_prints_a_working_token() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/burstflare.db?mode=rwc", dir.path().display());
    let run = |force: bool| {
        let mut cmd = Command::new(BIN);
        cmd.args(["admin", "bootstrap", "--email", "first@example.com", "--output", "json"]);
        cmd.env("BURSTFLARE_DATABASE__URL", &db);
        if force {
            cmd.arg("--force");
        }
        cmd.output().unwrap()
    };
    let out = run(false);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = v["token"].as_str().unwrap();
    assert!(token.starts_with("bfp_"));

    let store = domain::Store::connect(&db).await.unwrap();
    let found = store
        .api_token_by_hash(&domain::secrets::hash(token), domain::store::now_ms())
        .await
        .unwrap();
    assert!(found.is_some(), "the printed token is valid");
    let audit: Vec<String> = sqlx::query_scalar("SELECT detail_json || action FROM audit_log")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert!(audit.iter().any(|a| a.ends_with("auth.bootstrap")));
    assert!(!audit.concat().contains(token), "no secret in the audit log");

    let again = run(false);
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("already has 1 user") && err.contains("--force"), "{err}");
    // --force with the same email is refused by the email, not silently duplicated.
    let forced = run(true);
    assert!(!forced.status.success());
    assert!(String::from_utf8_lossy(&forced.stderr).contains("--email"));
    assert_eq!(store.count_users().await.unwrap(), 1);
}

#[test]
fn serve_refuses_a_database_that_is_not_migrated_and_says_how_to_fix_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("serve")
        .env(
            "BURSTFLARE_DATABASE__URL",
            format!("sqlite://{}/fresh.db?mode=rwc", dir.path().display()),
        )
        .env("BURSTFLARE_SERVER__LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("run `burstflare migrate` first"), "{err}");
}

#[tokio::test]
async fn admin_catalog_prints_writes_and_lists_what_the_database_records() {
    use domain::ids::{DisplayName, Email};
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/burstflare.db?mode=rwc", dir.path().display());
    let store = domain::Store::connect(&db).await.unwrap();
    store.migrate().await.unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(["admin", "catalog"])
            .args(args)
            .env("BURSTFLARE_DATABASE__URL", &db)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (ok, text) = run(&[]);
    assert!(ok && text.contains("revision = 0"), "{text}");

    // One promotion's worth of catalog: a built version made active.
    let (user, ws) = store
        .create_user_with_personal_workspace(
            &Email::parse("ops@example.com").unwrap(),
            &DisplayName::parse("Ops").unwrap(),
        )
        .await
        .unwrap();
    let t = store.create_template(&ws.id, "rust", "", &user.id).await.unwrap();
    let sha = "ab".repeat(32);
    let v = store
        .create_draft_version(&t.id, 10, &sha, domain::store::now_ms() + 60_000, &user.id, |id| {
            format!("bundles/{id}")
        })
        .await
        .unwrap();
    let v = store.accept_upload(&v.id, r#"{"schema":1,"name":"rust"}"#).await.unwrap();
    store
        .set_version_status(&v.id, "built", Some(("reg.local/rust:1", "sha256:ab")))
        .await
        .unwrap();
    let change =
        store.set_catalog_version(&t.id, &v.id, "promote", "k1", Some(&user.id)).await.unwrap();
    assert_eq!(change.revision, 1);

    let (ok, text) = run(&[]);
    assert!(ok, "{text}");
    let doc = deploy::catalog::parse(&text).unwrap();
    assert_eq!((doc.revision, doc.entries.len()), (1, 1));
    assert_eq!(doc.entries[0].image_ref, "reg.local/rust:1");
    let file = dir.path().join("catalog.toml");
    let (ok, text) = run(&["--out", file.to_str().unwrap()]);
    assert!(ok && text.contains("wrote catalog revision 1"), "{text}");
    assert_eq!(deploy::catalog::parse(&std::fs::read_to_string(&file).unwrap()).unwrap(), doc);
    let (ok, text) = run(&["--history", "--output", "json"]);
    assert!(ok, "{text}");
    let list: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(list[0]["reason"], "promote");
    assert_eq!(list[0]["template_id"], t.id.to_string());
    let (ok, text) = run(&["--revision", "9"]);
    assert!(!ok && text.contains("there is no catalog revision 9"), "{text}");
    let (ok, text) = run(&["--publish"]);
    assert!(!ok && text.contains("cloudflare.bundle_dir"), "{text}");
}
