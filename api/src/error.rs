//! `AppError`: how failures become HTTP responses. The client gets the `sdk::ApiError` body;
//! internal causes are logged once and never sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sdk::{ApiError, ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{message}")]
    Invalid { field: &'static str, message: String },
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    fn status_and_body(&self) -> (StatusCode, ApiError) {
        match self {
            AppError::Invalid { field, message } => (
                StatusCode::BAD_REQUEST,
                ApiError::new(ErrorCode::InvalidRequest, message.clone())
                    .with_details(serde_json::json!({ "field": field })),
            ),
            AppError::NotFound => {
                (StatusCode::NOT_FOUND, ApiError::new(ErrorCode::NotFound, "not found"))
            }
            AppError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                ApiError::new(ErrorCode::Internal, "internal error; see the server log"),
            ),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if let AppError::Internal(e) = &self {
            tracing::error!(error = format!("{e:#}"), "request failed");
        }
        let (status, body) = self.status_and_body();
        (status, Json(body)).into_response()
    }
}
