//! The worker's side: a send given back, submitted and dead-lettered sends (taking a send is
//! in [`super::claims`], the calls themselves in [`super::attempts`]).

use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::*;
use crate::status::DeliveryStatus;

/// Gives the send back while the job waits in the delay queue `queue`, so whoever takes
/// the job next need not wait for the lease to run out. Only the lease's holder can give it
/// back: `false` if the lease had run out and someone else took the send meanwhile.
pub async fn release_claim(pool: &PgPool, id: Uuid, holder: &str, queue: &str) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE verifications SET claimed_until = NULL, claimed_by = NULL, waiting_in = $3, updated_at = now() \
         WHERE id = $1 AND claimed_by = $2",
    )
    .bind(id)
    .bind(holder)
    .bind(queue)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records Twilio's 201: the SMS is `submitted` under `message_sid`. Then replays any status
/// callback that arrived for that sid before this was recorded.
pub async fn mark_submitted(pool: &PgPool, id: Uuid, message_sid: &str) -> sqlx::Result<()> {
    let send = Submitted {
        id,
        message_sid: message_sid.to_owned(),
        attempt_id: None,
    };
    record_submitted(pool, &[send], false).await
}

/// A 201 to record: the verification, the message sid, and the attempt row of the call
/// that got it (`None` when that call's end is recorded apart).
#[derive(Debug, Clone)]
pub struct Submitted {
    pub id: Uuid,
    pub message_sid: String,
    pub attempt_id: Option<i64>,
}

/// [`mark_submitted`] and the end of the call that got the 201 (outcome `submitted`), for
/// many sends in one statement (one commit), then one read of callbacks that came before
/// their sids were stored. The verifications must be distinct. A step with a next channel
/// waits for approval from here on, `FALLBACK_AFTER_SECONDS` as its start saw it.
///
/// Both statements are prepared: run this on connections of [`crate::db::custom_plan_pool`],
/// which plan them afresh at every execution (see `repo::outbox`).
pub async fn finish_submitted(pool: &PgPool, sends: &[Submitted]) -> sqlx::Result<()> {
    record_submitted(pool, sends, true).await
}

/// [`finish_submitted`]; `prepared`: its statements prepared (on a custom-plan connection),
/// or parsed and planned at every execution (anywhere).
async fn record_submitted(pool: &PgPool, sends: &[Submitted], prepared: bool) -> sqlx::Result<()> {
    sqlx::query(
        "WITH input AS (SELECT * FROM unnest($1::uuid[], $2::text[], $3::int8[]) AS t(id, sid, attempt_id)), \
         call AS ( \
           UPDATE send_attempts a SET finished_at = now(), outcome = $5, http_status = 201, \
             provider_message_sid = input.sid \
           FROM input WHERE a.id = input.attempt_id AND a.id = ANY($3)) \
         UPDATE verifications v SET delivery_status = 'submitted', provider_message_sid = input.sid, \
           claimed_until = NULL, claimed_by = NULL, updated_at = now(), \
           fallback_due_at = CASE WHEN v.fallback_due_at IS NOT NULL THEN \
             LEAST(now() + make_interval(secs => v.fallback_after_seconds), v.expires_at) END \
         FROM input WHERE v.id = input.id AND v.id = ANY($1) AND v.delivery_status = ANY($4)",
    )
    .bind(sends.iter().map(|s| s.id).collect::<Vec<_>>())
    .bind(sends.iter().map(|s| s.message_sid.as_str()).collect::<Vec<_>>())
    .bind(sends.iter().map(|s| s.attempt_id).collect::<Vec<_>>())
    .bind(DeliveryStatus::predecessors(DeliveryStatus::Submitted))
    .bind(AttemptOutcome::Submitted.as_str())
    // Planned per execution, like the API's batched statements (see `repo::outbox`). The
    // `= ANY` conditions keep both tables read by primary key whatever the join order the
    // planner picks without statistics (a join alone could be a scan of either table).
    .persistent(prepared)
    .execute(pool)
    .await?;
    // Twilio may call back before a sid was stored: apply what came early, in order. This
    // read must come after the commit above: a callback recorded later finds the sid itself.
    let sids: Vec<&str> = sends.iter().map(|s| s.message_sid.as_str()).collect();
    for (sid, status, error_code) in events_for_many(pool, &sids, prepared).await? {
        if let Some(next) = DeliveryStatus::from_callback(&sid, &status) {
            advance_delivery(pool, DeliveryTarget::MessageSid(&sid), next, error_code).await?;
        }
    }
    Ok(())
}

/// Records that a job was dead-lettered: its delivery is `failed` with the reason, while
/// the verification stays `pending` so that an operator can replay the job; with a next
/// channel, that channel is due at once (a replay of this job then sends the step in use).
pub async fn mark_dead_lettered(pool: &PgPool, id: Uuid, reason: &str) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE verifications SET delivery_status = 'failed', dead_letter_reason = $2, \
           claimed_until = NULL, claimed_by = NULL, updated_at = now(), \
           fallback_due_at = CASE WHEN fallback_due_at IS NOT NULL THEN now() END \
         WHERE id = $1 AND delivery_status = ANY($3)",
    )
    .bind(id)
    .bind(reason)
    .bind(DeliveryStatus::predecessors(DeliveryStatus::Failed))
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Makes a dead-lettered verification sendable again, if it is still pending, unexpired and
/// was never submitted to Twilio. The one place a delivery status moves back (`failed` →
/// `queued`): an operator's explicit replay.
pub async fn reset_for_replay(pool: &PgPool, id: Uuid) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE verifications SET delivery_status = 'queued', dead_letter_reason = NULL, \
           claimed_until = NULL, claimed_by = NULL, updated_at = now() \
         WHERE id = $1 AND status = 'pending' AND expires_at > now() \
           AND provider_message_sid IS NULL AND delivery_status IN ('queued', 'sending', 'failed')",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Calls per worker (`worker_id`, calls), most first.
pub async fn calls_per_worker(pool: &PgPool) -> sqlx::Result<Vec<(String, i64)>> {
    let rows = sqlx::query("SELECT coalesce(worker_id, '?'), count(*) FROM send_attempts GROUP BY 1 ORDER BY 2 DESC")
        .fetch_all(pool)
        .await?;
    rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
}
