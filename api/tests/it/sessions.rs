//! Sessions against the real thing: the `Session` workflow on Temporal, containers on the
//! local Docker engine with the static agent mounted, the database and audit log.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use serde_json::Value;
use temporalio_client::{WorkflowFetchHistoryOptions, WorkflowHistory};

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

pub(crate) struct Stack {
    pub(crate) app: TestApp,
    pub(crate) client: sdk::Client,
    pub(crate) ws: String,
    pub(crate) token: String,
}

pub(crate) async fn stack() -> Stack {
    stack_from(spawn_app().await).await
}

/// [`stack`] with a last say over the configuration.
pub(crate) async fn stack_with(tweak: impl FnOnce(&mut domain::Config)) -> Stack {
    stack_from(spawn_app_with(tweak).await).await
}

async fn stack_from(app: TestApp) -> Stack {
    let store = app.stack.as_ref().unwrap().store.clone();
    let boot = burstflare_api::bootstrap::run(&store, "dev@example.com", Some("Dev"), false, 30)
        .await
        .unwrap();
    let client = app.client.clone().with_token(boot.token.clone());
    Stack { app, client, ws: boot.workspace, token: boot.token }
}

impl Stack {
    pub(crate) fn store(&self) -> domain::Store {
        self.app.stack.as_ref().unwrap().store.clone()
    }

    /// Uploads `deploy/templates/devbox` as template `name` and waits for its build.
    pub(crate) async fn template(&self, name: &str) {
        self.template_with(name, "").await;
    }

    /// [`Stack::template`] with `top` added to the manifest's top-level keys.
    pub(crate) async fn template_with(&self, name: &str, top: &str) {
        let dir = tempfile::tempdir().unwrap();
        let sample = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/templates/devbox");
        for entry in std::fs::read_dir(&sample).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
        let manifest = std::fs::read_to_string(dir.path().join("burstflare.toml")).unwrap();
        std::fs::write(
            dir.path().join("burstflare.toml"),
            manifest.replace("name = \"devbox\"", &format!("{top}name = \"{name}\""))
                + "\n[hooks]\nstop = \"echo stopped-by-hook > /opt/burstflare/session/hook.txt\"\nstop_timeout_secs = 20\n",
        )
        .unwrap();
        let packed = sdk::bundle::pack(dir.path(), &sdk::bundle::Limits::default()).unwrap();
        let body = sdk::CreateVersion {
            size: packed.size,
            sha256: packed.sha256.clone(),
            create_template: true,
            description: String::new(),
        };
        let ticket = self.client.create_version(&self.ws, name, &body).await.unwrap();
        let mut req = reqwest::Client::new().put(&ticket.upload_url);
        for (k, v) in &ticket.headers {
            if !k.eq_ignore_ascii_case("content-length") {
                req = req.header(k, v);
            }
        }
        assert!(req.body(packed.bytes).send().await.unwrap().status().is_success());
        let confirmed =
            self.client.confirm_version(&self.ws, name, &ticket.version.version).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let b = self.client.build(&self.ws, &confirmed.build.id).await.unwrap();
            if b.status == "succeeded" {
                return;
            }
            assert!(!sdk::build_is_final(&b.status), "build {}: {:?}", b.status, b.error);
            assert!(Instant::now() < deadline, "build still {}", b.status);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    pub(crate) async fn create(
        &self,
        template: &str,
        name: &str,
    ) -> Result<sdk::SessionDetail, sdk::ClientError> {
        let body = sdk::CreateSession {
            template: template.into(),
            version: None,
            name: Some(name.into()),
            idempotency_key: None,
        };
        self.client.create_session(&self.ws, &body, true).await
    }

    pub(crate) async fn history(&self, workflow_id: &str, save_as: &str) -> Value {
        let temporal = self.app.stack.as_ref().unwrap().temporal.clone();
        let handle = temporal.get_workflow_handle::<workflows::Session>(workflow_id.to_string());
        let json =
            handle.fetch_history(WorkflowFetchHistoryOptions::default()).to_json().await.unwrap();
        workflows::replayer()
            .unwrap()
            .replay_workflow(WorkflowHistory::from_json(&json).unwrap())
            .await
            .unwrap();
        if std::env::var_os("BURSTFLARE_RECORD_HISTORIES").is_some() {
            let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../workflows/tests/histories")
                .join(format!("{save_as}.json"));
            std::fs::write(&path, &json).unwrap();
        }
        serde_json::from_slice(&json).unwrap()
    }

    /// Replays a `Snapshot` or `Restore` workflow's history and saves it with
    /// BURSTFLARE_RECORD_HISTORIES.
    pub(crate) async fn snapshot_history(&self, workflow_id: &str, save_as: &str) {
        self.history(workflow_id, save_as).await;
    }

    /// The workspace's id (the test's `ws` is its slug).
    pub(crate) async fn ws_id(&self) -> String {
        let slug = domain::ids::Slug::parse(&self.ws).unwrap();
        let ws = self.store().workspace_by_slug(&slug).await.unwrap().unwrap();
        ws.id.to_string()
    }

    /// A client of someone else, who is not a member of this workspace.
    pub(crate) async fn other_member_client(&self) -> sdk::Client {
        let boot = burstflare_api::bootstrap::run(
            &self.store(),
            "someone-else@example.com",
            Some("Else"),
            true,
            30,
        )
        .await
        .unwrap();
        self.app.client.clone().with_token(boot.token)
    }

    pub(crate) async fn audit_actions(&self) -> Vec<String> {
        crate::helpers::audit_actions(&self.client, &self.ws).await
    }
}

/// The session's containers: (name, running).
async fn containers(session_id: &str) -> Vec<(String, bool)> {
    let docker = bollard::Docker::connect_with_local_defaults().unwrap();
    let mut filters = std::collections::HashMap::new();
    filters.insert("label".to_string(), vec![format!("burstflare.session={session_id}")]);
    let list = docker
        .list_containers(Some(bollard::query_parameters::ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .unwrap();
    list.into_iter()
        .map(|c| {
            (
                c.names.unwrap_or_default().join(","),
                c.state.map(|s| s.to_string()).as_deref() == Some("running"),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_session_runs_sleeps_starts_stops_and_is_deleted_in_a_real_container() {
    let s = stack().await;
    s.template("sample").await;

    let created = s.create("sample", "first").await.unwrap();
    assert_eq!(created.state, "running", "{:?}", created.error);
    assert_eq!(created.node.as_deref(), Some("local"));
    let id = created.id.clone();
    let running = containers(&id).await;
    assert_eq!(running.len(), 1, "{running:?}");
    assert!(running[0].1, "the container runs");

    // The agent answers inside it, as PID 1.
    let why = s.client.session_why(&s.ws, &id).await.unwrap();
    assert_eq!(why.state, "running");
    assert!(why.idle_deadline.unwrap() > created.created_at);
    assert_eq!(why.generation, 1);

    // Illegal transitions are refused with the reason, and change nothing.
    let err = s.client.session_op(&s.ws, &id, "start", false).await.unwrap_err();
    assert_eq!(err.status(), Some(409));
    assert!(err.to_string().contains("already running"), "{err}");

    let slept = s.client.session_op(&s.ws, &id, "sleep", true).await.unwrap();
    assert_eq!(slept.state, "sleeping");
    // Sleep snapshots the persisted paths and removes the container; waking makes a fresh
    // one and restores them (tests/it/snapshots.rs covers the files themselves).
    assert!(containers(&id).await.is_empty(), "a sleeping session has no container");
    let err = s.client.session_op(&s.ws, "first", "sleep", false).await.unwrap_err();
    assert!(err.to_string().contains("cannot sleep a session that is sleeping"), "{err}");

    let woke = s.client.session_op(&s.ws, "first", "start", true).await.unwrap();
    assert_eq!(woke.state, "running");
    assert_eq!(s.client.session_why(&s.ws, &id).await.unwrap().generation, 2, "fresh container");

    let restarted = s.client.session_op(&s.ws, &id, "restart", true).await.unwrap();
    assert_eq!(restarted.state, "running");

    let stopped = s.client.session_op(&s.ws, &id, "stop", true).await.unwrap();
    assert_eq!(stopped.state, "stopped");
    // The template's stop hook ran inside the session before it stopped.
    let data = s.app.stack.as_ref().unwrap().config.node.data_dir.join(&id);
    let hook = std::fs::read_to_string(data.join("hook.txt")).unwrap();
    assert_eq!(hook.trim(), "stopped-by-hook");
    assert!(containers(&id).await.is_empty(), "a stopped session has no container");

    let again = s.client.session_op(&s.ws, &id, "start", true).await.unwrap();
    assert_eq!(again.state, "running");
    assert_eq!(s.client.session_why(&s.ws, &id).await.unwrap().generation, 4, "new container");

    let deleted = s.client.delete_session(&s.ws, &id, true).await.unwrap();
    assert_eq!(deleted.state, "deleted");
    assert!(containers(&id).await.is_empty(), "the container is gone after delete");
    // The name is free again.
    assert!(s.client.session(&s.ws, "first").await.is_err());

    // Events, database and audit tell the same story as the workflow.
    let events = s.client.session_events(&s.ws, &id, 0).await.unwrap();
    let states: Vec<&str> = events.iter().filter_map(|e| e.kind.strip_prefix("state.")).collect();
    assert_eq!(
        states,
        ["running", "sleeping", "running", "running", "stopped", "running", "deleted"],
        "{events:?}"
    );
    // The first container started empty; each later one got the latest snapshot back.
    assert_eq!(events.iter().filter(|e| e.kind == "hydrate.empty").count(), 1, "{events:?}");
    assert_eq!(events.iter().filter(|e| e.kind == "hydrate.restored").count(), 3, "{events:?}");
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    // Every step wrote one usage event (runtime minutes since the previous step), keyed by step.
    let usage: i64 = sqlx_count(&s.store(), &format!("{}:", created.workflow_id)).await;
    assert_eq!(usage, events.len() as i64, "one usage event per session event");
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    let actions = s.audit_actions().await;
    for a in [
        "session.created",
        "session.sleep.requested",
        "session.stop.requested",
        "session.delete.requested",
        "session.running",
        "session.deleted",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a} missing from {actions:?}");
    }
    let history = s.history(&created.workflow_id, "session_lifecycle").await;
    assert!(history["events"].as_array().unwrap().len() > 20);
    s.app.stop().await;
}

#[tokio::test]
async fn concurrent_requests_on_one_session_leave_it_consistent() {
    let s = stack().await;
    s.template("busy").await;
    let created = s.create("busy", "busy").await.unwrap();
    assert_eq!(created.state, "running");
    let id = created.id.clone();

    let ops =
        ["stop", "start", "sleep", "start", "restart", "stop", "sleep", "start", "stop", "start"];
    let mut tasks = Vec::new();
    for i in 0..20 {
        let client = s.client.clone();
        let ws = s.ws.clone();
        let id = id.clone();
        let op = ops[i % ops.len()];
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis((i as u64 % 5) * 30)).await;
            if i == 19 {
                client.delete_session(&ws, &id, false).await.map(|_| ())
            } else {
                client.session_op(&ws, &id, op, false).await.map(|_| ())
            }
        }));
    }
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => {}
            Err(e) => {
                assert_eq!(e.status(), Some(409), "only illegal transitions may fail: {e}");
                refused += 1;
            }
        }
    }
    assert!(refused < 20);

    // Let the queue drain, then compare the workflow, the database and Docker.
    let deadline = Instant::now() + Duration::from_secs(240);
    let settled = loop {
        let why = s.client.session_why(&s.ws, &id).await.unwrap();
        let row = s.client.session(&s.ws, &id).await.unwrap();
        if why.pending.is_empty() && why.step.is_empty() && why.state == row.state {
            break row;
        }
        assert!(Instant::now() < deadline, "never settled: {why:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let c = containers(&id).await;
    match settled.state.as_str() {
        "running" => assert!(c.len() == 1 && c[0].1, "{c:?}"),
        "sleeping" => assert!(c.len() == 1 && !c[0].1, "{c:?}"),
        "stopped" | "deleted" => assert!(c.is_empty(), "{c:?}"),
        other => panic!("unexpected final state {other}"),
    }
    if settled.state != "deleted" {
        s.client.delete_session(&s.ws, &id, true).await.unwrap();
    }
    assert!(containers(&id).await.is_empty());
    s.app.stop().await;
}

#[tokio::test]
async fn a_missing_image_fails_the_session_with_its_cause_and_leaves_no_container() {
    let s = stack().await;
    s.template("broken").await;
    let store = s.store();
    let ws = domain::ids::WorkspaceId::parse(&s.client.workspace(&s.ws).await.unwrap().id).unwrap();
    let t = store.template_by_name(&ws, "broken").await.unwrap().unwrap();
    let v1 = store.version_of(&t.id, "1").await.unwrap().unwrap();
    let user = domain::ids::UserId::parse(&s.client.me().await.unwrap().user.id).unwrap();
    // Version 2 points at an image that exists nowhere (not on the host, not in the registry).
    let v2 = store
        .create_draft_version(
            &t.id,
            1,
            &"0".repeat(64),
            domain::store::now_ms() + 60_000,
            &user,
            |id| format!("bundles/{id}"),
        )
        .await
        .unwrap();
    store.accept_upload(&v2.id, &v1.manifest_json).await.unwrap();
    let registry = v1.image_ref.as_deref().unwrap().split('/').next().unwrap().to_string();
    let missing = format!("{registry}/burstflare/missing:v2");
    store
        .set_version_status(
            &v2.id,
            "built",
            Some((&missing, &format!("sha256:{}", "0".repeat(64)))),
        )
        .await
        .unwrap();

    let body = sdk::CreateSession {
        template: "broken".into(),
        version: Some("2".into()),
        name: Some("doomed".into()),
        idempotency_key: None,
    };
    let session = s.client.create_session(&s.ws, &body, true).await.unwrap();
    assert_eq!(session.state, "failed");
    let error = session.error.clone().unwrap();
    assert!(error.contains("missing"), "{error}");
    let why = s.client.session_why(&s.ws, &session.id).await.unwrap();
    assert!(why.last_error.unwrap().contains("creating the container"));
    assert!(containers(&session.id).await.is_empty(), "no orphan container");
    // A failed session can be deleted.
    let deleted = s.client.delete_session(&s.ws, &session.id, true).await.unwrap();
    assert_eq!(deleted.state, "deleted");
    s.history(&session.workflow_id, "session_failed").await;
    s.app.stop().await;
}

#[tokio::test]
async fn quotas_idempotency_and_permissions() {
    let s = stack().await;
    s.template("q").await;

    // A retried create with the same key answers with the same session.
    let body = sdk::CreateSession {
        template: "q".into(),
        version: None,
        name: None,
        idempotency_key: Some("retry-me-1".into()),
    };
    let first = s.client.create_session(&s.ws, &body, true).await.unwrap();
    let second = s.client.create_session(&s.ws, &body, false).await.unwrap();
    assert_eq!(first.id, second.id);
    assert!(first.name.starts_with("q-"), "{}", first.name);

    // The free plan runs one session at a time: a second is refused, and nothing is created.
    let err = s.create("q", "second").await.unwrap_err();
    assert_eq!(err.status(), Some(409));
    assert!(err.to_string().contains("max_running_sessions"), "{err}");
    let listed = s.client.sessions(&s.ws, true).await.unwrap();
    assert_eq!(listed.len(), 1);

    // Bad input names the field.
    let bad = sdk::CreateSession {
        template: "q".into(),
        version: None,
        name: Some("Not A Name".into()),
        idempotency_key: None,
    };
    let err = s.client.create_session(&s.ws, &bad, false).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(err.to_string().contains("name"), "{err}");

    s.client.delete_session(&s.ws, &first.id, true).await.unwrap();
    s.app.stop().await;
}

#[tokio::test]
async fn a_session_continues_as_new_and_keeps_its_state() {
    let s = stack().await;
    s.template("long").await;
    let store = s.store();
    let ws = domain::ids::WorkspaceId::parse(&s.client.workspace(&s.ws).await.unwrap().id).unwrap();
    let user = domain::ids::UserId::parse(&s.client.me().await.unwrap().user.id).unwrap();
    let t = store.template_by_name(&ws, "long").await.unwrap().unwrap();
    let v = store.version_of(&t.id, "1").await.unwrap().unwrap();
    let image = v.image_ref.clone().unwrap();
    let (row, _) = store
        .create_session(&domain::store::NewSession {
            workspace: &ws,
            owner: &user,
            template: &t.id,
            version: &v.id,
            name: "long",
            image_ref: &image,
            idle_timeout_minutes: 30,
            idempotency_key: None,
        })
        .await
        .unwrap();
    // A run that continues as new after two operations, so the test sees it happen.
    let spec = workflows::SessionSpec {
        session_id: row.id.to_string(),
        workspace_id: ws.to_string(),
        image,
        env: vec![],
        cpu_millis: 1000,
        memory_mb: 256,
        ports: vec![],
        idle_timeout_minutes: 30,
        max_lifetime_minutes: 60,
        stop_hook: None,
        stop_hook_timeout_secs: 30,
        ops_per_run: 2,
        persisted_paths: vec!["/home/dev".into()],
        max_snapshot_bytes: 1 << 30,
    };
    let stack_ref = s.app.stack.as_ref().unwrap();
    let first_run = stack_ref
        .temporal
        .start_workflow(
            workflows::Session::run,
            workflows::SessionInput { spec, carried: None },
            temporalio_client::WorkflowStartOptions::new(
                stack_ref.config.temporal.task_queue.clone(),
                row.workflow_id.clone(),
            )
            .build(),
        )
        .await
        .unwrap();
    let wait_state = |want: &'static str| {
        let client = s.client.clone();
        let ws = s.ws.clone();
        let id = row.id.to_string();
        async move {
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let now = client.session(&ws, &id).await.unwrap();
                if now.state == want {
                    return now;
                }
                assert!(Instant::now() < deadline, "still {}", now.state);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    wait_state("running").await;
    // Start + sleep = two operations: the run continues as new, carrying the state.
    s.client.session_op(&s.ws, "long", "sleep", true).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let history = loop {
        let json = first_run
            .fetch_history(WorkflowFetchHistoryOptions::default())
            .to_json()
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&json).unwrap();
        let done = v["events"].as_array().unwrap().iter().any(|e| {
            e["attributes"].get("WorkflowExecutionContinuedAsNewEventAttributes").is_some()
        });
        if done {
            break json;
        }
        assert!(Instant::now() < deadline, "the run did not continue as new");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    workflows::replayer()
        .unwrap()
        .replay_workflow(WorkflowHistory::from_json(&history).unwrap())
        .await
        .unwrap();
    if std::env::var_os("BURSTFLARE_RECORD_HISTORIES").is_some() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../workflows/tests/histories/session_continued_as_new.json");
        std::fs::write(&path, &history).unwrap();
    }
    // The new run knows where the session is: sleeping, same container, and takes requests.
    let why = s.client.session_why(&s.ws, "long").await.unwrap();
    assert_eq!((why.state.as_str(), why.generation), ("sleeping", 1), "{why:?}");
    let err = s.client.session_op(&s.ws, "long", "sleep", false).await.unwrap_err();
    assert_eq!(err.status(), Some(409));
    let woke = s.client.session_op(&s.ws, "long", "start", true).await.unwrap();
    assert_eq!(woke.state, "running");
    s.client.delete_session(&s.ws, "long", true).await.unwrap();
    assert!(containers(row.id.as_str()).await.is_empty());
    s.app.stop().await;
}

/// `burstflare node` as a process of its own, serving node `local` of this stack.
pub(crate) fn spawn_node(s: &Stack) -> tokio::process::Child {
    let stack = s.app.stack.as_ref().unwrap();
    let c = &stack.config;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(stack.dir.join("logs/node.log"))
        .unwrap();
    tokio::process::Command::new(env!("CARGO_BIN_EXE_burstflare"))
        .arg("node")
        .env("BURSTFLARE_TEMPORAL__ADDRESS", c.temporal.address.as_str())
        .env("BURSTFLARE_DATABASE__URL", c.database.url.expose_secret())
        .env("BURSTFLARE_NODE__ID", &c.node.id)
        .env("BURSTFLARE_NODE__AGENT_PATH", &c.node.agent_path)
        .env("BURSTFLARE_NODE__DATA_DIR", &c.node.data_dir)
        .env("BURSTFLARE_RUNTIME__SECRET", c.runtime.secret.expose_secret())
        .env("BURSTFLARE_STORAGE__ENDPOINT", c.storage.endpoint.as_str())
        .env("BURSTFLARE_STORAGE__BUCKET", &c.storage.bucket)
        .env("BURSTFLARE_STORAGE__REGION", &c.storage.region)
        .env("BURSTFLARE_STORAGE__ACCESS_KEY_ID", &c.storage.access_key_id)
        .env("BURSTFLARE_STORAGE__SECRET_ACCESS_KEY", c.storage.secret_access_key.expose_secret())
        .env("BURSTFLARE_STORAGE__FORCE_PATH_STYLE", c.storage.force_path_style.to_string())
        .env("RUST_LOG", "info")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn a_node_killed_right_after_creating_the_container_leaves_exactly_one() {
    let s = stack_from(spawn_app_with(|c| c.node.in_process = false).await).await;
    let mut first = spawn_node(&s);
    s.template("killed").await;
    let body = sdk::CreateSession {
        template: "killed".into(),
        version: None,
        name: Some("killed".into()),
        idempotency_key: None,
    };
    let created = s.client.create_session(&s.ws, &body, false).await.unwrap();
    let id = created.id.clone();

    // The moment the container exists, the node dies without a word.
    let deadline = Instant::now() + Duration::from_secs(120);
    while containers(&id).await.is_empty() {
        assert!(Instant::now() < deadline, "no container was created");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    let _second = spawn_node(&s);

    // While the host is gone, `why` says which step waits and how often it has been tried.
    let why = s.client.session_why(&s.ws, &id).await.unwrap();
    assert_eq!(why.state, "starting", "{why:?}");
    assert!(!why.step.is_empty() && why.attempts >= 1, "{why:?}");

    let deadline = Instant::now() + Duration::from_secs(240);
    let running = loop {
        let now = s.client.session(&s.ws, &id).await.unwrap();
        if now.state == "running" {
            break now;
        }
        assert!(now.state != "failed", "{:?}", now.error);
        assert!(Instant::now() < deadline, "still {}", now.state);
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(running.node.as_deref(), Some("local"));
    let c = containers(&id).await;
    assert_eq!(c.len(), 1, "exactly one container: {c:?}");
    assert!(c[0].1);
    assert_eq!(s.client.session_why(&s.ws, &id).await.unwrap().generation, 1);
    s.client.delete_session(&s.ws, &id, true).await.unwrap();
    assert!(containers(&id).await.is_empty());
    s.history(&created.workflow_id, "session_node_killed").await;
    s.app.stop().await;
}

#[tokio::test]
async fn flare_session_create_returns_a_running_session_and_every_control_works() {
    let s = stack().await;
    s.template("sample").await;
    let flare = |args: &[&str]| {
        let bin = std::path::Path::new(env!("CARGO_BIN_EXE_burstflare")).with_file_name("flare");
        let mut cmd = tokio::process::Command::new(bin);
        cmd.env("FLARE_CONFIG_DIR", s.app.stack.as_ref().unwrap().dir.join("flare"))
            .env("FLARE_TOKEN", &s.token)
            .env("FLARE_SERVER", &s.app.base)
            .env("FLARE_WORKSPACE", &s.ws)
            .args(args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        cmd
    };
    let run = |args: &'static [&'static str]| {
        let mut cmd = flare(args);
        async move {
            let out = tokio::time::timeout(Duration::from_secs(200), cmd.output())
                .await
                .unwrap()
                .unwrap();
            assert!(
                out.status.success(),
                "flare {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).to_string()
        }
    };
    let created: sdk::SessionDetail = serde_json::from_str(
        &run(&["session", "create", "--template", "sample", "--name", "cli", "--output", "json"])
            .await,
    )
    .unwrap();
    assert_eq!(created.state, "running");
    let why: sdk::SessionWhy =
        serde_json::from_str(&run(&["session", "why", "cli", "--output", "json"]).await).unwrap();
    assert_eq!(why.state, "running");
    assert!(why.idle_deadline.is_some());
    for (args, want) in [
        (&["session", "sleep", "cli", "--output", "json"][..], "sleeping"),
        (&["session", "start", "cli", "--output", "json"][..], "running"),
        (&["session", "restart", "cli", "--output", "json"][..], "running"),
        (&["session", "stop", "cli", "--output", "json"][..], "stopped"),
    ] {
        let mut cmd = flare(args);
        let out = cmd.output().await.unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let d: sdk::SessionDetail = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(d.state, want, "{args:?}");
    }
    // An illegal transition is a clear error, not a crash.
    let out = flare(&["session", "sleep", "cli"]).output().await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("stopped"));
    let listed = run(&["session", "list", "--all"]).await;
    assert!(listed.contains("cli") && listed.contains("stopped"), "{listed}");
    let events = run(&["session", "events", "cli"]).await;
    assert!(events.contains("state.running"), "{events}");
    let deleted: sdk::SessionDetail = serde_json::from_str(
        &run(&["session", "delete", "cli", "--yes", "--output", "json"]).await,
    )
    .unwrap();
    assert_eq!(deleted.state, "deleted");
    assert!(containers(&created.id).await.is_empty());
    s.app.stop().await;
}

/// Usage events whose idempotency key starts with `prefix`.
async fn sqlx_count(store: &domain::Store, prefix: &str) -> i64 {
    store.count_usage_events_with_key_prefix(prefix).await.unwrap()
}
