//! `…/Messages.json`: create (SMS and WhatsApp), list and fetch messages.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
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
use super::state::{FinalStatus, SentMessage, Shared, WhatsAppFreeForm};
use super::voice::magic_whatsapp_failure;

/// The body WhatsApp presets for `whatsapp/authentication` templates (with the security
/// recommendation on, the default); the fake renders every `ContentSid` with it.
pub const AUTHENTICATION_TEMPLATE: &str = "{{1}} is your verification code. For your security, do not share this code.";

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

fn is_sid(value: &str, prefix: &str) -> bool {
    value.len() == 34 && value.starts_with(prefix) && value[2..].chars().all(|c| c.is_ascii_hexdigit())
}

/// The template rendered with `ContentVariables` (a JSON object given as a string).
fn render_content(template: &str, variables: Option<&str>) -> Result<String, ()> {
    let variables: HashMap<String, Value> = match variables {
        Some(v) => serde_json::from_str(v).map_err(|_| ())?,
        None => HashMap::new(),
    };
    let mut text = template.to_owned();
    for (name, value) in variables {
        let value = match value {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            _ => return Err(()),
        };
        text = text.replace(&format!("{{{{{name}}}}}"), &value);
    }
    Ok(text)
}

fn whatsapp(address: &str) -> bool {
    address.starts_with("whatsapp:")
}

pub(crate) async fn create(
    State(shared): AppState,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = Params::parse(&body);
    let (fault, to) = match begin_create(
        &shared,
        (&account, "message"),
        &headers,
        &form,
        (21604, "A 'To' phone number is required."),
    )
    .await
    {
        Ok(begun) => begun,
        Err(refused) => return refused,
    };
    let (from, service) = (form.get("From"), form.get("MessagingServiceSid"));
    if from.is_none() && service.is_none() {
        return bad_request(21603, "A 'From' phone number is required.");
    }
    let channel = if whatsapp(to) { "whatsapp" } else { "sms" };
    if from.is_some_and(|f| whatsapp(f) != whatsapp(to)) {
        return bad_request(30016, "'To' and 'From' channel types are incompatible");
    }
    let content_sid = form.non_empty("ContentSid");
    let content_variables = form.get("ContentVariables");
    let text = match content_sid {
        Some(sid) if !is_sid(sid, "HX") => return bad_request(21655, "The ContentSid is Invalid"),
        Some(_) => match render_content(AUTHENTICATION_TEMPLATE, content_variables) {
            Ok(text) => text,
            Err(()) => return bad_request(21656, "The ContentVariables Parameter is invalid"),
        },
        None => form.get("Body").unwrap_or("").to_owned(),
    };
    if text.is_empty() {
        return bad_request(21602, "Message body is required.");
    }
    if text.chars().count() > 1600 {
        return bad_request(21617, "The concatenated message body exceeds the 1600 character limit.");
    }
    if let Some((code, message)) = magic_error(to) {
        return bad_request(code, message);
    }
    let hold = shared.config.timeout_hold;
    if let Some(response) = fault_before_create(fault, hold).await {
        return response;
    }
    let message = SentMessage {
        sid: new_sid("SM"),
        to: to.to_owned(),
        from: from.map(str::to_owned),
        messaging_service_sid: service.map(str::to_owned),
        body: text,
        status_callback: form.get("StatusCallback").map(str::to_owned),
        validity_period: form.get("ValidityPeriod").and_then(|v| v.parse().ok()),
        date_created: OffsetDateTime::now_utc(),
        channel: channel.to_owned(),
        content_sid: content_sid.map(str::to_owned),
        content_variables: content_sid.and(content_variables).map(str::to_owned),
        status: if service.is_some() { "accepted" } else { "queued" }.to_owned(),
        error_code: None,
        callbacks: Vec::new(),
    };
    let final_status = {
        let mut memory = shared.memory.lock().expect("fake memory");
        memory.messages.push(message.clone());
        memory.trim(shared.config.kept);
        let free_form_fails = memory.whatsapp_free_form == WhatsAppFreeForm::OutsideWindow;
        if channel == "whatsapp" && content_sid.is_none() && free_form_fails {
            FinalStatus {
                status: "failed".into(),
                error_code: Some(63016),
            }
        } else {
            memory
                .final_status
                .get(to)
                .cloned()
                .or_else(|| magic_whatsapp_failure(to))
                .unwrap_or(FinalStatus {
                    status: "delivered".into(),
                    error_code: None,
                })
        }
    };
    shared.touch();
    let resource = message_json(&shared, &message);
    tokio::spawn(callbacks::run_message(Arc::clone(&shared), message, final_status));
    answer_after_create(fault, hold, resource).await
}

fn error_message(code: i32) -> Option<&'static str> {
    Some(match code {
        30003 => "Unreachable destination handset",
        30005 => "Unknown destination handset",
        30006 => "Landline or unreachable carrier",
        30007 => "Message filtered",
        30008 => "Unknown error",
        63003 => "Channel could not find To address",
        63016 => {
            "Failed to send freeform message because you are outside the allowed window. If you are using \
             WhatsApp, please use a Message Template."
        }
        63024 => "Invalid message recipient",
        _ => return None,
    })
}

/// A message resource in Twilio's shape.
pub(crate) fn message_json(shared: &Shared, m: &SentMessage) -> Value {
    let account = &shared.config.account_sid;
    let date = m.date_created.format(&Rfc2822).unwrap_or_default();
    let sent = !matches!(m.status.as_str(), "queued" | "accepted" | "failed");
    json!({
        "account_sid": account,
        "api_version": "2010-04-01",
        "body": m.body,
        "date_created": date,
        "date_sent": if sent { Value::from(date.clone()) } else { Value::Null },
        "date_updated": date,
        "direction": "outbound-api",
        "error_code": m.error_code,
        "error_message": m.error_code.and_then(error_message),
        "from": m.from,
        "messaging_service_sid": m.messaging_service_sid,
        "num_media": "0",
        "num_segments": "1",
        "price": null,
        "price_unit": "USD",
        "sid": m.sid,
        "status": m.status,
        "subresource_uris": {"media": format!("/2010-04-01/Accounts/{account}/Messages/{}/Media.json", m.sid)},
        "to": m.to,
        "uri": format!("/2010-04-01/Accounts/{account}/Messages/{}.json", m.sid),
    })
}

/// `GET …/Messages.json?To=…&DateSent>=…`: one page in Twilio's list shape.
pub(crate) async fn list(
    State(shared): AppState,
    Path(account): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if !authorized(&shared, &account, &headers) {
        return unauthorized();
    }
    let params = Params::parse(query.as_deref().unwrap_or("").as_bytes());
    let to = params.get("To");
    let from = params.get("From");
    let since = params
        .get("DateSent>")
        .or_else(|| params.get("DateSent>="))
        .and_then(|d| d.get(..10))
        .and_then(|d| time::Date::parse(d, time::macros::format_description!("[year]-[month]-[day]")).ok());
    let memory = shared.memory.lock().expect("fake memory");
    let messages: Vec<Value> = memory
        .messages
        .iter()
        .filter(|m| to.is_none_or(|t| m.to == t))
        .filter(|m| from.is_none_or(|f| m.from.as_deref() == Some(f)))
        .filter(|m| since.is_none_or(|d| m.date_created.date() >= d))
        .rev()
        .map(|m| message_json(&shared, m))
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

/// `GET …/Messages/{Sid}.json`.
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
    match memory.messages.iter().find(|m| m.sid == sid) {
        Some(m) => Json(message_json(&shared, m)).into_response(),
        None => not_found(&format!("/2010-04-01/Accounts/{account}/Messages/{file}")),
    }
}
