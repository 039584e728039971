//! Connecting to sessions against the real thing: OpenSSH's `ssh`, `scp` and `sftp` through
//! `flare ssh --stdio` as ProxyCommand, the API's WebSocket proxy, the node tunnel and the agent's
//! SSH server inside a real container; and every way access is refused or cut.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::sessions::{Stack, stack};

fn flare_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_burstflare")).with_file_name("flare");
    assert!(bin.exists(), "{} is missing: cargo build -p burstflare-cli", bin.display());
    bin
}

/// A person with their own flare configuration (keys, known_hosts) and HOME.
struct Person {
    token: String,
    home: tempfile::TempDir,
}

impl Person {
    fn config_dir(&self) -> PathBuf {
        self.home.path().join("flare")
    }

    fn env(&self, stack: &Stack, cmd: &mut tokio::process::Command) {
        cmd.env("FLARE_CONFIG_DIR", self.config_dir())
            .env("FLARE_TOKEN", &self.token)
            .env("FLARE_SERVER", &stack.app.base)
            .env("FLARE_WORKSPACE", &stack.ws)
            .env("HOME", self.home.path())
            .kill_on_drop(true);
    }

    fn flare(&self, stack: &Stack, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(flare_bin());
        self.env(stack, &mut cmd);
        cmd.args(args).stdin(Stdio::null());
        cmd
    }

    /// `program` (ssh, scp, sftp) with the config `flare ssh-config` wrote into this HOME.
    fn openssh(&self, stack: &Stack, program: &str) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(program);
        self.env(stack, &mut cmd);
        // OpenSSH finds ~/.ssh/config through the passwd entry, not $HOME: point it there.
        cmd.arg("-F").arg(self.home.path().join(".ssh/config")).arg("-o").arg("BatchMode=yes");
        cmd
    }
}

async fn run(mut cmd: tokio::process::Command) -> (i32, String, String) {
    let out = tokio::time::timeout(Duration::from_secs(180), cmd.output())
        .await
        .expect("command timed out")
        .expect("command runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn sha256(path: &Path) -> String {
    let out = tokio::process::Command::new("sha256sum").arg(path).output().await.unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A WebSocket upgrade request for `path` on the API with `headers`.
fn ws_request(
    stack: &Stack,
    path: &str,
    headers: &[(&str, &str)],
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let url = stack.client.socket_url(path).unwrap();
    let mut req = url.as_str().into_client_request().unwrap();
    for (k, v) in headers {
        let name =
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap();
        req.headers_mut().insert(name, HeaderValue::from_str(v).unwrap());
    }
    req
}

/// The HTTP status a refused upgrade answered with (panics when it was accepted).
async fn refused(req: tokio_tungstenite::tungstenite::handshake::client::Request) -> u16 {
    match tokio_tungstenite::connect_async(req).await {
        Ok(_) => panic!("the upgrade was accepted"),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
        Err(e) => panic!("unexpected error: {e}"),
    }
}

/// Waits until an open WebSocket ends; panics after `within`. Returns the close frame's reason,
/// if one came.
async fn cut_within<S>(ws: &mut S, within: Duration, what: &str) -> Option<String>
where
    S: futures::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin,
{
    use tokio_tungstenite::tungstenite::Message;
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Err(_) => panic!("{what}: the connection was not cut within {within:?}"),
            Ok(None | Some(Err(_))) => return None,
            Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| f.reason.to_string()),
            Ok(Some(Ok(_))) => {}
        }
    }
}

async fn audit_details(stack: &Stack, action: &str) -> Vec<serde_json::Value> {
    let rows = sqlx::query_scalar::<_, String>(
        "SELECT detail_json FROM audit_log WHERE action = $1 ORDER BY at",
    )
    .bind(action)
    .fetch_all(stack.store().pool())
    .await
    .unwrap();
    rows.iter().map(|d| serde_json::from_str(d).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flare_ssh_scp_sftp_and_port_forward_reach_a_real_session() {
    let stack = stack().await;
    stack.template("conn").await;
    let s = stack.create("conn", "box").await.unwrap();
    assert_eq!(s.state, "running", "{s:?}");
    let me = Person { token: stack.token.clone(), home: tempfile::tempdir().unwrap() };

    // A command: its output, and its exit status as ssh's. It runs as the template's user.
    let (code, out, err) =
        run(me.flare(&stack, &["ssh", "box", "--", "echo hello-$(id -un); exit 3"])).await;
    assert_eq!(code, 3, "stdout {out}\nstderr {err}");
    assert_eq!(out.trim(), "hello-dev", "stderr {err}");
    // flare made a key, registered it, and pinned the session's host key.
    let keys = stack.client.clone().with_token(me.token.clone()).ssh_keys().await.unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let host = stack.client.session_host_key(&stack.ws, "box").await.unwrap();
    let known = std::fs::read_to_string(me.config_dir().join("ssh/known_hosts")).unwrap();
    assert!(known.contains(&host.known_hosts), "{known}\nwant {}", host.known_hosts);

    // ssh-config: idempotent, and plain OpenSSH then works with every option.
    let (code, _, err) = run(me.flare(&stack, &["ssh-config"])).await;
    assert_eq!(code, 0, "{err}");
    let config = std::fs::read(me.home.path().join(".ssh/config")).unwrap();
    let (code, _, err) = run(me.flare(&stack, &["ssh-config"])).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(me.home.path().join(".ssh/config")).unwrap(), config);
    let alias = sdk::ssh_host_alias("box", &stack.ws);
    let mut ssh = me.openssh(&stack, "ssh");
    ssh.args(["-o", "SetEnv=FOO=bar", &alias, "cat /etc/burstflare-template; echo $FOO"]);
    let (code, out, err) = run(ssh).await;
    assert_eq!((code, out.as_str()), (0, "devbox\nbar\n"), "{err}");

    // An interactive PTY driven by a script.
    let mut ssh = me.openssh(&stack, "ssh");
    ssh.args(["-tt", &alias]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = ssh.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"tty; echo pty-$((6*7)); exit 4\n").await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{text}");
    assert!(text.contains("/dev/pts/") && text.contains("pty-42"), "{text}");

    // scp both ways of 50 MB, and sftp.
    let work = tempfile::tempdir().unwrap();
    let up = work.path().join("up.bin");
    let mut data = vec![0u8; 50 * 1024 * 1024];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut data);
    std::fs::write(&up, &data).unwrap();
    let mut scp = me.openssh(&stack, "scp");
    scp.arg(&up).arg(format!("{alias}:big.bin"));
    let (code, _, err) = run(scp).await;
    assert_eq!(code, 0, "scp up: {err}");
    let down = work.path().join("down.bin");
    let mut scp = me.openssh(&stack, "scp");
    scp.arg(format!("{alias}:big.bin")).arg(&down);
    let (code, _, err) = run(scp).await;
    assert_eq!(code, 0, "scp down: {err}");
    assert_eq!(sha256(&up).await, sha256(&down).await);
    let batch = work.path().join("batch");
    std::fs::write(
        &batch,
        format!(
            "mkdir d\nput {} d/x.bin\nrename d/x.bin d/y.bin\nchmod 600 d/y.bin\nls -l d\nget d/y.bin {}\nrm d/y.bin\nrmdir d\n",
            up.display(),
            work.path().join("sftp.bin").display()
        ),
    )
    .unwrap();
    let mut sftp = me.openssh(&stack, "sftp");
    sftp.arg("-b").arg(&batch).arg(&alias);
    let (code, out, err) = run(sftp).await;
    assert_eq!(code, 0, "sftp: {out}\n{err}");
    assert!(out.contains("y.bin"), "{out}");
    assert_eq!(sha256(&work.path().join("sftp.bin")).await, sha256(&up).await);

    // ssh -L through `flare port-forward`: the agent's own HTTP port inside the container.
    let local = free_port();
    let mut fwd = me.flare(&stack, &["port-forward", "box", &format!("{local}:7070")]);
    fwd.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut fwd = fwd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        match reqwest::get(format!("http://127.0.0.1:{local}/ready")).await {
            Ok(r) => break r.text().await.unwrap(),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(300)).await
            }
            Err(e) => panic!("port-forward never answered: {e}"),
        }
    };
    assert!(body.contains("\"ready\":true"), "{body}");
    fwd.kill().await.unwrap();

    // Every connection was audited, opened and closed, with its bytes.
    let opened = audit_details(&stack, "session.connect.open").await;
    let closed = audit_details(&stack, "session.connect.close").await;
    assert!(opened.len() >= 6 && opened.iter().all(|d| d["kind"] == "ssh"), "{opened:?}");
    let biggest = closed.iter().map(|d| d["bytes_in"].as_u64().unwrap()).max().unwrap();
    assert!(biggest > 50 * 1024 * 1024, "the scp upload's bytes are counted: {closed:?}");
    assert!(closed.iter().all(|d| d["duration_ms"].is_u64()), "{closed:?}");
    // No secret reaches the audit log.
    let all = sqlx::query_scalar::<_, String>("SELECT detail_json FROM audit_log")
        .fetch_all(stack.store().pool())
        .await
        .unwrap()
        .join("\n");
    assert!(!all.contains(sdk::RUNTIME_TOKEN_PREFIX) && !all.contains("bfag_"), "{all}");

    // The host key survives a restart (new container), and the pin still holds.
    stack.client.session_op(&stack.ws, "box", "restart", true).await.unwrap();
    assert_eq!(stack.client.session_host_key(&stack.ws, "box").await.unwrap(), host);
    let mut ssh = me.openssh(&stack, "ssh");
    ssh.arg(&alias).arg("true");
    let (code, _, err) = run(ssh).await;
    assert_eq!(code, 0, "after restart: {err}");

    // Wake-aware: connecting to a sleeping session starts it.
    stack.client.session_op(&stack.ws, "box", "sleep", true).await.unwrap();
    let (code, out, err) = run(me.flare(&stack, &["ssh", "box", "--", "echo awake"])).await;
    assert_eq!((code, out.trim()), (0, "awake"), "{err}");
    assert_eq!(stack.client.session(&stack.ws, "box").await.unwrap().state, "running");

    // `ssh-config --remove` takes back exactly what it added.
    let (code, _, err) = run(me.flare(&stack, &["ssh-config", "--remove"])).await;
    assert_eq!(code, 0, "{err}");
    let left = std::fs::read_to_string(me.home.path().join(".ssh/config")).unwrap_or_default();
    assert!(!left.contains("burstflare"), "{left}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn access_is_refused_without_the_right_credentials_and_cut_when_it_goes() {
    use domain::ids::{DisplayName, Email, Role};
    let stack = stack().await;
    stack.template("deny").await;
    let store = stack.store();
    let ws = store
        .workspace_by_slug(&domain::ids::Slug::parse(&stack.ws).unwrap())
        .await
        .unwrap()
        .unwrap();
    // Two sessions run at once here: lift the free plan's limit for this workspace.
    sqlx::query(
        "INSERT INTO quotas (workspace_id, plan_id, overrides_json, updated_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(ws.id.as_str())
    .bind(domain::store::FREE_PLAN_ID)
    .bind(r#"{"max_running_sessions":null,"max_sessions":null}"#)
    .bind(domain::store::now_ms())
    .execute(store.pool())
    .await
    .unwrap();

    // Bob, a member of the workspace with an API token and his own session.
    let (bob, _) = store
        .create_user_with_personal_workspace(
            &Email::parse("bob@example.com").unwrap(),
            &DisplayName::parse("Bob").unwrap(),
        )
        .await
        .unwrap();
    let (_, invite_hash) = domain::secrets::generate(domain::secrets::SecretKind::Invite);
    let now = domain::store::now_ms();
    store
        .create_invite(&ws.id, &bob.email, Role::Member, &invite_hash, None, now, now + 600_000)
        .await
        .unwrap();
    store.accept_invite(&invite_hash, &bob.id, now).await.unwrap();
    let (bob_token, hash) = domain::secrets::generate(domain::secrets::SecretKind::ApiToken);
    store.create_api_token(&bob.id, "test", &hash, now, None).await.unwrap();
    let bob_client = stack.client.clone().with_token(bob_token.clone());
    let body = sdk::CreateSession {
        template: "deny".into(),
        version: None,
        name: Some("bobs".into()),
        idempotency_key: None,
    };
    let bobs = bob_client.create_session(&stack.ws, &body, true).await.unwrap();
    assert_eq!(bobs.state, "running");
    let mine = stack.create("deny", "mine").await.unwrap();
    assert_eq!(mine.state, "running");
    // Register a key for each so that refusals are about the token, not missing keys.
    let bob_home = tempfile::tempdir().unwrap();
    let bob_key = bob_home.path().join("id");
    let keygen = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "bob", "-f"])
        .arg(&bob_key)
        .status()
        .unwrap();
    assert!(keygen.success());
    let bob_pub = std::fs::read_to_string(bob_key.with_extension("pub")).unwrap();
    bob_client
        .add_ssh_key(&sdk::AddSshKey { name: "bob".into(), public_key: bob_pub })
        .await
        .unwrap();
    let me = Person { token: stack.token.clone(), home: tempfile::tempdir().unwrap() };
    let (code, _, err) = run(me.flare(&stack, &["ssh", "mine", "--", "true"])).await;
    assert_eq!(code, 0, "{err}");

    let ssh_path = |id: &str| sdk::client::session_path(&stack.ws, id, "/ssh");

    // No token, an API token instead of a runtime token, a made-up one: 401.
    assert_eq!(refused(ws_request(&stack, &ssh_path("mine"), &[])).await, 401);
    let api = format!("Bearer {}", stack.token);
    assert_eq!(
        refused(ws_request(&stack, &ssh_path("mine"), &[("authorization", &api)])).await,
        401
    );
    let fake = "Bearer bfrt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    assert_eq!(
        refused(ws_request(&stack, &ssh_path("mine"), &[("authorization", fake)])).await,
        401
    );

    // A token for another session opens nothing else: 404.
    let t = stack.client.runtime_token(&stack.ws, "mine").await.unwrap();
    let bearer = format!("Bearer {}", t.token);
    assert_eq!(
        refused(ws_request(&stack, &ssh_path("bobs"), &[("authorization", &bearer)])).await,
        404
    );
    // Someone else's session: no token at all.
    let err = stack.client.runtime_token(&stack.ws, "bobs").await.unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");

    // An expired token: 401.
    sqlx::query("UPDATE runtime_tokens SET expires_at = $1 WHERE id = $2")
        .bind(domain::store::now_ms() - 1)
        .bind(&t.id)
        .execute(store.pool())
        .await
        .unwrap();
    assert_eq!(
        refused(ws_request(&stack, &ssh_path("mine"), &[("authorization", &bearer)])).await,
        401
    );
    let renew = stack.client.renew_runtime_token(&stack.ws, "mine", &t.id).await.unwrap_err();
    assert_eq!(renew.status(), Some(404), "an expired token cannot be renewed");

    // A live connection is cut within seconds when its token is revoked.
    let t = stack.client.runtime_token(&stack.ws, "mine").await.unwrap();
    let bearer = format!("Bearer {}", t.token);
    let (mut live, _) = tokio_tungstenite::connect_async(ws_request(
        &stack,
        &ssh_path("mine"),
        &[("authorization", &bearer)],
    ))
    .await
    .unwrap();
    futures::SinkExt::send(
        &mut live,
        tokio_tungstenite::tungstenite::Message::Binary(
            b"SSH-2.0-BurstFlareTest\r\n".to_vec().into(),
        ),
    )
    .await
    .unwrap();
    let banner = tokio::time::timeout(Duration::from_secs(10), live.next()).await.unwrap();
    let banner = banner.unwrap().unwrap().into_data();
    assert!(banner.starts_with(b"SSH-2.0-"), "{banner:?}");
    stack.client.revoke_runtime_token(&stack.ws, "mine", &t.id).await.unwrap();
    let reason = cut_within(&mut live, Duration::from_secs(5), "revoked token").await;
    assert_eq!(reason.as_deref(), Some("runtime token revoked"), "the client is told why");

    // The key of another user is refused by the agent, even with a good token.
    let mut ssh = tokio::process::Command::new("ssh");
    me.env(&stack, &mut ssh);
    let alias = sdk::ssh_host_alias("mine", &stack.ws);
    ssh.arg("-o")
        .arg(format!("ProxyCommand={} ssh --stdio %h", flare_bin().display()))
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", me.config_dir().join("ssh/known_hosts").display()))
        .arg("-i")
        .arg(&bob_key)
        .arg(&alias)
        .arg("true");
    let (code, _, err) = run(ssh).await;
    assert_eq!(code, 255, "{err}");
    assert!(err.contains("Permission denied"), "{err}");

    // Cross-site WebSocket hijacking: the terminal refuses a foreign Origin.
    let term = sdk::client::session_path(&stack.ws, "mine", "/terminal");
    let own = format!("Bearer {}", stack.token);
    let evil = [("authorization", own.as_str()), ("origin", "http://evil.example")];
    assert_eq!(refused(ws_request(&stack, &term, &evil)).await, 403);

    // Bob, connected, is cut when downgraded to viewer, and a viewer gets no token.
    let bob_live = |t: sdk::RuntimeToken| {
        let req = ws_request(
            &stack,
            &ssh_path("bobs"),
            &[("authorization", &format!("Bearer {}", t.token))],
        );
        async move { tokio_tungstenite::connect_async(req).await.unwrap().0 }
    };
    let mut live = bob_live(bob_client.runtime_token(&stack.ws, "bobs").await.unwrap()).await;
    store.set_member_role(&ws.id, &bob.id, Role::Viewer).await.unwrap();
    cut_within(&mut live, Duration::from_secs(5), "downgraded to viewer").await;
    let err = bob_client.runtime_token(&stack.ws, "bobs").await.unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");

    // Back to member, connected again, then removed from the workspace: cut.
    store.set_member_role(&ws.id, &bob.id, Role::Member).await.unwrap();
    let mut live = bob_live(bob_client.runtime_token(&stack.ws, "bobs").await.unwrap()).await;
    store.remove_member(&ws.id, &bob.id).await.unwrap();
    cut_within(&mut live, Duration::from_secs(5), "removed from the workspace").await;

    // The close is audited right after the cut, with its reason.
    let want = [
        "runtime token revoked",
        "role no longer allows using sessions",
        "no longer a member of the workspace",
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let closed = audit_details(&stack, "session.connect.close").await;
        let reasons: Vec<&str> = closed.iter().filter_map(|d| d["reason"].as_str()).collect();
        if want.iter().all(|w| reasons.contains(w)) {
            break;
        }
        assert!(Instant::now() < deadline, "{want:?} not all in {reasons:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
