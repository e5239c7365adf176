//! The send step: from one job to one SMS (or a recorded reason why not).
//!
//! The step returns an outcome and never acks; the consumer loop owns acking, publishing to
//! the delay and dead-letter queues, so a job is acked only after its outcome is committed.

use std::time::Duration;

use common::code::Code;
use common::job::SendJob;
use common::metric_names as names;
use common::repo::{self, AttemptOutcome};
use common::texts::{Channel, Texts};
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::classify::{CallOutcome, Decision};
use crate::config::WorkerConfig;
use crate::retry::Next;
use crate::twilio::{CallResult, TwilioClient};

mod begin;
mod channel;
mod claim;
mod record;
mod settle;

use claim::busy;
pub use claim::{Claimer, claimer};
use common::broker::RETRY_TIERS;
use record::twilio_code;

/// What became of a job. Every variant ends the delivery: the consumer acks it after doing
/// what the variant says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    Submitted {
        sid: String,
    },
    /// Nothing was sent, on purpose (superseded, expired, already sent, unknown).
    Skipped(&'static str),
    /// Twilio refused for good; the verification is `failed`.
    Failed {
        twilio_code: Option<i32>,
    },
    /// Try again after `delay`: publish the job with `attempts` calls made into the delay
    /// queues, due `delay` from now. The send is released meanwhile.
    Retry {
        attempts: u32,
        delay: Duration,
    },
    /// Give up: the job goes to the dead-letter queue; its delivery is recorded `failed`.
    DeadLetter {
        reason: String,
    },
}

/// What the send step needs, shared by all in-flight sends of a worker.
pub struct SendContext {
    pub pool: PgPool,
    pub finisher: crate::finish::Finisher,
    /// Claims the sends of concurrent jobs together ([`claimer`]).
    pub claimer: Claimer,
    /// Whether PostgreSQL answers; jobs wait on it during an outage.
    pub database: crate::database::DatabaseGate,
    pub twilio: TwilioClient,
    pub config: WorkerConfig,
    /// Every locale's texts, with the operator's overrides ([`WorkerConfig::texts`]).
    pub texts: Texts,
    /// Delivers event webhooks (`None`: events are off).
    pub events: Option<crate::events::EventSender>,
    /// `WORKER_CONCURRENCY` slots: a send holds one from just before its provider call until
    /// the call returns, so at most that many calls are in flight. The claim comes before
    /// (the prefetch lets twice as many jobs claim as there are slots), and recording the
    /// outcome and acking after: a slot never waits for the database, so a slot that frees up
    /// goes at once to a job claimed already.
    pub slots: std::sync::Arc<tokio::sync::Semaphore>,
}

/// A held slot of [`SendContext::slots`], counted by `verify_sends_in_flight`.
pub struct Slot {
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        metrics::gauge!(names::SENDS_IN_FLIGHT).decrement(1.0);
    }
}

/// A claimed send.
struct ClaimedSend<'a> {
    job: &'a SendJob,
    /// The job's code, opened.
    code: Code,
    /// This run's lease token ([`repo::Lease`]).
    holder: &'a str,
    phone: String,
    /// The locale its code is sent in.
    locale: String,
    /// The channel it is sent on.
    channel: Channel,
    /// When the verification's step in use began.
    step_started_at: OffsetDateTime,
    expires_at: OffsetDateTime,
    /// Calls made for this job (travels in the job; the budget of `SEND_MAX_ATTEMPTS`).
    made: u32,
    /// Calls recorded for the verification (numbers the `send_attempts` rows).
    recorded: i32,
    /// The first call's `in_flight` row, begun with the claim (already in `recorded`).
    begun: Option<i64>,
    /// When the claim (and its lease) was taken.
    claimed: std::time::Instant,
    /// Held while a provider call is made or about to be.
    slot: Option<Slot>,
}

impl ClaimedSend<'_> {
    fn id(&self) -> Uuid {
        self.job.verification_id
    }

    fn remaining(&self) -> Duration {
        let left = self.expires_at - OffsetDateTime::now_utc();
        Duration::try_from(left).unwrap_or(Duration::ZERO)
    }
}

impl SendContext {
    /// Waits for a free slot.
    pub async fn slot(&self) -> Slot {
        let permit = std::sync::Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .expect("the slots are never closed");
        metrics::gauge!(names::SENDS_IN_FLIGHT).increment(1.0);
        Slot { _permit: permit }
    }

    fn lease<'a>(&self, holder: &'a str) -> repo::Lease<'a> {
        repo::Lease {
            holder,
            seconds: self.config.send_lease.as_secs_f64(),
        }
    }

    /// Runs one job to its outcome. An `Err` means PostgreSQL failed: nothing about the job
    /// is final, and it may be run again (after an outage, with the same `holder`, which
    /// takes its own lease back) or returned to the queue. `holder` is the lease token of
    /// this job's runs. `shutdown` cuts in-process waits (for a retry, or for a slot) short:
    /// the job is handed to the broker instead.
    #[tracing::instrument(skip_all, fields(verification_id = %job.verification_id, request_id = job.request_id.as_deref().unwrap_or("")))]
    pub async fn process(
        &self,
        job: &SendJob,
        holder: &str,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<JobOutcome> {
        let code = match self
            .config
            .shared
            .sealer
            .open_text(job.verification_id, &job.sealed_code)
        {
            Ok(code) => code,
            // A code that does not open cannot be sent: recorded as a dead letter (its
            // delivery `failed`, as for a poison job), replayable once the key is back.
            Err(e) => {
                let reason = e.to_string();
                repo::mark_dead_lettered(&self.pool, job.verification_id, &reason).await?;
                return Ok(JobOutcome::DeadLetter { reason });
            }
        };
        match self.claim(job, code, holder).await? {
            Ok(send) => self.send(send, shutdown).await,
            Err(settled) => Ok(settled),
        }
    }

    /// Calls Twilio until the send has an outcome, retrying in process or handing the job to
    /// the delay queues as the policy says.
    async fn send(&self, mut send: ClaimedSend<'_>, shutdown: &CancellationToken) -> anyhow::Result<JobOutcome> {
        let (id, body) = (send.id(), self.body(&send));
        loop {
            // A call begun with the claim was found worth making by the database's clock.
            if send.begun.is_none() && !self.config.retry.worth_sending(send.remaining()) {
                return self.expire(id).await;
            }
            let (failure, asked) = match self.call(&mut send, &body, shutdown).await? {
                Called::Done(outcome) => return Ok(outcome),
                Called::Retry { failure, retry_after } => (failure, retry_after),
            };
            match self.config.retry.next(send.made, send.remaining(), asked) {
                Next::WaitInProcess(delay) => {
                    tokio::select! {
                        _ = shutdown.cancelled() => return self.defer(&send).await,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                Next::Defer(delay) => return self.wait_in(&send, delay).await,
                Next::Expiring => return self.expire(id).await,
                Next::AttemptsExhausted => {
                    let reason = format!("{} Twilio calls failed; the last was {failure}", send.made);
                    repo::mark_dead_lettered(&self.pool, id, &reason).await?;
                    return Ok(JobOutcome::DeadLetter { reason });
                }
            }
        }
    }

    /// One Twilio call, recorded before (in flight) and after (its outcome), in a slot.
    async fn call(
        &self,
        send: &mut ClaimedSend<'_>,
        body: &str,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Called> {
        if send.slot.is_none() {
            tokio::select! {
                slot = self.slot() => send.slot = Some(slot),
                // Stopping: the job waits in the broker instead (nothing was called).
                _ = shutdown.cancelled() => {
                    self.uncalled(send, "not called: the worker stopped first").await?;
                    return Ok(Called::Done(self.wait_in(send, RETRY_TIERS[0]).await?));
                }
            }
        }
        send.made += 1;
        let Some(row) = self.begin_call(send).await? else {
            // The lease ran out and another worker took the send: it is theirs.
            tracing::warn!("the send's lease was taken over; not calling Twilio");
            send.made -= 1;
            return Ok(Called::Done(busy(send.made)));
        };
        let result = self.create(send, body).await;
        // The call is over: the slot goes to the next job while this one is recorded.
        send.slot = None;
        let (decision, sid, outcome) = self.settle(send, &result).await;
        self.record_call(send, row, &result, decision, sid.as_deref(), outcome)
            .await?;
        Ok(match (decision, sid) {
            (Decision::Success, Some(sid)) => {
                let took = OffsetDateTime::now_utc() - send.step_started_at;
                metrics::histogram!(names::TIME_TO_SUBMITTED).record(took.as_seconds_f64().max(0.0));
                Called::Done(JobOutcome::Submitted { sid })
            }
            (Decision::Permanent, _) => Called::Done(self.fail(send.id(), twilio_code(&result)).await?),
            // Still unknown whether it went out: never call again before knowing.
            _ if outcome == AttemptOutcome::Ambiguous => Called::Done(self.defer(send).await?),
            _ => Called::Retry {
                failure: describe(&result),
                retry_after: result.retry_after,
            },
        })
    }
}

/// The result of one call for the loop.
enum Called {
    Done(JobOutcome),
    /// Retryable; `failure` describes it for a dead letter's reason; `retry_after` is what
    /// Twilio asked for.
    Retry {
        failure: String,
        retry_after: Option<Duration>,
    },
}

fn describe(result: &CallResult) -> String {
    match result.outcome {
        CallOutcome::Answered {
            http_status,
            twilio_code: Some(code),
        } => format!("HTTP {http_status} (Twilio {code})"),
        CallOutcome::Answered {
            http_status,
            twilio_code: None,
        } => format!("HTTP {http_status}"),
        CallOutcome::NoAnswer { .. } | CallOutcome::NotConfigured => {
            result.error_message.clone().unwrap_or_else(|| "no answer".into())
        }
        CallOutcome::Created => "HTTP 201".into(),
    }
}
