//! The real session agent as a child process on loopback (as the agent's own process tests run
//! it: `supervise --listen 127.0.0.1:<port>` with a token, outside a container).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// Where scripts/build-agent.sh (`make agent`) puts the static agent.
pub fn default_binary(repo: &Path) -> PathBuf {
    repo.join("target/agent/x86_64-unknown-linux-gnu/release/burstflare-agent")
}

/// A running agent, killed and reaped on drop. Its stderr (one line per pack) goes to `log`.
pub struct AgentProcess {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl AgentProcess {
    pub fn start(binary: &Path, token: &str, log: &Path) -> anyhow::Result<AgentProcess> {
        anyhow::ensure!(
            binary.is_file(),
            "the agent binary {} is missing: run `make agent` (scripts/build-agent.sh) or pass --agent",
            binary.display()
        );
        // A port that was free a moment ago (the agent has no way to report one it picked).
        let port = std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port();
        let stderr = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(binary)
            .arg("supervise")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env("BURSTFLARE_AGENT_TOKEN", token)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(AgentProcess { child, port, log: log.to_path_buf() })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Polls `GET /ready` until it answers 200, for at most 10 s.
    pub async fn wait_ready(&mut self, http: &reqwest::Client) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("the agent exited ({status}): {}", self.log_tail());
            }
            if let Ok(r) = http.get(self.url("/ready")).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the agent was not ready within 10 s: {}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The end of its log (for error messages).
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
