//! The JSON shapes of the answers about verifications.

use common::repo::{EndedStep, Verification};
use common::status::{DeliveryStatus, VerificationStatus};
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

/// The answer to a start.
#[derive(Debug, Serialize, ToSchema)]
pub struct Started {
    id: Uuid,
    phone_number: String,
    status: VerificationStatus,
    delivery_status: DeliveryStatus,
    /// The channels, in order.
    #[schema(example = json!(["sms"]))]
    channels: Vec<String>,
    /// The channel in use: `sms`, `whatsapp` or `call`.
    #[schema(example = "sms")]
    channel: String,
    /// The locale the code is sent in.
    #[schema(example = "en")]
    locale: String,
    /// One of `TEST_NUMBERS`: nothing is sent, the code is the configured one.
    test: bool,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
}

impl From<Verification> for Started {
    fn from(v: Verification) -> Self {
        Self {
            id: v.id,
            channel: v.channel().to_owned(),
            phone_number: v.phone_number,
            status: v.status,
            delivery_status: v.delivery_status,
            channels: v.channels,
            locale: v.locale,
            test: v.test,
            created_at: v.created_at,
            expires_at: v.expires_at,
        }
    }
}

impl Started {
    /// The answer a start gave when it stored `v`: pending, its delivery queued, on its first
    /// channel. For an `Idempotency-Key` whose first answer was lost with its process.
    pub fn as_first_answered(v: Verification) -> Self {
        let mut started = Self::from(v);
        started.status = VerificationStatus::Pending;
        if !started.test {
            started.delivery_status = DeliveryStatus::Queued;
        }
        started.channel = started.channels.first().cloned().unwrap_or_else(|| "sms".into());
        started
    }
}

/// The answer to a check.
#[derive(Debug, Serialize, ToSchema)]
pub struct Checked {
    pub(super) id: Uuid,
    pub(super) phone_number: String,
    pub(super) status: VerificationStatus,
    pub(super) valid: bool,
    pub(super) attempts_remaining: i32,
    pub(super) delivery_status: DeliveryStatus,
}

/// One channel step of a verification.
#[derive(Debug, Serialize, ToSchema)]
pub struct Step {
    #[schema(example = "sms")]
    channel: String,
    delivery_status: DeliveryStatus,
    /// Twilio's `SM…` (message) or `CA…` (call) sid, once Twilio took it.
    provider_sid: Option<String>,
    /// Twilio's error code of a failed delivery.
    error_code: Option<i32>,
    #[serde(with = "time::serde::rfc3339")]
    started_at: OffsetDateTime,
}

/// A verification as `GET /v1/verifications/{id}` shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerificationView {
    id: Uuid,
    phone_number: String,
    status: VerificationStatus,
    /// The delivery of the step in use.
    delivery_status: DeliveryStatus,
    check_attempts: i32,
    send_attempts: i32,
    /// The sid of the step in use.
    provider_message_sid: Option<String>,
    delivery_error_code: Option<i32>,
    /// The channels, in order.
    #[schema(example = json!(["sms"]))]
    channels: Vec<String>,
    /// The channel in use.
    #[schema(example = "sms")]
    channel: String,
    /// Every channel step taken, oldest first.
    steps: Vec<Step>,
    /// The locale the code is sent in.
    #[schema(example = "en")]
    locale: String,
    /// One of `TEST_NUMBERS`: nothing is sent, the code is the configured one.
    test: bool,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
}

impl VerificationView {
    /// The verification with the steps that ended before the one in use (oldest first).
    pub fn new(v: Verification, ended: Vec<EndedStep>) -> Self {
        let mut steps: Vec<Step> = ended
            .into_iter()
            .map(|s| Step {
                channel: s.channel,
                delivery_status: s.delivery_status,
                provider_sid: s.provider_sid,
                error_code: s.error_code,
                started_at: s.started_at,
            })
            .collect();
        // The step in use is described by the row itself.
        steps.push(Step {
            channel: v.channel().to_owned(),
            delivery_status: v.delivery_status,
            provider_sid: v.provider_message_sid.clone(),
            error_code: v.delivery_error_code,
            started_at: v.step_started_at,
        });
        Self {
            id: v.id,
            channel: v.channel().to_owned(),
            phone_number: v.phone_number,
            status: v.status,
            delivery_status: v.delivery_status,
            check_attempts: v.check_attempts,
            send_attempts: v.send_attempts,
            provider_message_sid: v.provider_message_sid,
            delivery_error_code: v.delivery_error_code,
            channels: v.channels,
            steps,
            locale: v.locale,
            test: v.test,
            created_at: v.created_at,
            updated_at: v.updated_at,
            expires_at: v.expires_at,
        }
    }
}
