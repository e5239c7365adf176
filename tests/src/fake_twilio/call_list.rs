//! `GET …/Calls.json`: the calls placed, newest first, filtered by `To`, `From`, `Status`,
//! `StartTime`/`EndTime` (with `<`, `>`, `<=`, `>=`) and paged by `PageSize`/`Page`, in the
//! `ListCallResponse` envelope.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};

use super::calls::call_json;
use super::handlers::{AppState, Params, authorized, twilio_error, unauthorized};
use super::voice::SentCall;

/// A date filter's value: a day (`YYYY-MM-DD`, what the docs show) or an instant (RFC 3339,
/// e.g. `2026-05-01T00:00:00Z`, what twilio-python sends).
#[derive(Clone, Copy)]
enum Bound {
    Day(Date),
    Instant(OffsetDateTime),
}

fn bound(value: &str) -> Option<Bound> {
    let day = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(value, day)
        .map(Bound::Day)
        .or_else(|_| OffsetDateTime::parse(value, &Rfc3339).map(Bound::Instant))
        .ok()
}

/// Whether `at` passes the filter `op` (`=`: on that day; `<`: before; `>` and `>=`: on or
/// after; `<=`); a call not yet dialed (no time) never does.
fn passes(at: Option<OffsetDateTime>, op: &str, bound: Bound) -> bool {
    let Some(at) = at else { return false };
    let ordering = match bound {
        Bound::Day(d) => at.date().cmp(&d),
        Bound::Instant(t) if op == "=" => at.date().cmp(&t.to_offset(time::UtcOffset::UTC).date()),
        Bound::Instant(t) => at.cmp(&t),
    };
    match op {
        "=" => ordering.is_eq(),
        "<" => ordering.is_lt(),
        "<=" => ordering.is_le(),
        _ => ordering.is_ge(),
    }
}

/// `GET …/Calls.json?To=…&From=…&Status=…&StartTime>=…&PageSize=…&Page=…`, newest first.
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
    let mut dates = Vec::new();
    for (key, value) in &params.0 {
        for field in ["StartTime", "EndTime"] {
            let Some(op) = key.strip_prefix(field) else { continue };
            let op = if op.is_empty() { "=" } else { op };
            if !matches!(op, "=" | "<" | ">" | "<=" | ">=") {
                continue;
            }
            let Some(b) = bound(value) else {
                return twilio_error(
                    StatusCode::BAD_REQUEST,
                    20001,
                    &format!("Invalid value for {key}: {value}"),
                );
            };
            dates.push((field, op.to_owned(), b));
        }
    }
    let page_size: usize = params
        .get("PageSize")
        .and_then(|p| p.parse().ok())
        .unwrap_or(50)
        .clamp(1, 1000);
    let page: usize = params.get("Page").and_then(|p| p.parse().ok()).unwrap_or(0);
    let memory = shared.memory.lock().expect("fake memory");
    let matching: Vec<&SentCall> = memory
        .calls
        .iter()
        .rev()
        .filter(|c| params.get("To").is_none_or(|t| c.to == t))
        .filter(|c| params.get("From").is_none_or(|f| c.from == f))
        .filter(|c| params.get("Status").is_none_or(|s| c.status == s))
        .filter(|_| params.get("ParentCallSid").is_none())
        .filter(|c| {
            dates.iter().all(|(field, op, b)| {
                let at = if *field == "StartTime" {
                    c.start_time
                } else {
                    c.end_time
                };
                passes(at, op, *b)
            })
        })
        .collect();
    let start = page * page_size;
    let calls: Vec<Value> = matching
        .iter()
        .skip(start)
        .take(page_size)
        .map(|c| call_json(&shared, c))
        .collect();
    let filters: Vec<(String, String)> = params
        .0
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "Page" | "PageSize" | "PageToken"))
        .cloned()
        .collect();
    let path = format!("/2010-04-01/Accounts/{account}/Calls.json");
    let page_uri = |p: usize| {
        let mut q = filters.clone();
        q.push(("PageSize".into(), page_size.to_string()));
        q.push(("Page".into(), p.to_string()));
        format!("{path}?{}", serde_urlencoded::to_string(&q).unwrap_or_default())
    };
    let more = matching.len() > start + calls.len();
    Json(json!({
        "calls": calls,
        "end": (start + calls.len()).saturating_sub(1).max(start),
        "first_page_uri": page_uri(0),
        "next_page_uri": if more { Value::from(page_uri(page + 1)) } else { Value::Null },
        "page": page,
        "page_size": page_size,
        "previous_page_uri": if page > 0 { Value::from(page_uri(page - 1)) } else { Value::Null },
        "start": start,
        "uri": page_uri(page),
    }))
    .into_response()
}
