//! `flare ssh --stdio`, `flare ssh`, `flare ssh-config` and `flare ssh-key` against a small fake
//! of the API (plain HTTP/1.1 answers and an echoing SSH WebSocket), with the real `flare`
//! binary: waking, host-key pinning, the bearer header, revocation, the close reason, SIGHUP,
//! the ProxyCommand `flare ssh` hands to ssh, and the ~/.ssh/config include.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::result_large_err)]

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use futures::{SinkExt as _, StreamExt as _};
use sha2::Digest as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

const BIN: &str = env!("CARGO_BIN_EXE_flare");
const HOST_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVKID1W6hUna2vmy/gCjUQZPM76sp5beG2f7d9BczyR";
const WAIT: Duration = Duration::from_secs(20);

#[derive(Default)]
struct State {
    session_state: String,
    /// Requests as `METHOD PATH`.
    log: Vec<String>,
    /// WebSocket upgrades: (request URI, Authorization header).
    upgrades: Vec<(String, Option<String>)>,
    keys: Vec<serde_json::Value>,
    /// Close the SSH socket with this code and reason after the first message.
    close_with: Option<(u16, String)>,
    /// The session's host key and SSH user as the API publishes them.
    host_key: String,
    ssh_user: String,
}

#[derive(Clone)]
struct Fake {
    base: String,
    state: Arc<Mutex<State>>,
}

impl Fake {
    async fn start(session_state: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            session_state: session_state.into(),
            host_key: HOST_KEY.into(),
            ssh_user: "coder".into(),
            ..State::default()
        }));
        let fake = Self { base, state };
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

    fn log(&self) -> Vec<String> {
        self.state.lock().unwrap().log.clone()
    }

    async fn serve(&self, mut conn: TcpStream) {
        let mut buf = vec![0u8; 16 * 1024];
        // Peek until the whole head is there: an upgrade is handed to tungstenite untouched.
        let head = loop {
            let n = conn.peek(&mut buf).await.unwrap();
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if text.contains("\r\n\r\n") || n == 0 {
                break text;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        if head.to_ascii_lowercase().contains("upgrade: websocket") {
            return self.ssh_socket(conn).await;
        }
        let head_len = head.find("\r\n\r\n").unwrap() + 4;
        let mut head_bytes = vec![0u8; head_len];
        conn.read_exact(&mut head_bytes).await.unwrap();
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
        let mut words = head.split_whitespace();
        let (method, path) = (words.next().unwrap().to_string(), words.next().unwrap().to_string());
        assert!(
            head.contains("authorization: Bearer bf_test")
                || head.contains("Authorization: Bearer bf_test"),
            "every API call is signed in: {head}"
        );
        let (status, answer) = self.answer(&method, &path, &body);
        let text = answer.map(|a| a.to_string()).unwrap_or_default();
        let response = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
            text.len()
        );
        conn.write_all(response.as_bytes()).await.unwrap();
        let _ = conn.shutdown().await;
    }

    fn answer(&self, method: &str, path: &str, body: &[u8]) -> (u16, Option<serde_json::Value>) {
        let mut st = self.state.lock().unwrap();
        st.log.push(format!("{method} {path}"));
        let sessions = "/api/v1/workspaces/acme/sessions/";
        let session = |state: &str| {
            serde_json::json!({
                "id": "sid-1", "name": "dev", "state": state, "template": "go", "version": "1",
                "owner": {"id": "u1", "display_name": "Alice"}, "node": null,
                "workflow_id": "session-sid-1", "created_at": 0, "updated_at": 0,
                "started_at": null, "stopped_at": null, "last_active_at": null, "error": null
            })
        };
        match (method, path) {
            ("GET", p) if p == format!("{sessions}dev") || p == format!("{sessions}sid-1") => {
                let now = st.session_state.clone();
                if now == "starting" {
                    st.session_state = "running".into();
                }
                (200, Some(session(&now)))
            }
            ("POST", p) if p.starts_with(sessions) && p.ends_with("/start") => {
                st.session_state = "starting".into();
                (200, Some(session("starting")))
            }
            ("POST", p) if p == format!("{sessions}sid-1/runtime-token") => (
                200,
                Some(serde_json::json!({
                    "id": "tok-1", "token": "bfrt_secret", "session_id": "sid-1",
                    "expires_at": 4_102_444_800_000i64, "ttl_secs": 600,
                    "host_key": {
                        "host_alias": "dev.acme.burstflare", "algorithm": "ssh-ed25519",
                        "public_key": st.host_key, "fingerprint": "SHA256:x",
                        "known_hosts": format!("dev.acme.burstflare {}", st.host_key)
                    },
                    "ssh_user": st.ssh_user
                })),
            ),
            ("DELETE", p) if p == format!("{sessions}sid-1/runtime-token/tok-1") => (204, None),
            ("GET", "/api/v1/me/ssh-keys") => (200, Some(serde_json::Value::from(st.keys.clone()))),
            ("POST", "/api/v1/me/ssh-keys") => {
                let req: serde_json::Value = serde_json::from_slice(body).unwrap();
                let public_key = req["public_key"].as_str().unwrap().to_string();
                let blob = public_key.split_whitespace().nth(1).unwrap();
                let digest = sha2::Sha256::digest(
                    base64::engine::general_purpose::STANDARD.decode(blob).unwrap(),
                );
                let key = serde_json::json!({
                    "id": format!("k{}", st.keys.len() + 1), "name": req["name"],
                    "algorithm": "ssh-ed25519",
                    "fingerprint": format!("SHA256:{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)),
                    "public_key": public_key, "created_at": 0
                });
                st.keys.push(key.clone());
                (201, Some(key))
            }
            ("DELETE", p) if p.starts_with("/api/v1/me/ssh-keys/") => {
                let id = p.rsplit('/').next().unwrap().to_string();
                st.keys.retain(|k| k["id"] != id.as_str());
                (204, None)
            }
            _ => (404, Some(serde_json::json!({"code": "not_found", "message": "not found"}))),
        }
    }

    /// The SSH WebSocket: echoes binary messages upper-cased, or closes as told.
    async fn ssh_socket(&self, conn: TcpStream) {
        let seen = Arc::new(Mutex::new(None));
        let s = seen.clone();
        let mut ws = tokio_tungstenite::accept_hdr_async(
            conn,
            move |req: &tokio_tungstenite::tungstenite::handshake::server::Request, resp| {
                let auth =
                    req.headers().get("authorization").map(|v| v.to_str().unwrap().to_string());
                *s.lock().unwrap() = Some((req.uri().to_string(), auth));
                Ok(resp)
            },
        )
        .await
        .unwrap();
        let close_with = {
            let mut st = self.state.lock().unwrap();
            let upgrade = seen.lock().unwrap().take().unwrap();
            st.upgrades.push(upgrade);
            st.close_with.clone()
        };
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Binary(b) = m {
                if let Some((code, reason)) = &close_with {
                    let frame = CloseFrame { code: (*code).into(), reason: reason.as_str().into() };
                    let _ = ws.send(Message::Close(Some(frame))).await;
                    continue;
                }
                let mut up = b.to_vec();
                up.make_ascii_uppercase();
                if ws.send(Message::Binary(up.into())).await.is_err() {
                    break;
                }
            }
        }
    }
}

/// A home and a configuration directory of their own.
struct Dirs {
    _tmp: tempfile::TempDir,
    home: PathBuf,
    config: PathBuf,
}

fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let config = tmp.path().join("config");
    Dirs { home, config, _tmp: tmp }
}

fn flare(d: &Dirs, fake: &Fake, args: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(BIN);
    c.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", &d.home)
        .env("FLARE_CONFIG_DIR", &d.config)
        .env("FLARE_SERVER", &fake.base)
        .env("FLARE_TOKEN", "bf_test")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

async fn run(mut c: tokio::process::Command) -> std::process::Output {
    tokio::time::timeout(WAIT, c.output()).await.expect("flare finished").unwrap()
}

fn err(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Writes `data` to the child's stdin and reads the echo back from its stdout.
async fn round_trip(child: &mut tokio::process::Child, data: &[u8]) {
    let (stdin, stdout) = (child.stdin.as_mut().unwrap(), child.stdout.as_mut().unwrap());
    let mut got = vec![0u8; data.len()];
    let (written, read) = tokio::time::timeout(WAIT, async {
        tokio::join!(stdin.write_all(data), stdout.read_exact(&mut got))
    })
    .await
    .expect("an answer through the WebSocket");
    written.unwrap();
    read.unwrap();
    assert_eq!(got, data.to_ascii_uppercase());
}

async fn finish(mut child: tokio::process::Child) -> (Option<i32>, String) {
    let status = tokio::time::timeout(WAIT, child.wait()).await.expect("flare exited").unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).await.unwrap();
    (status.code(), stderr)
}

fn spawn_stdio(d: &Dirs, fake: &Fake, target: &[&str]) -> tokio::process::Child {
    let mut args = vec!["ssh", "--stdio"];
    args.extend_from_slice(target);
    let mut c = flare(d, fake, &args);
    c.stdin(Stdio::piped());
    c.spawn().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_wakes_the_session_pins_its_key_and_carries_bytes_until_stdin_ends() {
    let fake = Fake::start("sleeping").await;
    let d = dirs();
    let mut child = spawn_stdio(&d, &fake, &["--workspace", "acme", "dev"]);
    round_trip(&mut child, b"ssh-2.0-openssh_9.2\r\n").await;
    round_trip(&mut child, &[b'x'; 200_000]).await;
    drop(child.stdin.take());
    let (code, stderr) = finish(child).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("flare: session dev is sleeping\n"), "{stderr}");
    assert!(stderr.contains("flare: session dev is running\n"), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");

    let known = std::fs::read_to_string(d.config.join("ssh/known_hosts")).unwrap();
    assert_eq!(known, format!("dev.acme.burstflare {HOST_KEY}\n"));
    let st = fake.state.lock().unwrap();
    assert_eq!(
        st.upgrades,
        [(
            "/api/v1/workspaces/acme/sessions/sid-1/ssh".to_string(),
            Some("Bearer bfrt_secret".to_string())
        )],
        "the runtime token travels in the header only"
    );
    let log = st.log.join("\n");
    assert!(log.contains("POST /api/v1/workspaces/acme/sessions/dev/start"), "{log}");
    assert!(
        log.ends_with("DELETE /api/v1/workspaces/acme/sessions/sid-1/runtime-token/tok-1"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_takes_a_host_alias_and_reports_a_close_by_the_server() {
    let fake = Fake::start("running").await;
    fake.state.lock().unwrap().close_with = Some((1008, "your access was revoked".into()));
    let d = dirs();
    // Another workspace in the environment: the alias decides.
    let mut c = flare(&d, &fake, &["ssh", "--stdio", "dev.acme.burstflare"]);
    c.env("FLARE_WORKSPACE", "other").stdin(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child.stdin.as_mut().unwrap().write_all(b"hello").await.unwrap();
    let (code, stderr) = finish(child).await;
    assert_eq!(code, Some(255), "{stderr}");
    assert_eq!(stderr, "flare: the server closed the connection: your access was revoked\n");
    assert!(fake.log().iter().any(|l| l.starts_with("DELETE") && l.ends_with("tok-1")));
    assert!(!fake.log().iter().any(|l| l.contains("/start")), "a running session is not started");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_exits_quietly_on_the_hangup_ssh_sends_and_revokes_its_token() {
    let fake = Fake::start("running").await;
    let d = dirs();
    let mut child = spawn_stdio(&d, &fake, &["-w", "acme", "dev"]);
    round_trip(&mut child, b"hi").await;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let (code, stderr) = finish(child).await;
    assert_eq!((code, stderr.as_str()), (Some(0), ""));
    assert!(fake.log().last().unwrap().ends_with("/runtime-token/tok-1"), "{:?}", fake.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_for_an_unknown_session_says_so_and_exits_255() {
    let fake = Fake::start("running").await;
    let d = dirs();
    let out = run(flare(&d, &fake, &["ssh", "--stdio", "-w", "acme", "nope"])).await;
    assert_eq!(out.status.code(), Some(255));
    assert!(out.stdout.is_empty());
    assert!(
        err(&out).starts_with("error: there is no session nope in workspace acme\n"),
        "{}",
        err(&out)
    );
}

/// A stand-in for ssh that records its arguments and exits 7.
fn fake_ssh(d: &Dirs) -> (String, PathBuf) {
    use std::os::unix::fs::PermissionsExt as _;
    let bin = d.home.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = bin.join("ssh");
    let args = d.home.join("ssh-args");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > '{}'\n\
             printf '%s' \"$BURSTFLARE_SSH_HANDOFF\" > '{}'\nexit 7\n",
            args.display(),
            d.home.join("ssh-handoff").display(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (format!("{}:/usr/bin:/bin", bin.display()), args)
}

/// Runs a ProxyCommand the way ssh runs it (`sh -c`, nothing of this process's environment but
/// HOME, the API token and, if given, the token `flare ssh` handed down).
fn spawn_proxy_command(d: &Dirs, command: &str, handoff: Option<&str>) -> tokio::process::Child {
    let mut sh = tokio::process::Command::new("/bin/sh");
    sh.env_clear().env("HOME", &d.home).env("FLARE_TOKEN", "bf_test");
    if let Some(h) = handoff {
        sh.env("BURSTFLARE_SSH_HANDOFF", h);
    }
    sh.args(["-c", &format!("exec {command}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    sh.spawn().unwrap()
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flare_ssh_registers_its_key_and_runs_ssh_with_a_proxy_command_that_works() {
    if std::process::Command::new("ssh-keygen").arg("-?").output().is_err() {
        eprintln!("skipped: no ssh-keygen");
        return;
    }
    let fake = Fake::start("running").await;
    let d = dirs();
    let (path, args_file) = fake_ssh(&d);
    let mut c = flare(&d, &fake, &["ssh", "-w", "acme", "dev", "--ssh-arg=-v", "--", "echo", "hi"]);
    c.env("PATH", &path);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(7), "ssh's exit status: {}", err(&out));
    assert!(err(&out).starts_with("registered SSH key flare"), "{}", err(&out));

    let args = std::fs::read_to_string(&args_file).unwrap();
    let args: Vec<&str> = args.lines().collect();
    let ssh_dir = d.config.join("ssh");
    let proxy = format!(
        "ProxyCommand={BIN} --config-dir {} --server {} ssh --stdio --workspace acme dev",
        d.config.display(),
        fake.base
    );
    let identity = format!("IdentityFile={}", ssh_dir.join("id_ed25519").display());
    let known = format!("UserKnownHostsFile={}", ssh_dir.join("known_hosts").display());
    let expected = [
        "-o",
        &proxy,
        "-o",
        &identity,
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "ServerAliveInterval=15",
        "-o",
        "ServerAliveCountMax=3",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        &known,
        "-o",
        "HostKeyAlias=dev.acme.burstflare",
        "-v",
        "--",
        "coder@dev.acme.burstflare",
        "echo",
        "hi",
    ];
    assert_eq!(args, expected);
    assert_eq!(
        std::fs::read_to_string(ssh_dir.join("known_hosts")).unwrap(),
        format!("dev.acme.burstflare {HOST_KEY}\n")
    );
    assert_eq!(fake.state.lock().unwrap().keys.len(), 1);

    // The ProxyCommand, run the way ssh runs it, reaches the same server as the same user.
    let command = proxy.strip_prefix("ProxyCommand=").unwrap();
    let mut child = spawn_proxy_command(&d, command, None);
    round_trip(&mut child, b"through the proxy command").await;
    drop(child.stdin.take());
    let (code, stderr) = finish(child).await;
    assert_eq!(code, Some(0), "{stderr}");
    let log = fake.log();
    assert!(log.contains(&"POST /api/v1/workspaces/acme/sessions/sid-1/runtime-token".to_string()));

    // Run by `flare ssh`, the ProxyCommand connects with the token handed down to it: no API
    // call before the WebSocket, and the token is revoked when the connection ends.
    let handoff = std::fs::read_to_string(d.home.join("ssh-handoff")).unwrap();
    assert!(handoff.contains("bfrt_secret") && handoff.contains("sid-1"), "{handoff}");
    let before = fake.log().len();
    let upgrades = fake.state.lock().unwrap().upgrades.len();
    let mut child = spawn_proxy_command(&d, command, Some(&handoff));
    round_trip(&mut child, b"handed down").await;
    drop(child.stdin.take());
    let (code, stderr) = finish(child).await;
    assert_eq!(code, Some(0), "{stderr}");
    let calls = fake.log().split_off(before);
    assert_eq!(calls, ["DELETE /api/v1/workspaces/acme/sessions/sid-1/runtime-token/tok-1"]);
    let upgrade = fake.state.lock().unwrap().upgrades[upgrades].clone();
    assert_eq!(upgrade.1.as_deref(), Some("Bearer bfrt_secret"));

    // A second run finds the key registered.
    let mut c = flare(&d, &fake, &["ssh", "-w", "acme", "dev"]);
    c.env("PATH", &path);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(7));
    assert!(!err(&out).contains("registered"), "{}", err(&out));
    assert_eq!(fake.state.lock().unwrap().keys.len(), 1);
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_config_writes_the_include_once_and_removes_exactly_it() {
    if std::process::Command::new("ssh-keygen").arg("-?").output().is_err() {
        eprintln!("skipped: no ssh-keygen");
        return;
    }
    let fake = Fake::start("running").await;
    let d = dirs();
    let ssh_config = d.home.join(".ssh/config");
    std::fs::create_dir_all(ssh_config.parent().unwrap()).unwrap();
    let before = "Host work\n  User me";
    std::fs::write(&ssh_config, before).unwrap();

    let out = run(flare(&d, &fake, &["ssh-config"])).await;
    assert!(out.status.success(), "{}", err(&out));
    assert!(err(&out).starts_with("registered SSH key flare"), "{}", err(&out));
    let include = d.home.join(".ssh/burstflare_config");
    let after = std::fs::read_to_string(&ssh_config).unwrap();
    assert_eq!(after, format!("Include {}\n{before}", include.display()));
    let block = std::fs::read_to_string(&include).unwrap();
    assert!(
        block.contains(&format!(
            "  ProxyCommand {BIN} --config-dir {} --server {} ssh --stdio %h\n",
            d.config.display(),
            fake.base
        )),
        "{block}"
    );

    let out = run(flare(&d, &fake, &["ssh-config", "--output", "json"])).await;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "unchanged", "{v}");
    assert_eq!(std::fs::read_to_string(&ssh_config).unwrap(), after);
    assert!(!err(&out).contains("registered"));

    // The keys as the API has them.
    let out = run(flare(&d, &fake, &["ssh-key", "list", "--output", "json"])).await;
    let keys: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 1);
    let name = keys[0]["name"].as_str().unwrap().to_string();
    assert!(name.starts_with("flare"), "{name}");
    let text = String::from_utf8(run(flare(&d, &fake, &["ssh-key", "list"])).await.stdout).unwrap();
    assert!(text.starts_with("ID  NAME") && text.contains(&name), "{text}");
    let out = run(flare(&d, &fake, &["ssh-key", "add"])).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("is already registered"));

    let out = run(flare(&d, &fake, &["ssh-config", "--remove"])).await;
    assert!(out.status.success(), "{}", err(&out));
    assert_eq!(std::fs::read(&ssh_config).unwrap(), before.as_bytes());
    assert!(!include.exists());

    let out = run(flare(&d, &fake, &["ssh-key", "remove", &name])).await;
    assert!(out.status.success(), "{}", err(&out));
    assert!(fake.state.lock().unwrap().keys.is_empty());
    let out = run(flare(&d, &fake, &["ssh-key", "remove", &name])).await;
    assert_eq!(out.status.code(), Some(4), "{}", err(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_key_add_registers_a_given_pub_file_under_a_name() {
    let fake = Fake::start("running").await;
    let d = dirs();
    let key = d.home.join("id.pub");
    std::fs::write(&key, format!("{HOST_KEY} me@laptop\n")).unwrap();
    let out = run(flare(
        &d,
        &fake,
        &["ssh-key", "add", key.to_str().unwrap(), "--name", "laptop", "--output", "json"],
    ))
    .await;
    assert!(out.status.success(), "{}", err(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["name"], "laptop");
    assert_eq!(v["fingerprint"], "SHA256:cNt//NBNzN4ZiJw25wjlHBer0n9Z030fWEDAiaKgUKY");
    assert_eq!(fake.state.lock().unwrap().keys[0]["public_key"], HOST_KEY);
}

// The real OpenSSH client against the real agent (host-key pinning, keys, scp, sftp, -L) is
// exercised end to end in api/tests/it/connect.rs.
