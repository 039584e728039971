//! `flare` itself against a real running API: device login approved in the web flow, whoami,
//! silent refresh after the access token expires, revocation from the web, logout.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::browserish::Api;

fn flare_bin() -> PathBuf {
    // `cargo test --workspace` builds every binary into the same directory.
    let bin = Path::new(env!("CARGO_BIN_EXE_burstflare")).with_file_name("flare");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p burstflare-cli`",
        bin.display()
    );
    bin
}

fn flare(config: &Path, base: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(flare_bin());
    cmd.env("FLARE_CONFIG_DIR", config).env_remove("FLARE_TOKEN").arg("--server").arg(base);
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    cmd
}

async fn run(config: &Path, base: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = flare(config, base);
    cmd.args(args);
    tokio::time::timeout(Duration::from_secs(60), cmd.output()).await.unwrap().unwrap()
}

/// Runs `flare auth login --no-browser` and approves the code it prints as `approver`.
async fn login(api: &Api, approver: &mut crate::browserish::Browser, config: &Path) {
    let mut cmd = flare(config, &api.base);
    cmd.args(["auth", "login", "--no-browser"]).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let code = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(code) = line.trim().strip_prefix("code: ") {
                return code.trim().to_string();
            }
        }
        panic!("flare printed no code");
    })
    .await
    .unwrap();
    let done = approver.post_form("/device/approve", &[("code", &code)]).await;
    assert_eq!(done.status, 200, "{:?}", done.body);
    // Keep draining stderr so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let status =
        tokio::time::timeout(Duration::from_secs(60), child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "flare auth login exited with {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flare_logs_in_through_the_browser_refreshes_silently_and_is_cut_off_by_revocation_and_logout()
 {
    let api = Api::start_with(|c| {
        c.auth.device_poll_interval_secs = 1;
        c.auth.access_token_ttl_secs = 2;
    })
    .await;
    let mut web = api.browser();
    web.sign_up("cli-user@example.com", "Cli User").await;
    web.load_csrf(&api).await;
    let config = tempfile::tempdir().unwrap();

    login(&api, &mut web, config.path()).await;
    let out = run(config.path(), &api.base, &["auth", "whoami", "--output", "json"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let me: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(me["user"]["email"], "cli-user@example.com");
    // The same account and workspaces as the web UI.
    assert_eq!(me["workspaces"], web.get("/api/v1/me").await.body["workspaces"]);
    let text = serde_json::to_string(&me).unwrap();
    assert!(!text.contains("bfa_") && !text.contains("bfr_"), "no credential in the output");

    // Credentials are private to the user.
    let creds = std::fs::read_dir(config.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("credentials"))
        .expect("a credentials file");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&creds).unwrap().permissions().mode() & 0o777, 0o600);

    // The access token lives 2 s here; after that flare refreshes without a word.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let out = run(config.path(), &api.base, &["workspace", "list", "--output", "json"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Two flare processes whose token expired at the same moment: one refreshes, the other
    // uses what it stored, and the login survives (a second refresh would revoke it).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (a, b) = tokio::join!(
        run(config.path(), &api.base, &["auth", "whoami", "--output", "json"]),
        run(config.path(), &api.base, &["workspace", "list", "--output", "json"]),
    );
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    assert_eq!(web.get("/api/v1/me/cli-sessions").await.body.as_array().unwrap().len(), 1);

    // Revoking the CLI session in the web UI cuts it off.
    let id = web.get("/api/v1/me/cli-sessions").await.body[0]["id"].as_str().unwrap().to_string();
    assert_eq!(web.post_form(&format!("/account/cli-sessions/{id}/revoke"), &[]).await.status, 303);
    let out = run(config.path(), &api.base, &["auth", "whoami"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("flare auth login"));

    // Log in again, then log out: revoked on the server too.
    login(&api, &mut web, config.path()).await;
    assert_eq!(web.get("/api/v1/me/cli-sessions").await.body.as_array().unwrap().len(), 1);
    let out = run(config.path(), &api.base, &["auth", "logout"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(web.get("/api/v1/me/cli-sessions").await.body, serde_json::json!([]));
    let out = run(config.path(), &api.base, &["auth", "whoami"]).await;
    assert_eq!(out.status.code(), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flare_waits_longer_when_the_server_says_slow_down_and_still_signs_in() {
    let api = Api::start_with(|c| c.auth.device_poll_interval_secs = 1).await;
    let mut web = api.browser();
    web.sign_up("slow@example.com", "Slow").await;
    web.load_csrf(&api).await;
    let config = tempfile::tempdir().unwrap();

    let mut cmd = flare(config.path(), &api.base);
    cmd.args(["auth", "login", "--no-browser"]).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let code = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(code) = line.trim().strip_prefix("code: ") {
                return code.trim().to_string();
            }
        }
        panic!("flare printed no code");
    })
    .await
    .unwrap();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    // Make flare's next poll count as too fast: the server answers slow_down and adds 5 s.
    let pool = api.state.store.pool();
    let started = std::time::Instant::now();
    sqlx::query("UPDATE device_authorizations SET last_polled_at = $1")
        .bind(domain::store::now_ms() + 60_000)
        .execute(pool)
        .await
        .unwrap();
    let slowed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let interval: i64 =
                sqlx::query_scalar("SELECT interval_secs FROM device_authorizations")
                    .fetch_one(pool)
                    .await
                    .unwrap();
            if interval > 1 {
                return interval;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("flare polled and was told to slow down");
    assert_eq!(slowed, 6);
    sqlx::query("UPDATE device_authorizations SET last_polled_at = $1")
        .bind(domain::store::now_ms())
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(web.post_form("/device/approve", &[("code", &code)]).await.status, 200);
    let status =
        tokio::time::timeout(Duration::from_secs(60), child.wait()).await.unwrap().unwrap();
    assert!(status.success());
    // It kept the longer interval: no second slow_down, so the interval is still 6.
    let interval: i64 = sqlx::query_scalar("SELECT interval_secs FROM device_authorizations")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(interval, 6, "flare polled too fast again");
    assert!(started.elapsed() >= Duration::from_secs(5));
    let out = run(config.path(), &api.base, &["auth", "whoami", "--output", "json"]).await;
    assert!(out.status.success());
}
