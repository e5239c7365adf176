//! What happens after a create: the resource's status moves on, step by step
//! (`callback_delay` apart), and each step the client asked for is posted to its
//! `StatusCallback`, signed with `X-Twilio-Signature` as Twilio signs them. Steps go one after
//! the other: a step waits for the previous callback's answer.

use std::sync::Arc;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

use super::state::{FinalStatus, MessageCallback, SentMessage, Shared};
use super::twiml;
use super::voice::{CallCallback, CallEnd, SentCall};

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Sends `params` to `url` as Twilio does: a signed form POST, or for GET the parameters in
/// the query string and the signature over that whole URL. The receiver's status and body,
/// or `None` when the request failed.
pub(crate) async fn send_signed(
    shared: &Shared,
    url: &str,
    method: &str,
    params: &[(String, String)],
) -> Option<(u16, String)> {
    let token = &shared.config.auth_token;
    let request = if method.eq_ignore_ascii_case("GET") {
        let query = serde_urlencoded::to_string(params).unwrap_or_default();
        let joiner = if url.contains('?') { '&' } else { '?' };
        let full = format!("{url}{joiner}{query}");
        let signature = common::signature::sign(token, &full, &[]);
        shared.http.get(full).header("X-Twilio-Signature", signature)
    } else {
        let signature = common::signature::sign(token, url, params);
        shared
            .http
            .post(url)
            .header("X-Twilio-Signature", signature)
            .form(params)
    };
    match request.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            if !r.status().is_success() {
                tracing::warn!(status, "callback refused");
            }
            Some((status, r.text().await.unwrap_or_default()))
        }
        Err(e) => {
            tracing::warn!(error = %e, "callback failed");
            None
        }
    }
}

fn delivered(shared: &Shared) {
    shared.memory.lock().expect("fake memory").callbacks_sent += 1;
    shared.touch();
}

/// SMS: `sent`, then the final status. WhatsApp: `failed` alone, or `sent`, the final status,
/// and `read` after `delivered`.
pub(crate) async fn run_message(shared: Arc<Shared>, message: SentMessage, end: FinalStatus) {
    let whatsapp = message.channel == "whatsapp";
    let mut steps = vec![("sent".to_owned(), None), (end.status.clone(), end.error_code)];
    if whatsapp && end.status == "failed" {
        steps.remove(0);
    }
    if whatsapp && end.status == "delivered" {
        steps.push(("read".to_owned(), None));
    }
    for (status, error_code) in steps {
        tokio::time::sleep(shared.config.callback_delay).await;
        {
            let mut memory = shared.memory.lock().expect("fake memory");
            if let Some(m) = memory.messages.iter_mut().rev().find(|m| m.sid == message.sid) {
                m.status.clone_from(&status);
                m.error_code = error_code;
            }
        }
        shared.touch();
        let Some(url) = message.status_callback.as_deref().filter(|_| shared.config.callbacks) else {
            continue;
        };
        let mut params = pairs(&[
            ("AccountSid", &shared.config.account_sid),
            ("ApiVersion", "2010-04-01"),
            ("MessageSid", &message.sid),
            ("SmsSid", &message.sid),
            ("MessageStatus", &status),
            ("SmsStatus", &status),
            ("To", &message.to),
        ]);
        if let Some(from) = &message.from {
            params.push(("From".to_owned(), from.clone()));
        }
        if let Some(service) = &message.messaging_service_sid {
            params.push(("MessagingServiceSid".to_owned(), service.clone()));
        }
        if let Some(code) = error_code {
            params.push(("ErrorCode".to_owned(), code.to_string()));
        }
        if whatsapp {
            let bare = message.to.trim_start_matches("whatsapp:");
            params.extend(pairs(&[("ChannelPrefix", "whatsapp"), ("ChannelToAddress", bare)]));
            if status == "delivered" || status == "read" {
                params.push(("EventType".to_owned(), status.to_uppercase()));
            }
        }
        let http_status = send_signed(&shared, url, "POST", &params).await.map(|(s, _)| s);
        {
            let mut memory = shared.memory.lock().expect("fake memory");
            if let Some(m) = memory.messages.iter_mut().rev().find(|m| m.sid == message.sid) {
                m.callbacks.push(MessageCallback {
                    status: status.clone(),
                    http_status,
                });
            }
        }
        if http_status.is_some_and(|s| (200..300).contains(&s)) {
            delivered(&shared);
        } else {
            shared.touch();
        }
    }
}

/// Applies `change` to the call `sid` and returns a copy of it afterwards.
fn update(shared: &Shared, sid: &str, change: impl FnOnce(&mut SentCall)) -> Option<SentCall> {
    let mut memory = shared.memory.lock().expect("fake memory");
    let call = memory.calls.iter_mut().rev().find(|c| c.sid == sid)?;
    change(call);
    call.date_updated = OffsetDateTime::now_utc();
    Some(call.clone())
}

/// The parameters Twilio sends about a call, in callbacks and when fetching its `Url`.
fn call_params(shared: &Shared, call: &SentCall, call_status: &str) -> Vec<(String, String)> {
    pairs(&[
        ("AccountSid", &shared.config.account_sid),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", &call.sid),
        ("CallStatus", call_status),
        ("Called", &call.to),
        ("Caller", &call.from),
        ("Direction", "outbound-api"),
        ("From", &call.from),
        ("To", &call.to),
    ])
}

/// The TwiML of an answered call: inline, or fetched from its `Url` (which wins when both
/// were given, as Twilio documents).
async fn instructions(shared: &Shared, call: &SentCall) -> Result<String, String> {
    if let Some(url) = &call.url {
        return match send_signed(shared, url, &call.method, &call_params(shared, call, "in-progress")).await {
            Some((200, body)) => Ok(body),
            Some((status, _)) => Err(format!("11200 HTTP retrieval failure: {url} answered {status}")),
            None => Err(format!("11200 HTTP retrieval failure: {url} could not be reached")),
        };
    }
    call.twiml
        .clone()
        .ok_or_else(|| "the application's VoiceUrl is not known to the fake".to_owned())
}

/// `initiated`, `ringing` (not for busy or failed calls), `answered` (completed calls), then
/// the final status; callbacks for the events asked for, numbered in firing order.
pub(crate) async fn run_call(shared: Arc<Shared>, sid: String) {
    let Some(call) = update(&shared, &sid, |_| {}) else {
        return;
    };
    let end = call.outcome;
    let mut steps = vec![("initiated", "initiated")];
    if matches!(end, CallEnd::Completed | CallEnd::NoAnswer) {
        steps.push(("ringing", "ringing"));
    }
    if end == CallEnd::Completed {
        steps.push(("answered", "in-progress"));
    }
    steps.push(("completed", end.status()));
    let mut sequence = 0;
    let mut answered_at = None;
    for (event, call_status) in steps {
        tokio::time::sleep(shared.config.callback_delay).await;
        let now = OffsetDateTime::now_utc();
        let call = match event {
            "initiated" => update(&shared, &sid, |c| c.start_time = Some(now)),
            "ringing" => update(&shared, &sid, |c| c.status = "ringing".into()),
            "answered" => {
                answered_at = Some(now);
                let Some(call) = update(&shared, &sid, |c| {
                    c.status = "in-progress".into();
                    c.answered_by = c.machine_detection.as_ref().map(|_| "human".into());
                }) else {
                    return;
                };
                let read = instructions(&shared, &call).await;
                let parsed = read.and_then(|doc| {
                    let segments = twiml::parse(&doc).map_err(|e| format!("12100 Document parse failure: {e}"));
                    Ok((doc, segments?))
                });
                update(&shared, &sid, |c| match parsed {
                    Ok((doc, segments)) => {
                        c.spoken = twiml::spoken_text(&segments);
                        (c.language, c.voice) = segments
                            .iter()
                            .find_map(|s| match s {
                                twiml::Segment::Say { language, voice, .. } => {
                                    Some((Some(language.clone()), voice.clone()))
                                }
                                twiml::Segment::Pause { .. } => None,
                            })
                            .unwrap_or_default();
                        c.segments = segments;
                        c.twiml = Some(doc);
                    }
                    Err(e) => c.twiml_error = Some(e),
                })
            }
            _ => update(&shared, &sid, |c| {
                c.status = call_status.into();
                c.end_time = Some(now);
                c.duration = answered_at.map(|at| ((now - at).as_seconds_f64().ceil() as u32).max(1));
            }),
        }
        .expect("calls are never removed");
        shared.touch();
        let wanted = call.status_callback_events.iter().any(|e| e == event);
        let Some(url) = call
            .status_callback
            .clone()
            .filter(|_| wanted && shared.config.callbacks)
        else {
            continue;
        };
        let mut params = call_params(&shared, &call, call_status);
        let timestamp = now.format(&Rfc2822).unwrap_or_default();
        params.extend(pairs(&[
            ("CallbackSource", "call-progress-events"),
            ("SequenceNumber", &sequence.to_string()),
            ("Timestamp", &timestamp),
        ]));
        if let Some(by) = &call.answered_by {
            params.push(("AnsweredBy".into(), by.clone()));
        }
        if event == "completed" {
            let seconds = call.duration.unwrap_or(0);
            params.push(("CallDuration".into(), seconds.to_string()));
            params.push(("SipResponseCode".into(), end.sip_response_code().to_string()));
            if end == CallEnd::Completed {
                params.push(("Duration".into(), seconds.div_ceil(60).to_string()));
            }
        }
        let answer = send_signed(&shared, &url, &call.status_callback_method, &params).await;
        let http_status = answer.map(|(s, _)| s);
        let record = CallCallback {
            sequence_number: sequence,
            call_status: call_status.to_owned(),
            http_status,
        };
        update(&shared, &sid, |c| c.callbacks_sent.push(record));
        sequence += 1;
        if http_status.is_some_and(|s| (200..300).contains(&s)) {
            delivered(&shared);
        } else {
            shared.touch();
        }
    }
}
