//! The template build pipeline against the real thing: `flare template upload`, the presigned
//! upload to the embedded S3 server, the `TemplateBuild` workflow on Temporal, Docker building
//! the image, the registry receiving it, and the log in object storage.
//!
//! Each test runs a whole dev stack; the image builds use the local base image
//! (`deploy/images/base/build.sh`, run by `make test`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use temporalio_client::{WorkflowFetchHistoryOptions, WorkflowHistory};

use crate::helpers::{TestApp, spawn_app_with};

struct Stack {
    app: TestApp,
    client: sdk::Client,
    token: String,
    ws: String,
}

async fn stack(tweak: impl FnOnce(&mut domain::Config)) -> Stack {
    let app = spawn_app_with(tweak).await;
    let store = app.stack.as_ref().unwrap().store.clone();
    let boot =
        burstflare_api::bootstrap::run(&store, "builder@example.com", Some("Builder"), false, 30)
            .await
            .unwrap();
    let client = app.client.clone().with_token(boot.token.clone());
    Stack { app, client, token: boot.token, ws: boot.workspace }
}

impl Stack {
    fn config(&self) -> &domain::Config {
        &self.app.stack.as_ref().unwrap().config
    }

    fn store(&self) -> domain::Store {
        self.app.stack.as_ref().unwrap().store.clone()
    }

    fn temporal(&self) -> temporalio_client::Client {
        self.app.stack.as_ref().unwrap().temporal.clone()
    }

    fn flare(&self, args: &[&str]) -> tokio::process::Command {
        let bin = Path::new(env!("CARGO_BIN_EXE_burstflare")).with_file_name("flare");
        assert!(bin.exists(), "{} is missing: cargo build -p burstflare-cli", bin.display());
        let mut cmd = tokio::process::Command::new(bin);
        cmd.env("FLARE_CONFIG_DIR", self.app_dir().join("flare"))
            .env("FLARE_TOKEN", &self.token)
            .env("FLARE_SERVER", &self.app.base)
            .env("FLARE_WORKSPACE", &self.ws)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    fn app_dir(&self) -> PathBuf {
        self.app.stack.as_ref().unwrap().dir.clone()
    }

    async fn wait_for_build(&self, id: &str, timeout: Duration) -> sdk::TemplateBuild {
        let deadline = Instant::now() + timeout;
        loop {
            let b = self.client.build(&self.ws, id).await.unwrap();
            if sdk::build_is_final(&b.status) {
                return b;
            }
            assert!(Instant::now() < deadline, "build {id} still {} after {timeout:?}", b.status);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn log(&self, id: &str) -> String {
        self.client.build_log(&self.ws, id, 0).await.unwrap().text
    }

    async fn wait_for_log(&self, id: &str, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log(id).await;
            if log.contains(needle) {
                return;
            }
            let b = self.client.build(&self.ws, id).await.unwrap();
            assert!(
                !sdk::build_is_final(&b.status),
                "build ended ({}) before its log showed {needle:?}:\n{log}",
                b.status
            );
            assert!(Instant::now() < deadline, "log never showed {needle:?}:\n{log}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Uploads `bundle` through the API the way `flare` does, returning the confirm answer.
    async fn upload(
        &self,
        name: &str,
        bundle: &[u8],
    ) -> Result<sdk::ConfirmedVersion, sdk::ClientError> {
        let ticket = self.ticket(name, bundle.len() as u64, &sha256(bundle)).await?;
        let status = put(&ticket, bundle.to_vec()).await;
        assert!(status.is_success(), "storage refused a well-formed upload: {status}");
        self.client.confirm_version(&self.ws, name, &ticket.version.version).await
    }

    async fn ticket(
        &self,
        name: &str,
        size: u64,
        sha: &str,
    ) -> Result<sdk::UploadTicket, sdk::ClientError> {
        let body = sdk::CreateVersion {
            size,
            sha256: sha.to_string(),
            create_template: true,
            description: String::new(),
        };
        self.client.create_version(&self.ws, name, &body).await
    }

    /// The digest the registry holds for `image_ref` (`host:port/repo:tag`).
    async fn registry_digest(&self, image_ref: &str) -> Option<String> {
        let (repo, tag) = image_ref.split_once('/').unwrap().1.rsplit_once(':').unwrap();
        let url = self.config().registry.url.join(&format!("v2/{repo}/manifests/{tag}")).unwrap();
        let resp = reqwest::Client::new()
            .head(url)
            .header(
                "accept",
                "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json",
            )
            .send()
            .await
            .unwrap();
        if !resp.status().is_success() {
            return None;
        }
        resp.headers().get("docker-content-digest").map(|v| v.to_str().unwrap().to_string())
    }

    /// The build's workflow history: replayed against today's workflow code, and saved for
    /// the CI replay when BURSTFLARE_RECORD_HISTORIES is set.
    async fn history(&self, workflow_id: &str, save_as: Option<&str>) -> Value {
        let handle = self
            .temporal()
            .get_workflow_handle::<workflows::TemplateBuild>(workflow_id.to_string());
        let json =
            handle.fetch_history(WorkflowFetchHistoryOptions::default()).to_json().await.unwrap();
        let replayer = workflows::replayer().unwrap();
        replayer.replay_workflow(WorkflowHistory::from_json(&json).unwrap()).await.unwrap();
        if let (Some(name), Some(_)) = (save_as, std::env::var_os("BURSTFLARE_RECORD_HISTORIES")) {
            let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../workflows/tests/histories")
                .join(format!("{name}.json"));
            std::fs::write(&path, &json).unwrap();
            eprintln!("saved {}", path.display());
        }
        serde_json::from_slice(&json).unwrap()
    }

    async fn audit_actions(&self) -> Vec<String> {
        crate::helpers::audit_actions(&self.client, &self.ws).await
    }
}

fn sha256(bytes: &[u8]) -> String {
    sdk::bundle::sha256_hex(bytes)
}

async fn put(ticket: &sdk::UploadTicket, body: Vec<u8>) -> reqwest::StatusCode {
    let mut req = reqwest::Client::new().put(&ticket.upload_url);
    for (k, v) in &ticket.headers {
        if !k.eq_ignore_ascii_case("content-length") {
            req = req.header(k, v);
        }
    }
    req.body(body).send().await.unwrap().status()
}

/// A token unique to this run: Dockerfile steps that must really run (not come from the
/// engine's build cache of an earlier run) start with `RUN echo <nonce>`.
fn nonce() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    format!("nonce-{}-{}", std::process::id(), t.as_nanos())
}

/// A bundle directory with this Dockerfile and a valid manifest named `name`.
fn bundle_dir(name: &str, dockerfile: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("burstflare.toml"),
        format!("schema = 1\nname = \"{name}\"\ndescription = \"test template\"\n"),
    )
    .unwrap();
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    std::fs::write(dir.path().join("hello.txt"), "hello from the bundle\n").unwrap();
    dir
}

fn pack(dir: &Path) -> Vec<u8> {
    sdk::bundle::pack(dir, &sdk::bundle::Limits::default()).unwrap().bytes
}

/// A tar.zst holding exactly these raw entries (name bytes written as they are, so `..` and
/// absolute paths get through), for bundles no honest packer would make.
/// (path, tar type flag, link target, content)
type RawEntry<'a> = (&'a [u8], u8, &'a [u8], &'a [u8]);

fn hostile_bundle(entries: &[RawEntry]) -> Vec<u8> {
    let mut tar = Vec::new();
    for (name, kind, link, data) in entries {
        let mut h = tar::Header::new_old();
        {
            let raw = h.as_old_mut();
            raw.name[..name.len()].copy_from_slice(name);
            raw.linkname[..link.len()].copy_from_slice(link);
        }
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_entry_type(tar::EntryType::new(*kind));
        h.set_cksum();
        tar.extend_from_slice(h.as_bytes());
        tar.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        tar.extend(std::iter::repeat_n(0u8, pad));
    }
    tar.extend(std::iter::repeat_n(0u8, 1024));
    let mut enc = zstd::Encoder::new(Vec::new(), 3).unwrap();
    enc.write_all(&tar).unwrap();
    enc.finish().unwrap()
}

const MANIFEST: &[u8] = b"schema = 1\nname = \"evil\"\n";
const DOCKERFILE: &[u8] = b"FROM burstflare/base:latest\n";

/// The attributes of every event of this kind (`ActivityTaskStarted`, …) in a history.
fn events<'a>(history: &'a Value, kind: &str) -> Vec<&'a Value> {
    let key = format!("{kind}EventAttributes");
    history["events"].as_array().unwrap().iter().filter_map(|e| e["attributes"].get(&key)).collect()
}

fn count(history: &Value, kind: &str) -> usize {
    events(history, kind).len()
}

#[tokio::test]
async fn flare_template_upload_builds_pushes_and_records_the_digest() {
    let s = stack(|_| {}).await;
    let sample = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/templates/devbox");

    let out = s
        .flare(&["template", "upload", "devbox", sample.to_str().unwrap(), "--output", "json"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "upload failed: {}", String::from_utf8_lossy(&out.stderr));
    let confirmed: sdk::ConfirmedVersion = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(confirmed.version.version, "1");
    assert_eq!(confirmed.build.attempt, 1);

    // `logs -f` follows the build to its end and exits 0 because it succeeded.
    let follow = tokio::time::timeout(
        Duration::from_secs(600),
        s.flare(&["template", "logs", "devbox", "-f"]).output(),
    )
    .await
    .expect("logs -f ends when the build ends")
    .unwrap();
    let followed = String::from_utf8_lossy(&follow.stdout).to_string();
    assert!(
        follow.status.success(),
        "logs -f: {followed}\n{}",
        String::from_utf8_lossy(&follow.stderr)
    );
    assert!(followed.contains("Building"), "{followed}");
    assert!(followed.contains("Pushed"), "{followed}");

    let build = s.wait_for_build(&confirmed.build.id, Duration::from_secs(60)).await;
    assert_eq!(build.status, "succeeded", "{:?}", build.error);
    let digest = build.image_digest.clone().unwrap();
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{digest}");
    let image_ref = build.image_ref.clone().unwrap();
    assert!(image_ref.ends_with(":v1"), "{image_ref}");
    assert_eq!(s.registry_digest(&image_ref).await.as_deref(), Some(digest.as_str()));

    // The version is built, and shows its manifest without secret values.
    let v = s.client.template_version(&s.ws, "devbox", "1").await.unwrap();
    assert_eq!(v.status, "built");
    assert_eq!(v.image_digest.as_deref(), Some(digest.as_str()));
    let manifest = v.manifest.unwrap();
    assert_eq!(manifest.persisted_paths, vec!["/home/dev".to_string()]);
    assert!(manifest.env.iter().any(|e| e.secret && e.value.is_none()));
    let shown = s.flare(&["template", "show", "devbox"]).output().await.unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout).to_string();
    assert!(shown.contains("/home/dev"), "{shown}");
    let raw_manifest = std::fs::read_to_string(sample.join("burstflare.toml")).unwrap();
    for line in raw_manifest.lines().filter(|l| l.contains("secret = true")) {
        if let Some(value) = line.split("value = \"").nth(1).and_then(|v| v.split('"').next()) {
            assert!(!shown.contains(value), "flare template show printed a secret value");
            let json =
                serde_json::to_string(&s.client.template(&s.ws, "devbox").await.unwrap()).unwrap();
            assert!(!json.contains(value), "the API returned a secret value");
        }
    }

    // The log is in object storage and readable after the fact, in order.
    let log = s.log(&build.id).await;
    let (check, built, pushed) =
        (log.find("Checking the bundle"), log.find("==> Built"), log.find("==> Pushed"));
    assert!(check < built && built < pushed && check.is_some(), "{log}");

    // The image runs.
    let docker = bollard::Docker::connect_with_local_defaults().unwrap();
    let image = docker.inspect_image(&image_ref).await.unwrap();
    let labels = image.config.unwrap().labels.unwrap();
    assert_eq!(labels.get("burstflare.build"), Some(&build.id));

    // The build's minutes count toward the workspace's usage.
    let usage: sdk::UsageSummary = s
        .client
        .request(
            sdk::client::Method::GET,
            &sdk::client::workspace_path(&s.ws, "/usage"),
            sdk::client::NO_BODY,
        )
        .await
        .unwrap();
    assert!(usage.build_minutes >= 1, "{usage:?}");

    let actions = s.audit_actions().await;
    for a in ["template.created", "template.version.uploaded", "template.build.succeeded"] {
        assert_eq!(actions.iter().filter(|x| *x == a).count(), 1, "{a} in {actions:?}");
    }

    let history = s.history(&build.workflow_id, Some("template_build_succeeded")).await;
    assert_eq!(count(&history, "ActivityTaskCompleted"), 7, "4 transitions + 3 builder steps");
    s.app.stop().await;
}

#[tokio::test]
async fn bad_bundles_are_refused_with_the_field_and_nothing_is_kept() {
    let s = stack(|c| c.build.max_bundle_mb = 1).await;
    let store = s.store();

    // Declared too large: refused before any URL is handed out.
    let err = s.ticket("big", 2 * 1024 * 1024, &"a".repeat(64)).await.unwrap_err();
    assert_eq!(err.status(), Some(413));
    assert!(err.to_string().contains("limit"), "{err}");

    // The presigned URL accepts exactly the declared size.
    let good = pack(bundle_dir("sized", "FROM burstflare/base:latest\n").path());
    let ticket = s.ticket("sized", good.len() as u64, &sha256(&good)).await.unwrap();
    let mut bigger = good.clone();
    bigger.extend_from_slice(&[0u8; 4096]);
    let status = put(&ticket, bigger).await;
    assert!(!status.is_success(), "storage accepted more bytes than the URL was signed for");
    let err = s.client.confirm_version(&s.ws, "sized", "1").await.unwrap_err();
    assert_eq!(err.status(), Some(409), "{err}");

    // Hash mismatch: the right size, other bytes.
    let other = pack(bundle_dir("hashed", "FROM burstflare/base:latest\nRUN true\n").path());
    let mut same_size = other.clone();
    let last = same_size.len() - 1;
    same_size[last] ^= 0xff;
    let ticket = s.ticket("hashed", other.len() as u64, &sha256(&other)).await.unwrap();
    assert!(put(&ticket, same_size).await.is_success());
    let err = s.client.confirm_version(&s.ws, "hashed", "1").await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(err.to_string().contains("sha256"), "{err}");

    // Hostile and broken bundles, each refused naming what is wrong.
    let canary = std::env::temp_dir().join(format!("burstflare-canary-{}", std::process::id()));
    let canary_name = format!("../../../../../../..{}", canary.display());
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "traversal",
            hostile_bundle(&[
                (b"burstflare.toml", b'0', b"", MANIFEST),
                (b"Dockerfile", b'0', b"", DOCKERFILE),
                (canary_name.as_bytes(), b'0', b"", b"pwned"),
            ]),
            "..",
        ),
        (
            "absolute",
            hostile_bundle(&[
                (b"burstflare.toml", b'0', b"", MANIFEST),
                (b"Dockerfile", b'0', b"", DOCKERFILE),
                (b"/etc/evil", b'0', b"", b"x"),
            ]),
            "/etc/evil",
        ),
        (
            "symlink",
            hostile_bundle(&[
                (b"burstflare.toml", b'0', b"", MANIFEST),
                (b"Dockerfile", b'0', b"", DOCKERFILE),
                (b"etc", b'2', b"/etc", b""),
            ]),
            "etc",
        ),
        (
            "device",
            hostile_bundle(&[
                (b"burstflare.toml", b'0', b"", MANIFEST),
                (b"Dockerfile", b'0', b"", DOCKERFILE),
                (b"null", b'3', b"", b""),
            ]),
            "null",
        ),
        (
            "no-dockerfile",
            hostile_bundle(&[(b"burstflare.toml", b'0', b"", MANIFEST)]),
            "Dockerfile",
        ),
        (
            "bad-manifest",
            hostile_bundle(&[
                (b"burstflare.toml", b'0', b"", b"schema = 2\nname = \"evil\"\n"),
                (b"Dockerfile", b'0', b"", DOCKERFILE),
            ]),
            "schema",
        ),
        ("not-zstd", b"this is not a bundle at all".to_vec(), ""),
    ];
    for (name, bytes, needle) in cases {
        let err = s.upload(name, &bytes).await.unwrap_err();
        assert_eq!(err.status(), Some(400), "{name}: {err}");
        let msg = err.to_string();
        assert!(msg.contains(needle), "{name}: {msg:?} should name {needle:?}");
        // Nothing of it is kept: no version, no build.
        let t = s.client.template(&s.ws, name).await.unwrap();
        assert_eq!(t.versions, 0, "{name} kept a version");
        assert!(s.client.template_builds(&s.ws, name).await.unwrap().is_empty());
    }
    assert!(!canary.exists(), "a bundle wrote outside its context");

    let actions = s.audit_actions().await;
    assert!(
        actions.iter().filter(|a| *a == "template.version.rejected").count() >= 8,
        "{actions:?}"
    );
    assert!(!actions.iter().any(|a| a == "template.version.uploaded"), "{actions:?}");
    let builds = store.stale_active_builds(i64::MAX).await.unwrap();
    assert!(builds.is_empty());
    s.app.stop().await;
}

#[tokio::test]
async fn a_bad_bundle_in_storage_fails_the_workflow_once_without_retries() {
    let s = stack(|_| {}).await;
    // A bundle with a bad manifest reaches storage through a real upload URL; the API's
    // confirm would refuse it, so it is accepted behind the API's back: the workflow's own
    // check must refuse it too, once.
    let bad = hostile_bundle(&[
        (
            b"burstflare.toml",
            b'0',
            b"",
            b"schema = 1\nname = \"swapped\"\nidle_timeout_minutes = 0\n",
        ),
        (b"Dockerfile", b'0', b"", DOCKERFILE),
    ]);
    let ticket = s.ticket("swapped", bad.len() as u64, &sha256(&bad)).await.unwrap();
    assert!(put(&ticket, bad.clone()).await.is_success());
    let store = s.store();
    let ws = domain::ids::WorkspaceId::parse(&s.client.workspace(&s.ws).await.unwrap().id).unwrap();
    let t = store.template_by_name(&ws, "swapped").await.unwrap().unwrap();
    let v = store.version_of(&t.id, "1").await.unwrap().unwrap();
    store.accept_upload(&v.id, "{}").await.unwrap();
    let b = store.create_build(&v.id, None).await.unwrap();
    let input = workflows::TemplateBuildInput {
        job: activities::build::BuildJob {
            build_id: b.id.to_string(),
            version_id: v.id.to_string(),
            workspace_id: b.workspace_id.to_string(),
            template: "swapped".into(),
            version: "1".into(),
            attempt: 1,
            bundle_key: v.bundle_key.clone().unwrap(),
            bundle_sha256: sha256(&bad),
            bundle_size: bad.len() as u64,
            repository: format!("burstflare/{}", t.id),
            tag: "v1".into(),
            timeout_secs: 600,
        },
        build_queue: s.config().build.task_queue.clone(),
    };
    s.temporal()
        .start_workflow(
            workflows::TemplateBuild::run,
            input,
            temporalio_client::WorkflowStartOptions::new(
                s.config().temporal.task_queue.clone(),
                b.workflow_id.clone(),
            )
            .build(),
        )
        .await
        .unwrap();
    let done = s.wait_for_build(b.id.as_str(), Duration::from_secs(120)).await;
    assert_eq!(done.status, "failed");
    let error = done.error.unwrap();
    assert!(error.contains("idle_timeout_minutes"), "{error}");
    let history = s.history(&b.workflow_id, Some("template_build_invalid_bundle")).await;
    // validating, inspect, failed: the inspect ran once and its failure was final.
    let started = events(&history, "ActivityTaskStarted");
    assert_eq!(started.len(), 3);
    assert!(started.iter().all(|e| e["attempt"] == 1), "{started:?}");
    let failed = events(&history, "ActivityTaskFailed");
    assert_eq!(failed.len(), 1);
    // RETRY_STATE_NON_RETRYABLE_FAILURE
    assert_eq!(failed[0]["retry_state"], 2, "{}", failed[0]);
    assert_eq!(failed[0]["failure"]["applicationFailureInfo"]["nonRetryable"], true);
    let log = s.log(b.id.as_str()).await;
    assert!(log.contains("idle_timeout_minutes"), "{log}");
    assert_eq!(s.client.template_version(&s.ws, "swapped", "1").await.unwrap().status, "failed");
    s.app.stop().await;
}

#[tokio::test]
async fn a_failing_dockerfile_fails_the_build_with_its_log_and_can_be_retried() {
    let s = stack(|_| {}).await;
    let dir = bundle_dir(
        "broken",
        "FROM burstflare/base:latest\nRUN echo about to fail && definitely-not-a-command\n",
    );
    let confirmed = s.upload("broken", &pack(dir.path())).await.unwrap();
    let b = s.wait_for_build(&confirmed.build.id, Duration::from_secs(300)).await;
    assert_eq!(b.status, "failed");
    let error = b.error.clone().unwrap();
    assert!(
        error.contains("definitely-not-a-command") || error.contains("returned a non-zero code"),
        "{error}"
    );
    let log = s.log(&b.id).await;
    assert!(log.contains("about to fail"), "{log}");
    assert!(log.contains("error:"), "{log}");
    // Exactly one image build attempt: a Dockerfile that fails is not retried by Temporal.
    let history = s.history(&b.workflow_id, Some("template_build_failed")).await;
    assert_eq!(count(&history, "ActivityTaskFailed"), 1);

    // `flare template retry` makes attempt 2 of the same version; it fails the same way.
    let out = s.flare(&["template", "retry", "broken", "--output", "json"]).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let retried: sdk::TemplateBuild = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((retried.attempt, retried.version.as_str()), (2, "1"));
    let b2 = s.wait_for_build(&retried.id, Duration::from_secs(300)).await;
    assert_eq!(b2.status, "failed");
    let builds = s.client.template_builds(&s.ws, "broken").await.unwrap();
    assert_eq!(builds.iter().map(|b| b.attempt).collect::<Vec<_>>(), vec![2, 1]);
    let actions = s.audit_actions().await;
    assert_eq!(actions.iter().filter(|a| *a == "template.build.failed").count(), 2);
    assert_eq!(actions.iter().filter(|a| *a == "template.build.retried").count(), 1);
    s.app.stop().await;
}

/// Running containers whose command holds `marker`.
async fn containers_running(marker: &str) -> Vec<String> {
    let docker = bollard::Docker::connect_with_local_defaults().unwrap();
    let list = docker
        .list_containers(None::<bollard::query_parameters::ListContainersOptions>)
        .await
        .unwrap();
    list.into_iter()
        .filter(|c| c.command.as_deref().unwrap_or("").contains(marker))
        .map(|c| c.id.unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn cancelling_mid_build_stops_it_and_leaves_no_build_container() {
    let s = stack(|_| {}).await;
    let marker = format!("sleep {}", 300 + std::process::id() % 500);
    let dir = bundle_dir(
        "slow",
        &format!(
            "FROM burstflare/base:latest\nRUN echo {} && echo slow-step-$((40+2)) && {marker}\n",
            nonce()
        ),
    );
    let confirmed = s.upload("slow", &pack(dir.path())).await.unwrap();
    let id = confirmed.build.id.clone();
    s.wait_for_log(&id, "slow-step-42", Duration::from_secs(180)).await;
    assert_eq!(containers_running(&marker).await.len(), 1, "the build's RUN step is running");

    let out = s.flare(&["template", "cancel", "slow"]).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let b = s.wait_for_build(&id, Duration::from_secs(90)).await;
    assert_eq!(b.status, "cancelled");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !containers_running(&marker).await.is_empty() {
        assert!(Instant::now() < deadline, "the build container outlived the cancel");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(s.log(&id).await.contains("cancelled"));
    let actions = s.audit_actions().await;
    assert!(actions.contains(&"template.build.cancel_requested".to_string()));
    assert!(actions.contains(&"template.build.cancelled".to_string()));
    s.history(&b.workflow_id, Some("template_build_cancelled")).await;
    s.app.stop().await;
}

/// `burstflare builder` as a process of its own, configured for this stack.
fn spawn_builder(s: &Stack) -> tokio::process::Child {
    let c = s.config();
    let bin = env!("CARGO_BIN_EXE_burstflare");
    let log = std::fs::File::create(s.app_dir().join("logs/builder.log")).unwrap();
    tokio::process::Command::new(bin)
        .arg("builder")
        .env("BURSTFLARE_TEMPORAL__ADDRESS", c.temporal.address.as_str())
        .env("BURSTFLARE_STORAGE__ENDPOINT", c.storage.endpoint.as_str())
        .env("BURSTFLARE_STORAGE__ACCESS_KEY_ID", &c.storage.access_key_id)
        .env(
            "BURSTFLARE_STORAGE__SECRET_ACCESS_KEY",
            secrecy::ExposeSecret::expose_secret(&c.storage.secret_access_key),
        )
        .env("BURSTFLARE_STORAGE__FORCE_PATH_STYLE", "true")
        .env("BURSTFLARE_REGISTRY__URL", c.registry.url.as_str())
        .env("RUST_LOG", "info")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn a_builder_killed_mid_build_is_replaced_and_the_build_completes_once() {
    let s = stack(|c| c.build.in_process = false).await;
    let mut first = spawn_builder(&s);
    let dir = bundle_dir(
        "resumed",
        // The markers are computed by the shell, so the echoed Dockerfile line does not contain
        // them; the nonce keeps the step out of the engine's cache.
        &format!(
            "FROM burstflare/base:latest\nRUN echo {} && echo step-one-$((40+2)) && sleep 20 && echo step-one-$((40+3))\nCOPY hello.txt /etc/hello.txt\n",
            nonce()
        ),
    );
    let confirmed = s.upload("resumed", &pack(dir.path())).await.unwrap();
    let id = confirmed.build.id.clone();
    s.wait_for_log(&id, "step-one-42", Duration::from_secs(180)).await;

    // SIGKILL: no shutdown, no goodbye to Temporal. The 20 s step is still running.
    assert_eq!(s.client.build(&s.ws, &id).await.unwrap().status, "building");
    assert!(!s.log(&id).await.contains("step-one-43"));
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    let _second = spawn_builder(&s);

    let b = s.wait_for_build(&id, Duration::from_secs(300)).await;
    assert_eq!(b.status, "succeeded", "{:?}\n{}", b.error, s.log(&id).await);
    let image_ref = b.image_ref.clone().unwrap();
    assert_eq!(s.registry_digest(&image_ref).await, b.image_digest);

    // Exactly one image carries the tag, and it is this build's.
    let docker = bollard::Docker::connect_with_local_defaults().unwrap();
    let mut filters = std::collections::HashMap::new();
    filters.insert("reference".to_string(), vec![image_ref.clone()]);
    let images = docker
        .list_images(Some(bollard::query_parameters::ListImagesOptions {
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(images.len(), 1, "{images:?}");
    assert_eq!(images[0].labels.get("burstflare.build"), Some(&id));

    // The image step ran twice (the killed attempt timed out on its heartbeat), the build once.
    let history = s.history(&b.workflow_id, Some("template_build_builder_killed")).await;
    let started = events(&history, "ActivityTaskStarted");
    assert!(
        started.iter().any(|e| e["attempt"].as_i64().unwrap_or(0) >= 2),
        "no second attempt of the image step: {started:?}"
    );
    let log = s.log(&id).await;
    assert_eq!(log.matches("==> Pushed").count(), 1, "{log}");
    s.app.stop().await;
}
