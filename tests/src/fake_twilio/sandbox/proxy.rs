//! `/sandbox/api/v1/…`: the page's requests to the API, with the development key added. The
//! page is served by the fake and the API listens elsewhere; going through the fake keeps the
//! page on one origin and the key out of it.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::fake_twilio::state::Shared;

/// The request headers passed on, besides the key.
const PASSED: [&str; 3] = ["content-type", "idempotency-key", "x-request-id"];

pub(crate) async fn forward(
    State(shared): State<Arc<Shared>>,
    Path(path): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(api) = shared.memory.lock().expect("fake memory").sandbox_api.clone() else {
        return refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "sandbox_api_unset",
            "this fake Twilio was not told where the API is (local-stack tells it; for fake-twilio alone set SANDBOX_API_URL and SANDBOX_API_KEY)",
        );
    };
    if !path.starts_with("v1/") || path.contains("..") {
        return refusal(
            StatusCode::NOT_FOUND,
            "not_found",
            "only the API's /v1/ paths are passed on",
        );
    }
    let mut request = shared
        .http
        .request(method, format!("{}/{path}", api.base_url))
        .bearer_auth(&api.api_key)
        .body(body);
    for name in PASSED {
        if let Some(value) = headers.get(name) {
            request = request.header(name, value);
        }
    }
    match request.send().await {
        Ok(answer) => {
            let status = answer.status();
            let kind = answer.headers().get(header::CONTENT_TYPE).cloned();
            let body = answer.bytes().await.unwrap_or_default();
            let mut response = (status, body).into_response();
            if let Some(kind) = kind {
                response.headers_mut().insert(header::CONTENT_TYPE, kind);
            }
            response
        }
        Err(e) => refusal(
            StatusCode::BAD_GATEWAY,
            "api_unreachable",
            &format!("the API at {} did not answer: {e}", api.base_url),
        ),
    }
}

fn refusal(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}
