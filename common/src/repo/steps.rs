//! The fallback from one channel to the next: the steps that ended (`verification_steps`),
//! and the one statement that moves a verification on to its next channel.

use sqlx::{PgPool, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::status::DeliveryStatus;

/// A verification moved on to its next channel: its send job is in the outbox, to publish.
#[derive(Debug, Clone)]
pub struct NextStep {
    pub id: Uuid,
    pub sealed_code: Vec<u8>,
    pub request_id: Option<String>,
    /// The channel now in use.
    pub channel: String,
    /// Why: the step before failed for good, or it went unapproved for the fallback time.
    pub after_failure: bool,
}

/// Moves up to `limit` verifications whose fallback time has come on to their next channel,
/// each in one conditional statement with its send job: the step that ended is copied to
/// `verification_steps`, the row starts the next step (`queued`, no sid, no attempts), and
/// the job goes into the outbox (published by the caller, or by the relay after
/// `relay_after_seconds` if that fails). Only pending, unexpired verifications with a next
/// channel move; the rows are taken with `SKIP LOCKED` and the step is part of the update,
/// so each step is taken once however many replicas sweep at once.
pub async fn advance_due_steps(pool: &PgPool, limit: i64, relay_after_seconds: i64) -> sqlx::Result<Vec<NextStep>> {
    let rows = sqlx::query(
        "WITH due AS ( \
           SELECT id, sealed_code, delivery_status IN ('failed', 'undelivered') AS after_failure \
           FROM verifications \
           WHERE fallback_due_at <= now() AND status = 'pending' AND expires_at > now() \
             AND step + 1 < cardinality(channels) AND sealed_code IS NOT NULL \
           ORDER BY fallback_due_at LIMIT $1 FOR UPDATE SKIP LOCKED), \
         ended AS ( \
           INSERT INTO verification_steps (verification_id, step, channel, delivery_status, provider_sid, error_code, started_at) \
           SELECT v.id, v.step, v.channels[v.step + 1], v.delivery_status, v.provider_message_sid, \
                  v.delivery_error_code, coalesce(v.step_started_at, v.created_at) \
           FROM verifications v WHERE v.id IN (SELECT id FROM due) \
           ON CONFLICT DO NOTHING), \
         next AS ( \
           UPDATE verifications v SET step = v.step + 1, step_started_at = now(), delivery_status = 'queued', \
             provider_message_sid = NULL, delivery_error_code = NULL, dead_letter_reason = NULL, \
             claimed_until = NULL, claimed_by = NULL, waiting_in = NULL, send_attempts = 0, \
             fallback_due_at = CASE WHEN v.step + 2 < cardinality(v.channels) THEN v.expires_at END, \
             sealed_code = CASE WHEN v.step + 2 < cardinality(v.channels) THEN v.sealed_code END, \
             updated_at = now() \
           FROM due WHERE v.id = due.id \
           RETURNING v.id, due.sealed_code, v.request_id, v.channels[v.step + 1] AS channel, due.after_failure), \
         job AS ( \
           INSERT INTO outbox (verification_id, sealed_code, request_id, relay_after) \
           SELECT id, sealed_code, request_id, now() + make_interval(secs => $2) FROM next \
           ON CONFLICT (verification_id) DO UPDATE SET sealed_code = EXCLUDED.sealed_code, \
             relay_after = EXCLUDED.relay_after) \
         SELECT * FROM next",
    )
    .bind(limit)
    .bind(relay_after_seconds as f64)
    .persistent(false)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(NextStep {
                id: r.try_get("id")?,
                sealed_code: r.try_get("sealed_code")?,
                request_id: r.try_get("request_id")?,
                channel: r.try_get("channel")?,
                after_failure: r.try_get("after_failure")?,
            })
        })
        .collect()
}

/// Forgets the fallback time and the kept code of up to `limit` verifications that will not
/// move on (approved, canceled, expired or failed meanwhile, or on their last channel), once
/// that time has come; returns how many. So the kept codes and the index of fallback times
/// hold only verifications that may still need them.
pub async fn forget_moot_fallbacks(pool: &PgPool, limit: i64) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "UPDATE verifications SET fallback_due_at = NULL, sealed_code = NULL \
         WHERE id = ANY(ARRAY( \
           SELECT id FROM verifications WHERE fallback_due_at <= now() \
             AND (status <> 'pending' OR expires_at <= now() OR step + 1 >= cardinality(channels) \
                  OR sealed_code IS NULL) \
           ORDER BY fallback_due_at LIMIT $1 FOR UPDATE SKIP LOCKED))",
    )
    .bind(limit)
    .persistent(false)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// A channel step that ended, as `GET` shows it.
#[derive(Debug, Clone)]
pub struct EndedStep {
    pub channel: String,
    pub delivery_status: DeliveryStatus,
    pub provider_sid: Option<String>,
    pub error_code: Option<i32>,
    pub started_at: OffsetDateTime,
}

/// The steps of a verification that ended, oldest first (the one in use is on its row).
pub async fn ended_steps(pool: &PgPool, id: Uuid) -> sqlx::Result<Vec<EndedStep>> {
    let rows = sqlx::query(
        "SELECT channel, delivery_status, provider_sid, error_code, started_at FROM verification_steps \
         WHERE verification_id = $1 ORDER BY step",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(EndedStep {
                channel: r.try_get(0)?,
                delivery_status: super::parse_column(r, "delivery_status")?,
                provider_sid: r.try_get(2)?,
                error_code: r.try_get(3)?,
                started_at: r.try_get(4)?,
            })
        })
        .collect()
}

/// Moves the delivery of an ended step with provider sid `sid` forwards (a late callback);
/// returns its verification if anything changed.
pub(super) async fn advance_ended_step(
    pool: &PgPool,
    sid: &str,
    next: DeliveryStatus,
    error_code: Option<i32>,
) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar(
        "UPDATE verification_steps SET delivery_status = $2, error_code = COALESCE($3, error_code) \
         WHERE provider_sid = $1 AND delivery_status = ANY($4) RETURNING verification_id",
    )
    .bind(sid)
    .bind(next.as_str())
    .bind(error_code)
    .bind(DeliveryStatus::predecessors(next))
    .fetch_optional(pool)
    .await
}
