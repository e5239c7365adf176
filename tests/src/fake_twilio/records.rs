//! What the fake records and is told: the faults it injects, how messages end, the messages
//! it accepted with the callbacks posted for them.

use serde::Serialize;

/// One fault to inject into the next create call (or drawn at random, see `fault_rate`). The
/// queue and the rate are shared by `Messages.json` and `Calls.json`: whichever create comes
/// next takes the next fault, so a test of one channel queues faults as before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// 429 / 20429: too many concurrent requests (never processed).
    TooManyRequests,
    /// The same, with `Retry-After` of this many seconds.
    TooManyRequestsRetryAfter(u64),
    /// 503 / 20503: service unavailable (never processed).
    Unavailable,
    /// 500 / 20500 without creating the message.
    InternalError,
    /// 500 / 20500 after the message or call was created (and will be delivered / placed).
    InternalErrorAfterCreate,
    /// No answer until the client gives up, without creating anything.
    Timeout,
    /// No answer until the client gives up, after the message or call was created: it goes
    /// on (callbacks, inbox, list) as if the answer had arrived.
    TimeoutAfterCreate,
}

impl Fault {
    /// What the client is answered, in words (for the sandbox).
    pub fn answer(self) -> &'static str {
        match self {
            Self::TooManyRequests | Self::TooManyRequestsRetryAfter(_) => "429 Too Many Requests",
            Self::Unavailable => "503 Service Unavailable",
            Self::InternalError | Self::InternalErrorAfterCreate => "500 Internal Server Error",
            Self::Timeout | Self::TimeoutAfterCreate => "no answer (timed out)",
        }
    }
}

/// How a message's status callbacks end.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct FinalStatus {
    pub status: String,
    pub error_code: Option<i32>,
}

/// A message the fake accepted (SMS or WhatsApp).
#[derive(Debug, Clone, Serialize)]
pub struct SentMessage {
    pub sid: String,
    /// As given, with its channel prefix (`whatsapp:+1…`) if any.
    pub to: String,
    pub from: Option<String>,
    pub messaging_service_sid: Option<String>,
    /// The text sent: `Body`, or the content template rendered with `ContentVariables`.
    pub body: String,
    pub status_callback: Option<String>,
    pub validity_period: Option<u32>,
    #[serde(with = "time::serde::rfc3339")]
    pub date_created: time::OffsetDateTime,
    /// `sms` or `whatsapp`.
    pub channel: String,
    pub content_sid: Option<String>,
    pub content_variables: Option<String>,
    /// The resource's status now (`queued`/`accepted`, `sent`, `delivered`, `read`, …).
    pub status: String,
    pub error_code: Option<i32>,
    /// The status callbacks posted for it, in order (for the sandbox; not in `/inbox`).
    #[serde(skip)]
    pub callbacks: Vec<MessageCallback>,
}

/// A status callback posted for a message: the status it told, and the receiver's answer
/// (`None` when none came).
#[derive(Debug, Clone, Serialize)]
pub struct MessageCallback {
    pub status: String,
    pub http_status: Option<u16>,
}

/// What a business-initiated WhatsApp message with a free-form `Body` (no `ContentSid`) does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WhatsAppFreeForm {
    /// As Twilio does outside the 24-hour window: accepted (201), then `failed` with 63016.
    #[default]
    OutsideWindow,
    /// As if the user had written within 24 hours: delivered like a template.
    InsideWindow,
}
