//! Starting, checking and reading verifications.

use axum::extract::{Path, State, rejection::PathRejection};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use common::code::Code;
use common::job::SendJob;
use common::metric_names as names;
use common::phone::PhoneNumber;
use common::repo::{self, NewRow};
use common::status::VerificationStatus;
use common::texts;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::client_ip::ClientIp;
use crate::error::{ApiError, ErrorBody};
use crate::extract::StrictJson;
use crate::idempotency::{AnswerStored, Held, KeyTaken};
use crate::state::AppState;

pub use super::views::{Checked, Started, VerificationView};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    /// E.164: `+` and 8 to 15 digits.
    #[schema(example = "+14155552671", pattern = r"^\+[1-9][0-9]{7,14}$")]
    phone_number: String,
    /// BCP 47 tag of the language the code is sent in (`es`, `pt-BR`; `es-MX` is served
    /// in `es`). Without it, the number's country picks; else English.
    #[schema(example = "es")]
    #[serde(default)]
    locale: Option<String>,
    /// The channels to send the code on, in order (`sms`, `whatsapp`, `call`; 1 to 3, no
    /// repeats); default `DEFAULT_CHANNELS`. The first is used at once, the next when the one
    /// in use fails for good or goes `FALLBACK_AFTER_SECONDS` without approval.
    #[schema(example = json!(["sms", "call"]))]
    #[serde(default)]
    channels: Option<Vec<String>>,
}

/// The `Idempotency-Key` header of the two POST routes ([`crate::idempotency`]).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct IdempotencyHeader {
    /// 1 to 255 visible ASCII characters, chosen by the client per logical request; the same
    /// key and body within 24 hours answer the first answer again with no new effect (per API key).
    #[param(rename = "Idempotency-Key", max_length = 255, min_length = 1)]
    idempotency_key: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    #[schema(example = "+14155552671", pattern = r"^\+[1-9][0-9]{7,14}$")]
    phone_number: String,
    /// `CODE_LENGTH` digits.
    #[schema(example = "123456", pattern = "^[0-9]{4,10}$")]
    code: String,
}

fn parse_phone(raw: &str) -> Result<PhoneNumber, ApiError> {
    PhoneNumber::parse(raw).map_err(|e| ApiError::InvalidPhoneNumber(e.to_string()))
}

fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// `POST /v1/verifications`: store the verification with its send job (the transactional
/// outbox, one statement shared with concurrent starts) and answer 202 once that commit is
/// made; the job is published moments later ([`crate::outbox`]). The same statement cancels
/// older pending verifications of the number. While the broker is known to be down, starts
/// are refused (503) and nothing is stored, rather than piling up jobs for the relay.
#[utoipa::path(
    post,
    path = "/v1/verifications",
    tag = "verifications",
    request_body = StartRequest,
    security(("bearer" = [])),
    params(IdempotencyHeader),
    responses(
        (status = 202, description = "Stored, with its SMS job committed in the same transaction (or, with a known `Idempotency-Key`, the first answer again)", body = Started,
            headers(("Idempotent-Replayed" = String, description = "`true` on an answer replayed for an `Idempotency-Key`"))),
        (status = 400, description = "`invalid_phone_number`, `unsupported_locale`, `channel_unavailable` or `invalid_request`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`country_not_allowed`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 409, description = "`idempotency_key_in_progress`: the first request with this key is still running", body = ErrorBody, headers(("Retry-After" = u64, description = "seconds"))),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`idempotency_key_reused`: the key was used with another request", body = ErrorBody),
        (status = 429, description = "`rate_limited`; `suspected_pumping` (the number's prefix is paused by the pumping guard); `budget_exhausted` (the country's daily SMS budget is used up). Nothing stored, nothing sent", body = ErrorBody, headers(("Retry-After" = u64, description = "seconds"))),
        (status = 503, description = "`unavailable`: nothing stored, nothing sent", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(verification_id))]
pub async fn start(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    held: Option<Extension<Held>>,
    StrictJson(req): StrictJson<StartRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let phone = parse_phone(&req.phone_number)?;
    let locale = match req.locale.as_deref() {
        Some(tag) => texts::parse_locale(tag).ok_or_else(|| ApiError::UnsupportedLocale(tag.to_owned()))?,
        None => texts::locale_for_country(phone.country()),
    };
    let channels = state
        .config
        .channels
        .choose(req.channels.as_deref(), &state.config.shared.channels)?;
    // A test number's start sends nothing: no rules, limits or broker stand in its way.
    let test_code = state.config.test_numbers.test_numbers.code_for(&phone);
    let code = match test_code {
        Some(fixed) => Code::parse(fixed, state.config.code_length).map_err(|e| ApiError::Internal(e.into()))?,
        None => {
            state.limits.admit_start(&phone, &channels, ip).await?;
            state.publisher.channel().await.map_err(ApiError::Unavailable)?;
            Code::generate(state.config.code_length)
        }
    };
    let id = Uuid::new_v4();
    tracing::Span::current().record("verification_id", tracing::field::display(id));
    let request_id = request_id(&headers);
    let sealed = state.config.shared.sealer.seal(id, &code);
    let row = NewRow {
        id,
        phone_number: phone.as_str().to_owned(),
        code_hmac: state.hasher.digest(id, &code),
        max_check_attempts: state.config.max_check_attempts,
        ttl_seconds: state.config.code_ttl.as_secs_f64(),
        request_id: request_id.clone(),
        sealed_code: sealed.clone(),
        locale: locale.to_owned(),
        channels: channels.iter().map(|c| c.as_str().to_owned()).collect(),
        fallback_after_seconds: state.config.channels.fallback_after.as_secs() as i32,
        idempotency: held.as_ref().map(|Extension(h)| h.start_key()),
        test: test_code.is_some(),
    };
    let job = SendJob::new(id, common::seal::to_text(&sealed), request_id);
    let Some((verification, superseded)) = state.starts.insert(row, job).await? else {
        // The key was taken meanwhile: nothing was stored; the middleware answers for the key.
        return Ok(Extension(KeyTaken).into_response());
    };
    if superseded > 0 {
        tracing::info!(canceled = superseded, "superseded older verifications");
    }
    if verification.test {
        metrics::counter!(names::TEST_STARTS).increment(1);
        tracing::info!(phone = %phone.masked(), "test number's verification started; nothing is sent");
    } else {
        state.guard.record_start(&phone);
        metrics::counter!(names::VERIFICATIONS_STARTED).increment(1);
        tracing::info!(phone = %phone.masked(), "verification started");
    }
    // With a key, the statement stored this answer for it (as the verification).
    let stored = held.map(|_| Extension(AnswerStored));
    Ok((StatusCode::ACCEPTED, stored, Json(Started::from(verification))).into_response())
}

/// `POST /v1/verifications/check`: one attempt is counted before the comparison (see
/// [`repo::reserve_checks`], batched with concurrent checks); the comparison of HMACs is constant-time.
#[utoipa::path(
    post,
    path = "/v1/verifications/check",
    tag = "verifications",
    request_body = CheckRequest,
    security(("bearer" = [])),
    params(IdempotencyHeader),
    responses(
        (status = 200, description = "Checked: `approved`, `pending` (wrong code) or `max_attempts_reached`", body = Checked),
        (status = 400, description = "`invalid_code`, `invalid_phone_number` or `invalid_request`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`verification_not_found`: no pending verification for the number", body = ErrorBody),
        (status = 409, description = "`idempotency_key_in_progress`", body = ErrorBody, headers(("Retry-After" = u64, description = "seconds"))),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`idempotency_key_reused`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody, headers(("Retry-After" = u64, description = "seconds"))),
        (status = 503, description = "`unavailable`", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(verification_id))]
pub async fn check(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    StrictJson(req): StrictJson<CheckRequest>,
) -> Result<Json<Checked>, ApiError> {
    let phone = parse_phone(&req.phone_number)?;
    let code = Code::parse(&req.code, state.config.code_length).map_err(|e| ApiError::InvalidCode(e.to_string()))?;
    let ticket = state.limits.admit_check(&phone, ip).await?;
    let Some(reserved) = state.checks.reserve(phone.as_str()).await? else {
        ticket.not_wrong(&state.limits).await;
        metrics::counter!(names::CHECKS, "outcome" => "not_found").increment(1);
        return Err(ApiError::VerificationNotFound);
    };
    tracing::Span::current().record("verification_id", tracing::field::display(reserved.id));
    let remaining = reserved.max_check_attempts - reserved.check_attempts;
    let valid = state.hasher.matches(reserved.id, &code, &reserved.code_hmac);
    if valid {
        ticket.not_wrong(&state.limits).await;
    }
    let (status, delivery_status) = if valid {
        let v = repo::approve(&state.pool, reserved.id).await?;
        // None: it expired, or a new start superseded it, between the two statements.
        let v = v.ok_or(ApiError::VerificationNotFound)?;
        if !v.test {
            state.guard.record_approval(&phone, v.created_at);
        }
        (v.status, v.delivery_status)
    } else if remaining == 0 {
        let v = repo::exhaust(&state.pool, reserved.id).await?;
        (
            VerificationStatus::MaxAttemptsReached,
            v.map_or(reserved.delivery_status, |v| v.delivery_status),
        )
    } else {
        (VerificationStatus::Pending, reserved.delivery_status)
    };
    let outcome = if valid {
        "approved"
    } else if remaining == 0 {
        "max_attempts_reached"
    } else {
        "wrong_code"
    };
    metrics::counter!(names::CHECKS, "outcome" => outcome).increment(1);
    tracing::info!(outcome, attempts_remaining = remaining, "code checked");
    Ok(Json(Checked {
        id: reserved.id,
        phone_number: phone.as_str().to_owned(),
        status,
        valid,
        attempts_remaining: remaining,
        delivery_status,
    }))
}

/// `GET /v1/verifications/{id}`.
#[utoipa::path(
    get,
    path = "/v1/verifications/{id}",
    tag = "verifications",
    params(("id" = String, Path, description = "the verification's id (a UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The verification", body = VerificationView),
        (status = 400, description = "`invalid_request`: the id is not a UUID", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`verification_not_found`", body = ErrorBody),
        (status = 503, description = "`unavailable`", body = ErrorBody),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    id: Result<Path<Uuid>, PathRejection>,
) -> Result<Json<VerificationView>, ApiError> {
    let Path(id) = id.map_err(|_| ApiError::InvalidRequest("id must be a UUID".into()))?;
    let verification = repo::find(&state.pool, id)
        .await?
        .ok_or(ApiError::VerificationNotFound)?;
    // The steps that ended are kept apart; a verification on its first step has none.
    let ended = if verification.step > 0 {
        repo::ended_steps(&state.pool, id).await?
    } else {
        Vec::new()
    };
    Ok(Json(VerificationView::new(verification, ended)))
}
