//! `GET /api/health`: every dependency checked concurrently, each with a deadline.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use sdk::HealthResponse;

use crate::AppState;

const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

async fn bounded<F, E>(fut: F) -> String
where
    F: Future<Output = Result<(), E>>,
    E: Into<anyhow::Error>,
{
    match tokio::time::timeout(CHECK_TIMEOUT, fut).await {
        Ok(Ok(())) => "ok".to_string(),
        // With its causes: "database error" alone would not help anyone.
        Ok(Err(e)) => format!("{:#}", e.into()),
        Err(_) => format!("timed out after {}s", CHECK_TIMEOUT.as_secs()),
    }
}

pub async fn check_all(state: &AppState) -> HealthResponse {
    let (database, storage, temporal, docker, registry) = tokio::join!(
        bounded(async { state.store.ping().await }),
        bounded(async { state.blob.check().await }),
        bounded(async { state.temporal.check().await }),
        bounded(check_docker(state)),
        bounded(check_registry(state)),
    );
    let checks = BTreeMap::from([
        ("database".to_string(), database),
        ("storage".to_string(), storage),
        ("temporal".to_string(), temporal),
        ("docker".to_string(), docker),
        ("registry".to_string(), registry),
    ]);
    HealthResponse::from_checks(checks)
}

async fn check_docker(state: &AppState) -> anyhow::Result<()> {
    let socket = state.config.docker.socket.display();
    let docker = state
        .docker
        .as_ref()
        .map_err(|e| anyhow::anyhow!("Docker is not reachable at {socket}: {e}"))?;
    docker
        .ping()
        .await
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("Docker is not reachable at {socket}: {e}"))
}

async fn check_registry(state: &AppState) -> anyhow::Result<()> {
    let url = state.config.registry.url.join("/v2/")?;
    let resp = state.http.get(url.clone()).send().await.map_err(|e| {
        anyhow::anyhow!(
            "registry is not reachable at {}: {}",
            state.config.registry.url,
            root_cause(&e)
        )
    })?;
    // 401 means the registry is up and wants credentials, which the build worker has.
    match resp.status().as_u16() {
        200 | 401 => Ok(()),
        other => Err(anyhow::anyhow!("registry answered {other} at {url}")),
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// A health report at most 15 s old, for pages.
pub async fn cached(state: &AppState) -> HealthResponse {
    let mut cache = state.health_cache.lock().await;
    if let Some((at, report)) = cache.as_ref()
        && at.elapsed() < Duration::from_secs(15)
    {
        return report.clone();
    }
    let report = check_all(state).await;
    *cache = Some((std::time::Instant::now(), report.clone()));
    report
}
