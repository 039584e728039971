//! `flare snapshot save|list|restore|delete` against a small fake of the API (plain HTTP/1.1
//! answers, canned per request), with the real `flare` binary: the requests it makes, what it
//! prints in text and JSON, and how it exits when the server refuses or the snapshot failed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const BIN: &str = env!("CARGO_BIN_EXE_flare");
const WAIT: Duration = Duration::from_secs(30);
const SESSIONS: &str = "/api/v1/workspaces/acme/sessions/";
const SNAP: &str = "0190c3a2-5b1e-7c4d-9f00-2a6b8e1d4c37";
const OLDER: &str = "0190c3a1-0000-7000-8000-00000000000f";
const SAFETY: &str = "0190c3a9-0000-7000-8000-000000000009";

/// Answers `METHOD PATH` with the (status, body) last set for it, else 404.
#[derive(Clone, Default)]
struct Fake {
    base: String,
    answers: Arc<Mutex<HashMap<String, (u16, Value)>>>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake =
            Self { base: format!("http://{}", listener.local_addr().unwrap()), ..Self::default() };
        let f = fake.clone();
        tokio::spawn(async move {
            loop {
                let (conn, _) = listener.accept().await.unwrap();
                let f = f.clone();
                tokio::spawn(async move { f.serve(conn).await });
            }
        });
        fake
    }

    fn on(&self, request: &str, status: u16, body: Value) {
        self.answers.lock().unwrap().insert(request.to_string(), (status, body));
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    async fn serve(&self, mut conn: TcpStream) {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if conn.read(&mut byte).await.unwrap() == 0 {
                return;
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        conn.read_exact(&mut body).await.unwrap();
        assert!(head.to_ascii_lowercase().contains("authorization: bearer bf_test"), "{head}");
        let mut words = head.split_whitespace();
        let request = format!("{} {}", words.next().unwrap(), words.next().unwrap());
        self.log.lock().unwrap().push(request.clone());
        let answer = self.answers.lock().unwrap().get(&request).cloned();
        let (status, body) =
            answer.unwrap_or((404, json!({"code": "not_found", "message": "not found"})));
        let text = body.to_string();
        let response = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
            text.len()
        );
        conn.write_all(response.as_bytes()).await.unwrap();
        let _ = conn.shutdown().await;
    }
}

fn snapshot(id: &str, status: &str, latest: bool) -> Value {
    let uploaded = matches!(status, "uploaded" | "verified");
    json!({
        "id": id, "session_id": "sid-1", "trigger": "manual", "status": status,
        "size_bytes": uploaded.then_some(1_572_864), "stored_bytes": uploaded.then_some(319_488),
        "chunks": uploaded.then_some(7), "new_chunks": uploaded.then_some(3),
        "error": null, "created_by": "u1", "created_at": 1_740_000_000_000i64,
        "verified_at": (status == "verified").then_some(1_740_000_005_000i64), "latest": latest
    })
}

fn session(state: &str) -> Value {
    json!({
        "id": "sid-1", "name": "dev", "state": state, "template": "go", "version": "1",
        "owner": {"id": "u1", "display_name": "Alice"}, "node": "host-a",
        "workflow_id": "session-sid-1", "created_at": 0, "updated_at": 0,
        "started_at": null, "stopped_at": null, "last_active_at": null, "error": null
    })
}

fn error(code: &str, message: &str) -> Value {
    json!({"code": code, "message": message})
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn flare(fake: &Fake, args: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let mut c = tokio::process::Command::new(BIN);
    c.env_clear()
        .env("HOME", dir.path())
        .env("FLARE_CONFIG_DIR", dir.path().join("config"))
        .env("FLARE_SERVER", &fake.base)
        .env("FLARE_TOKEN", "bf_test")
        .env("FLARE_WORKSPACE", "acme")
        .env("TZ", "UTC")
        .arg("snapshot")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(WAIT, c.output()).await.expect("flare finished").unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_waits_for_the_snapshot_and_prints_its_size() {
    let fake = Fake::start().await;
    fake.on(
        &format!("POST {SESSIONS}dev/snapshots?wait=true"),
        201,
        snapshot(SNAP, "verified", true),
    );
    let r = flare(&fake, &["save", "dev"]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        r.stdout,
        format!(
            "Saved snapshot {SNAP} of session dev.\n\
             \x20 id      {SNAP}\n\
             \x20 status  verified\n\
             \x20 size    1.50 MiB\n\
             \x20 stored  312.00 KiB (3 of 7 chunks new)\n\
             It is the session's latest snapshot: a fresh container starts from it.\n"
        )
    );
    assert_eq!(r.stderr, "", "no spinner without a terminal");

    // Without waiting: the request says so, and pending is fine.
    fake.on(&format!("POST {SESSIONS}dev/snapshots"), 201, snapshot(SNAP, "pending", false));
    let r = flare(&fake, &["save", "dev", "--no-wait", "--output", "json"]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!((v["id"].as_str(), v["status"].as_str()), (Some(SNAP), Some("pending")));
    assert_eq!(
        fake.log(),
        [
            format!("POST {SESSIONS}dev/snapshots?wait=true"),
            format!("POST {SESSIONS}dev/snapshots")
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_or_refused_save_exits_1_with_the_servers_message() {
    let fake = Fake::start().await;
    let save = format!("POST {SESSIONS}dev/snapshots?wait=true");
    let mut failed = snapshot(SNAP, "failed", false);
    failed["error"] = "the agent answered 507: no space left on device".into();
    fake.on(&save, 201, failed);
    let r = flare(&fake, &["save", "dev", "--output", "json"]).await;
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["status"], "failed", "stdout has the snapshot");
    assert!(
        r.stderr.starts_with(&format!(
            "error: snapshot {SNAP} of session dev failed: the agent answered 507: no space left"
        )),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("\nhint: "), "{}", r.stderr);

    // 409: not running.
    let message = "the session is sleeping: only a running session can be snapshotted (start it \
                   first; its latest snapshot is kept meanwhile)";
    fake.on(&save, 409, error("conflict", message));
    let r = flare(&fake, &["save", "dev"]).await;
    assert_eq!(r.code, Some(1));
    assert_eq!(r.stderr, format!("error: {message}\nhint: `flare session start dev` starts it\n"));
    assert_eq!(r.stdout, "");

    // 413: names max_bytes.
    fake.on(
        &save,
        413,
        json!({
            "code": "invalid_request",
            "message": "the persisted paths hold 2000 bytes of file content, more than max_bytes (1999); the session keeps running",
            "details": {"field": "max_bytes"}
        }),
    );
    let r = flare(&fake, &["save", "dev", "--output", "json"]).await;
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.starts_with("error: max_bytes: the persisted paths hold 2000 bytes"));
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["error"]["code"], "too_large");
    assert_eq!(v["error"]["field"], "max_bytes");
    assert!(v["error"]["hint"].as_str().unwrap().contains("max_snapshot_bytes"));

    // 429: names the setting.
    let message = "snapshots.min_interval_secs: the last manual snapshot of this session is 12 s \
                   old and the least interval is 60 s; try again in 48 s";
    fake.on(&save, 429, error("rate_limited", message));
    let r = flare(&fake, &["save", "dev"]).await;
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.starts_with(&format!("error: {message}\n")), "{}", r.stderr);
    assert!(r.stderr.contains("hint: the server's snapshots.min_interval_secs"), "{}", r.stderr);

    // 404: the session.
    let r = flare(&fake, &["save", "nope"]).await;
    assert_eq!(r.code, Some(4));
    assert!(r.stderr.starts_with("error: there is no session nope in workspace acme"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_prints_a_table_marking_the_latest_or_the_raw_array() {
    let fake = Fake::start().await;
    let mut old = snapshot(OLDER, "failed", false);
    old["trigger"] = "sleep".into();
    old["created_at"] = 1_739_990_000_000i64.into();
    old["error"] = format!("the agent answered 500: {}", "reading /home/dev ".repeat(5)).into();
    let list = json!([snapshot(SNAP, "verified", true), old]);
    fake.on(&format!("GET {SESSIONS}dev/snapshots"), 200, list.clone());
    let r = flare(&fake, &["list", "dev"]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", r.stdout);
    assert_eq!(
        lines[0],
        "  ID                                    CREATED              TRIGGER  STATUS    SIZE      ERROR"
    );
    assert_eq!(lines[1], format!("* {SNAP}  2025-02-19 21:20:00  manual   verified  1.50 MiB  -"));
    assert!(
        lines[2].starts_with(&format!(
            "  {OLDER}  2025-02-19 18:33:20  sleep    failed    -         the agent answered 500: "
        )),
        "{}",
        lines[2]
    );
    assert!(lines[2].ends_with('…'), "long errors are cut: {}", lines[2]);
    assert!(lines[3].starts_with("* the latest snapshot"), "{}", lines[3]);

    let r = flare(&fake, &["list", "dev", "--output", "json"]).await;
    assert_eq!(r.code, Some(0));
    assert_eq!(serde_json::from_str::<Value>(&r.stdout).unwrap(), list);

    fake.on(&format!("GET {SESSIONS}new/snapshots"), 200, json!([]));
    let r = flare(&fake, &["list", "new"]).await;
    assert!(r.stdout.starts_with("Session new has no snapshots yet;"), "{}", r.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_says_whether_the_files_are_back_now_or_at_the_next_start() {
    let fake = Fake::start().await;
    let restore = format!("POST {SESSIONS}dev/snapshots/{SNAP}/restore");
    fake.on(
        &restore,
        200,
        json!({"snapshot": snapshot(SNAP, "verified", true), "applied": "now", "safety_snapshot": SAFETY}),
    );
    let r = flare(&fake, &["restore", "dev", SNAP, "--yes"]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout.starts_with(&format!(
            "Restored snapshot {SNAP} into session dev now (your previous files were saved as \
             snapshot {SAFETY};"
        )),
        "{}",
        r.stdout
    );
    fake.on(
        &restore,
        200,
        json!({"snapshot": snapshot(SNAP, "verified", true), "applied": "next_start", "safety_snapshot": null}),
    );
    let r = flare(&fake, &["restore", "dev", SNAP, "-y", "--output", "json"]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["applied"], "next_start");
    let r = flare(&fake, &["restore", "dev", SNAP, "-y"]).await;
    assert_eq!(
        r.stdout,
        format!("Snapshot {SNAP} will be restored when session dev next starts.\n")
    );

    // Only verified snapshots: the server's reason.
    let failed = format!("POST {SESSIONS}dev/snapshots/{OLDER}/restore");
    let message = format!("snapshot {OLDER} is failed; only verified snapshots can be restored");
    fake.on(&failed, 409, error("conflict", &message));
    let r = flare(&fake, &["restore", "dev", OLDER, "-y"]).await;
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.starts_with(&format!("error: {message}\nhint: `flare snapshot list dev`")));

    // An unknown snapshot of a known session, and an unknown session.
    fake.on(&format!("GET {SESSIONS}dev"), 200, session("running"));
    let r = flare(&fake, &["restore", "dev", "0190c3a2-0000-7000-8000-00000000dead", "-y"]).await;
    assert_eq!(r.code, Some(4), "{}", r.stderr);
    assert!(
        r.stderr.starts_with(
            "error: session dev in workspace acme has no snapshot 0190c3a2-0000-7000-8000-00000000dead"
        ),
        "{}",
        r.stderr
    );
    let r = flare(&fake, &["restore", "nope", SNAP, "-y"]).await;
    assert_eq!(r.code, Some(4), "{}", r.stderr);
    assert!(r.stderr.starts_with("error: there is no session nope in workspace acme"));

    // Without a terminal and without --yes nothing is asked of the server.
    let before = fake.log().len();
    let r = flare(&fake, &["restore", "dev", SNAP]).await;
    assert_eq!(r.code, Some(2));
    assert_eq!(fake.log().len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_retires_a_snapshot_but_not_the_latest() {
    let fake = Fake::start().await;
    let mut deleted = snapshot(OLDER, "failed", false);
    deleted["status"] = "deleted".into();
    fake.on(&format!("DELETE {SESSIONS}dev/snapshots/{OLDER}"), 200, deleted);
    let r = flare(&fake, &["delete", "dev", OLDER]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.stdout, format!("Deleted snapshot {OLDER} of session dev.\n"));

    let message = "the session's latest snapshot cannot be deleted; save or restore another first";
    fake.on(&format!("DELETE {SESSIONS}dev/snapshots/{SNAP}"), 409, error("conflict", message));
    let r = flare(&fake, &["delete", "dev", SNAP, "--output", "json"]).await;
    assert_eq!(r.code, Some(1));
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["error"]["code"], "conflict");
    assert_eq!(v["error"]["message"], message);
}
