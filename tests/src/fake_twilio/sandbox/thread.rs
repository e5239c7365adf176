//! What the page lists: the numbers, newest first, and one number's thread, oldest first.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::bare;
use crate::fake_twilio::state::{Memory, Shared};
use crate::fake_twilio::voice::join_spoken_digits;

/// Most numbers one answer lists.
const MOST_NUMBERS: usize = 500;
/// Most items one thread shows (its newest).
const MOST_ITEMS: usize = 200;

#[derive(Deserialize)]
pub(crate) struct NumbersQuery {
    /// Only numbers containing this (digits and `+`).
    #[serde(default)]
    filter: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /sandbox/numbers?filter=…&limit=…`: `{"numbers": [{"number", "last_at", "items",
/// "last"}], "total": n}`, the number that last received something first.
pub(crate) async fn numbers(State(shared): State<Arc<Shared>>, Query(q): Query<NumbersQuery>) -> Json<Value> {
    let limit = q.limit.unwrap_or(100).clamp(1, MOST_NUMBERS);
    let filter = q.filter.as_deref().map(str::trim).filter(|f| !f.is_empty());
    let memory = shared.memory.lock().expect("fake memory");
    // Per number: when it last received something, how many things, and what the last was.
    let mut seen: HashMap<&str, Summary> = HashMap::new();
    // Newest first, so that most numbers' last thing is put in words once.
    for m in memory.messages.iter().rev() {
        note(&mut seen, filter, &m.to, m.date_created, || {
            format!("{}: {}", channel_name(&m.channel), m.body)
        });
    }
    for c in memory.calls.iter().rev() {
        note(&mut seen, filter, &c.to, c.date_created, || {
            format!("Call ({})", c.status)
        });
    }
    for f in memory.faulted.iter().rev() {
        note(&mut seen, filter, &f.to, f.at, || {
            format!("{} answered {}", f.resource, f.answer)
        });
    }
    let total = seen.len();
    let mut listed: Vec<_> = seen.into_iter().collect();
    listed.sort_by(|a, b| b.1.0.cmp(&a.1.0).then_with(|| a.0.cmp(b.0)));
    let numbers: Vec<Value> = listed
        .into_iter()
        .take(limit)
        .map(|(number, (at, items, last))| json!({ "number": number, "last_at": rfc3339(at), "items": items, "last": last }))
        .collect();
    Json(json!({ "numbers": numbers, "total": total }))
}

/// A number's last time, count of things received, and the last one in words.
type Summary = (OffsetDateTime, usize, String);

fn note<'a>(
    seen: &mut HashMap<&'a str, Summary>,
    filter: Option<&str>,
    to: &'a str,
    at: OffsetDateTime,
    what: impl FnOnce() -> String,
) {
    let number = bare(to);
    if filter.is_some_and(|f| !number.contains(f)) {
        return;
    }
    let entry = seen.entry(number).or_insert((at, 0, String::new()));
    entry.1 += 1;
    if at > entry.0 || entry.2.is_empty() {
        entry.0 = at;
        entry.2 = what();
    }
}

#[derive(Deserialize)]
pub(crate) struct ThreadQuery {
    number: String,
}

/// `GET /sandbox/thread?number=+1…`: `{"number", "items": […]}`, oldest first (the newest
/// [`MOST_ITEMS`]). Each item has `kind` (`sms`, `whatsapp`, `call`, `fault`), `at`, and:
/// messages `sid`, `status`, `error_code`, `text`, `code`, `callbacks` (`status`,
/// `http_status`); calls the same with the spoken text, plus `language`; faults `resource`,
/// `answer`, `created`.
pub(crate) async fn thread(State(shared): State<Arc<Shared>>, Query(q): Query<ThreadQuery>) -> Json<Value> {
    let number = q.number.trim();
    let memory = shared.memory.lock().expect("fake memory");
    let mut items = thread_items(&memory, number);
    items.sort_by_key(|(at, _)| *at);
    let skip = items.len().saturating_sub(MOST_ITEMS);
    let items: Vec<Value> = items.into_iter().skip(skip).map(|(_, item)| item).collect();
    Json(json!({ "number": number, "items": items }))
}

fn thread_items(memory: &Memory, number: &str) -> Vec<(OffsetDateTime, Value)> {
    let mut items = Vec::new();
    for m in memory.messages.iter().filter(|m| bare(&m.to) == number) {
        items.push((
            m.date_created,
            json!({
                "kind": m.channel, "at": rfc3339(m.date_created), "sid": m.sid, "to": m.to,
                "status": m.status, "error_code": m.error_code, "text": m.body,
                "code": code_in(&m.body), "callbacks": m.callbacks,
            }),
        ));
    }
    for c in memory.calls.iter().filter(|c| bare(&c.to) == number) {
        let callbacks: Vec<Value> = c
            .callbacks_sent
            .iter()
            .map(|cb| json!({ "status": cb.call_status, "http_status": cb.http_status }))
            .collect();
        let text = match (&c.twiml_error, c.spoken.is_empty()) {
            (Some(error), _) => format!("(the call's TwiML could not be read: {error})"),
            (None, true) => String::new(),
            // Digits said one by one are joined again, so that the code shows as one.
            (None, false) => join_spoken_digits(&c.spoken),
        };
        items.push((
            c.date_created,
            json!({
                "kind": "call", "at": rfc3339(c.date_created), "sid": c.sid, "to": c.to,
                "status": c.status, "error_code": null, "text": text,
                "code": code_in(&text), "language": c.language,
                "callbacks": callbacks,
            }),
        ));
    }
    for f in memory.faulted.iter().filter(|f| bare(&f.to) == number) {
        items.push((
            f.at,
            json!({
                "kind": "fault", "at": rfc3339(f.at), "to": f.to, "resource": f.resource,
                "answer": f.answer, "created": f.created,
            }),
        ));
    }
    items
}

fn channel_name(channel: &str) -> &'static str {
    match channel {
        "whatsapp" => "WhatsApp",
        _ => "SMS",
    }
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The code in a text: its last run of 4 to 10 digits (the service's texts end with the code;
/// a custom template may not).
pub(crate) fn code_in(text: &str) -> Option<String> {
    text.split(|c: char| !c.is_ascii_digit())
        .rfind(|run| (4..=10).contains(&run.len()))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::code_in;

    #[test]
    fn the_code_is_the_last_run_of_four_to_ten_digits() {
        assert_eq!(code_in("Your verification code is 482913").as_deref(), Some("482913"));
        assert_eq!(code_in("Code 482913, valid for 10 minutes").as_deref(), Some("482913"));
        assert_eq!(code_in("Call 5551234567 about 1234").as_deref(), Some("1234"));
        assert_eq!(code_in("no code here, only 12 and 123"), None);
        assert_eq!(code_in("12345678901 is too long"), None);
    }
}
