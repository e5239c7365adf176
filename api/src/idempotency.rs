//! `Idempotency-Key` on `POST /v1/verifications` and `POST /v1/verifications/check` (the IETF
//! httpapi draft "The Idempotency-Key HTTP Header Field"): the same key with the same request
//! within 24 hours answers the first answer again, with no new effect.
//!
//! Keys live in PostgreSQL (`idempotency_keys`), scoped per API key, so every replica agrees:
//! a request takes its key in one statement before it runs; a second request with the key
//! then gets 422 (another method, path or body), 409 (the first is still running) or the
//! first answer, replayed with `Idempotent-Replayed: true`. Answers that carried the request
//! out or refused it for good (2xx, 4xx) are kept; one that did not carry it out and may
//! succeed later (429, 5xx) gives the key up, so a retry with it runs afresh.
//!
//! A process that dies while holding a key holds it until its lease runs out (409 meanwhile),
//! then the next request takes it over. A start ties its verification to the key in the very
//! statement that stores it, so a start that committed before its process died is answered
//! from that verification, never started twice.

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use common::repo::{self, IdempotencyKey, Taken};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::ApiError;
use crate::extract::BODY_LIMIT;
use crate::routes::verifications::Started;
use crate::state::AppState;

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// The header on a replayed answer.
pub const REPLAYED: &str = "idempotent-replayed";
/// The longest key.
pub const MAX_LEN: usize = 255;
/// How long a running request holds its key before another may take it over (its process
/// died): far longer than any request runs.
const LEASE_SECONDS: f64 = 60.0;

/// The key a running request holds; the start handler hands it to its statement.
#[derive(Debug, Clone)]
pub struct Held {
    pub key: IdempotencyKey,
    pub holder: String,
}

/// The middleware of the two POST routes (after authentication).
pub async fn idempotent(State(state): State<AppState>, request: Request, next: Next) -> Result<Response, ApiError> {
    let Some(value) = request.headers().get(HEADER) else {
        return Ok(next.run(request).await);
    };
    let name = parse_key(value)?;
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|_| ApiError::PayloadTooLarge)?;
    let key = IdempotencyKey {
        scope: scope(parts.headers.get(AUTHORIZATION)),
        key: name,
        fingerprint: fingerprint(&parts.method, parts.uri.path(), &bytes),
    };
    let holder = Uuid::new_v4().to_string();
    match repo::take_idempotency_key(&state.pool, &key, &holder, LEASE_SECONDS).await? {
        Taken::Ours => {}
        Taken::OtherRequest => return Err(ApiError::IdempotencyKeyReused),
        Taken::InProgress => return Err(ApiError::IdempotencyKeyInProgress),
        Taken::Answered { status, body } => return Ok(replay(status, body)),
        Taken::Started(id) => return answer_lost_start(&state, &key, id).await,
    }
    let mut request = Request::from_parts(parts, Body::from(bytes));
    request.extensions_mut().insert(Held {
        key: key.clone(),
        holder: holder.clone(),
    });
    let response = next.run(request).await;
    let status = response.status();
    if !kept(status) {
        if let Err(e) = repo::release_idempotency_key(&state.pool, &key, &holder).await {
            tracing::warn!(error = %e, "could not give up an idempotency key; it is free again when its lease runs out");
        }
        return Ok(response);
    }
    let (parts, body) = response.into_parts();
    // Our own JSON answer: small, and already complete.
    let bytes = to_bytes(body, usize::MAX)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    if let Err(e) = repo::answer_idempotency_key(&state.pool, &key, Some(&holder), status.as_u16(), &bytes).await {
        tracing::warn!(error = %e, "could not store the answer of an idempotency key; a retry after its lease runs again");
    }
    Ok(Response::from_parts(parts, Body::from(bytes)))
}

/// Whether an answer is kept for the key: it carried the request out or refused it for good.
/// 429 and 5xx did not carry it out and may not refuse it next time.
fn kept(status: StatusCode) -> bool {
    status.is_success() || (status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS)
}

/// A start that committed its verification, whose process died before the answer was stored:
/// the answer it gave (or would have given), rebuilt from the verification and stored.
async fn answer_lost_start(state: &AppState, key: &IdempotencyKey, id: Uuid) -> Result<Response, ApiError> {
    let verification = repo::find(&state.pool, id)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("the verification {id} of an idempotency key is gone")))?;
    let body =
        serde_json::to_vec(&Started::as_first_answered(verification)).map_err(|e| ApiError::Internal(e.into()))?;
    repo::answer_idempotency_key(&state.pool, key, None, StatusCode::ACCEPTED.as_u16(), &body).await?;
    Ok(replay(StatusCode::ACCEPTED.as_u16(), body))
}

fn replay(status: u16, body: Vec<u8>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(REPLAYED, HeaderValue::from_static("true"));
    response
}

/// 1 to 255 visible ASCII characters (and spaces), else 400.
fn parse_key(value: &HeaderValue) -> Result<String, ApiError> {
    let key = value
        .to_str()
        .ok()
        .filter(|k| !k.trim().is_empty() && k.len() <= MAX_LEN && k.bytes().all(|b| (0x20..0x7f).contains(&b)))
        .ok_or_else(|| {
            ApiError::InvalidRequest(format!(
                "Idempotency-Key must be 1 to {MAX_LEN} visible ASCII characters"
            ))
        })?;
    Ok(key.to_owned())
}

/// The API key's scope: a digest of the bearer token (the token is never stored).
fn scope(authorization: Option<&HeaderValue>) -> String {
    let token = authorization
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map_or("", str::trim);
    let digest = Sha256::digest(token.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of the method, the path and the body; a JSON body in a canonical form (keys
/// sorted, no spaces), so that the same request sent with other spacing or key order is the
/// same request.
fn fingerprint(method: &Method, path: &str, body: &[u8]) -> Vec<u8> {
    let body = match serde_json::from_slice::<Value>(body) {
        Ok(value) => serde_json::to_vec(&canonical(value)).unwrap_or_else(|_| body.to_vec()),
        Err(_) => body.to_vec(),
    };
    let mut hasher = Sha256::new();
    for part in [method.as_str().as_bytes(), b"\n", path.as_bytes(), b"\n", &body] {
        hasher.update(part);
    }
    hasher.finalize().to_vec()
}

/// The value with every object's keys in sorted order.
fn canonical(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, canonical(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_json_in_another_spacing_or_order_is_the_same_request() {
        let a = fingerprint(
            &Method::POST,
            "/v1/verifications",
            br#"{"phone_number":"+1","channels":["sms","call"]}"#,
        );
        let b = fingerprint(
            &Method::POST,
            "/v1/verifications",
            b"{ \"channels\": [\"sms\", \"call\"],\n \"phone_number\": \"+1\" }",
        );
        assert_eq!(a, b);
        let other_order = fingerprint(
            &Method::POST,
            "/v1/verifications",
            br#"{"phone_number":"+1","channels":["call","sms"]}"#,
        );
        let other_path = fingerprint(
            &Method::POST,
            "/v1/verifications/check",
            br#"{"phone_number":"+1","channels":["sms","call"]}"#,
        );
        assert!(a != other_order && a != other_path);
    }

    #[test]
    fn keys_are_visible_ascii_up_to_255_characters_and_scopes_differ_per_api_key() {
        let ok = |k: &str| parse_key(&HeaderValue::from_str(k).unwrap()).is_ok();
        assert!(ok("a") && ok(&"k".repeat(255)) && ok("9f1c-22 signup/retry"));
        assert!(!ok("") && !ok("   ") && !ok(&"k".repeat(256)));
        assert!(parse_key(&HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap()).is_err());
        let one = scope(Some(&HeaderValue::from_static("Bearer key-one-0123456789")));
        let two = scope(Some(&HeaderValue::from_static("Bearer key-two-0123456789")));
        assert!(one != two && one.len() == 32 && !one.contains("key-one"));
    }

    #[test]
    fn only_answers_that_settle_the_request_are_kept() {
        for (status, keep) in [
            (202, true),
            (200, true),
            (400, true),
            (404, true),
            (429, false),
            (503, false),
            (500, false),
        ] {
            assert_eq!(kept(StatusCode::from_u16(status).unwrap()), keep, "{status}");
        }
    }
}
