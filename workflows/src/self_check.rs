//! `SelfCheck`: proves the whole Temporal path (client, server, worker, an activity that
//! writes the database and, optionally, a runtime host's task queue) end to end.
//! `burstflare dev` runs it before it reports ready.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use temporalio_common::RetryPolicy;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{ActivityOptions, WorkflowContext, WorkflowContextView, WorkflowResult};

use activities::control::SelfCheckRecord;
use activities::node::NodeReport;
use activities::{ControlActivities, NodeActivities};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfCheckInput {
    /// Also ask this runtime host's worker (queue `node-<id>`) for its Docker version.
    pub node_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfCheckOutput {
    pub record: SelfCheckRecord,
    pub node: Option<NodeReport>,
}

#[workflow]
#[derive(Default)]
pub struct SelfCheck {
    phase: String,
}

fn retry() -> RetryPolicy {
    RetryPolicy::builder()
        .initial_interval(Duration::from_millis(200))
        .backoff_coefficient(2.0)
        .maximum_interval(Duration::from_secs(5))
        .maximum_attempts(5)
        .build()
}

#[workflow_methods]
impl SelfCheck {
    #[run(name = "SelfCheck")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: SelfCheckInput,
    ) -> WorkflowResult<SelfCheckOutput> {
        ctx.state_mut(|s| s.phase = "recording".into());
        let record = ctx
            .execute_activity(
                ControlActivities::record_self_check,
                (),
                ActivityOptions::with_start_to_close_timeout(Duration::from_secs(30))
                    .retry_policy(retry())
                    .build(),
            )
            .await?;
        let node = match input.node_id {
            Some(node_id) => {
                ctx.state_mut(|s| s.phase = "asking node".into());
                let report = ctx
                    .execute_activity(
                        NodeActivities::docker_version,
                        (),
                        ActivityOptions::with_start_to_close_timeout(Duration::from_secs(30))
                            .task_queue(activities::node_task_queue(&node_id))
                            // A host that is down must not hold the check forever.
                            .schedule_to_start_timeout(Duration::from_secs(60))
                            .retry_policy(retry())
                            .build(),
                    )
                    .await?;
                Some(report)
            }
            None => None,
        };
        ctx.state_mut(|s| s.phase = "done".into());
        Ok(SelfCheckOutput { record, node })
    }

    #[query(name = "phase")]
    pub fn phase(&self, _ctx: &WorkflowContextView) -> String {
        self.phase.clone()
    }
}
