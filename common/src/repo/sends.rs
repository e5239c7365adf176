//! The worker's side: the send lease, submitted and dead-lettered sends (the calls
//! themselves are in [`super::attempts`]).

use sqlx::{PgPool, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use super::*;
use crate::status::{DeliveryStatus, VerificationStatus};

/// The result of a worker's attempt to take a verification's send.
#[derive(Debug, Clone)]
pub enum Claim {
    /// The send is ours until the lease runs out: the row is now `sending`.
    Claimed {
        phone_number: String,
        /// The locale the code is sent in.
        locale: String,
        /// The channel of the verification's step in use.
        channel: String,
        /// When the step in use began (a look-up for its call starts here).
        step_started_at: OffsetDateTime,
        expires_at: OffsetDateTime,
        send_attempts: i32,
        /// An earlier call may have reached Twilio without its result being recorded (it was
        /// ambiguous, or its worker died during it): ask Twilio before sending again.
        needs_lookup: bool,
        /// An earlier call got its 201 recorded but the worker failed before marking the
        /// verification submitted: the SMS is out, under this sid.
        submitted_sid: Option<String>,
        /// The first call's `in_flight` row, when it was begun with the claim (see
        /// [`claim_send_and_begin`]); `send_attempts` counts it already.
        attempt_row: Option<i64>,
    },
    /// Another worker holds the send right now.
    Busy,
    /// Nothing to send: the verification is gone, superseded, expired, or already sent.
    Skip(Option<Verification>),
}

/// A send's lease as a worker asks for it: who holds it and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Lease<'a> {
    /// Drawn by the worker for each job it runs (see `claimed_by` in the migrations).
    pub holder: &'a str,
    pub seconds: f64,
}

/// Takes the send as [`claim_send_and_begin`] does, without beginning a call. Tests only:
/// they set up leases and calls step by step.
#[cfg(any(test, feature = "test-support"))]
pub async fn claim_send(pool: &PgPool, id: Uuid, lease: Lease<'_>) -> sqlx::Result<Claim> {
    claim(pool, id, lease, None).await
}

/// Takes the send of a pending, unexpired verification whose SMS is not yet submitted, in
/// one conditional update, with `lease`: two workers can never call Twilio for the same
/// verification at once. A lease left by a worker that died runs out; the lease's own holder
/// may take the send again at any time (after a database outage cut its job short). In the
/// same statement it begins the first Twilio call (as [`begin_attempt`] would) when nothing
/// stands in its way: no earlier call to look up, no recorded 201, and at least
/// `min_lifetime_seconds` of the code's lifetime left. The common path of a send is then one
/// statement before the call and one after.
///
/// The earlier calls are those of the step in use as the statement's snapshot saw it, and
/// the update requires that same step, so a claim can never weigh one step's calls for
/// another (a fallback only moves a step that is no longer `queued` or `sending`, which a
/// claim does not take anyway).
pub async fn claim_send_and_begin(
    pool: &PgPool,
    id: Uuid,
    lease: Lease<'_>,
    worker_id: &str,
    min_lifetime_seconds: f64,
) -> sqlx::Result<Claim> {
    claim(pool, id, lease, Some((worker_id, min_lifetime_seconds))).await
}

async fn claim(pool: &PgPool, id: Uuid, lease: Lease<'_>, first: Option<(&str, f64)>) -> sqlx::Result<Claim> {
    let row = sqlx::query(
        // MATERIALIZED: each look-up runs once, not once per reference.
        "WITH current AS MATERIALIZED (SELECT step FROM verifications WHERE id = $1), \
         earlier AS MATERIALIZED ( \
           SELECT EXISTS (SELECT 1 FROM send_attempts a WHERE a.verification_id = $1 \
                          AND a.step = (SELECT step FROM current) AND a.outcome = ANY($6)) AS needs_lookup, \
                  (SELECT a.provider_message_sid FROM send_attempts a WHERE a.verification_id = $1 \
                   AND a.step = (SELECT step FROM current) AND a.outcome = $7 \
                   AND a.provider_message_sid IS NOT NULL LIMIT 1) AS submitted_sid), \
         claimed AS ( \
           UPDATE verifications v SET delivery_status = 'sending', waiting_in = NULL, \
             claimed_until = now() + make_interval(secs => $2), claimed_by = $5, updated_at = now(), \
             send_attempts = v.send_attempts + CASE WHEN $3::text IS NOT NULL AND NOT e.needs_lookup \
               AND e.submitted_sid IS NULL AND v.expires_at > now() + make_interval(secs => $4) THEN 1 ELSE 0 END \
           FROM earlier e \
           WHERE v.id = $1 AND v.status = 'pending' AND v.expires_at > now() \
             AND v.delivery_status IN ('queued', 'sending') \
             AND (v.claimed_until IS NULL OR v.claimed_until < now() OR v.claimed_by = $5) \
             AND v.step = (SELECT step FROM current) \
           RETURNING v.step, v.phone_number, v.locale, coalesce(v.channels[v.step + 1], 'sms') AS channel, \
             coalesce(v.step_started_at, v.created_at) AS step_started_at, v.expires_at, v.send_attempts, e.needs_lookup, e.submitted_sid, \
             $3::text IS NOT NULL AND NOT e.needs_lookup AND e.submitted_sid IS NULL \
               AND v.expires_at > now() + make_interval(secs => $4) AS begins), \
         first AS ( \
           INSERT INTO send_attempts (verification_id, step, attempt, started_at, outcome, worker_id) \
           SELECT $1, step, send_attempts, now(), $8, $3 FROM claimed WHERE begins RETURNING id) \
         SELECT claimed.*, (SELECT id FROM first) AS attempt_row FROM claimed",
    )
    .bind(id)
    .bind(lease.seconds)
    .bind(first.map(|(worker, _)| worker))
    .bind(first.map_or(0.0, |(_, lifetime)| lifetime))
    .bind(lease.holder)
    .bind(AttemptOutcome::unknown())
    .bind(AttemptOutcome::Submitted.as_str())
    .bind(AttemptOutcome::InFlight.as_str())
    .fetch_optional(pool)
    .await?;
    if let Some(row) = row {
        return Ok(Claim::Claimed {
            phone_number: row.try_get("phone_number")?,
            locale: row.try_get("locale")?,
            channel: row.try_get("channel")?,
            step_started_at: row.try_get("step_started_at")?,
            expires_at: row.try_get("expires_at")?,
            send_attempts: row.try_get("send_attempts")?,
            needs_lookup: row.try_get("needs_lookup")?,
            submitted_sid: row.try_get("submitted_sid")?,
            attempt_row: row.try_get("attempt_row")?,
        });
    }
    let found = find(pool, id).await?;
    let claimable = found.as_ref().is_some_and(|v| {
        v.status == VerificationStatus::Pending
            && matches!(v.delivery_status, DeliveryStatus::Queued | DeliveryStatus::Sending)
    });
    Ok(if claimable { Claim::Busy } else { Claim::Skip(found) })
}

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
