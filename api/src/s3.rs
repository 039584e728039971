//! The S3 server embedded in `burstflare dev`: s3s over a directory (s3s-fs), with SigV4
//! authentication, on a loopback port. Everything else talks to it through aws-sdk-s3, exactly
//! as production talks to R2, Garage, MinIO or AWS.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub struct EmbeddedS3 {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl EmbeddedS3 {
    /// Serves `root` on 127.0.0.1 at a free port, accepting only `access_key`/`secret_key`.
    pub async fn start(root: &Path, access_key: &str, secret_key: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(root)
            .with_context(|| format!("creating the S3 data directory {}", root.display()))?;
        let fs = s3s_fs::FileSystem::new(root).map_err(|e| {
            anyhow::anyhow!("opening the S3 data directory {}: {e:?}", root.display())
        })?;
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(access_key, secret_key.to_string()));
        let service = builder.build();

        let listener =
            TcpListener::bind(("127.0.0.1", 0)).await.context("binding the S3 server")?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            loop {
                let (socket, _) = match listener.accept().await {
                    Ok(conn) => conn,
                    Err(e) => {
                        tracing::warn!("S3 server accept failed: {e}");
                        continue;
                    }
                };
                let conn =
                    http.serve_connection(TokioIo::new(socket), service.clone()).into_owned();
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!("S3 connection ended with an error: {e}");
                    }
                });
            }
        });
        Ok(Self { addr, task })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for EmbeddedS3 {
    fn drop(&mut self) {
        self.task.abort();
    }
}
