//! Taking a send: the claim that leases it to this job's run (and begins its first call),
//! made in a batch with the claims of the worker's other jobs, or the reason there is
//! nothing to call.

use common::broker::RETRY_TIERS;
use common::code::Code;
use common::job::SendJob;
use common::repo::{self, Claim};
use common::texts::Channel;
use sqlx::PgPool;

use super::{ClaimedSend, JobOutcome, SendContext};
use crate::batcher::Batcher;
use crate::config::WorkerConfig;

impl SendContext {
    /// Takes the send: `Ok` with the claimed send to make, or `Err` with the job's outcome
    /// when there is nothing to call (already submitted, found by a lookup, held by another
    /// worker, or not to be sent).
    pub(super) async fn claim<'a>(
        &self,
        job: &'a SendJob,
        code: Code,
        holder: &'a str,
    ) -> anyhow::Result<Result<ClaimedSend<'a>, JobOutcome>> {
        let id = job.verification_id;
        // Taken before the batch: the lease runs from no earlier than this.
        let claimed = std::time::Instant::now();
        let ask = repo::ClaimAsk {
            id,
            holder: holder.to_owned(),
        };
        let claim = self.claimer.ask(ask).await?;
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
                    claimed,
                    slot: None,
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

/// Most sends claimed by one call: a worker's prefetch is twice `WORKER_CONCURRENCY`.
const BATCH: usize = 128;

/// Claims sends in batches ([`repo::claim_sends_and_begin`]) with this worker's lease length.
pub type Claimer = Batcher<repo::ClaimAsk, Claim>;

/// Starts the claiming task of a worker with `config`.
pub fn claimer(pool: PgPool, config: &WorkerConfig) -> Claimer {
    let terms = std::sync::Arc::new(repo::ClaimTerms {
        lease_seconds: config.send_lease.as_secs_f64(),
        worker_id: config.worker_id.clone(),
        min_lifetime_seconds: config.retry.min_useful_lifetime.as_secs_f64(),
    });
    Batcher::spawn(pool, BATCH, "claiming a batch of sends", move |pool, asks| {
        let terms = std::sync::Arc::clone(&terms);
        async move { repo::claim_sends_and_begin(&pool, &asks, &terms).await }
    })
}

/// What a job that finds its send held by someone else does: come back shortly. The holder
/// either sends it (the job is then skipped) or lets its lease run out.
pub(super) fn busy(attempts: u32) -> JobOutcome {
    JobOutcome::Retry {
        attempts,
        delay: RETRY_TIERS[0],
    }
}
