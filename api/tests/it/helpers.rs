//! `spawn_app`: a whole dev stack in this process with the API on a free port, and a typed
//! client for it, so tests use the API the way the CLI does.

use burstflare_api::dev::DevStack;
use burstflare_api::{AppState, http};

pub struct TestApp {
    pub client: sdk::Client,
    pub base: String,
    pub stack: Option<DevStack>,
    _dir: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// [`spawn_app`] with a last say over the stack's configuration.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut domain::Config)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let (stack, listener) =
        DevStack::start_with(dir.path(), 0, tweak).await.expect("dev stack starts");
    let addr = listener.local_addr().unwrap();
    let state = AppState::new(stack.config.clone(), stack.store.clone()).unwrap();
    let server = tokio::spawn(async move {
        http::serve(listener, http::router(state), std::future::pending()).await.unwrap();
    });
    let base = format!("http://{addr}");
    TestApp {
        client: sdk::Client::new(&base).unwrap(),
        base,
        stack: Some(stack),
        _dir: dir,
        server,
    }
}

impl TestApp {
    pub async fn stop(mut self) {
        self.server.abort();
        if let Some(stack) = self.stack.take() {
            stack.stop().await;
        }
    }
}

/// The actions of the workspace's newest 200 audit events, newest first.
pub async fn audit_actions(client: &sdk::Client, ws: &str) -> Vec<String> {
    let page: serde_json::Value = client
        .request(
            sdk::client::Method::GET,
            &sdk::client::workspace_path(ws, "/audit?limit=200"),
            sdk::client::NO_BODY,
        )
        .await
        .unwrap();
    page["events"]
        .as_array()
        .or_else(|| page.as_array())
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect()
}
