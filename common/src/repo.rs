//! All SQL on the `verifications`, `send_attempts` and `delivery_events` tables.
//!
//! Every state change is one conditional statement, so concurrent API replicas, workers and
//! callbacks cannot undo each other: a status only changes when the row is still in a state
//! from which that change is allowed (see [`crate::status`]).

use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::status::{DeliveryStatus, VerificationStatus};

/// The columns every read returns; a pending row past its expiry reads as `expired`.
macro_rules! columns {
    () => {
        "id, phone_number, \
         CASE WHEN status = 'pending' AND expires_at <= now() THEN 'expired' ELSE status END AS status, \
         delivery_status, check_attempts, max_check_attempts, send_attempts, provider_message_sid, \
         delivery_error_code, request_id, created_at, updated_at, expires_at, seq"
    };
}

/// A verification as stored, with its status as it reads now.
#[derive(Debug, Clone)]
pub struct Verification {
    pub id: Uuid,
    pub seq: i64,
    pub phone_number: String,
    pub status: VerificationStatus,
    pub delivery_status: DeliveryStatus,
    pub check_attempts: i32,
    pub max_check_attempts: i32,
    pub send_attempts: i32,
    pub provider_message_sid: Option<String>,
    pub delivery_error_code: Option<i32>,
    pub request_id: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

impl Verification {
    fn from_row(row: &PgRow) -> sqlx::Result<Self> {
        Ok(Self {
            id: row.try_get("id")?,
            seq: row.try_get("seq")?,
            phone_number: row.try_get("phone_number")?,
            status: parse_column(row, "status")?,
            delivery_status: parse_column(row, "delivery_status")?,
            check_attempts: row.try_get("check_attempts")?,
            max_check_attempts: row.try_get("max_check_attempts")?,
            send_attempts: row.try_get("send_attempts")?,
            provider_message_sid: row.try_get("provider_message_sid")?,
            delivery_error_code: row.try_get("delivery_error_code")?,
            request_id: row.try_get("request_id")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            expires_at: row.try_get("expires_at")?,
        })
    }
}

fn parse_column<T: std::str::FromStr>(row: &PgRow, column: &str) -> sqlx::Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let text: String = row.try_get(column)?;
    text.parse().map_err(|e| sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: Box::new(e),
    })
}

/// What the API stores for a new verification.
pub struct NewVerification<'a> {
    pub id: Uuid,
    pub phone_number: &'a str,
    pub code_hmac: &'a [u8],
    pub max_check_attempts: i32,
    pub ttl_seconds: i64,
    pub request_id: Option<&'a str>,
}

/// Stores a verification without a send job (for tests of the worker's side).
pub async fn insert(pool: &PgPool, new: &NewVerification<'_>) -> sqlx::Result<Verification> {
    let row = sqlx::query(concat!(
        "INSERT INTO verifications (id, phone_number, code_hmac, max_check_attempts, request_id, expires_at) \
         VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6)) RETURNING ",
        columns!()
    ))
    .bind(new.id)
    .bind(new.phone_number)
    .bind(new.code_hmac)
    .bind(new.max_check_attempts)
    .bind(new.request_id)
    .bind(new.ttl_seconds as f64)
    .fetch_one(pool)
    .await?;
    Verification::from_row(&row)
}

/// A verification and its sealed code, owned, for [`insert_batch_with_outbox`].
#[derive(Debug, Clone)]
pub struct NewRow {
    pub id: Uuid,
    pub phone_number: String,
    pub code_hmac: Vec<u8>,
    pub max_check_attempts: i32,
    pub ttl_seconds: f64,
    pub request_id: Option<String>,
    pub sealed_code: Vec<u8>,
}

/// Stores verifications and their send jobs in the outbox, in one statement (one commit),
/// in the order given: from here on no job can be lost, even if this process dies before
/// the broker confirms it (the outbox relay publishes it after `relay_after_seconds`). Also
/// tells, for each, whether its number already had a pending verification (which it
/// supersedes).
pub async fn insert_batch_with_outbox(
    pool: &PgPool,
    rows: &[NewRow],
    relay_after_seconds: i64,
) -> sqlx::Result<Vec<(Verification, bool)>> {
    let stored = sqlx::query(concat!(
        "WITH input AS ( \
           SELECT * FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::int[], $5::float8[], $6::text[], $7::bytea[]) \
             WITH ORDINALITY AS t(id, phone_number, code_hmac, max_check_attempts, ttl, request_id, sealed_code, n)), \
         job AS ( \
           INSERT INTO outbox (verification_id, sealed_code, request_id, relay_after) \
           SELECT id, sealed_code, request_id, now() + make_interval(secs => $8) FROM input), \
         stored AS ( \
           INSERT INTO verifications (id, phone_number, code_hmac, max_check_attempts, request_id, expires_at) \
           SELECT id, phone_number, code_hmac, max_check_attempts, request_id, now() + make_interval(secs => ttl) \
           FROM input ORDER BY n RETURNING ",
        columns!(),
        ") \
         SELECT stored.*, EXISTS (SELECT 1 FROM verifications o \
                                  WHERE o.phone_number = stored.phone_number AND o.status = 'pending') AS supersedes \
         FROM stored"
    ))
    .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.phone_number.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.code_hmac.as_slice()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.max_check_attempts).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.ttl_seconds).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.request_id.as_deref()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.sealed_code.as_slice()).collect::<Vec<_>>())
    .bind(relay_after_seconds as f64)
    .fetch_all(pool)
    .await?;
    let mut by_id: std::collections::HashMap<Uuid, (Verification, bool)> = stored
        .iter()
        .map(|row| Ok((Verification::from_row(row)?, row.try_get("supersedes")?)))
        .collect::<sqlx::Result<Vec<_>>>()?
        .into_iter()
        .map(|(v, s)| (v.id, (v, s)))
        .collect();
    rows.iter()
        .map(|r| by_id.remove(&r.id).ok_or_else(|| sqlx::Error::RowNotFound))
        .collect()
}

/// Drops the outbox rows of jobs the broker confirmed, in one statement.
pub async fn delete_outbox_rows(pool: &PgPool, ids: &[Uuid]) -> sqlx::Result<u64> {
    let done = sqlx::query("DELETE FROM outbox WHERE verification_id = ANY($1)")
        .bind(ids)
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}

/// After the broker confirmed a verification's job: drops its outbox row and cancels every
/// older pending verification of the number (their SMS, if still queued, becomes `canceled`
/// so the worker skips it; one already past its expiry becomes `expired`). One statement.
/// Returns how many older verifications were canceled.
pub async fn confirm_published(pool: &PgPool, v: &Verification) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "WITH published AS (DELETE FROM outbox WHERE verification_id = $3) \
         UPDATE verifications SET \
           status = CASE WHEN expires_at <= now() THEN 'expired' ELSE 'canceled' END, \
           delivery_status = CASE WHEN delivery_status <> 'queued' THEN delivery_status \
                                  WHEN expires_at <= now() THEN 'expired' ELSE 'canceled' END, \
           updated_at = now() \
         WHERE phone_number = $1 AND status = 'pending' AND seq < $2",
    )
    .bind(&v.phone_number)
    .bind(v.seq)
    .bind(v.id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// A send job left in the outbox.
#[derive(Debug, Clone)]
pub struct OutboxJob {
    pub verification_id: Uuid,
    pub sealed_code: Vec<u8>,
    pub request_id: Option<String>,
}

/// Takes up to `limit` outbox jobs that are due, pushing their `relay_after` forward by
/// `lease_seconds` so that no other relay takes them meanwhile (several API replicas may
/// run a relay; `SKIP LOCKED` keeps them off each other's rows).
pub async fn take_due_outbox(pool: &PgPool, limit: i64, lease_seconds: i64) -> sqlx::Result<Vec<OutboxJob>> {
    let rows = sqlx::query(
        "UPDATE outbox SET relay_after = now() + make_interval(secs => $2) \
         WHERE verification_id IN (SELECT verification_id FROM outbox WHERE relay_after <= now() \
                                   ORDER BY relay_after LIMIT $1 FOR UPDATE SKIP LOCKED) \
         RETURNING verification_id, sealed_code, request_id",
    )
    .bind(limit)
    .bind(lease_seconds as f64)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(OutboxJob {
                verification_id: r.try_get(0)?,
                sealed_code: r.try_get(1)?,
                request_id: r.try_get(2)?,
            })
        })
        .collect()
}

/// Drops an outbox row once its job is confirmed by the broker.
pub async fn delete_outbox(pool: &PgPool, verification_id: Uuid) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM outbox WHERE verification_id = $1")
        .bind(verification_id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Removes a verification whose send job never reached the broker (and, by cascade, its
/// outbox row), so nothing is left pending with no job. Only while its SMS is still `queued`.
pub async fn discard_unpublished(pool: &PgPool, id: Uuid) -> sqlx::Result<bool> {
    let done = sqlx::query("DELETE FROM verifications WHERE id = $1 AND delivery_status = 'queued'")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn find(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<Verification>> {
    let row = sqlx::query(concat!("SELECT ", columns!(), " FROM verifications WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(Verification::from_row).transpose()
}

/// A check attempt taken from the newest pending, unexpired verification of a number.
#[derive(Debug, Clone)]
pub struct ReservedCheck {
    pub id: Uuid,
    pub code_hmac: Vec<u8>,
    /// Attempts used, this one included.
    pub check_attempts: i32,
    pub max_check_attempts: i32,
    pub delivery_status: DeliveryStatus,
}

/// Counts one check attempt against the newest pending verification of `phone_number`
/// before the code is compared. Counting first, in one statement, is what keeps parallel
/// guesses from getting more than `max_check_attempts` comparisons: once the count is
/// reached no further attempt is handed out. `None`: no verification can be checked.
pub async fn reserve_check(pool: &PgPool, phone_number: &str) -> sqlx::Result<Option<ReservedCheck>> {
    let row = sqlx::query(
        "UPDATE verifications SET check_attempts = check_attempts + 1, updated_at = now() \
         WHERE id = (SELECT id FROM verifications WHERE phone_number = $1 AND status = 'pending' \
                     ORDER BY seq DESC LIMIT 1) \
           AND status = 'pending' AND expires_at > now() AND check_attempts < max_check_attempts \
         RETURNING id, code_hmac, check_attempts, max_check_attempts, delivery_status",
    )
    .bind(phone_number)
    .fetch_optional(pool)
    .await?;
    row.map(|row| {
        Ok(ReservedCheck {
            id: row.try_get("id")?,
            code_hmac: row.try_get("code_hmac")?,
            check_attempts: row.try_get("check_attempts")?,
            max_check_attempts: row.try_get("max_check_attempts")?,
            delivery_status: parse_column(&row, "delivery_status")?,
        })
    })
    .transpose()
}

/// Approves a pending, unexpired verification. `None` if it stopped being approvable.
pub async fn approve(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<Verification>> {
    let row = sqlx::query(concat!(
        "UPDATE verifications SET status = 'approved', updated_at = now() \
         WHERE id = $1 AND status = 'pending' AND expires_at > now() RETURNING ",
        columns!()
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(Verification::from_row).transpose()
}

/// Locks a verification whose last allowed attempt was wrong.
pub async fn exhaust(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<Verification>> {
    let row = sqlx::query(concat!(
        "UPDATE verifications SET status = 'max_attempts_reached', updated_at = now() \
         WHERE id = $1 AND status = 'pending' RETURNING ",
        columns!()
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(Verification::from_row).transpose()
}

/// The result of a worker's attempt to take a verification's send.
#[derive(Debug, Clone)]
pub enum Claim {
    /// The send is ours until the lease runs out: the row is now `sending`.
    Claimed {
        phone_number: String,
        created_at: OffsetDateTime,
        expires_at: OffsetDateTime,
        send_attempts: i32,
        /// An earlier call may have reached Twilio without its result being recorded (it was
        /// ambiguous, or its worker died during it): ask Twilio before sending again.
        needs_lookup: bool,
        /// An earlier call got its 201 recorded but the worker failed before marking the
        /// verification submitted: the SMS is out, under this sid.
        submitted_sid: Option<String>,
    },
    /// Another worker holds the send right now.
    Busy,
    /// Nothing to send: the verification is gone, superseded, expired, or already sent.
    Skip(Option<Verification>),
}

/// Takes the send of a pending, unexpired verification whose SMS is not yet submitted, in
/// one conditional update, with a lease of `lease_seconds`: two workers can never call
/// Twilio for the same verification at once. A lease left by a worker that died runs out.
pub async fn claim_send(pool: &PgPool, id: Uuid, lease_seconds: f64) -> sqlx::Result<Claim> {
    let row = sqlx::query(
        "UPDATE verifications SET delivery_status = 'sending', waiting_in = NULL, \
           claimed_until = now() + make_interval(secs => $2), updated_at = now() \
         WHERE id = $1 AND status = 'pending' AND expires_at > now() \
           AND delivery_status IN ('queued', 'sending') \
           AND (claimed_until IS NULL OR claimed_until < now()) \
         RETURNING phone_number, created_at, expires_at, send_attempts, \
           EXISTS (SELECT 1 FROM send_attempts a WHERE a.verification_id = $1 \
                   AND a.outcome IN ('in_flight', 'ambiguous')) AS needs_lookup, \
           (SELECT a.provider_message_sid FROM send_attempts a WHERE a.verification_id = $1 \
                   AND a.outcome = 'submitted' AND a.provider_message_sid IS NOT NULL LIMIT 1) AS submitted_sid",
    )
    .bind(id)
    .bind(lease_seconds)
    .fetch_optional(pool)
    .await?;
    if let Some(row) = row {
        return Ok(Claim::Claimed {
            phone_number: row.try_get("phone_number")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
            send_attempts: row.try_get("send_attempts")?,
            needs_lookup: row.try_get("needs_lookup")?,
            submitted_sid: row.try_get("submitted_sid")?,
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
/// the job next need not wait for the lease to run out.
pub async fn release_claim(pool: &PgPool, id: Uuid, queue: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE verifications SET claimed_until = NULL, waiting_in = $2, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(queue)
        .execute(pool)
        .await?;
    Ok(())
}

/// Records that Twilio call number `attempt` is about to be made (outcome `in_flight`),
/// counts it on the verification and renews the lease, before the call: if the worker dies
/// during the call, whoever takes the job next knows to ask Twilio first. Returns the
/// attempt's row id for [`finish_attempt`].
pub async fn begin_attempt(
    pool: &PgPool,
    id: Uuid,
    attempt: i32,
    lease_seconds: f64,
    worker_id: &str,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "WITH counted AS ( \
           UPDATE verifications SET send_attempts = GREATEST(send_attempts, $2), \
             claimed_until = now() + make_interval(secs => $3), updated_at = now() \
           WHERE id = $1) \
         INSERT INTO send_attempts (verification_id, attempt, started_at, outcome, worker_id) \
         VALUES ($1, $2, now(), 'in_flight', $4) RETURNING id",
    )
    .bind(id)
    .bind(attempt)
    .bind(lease_seconds)
    .bind(worker_id)
    .fetch_one(pool)
    .await
}

/// How a Twilio call ended, as recorded.
#[derive(Debug, Clone)]
pub struct AttemptResult<'a> {
    pub outcome: &'a str,
    pub http_status: Option<i32>,
    pub twilio_error_code: Option<i32>,
    pub error_message: Option<&'a str>,
    pub provider_message_sid: Option<&'a str>,
}

pub async fn finish_attempt(pool: &PgPool, attempt_id: i64, r: &AttemptResult<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE send_attempts SET finished_at = now(), outcome = $2, http_status = $3, \
           twilio_error_code = $4, error_message = $5, provider_message_sid = $6 \
         WHERE id = $1",
    )
    .bind(attempt_id)
    .bind(r.outcome)
    .bind(r.http_status)
    .bind(r.twilio_error_code)
    .bind(r.error_message)
    .bind(r.provider_message_sid)
    .execute(pool)
    .await?;
    Ok(())
}

/// Marks earlier in-flight or ambiguous calls as settled by a lookup at Twilio (`found`
/// tells whether the message was there), so they do not trigger another lookup.
pub async fn settle_unknown_attempts(pool: &PgPool, id: Uuid, found: bool) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE send_attempts SET outcome = CASE WHEN $2 THEN 'found_at_twilio' ELSE 'not_at_twilio' END \
         WHERE verification_id = $1 AND outcome IN ('in_flight', 'ambiguous')",
    )
    .bind(id)
    .bind(found)
    .execute(pool)
    .await?;
    Ok(())
}

/// A verification's attempts, oldest first: `(attempt, outcome, twilio_error_code)`.
pub async fn attempts(pool: &PgPool, id: Uuid) -> sqlx::Result<Vec<(i32, String, Option<i32>)>> {
    let rows = sqlx::query(
        "SELECT attempt, outcome, twilio_error_code FROM send_attempts \
         WHERE verification_id = $1 ORDER BY attempt, id",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect()
}

/// What a delivery status change does to a still-pending verification.
pub fn verification_effect(delivery: DeliveryStatus) -> Option<VerificationStatus> {
    match delivery {
        DeliveryStatus::Undelivered | DeliveryStatus::Failed => Some(VerificationStatus::Failed),
        DeliveryStatus::Expired => Some(VerificationStatus::Expired),
        _ => None,
    }
}

/// Which row a delivery update is about.
#[derive(Debug, Clone, Copy)]
pub enum DeliveryTarget<'a> {
    Id(Uuid),
    MessageSid(&'a str),
}

/// The row a delivery update changed, for logs and metrics.
#[derive(Debug, Clone)]
pub struct Advanced {
    pub id: Uuid,
    pub request_id: Option<String>,
    pub created_at: OffsetDateTime,
}

/// Moves a verification's delivery status forwards (never backwards, never out of a final
/// status), keeping the Twilio error code, and applies [`verification_effect`].
/// Returns the row if anything changed.
pub async fn advance_delivery(
    pool: &PgPool,
    target: DeliveryTarget<'_>,
    next: DeliveryStatus,
    error_code: Option<i32>,
) -> sqlx::Result<Option<Advanced>> {
    let predecessors = DeliveryStatus::predecessors(next);
    let effect = verification_effect(next).map(|s| s.as_str());
    let query = match target {
        DeliveryTarget::Id(_) => sqlx::query(
            "UPDATE verifications SET delivery_status = $2, \
               delivery_error_code = COALESCE($3, delivery_error_code), \
               status = CASE WHEN status = 'pending' AND $4::text IS NOT NULL THEN $4 ELSE status END, \
               updated_at = now() \
             WHERE id = $1::text::uuid AND delivery_status = ANY($5) \
             RETURNING id, request_id, created_at",
        ),
        DeliveryTarget::MessageSid(_) => sqlx::query(
            "UPDATE verifications SET delivery_status = $2, \
               delivery_error_code = COALESCE($3, delivery_error_code), \
               status = CASE WHEN status = 'pending' AND $4::text IS NOT NULL THEN $4 ELSE status END, \
               updated_at = now() \
             WHERE provider_message_sid = $1 AND delivery_status = ANY($5) \
             RETURNING id, request_id, created_at",
        ),
    };
    let key = match target {
        DeliveryTarget::Id(id) => id.to_string(),
        DeliveryTarget::MessageSid(sid) => sid.to_owned(),
    };
    let row = query
        .bind(key)
        .bind(next.as_str())
        .bind(error_code)
        .bind(effect)
        .bind(&predecessors)
        .fetch_optional(pool)
        .await?;
    row.map(|r| {
        Ok(Advanced {
            id: r.try_get(0)?,
            request_id: r.try_get(1)?,
            created_at: r.try_get(2)?,
        })
    })
    .transpose()
}

/// Records Twilio's 201: the SMS is `submitted` under `message_sid`. Then replays any status
/// callback that arrived for that sid before this was recorded.
pub async fn mark_submitted(pool: &PgPool, id: Uuid, message_sid: &str) -> sqlx::Result<()> {
    submit(pool, id, message_sid, None).await
}

/// [`mark_submitted`] and the end of the call that got the 201 (attempt row `attempt_id`,
/// outcome `submitted`), in one statement: one commit fewer on every send.
pub async fn finish_submitted(pool: &PgPool, id: Uuid, message_sid: &str, attempt_id: i64) -> sqlx::Result<()> {
    submit(pool, id, message_sid, Some(attempt_id)).await
}

async fn submit(pool: &PgPool, id: Uuid, message_sid: &str, attempt_id: Option<i64>) -> sqlx::Result<()> {
    sqlx::query(
        "WITH call AS ( \
           UPDATE send_attempts SET finished_at = now(), outcome = 'submitted', http_status = 201, \
             provider_message_sid = $2 \
           WHERE id = $4) \
         UPDATE verifications SET delivery_status = 'submitted', provider_message_sid = $2, \
           claimed_until = NULL, updated_at = now() \
         WHERE id = $1 AND delivery_status = ANY($3)",
    )
    .bind(id)
    .bind(message_sid)
    .bind(DeliveryStatus::predecessors(DeliveryStatus::Submitted))
    .bind(attempt_id)
    .execute(pool)
    .await?;
    // Twilio may call back before the sid was stored: apply what came early, in order. This
    // read must come after the commit above: a callback recorded later finds the sid itself.
    for (status, error_code) in events_for(pool, message_sid).await? {
        if let Some(next) = DeliveryStatus::from_twilio(&status) {
            advance_delivery(pool, DeliveryTarget::MessageSid(message_sid), next, error_code).await?;
        }
    }
    Ok(())
}

/// Records that a job was dead-lettered: its delivery is `failed` with the reason, while
/// the verification stays `pending` so that an operator can replay the job.
pub async fn mark_dead_lettered(pool: &PgPool, id: Uuid, reason: &str) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE verifications SET delivery_status = 'failed', dead_letter_reason = $2, \
           claimed_until = NULL, updated_at = now() \
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
           claimed_until = NULL, updated_at = now() \
         WHERE id = $1 AND status = 'pending' AND expires_at > now() \
           AND provider_message_sid IS NULL AND delivery_status IN ('queued', 'sending', 'failed')",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Keeps a status callback as received (also for sids not yet known).
pub async fn record_event(
    pool: &PgPool,
    message_sid: &str,
    message_status: &str,
    error_code: Option<i32>,
) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO delivery_events (message_sid, message_status, error_code) VALUES ($1, $2, $3)")
        .bind(message_sid)
        .bind(message_status)
        .bind(error_code)
        .execute(pool)
        .await?;
    Ok(())
}

async fn events_for(pool: &PgPool, message_sid: &str) -> sqlx::Result<Vec<(String, Option<i32>)>> {
    let rows = sqlx::query("SELECT message_status, error_code FROM delivery_events WHERE message_sid = $1 ORDER BY id")
        .bind(message_sid)
        .fetch_all(pool)
        .await?;
    rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
}

/// Seconds the oldest send has waited, per place: `send_queue` (verifications still
/// `queued`), each delay queue (deferred sends), `dead_queue` (dead-lettered, still pending).
pub async fn oldest_waiting(pool: &PgPool, send_queue: &str, dead_queue: &str) -> sqlx::Result<Vec<(String, f64)>> {
    let rows = sqlx::query(
        "SELECT place, extract(epoch FROM now() - min(since))::float8 FROM ( \
           SELECT $1::text AS place, min(created_at) AS since FROM verifications \
            WHERE delivery_status = 'queued' AND status = 'pending' \
           UNION ALL \
           SELECT waiting_in, min(updated_at) FROM verifications WHERE waiting_in IS NOT NULL GROUP BY waiting_in \
           UNION ALL \
           SELECT $2::text, min(updated_at) FROM verifications WHERE dead_letter_reason IS NOT NULL \
         ) waiting WHERE since IS NOT NULL GROUP BY place",
    )
    .bind(send_queue)
    .bind(dead_queue)
    .fetch_all(pool)
    .await?;
    rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
}

/// Calls per worker (`worker_id`, calls), most first.
pub async fn calls_per_worker(pool: &PgPool) -> sqlx::Result<Vec<(String, i64)>> {
    let rows = sqlx::query("SELECT coalesce(worker_id, '?'), count(*) FROM send_attempts GROUP BY 1 ORDER BY 2 DESC")
        .fetch_all(pool)
        .await?;
    rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
}

/// Whether PostgreSQL answers (used by `/readyz`).
pub async fn ping(pool: &PgPool) -> bool {
    sqlx::query("SELECT 1").execute(pool).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failures_and_expiry_change_a_pending_verification() {
        assert_eq!(
            verification_effect(DeliveryStatus::Failed),
            Some(VerificationStatus::Failed)
        );
        assert_eq!(
            verification_effect(DeliveryStatus::Undelivered),
            Some(VerificationStatus::Failed)
        );
        assert_eq!(
            verification_effect(DeliveryStatus::Expired),
            Some(VerificationStatus::Expired)
        );
        assert_eq!(verification_effect(DeliveryStatus::Delivered), None);
        assert_eq!(verification_effect(DeliveryStatus::Canceled), None);
    }
}
