use std::collections::BTreeMap;

use crate::helpers::spawn_app;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_ok_when_every_dependency_is_up_and_metrics_and_pages_are_served() {
    let app = spawn_app().await;

    let health = app.client.health().await.unwrap();
    let expected: BTreeMap<String, String> =
        sdk::HEALTH_CHECKS.iter().map(|c| (c.to_string(), "ok".to_string())).collect();
    assert_eq!(health.checks, expected);
    assert!(health.is_ok());

    let raw = reqwest::get(format!("{}/api/health", app.base)).await.unwrap();
    assert_eq!(raw.status(), 200);

    let version = app.client.version().await.unwrap();
    assert_eq!(version.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(version.api, "v1");

    // Pages live on public_url's host (localhost: passkeys need a domain); 127.0.0.1 redirects.
    let no_follow =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = no_follow.get(format!("{}/signin?return_to=/account", app.base)).send().await.unwrap();
    assert_eq!(r.status(), 307);
    let port = app.base.rsplit(':').next().unwrap();
    assert_eq!(
        r.headers()["location"].to_str().unwrap(),
        format!("http://localhost:{port}/signin?return_to=/account")
    );
    let home = reqwest::get(&app.base).await.unwrap();
    assert_eq!(home.status(), 200);
    let html = home.text().await.unwrap();
    assert!(html.contains("Platform health"), "{html}");

    let missing = reqwest::get(format!("{}/api/v1/nothing-here", app.base)).await.unwrap();
    assert_eq!(missing.status(), 404);
    let body: sdk::ApiError = missing.json().await.unwrap();
    assert_eq!(body.code, sdk::ErrorCode::NotFound);

    let metrics =
        reqwest::get(format!("{}/metrics", app.base)).await.unwrap().text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("http_requests_total")
            && l.contains("route=\"/api/health\"")
            && l.contains("status=\"200\"")),
        "{metrics}"
    );

    // The start-up SelfCheck workflow wrote its row through the worker's activity.
    let stack = app.stack.as_ref().unwrap();
    let check = stack.store.latest_self_check().await.unwrap().expect("a self-check row");
    assert!(check.workflow_id.starts_with("self-check-"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_503_and_names_each_dependency_that_is_down() {
    let app = spawn_app().await;
    let stack = app.stack.as_ref().unwrap();
    // Point the API at a registry and a Temporal that are not there; keep the rest real.
    let closed = burstflare_api::dev::free_port().unwrap();
    let mut config = stack.config.clone();
    config.registry.url = url::Url::parse(&format!("http://127.0.0.1:{closed}")).unwrap();
    config.temporal.address = url::Url::parse(&format!("http://127.0.0.1:{closed}")).unwrap();
    config.docker.socket = "/nonexistent/docker.sock".into();
    let state = burstflare_api::AppState::new(config, stack.store.clone()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let router = burstflare_api::http::router(state);
        burstflare_api::http::serve(listener, router, std::future::pending()).await.unwrap();
    });

    let resp = reqwest::get(format!("{base}/api/health")).await.unwrap();
    assert_eq!(resp.status(), 503);
    let health: sdk::HealthResponse = resp.json().await.unwrap();
    assert_eq!(health.status, sdk::HealthStatus::Degraded);
    assert_eq!(health.checks["database"], "ok");
    assert_eq!(health.checks["storage"], "ok");
    assert!(health.checks["registry"].contains("registry is not reachable"), "{health:?}");
    assert!(health.checks["temporal"].contains("Temporal"), "{health:?}");
    assert!(health.checks["docker"].contains("/nonexistent/docker.sock"), "{health:?}");
    server.abort();
    app.stop().await;
}
