//! Taking a send: the claim that leases it to this job's run (and begins its first call),
//! or the reason there is nothing to call.

use common::code::Code;
use common::job::SendJob;
use common::repo::{self, Claim};

use common::texts::Channel;

use super::{ClaimedSend, JobOutcome, SendContext};
use common::broker::RETRY_TIERS;

impl SendContext {
    /// Takes the send: `Ok` with the claimed send to make, or `Err` with the job's outcome
    /// when there is nothing to call (already submitted, found by a lookup, held by another
    /// worker, or not to be sent).
    pub(super) async fn claim<'a>(
        &self,
        job: &'a SendJob,
        code: Code,
        holder: &'a str,
        slot: super::Slot,
    ) -> anyhow::Result<Result<ClaimedSend<'a>, JobOutcome>> {
        let id = job.verification_id;
        let min_lifetime = self.config.retry.min_useful_lifetime.as_secs_f64();
        let worker = &self.config.worker_id;
        let claim = repo::claim_send_and_begin(&self.pool, id, self.lease(holder), worker, min_lifetime).await?;
        let (send, needs_lookup) = match claim {
            Claim::Claimed {
                submitted_sid: Some(sid),
                ..
            } => {
                repo::mark_submitted(&self.pool, id, &sid).await?;
                return Ok(Err(JobOutcome::Submitted { sid }));
            }
            Claim::Claimed {
                phone_number,
                locale,
                channel,
                step_started_at,
                expires_at,
                send_attempts,
                needs_lookup,
                submitted_sid: None,
                attempt_row,
            } => (
                ClaimedSend {
                    job,
                    code,
                    holder,
                    phone: phone_number,
                    locale,
                    // A channel this build does not know (written by a newer one) is sent as SMS.
                    channel: Channel::parse(&channel).unwrap_or(Channel::Sms),
                    step_started_at,
                    expires_at,
                    made: job.attempt,
                    recorded: send_attempts,
                    begun: attempt_row,
                    slot: Some(slot),
                },
                needs_lookup,
            ),
            // Another worker holds the send (or held it and died: its lease runs out).
            Claim::Busy => return Ok(Err(busy(job.attempt))),
            Claim::Skip(found) => return Ok(Err(self.skip(id, found).await?)),
        };
        if needs_lookup && let Some(outcome) = self.settle_earlier_call(&send).await? {
            return Ok(Err(outcome));
        }
        Ok(Ok(send))
    }
}

/// What a job that finds its send held by someone else does: come back shortly. The holder
/// either sends it (the job is then skipped) or lets its lease run out.
pub(super) fn busy(attempts: u32) -> JobOutcome {
    JobOutcome::Retry {
        attempts,
        delay: RETRY_TIERS[0],
    }
}
