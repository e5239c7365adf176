//! Twilio's signed status callbacks: `POST /v1/webhooks/twilio/status` for messages (SMS and
//! WhatsApp), `POST /v1/webhooks/twilio/call-status` for calls.

use axum::body::Bytes;
use axum::extract::{OriginalUri, State, rejection::BytesRejection};
use axum::http::{HeaderMap, StatusCode, header::CONTENT_TYPE};
use common::repo::{self, DeliveryTarget};
use common::signature;
use common::status::DeliveryStatus;

use common::metric_names as names;
use time::OffsetDateTime;

use crate::error::{ApiError, ErrorBody};
use crate::extract::bytes_rejection;
use crate::state::AppState;

/// The parameters of a status callback the service reads (Twilio sends more; the
/// signature covers them all).
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
#[allow(dead_code)]
pub struct StatusCallback {
    #[schema(example = "SM0123456789abcdef0123456789abcdef")]
    message_sid: String,
    #[schema(example = "delivered")]
    message_status: String,
    #[schema(example = "30003")]
    error_code: Option<String>,
}

/// The status as a metric label: Twilio's documented statuses, anything else as `other`
/// (a label must not take arbitrary values from a request).
fn known_status(status: &str) -> &'static str {
    const KNOWN: [&str; 10] = [
        "queued",
        "accepted",
        "scheduled",
        "sending",
        "sent",
        "delivered",
        "undelivered",
        "failed",
        "read",
        "canceled",
    ];
    KNOWN.into_iter().find(|k| *k == status).unwrap_or("other")
}

pub const PATH: &str = common::STATUS_CALLBACK_PATH;

/// Checks `X-Twilio-Signature` against `PUBLIC_BASE_URL` + path (+ query) and every form
/// parameter, keeps the callback, and moves the delivery status forwards only. An unknown
/// `MessageSid` is kept too (the worker may not have stored it yet) and answered 204.
#[utoipa::path(
    post,
    path = "/v1/webhooks/twilio/status",
    tag = "webhooks",
    request_body(content = StatusCallback, content_type = "application/x-www-form-urlencoded"),
    params(("X-Twilio-Signature" = String, Header, description = "Twilio's signature of the URL and parameters")),
    responses(
        (status = 204, description = "Recorded (or ignored: an unknown message)"),
        (status = 400, description = "`invalid_request`: not a form, or MessageSid/MessageStatus missing", body = ErrorBody),
        (status = 403, description = "`invalid_signature`: nothing changes", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 503, description = "`unavailable`", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(message_sid))]
pub async fn twilio_status(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let params = signed_form(&state, PATH, &uri, &headers, body)?;
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let (Some(sid), Some(status)) = (param("MessageSid"), param("MessageStatus")) else {
        return Err(ApiError::InvalidRequest(
            "MessageSid and MessageStatus are required".into(),
        ));
    };
    tracing::Span::current().record("message_sid", sid);
    let error_code = param("ErrorCode").and_then(|c| c.parse::<i32>().ok());
    repo::record_event(&state.pool, sid, status, error_code).await?;
    let channel = if param("To").is_some_and(|to| to.starts_with("whatsapp:")) {
        "whatsapp"
    } else {
        "sms"
    };
    metrics::counter!(names::CALLBACKS, "status" => known_status(status), "channel" => channel).increment(1);
    advance(&state, sid, DeliveryStatus::from_twilio(status), status, error_code).await
}

/// The form of a callback to `path`, once `X-Twilio-Signature` is found right for
/// `PUBLIC_BASE_URL` + `path` (+ query) and every parameter.
fn signed_form(
    state: &AppState,
    path: &str,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Vec<(String, String)>, ApiError> {
    let body = body.map_err(|e| bytes_rejection(&e))?;
    let is_form = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(ApiError::UnsupportedMediaType(
            "Content-Type must be application/x-www-form-urlencoded",
        ));
    }
    let params: Vec<(String, String)> =
        serde_urlencoded::from_bytes(&body).map_err(|_| ApiError::InvalidRequest("body is not a valid form".into()))?;
    let base = &state.config.shared.public_base_url;
    let url = match uri.query() {
        Some(q) => format!("{base}{path}?{q}"),
        None => format!("{base}{path}"),
    };
    let given = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !signature::is_valid(state.config.shared.twilio_auth_token.expose(), &url, &params, given) {
        tracing::warn!(path, "status callback with a missing or wrong signature refused");
        return Err(ApiError::InvalidSignature);
    }
    Ok(params)
}

/// Moves the delivery of the step whose provider sid is `sid` forwards to `next` (only
/// forwards: callbacks arrive out of order and twice).
async fn advance(
    state: &AppState,
    sid: &str,
    next: Option<DeliveryStatus>,
    status: &str,
    error_code: Option<i32>,
) -> Result<StatusCode, ApiError> {
    let Some(next) = next else {
        return Ok(StatusCode::NO_CONTENT);
    };
    match repo::advance_delivery(&state.pool, DeliveryTarget::MessageSid(sid), next, error_code).await? {
        Some(changed) => {
            if next == DeliveryStatus::Delivered {
                let took = OffsetDateTime::now_utc() - changed.created_at;
                metrics::histogram!(names::TIME_TO_DELIVERED).record(took.as_seconds_f64().max(0.0));
            }
            // The start's request id ties this line to the start and the worker's lines.
            let request_id = changed.request_id.as_deref().unwrap_or("");
            tracing::info!(status, error_code, verification_id = %changed.id, start_request_id = request_id, "delivery status recorded");
        }
        None => tracing::info!(
            status,
            "status callback changed nothing (late, repeated, or unknown message)"
        ),
    }
    Ok(StatusCode::NO_CONTENT)
}

pub const CALL_PATH: &str = common::CALL_STATUS_CALLBACK_PATH;

/// The parameters of a call status callback the service reads.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
#[allow(dead_code)]
pub struct CallStatusCallback {
    #[schema(example = "CA0123456789abcdef0123456789abcdef")]
    call_sid: String,
    #[schema(example = "completed")]
    call_status: String,
    #[schema(example = "3")]
    sequence_number: Option<String>,
}

/// The call status as a metric label, like [`known_status`].
fn known_call_status(status: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "queued",
        "initiated",
        "ringing",
        "in-progress",
        "completed",
        "busy",
        "no-answer",
        "failed",
        "canceled",
    ];
    KNOWN.into_iter().find(|k| *k == status).unwrap_or("other")
}

/// A verification call's progress, signed like message callbacks. The events arrive as
/// separate requests in no guaranteed order; the delivery status only moves forwards, so a
/// late `ringing` after `completed` changes nothing.
#[utoipa::path(
    post,
    path = "/v1/webhooks/twilio/call-status",
    tag = "webhooks",
    request_body(content = CallStatusCallback, content_type = "application/x-www-form-urlencoded"),
    params(("X-Twilio-Signature" = String, Header, description = "Twilio's signature of the URL and parameters")),
    responses(
        (status = 204, description = "Recorded (or ignored: an unknown call)"),
        (status = 400, description = "`invalid_request`: not a form, or CallSid/CallStatus missing", body = ErrorBody),
        (status = 403, description = "`invalid_signature`: nothing changes", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 503, description = "`unavailable`", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(call_sid))]
pub async fn call_status(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let params = signed_form(&state, CALL_PATH, &uri, &headers, body)?;
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let (Some(sid), Some(status)) = (param("CallSid"), param("CallStatus")) else {
        return Err(ApiError::InvalidRequest("CallSid and CallStatus are required".into()));
    };
    tracing::Span::current().record("call_sid", sid);
    repo::record_event(&state.pool, sid, status, None).await?;
    metrics::counter!(names::CALLBACKS, "status" => known_call_status(status), "channel" => "call").increment(1);
    advance(&state, sid, DeliveryStatus::from_call(status), status, None).await
}
