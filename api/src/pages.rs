//! HTML pages: thin handlers that call the same operations as the JSON API and render
//! `web::pages`.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

pub fn not_found_page() -> Response {
    (StatusCode::NOT_FOUND, Html(web::pages::error_page(404, "This page does not exist.").into_string()))
        .into_response()
}

/// Every page route with its access rule.
pub fn routes() -> Vec<crate::routes::RouteDef> {
    Vec::new()
}
