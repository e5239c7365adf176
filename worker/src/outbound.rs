//! What a worker publishes besides acking: a finished job's retry into the delay queues, its
//! dead letter, and a deferred job sent back to wait the rest of its delay. Each publish is
//! confirmed by the broker before the delivery it follows from is acked.

use std::time::{Duration, SystemTime};

use common::broker::{RETRY_TIERS, Topology, job_properties, publish_confirmed};
use common::job::SendJob;
use common::metric_names as names;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel};
use tokio_util::sync::CancellationToken;

use crate::retry::tier_for;
use crate::send::JobOutcome;

/// Longest wait for the broker's confirm of a retry or dead letter.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a worker sends follow-up messages: a confirm-mode channel beside the consumer's.
pub struct Outbound {
    pub channel: Channel,
    pub topology: Topology,
}

impl Outbound {
    /// A deferred job that a delay queue gave back before its due time waits for the rest: in
    /// the worker when the rest is short (at most `RETRY_INPROCESS_MAX_MS`, or shorter than the
    /// shortest tier), else in the delay queue that fits it (then `false`: this delivery is
    /// done). Touches no database and holds no lease.
    pub async fn wait_until_due(
        &self,
        job: &SendJob,
        in_process_max: Duration,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<bool> {
        let Some(left) = job.wait_left(SystemTime::now()) else {
            return Ok(true);
        };
        if left <= in_process_max.max(RETRY_TIERS[0]) {
            tokio::select! {
                _ = tokio::time::sleep(left) => return Ok(true),
                _ = shutdown.cancelled() => {}
            }
        }
        let left = job.wait_left(SystemTime::now()).unwrap_or_default();
        let queue = self.topology.retry_queue(tier_for(left));
        publish_confirmed(
            &self.channel,
            &queue,
            &job.to_bytes(),
            job_properties(job),
            CONFIRM_TIMEOUT,
        )
        .await?;
        tracing::debug!(verification_id = %job.verification_id, queue, left_ms = left.as_millis() as u64, "deferred job not yet due");
        Ok(false)
    }

    /// Does what an outcome says beyond the database (already written): publish the retry or
    /// the dead letter. Only then may the delivery be acked.
    pub async fn follow_up(&self, mut job: SendJob, outcome: JobOutcome) -> anyhow::Result<()> {
        let id = job.verification_id;
        match outcome {
            JobOutcome::Submitted { sid } => {
                metrics::counter!(names::JOBS, "outcome" => "submitted").increment(1);
                tracing::info!(verification_id = %id, message_sid = %sid, "SMS submitted");
            }
            JobOutcome::Skipped(reason) => {
                metrics::counter!(names::JOBS, "outcome" => "skipped").increment(1);
                tracing::info!(verification_id = %id, reason, "SMS not sent");
            }
            JobOutcome::Failed { twilio_code } => {
                metrics::counter!(names::JOBS, "outcome" => "failed").increment(1);
                tracing::warn!(verification_id = %id, twilio_code, "SMS refused by Twilio");
            }
            JobOutcome::Retry { attempts, delay } => {
                job.attempt = attempts;
                job.due_after(SystemTime::now(), delay);
                let queue = self.topology.retry_queue(tier_for(delay));
                publish_confirmed(
                    &self.channel,
                    &queue,
                    &job.to_bytes(),
                    job_properties(&job),
                    CONFIRM_TIMEOUT,
                )
                .await?;
                metrics::counter!(names::JOBS, "outcome" => "deferred").increment(1);
                tracing::info!(verification_id = %id, attempts, queue, delay_ms = delay.as_millis() as u64, "send deferred");
            }
            JobOutcome::DeadLetter { reason } => {
                self.dead_letter(&job.to_bytes(), Some(&job), &reason).await?;
            }
        }
        Ok(())
    }

    /// Publishes `payload` to the dead-letter queue with the reason in its headers.
    pub async fn dead_letter(&self, payload: &[u8], job: Option<&SendJob>, reason: &str) -> anyhow::Result<()> {
        let mut headers = FieldTable::default();
        headers.insert("x-dead-reason".into(), AMQPValue::LongString(LongString::from(reason)));
        let at = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339)?;
        headers.insert("x-dead-at".into(), AMQPValue::LongString(LongString::from(at.as_str())));
        let properties = match job {
            Some(job) => job_properties(job),
            None => BasicProperties::default().with_delivery_mode(2),
        }
        .with_headers(headers);
        let queue = self.topology.dead_letter_queue();
        publish_confirmed(&self.channel, &queue, payload, properties, CONFIRM_TIMEOUT).await?;
        metrics::counter!(names::DEAD_LETTERS).increment(1);
        tracing::warn!(verification_id = ?job.map(|j| j.verification_id), reason, "job dead-lettered");
        Ok(())
    }
}
