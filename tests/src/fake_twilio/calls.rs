//! `POST …/Calls.json` and `GET …/Calls/{Sid}.json`: place and fetch voice calls, in the
//! shape of Twilio's OpenAPI (`api.v2010.account.call`).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

use super::callbacks;
use super::handlers::{
    AppState, Params, answer_after_create, authorized, bad_request, begin_create, fault_before_create, new_sid,
    not_found, unauthorized,
};
use super::state::Shared;
use super::voice::{CallEnd, SentCall, magic_call_end};

/// Call errors of Twilio's test credentials, by `To`.
fn magic_error(to: &str) -> Option<(i32, String)> {
    Some(match to {
        "+15005550001" => (21217, "Phone number does not appear to be valid".into()),
        "+15005550002" => (21214, "'To' phone number cannot be reached".into()),
        "+15005550003" => (21215, format!("Account not authorized to call {to}.")),
        "+15005550004" => (21216, "Call blocked by Twilio blocklist".into()),
        _ => return None,
    })
}

fn absolute_url(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
}

const EVENTS: [&str; 4] = ["initiated", "ringing", "answered", "completed"];

pub(crate) async fn create(
    State(shared): AppState,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = Params::parse(&body);
    let (fault, to) = match begin_create(
        &shared,
        (&account, "call"),
        &headers,
        &form,
        (21201, "No 'To' number is specified"),
    )
    .await
    {
        Ok(begun) => begun,
        Err(refused) => return refused,
    };
    let Some(from) = form.non_empty("From") else {
        return bad_request(21213, "No 'From' number is specified");
    };
    let (url, twiml, application) = (
        form.non_empty("Url"),
        form.non_empty("Twiml"),
        form.non_empty("ApplicationSid"),
    );
    if url.is_none() && twiml.is_none() && application.is_none() {
        return bad_request(
            21205,
            "Url parameter is required. For more information, see http://www.twilio.com/docs/api/twiml",
        );
    }
    if let Some(url) = url.filter(|u| !absolute_url(u)) {
        return bad_request(21205, &format!("Url is not a valid URL: {url}"));
    }
    if twiml.is_some_and(|t| t.chars().count() > 4000) {
        return bad_request(21658, "Twiml exceeds the 4000 character limit");
    }
    if let Some(app) = application.filter(|a| !(a.len() == 34 && a.starts_with("AP"))) {
        return bad_request(21218, &format!("Invalid ApplicationSid: {app}"));
    }
    let status_callback = form.non_empty("StatusCallback");
    if status_callback.is_some_and(|u| !absolute_url(u)) {
        return bad_request(21609, "Invalid StatusCallback");
    }
    let mut events: Vec<String> = form
        .all("StatusCallbackEvent")
        .flat_map(str::split_whitespace)
        .map(str::to_ascii_lowercase)
        .filter(|e| EVENTS.contains(&e.as_str()))
        .collect();
    if events.is_empty() {
        events.push("completed".into());
    }
    if let Some((code, message)) = magic_error(to) {
        return bad_request(code, &message);
    }
    let hold = shared.config.timeout_hold;
    if let Some(response) = fault_before_create(fault, hold).await {
        return response;
    }
    let now = OffsetDateTime::now_utc();
    let upper = |name: &str, default: &str| form.non_empty(name).unwrap_or(default).to_ascii_uppercase();
    let outcome = shared
        .memory
        .lock()
        .expect("fake memory")
        .call_outcomes
        .get(to)
        .copied();
    let outcome = outcome.or_else(|| magic_call_end(to)).unwrap_or(CallEnd::Completed);
    let call = SentCall {
        sid: new_sid("CA"),
        to: to.to_owned(),
        from: from.to_owned(),
        status: "queued".into(),
        // With both, Twilio ignores `Twiml` and fetches `Url`.
        twiml: twiml.filter(|_| url.is_none()).map(str::to_owned),
        url: url.map(str::to_owned),
        method: upper("Method", "POST"),
        application_sid: application.map(str::to_owned),
        spoken: String::new(),
        segments: Vec::new(),
        language: None,
        voice: None,
        twiml_error: None,
        // Ignored, like the method and events, when an application handles the call.
        status_callback: status_callback.filter(|_| application.is_none()).map(str::to_owned),
        status_callback_method: upper("StatusCallbackMethod", "POST"),
        status_callback_events: events,
        timeout: form
            .get("Timeout")
            .and_then(|t| t.parse().ok())
            .unwrap_or(60)
            .clamp(1, 600),
        machine_detection: form.non_empty("MachineDetection").map(str::to_owned),
        answered_by: None,
        outcome,
        date_created: now,
        date_updated: now,
        start_time: None,
        end_time: None,
        duration: None,
        callbacks_sent: Vec::new(),
    };
    {
        let mut memory = shared.memory.lock().expect("fake memory");
        memory.calls.push(call.clone());
        memory.trim(shared.config.kept);
    }
    shared.touch();
    let resource = call_json(&shared, &call);
    tokio::spawn(callbacks::run_call(Arc::clone(&shared), call.sid));
    answer_after_create(fault, hold, resource).await
}

/// North American numbers as Twilio formats them for display; others as they are.
fn formatted(number: &str) -> String {
    match number.strip_prefix("+1") {
        Some(d) if d.len() == 10 && d.chars().all(|c| c.is_ascii_digit()) => {
            format!("({}) {}-{}", &d[..3], &d[3..6], &d[6..])
        }
        _ => number.to_owned(),
    }
}

fn rfc2822(t: Option<OffsetDateTime>) -> Value {
    t.and_then(|t| t.format(&Rfc2822).ok()).map_or(Value::Null, Value::from)
}

/// A call resource in Twilio's shape.
pub(crate) fn call_json(shared: &Shared, c: &SentCall) -> Value {
    let account = &shared.config.account_sid;
    let base = format!("/2010-04-01/Accounts/{account}/Calls/{}", c.sid);
    let subresources = [
        ("notifications", "Notifications"),
        ("recordings", "Recordings"),
        ("payments", "Payments"),
        ("events", "Events"),
        ("siprec", "Siprec"),
        ("streams", "Streams"),
        ("transcriptions", "Transcriptions"),
        ("user_defined_message_subscriptions", "UserDefinedMessageSubscriptions"),
        ("user_defined_messages", "UserDefinedMessages"),
    ];
    let subresource_uris: serde_json::Map<String, Value> = subresources
        .iter()
        .map(|(key, name)| (key.to_string(), Value::from(format!("{base}/{name}.json"))))
        .collect();
    json!({
        "account_sid": account,
        "answered_by": c.answered_by,
        "api_version": "2010-04-01",
        "caller_name": null,
        "date_created": rfc2822(Some(c.date_created)),
        "date_updated": rfc2822(Some(c.date_updated)),
        "direction": "outbound-api",
        "duration": c.duration.map(|d| d.to_string()),
        "end_time": rfc2822(c.end_time),
        "forwarded_from": null,
        "from": c.from,
        "from_formatted": formatted(&c.from),
        "group_sid": null,
        "parent_call_sid": null,
        "phone_number_sid": null,
        "price": null,
        "price_unit": "USD",
        "queue_time": "0",
        "sid": c.sid,
        "start_time": rfc2822(c.start_time),
        "status": c.status,
        "subresource_uris": subresource_uris,
        "to": c.to,
        "to_formatted": formatted(&c.to),
        "trunk_sid": null,
        "uri": format!("{base}.json"),
    })
}

/// `GET …/Calls/{Sid}.json`.
pub(crate) async fn fetch(
    State(shared): AppState,
    Path((account, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&shared, &account, &headers) {
        return unauthorized();
    }
    let sid = file.strip_suffix(".json").unwrap_or(&file);
    let memory = shared.memory.lock().expect("fake memory");
    match memory.calls.iter().find(|c| c.sid == sid) {
        Some(c) => Json(call_json(&shared, c)).into_response(),
        None => not_found(&format!("/2010-04-01/Accounts/{account}/Calls/{file}")),
    }
}
