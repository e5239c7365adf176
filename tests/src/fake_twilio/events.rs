//! The fake's event receiver: what an app's webhook endpoint does with the service's events,
//! so that a person running `local-stack` sees them and tests can count them.
//!
//! `POST /events` verifies each delivery's Standard Webhooks signature with the secret the
//! fake was given (`EVENTS_SECRET`; 401 when it does not verify, 400 without the headers),
//! keeps it, and answers 204, or the statuses queued with `POST /_fake/events`
//! (`{"fail_next": 3, "status": 503}`; `{"latency_ms": 2000}` makes it slow). `GET /events?type=…&id=…` lists what it kept, newest
//! first, with whether each verified. It keeps the newest [`super::FakeConfig::events_kept`].

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::handlers::AppState;
use super::state::{FakeTwilio, Shared};

/// How far a `webhook-timestamp` may be from now (the libraries' default).
const TOLERANCE_SECONDS: i64 = 300;

/// One delivery the receiver got.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReceivedEvent {
    pub webhook_id: String,
    /// Whether its signature verified with the receiver's secret (false without a secret).
    pub verified: bool,
    /// What the receiver answered.
    pub answered: u16,
    /// The parsed body (`type`, `timestamp`, `data`).
    pub event: Value,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: time::OffsetDateTime,
}

impl ReceivedEvent {
    pub fn kind(&self) -> &str {
        self.event["type"].as_str().unwrap_or("")
    }

    /// The verification it is about.
    pub fn verification_id(&self) -> &str {
        self.event["data"]["id"].as_str().unwrap_or("")
    }
}

/// What the receiver remembers.
#[derive(Debug, Default)]
pub(crate) struct Received {
    pub kept: std::collections::VecDeque<ReceivedEvent>,
    /// Deliveries received in all (kept or not), and of those, how many verified.
    pub total: u64,
    pub verified: u64,
    /// Statuses to answer the next deliveries with, in order.
    pub fail_next: std::collections::VecDeque<u16>,
    /// How long the receiver takes before it looks at a delivery (a slow endpoint).
    pub latency: std::time::Duration,
}

/// `POST /events`.
pub(crate) async fn receive(State(shared): AppState, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let latency = shared.memory.lock().expect("fake memory").events.latency;
    if !latency.is_zero() {
        // A sender that gives up (or dies) meanwhile leaves no record: the request is dropped.
        tokio::time::sleep(latency).await;
    }
    let (Some(id), Some(timestamp), Some(signature)) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    ) else {
        return StatusCode::BAD_REQUEST;
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let verified = shared.config.events_secret.as_ref().is_some_and(|secret| {
        secret
            .verify(id, timestamp, signature, &body, now, TOLERANCE_SECONDS)
            .is_ok()
    });
    let answered = {
        let mut memory = shared.memory.lock().expect("fake memory");
        let queued = memory.events.fail_next.pop_front();
        let answered = queued.unwrap_or(if verified { 204 } else { 401 });
        let received = &mut memory.events;
        received.total += 1;
        received.verified += u64::from(verified);
        received.kept.push_back(ReceivedEvent {
            webhook_id: id.to_owned(),
            verified,
            answered,
            event: serde_json::from_slice(&body).unwrap_or(Value::Null),
            received_at: time::OffsetDateTime::now_utc(),
        });
        while received.kept.len() > shared.config.events_kept {
            received.kept.pop_front();
        }
        answered
    };
    shared.touch();
    StatusCode::from_u16(answered).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// `GET /events?type=…&id=…`: the deliveries kept, newest first, and the totals.
pub(crate) async fn list(State(shared): AppState, Query(q): Query<HashMap<String, String>>) -> Json<Value> {
    let memory = shared.memory.lock().expect("fake memory");
    let received = &memory.events;
    let events: Vec<&ReceivedEvent> = received
        .kept
        .iter()
        .rev()
        .filter(|e| q.get("type").is_none_or(|t| e.kind() == t))
        .filter(|e| q.get("id").is_none_or(|id| e.verification_id() == id))
        .collect();
    Json(json!({
        "received": received.total,
        "verified": received.verified,
        "events": events,
    }))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Faults {
    #[serde(default)]
    fail_next: usize,
    #[serde(default = "server_error")]
    status: u16,
    latency_ms: Option<u64>,
}

fn server_error() -> u16 {
    500
}

/// `POST /_fake/events`: answer the next `fail_next` deliveries with `status` (default 500),
/// and take `latency_ms` before each answer from now on.
pub(crate) async fn faults(State(shared): AppState, Json(f): Json<Faults>) -> StatusCode {
    if !(100..=599).contains(&f.status) || f.fail_next > 100_000 || f.latency_ms.is_some_and(|ms| ms > 600_000) {
        return StatusCode::UNPROCESSABLE_ENTITY;
    }
    fail_next(&shared, f.fail_next, f.status);
    if let Some(ms) = f.latency_ms {
        shared.memory.lock().expect("fake memory").events.latency = std::time::Duration::from_millis(ms);
    }
    StatusCode::NO_CONTENT
}

fn fail_next(shared: &Arc<Shared>, n: usize, status: u16) {
    let mut memory = shared.memory.lock().expect("fake memory");
    memory.events.fail_next.extend(std::iter::repeat_n(status, n));
}

impl FakeTwilio {
    /// The deliveries kept, oldest first.
    pub fn events(&self) -> Vec<ReceivedEvent> {
        self.memory().events.kept.iter().cloned().collect()
    }

    /// Deliveries received in all, and how many of them verified.
    pub fn event_totals(&self) -> (u64, u64) {
        let memory = self.memory();
        (memory.events.total, memory.events.verified)
    }

    /// Answers the next `n` deliveries with `status`.
    pub fn fail_next_events(&self, n: usize, status: u16) {
        fail_next(&self.shared, n, status);
    }

    /// Takes `latency` before looking at each delivery.
    pub fn set_events_latency(&self, latency: std::time::Duration) {
        self.memory().events.latency = latency;
    }
}
