//! The fake's HTTP routes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header::AUTHORIZATION};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use rand::Rng;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

use super::state::{Fault, FinalStatus, SentMessage, Shared};

type AppState = State<Arc<Shared>>;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/2010-04-01/Accounts/{account}/Messages.json", post(create).get(list))
        .route("/inbox", get(inbox))
        .route("/_fake/faults", post(control))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(shared)
}

fn twilio_error(status: StatusCode, code: i32, message: &str) -> Response {
    let body = json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status.as_u16(),
    });
    (status, Json(body)).into_response()
}

/// Basic auth with `AccountSid:AuthToken`, and the path's account must be that account.
fn authorized(shared: &Shared, account: &str, headers: &HeaderMap) -> bool {
    let expected = format!("{}:{}", shared.config.account_sid, shared.config.auth_token);
    let given = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
    account == shared.config.account_sid && given.as_deref() == Some(expected.as_bytes())
}

/// Errors of Twilio's test credentials, by `To`.
fn magic_error(to: &str) -> Option<(i32, &'static str)> {
    match to {
        "+15005550001" => Some((21211, "The 'To' number is not a valid phone number.")),
        "+15005550002" => Some((21612, "The 'To' phone number is not currently reachable via SMS.")),
        "+15005550003" => Some((
            21408,
            "Permission to send an SMS has not been enabled for the region indicated by the 'To' number.",
        )),
        "+15005550004" => Some((21610, "Attempt to send to unsubscribed recipient")),
        "+15005550009" => Some((21614, "'To' number is not a valid mobile number")),
        _ => None,
    }
}

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

async fn create(State(shared): AppState, Path(account): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let arrived = std::time::Instant::now();
    let (fault, latency) = next_fault(&shared);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if !authorized(&shared, &account, &headers) {
        return twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    let params: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let form: HashMap<&str, &str> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let Some(to) = form.get("To").copied().filter(|t| !t.is_empty()) else {
        return twilio_error(StatusCode::BAD_REQUEST, 21604, "A 'To' phone number is required.");
    };
    shared
        .memory
        .lock()
        .expect("fake memory")
        .create_call_log
        .push((arrived, to.to_owned()));
    let (from, service) = (
        form.get("From").map(|s| s.to_string()),
        form.get("MessagingServiceSid").map(|s| s.to_string()),
    );
    if from.is_none() && service.is_none() {
        return twilio_error(StatusCode::BAD_REQUEST, 21603, "A 'From' phone number is required.");
    }
    let text = form.get("Body").copied().unwrap_or("");
    if text.is_empty() {
        return twilio_error(StatusCode::BAD_REQUEST, 21602, "Message body is required.");
    }
    if text.chars().count() > 1600 {
        return twilio_error(
            StatusCode::BAD_REQUEST,
            21617,
            "The concatenated message body exceeds the 1600 character limit.",
        );
    }
    if let Some((code, message)) = magic_error(to) {
        return twilio_error(StatusCode::BAD_REQUEST, code, message);
    }
    let hold = shared.config.timeout_hold;
    match fault {
        Some(Fault::TooManyRequests) => {
            return twilio_error(StatusCode::TOO_MANY_REQUESTS, 20429, "Too Many Requests");
        }
        Some(Fault::TooManyRequestsRetryAfter(seconds)) => {
            let mut response = twilio_error(StatusCode::TOO_MANY_REQUESTS, 20429, "Too Many Requests");
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
            return response;
        }
        Some(Fault::Unavailable) => {
            return twilio_error(StatusCode::SERVICE_UNAVAILABLE, 20503, "Service Unavailable");
        }
        Some(Fault::InternalError) => {
            return twilio_error(StatusCode::INTERNAL_SERVER_ERROR, 20500, "Internal Server Error");
        }
        Some(Fault::Timeout) => {
            tokio::time::sleep(hold).await;
            return twilio_error(StatusCode::GATEWAY_TIMEOUT, 20500, "Timed out");
        }
        _ => {}
    }
    let message = SentMessage {
        sid: new_sid("SM"),
        to: to.to_owned(),
        from,
        messaging_service_sid: service,
        body: text.to_owned(),
        status_callback: form.get("StatusCallback").map(|s| s.to_string()),
        validity_period: form.get("ValidityPeriod").and_then(|v| v.parse().ok()),
        date_created: OffsetDateTime::now_utc(),
    };
    let final_status = {
        let mut memory = shared.memory.lock().expect("fake memory");
        memory.messages.push(message.clone());
        memory.final_status.get(to).cloned()
    };
    shared.changed.notify_waiters();
    if shared.config.callbacks
        && let Some(url) = message.status_callback.clone()
    {
        let final_status = final_status.unwrap_or(FinalStatus {
            status: "delivered".into(),
            error_code: None,
        });
        tokio::spawn(post_callbacks(Arc::clone(&shared), url, message.clone(), final_status));
    }
    match fault {
        Some(Fault::InternalErrorAfterCreate) => {
            twilio_error(StatusCode::INTERNAL_SERVER_ERROR, 20500, "Internal Server Error")
        }
        Some(Fault::TimeoutAfterCreate) => {
            tokio::time::sleep(hold).await;
            twilio_error(StatusCode::GATEWAY_TIMEOUT, 20500, "Timed out")
        }
        _ => (
            StatusCode::CREATED,
            Json(message_json(&shared.config.account_sid, &message)),
        )
            .into_response(),
    }
}

fn new_sid(prefix: &str) -> String {
    let n: u128 = rand::rng().random();
    format!("{prefix}{n:032x}")
}

/// A message resource in Twilio's shape.
fn message_json(account: &str, m: &SentMessage) -> Value {
    let date = m.date_created.format(&Rfc2822).unwrap_or_default();
    let status = if m.messaging_service_sid.is_some() {
        "accepted"
    } else {
        "queued"
    };
    json!({
        "account_sid": account,
        "api_version": "2010-04-01",
        "body": m.body,
        "date_created": date,
        "date_sent": null,
        "date_updated": date,
        "direction": "outbound-api",
        "error_code": null,
        "error_message": null,
        "from": m.from,
        "messaging_service_sid": m.messaging_service_sid,
        "num_media": "0",
        "num_segments": "1",
        "price": null,
        "price_unit": "USD",
        "sid": m.sid,
        "status": status,
        "subresource_uris": {"media": format!("/2010-04-01/Accounts/{account}/Messages/{}/Media.json", m.sid)},
        "to": m.to,
        "uri": format!("/2010-04-01/Accounts/{account}/Messages/{}.json", m.sid),
    })
}

/// Posts `sent`, then the final status, each signed as Twilio signs them.
async fn post_callbacks(shared: Arc<Shared>, url: String, message: SentMessage, final_status: FinalStatus) {
    for (status, error_code) in [
        ("sent".to_owned(), None),
        (final_status.status, final_status.error_code),
    ] {
        tokio::time::sleep(shared.config.callback_delay).await;
        let mut params = vec![
            ("AccountSid".to_owned(), shared.config.account_sid.clone()),
            ("ApiVersion".to_owned(), "2010-04-01".to_owned()),
            ("MessageSid".to_owned(), message.sid.clone()),
            ("SmsSid".to_owned(), message.sid.clone()),
            ("MessageStatus".to_owned(), status.clone()),
            ("SmsStatus".to_owned(), status.clone()),
            ("To".to_owned(), message.to.clone()),
        ];
        if let Some(from) = &message.from {
            params.push(("From".to_owned(), from.clone()));
        }
        if let Some(service) = &message.messaging_service_sid {
            params.push(("MessagingServiceSid".to_owned(), service.clone()));
        }
        if let Some(code) = error_code {
            params.push(("ErrorCode".to_owned(), code.to_string()));
        }
        let signature = common::signature::sign(&shared.config.auth_token, &url, &params);
        let sent = shared
            .http
            .post(&url)
            .header("X-Twilio-Signature", signature)
            .form(&params)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                shared.memory.lock().expect("fake memory").callbacks_sent += 1;
                shared.changed.notify_waiters();
            }
            Ok(r) => tracing::warn!(status = %r.status(), "status callback refused"),
            Err(e) => tracing::warn!(error = %e, "status callback failed"),
        }
    }
}

/// `GET …/Messages.json?To=…&DateSent>=…`: one page in Twilio's list shape.
async fn list(
    State(shared): AppState,
    Path(account): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if !authorized(&shared, &account, &headers) {
        return twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    let params: Vec<(String, String)> = serde_urlencoded::from_str(query.as_deref().unwrap_or("")).unwrap_or_default();
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let to = param("To");
    let since = param("DateSent>")
        .and_then(|d| time::Date::parse(&d, time::macros::format_description!("[year]-[month]-[day]")).ok());
    let memory = shared.memory.lock().expect("fake memory");
    let messages: Vec<Value> = memory
        .messages
        .iter()
        .filter(|m| to.as_ref().is_none_or(|t| &m.to == t))
        .filter(|m| since.is_none_or(|d| m.date_created.date() >= d))
        .rev()
        .map(|m| message_json(&shared.config.account_sid, m))
        .collect();
    let uri = format!("/2010-04-01/Accounts/{account}/Messages.json");
    Json(json!({
        "messages": messages,
        "end": messages.len().saturating_sub(1),
        "first_page_uri": format!("{uri}?PageSize=50&Page=0"),
        "next_page_uri": null,
        "page": 0,
        "page_size": 50,
        "previous_page_uri": null,
        "start": 0,
        "uri": uri,
    }))
    .into_response()
}

/// `GET /inbox?to=…`: what the fake received, newest first, for people and tests.
async fn inbox(State(shared): AppState, Query(q): Query<HashMap<String, String>>) -> Json<Value> {
    let memory = shared.memory.lock().expect("fake memory");
    let messages: Vec<&SentMessage> = memory
        .messages
        .iter()
        .rev()
        .filter(|m| q.get("to").is_none_or(|t| &m.to == t))
        .collect();
    Json(json!({ "messages": messages }))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Control {
    #[serde(default)]
    next: Vec<Fault>,
    fault_rate: Option<f64>,
    latency_ms: Option<u64>,
}

/// `POST /_fake/faults`: inject faults into a running fake
/// (`{"next": ["unavailable"], "fault_rate": 0.3, "latency_ms": 100}`).
async fn control(State(shared): AppState, Json(c): Json<Control>) -> StatusCode {
    let mut memory = shared.memory.lock().expect("fake memory");
    memory.faults.extend(c.next);
    if let Some(rate) = c.fault_rate {
        memory.fault_rate = rate.clamp(0.0, 1.0);
    }
    if let Some(ms) = c.latency_ms {
        memory.latency = Duration::from_millis(ms);
    }
    StatusCode::NO_CONTENT
}
