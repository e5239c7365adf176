//! The send step: from one job to one SMS (or a recorded reason why not).
//!
//! The step returns an outcome and never acks; the consumer loop owns acking, publishing to
//! the delay and dead-letter queues, so a job is acked only after its outcome is committed.

use std::time::Duration;

use common::code::Code;
use common::job::SendJob;
use common::metric_names as names;
use common::phone::mask;
use common::repo::{self, AttemptOutcome, AttemptResult, Claim, DeliveryTarget};
use common::status::{DeliveryStatus, VerificationStatus};
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::WorkerConfig;
use crate::retry::{CallOutcome, Decision, Next, classify, tier_for};
use crate::twilio::{CallResult, NewMessage, TwilioClient};
use common::broker::RETRY_TIERS;

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
    /// Whether PostgreSQL answers; jobs wait on it during an outage.
    pub database: crate::database::DatabaseGate,
    pub twilio: TwilioClient,
    pub config: WorkerConfig,
}

/// A claimed send.
struct ClaimedSend<'a> {
    job: &'a SendJob,
    /// The job's code, opened.
    code: Code,
    /// This run's lease token ([`repo::Lease`]).
    holder: &'a str,
    phone: String,
    created_at: OffsetDateTime,
    expires_at: OffsetDateTime,
    /// Calls made for this job (travels in the job; the budget of `SEND_MAX_ATTEMPTS`).
    made: u32,
    /// Calls recorded for the verification (numbers the `send_attempts` rows).
    recorded: i32,
    /// The first call's `in_flight` row, begun with the claim (already in `recorded`).
    begun: Option<i64>,
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

/// What a job that finds its send held by someone else does: come back shortly. The holder
/// either sends it (the job is then skipped) or lets its lease run out.
fn busy(attempts: u32) -> JobOutcome {
    JobOutcome::Retry {
        attempts,
        delay: RETRY_TIERS[0],
    }
}

impl SendContext {
    fn status_callback(&self) -> String {
        format!("{}{}", self.config.shared.public_base_url, common::STATUS_CALLBACK_PATH)
    }

    fn body(&self, code: &str) -> String {
        crate::sms::compose(&self.config.sms_template, code, self.config.webotp_domain.as_deref())
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
    /// this job's runs. `shutdown` cuts in-process waits short: the retry is handed to the
    /// broker instead.
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

    /// Takes the send: `Ok` with the claimed send to make, or `Err` with the job's outcome
    /// when there is nothing to call (already submitted, found by a lookup, held by another
    /// worker, or not to be sent).
    async fn claim<'a>(
        &self,
        job: &'a SendJob,
        code: Code,
        holder: &'a str,
    ) -> anyhow::Result<Result<ClaimedSend<'a>, JobOutcome>> {
        let id = job.verification_id;
        let min_lifetime = self.config.retry.min_useful_lifetime.as_secs_f64();
        let worker = &self.config.worker_id;
        let claim = repo::claim_send_and_begin(&self.pool, id, self.lease(holder), worker, min_lifetime).await?;
        let (phone_number, created_at, expires_at, send_attempts, needs_lookup, attempt_row) = match claim {
            Claim::Claimed {
                submitted_sid: Some(sid),
                ..
            } => {
                repo::mark_submitted(&self.pool, id, &sid).await?;
                return Ok(Err(JobOutcome::Submitted { sid }));
            }
            Claim::Claimed {
                phone_number,
                created_at,
                expires_at,
                send_attempts,
                needs_lookup,
                submitted_sid: None,
                attempt_row,
            } => (
                phone_number,
                created_at,
                expires_at,
                send_attempts,
                needs_lookup,
                attempt_row,
            ),
            // Another worker holds the send (or held it and died: its lease runs out).
            Claim::Busy => return Ok(Err(busy(job.attempt))),
            Claim::Skip(found) => return Ok(Err(self.skip(id, found).await?)),
        };
        let send = ClaimedSend {
            job,
            code,
            holder,
            phone: phone_number,
            created_at,
            expires_at,
            made: job.attempt,
            recorded: send_attempts,
            begun: attempt_row,
        };
        if needs_lookup && let Some(outcome) = self.settle_earlier_call(&send).await? {
            return Ok(Err(outcome));
        }
        Ok(Ok(send))
    }

    /// Calls Twilio until the send has an outcome, retrying in process or handing the job to
    /// the delay queues as the policy says.
    async fn send(&self, mut send: ClaimedSend<'_>, shutdown: &CancellationToken) -> anyhow::Result<JobOutcome> {
        let (id, body) = (send.id(), self.body(send.code.expose()));
        loop {
            // A call begun with the claim was found worth making by the database's clock.
            if send.begun.is_none() && !self.config.retry.worth_sending(send.remaining()) {
                return self.expire(id).await;
            }
            let (failure, asked) = match self.call(&mut send, &body).await? {
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

    /// One Twilio call, recorded before (in flight) and after (its outcome).
    async fn call(&self, send: &mut ClaimedSend<'_>, body: &str) -> anyhow::Result<Called> {
        send.made += 1;
        let Some(row) = self.begin_call(send).await? else {
            // The lease ran out and another worker took the send: it is theirs.
            tracing::warn!("the send's lease was taken over; not calling Twilio");
            send.made -= 1;
            return Ok(Called::Done(busy(send.made)));
        };
        let result = self.create_message(send, body).await;
        let (decision, sid, outcome) = self.settle(send, &result).await;
        self.record_call(send, row, &result, decision, sid.as_deref(), outcome)
            .await?;
        Ok(match (decision, sid) {
            (Decision::Success, Some(sid)) => {
                let took = OffsetDateTime::now_utc() - send.created_at;
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

    /// The call's `in_flight` row: begun with the claim, or now (renewing the lease). `None`
    /// when the lease is no longer this job's.
    async fn begin_call(&self, send: &mut ClaimedSend<'_>) -> sqlx::Result<Option<i64>> {
        if let Some(row) = send.begun.take() {
            return Ok(Some(row));
        }
        send.recorded += 1;
        let lease = self.lease(send.holder);
        repo::begin_attempt(&self.pool, send.id(), send.recorded, lease, &self.config.worker_id).await
    }

    async fn create_message(&self, send: &ClaimedSend<'_>, body: &str) -> CallResult {
        let started = std::time::Instant::now();
        let result = self
            .twilio
            .create_message(&NewMessage {
                to: &send.phone,
                sender: self.config.sender(),
                body,
                status_callback: &self.status_callback(),
                validity_period: send.remaining().as_secs().clamp(1, 36_000),
            })
            .await;
        metrics::histogram!(names::TWILIO_DURATION, "operation" => "create").record(started.elapsed().as_secs_f64());
        result
    }

    /// What the call came to: an ambiguous one is looked up at Twilio at once (its create is
    /// not idempotent); found, it is a success; not found, it is safe to call again.
    async fn settle(&self, send: &ClaimedSend<'_>, result: &CallResult) -> (Decision, Option<String>, AttemptOutcome) {
        let decision = classify(result.outcome);
        if decision != Decision::Ambiguous {
            return (decision, result.sid.clone(), decision.outcome());
        }
        match self.find_sent(&send.phone, send.code.expose()).await {
            Ok(Some(found)) => (Decision::Success, Some(found), AttemptOutcome::Submitted),
            Ok(None) => (decision, result.sid.clone(), AttemptOutcome::NotAtTwilio),
            Err(_) => (decision, result.sid.clone(), AttemptOutcome::Ambiguous),
        }
    }

    /// Writes the call's end (and the submitted mark on success), then its metric and log line.
    async fn record_call(
        &self,
        send: &ClaimedSend<'_>,
        row: i64,
        result: &CallResult,
        decision: Decision,
        sid: Option<&str>,
        outcome: AttemptOutcome,
    ) -> anyhow::Result<()> {
        let id = send.id();
        match sid {
            // The common case: the call's end and the submitted mark in one statement.
            Some(sid) if decision == Decision::Success && result.outcome == CallOutcome::Created => {
                let sent = repo::Submitted {
                    id,
                    message_sid: sid.to_owned(),
                    attempt_id: Some(row),
                };
                self.finisher.submitted(sent).await?;
            }
            Some(sid) if decision == Decision::Success => {
                self.finish(row, outcome, result, Some(sid)).await?;
                repo::mark_submitted(&self.pool, id, sid).await?;
            }
            _ => self.finish(row, outcome, result, sid).await?,
        }
        let code = twilio_code(result).map_or_else(|| "none".to_owned(), |c| c.to_string());
        let label = outcome.as_str();
        metrics::counter!(names::SEND_ATTEMPTS, "outcome" => label, "twilio_code" => code).increment(1);
        tracing::info!(attempt = send.recorded, outcome = label, to = %mask(&send.phone), "twilio call");
        Ok(())
    }

    async fn finish(
        &self,
        row: i64,
        outcome: AttemptOutcome,
        result: &CallResult,
        sid: Option<&str>,
    ) -> sqlx::Result<()> {
        let http_status = match result.outcome {
            CallOutcome::Answered { http_status, .. } => Some(i32::from(http_status)),
            CallOutcome::Created => Some(201),
            CallOutcome::NoAnswer { .. } => None,
        };
        let r = AttemptResult {
            outcome,
            http_status,
            twilio_error_code: twilio_code(result),
            error_message: result.error_message.as_deref(),
            provider_message_sid: sid,
        };
        repo::finish_attempt(&self.pool, row, &r).await
    }

    /// An earlier call's result is unknown (it was ambiguous, or its worker died during it):
    /// asks Twilio. `Some`: the job is settled (found, or cannot tell yet and must wait).
    async fn settle_earlier_call(&self, send: &ClaimedSend<'_>) -> anyhow::Result<Option<JobOutcome>> {
        let id = send.id();
        match self.find_sent(&send.phone, send.code.expose()).await {
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
    async fn defer(&self, send: &ClaimedSend<'_>) -> anyhow::Result<JobOutcome> {
        let delay = self.config.retry.delay_after(send.made.max(1));
        match self.config.retry.after_delay(delay, send.remaining()) {
            Next::Expiring => self.expire(send.id()).await,
            _ => self.wait_in(send, delay).await,
        }
    }

    /// Releases the send while the job waits `delay` in the delay queues.
    async fn wait_in(&self, send: &ClaimedSend<'_>, delay: Duration) -> anyhow::Result<JobOutcome> {
        let queue = self.config.shared.topology.retry_queue(tier_for(delay));
        if !repo::release_claim(&self.pool, send.id(), send.holder, &queue).await? {
            tracing::warn!("the send's lease had run out and was taken over before it was released");
        }
        Ok(JobOutcome::Retry {
            attempts: send.made,
            delay,
        })
    }

    async fn expire(&self, id: Uuid) -> anyhow::Result<JobOutcome> {
        repo::advance_delivery(&self.pool, DeliveryTarget::Id(id), DeliveryStatus::Expired, None).await?;
        Ok(JobOutcome::Skipped("the code expired before it could be sent"))
    }

    async fn fail(&self, id: Uuid, twilio_code: Option<i32>) -> anyhow::Result<JobOutcome> {
        repo::advance_delivery(&self.pool, DeliveryTarget::Id(id), DeliveryStatus::Failed, twilio_code).await?;
        Ok(JobOutcome::Failed { twilio_code })
    }

    /// Records why a job that could not be claimed is not sent.
    async fn skip(&self, id: Uuid, found: Option<repo::Verification>) -> anyhow::Result<JobOutcome> {
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

    /// Looks for a message with this job's code sent to `phone` since yesterday (UTC): the
    /// answer to "did the ambiguous call go out?". `Err`: Twilio could not be asked.
    async fn find_sent(&self, phone: &str, code: &str) -> anyhow::Result<Option<String>> {
        let since = (OffsetDateTime::now_utc() - time::Duration::days(1)).date().to_string();
        let body = self.body(code);
        let started = std::time::Instant::now();
        let listed = self.twilio.list_messages(phone, &since).await;
        metrics::histogram!(names::TWILIO_DURATION, "operation" => "list").record(started.elapsed().as_secs_f64());
        let messages = listed.inspect_err(|e| {
            tracing::warn!(error = %e, "could not list messages to settle an ambiguous send");
        })?;
        Ok(messages
            .into_iter()
            .find(|m| m.body.as_deref() == Some(body.as_str()) && m.to.as_deref().is_none_or(|to| to == phone))
            .map(|m| m.sid))
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
        CallOutcome::NoAnswer { .. } => result.error_message.clone().unwrap_or_else(|| "no answer".into()),
        CallOutcome::Created => "HTTP 201".into(),
    }
}

fn twilio_code(result: &CallResult) -> Option<i32> {
    match result.outcome {
        CallOutcome::Answered { twilio_code, .. } => twilio_code,
        _ => None,
    }
}
