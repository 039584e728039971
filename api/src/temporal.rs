//! Temporal: a lazily connected client for the API, the workers, and `SelfCheck` runs.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use temporalio_client::grpc::WorkflowService;
use temporalio_client::{
    Client, ClientOptions, Connection, ConnectionOptions, WorkflowGetResultOptions,
    WorkflowStartOptions,
};
use temporalio_common::protos::temporal::api::workflowservice::v1::DescribeNamespaceRequest;
use tokio::sync::Mutex;

use domain::config::TemporalConfig;
use workflows::{SelfCheck, SelfCheckInput, SelfCheckOutput};

/// A Temporal client that connects on first use and reconnects after a failure, so the API
/// starts (and reports it in /api/health) while Temporal is down.
#[derive(Clone)]
pub struct TemporalHandle {
    config: TemporalConfig,
    client: Arc<Mutex<Option<Client>>>,
}

impl TemporalHandle {
    pub fn new(config: &TemporalConfig) -> Self {
        Self { config: config.clone(), client: Arc::new(Mutex::new(None)) }
    }

    pub fn config(&self) -> &TemporalConfig {
        &self.config
    }

    pub async fn client(&self) -> anyhow::Result<Client> {
        let mut guard = self.client.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let c = connect(&self.config).await?;
        *guard = Some(c.clone());
        Ok(c)
    }

    /// Describes the configured namespace: proves the frontend answers and the namespace exists.
    pub async fn check(&self) -> anyhow::Result<()> {
        let mut client = self.client().await?;
        let req = DescribeNamespaceRequest {
            namespace: self.config.namespace.clone(),
            ..Default::default()
        };
        match WorkflowService::describe_namespace(
            &mut client,
            temporalio_client::tonic::Request::new(req),
        )
        .await
        {
            Ok(_) => Ok(()),
            Err(status) => {
                // Drop the cached client so the next call reconnects.
                *self.client.lock().await = None;
                Err(anyhow::anyhow!(
                    "Temporal at {} answered {}: {}",
                    self.config.address,
                    status.code(),
                    status.message()
                ))
            }
        }
    }
}

pub async fn connect(config: &TemporalConfig) -> anyhow::Result<Client> {
    let url = temporalio_client::Url::from_str(config.address.as_str())
        .with_context(|| format!("temporal.address {} is not a URL", config.address))?;
    let conn = tokio::time::timeout(
        Duration::from_secs(5),
        Connection::connect(ConnectionOptions::new(url).build()),
    )
    .await
    .map_err(|_| anyhow::anyhow!("connecting to Temporal at {} timed out", config.address))?
    .map_err(|e| anyhow::anyhow!("cannot connect to Temporal at {}: {e}", config.address))?;
    Ok(Client::new(conn, ClientOptions::new(config.namespace.clone()).build())?)
}

/// Starts a `SelfCheck` workflow and waits for its result.
pub async fn run_self_check(
    client: &Client,
    task_queue: &str,
    node_id: Option<String>,
    timeout: Duration,
) -> anyhow::Result<SelfCheckOutput> {
    let id = format!("self-check-{}", uuid::Uuid::now_v7());
    let handle = client
        .start_workflow(
            SelfCheck::run,
            SelfCheckInput { node_id },
            WorkflowStartOptions::new(task_queue, id.clone()).build(),
        )
        .await
        .with_context(|| format!("starting workflow {id}"))?;
    tokio::time::timeout(timeout, handle.get_result(WorkflowGetResultOptions::default()))
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "workflow {id} did not finish within {timeout:?}; is a worker polling {task_queue}?"
            )
        })?
        .with_context(|| format!("workflow {id} failed"))
}
