//! The router: JSON under `/api`, pages, assets and `/metrics`.

use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use sdk::routes;

use crate::{AppError, AppState, health, metrics};

pub fn router(state: AppState) -> Router {
    let _ = metrics::handle();
    Router::new()
        .route(routes::HEALTH, get(health_handler))
        .route(routes::VERSION, get(version_handler))
        .route(routes::METRICS, get(metrics_handler))
        .route("/", get(home))
        .route(web::STYLESHEET_PATH, get(stylesheet))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(metrics::track))
        .with_state(state)
}

pub fn version() -> sdk::VersionResponse {
    sdk::VersionResponse {
        name: "burstflare".into(),
        version: crate::VERSION.into(),
        api: "v1".into(),
        commit: option_env!("BURSTFLARE_COMMIT").map(str::to_string),
    }
}

async fn health_handler(State(state): State<AppState>) -> Response {
    let report = health::check_all(&state).await;
    let status = if report.is_ok() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(report)).into_response()
}

async fn version_handler() -> Json<sdk::VersionResponse> {
    Json(version())
}

async fn metrics_handler() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        metrics::handle().render(),
    )
}

async fn home(State(state): State<AppState>) -> Html<String> {
    let report = health::check_all(&state).await;
    Html(web::pages::home(&version(), &report).into_string())
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        web::STYLESHEET,
    )
}

/// JSON 404 under `/api`, a page elsewhere.
async fn not_found(uri: Uri) -> Response {
    if uri.path().starts_with("/api") {
        AppError::NotFound.into_response()
    } else {
        (
            StatusCode::NOT_FOUND,
            Html(web::pages::error_page(404, "This page does not exist.").into_string()),
        )
            .into_response()
    }
}
