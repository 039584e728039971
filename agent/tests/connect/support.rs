//! The fixture: keys made with ssh-keygen, an agent with its secrets, a TCP -> WebSocket bridge
//! for OpenSSH, and helpers that run OpenSSH with a deadline. Also used by the Docker test.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use futures::{SinkExt, StreamExt};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::common::{Agent, free_port};

pub const TOKEN: &str = "agent-token-for-tests";

/// Runs `command` to completion within `timeout` (killed after it), stdin from `input`.
pub fn run(command: &mut Command, input: &[u8], timeout: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run {command:?}: {err}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let deadline = Instant::now() + timeout;
    let (mut stdout, mut stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{command:?} did not finish within {timeout:?}; stderr: {}",
                String::from_utf8_lossy(&err.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = writer.join();
    Output { status, stdout: out.join().unwrap(), stderr: err.join().unwrap() }
}

/// A background process (ssh -N -L …) killed and reaped on drop.
pub struct Background(pub Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Key pairs made by ssh-keygen in a temporary directory.
pub struct Keys {
    pub dir: TempDir,
    /// The host key, private (OpenSSH text) and public line.
    pub host_private: String,
    pub host_public: String,
    /// The client key that is authorized, and one that is not.
    pub client: PathBuf,
    pub client_public: String,
    pub stranger: PathBuf,
}

fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test key", "-f"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "ssh-keygen: {out:?}");
}

impl Keys {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (host, client, stranger) =
            (dir.path().join("host"), dir.path().join("client"), dir.path().join("stranger"));
        for path in [&host, &client, &stranger] {
            keygen(path);
        }
        let read = |path: &Path| std::fs::read_to_string(path).unwrap();
        // `ssh-keygen -y` derives the public key from the private one, as the brief of the
        // control plane does for known_hosts.
        let derived = Command::new("ssh-keygen").arg("-y").arg("-f").arg(&host).output().unwrap();
        assert!(derived.status.success());
        let host_public = String::from_utf8(derived.stdout).unwrap().trim().to_string();
        Self {
            host_private: read(&host),
            host_public,
            client_public: read(&client.with_extension("pub")).trim().to_string(),
            client,
            stranger,
            dir,
        }
    }
}

/// What the bridge sends with every WebSocket upgrade.
#[derive(Clone)]
pub struct BridgeHeaders {
    pub token: Option<String>,
    pub authorized_keys: String,
}

/// One agent with SSH set up, and a local port where OpenSSH reaches it through the bridge.
pub struct Session {
    pub keys: Keys,
    /// The agent process (none for an agent in a container).
    agent: Option<Agent>,
    /// The agent's HTTP port.
    pub agent_port: u16,
    /// The bridge's port, for OpenSSH.
    pub port: u16,
    pub known_hosts: PathBuf,
    runtime: tokio::runtime::Runtime,
}

impl Session {
    /// An agent with the token and host key (plus `env`), and a bridge authorizing the client key.
    pub fn start(env: &[(&str, &str)]) -> Self {
        let keys = Keys::new();
        let mut all = vec![
            ("BURSTFLARE_AGENT_TOKEN", TOKEN),
            ("BURSTFLARE_HOST_KEY", keys.host_private.as_str()),
        ];
        all.extend_from_slice(env);
        let agent = Agent::start_with_env(&[], &all);
        let port = agent.port;
        Self::attach(keys, Some(agent), port)
    }

    /// A bridge to an agent already running on `agent_port` with `keys.host_private` and [`TOKEN`].
    pub fn attach(keys: Keys, agent: Option<Agent>, agent_port: u16) -> Self {
        let authorized = format!("# comment lines are skipped\n\n{}\n", keys.client_public);
        let headers = BridgeHeaders {
            token: Some(TOKEN.to_string()),
            authorized_keys: base64::engine::general_purpose::STANDARD.encode(authorized),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let port = runtime.block_on(start_bridge(agent_port, headers));
        let known_hosts = keys.dir.path().join("known_hosts");
        std::fs::write(&known_hosts, format!("[127.0.0.1]:{port} {}\n", keys.host_public)).unwrap();
        Self { keys, agent, agent_port, port, known_hosts, runtime }
    }

    /// The agent process (sessions from [`Session::start`]).
    pub fn agent(&self) -> &Agent {
        self.agent.as_ref().expect("an agent process")
    }

    pub fn agent_mut(&mut self) -> &mut Agent {
        self.agent.as_mut().expect("an agent process")
    }

    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// The common OpenSSH options: no user config, the pinned host key, only our key, no prompts.
    fn options(&self, identity: &Path) -> Vec<String> {
        [
            "-F",
            "/dev/null",
            "-o",
            &format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=10",
            "-i",
            &identity.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// `ssh -p PORT <options> [extra...] x@127.0.0.1`, remote command to be appended.
    pub fn ssh(&self, extra: &[&str]) -> Command {
        self.ssh_as(&self.keys.client, extra)
    }

    pub fn ssh_as(&self, identity: &Path, extra: &[&str]) -> Command {
        let mut command = Command::new("ssh");
        command
            .env_remove("SSH_AUTH_SOCK")
            .arg("-p")
            .arg(self.port.to_string())
            .args(self.options(identity))
            .args(extra)
            .arg("tester@127.0.0.1");
        command
    }

    /// Runs `remote` with ssh and returns its output (30 s deadline).
    pub fn exec(&self, remote: &str) -> Output {
        run(self.ssh(&[]).arg(remote), b"", Duration::from_secs(30))
    }

    /// `scp -P PORT <options> [args...]`; remote paths are `tester@127.0.0.1:PATH`.
    pub fn scp(&self, args: &[&str]) -> Output {
        let mut command = Command::new("scp");
        command
            .env_remove("SSH_AUTH_SOCK")
            .arg("-P")
            .arg(self.port.to_string())
            .args(self.options(&self.keys.client))
            .args(args);
        run(&mut command, b"", Duration::from_secs(60))
    }

    /// `sftp -b BATCH` against the agent.
    pub fn sftp(&self, batch: &str) -> Output {
        let file = self.keys.dir.path().join("batch");
        std::fs::write(&file, batch).unwrap();
        let mut command = Command::new("sftp");
        command
            .env_remove("SSH_AUTH_SOCK")
            .arg("-P")
            .arg(self.port.to_string())
            .args(self.options(&self.keys.client))
            .arg("-b")
            .arg(&file)
            .arg("tester@127.0.0.1");
        run(&mut command, b"", Duration::from_secs(30))
    }

    pub fn remote(path: &Path) -> String {
        format!("tester@127.0.0.1:{}", path.display())
    }
}

/// Listens on a free port of 127.0.0.1; bridges each connection to a WebSocket to the agent's
/// `/ssh` with `headers`. Returns the port.
pub async fn start_bridge(agent_port: u16, headers: BridgeHeaders) -> u16 {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let headers = headers.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let Ok(ws) = connect(agent_port, "/ssh", &headers).await else { return };
                splice(tcp, ws).await;
            });
        }
    });
    port
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a WebSocket to the agent's `path` with the bridge's headers.
pub async fn connect(
    agent_port: u16,
    path: &str,
    headers: &BridgeHeaders,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut request = format!("ws://127.0.0.1:{agent_port}{path}").into_client_request()?;
    let map = request.headers_mut();
    if let Some(token) = &headers.token {
        map.insert("authorization", HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
    }
    if !headers.authorized_keys.is_empty() {
        map.insert(
            "x-burstflare-authorized-keys",
            HeaderValue::from_str(&headers.authorized_keys).unwrap(),
        );
    }
    map.insert("x-burstflare-user", HeaderValue::from_static("usr_test"));
    map.insert("x-burstflare-connection", HeaderValue::from_static("conn_test"));
    let (ws, _response) = tokio_tungstenite::connect_async(request).await?;
    Ok(ws)
}

/// Copies bytes between a TCP connection and a WebSocket until either side ends.
async fn splice(tcp: tokio::net::TcpStream, ws: Ws) {
    let (mut sink, mut stream) = ws.split();
    let (mut read, mut write) = tcp.into_split();
    let up = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sink.send(Message::binary(buf[..n].to_vec())).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = sink.close().await;
    };
    let down = async {
        while let Some(Ok(message)) = stream.next().await {
            let data = match message {
                Message::Binary(data) => data,
                Message::Close(_) => break,
                _ => continue,
            };
            if write.write_all(&data).await.is_err() {
                break;
            }
        }
        let _ = write.shutdown().await;
    };
    tokio::select! {
        () = up => {}
        () = down => {}
    }
}

/// A TCP echo server on 127.0.0.1 (a thread per connection); returns its port.
pub fn echo_server() -> u16 {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    port
}

/// Connects to 127.0.0.1:`port`, sends `message`, reads the same number of bytes back.
pub fn echo_through(port: u16, message: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(message).unwrap();
    let mut back = vec![0u8; message.len()];
    stream.read_exact(&mut back).unwrap();
    back
}

/// Waits until something accepts connections on 127.0.0.1:`port`.
pub fn wait_listening(port: u16) {
    crate::common::wait_for(&format!("port {port} to listen"), Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
}

/// A port that is free now (for -L/-R listeners).
pub fn port() -> u16 {
    free_port()
}

/// Pseudo-random bytes (xorshift), fast and reproducible.
pub fn random_bytes(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
