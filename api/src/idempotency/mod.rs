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
//! The keys of concurrent requests are taken by one statement ([`crate::batch::KeyTaker`]),
//! and a start's 202 is stored by the start's own statement (its verification, from which a
//! replay rebuilds the body): a keyed start costs one shared statement more than an unkeyed
//! one, not two statements of its own.
//!
//! A process that dies while holding a key holds it until its lease runs out (409 meanwhile),
//! then the next request takes it over. A start ties its verification to the key in the very
//! statement that stores it, so a start that committed before its process died is answered
//! from that verification, never started twice.

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use common::repo::{self, IdempotencyKey, StartKey, Taken};
use uuid::Uuid;

use crate::error::ApiError;
use crate::extract::BODY_LIMIT;
use crate::routes::verifications::Started;
use crate::state::AppState;

mod key;

pub use key::{HEADER, MAX_LEN};
use key::{fingerprint, parse_key, scope};

/// The header on a replayed answer.
pub const REPLAYED: &str = "idempotent-replayed";
/// How long a running request holds its key before another may take it over (its process
/// died): far longer than any request runs.
pub const LEASE_SECONDS: f64 = 60.0;

/// On a response whose answer the request's own statement stored for its key (a start's 202).
#[derive(Debug, Clone, Copy)]
pub struct AnswerStored;

/// On a start's response when its statement was to take the key and found it taken: nothing
/// was stored, and the middleware answers for the key.
#[derive(Debug, Clone, Copy)]
pub struct KeyTaken;

/// A request's key, as the handler sees it: held already, or to be taken by a start's own
/// statement.
#[derive(Debug, Clone)]
pub struct Held {
    pub key: IdempotencyKey,
    /// The request's holder token, when it took the key before running.
    pub holder: Option<String>,
}

impl Held {
    /// The key as the start statement takes it.
    pub fn start_key(&self) -> StartKey {
        match &self.holder {
            Some(holder) => StartKey::Held(self.key.clone(), holder.clone()),
            None => StartKey::Claim(self.key.clone()),
        }
    }
}

/// The keys this process's starts will take in their statements, while they run: a second
/// request with one of them is answered 409 at once, as with a key taken before running. (A
/// duplicate sent to another replica meanwhile waits for the first's statement instead, and
/// gets its answer; either way the start happens once.)
#[derive(Debug, Default)]
pub struct InFlight(std::sync::Mutex<std::collections::HashSet<(String, String)>>);

impl InFlight {
    /// Marks `key` in flight until the guard is dropped; `None` if it already is.
    fn enter(&self, key: &IdempotencyKey) -> Option<impl Drop + '_> {
        let entry = (key.scope.clone(), key.key.clone());
        if !self.0.lock().expect("in-flight keys").insert(entry.clone()) {
            return None;
        }
        struct Leave<'a>(&'a InFlight, (String, String));
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.0.lock().expect("in-flight keys").remove(&self.1);
            }
        }
        Some(Leave(self, entry))
    }
}

/// Which route the middleware serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Start,
    Check,
}

/// The middleware of `POST /v1/verifications`.
pub async fn idempotent_start(state: State<AppState>, request: Request, next: Next) -> Result<Response, ApiError> {
    idempotent(state, Route::Start, request, next).await
}

/// The middleware of `POST /v1/verifications/check`.
pub async fn idempotent_check(state: State<AppState>, request: Request, next: Next) -> Result<Response, ApiError> {
    idempotent(state, Route::Check, request, next).await
}

/// Runs the request under its key (after authentication).
///
/// A start whose admission writes nothing (no rate limits, no daily budget) lets its own
/// statement take the key (one statement for both); any other request takes its key first,
/// with the concurrent requests' keys ([`crate::batch::KeyTaker`]), so that a replay never
/// counts towards a limit.
async fn idempotent(
    State(state): State<AppState>,
    route: Route,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
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
    let in_statement = route == Route::Start && !state.limits.start_admission_writes();
    // Held until the answer is stored (the guard lives to the end of this function).
    let _in_flight = if in_statement {
        let entered = state.keys_in_flight.enter(&key);
        Some(entered.ok_or(ApiError::IdempotencyKeyInProgress)?)
    } else {
        None
    };
    if !in_statement {
        let taken = if state.keys.take(key.clone(), holder.clone()).await? {
            Taken::Ours
        } else {
            repo::take_idempotency_key(&state.pool, &key, &holder, LEASE_SECONDS).await?
        };
        if taken != Taken::Ours {
            return answer_taken(&state, &key, taken).await;
        }
    }
    let mut request = Request::from_parts(parts, Body::from(bytes));
    request.extensions_mut().insert(Held {
        key: key.clone(),
        holder: (!in_statement).then(|| holder.clone()),
    });
    let response = next.run(request).await;
    let status = response.status();
    if response.extensions().get::<KeyTaken>().is_some() {
        return match repo::take_idempotency_key(&state.pool, &key, &holder, LEASE_SECONDS).await? {
            // Freed since the statement found it taken: the client's retry runs afresh.
            Taken::Ours => {
                repo::release_idempotency_key(&state.pool, &key, &holder).await?;
                Err(ApiError::IdempotencyKeyInProgress)
            }
            taken => answer_taken(&state, &key, taken).await,
        };
    }
    if response.extensions().get::<AnswerStored>().is_some() {
        // A start's statement stored its answer with its verification.
        return Ok(response);
    }
    if !kept(status) {
        if !in_statement && let Err(e) = repo::release_idempotency_key(&state.pool, &key, &holder).await {
            tracing::warn!(error = %e, "could not give up an idempotency key; it is free again when its lease runs out");
        }
        return Ok(response);
    }
    let (parts, body) = response.into_parts();
    // Our own JSON answer: small, and already complete.
    let bytes = to_bytes(body, usize::MAX)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    // A start that was to take its key in its statement and was refused before it (400,
    // 403): its answer is stored as a new key's, unless the key was used before, in which
    // case it is answered for as if it had been taken first (the first answer, 409 or 422).
    if in_statement {
        let fresh = repo::answer_new_idempotency_key(&state.pool, &key, status.as_u16(), &bytes).await?;
        if !fresh {
            match repo::take_idempotency_key(&state.pool, &key, &holder, LEASE_SECONDS).await? {
                Taken::Ours => {
                    repo::answer_idempotency_key(&state.pool, &key, Some(&holder), status.as_u16(), &bytes).await?
                }
                taken => return answer_taken(&state, &key, taken).await,
            }
        }
    } else if let Err(e) = repo::answer_idempotency_key(&state.pool, &key, Some(&holder), status.as_u16(), &bytes).await
    {
        tracing::warn!(error = %e, "could not store the answer of an idempotency key; a retry after its lease runs again");
    }
    Ok(Response::from_parts(parts, Body::from(bytes)))
}

/// The answer to a request whose key was taken: 422, 409, or the first answer again.
async fn answer_taken(state: &AppState, key: &IdempotencyKey, taken: Taken) -> Result<Response, ApiError> {
    match taken {
        Taken::Ours => Err(ApiError::Internal(anyhow::anyhow!("an idempotency key taken twice"))),
        Taken::OtherRequest => Err(ApiError::IdempotencyKeyReused),
        Taken::InProgress => Err(ApiError::IdempotencyKeyInProgress),
        Taken::Answered { status, body } => Ok(replay(status, body)),
        Taken::Started(id) => answer_lost_start(state, key, id).await,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
