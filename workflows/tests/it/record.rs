//! Runs each workflow on a real Temporal dev server with real activities, replays the history
//! it produced, and (with BURSTFLARE_RECORD_HISTORIES=1) saves it under tests/histories/.

use std::str::FromStr;
use std::time::Duration;

use activities::{ControlActivities, NodeActivities};
use temporalio_client::{
    Client, ClientOptions, Connection, ConnectionOptions, Url, WorkflowFetchHistoryOptions,
    WorkflowGetResultOptions, WorkflowHistory, WorkflowStartOptions,
};
use temporalio_sdk::{Runtime, Worker};
use testkit::temporal::TestTemporal;
use workflows::{SelfCheck, SelfCheckInput};

const QUEUE: &str = "test-control";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_check_runs_on_real_workers_writes_the_database_and_its_history_replays() {
    let temporal = TestTemporal::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = domain::Store::connect(&format!("sqlite://{}/t.db?mode=rwc", dir.path().display()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let docker = bollard::Docker::connect_with_unix_defaults().unwrap();

    let conn = loop {
        match Connection::connect(
            ConnectionOptions::new(Url::from_str(&temporal.address).unwrap()).build(),
        )
        .await
        {
            Ok(c) => break c,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let client = Client::new(conn, ClientOptions::new("default").build()).unwrap();
    let runtime = Runtime::from_current_tokio(Default::default()).unwrap();
    let mut control = Worker::new(
        &runtime,
        client.clone(),
        workflows::control_worker_options(QUEUE, ControlActivities::new(store.clone())).unwrap(),
    )
    .unwrap();
    let mut node = Worker::new(
        &runtime,
        client.clone(),
        workflows::node_worker_options(
            "t1",
            NodeActivities::new(
                "t1".into(),
                docker.clone(),
                std::sync::Arc::new(activities::runtime::DockerRuntime::new(
                    docker,
                    activities::runtime::DockerRuntimeSettings {
                        agent_path: "/nonexistent".into(),
                        data_dir: std::env::temp_dir(),
                        runtime_secret: Vec::new(),
                    },
                )),
            ),
        ),
    )
    .unwrap();
    let stops = [control.shutdown_handle(), node.shutdown_handle()];

    let cases = [("self_check_with_node", Some("t1".to_string())), ("self_check", None)];
    let run_all = async {
        let mut histories = Vec::new();
        for (name, node_id) in cases {
            let id = format!("{name}-{}", uuid::Uuid::now_v7());
            let handle = client
                .start_workflow(
                    SelfCheck::run,
                    SelfCheckInput { node_id: node_id.clone() },
                    WorkflowStartOptions::new(QUEUE, id.clone()).build(),
                )
                .await
                .unwrap();
            let out = tokio::time::timeout(
                Duration::from_secs(60),
                handle.get_result(WorkflowGetResultOptions::default()),
            )
            .await
            .expect("workflow finishes")
            .unwrap();
            assert_eq!(out.record.workflow_id, id);
            assert_eq!(out.node.as_ref().map(|n| n.node_id.clone()), node_id);
            if let Some(n) = &out.node {
                assert!(!n.docker_version.is_empty());
            }
            let json = handle
                .fetch_history(WorkflowFetchHistoryOptions::default())
                .to_json()
                .await
                .unwrap();
            histories.push((name, json));
        }
        for stop in &stops {
            stop();
        }
        histories
    };
    let (histories, a, b) = tokio::join!(run_all, control.run(), node.run());
    a.unwrap();
    b.unwrap();

    // The activity wrote the row, once per workflow.
    assert!(store.latest_self_check().await.unwrap().is_some());

    let replayer = workflows::replayer().unwrap();
    for (name, json) in histories {
        replayer.replay_workflow(WorkflowHistory::from_json(&json).unwrap()).await.unwrap();
        if std::env::var_os("BURSTFLARE_RECORD_HISTORIES").is_some() {
            let path = crate::replay::histories_dir().join(format!("{name}.json"));
            std::fs::write(&path, &json).unwrap();
            eprintln!("saved {}", path.display());
        }
    }
}
