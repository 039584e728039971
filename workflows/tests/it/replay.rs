use std::path::PathBuf;

use temporalio_client::WorkflowHistory;
use temporalio_sdk::Runtime;

pub fn histories_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/histories")
}

#[tokio::test]
async fn every_saved_history_replays_against_the_current_workflow_code() {
    let _runtime = Runtime::from_current_tokio(Default::default()).unwrap();
    let replayer = workflows::replayer().unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(histories_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no saved histories under {}", histories_dir().display());
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        let history = WorkflowHistory::from_json(&bytes).unwrap();
        replayer
            .replay_workflow(history)
            .await
            .unwrap_or_else(|e| panic!("{} no longer replays: {e:?}", file.display()));
    }
}
