//! The static agent (scripts/build-agent.sh) as PID 1 of a real container of the local base image,
//! mounted read-only the way session containers get it. Needs a Docker daemon and the image
//! `burstflare/base:latest` (`make base-image`); builds the static agent when it is missing or older
//! than its sources.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime};

use common::{get, request, wait_for};

const IMAGE: &str = "burstflare/base:latest";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The newest mtime among the files under `path` (or of `path` itself).
fn newest_mtime(path: &Path) -> SystemTime {
    let meta = std::fs::metadata(path).unwrap();
    if !meta.is_dir() {
        return meta.modified().unwrap();
    }
    std::fs::read_dir(path)
        .unwrap()
        .flatten()
        .map(|entry| newest_mtime(&entry.path()))
        .max()
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// The static agent, built by scripts/build-agent.sh when missing or older than its sources.
fn static_agent() -> PathBuf {
    let root = workspace_root();
    let bin = root.join("target/agent/x86_64-unknown-linux-gnu/release/burstflare-agent");
    let sources = ["agent/src", "agent/Cargo.toml", "Cargo.toml", "Cargo.lock"]
        .iter()
        .map(|p| newest_mtime(&root.join(p)))
        .max()
        .unwrap();
    let fresh =
        std::fs::metadata(&bin).and_then(|m| m.modified()).is_ok_and(|built| built >= sources);
    if !fresh {
        eprintln!("building the static agent: scripts/build-agent.sh");
        let out =
            Command::new(root.join("scripts/build-agent.sh")).current_dir(&root).output().unwrap();
        assert!(
            out.status.success(),
            "scripts/build-agent.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            printed.trim(),
            "target/agent/x86_64-unknown-linux-gnu/release/burstflare-agent"
        );
    }
    assert!(bin.is_file(), "{} missing after the build", bin.display());
    bin
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker").args(args).output().expect("run the docker CLI")
}

fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Removes the container however the test ends.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.0]);
    }
}

#[test]
fn static_agent_is_pid_1_of_a_session_container() {
    let agent = static_agent();
    let mount = format!("{}:/opt/burstflare/agent:ro", agent.display());
    let id = docker_ok(&[
        "run",
        "-d",
        "--rm",
        "-v",
        &mount,
        "-p",
        "127.0.0.1::7070",
        "--entrypoint",
        "/opt/burstflare/agent",
        IMAGE,
        "supervise",
        "--",
        "sleep",
        "infinity",
    ]);
    let container = Container(id);

    // "127.0.0.1:49153"
    let published = docker_ok(&["port", &container.0, "7070/tcp"]);
    let port: u16 = published
        .lines()
        .find_map(|line| line.strip_prefix("127.0.0.1:"))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected `docker port` output {published:?}"));

    wait_for("GET /ready through the published port", Duration::from_secs(20), || {
        request(port, "GET", "/ready").is_ok_and(|reply| reply.status == 200)
    });
    let ready = get(port, "/ready").body;
    assert_eq!(ready["version"], burstflare_agent::VERSION);
    assert_eq!(ready["command"]["running"], true, "{ready}");
    let command_pid = ready["command"]["pid"].as_u64().unwrap();

    // PID 1 is the agent, and the command is its child.
    let pid1 = docker_ok(&["exec", &container.0, "cat", "/proc/1/cmdline"]);
    assert!(pid1.starts_with("/opt/burstflare/agent\0supervise\0"), "PID 1 is {pid1:?}");
    let command =
        docker_ok(&["exec", &container.0, "cat", &format!("/proc/{command_pid}/cmdline")]);
    assert_eq!(command, "sleep\0infinity\0");

    // An orphan made inside the container is re-parented to PID 1, which reaps it.
    docker_ok(&["exec", &container.0, "sh", "-c", "sleep 0.3 & exit 0"]);
    wait_for("the orphan to be reaped", Duration::from_secs(5), || {
        let processes = docker_ok(&["exec", &container.0, "ps", "-eo", "stat=,args="]);
        let zombies = processes.lines().any(|line| line.trim_start().starts_with('Z'));
        !zombies && !processes.contains("sleep 0.3")
    });

    assert_eq!(request(port, "POST", "/activity").unwrap().status, 204);
    assert!(get(port, "/activity").body["last_active_at"].as_u64().is_some());

    // The agent forwards SIGTERM to `sleep infinity` and exits: no SIGKILL after the 5 s timeout.
    let stopping = Instant::now();
    docker_ok(&["stop", "-t", "5", &container.0]);
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(5), "docker stop took {took:?}: SIGTERM was not handled");
}
