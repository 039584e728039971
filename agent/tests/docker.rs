//! The static agent (scripts/build-agent.sh) as PID 1 of a real container of the local base image,
//! mounted read-only the way session containers get it. Needs a Docker daemon and the image
//! `burstflare/base:latest` (`make base-image`); builds the static agent when it is missing or older
//! than its sources.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "connect/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
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

/// The host port of the container's 7070, once `/ready` answers there.
fn published_port(container: &str) -> u16 {
    // "127.0.0.1:49153"
    let published = docker_ok(&["port", container, "7070/tcp"]);
    let port: u16 = published
        .lines()
        .find_map(|line| line.strip_prefix("127.0.0.1:"))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected `docker port` output {published:?}"));
    wait_for("GET /ready through the published port", Duration::from_secs(20), || {
        request(port, "GET", "/ready").is_ok_and(|reply| reply.status == 200)
    });
    port
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

    let port = published_port(&container.0);
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

#[test]
fn static_agent_serves_ssh_and_terminals_as_the_session_user() {
    use support::{Keys, Session, TOKEN, random_bytes, stdout};

    let agent = static_agent();
    let keys = Keys::new();
    let mount = format!("{}:/opt/burstflare/agent:ro", agent.display());
    let token = format!("BURSTFLARE_AGENT_TOKEN={TOKEN}");
    let host_key = format!("BURSTFLARE_HOST_KEY={}", keys.host_private);
    let id = docker_ok(&[
        "run",
        "-d",
        "--rm",
        "-v",
        &mount,
        "-p",
        "127.0.0.1::7070",
        "-e",
        &token,
        "-e",
        &host_key,
        "-e",
        "BURSTFLARE_SESSION_USER=dev",
        "--entrypoint",
        "/opt/burstflare/agent",
        IMAGE,
        "supervise",
        "--",
        "sleep",
        "infinity",
    ]);
    let container = Container(id);
    let port = published_port(&container.0);
    let session = Session::attach(keys, None, port);

    // The image's user `dev`, in its home; the agent's secrets are neither in the environment
    // nor readable from PID 1.
    let out = session.exec(
        "id -un; pwd; echo $HOME; env | grep -c BURSTFLARE_; \
         cat /proc/1/environ >/dev/null 2>&1 && echo readable || echo protected",
    );
    assert_eq!(stdout(&out), "dev\n/home/dev\n/home/dev\n0\nprotected\n", "{out:?}");

    // scp (SFTP mode) writes as dev, with the umask.
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(1 << 20, 3);
    let local = dir.path().join("up.bin");
    std::fs::write(&local, &data).unwrap();
    let out = session.scp(&[local.to_str().unwrap(), "tester@127.0.0.1:up.bin"]);
    assert!(out.status.success(), "{out:?}");
    let back = dir.path().join("back.bin");
    let out = session.scp(&["tester@127.0.0.1:/home/dev/up.bin", back.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert!(std::fs::read(&back).unwrap() == data);
    assert_eq!(
        docker_ok(&["exec", &container.0, "stat", "-c", "%U %a", "/home/dev/up.bin"]),
        "dev 644"
    );

    // ssh -L to the agent's own port inside the container: direct-tcpip from the static binary,
    // by the container's host name (in its /etc/hosts: the static glibc resolver).
    let hostname = docker_ok(&["exec", &container.0, "hostname"]);
    let local = support::port();
    let mut forward = session.ssh(&["-N", "-L", &format!("127.0.0.1:{local}:{hostname}:7070")]);
    forward.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let _forward = support::Background(forward.spawn().unwrap());
    support::wait_listening(local);
    let ready = get(local, "/ready");
    assert_eq!(ready.body["ready"], true, "{:?}", ready.body);

    // The browser terminal: a login shell as dev on a terminal dev owns.
    let shown = session.block_on(async {
        use futures::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let headers = support::BridgeHeaders {
            token: Some(TOKEN.to_string()),
            authorized_keys: String::new(),
        };
        let mut ws = support::connect(port, "/pty?cols=80&rows=24", &headers).await.unwrap();
        let command = "echo \"u=$(id -un) t=$(stat -c %U $(tty))\"\r";
        ws.send(Message::binary(command.as_bytes().to_vec())).await.unwrap();
        let mut shown = String::new();
        while !shown.contains("u=dev t=dev") {
            let next = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
            match next.unwrap_or_else(|_| panic!("no output; shown:\n{shown}")) {
                Some(Ok(Message::Binary(data))) => shown.push_str(&String::from_utf8_lossy(&data)),
                Some(Ok(_)) => {}
                other => panic!("{other:?}; shown:\n{shown}"),
            }
        }
        shown
    });
    assert!(shown.contains("u=dev t=dev"));

    // Nothing left behind: no zombies in the container.
    wait_for("no zombies", Duration::from_secs(5), || {
        let processes = docker_ok(&["exec", &container.0, "ps", "-eo", "stat=,args="]);
        !processes.lines().any(|line| line.trim_start().starts_with('Z'))
    });
    let stopping = Instant::now();
    docker_ok(&["stop", "-t", "5", &container.0]);
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "docker stop took {:?}",
        stopping.elapsed()
    );
}

#[test]
fn static_agent_packs_and_restores_persisted_paths_in_a_container() {
    let agent = static_agent();
    let mount = format!("{}:/opt/burstflare/agent:ro", agent.display());
    let token = format!("BURSTFLARE_AGENT_TOKEN={}", support::TOKEN);
    // The node's hardening: no CAP_SYS_ADMIN, no new privileges.
    let id = docker_ok(&[
        "run",
        "-d",
        "--rm",
        "-v",
        &mount,
        "-p",
        "127.0.0.1::7070",
        "-e",
        &token,
        "-e",
        "BURSTFLARE_SESSION_USER=dev",
        "--cap-drop",
        "NET_RAW",
        "--cap-drop",
        "SYS_ADMIN",
        "--cap-drop",
        "SYS_MODULE",
        "--security-opt",
        "no-new-privileges",
        "--entrypoint",
        "/opt/burstflare/agent",
        IMAGE,
        "supervise",
        "--",
        "sleep",
        "infinity",
    ]);
    let container = Container(id);
    let port = published_port(&container.0);
    let exec_dev =
        |script: &str| docker_ok(&["exec", "-u", "dev", &container.0, "sh", "-c", script]);

    // Files of dev in the container's upper layer, next to the image's dotfiles (lower layer).
    exec_dev(
        "cd /home/dev && mkdir -p proj/src .cache && echo hi > proj/src/a.txt && \
         chmod 600 proj/src/a.txt && ln -s proj/src link && ln proj/src/a.txt hard && \
         head -c 3000000 /dev/urandom > proj/blob && touch -d @1600000000 proj/blob && \
         touch -d @1500000000 . proj",
    );
    let listing = || {
        docker_ok(&[
            "exec",
            &container.0,
            "sh",
            "-c",
            "cd /home/dev && find . -exec stat -c '%N|%F|%a|%u:%g|%Y|%h' {} + | sort && \
             find . -type f -exec sha256sum {} + | sort",
        ])
    };
    let before = listing();
    let auth = format!("Bearer {}", support::TOKEN);
    let headers = [("Authorization", auth.as_str())];
    let body = br#"{"paths":["/home/dev","/srv/absent"],"max_bytes":100000000}"#;
    let pack = || {
        let answer = common::http(port, "POST", "/snapshot/pack", &headers, body);
        assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
        assert!(answer.complete);
        answer.body
    };
    let tar = pack();
    assert!(tar.len() > 3_000_000);
    assert!(pack() == tar, "two packs differ");

    exec_dev("cd /home/dev && rm -rf proj .bashrc && echo new > new && chmod 700 .");
    let paths = ("X-BurstFlare-Paths", r#"["/home/dev","/srv/absent"]"#);
    let answer = common::http(port, "POST", "/snapshot/restore", &[headers[0], paths], &tar);
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    assert_eq!(answer.json()["absent"], serde_json::json!(["/srv/absent"]));
    assert_eq!(listing(), before);
    assert!(pack() == tar, "the restored tree packs differently");
    assert_eq!(docker_ok(&["exec", &container.0, "ls", "-A", "/home"]), "dev", "no leftovers");
    exec_dev("touch /home/dev/ok && rm /home/dev/ok");
    // /home/dev is a directory of the image: overlayfs cannot rename it, its contents are swapped.
    let logs = docker(&["logs", &container.0]);
    let logs = String::from_utf8_lossy(&logs.stderr);
    assert!(logs.contains("/home/dev cannot be renamed"), "{logs}");
}
