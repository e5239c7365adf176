//! The fallback sweeper: moves verifications on to their next channel when their time has
//! come (`fallback_due_at` in PostgreSQL: `FALLBACK_AFTER_SECONDS` after the step was handed to
//! Twilio, or at once when it failed for good), and publishes their send jobs.
//!
//! Every API replica sweeps; the rows are taken with `SKIP LOCKED` and each move is one
//! conditional statement that writes the next step's job into the outbox
//! ([`repo::advance_due_steps`]), so a step is taken once, and its job survives this
//! process dying before the publish (the relay publishes it). No timer lives in a process's
//! memory: a restarted or another replica finds the same due rows.

use std::time::Duration;

use common::job::SendJob;
use common::metric_names as names;
use common::repo;
use common::texts::Channel;
use sqlx::PgPool;

use crate::outbox::Dispatcher;

/// Verifications moved on per statement.
const BATCH: i64 = 500;

/// Sweeps every `interval` until the task is dropped.
pub async fn run(pool: PgPool, dispatcher: Dispatcher, relay_after_seconds: i64, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        if let Err(e) = sweep(&pool, &dispatcher, relay_after_seconds).await {
            tracing::warn!(error = %e, "fallback sweep failed; the next one takes what is due");
        }
    }
}

/// One sweep: forgets the fallbacks no longer needed, then moves on every verification that
/// is due, a batch at a time, handing the jobs to the dispatcher. Returns how many moved.
pub async fn sweep(pool: &PgPool, dispatcher: &Dispatcher, relay_after_seconds: i64) -> sqlx::Result<usize> {
    while repo::forget_moot_fallbacks(pool, BATCH).await? == BATCH as u64 {}
    let mut moved = 0;
    loop {
        let next = repo::advance_due_steps(pool, BATCH, relay_after_seconds).await?;
        moved += next.len();
        let more = next.len() as i64 == BATCH;
        let jobs = next
            .into_iter()
            .map(|step| {
                let reason = if step.after_failure { "failed" } else { "no_approval" };
                tracing::info!(verification_id = %step.id, channel = %step.channel, reason, "moved on to the next channel");
                // The column holds only channel names; anything else would read as SMS.
                let channel = Channel::parse(&step.channel).unwrap_or(Channel::Sms).as_str();
                metrics::counter!(names::FALLBACKS, "channel" => channel, "reason" => reason)
                    .increment(1);
                SendJob::new(step.id, common::seal::to_text(&step.sealed_code), step.request_id)
            })
            .collect();
        dispatcher.dispatch(jobs);
        if !more {
            return Ok(moved);
        }
    }
}

/// Shows the counter at zero before the first fallback.
pub fn register_metrics() {
    for channel in ["whatsapp", "call", "sms"] {
        for reason in ["failed", "no_approval"] {
            metrics::counter!(names::FALLBACKS, "channel" => channel, "reason" => reason).increment(0);
        }
    }
}
