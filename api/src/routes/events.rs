//! The shape of the events POSTed to `EVENTS_URL` (no route of this API: the workers send
//! them). Declared here for the OpenAPI document; the end-to-end tests read every event they
//! receive into these types, which refuse unknown fields, so the document cannot drift from
//! what is sent (the triggers of the migration `…_events.sql` build the JSON).

use common::status::{DeliveryStatus, VerificationStatus};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// One event, POSTed as JSON with the Standard Webhooks headers `webhook-id` (the same on
/// every try of this event: drop repeats), `webhook-timestamp` (Unix seconds of this try) and
/// `webhook-signature` (`v1,` + base64 of HMAC-SHA256 over `{id}.{timestamp}.{body}`, keyed
/// with the bytes of `EVENTS_SECRET` after `whsec_`). Answer 2xx within `EVENTS_TIMEOUT_MS`;
/// anything else is tried again after each delay of `EVENTS_RETRY_SCHEDULE`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: EventType,
    /// When the change was committed (RFC 3339, UTC, microseconds).
    #[schema(example = "2026-11-29T12:00:00.123456Z")]
    pub timestamp: String,
    pub data: EventData,
}

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum EventType {
    /// The right code was checked.
    #[serde(rename = "verification.approved")]
    Approved,
    /// No channel could deliver the code (the last one failed for good).
    #[serde(rename = "verification.failed")]
    Failed,
    /// The code ran out before it was approved (raised within a second of `expires_at`).
    #[serde(rename = "verification.expired")]
    Expired,
    /// The last allowed check was wrong.
    #[serde(rename = "verification.max_attempts_reached")]
    MaxAttemptsReached,
    /// A newer start for the same number replaced it.
    #[serde(rename = "verification.canceled")]
    Canceled,
    /// The delivery of a channel changed (every status but `sending`), or the next channel
    /// was taken (`queued` on that channel).
    #[serde(rename = "delivery.updated")]
    DeliveryUpdated,
}

/// The verification as the change left it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventData {
    pub id: Uuid,
    #[schema(example = "+14155552671")]
    pub phone_number: String,
    pub status: VerificationStatus,
    /// The channel the delivery is about: `sms`, `whatsapp` or `call`.
    #[schema(example = "sms")]
    pub channel: String,
    pub delivery_status: DeliveryStatus,
    /// Twilio's error code of a failed delivery.
    #[schema(example = json!(null))]
    pub error_code: Option<i32>,
}
