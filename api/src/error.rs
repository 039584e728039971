//! `AppError`: how failures become HTTP responses. The client gets the `sdk::ApiError` body;
//! internal causes are logged once and never sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use domain::StoreError;
use sdk::{ApiError, ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Bad input: `message` names the field and the limit.
    #[error("{message}")]
    Invalid { field: &'static str, message: String },
    /// Bad input in a field named at run time (bundle and manifest checks); `too_large` answers
    /// 413 instead of 400.
    #[error("{message}")]
    InvalidField { field: String, message: String, too_large: bool },
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    /// Missing, or not yours: the two answers are identical.
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    RateLimited(&'static str),
    /// Asked again sooner than a configured interval allows; the message names the setting.
    #[error("{0}")]
    TooSoon(String),
    /// A dependency is down; retrying later may work.
    #[error("{0}")]
    Unavailable(&'static str),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        AppError::Invalid { field, message: message.into() }
    }

    pub fn status_and_body(&self) -> (StatusCode, ApiError) {
        match self {
            AppError::Invalid { field, message } => (
                StatusCode::BAD_REQUEST,
                ApiError::new(ErrorCode::InvalidRequest, message.clone())
                    .with_details(serde_json::json!({ "field": field })),
            ),
            AppError::InvalidField { field, message, too_large } => (
                if *too_large { StatusCode::PAYLOAD_TOO_LARGE } else { StatusCode::BAD_REQUEST },
                ApiError::new(ErrorCode::InvalidRequest, message.clone())
                    .with_details(serde_json::json!({ "field": field })),
            ),
            AppError::Unauthenticated(m) => {
                (StatusCode::UNAUTHORIZED, ApiError::new(ErrorCode::Unauthenticated, *m))
            }
            AppError::Forbidden(m) => {
                (StatusCode::FORBIDDEN, ApiError::new(ErrorCode::Forbidden, *m))
            }
            AppError::NotFound => {
                (StatusCode::NOT_FOUND, ApiError::new(ErrorCode::NotFound, "not found"))
            }
            AppError::Conflict(m) => {
                (StatusCode::CONFLICT, ApiError::new(ErrorCode::Conflict, m.clone()))
            }
            AppError::RateLimited(m) => {
                (StatusCode::TOO_MANY_REQUESTS, ApiError::new(ErrorCode::RateLimited, *m))
            }
            AppError::TooSoon(m) => {
                (StatusCode::TOO_MANY_REQUESTS, ApiError::new(ErrorCode::RateLimited, m.clone()))
            }
            AppError::Unavailable(m) => {
                (StatusCode::SERVICE_UNAVAILABLE, ApiError::new(ErrorCode::Unavailable, *m))
            }
            AppError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                ApiError::new(ErrorCode::Internal, "internal error; see the server log"),
            ),
        }
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => AppError::NotFound,
            StoreError::Conflict { what } => AppError::Conflict(conflict_message(what)),
            StoreError::Invalid(message) => {
                let field = field_of(&message);
                AppError::Invalid { field, message }
            }
            other => AppError::Internal(anyhow::Error::new(other)),
        }
    }
}

impl From<domain::ids::IdError> for AppError {
    fn from(e: domain::ids::IdError) -> Self {
        let message = e.to_string();
        AppError::Invalid { field: field_of(&message), message }
    }
}

fn conflict_message(what: &str) -> String {
    match what {
        "last owner" => "the workspace must keep at least one owner".into(),
        "last passkey" => "this is your last passkey and no recovery code is left: add another \
                           passkey or regenerate recovery codes first"
            .into(),
        "credential" => "this passkey is already registered".into(),
        "membership" => "you are already a member of this workspace".into(),
        "email" => "email: an account with this email exists; sign in instead".into(),
        "slug" => "slug: this workspace address is taken".into(),
        other => format!("{other} is already taken"),
    }
}

/// The field a validation message starts with (`"email: must be ..."`), for `details.field`.
fn field_of(message: &str) -> &'static str {
    const FIELDS: [&str; 12] = [
        "email",
        "display_name",
        "name",
        "slug",
        "role",
        "code",
        "token",
        "expires_in_days",
        "credential",
        "ceremony_id",
        "user",
        "body",
    ];
    let head = message.split(':').next().unwrap_or("");
    FIELDS.iter().find(|f| **f == head).copied().unwrap_or("request")
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
