//! How a send ends without a call of its own: an earlier call found (or not) at Twilio,
//! the job deferred to a delay queue, or the delivery expired, failed or skipped.

use std::time::Duration;

use common::repo::{self, DeliveryTarget};
use common::status::{DeliveryStatus, VerificationStatus};
use uuid::Uuid;

use super::{ClaimedSend, JobOutcome, SendContext};
use crate::retry::{Next, tier_for};

impl SendContext {
    /// An earlier call's result is unknown (it was ambiguous, or its worker died during it):
    /// asks Twilio. `Some`: the job is settled (found, or cannot tell yet and must wait).
    pub(super) async fn settle_earlier_call(&self, send: &ClaimedSend<'_>) -> anyhow::Result<Option<JobOutcome>> {
        let id = send.id();
        match self.find_sent(send).await {
            Ok(Some(sid)) => {
                repo::settle_unknown_attempts(&self.pool, id, true).await?;
                repo::mark_submitted(&self.pool, id, &sid).await?;
                Ok(Some(JobOutcome::Submitted { sid }))
            }
            Ok(None) => {
                repo::settle_unknown_attempts(&self.pool, id, false).await?;
                Ok(None)
            }
            Err(_) => Ok(Some(self.defer(send).await?)),
        }
    }

    /// Hands the job to a delay queue (or lets it expire), releasing the send.
    pub(super) async fn defer(&self, send: &ClaimedSend<'_>) -> anyhow::Result<JobOutcome> {
        let delay = self.config.retry.delay_after(send.made.max(1));
        match self.config.retry.after_delay(delay, send.remaining()) {
            Next::Expiring => self.expire(send.id()).await,
            _ => self.wait_in(send, delay).await,
        }
    }

    /// Releases the send while the job waits `delay` in the delay queues.
    pub(super) async fn wait_in(&self, send: &ClaimedSend<'_>, delay: Duration) -> anyhow::Result<JobOutcome> {
        let queue = self.config.shared.topology.retry_queue(tier_for(delay));
        if !repo::release_claim(&self.pool, send.id(), send.holder, &queue).await? {
            tracing::warn!("the send's lease had run out and was taken over before it was released");
        }
        Ok(JobOutcome::Retry {
            attempts: send.made,
            delay,
        })
    }

    pub(super) async fn expire(&self, id: Uuid) -> anyhow::Result<JobOutcome> {
        repo::advance_delivery(&self.pool, DeliveryTarget::Id(id), DeliveryStatus::Expired, None).await?;
        Ok(JobOutcome::Skipped("the code expired before it could be sent"))
    }

    pub(super) async fn fail(&self, id: Uuid, twilio_code: Option<i32>) -> anyhow::Result<JobOutcome> {
        repo::advance_delivery(&self.pool, DeliveryTarget::Id(id), DeliveryStatus::Failed, twilio_code).await?;
        Ok(JobOutcome::Failed { twilio_code })
    }

    /// Records why a job that could not be claimed is not sent.
    pub(super) async fn skip(&self, id: Uuid, found: Option<repo::Verification>) -> anyhow::Result<JobOutcome> {
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
}
