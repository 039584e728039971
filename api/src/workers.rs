//! Running Temporal workers inside this process: the control-plane worker (`burstflare
//! worker`, and inside `burstflare dev`) and a runtime host's worker (`burstflare node`).
//!
//! The SDK's `Worker::run` future is not `Send` (workflow futures are local), so each worker
//! runs on a thread of its own with a current-thread Tokio runtime.

use anyhow::Context;
use temporalio_client::Client;
use temporalio_sdk::{Runtime, Worker, WorkerOptions};
use tokio::sync::oneshot;

use std::sync::Arc;

use activities::build::BuilderSettings;
use activities::runtime::{DockerRuntime, DockerRuntimeSettings, RuntimeProvider};
use activities::{BuilderActivities, ControlActivities, NodeActivities};
use domain::Store;
use secrecy::ExposeSecret;

type Stop = Box<dyn Fn() + Send + Sync>;

struct Running {
    name: String,
    stop: Stop,
    done: oneshot::Receiver<anyhow::Result<()>>,
}

/// Workers started by this process. `shutdown` asks each to finish its current tasks.
#[derive(Default)]
pub struct Workers {
    running: Vec<Running>,
    /// Background loops (node heartbeats) that end with the workers.
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Workers {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self::default())
    }

    pub async fn start_control(
        &mut self,
        client: Client,
        config: &domain::Config,
        store: Store,
    ) -> anyhow::Result<()> {
        let task_queue = &config.temporal.task_queue;
        let queue = task_queue.to_string();
        let snapshots = activities::control::ControlSnapshots {
            blob: domain::blob::BlobStore::new(&config.storage),
            keep: config.snapshots.keep,
            keep_failed: config.snapshots.keep_failed,
            gc_grace: std::time::Duration::from_secs(config.snapshots.gc_grace_secs),
        };
        let cloudflare =
            activities::promotion::CloudflarePublisher::from_config(&config.cloudflare);
        self.start(format!("control worker on {task_queue}"), client, move || {
            let mut activities = ControlActivities::new(store).with_snapshots(snapshots);
            if let Some(cf) = cloudflare {
                activities = activities.with_cloudflare(cf);
            }
            Ok(workflows::control_worker_options(&queue, activities)?)
        })
        .await
    }

    /// A runtime host's worker (task queue `node-<id>`), plus a heartbeat that keeps the
    /// host in the `nodes` table so new sessions can be placed on it.
    pub async fn start_node(
        &mut self,
        client: Client,
        config: &domain::Config,
        docker: bollard::Docker,
        store: Store,
    ) -> anyhow::Result<()> {
        let id = config.node.id.clone();
        let name = format!("node worker on {}", activities::node_task_queue(&id));
        let secret = config.runtime.secret.expose_secret().as_bytes().to_vec();
        let snapshots = activities::snapshot::NodeSnapshots::new(
            domain::blob::BlobStore::new(&config.storage),
            secret.clone(),
        );
        let settings = DockerRuntimeSettings {
            agent_path: config.node.agent_path.clone(),
            data_dir: config.node.data_dir.clone(),
            runtime_secret: secret.clone(),
        };
        let runtime: Arc<dyn RuntimeProvider> =
            Arc::new(DockerRuntime::new(docker.clone(), settings));
        let tunnel = crate::tunnel::NodeTunnel::start(
            config.node.tunnel_listen,
            config.node.tunnel_url.clone(),
            secret,
            runtime.clone(),
        )
        .await?;
        let tunnel_url = tunnel.url().to_string();
        tracing::info!("node tunnel listening on {tunnel_url}");
        self.tasks.push(tunnel.into_task());
        let version = docker.version().await.ok().and_then(|v| v.version).unwrap_or_default();
        store.heartbeat_node(&id, &version, None, Some(&tunnel_url)).await?;
        let beat_id = id.clone();
        self.tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(30));
            loop {
                tick.tick().await;
                if let Err(e) =
                    store.heartbeat_node(&beat_id, &version, None, Some(&tunnel_url)).await
                {
                    tracing::warn!("node heartbeat: {e}");
                }
            }
        }));
        self.start(name, client, move || {
            Ok(workflows::node_worker_options(
                &id,
                NodeActivities::new(id.clone(), docker, runtime).with_snapshots(snapshots),
            ))
        })
        .await
    }

    /// A builder: the `build.*` activities on the build task queue.
    pub async fn start_builder(
        &mut self,
        client: Client,
        config: &domain::Config,
        docker: bollard::Docker,
    ) -> anyhow::Result<()> {
        let queue = config.build.task_queue.clone();
        let blobs = domain::blob::BlobStore::new(&config.storage);
        let settings = BuilderSettings {
            registry: config.registry.url.clone(),
            limits: config.build.limits(),
            cpu_millis: config.build.cpu_millis,
            memory_mb: config.build.memory_mb,
            network: config.build.network.clone(),
        };
        // A build streams for as long as it runs: the client timeout must outlast it.
        let docker = docker
            .with_timeout(std::time::Duration::from_secs(config.build.timeout_minutes * 60 + 120));
        let name = format!("builder on {queue}");
        self.start(name, client, move || {
            Ok(workflows::builder_worker_options(
                &queue,
                BuilderActivities::new(docker, blobs, settings),
            ))
        })
        .await
    }

    async fn start<F>(&mut self, name: String, client: Client, options: F) -> anyhow::Result<()>
    where
        F: FnOnce() -> anyhow::Result<WorkerOptions> + Send + 'static,
    {
        let (ready_tx, ready_rx) = oneshot::channel::<anyhow::Result<Stop>>();
        let (done_tx, done_rx) = oneshot::channel();
        let label = name.clone();
        std::thread::Builder::new()
            .name(name.chars().take(15).collect())
            .spawn(move || {
                let result = run_worker_thread(&label, client, options, ready_tx);
                let _ = done_tx.send(result);
            })
            .context("spawning a worker thread")?;
        let stop = ready_rx.await.map_err(|_| anyhow::anyhow!("the {name} failed to start"))??;
        tracing::info!("{name} started");
        self.running.push(Running { name, stop, done: done_rx });
        Ok(())
    }

    /// Resolves when any worker stops by itself (an error: workers only stop when asked).
    pub async fn any_stopped(&mut self) -> anyhow::Result<()> {
        if self.running.is_empty() {
            return std::future::pending().await;
        }
        let (res, idx, _) =
            futures::future::select_all(self.running.iter_mut().map(|r| &mut r.done)).await;
        let name = self.running[idx].name.clone();
        match res {
            Ok(Ok(())) => Err(anyhow::anyhow!("the {name} stopped unexpectedly")),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(anyhow::anyhow!("the {name} crashed")),
        }
    }

    pub async fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
        for r in &self.running {
            (r.stop)();
        }
        for r in self.running {
            match tokio::time::timeout(std::time::Duration::from_secs(15), r.done).await {
                Ok(Ok(Ok(()))) => tracing::info!("{} stopped", r.name),
                Ok(Ok(Err(e))) => tracing::warn!("{e:#}"),
                Ok(Err(_)) => tracing::warn!("{} crashed", r.name),
                Err(_) => tracing::warn!("{} did not stop within 15s", r.name),
            }
        }
    }
}

fn run_worker_thread<F>(
    name: &str,
    client: Client,
    options: F,
    ready: oneshot::Sender<anyhow::Result<Stop>>,
) -> anyhow::Result<()>
where
    F: FnOnce() -> anyhow::Result<WorkerOptions>,
{
    // Workflow code runs on this thread (the SDK keeps it in a LocalSet inside `block_on`);
    // activities are spawned onto the runtime's own threads, so Docker calls, database writes
    // and HTTP to agents no longer queue behind workflow tasks (BENCHMARKS.md, scale: workflow
    // tasks waited 1.5 s at the median on one thread).
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(format!("{}-act", name.chars().take(10).collect::<String>()))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(anyhow::anyhow!("building the {name} runtime: {e}")));
            return Ok(());
        }
    };
    rt.block_on(async move {
        let setup = (|| {
            let runtime = Runtime::from_current_tokio(Default::default())
                .map_err(|e| anyhow::anyhow!("starting the Temporal runtime: {e}"))?;
            let worker = Worker::new(&runtime, client, options()?)
                .map_err(|e| anyhow::anyhow!("creating the {name}: {e}"))?;
            anyhow::Ok((runtime, worker))
        })();
        let (_runtime, mut worker) = match setup {
            Ok(v) => v,
            Err(e) => {
                let _ = ready.send(Err(e));
                return Ok(());
            }
        };
        let _ = ready.send(Ok(Box::new(worker.shutdown_handle())));
        worker.run().await.map_err(|e| anyhow::anyhow!("the {name} stopped: {e}"))
    })
}
