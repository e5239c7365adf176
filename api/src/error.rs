//! The one error type of the HTTP boundary. Every error answers
//! `{"error": {"code", "message"}}`; 5xx bodies say nothing internal, the cause is logged once.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The shape of every error answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, snake_case: what a program branches on.
    #[schema(example = "invalid_phone_number")]
    code: String,
    /// For a person.
    message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    InvalidPhoneNumber(String),
    #[error("{0}")]
    InvalidCode(String),
    #[error("locale {0:?} is not supported; supported: {supported}", supported = common::texts::supported().collect::<Vec<_>>().join(", "))]
    UnsupportedLocale(String),
    #[error("{0}")]
    ChannelUnavailable(String),
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("the request signature is missing or wrong")]
    InvalidSignature,
    #[error("no such verification")]
    VerificationNotFound,
    #[error("no such route")]
    RouteNotFound,
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    #[error("numbers of this country ({0}) are not accepted")]
    CountryNotAllowed(String),
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after: std::time::Duration,
    },
    /// The number's prefix is paused: SMS pumping is suspected there.
    #[error("{message}")]
    SuspectedPumping {
        message: String,
        retry_after: std::time::Duration,
    },
    /// The country's daily SMS budget is used up.
    #[error("{message}")]
    BudgetExhausted {
        message: String,
        retry_after: std::time::Duration,
    },
    #[error("request body is larger than 16 KiB")]
    PayloadTooLarge,
    /// The `Idempotency-Key` was used with another method, path or body.
    #[error("this Idempotency-Key was used with another request; a new request needs a new key")]
    IdempotencyKeyReused,
    /// The first request with this `Idempotency-Key` has not been answered yet.
    #[error("a request with this Idempotency-Key is still running; retry shortly")]
    IdempotencyKeyInProgress,
    #[error("{0}")]
    UnsupportedMediaType(&'static str),
    #[error("the service is temporarily unavailable; try again")]
    Unavailable(#[source] anyhow::Error),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            Self::InvalidPhoneNumber(_) => (StatusCode::BAD_REQUEST, "invalid_phone_number"),
            Self::InvalidCode(_) => (StatusCode::BAD_REQUEST, "invalid_code"),
            Self::UnsupportedLocale(_) => (StatusCode::BAD_REQUEST, "unsupported_locale"),
            Self::ChannelUnavailable(_) => (StatusCode::BAD_REQUEST, "channel_unavailable"),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::InvalidSignature => (StatusCode::FORBIDDEN, "invalid_signature"),
            Self::VerificationNotFound => (StatusCode::NOT_FOUND, "verification_not_found"),
            Self::RouteNotFound => (StatusCode::NOT_FOUND, "not_found"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::CountryNotAllowed(_) => (StatusCode::FORBIDDEN, "country_not_allowed"),
            Self::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Self::SuspectedPumping { .. } => (StatusCode::TOO_MANY_REQUESTS, "suspected_pumping"),
            Self::BudgetExhausted { .. } => (StatusCode::TOO_MANY_REQUESTS, "budget_exhausted"),
            Self::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::IdempotencyKeyReused => (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused"),
            Self::IdempotencyKeyInProgress => (StatusCode::CONFLICT, "idempotency_key_in_progress"),
            Self::UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

pub use common::db::is_outage;

impl From<sqlx::Error> for ApiError {
    /// A database that cannot be reached is an outage (503); anything else is a bug (500).
    fn from(e: sqlx::Error) -> Self {
        if is_outage(&e) {
            Self::Unavailable(e.into())
        } else {
            Self::Internal(e.into())
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        match &self {
            Self::Unavailable(cause) => {
                tracing::warn!(error = format!("{cause:#}"), "answering 503")
            }
            Self::Internal(cause) => tracing::error!(error = format!("{cause:#}"), "answering 500"),
            _ => {}
        }
        let body = Json(ErrorBody {
            error: ErrorDetail {
                code: code.to_owned(),
                message: self.to_string(),
            },
        });
        let mut response = (status, body).into_response();
        if matches!(self, Self::Unauthorized) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Self::RateLimited { retry_after, .. }
        | Self::SuspectedPumping { retry_after, .. }
        | Self::BudgetExhausted { retry_after, .. } = &self
        {
            // Rounded up: a client that waits this long finds room.
            let seconds = (retry_after.as_secs_f64().ceil() as u64).max(1).to_string();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_str(&seconds).expect("digits"));
        }
        if matches!(self, Self::Unavailable(_) | Self::IdempotencyKeyInProgress) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
