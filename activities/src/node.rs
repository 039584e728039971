//! Activities that run on a runtime host (`burstflare node`, task queue `node-<id>`):
//! everything that talks to that host's Docker engine.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

pub struct NodeActivities {
    node_id: String,
    docker: bollard::Docker,
}

impl NodeActivities {
    pub fn new(node_id: String, docker: bollard::Docker) -> Self {
        Self { node_id, docker }
    }
}

/// The Docker engine a node reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReport {
    pub node_id: String,
    pub docker_version: String,
}

#[activities]
impl NodeActivities {
    /// Reads the engine version of this node's Docker. Read-only, so retries are harmless.
    #[activity(name = "node.docker_version")]
    pub async fn docker_version(
        self: Arc<Self>,
        _ctx: ActivityContext,
        _input: (),
    ) -> Result<NodeReport, ActivityError> {
        let v = self.docker.version().await.map_err(anyhow::Error::from)?;
        Ok(NodeReport {
            node_id: self.node_id.clone(),
            docker_version: v.version.unwrap_or_else(|| "unknown".into()),
        })
    }
}
