//! Voice calls and WhatsApp settings as tests see them: the calls placed, how a number's
//! calls end, and the accessors of [`FakeTwilio`] for them.

use serde::Serialize;
use time::OffsetDateTime;

use super::state::{FakeTwilio, FinalStatus, WhatsAppFreeForm};
use super::twiml::Segment;

/// How a call to a number ends (the final `CallStatus` of its `completed` event).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallEnd {
    /// Answered, the TwiML played, hung up (the default).
    #[default]
    Completed,
    /// The line was busy.
    Busy,
    /// Rang until `Timeout` (or was rejected).
    NoAnswer,
    /// Could not be placed (e.g. the number does not exist).
    Failed,
}

impl CallEnd {
    pub fn status(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Busy => "busy",
            Self::NoAnswer => "no-answer",
            Self::Failed => "failed",
        }
    }

    /// The `SipResponseCode` of its terminal callback.
    pub fn sip_response_code(self) -> u16 {
        match self {
            Self::Completed => 200,
            Self::Busy => 486,
            Self::NoAnswer => 487,
            Self::Failed => 404,
        }
    }
}

/// One status callback the fake posted for a call.
#[derive(Debug, Clone, Serialize)]
pub struct CallCallback {
    pub sequence_number: u32,
    pub call_status: String,
    /// The receiver's HTTP status; `None` when the request failed.
    pub http_status: Option<u16>,
}

/// A voice call the fake accepted.
#[derive(Debug, Clone, Serialize)]
pub struct SentCall {
    pub sid: String,
    pub to: String,
    pub from: String,
    /// The resource's status now: `queued`, `ringing`, `in-progress`, then the final one.
    pub status: String,
    /// The TwiML executed (inline, or fetched from `Url` when the call was answered).
    pub twiml: Option<String>,
    pub url: Option<String>,
    /// How `Url` is fetched (`Method`, default POST).
    pub method: String,
    pub application_sid: Option<String>,
    /// What the callee heard, once the call was answered: each `<Say>`'s text (`loop` times,
    /// `say-as` digits one by one), in order. Empty until then, and for unanswered calls.
    pub spoken: String,
    /// The `<Say>` and `<Pause>` verbs in order, with their attributes.
    pub segments: Vec<Segment>,
    /// `language` and `voice` of the first `<Say>`.
    pub language: Option<String>,
    pub voice: Option<String>,
    /// Why the TwiML could not be read or fetched (Twilio would log 12100 or 11200).
    pub twiml_error: Option<String>,
    pub status_callback: Option<String>,
    pub status_callback_method: String,
    /// The events asked for (`initiated`, `ringing`, `answered`, `completed`).
    pub status_callback_events: Vec<String>,
    pub timeout: u32,
    pub machine_detection: Option<String>,
    pub answered_by: Option<String>,
    /// How it ends (decided at creation).
    pub outcome: CallEnd,
    #[serde(with = "time::serde::rfc3339")]
    pub date_created: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub date_updated: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub start_time: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub end_time: Option<OffsetDateTime>,
    /// Seconds, for completed calls.
    pub duration: Option<u32>,
    pub callbacks_sent: Vec<CallCallback>,
}

impl SentCall {
    /// The spoken text with digits said one by one joined again (`4 8 2 9 1 3.` → `482913.`),
    /// so that `harness::code_in` finds the code in it.
    pub fn code_text(&self) -> String {
        join_spoken_digits(&self.spoken)
    }

    /// Whether it reached a final status.
    pub fn is_final(&self) -> bool {
        matches!(
            self.status.as_str(),
            "completed" | "busy" | "no-answer" | "failed" | "canceled"
        )
    }
}

/// Joins single digits separated by spaces or commas into one number.
pub fn join_spoken_digits(spoken: &str) -> String {
    let mut out = String::new();
    let mut joinable = false;
    for token in spoken.split_whitespace() {
        let core = token.trim_end_matches([',', '.', ';', ':', '!', '?']);
        let tail = &token[core.len()..];
        let single = core.len() == 1 && core.chars().all(|c| c.is_ascii_digit());
        if single && joinable {
            if out.ends_with(',') {
                out.pop();
            }
        } else if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(core);
        out.push_str(tail);
        joinable = single && (tail.is_empty() || tail == ",");
    }
    out
}

/// The fake's own magic numbers (beside Twilio's test-credential ones): calls to these end
/// this way, WhatsApp messages to these fail with this error.
pub(crate) fn magic_call_end(to: &str) -> Option<CallEnd> {
    match to {
        "+15005550020" => Some(CallEnd::Busy),
        "+15005550021" => Some(CallEnd::NoAnswer),
        "+15005550022" => Some(CallEnd::Failed),
        _ => None,
    }
}

pub(crate) fn magic_whatsapp_failure(to: &str) -> Option<FinalStatus> {
    let code = match to {
        "whatsapp:+15005550030" => 63003,
        "whatsapp:+15005550031" => 63024,
        _ => return None,
    };
    Some(FinalStatus {
        status: "failed".into(),
        error_code: Some(code),
    })
}

impl FakeTwilio {
    /// Every call placed, oldest first.
    pub fn calls(&self) -> Vec<SentCall> {
        self.memory().calls.clone()
    }

    pub fn calls_to(&self, to: &str) -> Vec<SentCall> {
        self.memory().calls.iter().filter(|c| c.to == to).cloned().collect()
    }

    pub fn call(&self, sid: &str) -> Option<SentCall> {
        self.memory().calls.iter().rev().find(|c| c.sid == sid).cloned()
    }

    /// Makes calls to `to` end `busy`, `no-answer`, `failed` (or `completed` again).
    pub fn set_call_outcome(&self, to: &str, end: CallEnd) {
        self.memory().call_outcomes.insert(to.to_owned(), end);
    }

    /// What a WhatsApp `Body` without `ContentSid` does from now on.
    pub fn set_whatsapp_free_form(&self, mode: WhatsAppFreeForm) {
        self.memory().whatsapp_free_form = mode;
    }

    /// Makes `number` (E.164, with or without `whatsapp:`) "not on WhatsApp": its WhatsApp
    /// messages are accepted, then fail with `code` (63003 or 63024).
    pub fn set_not_on_whatsapp(&self, number: &str, code: i32) {
        let number = number.strip_prefix("whatsapp:").unwrap_or(number);
        self.set_final_status(&format!("whatsapp:{number}"), "failed", Some(code));
    }
}
