//! The raw Temporal floor of the `scale` benchmark: a workflow that runs one activity that does
//! nothing, served by a worker built like the platform's (`api/src/workers.rs`,
//! `run_worker_thread`: a thread of its own blocking on a 2-thread Tokio runtime, the SDK's
//! default tuner) on a task queue of its own, against the same dev server.

use std::sync::Arc;
use std::time::Duration;

use temporalio_client::{Client, WorkflowGetResultOptions, WorkflowStartOptions};
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use temporalio_sdk::{
    ActivityOptions, Runtime, Worker, WorkerOptions, WorkflowContext, WorkflowResult,
};
use tokio::sync::oneshot;

pub struct NoopActivities;

#[activities]
impl NoopActivities {
    #[activity(name = "bench.noop")]
    pub async fn noop(
        self: Arc<Self>,
        _ctx: ActivityContext,
        _input: (),
    ) -> Result<(), ActivityError> {
        Ok(())
    }
}

#[workflow]
#[derive(Default)]
pub struct BenchNoop;

#[workflow_methods]
impl BenchNoop {
    #[run(name = "BenchNoop")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, _input: ()) -> WorkflowResult<()> {
        ctx.execute_activity(
            NoopActivities::noop,
            (),
            ActivityOptions::with_start_to_close_timeout(Duration::from_secs(30)).build(),
        )
        .await?;
        Ok(())
    }
}

type Stop = Box<dyn Fn() + Send + Sync>;

/// The floor's worker; stopped on [`NoopWorker::stop`] (or left to die with the process).
pub struct NoopWorker {
    stop: Stop,
    done: oneshot::Receiver<()>,
    pub task_queue: String,
}

impl NoopWorker {
    pub async fn start(client: Client, task_queue: &str) -> anyhow::Result<NoopWorker> {
        let (ready_tx, ready_rx) = oneshot::channel::<anyhow::Result<Stop>>();
        let (done_tx, done_rx) = oneshot::channel();
        let queue = task_queue.to_string();
        std::thread::Builder::new().name("bench-noop".into()).spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("bench-noop-act")
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.into()));
                    return;
                }
            };
            rt.block_on(async move {
                let setup = (|| {
                    let runtime = Runtime::from_current_tokio(Default::default())
                        .map_err(|e| anyhow::anyhow!("starting the Temporal runtime: {e}"))?;
                    let opts = WorkerOptions::new(&queue)
                        .register_workflow::<BenchNoop>()
                        .map_err(|e| anyhow::anyhow!("registering BenchNoop: {e}"))?
                        .register_activities(NoopActivities)
                        .build();
                    let worker = Worker::new(&runtime, client, opts)
                        .map_err(|e| anyhow::anyhow!("creating the floor worker: {e}"))?;
                    anyhow::Ok((runtime, worker))
                })();
                let (_runtime, mut worker) = match setup {
                    Ok(v) => v,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(Box::new(worker.shutdown_handle())));
                let _ = worker.run().await;
            });
            let _ = done_tx.send(());
        })?;
        let stop =
            ready_rx.await.map_err(|_| anyhow::anyhow!("the floor worker did not start"))??;
        Ok(NoopWorker { stop, done: done_rx, task_queue: task_queue.to_string() })
    }

    pub async fn stop(self) {
        (self.stop)();
        let _ = tokio::time::timeout(Duration::from_secs(15), self.done).await;
    }
}

/// Starts `n` BenchNoop workflows at once and waits for all of them; the seconds from the first
/// start request to the last result.
pub async fn run_many(client: &Client, task_queue: &str, n: usize) -> anyhow::Result<f64> {
    let prefix = format!("bench-noop-{}", uuid::Uuid::now_v7());
    let started = std::time::Instant::now();
    let runs = (0..n).map(|i| {
        let id = format!("{prefix}-{i}");
        async move {
            let handle = client
                .start_workflow(
                    BenchNoop::run,
                    (),
                    WorkflowStartOptions::new(task_queue, id.clone()).build(),
                )
                .await
                .map_err(|e| anyhow::anyhow!("starting {id}: {e}"))?;
            handle
                .get_result(WorkflowGetResultOptions::default())
                .await
                .map_err(|e| anyhow::anyhow!("{id}: {e}"))?;
            anyhow::Ok(())
        }
    });
    let results = futures::future::join_all(runs).await;
    let secs = started.elapsed().as_secs_f64();
    for r in results {
        r?;
    }
    Ok(secs)
}
