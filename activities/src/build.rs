//! Builder activities (`burstflare builder`, task queue `build`): check a template bundle,
//! build its image with the Docker engine and push it to the OCI registry. They need Docker,
//! object storage and the registry, never the database, so builder hosts scale apart from the
//! control plane.
//!
//! Every step writes what it does to the build log: chunked objects
//! `builds/<build id>/log/<seq>` in object storage, readable while the build runs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::query_parameters::{BuildImageOptionsBuilder, PushImageOptionsBuilder};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use temporalio_common::error::ApplicationFailure;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use domain::blob::{BlobError, BlobStore};
use sdk::bundle::{self, Limits};

/// Everything a build attempt needs to know, fixed when the build is queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildJob {
    pub build_id: String,
    pub version_id: String,
    pub workspace_id: String,
    pub template: String,
    pub version: String,
    pub attempt: u32,
    pub bundle_key: String,
    pub bundle_sha256: String,
    pub bundle_size: u64,
    /// Repository inside the registry, e.g. `burstflare/<template id>`.
    pub repository: String,
    /// Image tag, e.g. `v3`.
    pub tag: String,
    /// Wall-clock limit of the image build.
    pub timeout_secs: u64,
}

/// What the bundle check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InspectReport {
    pub files: u64,
    pub content_bytes: u64,
    /// The manifest, as JSON.
    pub manifest_json: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuiltImage {
    pub image_ref: String,
    pub image_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushedImage {
    pub image_ref: String,
    /// The registry's content digest of the manifest, `sha256:…`.
    pub digest: String,
}

/// How this builder builds: from `[build]` and `[registry]` configuration.
#[derive(Debug, Clone)]
pub struct BuilderSettings {
    /// Registry base URL, e.g. `http://127.0.0.1:5000`.
    pub registry: url::Url,
    pub limits: Limits,
    pub cpu_millis: u64,
    pub memory_mb: u64,
    pub network: String,
}

impl BuilderSettings {
    /// `host:port` of the registry, as it appears in image references.
    pub fn registry_host(&self) -> String {
        let host = self.registry.host_str().unwrap_or("127.0.0.1");
        match self.registry.port_or_known_default() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        }
    }
}

pub struct BuilderActivities {
    docker: bollard::Docker,
    blobs: BlobStore,
    settings: BuilderSettings,
    http: reqwest::Client,
}

impl BuilderActivities {
    pub fn new(docker: bollard::Docker, blobs: BlobStore, settings: BuilderSettings) -> Self {
        Self { docker, blobs, settings, http: reqwest::Client::new() }
    }

    fn image_ref(&self, job: &BuildJob) -> String {
        format!("{}/{}:{}", self.settings.registry_host(), job.repository, job.tag)
    }

    /// Downloads the bundle and checks it against its recorded size and hash and the bundle
    /// rules. Bad input is a non-retryable failure; storage trouble is retryable.
    async fn fetch_and_inspect(
        &self,
        job: &BuildJob,
        log: &mut BuildLogWriter,
    ) -> Result<bundle::Inspected, ActivityError> {
        let bytes = match self.blobs.get(&job.bundle_key).await {
            Ok(b) => b,
            Err(BlobError::NotFound { .. }) => {
                log.line("error: the bundle is no longer in storage").await;
                return Err(bad_input(format!(
                    "the bundle of {} v{} is missing from storage",
                    job.template, job.version
                )));
            }
            Err(e) => return Err(anyhow::Error::from(e).into()),
        };
        if bytes.len() as u64 != job.bundle_size {
            let msg = format!(
                "bundle.size: stored bundle is {} bytes, the upload declared {}",
                bytes.len(),
                job.bundle_size
            );
            log.line(&format!("error: {msg}")).await;
            return Err(bad_input(msg));
        }
        let sha = bundle::sha256_hex(&bytes);
        if sha != job.bundle_sha256 {
            let msg = format!(
                "bundle.sha256: stored bundle hashes to {sha}, the upload declared {}",
                job.bundle_sha256
            );
            log.line(&format!("error: {msg}")).await;
            return Err(bad_input(msg));
        }
        match bundle::inspect(&bytes, &self.settings.limits) {
            Ok(i) => Ok(i),
            Err(e) => {
                log.line(&format!("error: {e}")).await;
                Err(bad_input(e.to_string()))
            }
        }
    }
}

/// A failure the same input would repeat: Temporal does not retry it.
fn bad_input(message: String) -> ActivityError {
    ActivityError::application(ApplicationFailure::non_retryable(message))
}

#[activities]
impl BuilderActivities {
    /// Checks the bundle: size, sha256, and every bundle rule (paths, links, limits,
    /// manifest, Dockerfile). Non-retryable when the bundle is bad.
    #[activity(name = "build.inspect")]
    pub async fn inspect(
        self: Arc<Self>,
        _ctx: ActivityContext,
        job: BuildJob,
    ) -> Result<InspectReport, ActivityError> {
        let mut log = BuildLogWriter::open(self.blobs.clone(), &job.build_id).await?;
        log.line(&format!(
            "==> Checking the bundle of {} v{} (attempt {}, {} bytes, sha256 {})",
            job.template, job.version, job.attempt, job.bundle_size, job.bundle_sha256
        ))
        .await;
        let result = self.fetch_and_inspect(&job, &mut log).await;
        if let Ok(i) = &result {
            log.line(&format!(
                "    {} files, {} bytes of content; manifest schema {}",
                i.files, i.content_bytes, i.manifest.schema
            ))
            .await;
        }
        log.flush().await?;
        let i = result?;
        Ok(InspectReport {
            files: i.files,
            content_bytes: i.content_bytes,
            manifest_json: serde_json::to_string(&i.manifest).map_err(anyhow::Error::from)?,
        })
    }

    /// Builds the image from the bundle's context with the Docker engine, streaming its output
    /// to the build log. The context is sent from memory (no host mounts); CPU, memory,
    /// network and wall-clock time are limited. Cancelling the activity stops the build:
    /// Docker cancels a build whose client goes away and removes its containers.
    ///
    /// Idempotent: if an image with this tag built by this build already exists (a worker
    /// died after building), it is returned as it is.
    #[activity(name = "build.image")]
    pub async fn image(
        self: Arc<Self>,
        ctx: ActivityContext,
        job: BuildJob,
    ) -> Result<BuiltImage, ActivityError> {
        let image_ref = self.image_ref(&job);
        let mut log = BuildLogWriter::open(self.blobs.clone(), &job.build_id).await?;
        if let Ok(existing) = self.docker.inspect_image(&image_ref).await {
            let labels = existing.config.as_ref().and_then(|c| c.labels.as_ref());
            if labels.and_then(|l| l.get("burstflare.build")) == Some(&job.build_id) {
                log.line(&format!("==> {image_ref} was already built by this build")).await;
                log.flush().await?;
                return Ok(BuiltImage { image_ref, image_id: existing.id.unwrap_or_default() });
            }
        }
        let info = ctx.info();
        log.line(&format!(
            "==> Building {image_ref} (activity attempt {}, limits: {} CPU, {} MiB, network {}, {} s)",
            info.attempt,
            self.settings.cpu_millis as f64 / 1000.0,
            self.settings.memory_mb,
            self.settings.network,
            job.timeout_secs
        ))
        .await;
        let inspected = self.fetch_and_inspect(&job, &mut log).await;
        let inspected = match inspected {
            Ok(i) => i,
            Err(e) => {
                log.flush().await?;
                return Err(e);
            }
        };

        let mut labels: HashMap<String, String> =
            inspected.manifest.labels.clone().into_iter().collect();
        labels.insert("burstflare.build".into(), job.build_id.clone());
        labels.insert("burstflare.template".into(), job.template.clone());
        labels.insert("burstflare.version".into(), job.version.clone());
        labels.insert("burstflare.workspace".into(), job.workspace_id.clone());
        let mut args = HashMap::new();
        args.insert("BASE_IMAGE".to_string(), inspected.manifest.base_image.clone());
        const PERIOD: u64 = 100_000;
        let quota = self.settings.cpu_millis.saturating_mul(PERIOD) / 1000;
        let memory = self.settings.memory_mb.saturating_mul(1024 * 1024).min(i32::MAX as u64);
        let opts = BuildImageOptionsBuilder::new()
            .dockerfile(bundle::DOCKERFILE)
            .t(&image_ref)
            .pull("")
            .rm(true)
            .forcerm(true)
            .memory(memory as i32)
            .memswap(memory as i32)
            .cpuperiod(PERIOD as i32)
            .cpuquota(quota.min(i32::MAX as u64) as i32)
            .networkmode(&self.settings.network)
            .buildargs(&args)
            .labels(&labels)
            .build();
        let context = bytes::Bytes::from(inspected.context_tar);
        let mut stream =
            self.docker.build_image(opts, None, Some(bollard::body_full(context))).boxed();
        let deadline = tokio::time::sleep(Duration::from_secs(job.timeout_secs));
        tokio::pin!(deadline);
        let mut heartbeat = tokio::time::interval(Duration::from_secs(2));
        let mut failure: Option<String> = None;
        let mut image_id = String::new();
        loop {
            tokio::select! {
                item = stream.next() => match item {
                    None => break,
                    Some(Ok(info)) => {
                        if let Some(text) = info.stream.as_deref().or(info.status.as_deref()) {
                            log.text(text).await;
                        }
                        if let Some(err) = info.error_detail.and_then(|d| d.message) {
                            log.line(&format!("error: {err}")).await;
                            failure = Some(err);
                        }
                        if let Some(id) = info.aux.and_then(|a| a.id) {
                            image_id = id;
                        }
                    }
                    Some(Err(e)) => {
                        let msg = docker_error_message(&e);
                        drop(stream);
                        log.line(&format!("error: {msg}")).await;
                        log.flush().await?;
                        return Err(if is_build_failure(&e) {
                            bad_input(format!("the image build failed: {msg}"))
                        } else {
                            anyhow::anyhow!("Docker: {msg}").into()
                        });
                    }
                },
                _ = &mut deadline => {
                    drop(stream);
                    let msg = format!(
                        "the build ran longer than its limit of {} s (build.timeout_minutes) and was stopped",
                        job.timeout_secs
                    );
                    log.line(&format!("error: {msg}")).await;
                    log.flush().await?;
                    return Err(bad_input(msg));
                }
                _ = ctx.cancelled() => {
                    drop(stream);
                    log.line("==> Build cancelled").await;
                    log.flush().await?;
                    return Err(ActivityError::cancelled());
                }
                _ = heartbeat.tick() => {
                    log.maybe_flush().await;
                    let _ = ctx.record_heartbeat(()).await;
                }
            }
        }
        if let Some(err) = failure {
            log.flush().await?;
            return Err(bad_input(format!("the image build failed: {err}")));
        }
        let inspect =
            self.docker.inspect_image(&image_ref).await.map_err(|e| {
                anyhow::anyhow!("the build finished but {image_ref} is not there: {e}")
            })?;
        if image_id.is_empty() {
            image_id = inspect.id.unwrap_or_default();
        }
        log.line(&format!("==> Built {image_ref} ({image_id})")).await;
        log.flush().await?;
        Ok(BuiltImage { image_ref, image_id })
    }

    /// Pushes the built image to the registry and returns the digest the registry reports
    /// for the tag. Pushing the same image again is harmless, so this retries freely.
    #[activity(name = "build.push")]
    pub async fn push(
        self: Arc<Self>,
        ctx: ActivityContext,
        job: BuildJob,
    ) -> Result<PushedImage, ActivityError> {
        let image_ref = self.image_ref(&job);
        let mut log = BuildLogWriter::open(self.blobs.clone(), &job.build_id).await?;
        log.line(&format!("==> Pushing {image_ref}")).await;
        let name = format!("{}/{}", self.settings.registry_host(), job.repository);
        let opts = PushImageOptionsBuilder::new().tag(&job.tag).build();
        let mut stream = self.docker.push_image(&name, Some(opts), None).boxed();
        let mut heartbeat = tokio::time::interval(Duration::from_secs(2));
        loop {
            tokio::select! {
                item = stream.next() => match item {
                    None => break,
                    Some(Ok(info)) => {
                        if let Some(err) = info.error_detail.and_then(|d| d.message) {
                            log.line(&format!("error: {err}")).await;
                            log.flush().await?;
                            return Err(anyhow::anyhow!("pushing {image_ref}: {err}").into());
                        }
                        // Per-layer progress lines are noise in a log; keep the others.
                        if let (None, Some(status)) = (&info.progress_detail, info.status) {
                            log.line(&status).await;
                        }
                    }
                    Some(Err(e)) => {
                        let msg = docker_error_message(&e);
                        log.line(&format!("error: {msg}")).await;
                        log.flush().await?;
                        return Err(anyhow::anyhow!("pushing {image_ref}: {msg}").into());
                    }
                },
                _ = ctx.cancelled() => {
                    drop(stream);
                    log.line("==> Push cancelled").await;
                    log.flush().await?;
                    return Err(ActivityError::cancelled());
                }
                _ = heartbeat.tick() => {
                    log.maybe_flush().await;
                    let _ = ctx.record_heartbeat(()).await;
                }
            }
        }
        let digest = self.registry_digest(&job).await?;
        log.line(&format!("==> Pushed {image_ref}, digest {digest}")).await;
        log.flush().await?;
        Ok(PushedImage { image_ref, digest })
    }
}

impl BuilderActivities {
    /// Asks the registry (distribution API) for the manifest digest of the job's tag.
    async fn registry_digest(&self, job: &BuildJob) -> Result<String, ActivityError> {
        let url = self
            .settings
            .registry
            .join(&format!("v2/{}/manifests/{}", job.repository, job.tag))
            .map_err(anyhow::Error::from)?;
        let resp = self
            .http
            .head(url)
            .header(
                "accept",
                "application/vnd.docker.distribution.manifest.v2+json, \
                 application/vnd.oci.image.manifest.v1+json, \
                 application/vnd.docker.distribution.manifest.list.v2+json, \
                 application/vnd.oci.image.index.v1+json",
            )
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("asking the registry for the pushed manifest: {e}"))?;
        if !resp.status().is_success() {
            return Err(anyhow::anyhow!(
                "the registry answered {} for {}:{} after the push",
                resp.status(),
                job.repository,
                job.tag
            )
            .into());
        }
        let digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| anyhow::anyhow!("the registry sent no Docker-Content-Digest"))?;
        Ok(digest)
    }
}

/// Docker's own words for an error, without the request dump.
pub fn docker_error_message(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        bollard::errors::Error::DockerStreamError { error } => error.clone(),
        other => other.to_string(),
    }
}

/// Whether the engine refused or failed the build itself (the Dockerfile), as opposed to the
/// engine being unreachable.
fn is_build_failure(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerStreamError { .. }
            | bollard::errors::Error::DockerResponseServerError { status_code: 400..=499, .. }
    )
}

/// Key of chunk `seq` of build `build_id`'s log.
pub fn log_chunk_key(build_id: &str, seq: u64) -> String {
    format!("{}{seq:08}", log_prefix(build_id))
}

/// Prefix of every chunk of build `build_id`'s log.
pub fn log_prefix(build_id: &str) -> String {
    format!("builds/{build_id}/log/")
}

/// The sequence number in a chunk key.
pub fn log_chunk_seq(key: &str) -> Option<u64> {
    key.rsplit('/').next()?.parse().ok()
}

/// Appends to a build log in object storage, one chunk object per flush. Chunks are written
/// at most every second or 64 KiB, so readers see the build as it happens. A new writer (a
/// retried activity, another step) continues after the last chunk.
struct BuildLogWriter {
    blobs: BlobStore,
    build_id: String,
    next_seq: u64,
    buf: String,
    last_flush: Instant,
}

const CHUNK_BYTES: usize = 64 * 1024;

impl BuildLogWriter {
    async fn open(blobs: BlobStore, build_id: &str) -> Result<Self, ActivityError> {
        let prefix = log_prefix(build_id);
        let mut last: Option<String> = None;
        loop {
            let keys = blobs
                .list_after(&prefix, last.as_deref(), 1000)
                .await
                .map_err(anyhow::Error::from)?;
            let done = keys.len() < 1000;
            if let Some(k) = keys.last() {
                last = Some(k.clone());
            }
            if done {
                break;
            }
        }
        let next_seq = last.as_deref().and_then(log_chunk_seq).map_or(0, |s| s + 1);
        Ok(Self {
            blobs,
            build_id: build_id.to_string(),
            next_seq,
            buf: String::new(),
            last_flush: Instant::now(),
        })
    }

    /// Adds raw output (Docker's stream already carries its newlines).
    async fn text(&mut self, text: &str) {
        self.buf.push_str(text);
        if self.buf.len() >= CHUNK_BYTES {
            let _ = self.flush().await;
        }
    }

    async fn line(&mut self, line: &str) {
        self.text(line).await;
        if !line.ends_with('\n') {
            self.buf.push('\n');
        }
    }

    async fn maybe_flush(&mut self) {
        if !self.buf.is_empty() && self.last_flush.elapsed() >= Duration::from_secs(1) {
            let _ = self.flush().await;
        }
    }

    async fn flush(&mut self) -> Result<(), ActivityError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let key = log_chunk_key(&self.build_id, self.next_seq);
        self.blobs
            .put(&key, self.buf.clone().into_bytes(), "text/plain; charset=utf-8")
            .await
            .map_err(anyhow::Error::from)?;
        self.next_seq += 1;
        self.buf.clear();
        self.last_flush = Instant::now();
        Ok(())
    }
}
