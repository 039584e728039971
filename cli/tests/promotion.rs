//! `flare template promote|demote|rollback|approve|promotions|catalog|policy` against a small fake
//! of the API (plain HTTP/1.1 answers, canned per request, in sequence for a promotion that moves
//! on), with the real `flare` binary: the requests it makes and their bodies, the progress it
//! shows, what it prints in text and JSON, and how it exits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, VecDeque};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const BIN: &str = env!("CARGO_BIN_EXE_flare");
const WAIT: Duration = Duration::from_secs(60);
const WS: &str = "/api/v1/workspaces/acme";
const PROMO: &str = "0190c3a2-5b1e-7c4d-9f00-2a6b8e1d4c37";
const OLDER: &str = "0190c3a1-0000-7000-8000-00000000000f";

/// The answers still to give per `METHOD PATH`: (status, body) each.
type Answers = HashMap<String, VecDeque<(u16, Value)>>;

/// Answers `METHOD PATH` with the answers set for it, in order, the last one again and again;
/// else 404. Logs each request with its JSON body.
#[derive(Clone, Default)]
struct Fake {
    base: String,
    answers: Arc<Mutex<Answers>>,
    log: Arc<Mutex<Vec<(String, Value)>>>,
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
        self.on_each(request, vec![(status, body)]);
    }

    fn on_each(&self, request: &str, answers: Vec<(u16, Value)>) {
        self.answers.lock().unwrap().insert(request.to_string(), answers.into());
    }

    /// The requests so far, `METHOD PATH` each.
    fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().iter().map(|(r, _)| r.clone()).collect()
    }

    /// The body of the last `request`.
    fn body(&self, request: &str) -> Value {
        let log = self.log.lock().unwrap();
        log.iter().rev().find(|(r, _)| r == request).map(|(_, b)| b.clone()).unwrap()
    }

    fn clear(&self) {
        self.log.lock().unwrap().clear();
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
        let body =
            if body.is_empty() { Value::Null } else { serde_json::from_slice(&body).unwrap() };
        self.log.lock().unwrap().push((request.clone(), body));
        let answer = {
            let mut answers = self.answers.lock().unwrap();
            match answers.get_mut(&request) {
                Some(queue) if queue.len() > 1 => queue.pop_front(),
                Some(queue) => queue.front().cloned(),
                None => None,
            }
        };
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

fn user(id: &str, name: &str) -> Value {
    json!({"id": id, "display_name": name})
}

/// A promotion of go to v3 by Alice.
fn promotion(status: &str, step: Option<&str>, nodes: &[(&str, &str)]) -> Value {
    let nodes: Vec<Value> = nodes.iter().map(|(n, s)| json!({"node": n, "state": s})).collect();
    let final_ = matches!(status, "succeeded" | "rolled_back" | "failed" | "cancelled");
    json!({
        "id": PROMO, "template": "go", "template_id": "tid-go", "kind": "promote",
        "version": "3", "version_id": "vid-3", "image_ref": "registry.local/acme/go:3",
        "status": status, "step": step, "error": null, "nodes": nodes,
        "workflow_id": "promote-tid-go", "requested_by": user("u1", "Alice"),
        "approved_by": null, "approved_at": null,
        "created_at": 1_740_000_000_000i64, "updated_at": 1_740_000_030_000i64,
        "finished_at": final_.then_some(1_740_000_060_000i64)
    })
}

/// A run of another kind, to version `version`.
fn run_of(kind: &str, version: &str, status: &str, step: Option<&str>) -> Value {
    let mut p = promotion(status, step, &[]);
    p["kind"] = kind.into();
    p["version"] = version.into();
    p["version_id"] = format!("vid-{version}").into();
    p["image_ref"] = format!("registry.local/acme/go:{version}").into();
    p
}

fn entry(version: &str, previous: Option<&str>, revision: u64) -> Value {
    json!({
        "template": "go", "template_id": "tid-go", "version": version,
        "version_id": format!("vid-{version}"),
        "image_ref": format!("registry.local/acme/go:{version}"),
        "previous_version": previous, "revision": revision,
        "updated_at": 1_740_000_060_000i64, "cpu_millis": 1000, "memory_mb": 2048, "archived": false
    })
}

fn catalog(revision: u64, entries: Vec<Value>) -> Value {
    json!({"revision": revision, "generated_at": 1_740_000_060_000i64, "entries": entries})
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
        .arg("template")
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

fn promote() -> String {
    format!("POST {WS}/templates/go/promote")
}

fn get_promotion() -> String {
    format!("GET {WS}/promotions/{PROMO}")
}

fn get_catalog() -> String {
    format!("GET {WS}/catalog")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_follows_the_rollout_until_it_succeeds() {
    let fake = Fake::start().await;
    let rollout = |nodes: &[(&str, &str)], status: &str| {
        vec![
            (200, promotion("running", Some("rolling out"), &nodes[..1])),
            (200, promotion("running", Some("rolling out"), nodes)),
            (200, promotion(status, Some("done"), &[("node-a", "ready"), ("node-b", "ready")])),
        ]
    };
    let nodes = [("node-a", "ready"), ("node-b", "pending")];
    fake.on(&promote(), 202, promotion("running", Some("canary"), &[]));
    fake.on_each(&get_promotion(), rollout(&nodes, "succeeded"));
    fake.on(&get_catalog(), 200, catalog(7, vec![entry("3", Some("2"), 7)]));

    let r = flare(&fake, &["promote", "go", "--version", "v3"]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        r.stderr,
        "Promoting go v3: canary\n\
         Promoting go v3: rolling out: node-a ready\n\
         Promoting go v3: rolling out: node-a ready, node-b pending\n"
    );
    assert_eq!(
        r.stdout,
        format!(
            "Promoted go v3: new sessions of go get v3; running sessions keep theirs.\n\
             \x20 promotion  {PROMO}\n\
             \x20 version    v3 (previous: v2)\n\
             \x20 image      registry.local/acme/go:3\n\
             \x20 catalog    revision 7\n\
             \x20 nodes      node-a ready, node-b ready\n"
        )
    );
    assert_eq!(fake.body(&promote()), json!({"version": "3"}), "v3 is sent as 3");
    assert_eq!(
        fake.requests(),
        [promote(), get_promotion(), get_promotion(), get_promotion(), get_catalog()]
    );

    // JSON: the final promotion only, no progress; the newest built version by default.
    fake.clear();
    fake.on_each(&get_promotion(), rollout(&nodes, "succeeded"));
    let r = flare(&fake, &["promote", "go", "--output", "json"]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.stderr, "");
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!((v["id"].as_str(), v["status"].as_str()), (Some(PROMO), Some("succeeded")));
    assert_eq!(v["nodes"][1], json!({"node": "node-b", "state": "ready"}));
    assert_eq!(fake.body(&promote()), json!({"version": null}));
    assert!(!fake.requests().contains(&get_catalog()), "{:?}", fake.requests());

    // --no-wait: the promotion as it started, and nothing read after it.
    fake.clear();
    let r = flare(&fake, &["promote", "go", "--no-wait"]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        r.stdout,
        format!(
            "Started the promotion of go v3 (promotion {PROMO}, canary).\n\
             `flare template promotions go` shows how it goes.\n"
        )
    );
    assert_eq!(fake.requests(), [promote()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_that_is_rolled_back_or_fails_exits_1_with_the_reason() {
    let fake = Fake::start().await;
    let why = "node-b could not pull registry.local/acme/go:3: connection refused";
    let mut rolled_back =
        promotion("rolled_back", Some("rolled back"), &[("node-a", "ready"), ("node-b", "failed")]);
    rolled_back["error"] = why.into();
    fake.on(&promote(), 202, promotion("running", Some("canary"), &[]));
    fake.on_each(
        &get_promotion(),
        vec![
            (
                200,
                promotion(
                    "running",
                    Some("rolling out"),
                    &[("node-a", "ready"), ("node-b", "pending")],
                ),
            ),
            (200, rolled_back.clone()),
        ],
    );
    fake.on(&get_catalog(), 200, catalog(9, vec![entry("2", Some("1"), 9)]));

    let r = flare(&fake, &["promote", "go"]).await;
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert_eq!(
        r.stdout,
        format!(
            "The promotion of go v3 was rolled back.\n\
             \x20 promotion  {PROMO}\n\
             \x20 status     rolled_back\n\
             \x20 step       rolled back\n\
             \x20 error      {why}\n\
             \x20 nodes      node-a ready, node-b failed\n"
        )
    );
    assert!(
        r.stderr.ends_with(&format!(
            "error: the promotion of go v3 was rolled back: {why}\n\
             hint: the previous version v2 is active again; see `flare template promotions go`\n"
        )),
        "{}",
        r.stderr
    );
    assert!(r.stderr.starts_with("Promoting go v3: canary\n"), "{}", r.stderr);

    // JSON: stdout has the promotion as it ended; the error goes to stderr.
    fake.on(&get_promotion(), 200, rolled_back);
    let r = flare(&fake, &["promote", "go", "--output", "json"]).await;
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!((v["status"].as_str(), v["error"].as_str()), (Some("rolled_back"), Some(why)));
    assert!(r.stderr.starts_with("error: the promotion of go v3 was rolled back: "));

    // A canary that fails: the catalog never changed.
    let mut failed = promotion("failed", Some("canary"), &[]);
    failed["error"] = "the smoke command `make check` exited 2".into();
    fake.on(&get_promotion(), 200, failed);
    fake.on(&get_catalog(), 200, catalog(9, vec![entry("2", Some("1"), 9)]));
    let r = flare(&fake, &["promote", "go"]).await;
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stdout.starts_with("The promotion of go v3 failed.\n"), "{}", r.stdout);
    assert!(
        r.stderr.ends_with(
            "error: the promotion of go v3 failed: the smoke command `make check` exited 2\n\
             hint: the previous version v2 stays active; see `flare template promotions go`\n"
        ),
        "{}",
        r.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_awaiting_approval_says_who_must_approve_it_and_exits_0() {
    let fake = Fake::start().await;
    let awaiting = promotion("awaiting_approval", Some("awaiting approval"), &[]);
    fake.on(&promote(), 202, promotion("running", Some("canary"), &[]));
    fake.on(&get_promotion(), 200, awaiting.clone());

    let r = flare(&fake, &["promote", "go"]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        r.stdout,
        format!(
            "The promotion of go v3 (promotion {PROMO}) awaits approval: an owner or admin of the \
             workspace other than you must run\n\
             \x20 flare template approve go -w acme\n\
             The catalog does not change until then; `flare template promotions go` shows whether \
             it went on.\n"
        )
    );
    assert_eq!(fake.requests(), [promote(), get_promotion()], "it stopped waiting");

    // --wait-approval waits on, saying who must approve, until it ends.
    fake.clear();
    fake.on_each(
        &get_promotion(),
        vec![
            (200, awaiting.clone()),
            (200, awaiting),
            (200, promotion("running", Some("rolling out"), &[("node-a", "pending")])),
            (200, promotion("succeeded", Some("done"), &[("node-a", "ready")])),
        ],
    );
    fake.on(&get_catalog(), 200, catalog(8, vec![entry("3", None, 8)]));
    let r = flare(&fake, &["promote", "go", "--wait-approval"]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        r.stderr,
        "Promoting go v3: canary\n\
         Promoting go v3: awaiting approval: an owner or admin other than you must run `flare \
         template approve go -w acme`\n\
         Promoting go v3: rolling out: node-a pending\n"
    );
    assert!(r.stdout.starts_with("Promoted go v3: "), "{}", r.stdout);
    assert!(r.stdout.contains("\n  catalog    revision 8\n"), "{}", r.stdout);
    assert_eq!(fake.requests().iter().filter(|r| **r == get_promotion()).count(), 4);

    // The two do not go together.
    let r = flare(&fake, &["promote", "go", "--wait-approval", "--no-wait"]).await;
    assert_eq!(r.code, Some(2), "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_finds_the_promotion_awaiting_approval_or_says_there_is_none() {
    let fake = Fake::start().await;
    let mut older = promotion("succeeded", Some("done"), &[]);
    older["id"] = OLDER.into();
    let awaiting = promotion("awaiting_approval", Some("awaiting approval"), &[]);
    let mut approved = awaiting.clone();
    approved["approved_by"] = user("u2", "Bob");
    approved["approved_at"] = 1_740_000_050_000i64.into();
    let approve = format!("POST {WS}/promotions/{PROMO}/approve");
    fake.on(&format!("GET {WS}/templates/go/promotions"), 200, json!([awaiting, older]));
    fake.on(&approve, 200, approved.clone());

    let r = flare(&fake, &["approve", "go"]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        r.stdout,
        format!(
            "Approved the promotion of go v3 (promotion {PROMO}, requested by Alice): it goes on: \
             the catalog changes, then the rollout.\n\
             `flare template promotions go` shows how it ends.\n"
        )
    );
    assert_eq!(fake.requests(), [format!("GET {WS}/templates/go/promotions"), approve.clone()]);

    // By ID, as JSON.
    fake.clear();
    fake.on(&get_promotion(), 200, promotion("awaiting_approval", None, &[]));
    let r = flare(&fake, &["approve", "go", "--promotion", PROMO, "--output", "json"]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(serde_json::from_str::<Value>(&r.stdout).unwrap(), approved);
    assert_eq!(fake.requests(), [get_promotion(), approve.clone()]);

    // None awaiting: exit 4, nothing approved.
    fake.clear();
    fake.on(&format!("GET {WS}/templates/py/promotions"), 200, json!([older]));
    let r = flare(&fake, &["approve", "py"]).await;
    assert_eq!(r.code, Some(4), "{}", r.stderr);
    assert_eq!(
        r.stderr,
        "error: no promotion of template py in workspace acme awaits approval\n\
         hint: `flare template promotions py` shows its promotions and where they are\n"
    );
    assert_eq!(fake.requests(), [format!("GET {WS}/templates/py/promotions")]);

    // One's own promotion: the server refuses, flare says who can approve.
    let message = "you requested this promotion, so you cannot approve it: another owner or \
                   admin of the workspace must approve it (four-eyes rule)";
    fake.on(&approve, 403, error("forbidden", message));
    let r = flare(&fake, &["approve", "go"]).await;
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert_eq!(
        r.stderr,
        format!(
            "error: {message}\nhint: only an owner or admin of acme other than the one who \
             requested it can approve a promotion; ask another one to run `flare template approve \
             go -w acme`\n"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_start_passes_the_servers_message_through() {
    let fake = Fake::start().await;
    let message = format!(
        "a promote of go to version 2 is running (promotion {OLDER}, step: canary): one run per \
         template at a time; follow it with `flare template promotions go` and try again once it \
         has ended"
    );
    fake.on(&promote(), 409, error("conflict", &message));
    let r = flare(&fake, &["promote", "go"]).await;
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert_eq!(
        r.stderr,
        format!(
            "error: {message}\nhint: one promotion, demotion or rollback of go runs at a time: \
             `flare template promotions go` shows it; try again once it has ended\n"
        )
    );
    assert_eq!(r.stdout, "");
    let r = flare(&fake, &["promote", "go", "--output", "json"]).await;
    assert_eq!(r.code, Some(1));
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        (v["error"]["code"].as_str(), v["error"]["message"].as_str()),
        (Some("conflict"), Some(message.as_str()))
    );
    assert_eq!(fake.requests(), [promote(), promote()], "nothing followed");

    // A version that is not one of the template's: the field leads.
    fake.on(
        &promote(),
        400,
        json!({"code": "invalid_request", "message": "version: go has no version 9; its built versions are: 1, 2", "details": {"field": "version"}}),
    );
    let r = flare(&fake, &["promote", "go", "--version", "9"]).await;
    assert_eq!(r.code, Some(1));
    assert_eq!(
        r.stderr,
        "error: version: go has no version 9; its built versions are: 1, 2\n\
         hint: `flare template versions go` lists its versions and which are built\n"
    );

    // An unknown template.
    let r = flare(&fake, &["demote", "nope"]).await;
    assert_eq!(r.code, Some(4));
    assert!(r.stderr.starts_with("error: there is no template nope in workspace acme\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_goes_back_to_an_earlier_version_in_one_command() {
    let fake = Fake::start().await;
    let rollback = format!("POST {WS}/templates/go/rollback");
    fake.on(&rollback, 202, run_of("rollback", "2", "running", Some("catalog")));
    fake.on_each(
        &get_promotion(),
        vec![
            (200, run_of("rollback", "2", "running", Some("rolling out"))),
            (200, run_of("rollback", "2", "succeeded", Some("done"))),
        ],
    );
    fake.on(&get_catalog(), 200, catalog(10, vec![entry("2", Some("3"), 10)]));

    let r = flare(&fake, &["rollback", "go", "v2"]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        r.stdout,
        format!(
            "Rolled go back to v2: new sessions of go get v2; running sessions keep theirs.\n\
             \x20 promotion  {PROMO}\n\
             \x20 version    v2 (previous: v3)\n\
             \x20 image      registry.local/acme/go:2\n\
             \x20 catalog    revision 10\n\
             \x20 nodes      none live\n"
        )
    );
    assert_eq!(r.stderr, "Rolling go back to v2: catalog\nRolling go back to v2: rolling out\n");
    assert_eq!(fake.body(&rollback), json!({"version": "2"}));

    // --no-wait, JSON: the run as the server started it.
    fake.clear();
    let r = flare(&fake, &["rollback", "go", "2", "--no-wait", "--output", "json"]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!((v["kind"].as_str(), v["status"].as_str()), (Some("rollback"), Some("running")));
    assert_eq!(fake.requests(), [rollback]);

    // A version is required.
    let r = flare(&fake, &["rollback", "go"]).await;
    assert_eq!(r.code, Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demote_goes_back_to_the_previous_version() {
    let fake = Fake::start().await;
    let demote = format!("POST {WS}/templates/go/demote");
    fake.on(&demote, 202, run_of("demote", "2", "running", Some("catalog")));
    fake.on(&get_promotion(), 200, run_of("demote", "2", "succeeded", Some("done")));
    fake.on(&get_catalog(), 200, catalog(11, vec![entry("2", Some("3"), 11)]));

    let r = flare(&fake, &["demote", "go"]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout.starts_with(
            "Demoted go to v2: new sessions of go get v2; running sessions keep theirs.\n"
        ),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("\n  catalog    revision 11\n"), "{}", r.stdout);
    assert_eq!(fake.body(&demote), Value::Null, "demote sends no body");

    let r = flare(&fake, &["demote", "go", "--no-wait"]).await;
    assert_eq!(
        r.stdout,
        format!(
            "Started the demotion of go to v2 (promotion {PROMO}, catalog).\n\
             `flare template promotions go` shows how it goes.\n"
        )
    );

    // Nothing to go back to: the server's reason, and where to look.
    let message = "go has no previous version to go back to: version 3 is the only one it has \
                   had since it entered the catalog";
    fake.on(&demote, 409, error("conflict", message));
    let r = flare(&fake, &["demote", "go"]).await;
    assert_eq!(r.code, Some(1));
    assert_eq!(
        r.stderr,
        format!(
            "error: {message}\nhint: `flare template catalog` shows the active and the previous \
             version; `flare template rollback go VERSION` goes back to any earlier built version\n"
        )
    );

    // A demotion that fails leaves the current version active.
    let mut failed = run_of("demote", "2", "failed", Some("rolling out"));
    failed["error"] = "no runtime host answered".into();
    fake.on(&demote, 202, run_of("demote", "2", "running", Some("catalog")));
    fake.on(&get_promotion(), 200, failed);
    fake.on(&get_catalog(), 200, catalog(11, vec![entry("3", Some("2"), 11)]));
    let r = flare(&fake, &["demote", "go"]).await;
    assert_eq!(r.code, Some(1));
    assert!(
        r.stderr.ends_with(
            "error: the demotion of go to v2 failed: no runtime host answered\n\
             hint: the previous version v3 stays active; see `flare template promotions go`\n"
        ),
        "{}",
        r.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_prints_the_revision_and_each_templates_active_version() {
    let fake = Fake::start().await;
    let mut py = entry("1", None, 4);
    py["template"] = "py".into();
    py["image_ref"] = "registry.local/acme/py:1".into();
    py["archived"] = true.into();
    let view = catalog(7, vec![entry("3", Some("2"), 7), py]);
    fake.on(&get_catalog(), 200, view.clone());
    let r = flare(&fake, &["catalog"]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "Catalog revision 7 (2025-02-19 21:21 UTC).\n\
         TEMPLATE       ACTIVE  PREVIOUS  IMAGE                     UPDATED\n\
         go             v3      v2        registry.local/acme/go:3  2025-02-19 21:21 UTC\n\
         py (archived)  v1      -         registry.local/acme/py:1  2025-02-19 21:21 UTC\n"
    );
    let r = flare(&fake, &["catalog", "--output", "json"]).await;
    assert_eq!(serde_json::from_str::<Value>(&r.stdout).unwrap(), view);

    fake.on(&get_catalog(), 200, json!({"revision": 0, "generated_at": 0, "entries": []}));
    let r = flare(&fake, &["catalog"]).await;
    assert!(r.stdout.starts_with("The catalog has no revision yet"), "{}", r.stdout);
    let r = flare(&fake, &["-w", "other", "catalog"]).await;
    assert_eq!(r.code, Some(4), "another workspace is asked for: {}", r.stderr);
    assert_eq!(fake.requests().last().unwrap(), "GET /api/v1/workspaces/other/catalog");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotions_lists_the_runs_of_a_template() {
    let fake = Fake::start().await;
    let mut approved = promotion("succeeded", Some("done"), &[]);
    approved["approved_by"] = user("u2", "Bob");
    let mut failed = run_of("rollback", "1", "failed", Some("rolling out"));
    failed["id"] = OLDER.into();
    failed["error"] = "node-b could not pull registry.local/acme/go:1: manifest unknown".into();
    failed["created_at"] = 1_739_990_000_000i64.into();
    let list = json!([approved, failed]);
    fake.on(&format!("GET {WS}/templates/go/promotions"), 200, list.clone());
    let r = flare(&fake, &["promotions", "go"]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", r.stdout);
    assert_eq!(
        lines[0],
        "ID                                    KIND      VERSION  STATUS     STEP/ERROR                                          REQUESTED BY  APPROVED BY  STARTED"
    );
    assert_eq!(
        lines[1],
        format!(
            "{PROMO}  promote   v3       succeeded  done                                                Alice         Bob          2025-02-19 21:20 UTC"
        )
    );
    assert_eq!(
        lines[2],
        format!(
            "{OLDER}  rollback  v1       failed     node-b could not pull registry.local/acme/go:1: m…  Alice         -            2025-02-19 18:33 UTC"
        )
    );
    let r = flare(&fake, &["promotions", "go", "--output", "json"]).await;
    assert_eq!(serde_json::from_str::<Value>(&r.stdout).unwrap(), list);

    fake.on(&format!("GET {WS}/templates/new/promotions"), 200, json!([]));
    let r = flare(&fake, &["promotions", "new"]).await;
    assert!(r.stdout.starts_with("Template new has no promotions yet;"), "{}", r.stdout);
    let r = flare(&fake, &["promotions", "nope"]).await;
    assert_eq!(r.code, Some(4));
    assert!(r.stderr.starts_with("error: there is no template nope in workspace acme\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_shows_and_sets_whether_promotions_need_approval() {
    let fake = Fake::start().await;
    let policy = format!("{WS}/promotion-policy");
    fake.on(
        &format!("GET {policy}"),
        200,
        json!({"requires_approval": true, "approval_timeout_secs": 86_400}),
    );
    let r = flare(&fake, &["policy"]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "Promotions in acme need approval: after its canary, a promotion waits until an owner or \
         admin other than its requester runs `flare template approve NAME`; without approval \
         within 1d 0h it is cancelled.\n"
    );

    fake.on(
        &format!("PUT {policy}"),
        200,
        json!({"requires_approval": false, "approval_timeout_secs": 86_400}),
    );
    let r = flare(&fake, &["policy", "--no-require-approval"]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "Promotions in acme now need no approval: a promotion changes the catalog as soon as its \
         canary passed.\n"
    );
    assert_eq!(
        fake.body(&format!("PUT {policy}")),
        json!({"requires_approval": false, "approval_timeout_secs": 0})
    );

    fake.on(
        &format!("PUT {policy}"),
        200,
        json!({"requires_approval": true, "approval_timeout_secs": 3600}),
    );
    let r = flare(&fake, &["policy", "--require-approval", "--output", "json"]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        serde_json::from_str::<Value>(&r.stdout).unwrap(),
        json!({"requires_approval": true, "approval_timeout_secs": 3600})
    );
    assert_eq!(fake.body(&format!("PUT {policy}"))["requires_approval"], true);

    fake.on(
        &format!("PUT {policy}"),
        403,
        error("forbidden", "only owners and admins can change the workspace's settings"),
    );
    let r = flare(&fake, &["policy", "--require-approval"]).await;
    assert_eq!(r.code, Some(1));
    assert!(
        r.stderr.ends_with(
            "hint: only owners and admins of acme can change its promotion policy; `flare \
             workspace members` shows who they are\n"
        ),
        "{}",
        r.stderr
    );

    let before = fake.requests().len();
    let r = flare(&fake, &["policy", "--require-approval", "--no-require-approval"]).await;
    assert_eq!(r.code, Some(2));
    assert_eq!(fake.requests().len(), before, "nothing asked of the server");
}
