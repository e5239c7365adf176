//! The send step: from one job to one SMS (or a recorded reason why not).
//!
//! The step returns an outcome and never acks; the consumer loop owns acking, so a job is
//! acked only after its outcome is committed in PostgreSQL.

use std::time::Duration;

use backoff::backoff::Backoff;
use common::job::SendJob;
use common::phone::mask;
use common::repo::{self, AttemptRecord, Claim, DeliveryTarget};
use common::status::{DeliveryStatus, VerificationStatus};
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::config::WorkerConfig;
use crate::retry::{Decision, classify};
use crate::twilio::{CallResult, NewMessage, TwilioClient};

/// What became of a job. Every variant is final: the job is acked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    Submitted {
        sid: String,
    },
    /// Nothing was sent, on purpose (superseded, expired, already sent, unknown).
    Skipped(&'static str),
    /// Twilio refused for good, or the attempts ran out.
    Failed {
        twilio_code: Option<i32>,
    },
}

/// What the send step needs, shared by all in-flight sends of a worker.
pub struct SendContext {
    pub pool: PgPool,
    pub twilio: TwilioClient,
    pub config: WorkerConfig,
}

/// Seconds of validity below which an SMS is not worth sending: the user could not type it.
const MIN_USEFUL_SECONDS: i64 = 5;

impl SendContext {
    fn status_callback(&self) -> String {
        format!("{}/v1/webhooks/twilio/status", self.config.public_base_url)
    }

    fn body(&self, code: &str) -> String {
        self.config.sms_template.replace("{code}", code)
    }

    /// Runs one job to its outcome. An `Err` means PostgreSQL failed: the job must be
    /// returned to the queue, nothing about it is final.
    #[tracing::instrument(skip_all, fields(verification_id = %job.verification_id, request_id = job.request_id.as_deref().unwrap_or("")))]
    pub async fn process(&self, job: &SendJob) -> anyhow::Result<JobOutcome> {
        let id = job.verification_id;
        let (phone, expires_at, previous_attempts) = match repo::claim_send(&self.pool, id).await? {
            Claim::Claimed {
                phone_number,
                expires_at,
                send_attempts,
            } => (phone_number, expires_at, send_attempts),
            Claim::Skip(found) => return self.skip(id, found).await,
        };
        if previous_attempts > 0 {
            // A worker already called Twilio for this job and did not record the result
            // (it died, or the broker redelivered): ask Twilio before sending again.
            if let Some(sid) = self.find_sent(&phone, &job.code).await {
                repo::mark_submitted(&self.pool, id, &sid).await?;
                return Ok(JobOutcome::Submitted { sid });
            }
        }
        let body = self.body(&job.code);
        let mut schedule = self.config.retry.schedule();
        let mut attempt = previous_attempts;
        loop {
            attempt += 1;
            let remaining = (expires_at - OffsetDateTime::now_utc()).whole_seconds();
            if remaining < MIN_USEFUL_SECONDS {
                repo::advance_delivery(
                    &self.pool,
                    DeliveryTarget::Id(id),
                    DeliveryStatus::Expired,
                    None,
                )
                .await?;
                return Ok(JobOutcome::Skipped("expired before it could be sent"));
            }
            let started_at = OffsetDateTime::now_utc();
            let result = self
                .twilio
                .create_message(&NewMessage {
                    to: &phone,
                    sender: &self.config.sender,
                    body: &body,
                    status_callback: &self.status_callback(),
                    validity_period: remaining.clamp(1, 36_000) as u64,
                })
                .await;
            let mut decision = classify(result.outcome);
            let mut sid = result.sid.clone();
            if decision == Decision::Ambiguous
                && let Some(found) = self.find_sent(&phone, &job.code).await
            {
                (decision, sid) = (Decision::Success, Some(found));
            }
            self.record(id, attempt, started_at, decision, &result, sid.as_deref())
                .await?;
            tracing::info!(attempt, outcome = decision.as_str(), to = %mask(&phone), "twilio call");
            match (decision, sid) {
                (Decision::Success, Some(sid)) => {
                    repo::mark_submitted(&self.pool, id, &sid).await?;
                    return Ok(JobOutcome::Submitted { sid });
                }
                (Decision::Permanent, _) => return self.fail(id, twilio_code(&result)).await,
                _ if attempt >= self.config.max_attempts as i32 => {
                    return self.fail(id, twilio_code(&result)).await;
                }
                _ => {
                    let delay = schedule
                        .next_backoff()
                        .unwrap_or(self.config.retry.max_delay);
                    tokio::time::sleep(delay.min(Duration::from_secs(remaining.max(0) as u64)))
                        .await;
                }
            }
        }
    }

    async fn record(
        &self,
        id: Uuid,
        attempt: i32,
        started_at: OffsetDateTime,
        decision: Decision,
        result: &CallResult,
        sid: Option<&str>,
    ) -> sqlx::Result<()> {
        let http_status = match result.outcome {
            crate::retry::CallOutcome::Answered { http_status, .. } => Some(i32::from(http_status)),
            crate::retry::CallOutcome::Created => Some(201),
            crate::retry::CallOutcome::NoAnswer { .. } => None,
        };
        repo::record_attempt(
            &self.pool,
            &AttemptRecord {
                verification_id: id,
                attempt,
                started_at,
                outcome: decision.as_str(),
                http_status,
                twilio_error_code: twilio_code(result),
                error_message: result.error_message.as_deref(),
                provider_message_sid: sid,
            },
        )
        .await
    }

    async fn fail(&self, id: Uuid, twilio_code: Option<i32>) -> anyhow::Result<JobOutcome> {
        repo::advance_delivery(
            &self.pool,
            DeliveryTarget::Id(id),
            DeliveryStatus::Failed,
            twilio_code,
        )
        .await?;
        Ok(JobOutcome::Failed { twilio_code })
    }

    /// Records why a job that could not be claimed is not sent.
    async fn skip(
        &self,
        id: Uuid,
        found: Option<repo::Verification>,
    ) -> anyhow::Result<JobOutcome> {
        let Some(v) = found else {
            return Ok(JobOutcome::Skipped("no such verification"));
        };
        if !v.delivery_status.can_advance_to(DeliveryStatus::Sending) {
            return Ok(JobOutcome::Skipped("already sent or settled"));
        }
        let (status, reason) = match v.status {
            VerificationStatus::Expired => (DeliveryStatus::Expired, "verification expired"),
            _ => (DeliveryStatus::Canceled, "verification no longer pending"),
        };
        repo::advance_delivery(&self.pool, DeliveryTarget::Id(id), status, None).await?;
        Ok(JobOutcome::Skipped(reason))
    }

    /// Looks for a message with this job's code sent to `phone` today or yesterday (UTC):
    /// the answer to "did the ambiguous call go out?". Any failure to ask counts as "no".
    async fn find_sent(&self, phone: &str, code: &str) -> Option<String> {
        let since = (OffsetDateTime::now_utc() - time::Duration::days(1))
            .date()
            .to_string();
        let body = self.body(code);
        match self.twilio.list_messages(phone, &since).await {
            Ok(messages) => messages
                .into_iter()
                .find(|m| {
                    m.body.as_deref() == Some(body.as_str())
                        && m.to.as_deref().is_none_or(|to| to == phone)
                })
                .map(|m| m.sid),
            Err(e) => {
                tracing::warn!(error = %e, "could not list messages to settle an ambiguous send");
                None
            }
        }
    }
}

fn twilio_code(result: &CallResult) -> Option<i32> {
    match result.outcome {
        crate::retry::CallOutcome::Answered { twilio_code, .. } => twilio_code,
        _ => None,
    }
}
