//! The router: JSON under `/api`, pages, assets and `/metrics`.

use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use sdk::routes;

use crate::routes::RouteDef;
use crate::{AppError, AppState, health, metrics};

/// Every route behind an access rule: the JSON API and the pages.
pub fn route_table() -> Vec<RouteDef> {
    let mut defs = crate::v1::routes();
    defs.extend(crate::connect::routes());
    defs.extend(crate::pages::routes());
    defs
}

pub fn router(state: AppState) -> Router {
    let _ = metrics::handle();
    Router::new()
        .route(routes::HEALTH, get(health_handler))
        .route(routes::VERSION, get(version_handler))
        .route(routes::METRICS, get(metrics_handler))
        .route(web::STYLESHEET_PATH, get(stylesheet))
        .route(web::PASSKEYS_JS_PATH, get(|| script(web::PASSKEYS_JS)))
        .route(web::LIVE_JS_PATH, get(|| script(web::LIVE_JS)))
        .route(web::BUILD_LOG_JS_PATH, get(|| script(web::BUILD_LOG_JS)))
        .route(web::SESSION_JS_PATH, get(|| script(web::SESSION_JS)))
        .route(web::PROMOTION_JS_PATH, get(|| script(web::PROMOTION_JS)))
        .route(web::TERMINAL_JS_PATH, get(|| script(web::TERMINAL_JS)))
        .route(web::XTERM_JS_PATH, get(|| script(web::XTERM_JS)))
        .route(web::XTERM_FIT_JS_PATH, get(|| script(web::XTERM_FIT_JS)))
        .route(
            web::XTERM_CSS_PATH,
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/css; charset=utf-8"),
                        (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
                    ],
                    web::XTERM_CSS,
                )
            }),
        )
        .route(web::FAVICON_PATH, get(favicon))
        .route(
            "/favicon.ico",
            get(|| async { axum::response::Redirect::permanent(web::FAVICON_PATH) }),
        )
        .merge(crate::routes::mount(&state, route_table()))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::auth::csrf_guard))
        .layer(axum::middleware::from_fn_with_state(state.clone(), canonical_host))
        .layer(axum::middleware::from_fn(metrics::track))
        .with_state(state)
}

/// Serves `router` on `listener` with the peer address available to handlers (audit IPs)
/// until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // Small API answers and tunnel frames go out at once instead of waiting for a delayed ACK.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
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

async fn favicon() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "image/svg+xml"), (header::CACHE_CONTROL, "public, max-age=86400")],
        web::FAVICON_SVG,
    )
}

async fn script(body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        body,
    )
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

/// Pages opened under another host name than `public_url`'s (say 127.0.0.1 instead of
/// localhost) redirect to it: passkeys and cookies are bound to that one origin. The JSON API
/// and assets answer under any host.
async fn canonical_host(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let public = &state.config.public_url;
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let expected = match (public.host_str(), public.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => String::new(),
    };
    let page = req.method() == axum::http::Method::GET
        && !req.uri().path().starts_with("/api/")
        && !req.uri().path().starts_with("/assets/")
        && req.uri().path() != routes::METRICS;
    if page && !host.is_empty() && !expected.is_empty() && host != expected {
        let target = format!(
            "{}{}",
            public.as_str().trim_end_matches('/'),
            req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/")
        );
        return axum::response::Redirect::temporary(&target).into_response();
    }
    next.run(req).await
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
