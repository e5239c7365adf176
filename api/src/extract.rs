//! Request extractors whose rejections answer in the API's error shape.

use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Largest request body accepted anywhere.
pub const BODY_LIMIT: usize = 16 * 1024;

/// `axum::Json`, but a bad body answers 400 `invalid_request` (or 413 / 415) in our shape.
pub struct StrictJson<T>(pub T);

impl<S, T> FromRequest<S> for StrictJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::UnsupportedMediaType("Content-Type must be application/json")
        }
        JsonRejection::BytesRejection(b) => bytes_rejection(&b),
        JsonRejection::JsonDataError(e) => ApiError::InvalidRequest(format!("invalid request body: {}", e.body_text())),
        JsonRejection::JsonSyntaxError(e) => ApiError::InvalidRequest(format!("malformed JSON: {}", e.body_text())),
        other => ApiError::InvalidRequest(other.body_text()),
    }
}

pub fn bytes_rejection(rejection: &BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge
    } else {
        ApiError::InvalidRequest("could not read the request body".into())
    }
}
