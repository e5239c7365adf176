//! The fake's HTTP routes, and what the create endpoints share: auth, error JSON, faults.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header::AUTHORIZATION};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use rand::Rng;
use serde_json::{Value, json};

use super::sandbox::FaultedRequest;
use super::state::{Fault, FinalStatus, Shared, WhatsAppFreeForm};
use super::voice::CallEnd;
use super::{call_list, calls, events, messages};

pub(crate) type AppState = State<Arc<Shared>>;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let account = "/2010-04-01/Accounts/{account}";
    Router::new()
        .route(
            &format!("{account}/Messages.json"),
            post(messages::create).get(messages::list),
        )
        .route(&format!("{account}/Messages/{{sid}}"), get(messages::fetch))
        .route(
            &format!("{account}/Calls.json"),
            post(calls::create).get(call_list::list),
        )
        .route(&format!("{account}/Calls/{{sid}}"), get(calls::fetch))
        .route("/inbox", get(inbox))
        .route("/_fake/faults", post(control).get(faults_now))
        .route("/events", post(events::receive).get(events::list))
        .route("/_fake/events", post(events::faults))
        .route("/healthz", get(|| async { "ok" }))
        .merge(super::sandbox::routes())
        .with_state(shared)
}

/// Twilio's 400 with `code`.
pub(crate) fn bad_request(code: i32, message: &str) -> Response {
    twilio_error(StatusCode::BAD_REQUEST, code, message)
}

pub(crate) fn twilio_error(status: StatusCode, code: i32, message: &str) -> Response {
    let body = json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status.as_u16(),
    });
    (status, Json(body)).into_response()
}

/// 404 / 20404, as Twilio answers a fetch of an unknown sid.
pub(crate) fn not_found(path: &str) -> Response {
    twilio_error(
        StatusCode::NOT_FOUND,
        20404,
        &format!("The requested resource {path} was not found"),
    )
}

/// Basic auth with `AccountSid:AuthToken`, and the path's account must be that account.
pub(crate) fn authorized(shared: &Shared, account: &str, headers: &HeaderMap) -> bool {
    let expected = format!("{}:{}", shared.config.account_sid, shared.config.auth_token);
    let given = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
    account == shared.config.account_sid && given.as_deref() == Some(expected.as_bytes())
}

pub(crate) fn unauthorized() -> Response {
    twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate")
}

/// Form or query parameters in order, repeated keys kept.
pub(crate) struct Params(pub Vec<(String, String)>);

impl Params {
    pub fn parse(raw: &[u8]) -> Self {
        Self(serde_urlencoded::from_bytes(raw).unwrap_or_default())
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The first non-empty value of `name`.
    pub fn non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.trim().is_empty())
    }

    pub fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.0.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Counts the create request and draws its fault (queued first, then at `fault_rate`).
fn next_fault(shared: &Shared) -> (Option<Fault>, Duration) {
    let mut memory = shared.memory.lock().expect("fake memory");
    memory.create_calls += 1;
    let fault = memory.faults.pop_front().or_else(|| {
        let mut rng = rand::rng();
        (memory.fault_rate > 0.0 && rng.random_bool(memory.fault_rate.min(1.0))).then(|| {
            [
                Fault::InternalError,
                Fault::InternalErrorAfterCreate,
                Fault::Unavailable,
                Fault::Timeout,
                Fault::TimeoutAfterCreate,
            ][rng.random_range(0..5)]
        })
    });
    (fault, memory.latency)
}

/// The start of every create request (messages and calls): counts it, draws its fault, waits
/// the latency, checks the credentials, and reads the form with its `To`, which it logs.
/// `resource` is `message` or `call`; `missing_to` is the Twilio error of a form without `To`.
pub(crate) async fn begin_create<'a>(
    shared: &Shared,
    (account, resource): (&str, &'static str),
    headers: &HeaderMap,
    form: &'a Params,
    missing_to: (i32, &str),
) -> Result<(Option<Fault>, &'a str), Response> {
    let arrived = std::time::Instant::now();
    let (fault, latency) = next_fault(shared);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if !authorized(shared, account, headers) {
        return Err(unauthorized());
    }
    let Some(to) = form.non_empty("To") else {
        return Err(bad_request(missing_to.0, missing_to.1));
    };
    log_create(shared, arrived, to, fault, resource);
    Ok((fault, to))
}

/// Logs a create request; one answered with a fault is also kept for the sandbox's threads.
fn log_create(shared: &Shared, arrived: std::time::Instant, to: &str, fault: Option<Fault>, resource: &'static str) {
    let mut memory = shared.memory.lock().expect("fake memory");
    memory.create_call_log.push((arrived, to.to_owned()));
    memory.trim(shared.config.kept);
    if let Some(fault) = fault {
        memory.faulted.push(FaultedRequest {
            at: time::OffsetDateTime::now_utc(),
            to: to.to_owned(),
            resource,
            answer: fault.answer().to_owned(),
            created: matches!(fault, Fault::InternalErrorAfterCreate | Fault::TimeoutAfterCreate),
        });
        drop(memory);
        shared.touch();
    }
}

/// The answer of a fault that strikes before anything is created, if it is one.
pub(crate) async fn fault_before_create(fault: Option<Fault>, hold: Duration) -> Option<Response> {
    Some(match fault? {
        Fault::TooManyRequests => twilio_error(StatusCode::TOO_MANY_REQUESTS, 20429, "Too Many Requests"),
        Fault::TooManyRequestsRetryAfter(seconds) => {
            let mut response = twilio_error(StatusCode::TOO_MANY_REQUESTS, 20429, "Too Many Requests");
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
            response
        }
        Fault::Unavailable => twilio_error(StatusCode::SERVICE_UNAVAILABLE, 20503, "Service Unavailable"),
        Fault::InternalError => twilio_error(StatusCode::INTERNAL_SERVER_ERROR, 20500, "Internal Server Error"),
        Fault::Timeout => {
            tokio::time::sleep(hold).await;
            twilio_error(StatusCode::GATEWAY_TIMEOUT, 20500, "Timed out")
        }
        Fault::InternalErrorAfterCreate | Fault::TimeoutAfterCreate => return None,
    })
}

/// The answer after the resource was created: 201 with it, unless a fault loses that answer.
pub(crate) async fn answer_after_create(fault: Option<Fault>, hold: Duration, resource: Value) -> Response {
    match fault {
        Some(Fault::InternalErrorAfterCreate) => {
            twilio_error(StatusCode::INTERNAL_SERVER_ERROR, 20500, "Internal Server Error")
        }
        Some(Fault::TimeoutAfterCreate) => {
            tokio::time::sleep(hold).await;
            twilio_error(StatusCode::GATEWAY_TIMEOUT, 20500, "Timed out")
        }
        _ => (StatusCode::CREATED, Json(resource)).into_response(),
    }
}

pub(crate) fn new_sid(prefix: &str) -> String {
    let n: u128 = rand::rng().random();
    format!("{prefix}{n:032x}")
}

/// Whether `address` (an inbox `to` filter) names `to`, with or without a channel prefix.
fn addressed(to: &str, address: &str) -> bool {
    to == address || to.split_once(':').is_some_and(|(_, bare)| bare == address)
}

/// `GET /inbox?to=…&kind=message|call`: what the fake received, newest first, for people and
/// tests: `messages` (SMS and WhatsApp, `"kind": "message"`, `channel`) and `calls`
/// (`"kind": "call"`, with the `spoken` text).
async fn inbox(State(shared): AppState, Query(q): Query<HashMap<String, String>>) -> Json<Value> {
    let memory = shared.memory.lock().expect("fake memory");
    let wanted = |to: &str| q.get("to").is_none_or(|t| addressed(to, t));
    let kind = q.get("kind").map(String::as_str);
    let tagged = |mut v: Value, kind: &str| {
        v["kind"] = kind.into();
        v
    };
    let messages: Vec<Value> = memory
        .messages
        .iter()
        .rev()
        .filter(|m| wanted(&m.to) && kind.is_none_or(|k| k == "message"))
        .filter_map(|m| serde_json::to_value(m).ok())
        .map(|v| tagged(v, "message"))
        .collect();
    let calls: Vec<Value> = memory
        .calls
        .iter()
        .rev()
        .filter(|c| wanted(&c.to) && kind.is_none_or(|k| k == "call"))
        .filter_map(|c| serde_json::to_value(c).ok())
        .map(|v| tagged(v, "call"))
        .collect();
    Json(json!({ "messages": messages, "calls": calls }))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Control {
    #[serde(default)]
    next: Vec<Fault>,
    fault_rate: Option<f64>,
    latency_ms: Option<u64>,
    /// `{"+1…": "busy"}`: how calls to these numbers end.
    #[serde(default)]
    call_outcomes: HashMap<String, CallEnd>,
    /// `{"whatsapp:+1…": {"status": "failed", "error_code": 63024}}`: how messages end.
    #[serde(default)]
    final_statuses: HashMap<String, FinalStatus>,
    whatsapp_free_form: Option<WhatsAppFreeForm>,
}

/// `POST /_fake/faults`: make a running fake misbehave (`{"next": ["unavailable"],
/// "fault_rate": 0.3, "latency_ms": 100, "call_outcomes": {"+1…": "no-answer"},
/// "final_statuses": {"whatsapp:+1…": {"status": "failed", "error_code": 63003}},
/// "whatsapp_free_form": "inside_window"}`).
async fn control(State(shared): AppState, Json(c): Json<Control>) -> StatusCode {
    let mut memory = shared.memory.lock().expect("fake memory");
    memory.faults.extend(c.next);
    if let Some(rate) = c.fault_rate {
        memory.fault_rate = rate.clamp(0.0, 1.0);
    }
    if let Some(ms) = c.latency_ms {
        memory.latency = Duration::from_millis(ms);
    }
    memory.call_outcomes.extend(c.call_outcomes);
    memory.final_status.extend(c.final_statuses);
    if let Some(mode) = c.whatsapp_free_form {
        memory.whatsapp_free_form = mode;
    }
    drop(memory);
    shared.touch();
    StatusCode::NO_CONTENT
}

/// `GET /_fake/faults`: what is in force now, in the names `POST` takes (`next`: the faults
/// queued for the next create calls, in order).
async fn faults_now(State(shared): AppState) -> Json<Value> {
    let memory = shared.memory.lock().expect("fake memory");
    Json(json!({
        "next": memory.faults,
        "fault_rate": memory.fault_rate,
        "latency_ms": memory.latency.as_millis() as u64,
        "whatsapp_free_form": memory.whatsapp_free_form,
    }))
}
