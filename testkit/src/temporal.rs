//! A throwaway Temporal dev server (`temporal server start-dev`, in memory) per call, on free
//! loopback ports, stopped when the returned value is dropped.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub struct TestTemporal {
    pub address: String,
    child: std::process::Child,
}

impl TestTemporal {
    pub async fn start() -> anyhow::Result<Self> {
        let port = crate::free_port()?;
        let child = std::process::Command::new("temporal")
            .args([
                "server",
                "start-dev",
                "--headless",
                "--ip",
                "127.0.0.1",
                "--log-level",
                "error",
            ])
            .args(["--port", &port.to_string()])
            .args(["--http-port", &crate::free_port()?.to_string()])
            .args(["--metrics-port", &crate::free_port()?.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context(
                "starting `temporal server start-dev` (is the temporal CLI on PATH? `make setup`)",
            )?;
        let mut me = Self { address: format!("http://127.0.0.1:{port}"), child };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = me.child.try_wait()? {
                bail!("the Temporal dev server exited with {status}");
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Ok(me);
            }
            if Instant::now() > deadline {
                bail!("the Temporal dev server did not listen on {port} within 60s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for TestTemporal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
