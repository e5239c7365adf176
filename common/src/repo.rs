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

/// Removes a verification whose send job never reached the broker, so nothing is left
/// pending with no job. Only while its SMS is still `queued`.
pub async fn discard_unpublished(pool: &PgPool, id: Uuid) -> sqlx::Result<bool> {
    let done =
        sqlx::query("DELETE FROM verifications WHERE id = $1 AND delivery_status = 'queued'")
            .bind(id)
            .execute(pool)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// Cancels every pending verification of `phone_number` older than `newer_seq`; their SMS,
/// if still queued, becomes `canceled` so the worker skips it. One already past its expiry
/// becomes `expired` instead.
pub async fn supersede_older(
    pool: &PgPool,
    phone_number: &str,
    newer_seq: i64,
) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "UPDATE verifications SET \
           status = CASE WHEN expires_at <= now() THEN 'expired' ELSE 'canceled' END, \
           delivery_status = CASE WHEN delivery_status <> 'queued' THEN delivery_status \
                                  WHEN expires_at <= now() THEN 'expired' ELSE 'canceled' END, \
           updated_at = now() \
         WHERE phone_number = $1 AND status = 'pending' AND seq < $2",
    )
    .bind(phone_number)
    .bind(newer_seq)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

pub async fn find(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<Verification>> {
    let row = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM verifications WHERE id = $1"
    ))
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
pub async fn reserve_check(
    pool: &PgPool,
    phone_number: &str,
) -> sqlx::Result<Option<ReservedCheck>> {
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
    /// The send is ours: the row is now `sending`.
    Claimed {
        phone_number: String,
        expires_at: OffsetDateTime,
        send_attempts: i32,
    },
    /// Nothing to send: the verification is gone, superseded, expired, or already sent.
    Skip(Option<Verification>),
}

/// Takes the send of a pending, unexpired verification whose SMS is not yet submitted, in
/// one conditional update. A row left `sending` by a worker that died is taken again.
pub async fn claim_send(pool: &PgPool, id: Uuid) -> sqlx::Result<Claim> {
    let row = sqlx::query(
        "UPDATE verifications SET delivery_status = 'sending', updated_at = now() \
         WHERE id = $1 AND status = 'pending' AND expires_at > now() \
           AND delivery_status IN ('queued', 'sending') \
         RETURNING phone_number, expires_at, send_attempts",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    match row {
        Some(row) => Ok(Claim::Claimed {
            phone_number: row.try_get("phone_number")?,
            expires_at: row.try_get("expires_at")?,
            send_attempts: row.try_get("send_attempts")?,
        }),
        None => Ok(Claim::Skip(find(pool, id).await?)),
    }
}

/// One Twilio call, as recorded.
#[derive(Debug, Clone)]
pub struct AttemptRecord<'a> {
    pub verification_id: Uuid,
    pub attempt: i32,
    pub started_at: OffsetDateTime,
    pub outcome: &'a str,
    pub http_status: Option<i32>,
    pub twilio_error_code: Option<i32>,
    pub error_message: Option<&'a str>,
    pub provider_message_sid: Option<&'a str>,
}

/// Records a Twilio call and counts it on the verification, in one statement.
pub async fn record_attempt(pool: &PgPool, a: &AttemptRecord<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "WITH attempt AS ( \
           INSERT INTO send_attempts (verification_id, attempt, started_at, outcome, http_status, \
                                      twilio_error_code, error_message, provider_message_sid) \
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)) \
         UPDATE verifications SET send_attempts = GREATEST(send_attempts, $2), updated_at = now() \
         WHERE id = $1",
    )
    .bind(a.verification_id)
    .bind(a.attempt)
    .bind(a.started_at)
    .bind(a.outcome)
    .bind(a.http_status)
    .bind(a.twilio_error_code)
    .bind(a.error_message)
    .bind(a.provider_message_sid)
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

/// Moves a verification's delivery status forwards (never backwards, never out of a final
/// status), keeping the Twilio error code, and applies [`verification_effect`].
/// Returns whether anything changed.
pub async fn advance_delivery(
    pool: &PgPool,
    target: DeliveryTarget<'_>,
    next: DeliveryStatus,
    error_code: Option<i32>,
) -> sqlx::Result<bool> {
    let predecessors = DeliveryStatus::predecessors(next);
    let effect = verification_effect(next).map(|s| s.as_str());
    let query = match target {
        DeliveryTarget::Id(_) => sqlx::query(
            "UPDATE verifications SET delivery_status = $2, \
               delivery_error_code = COALESCE($3, delivery_error_code), \
               status = CASE WHEN status = 'pending' AND $4::text IS NOT NULL THEN $4 ELSE status END, \
               updated_at = now() \
             WHERE id = $1::text::uuid AND delivery_status = ANY($5)",
        ),
        DeliveryTarget::MessageSid(_) => sqlx::query(
            "UPDATE verifications SET delivery_status = $2, \
               delivery_error_code = COALESCE($3, delivery_error_code), \
               status = CASE WHEN status = 'pending' AND $4::text IS NOT NULL THEN $4 ELSE status END, \
               updated_at = now() \
             WHERE provider_message_sid = $1 AND delivery_status = ANY($5)",
        ),
    };
    let key = match target {
        DeliveryTarget::Id(id) => id.to_string(),
        DeliveryTarget::MessageSid(sid) => sid.to_owned(),
    };
    let done = query
        .bind(key)
        .bind(next.as_str())
        .bind(error_code)
        .bind(effect)
        .bind(&predecessors)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Records Twilio's 201: the SMS is `submitted` under `message_sid`. Then replays any status
/// callback that arrived for that sid before this was recorded.
pub async fn mark_submitted(pool: &PgPool, id: Uuid, message_sid: &str) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE verifications SET delivery_status = 'submitted', provider_message_sid = $2, \
           updated_at = now() \
         WHERE id = $1 AND delivery_status = ANY($3)",
    )
    .bind(id)
    .bind(message_sid)
    .bind(DeliveryStatus::predecessors(DeliveryStatus::Submitted))
    .execute(pool)
    .await?;
    for (status, error_code) in events_for(pool, message_sid).await? {
        if let Some(next) = DeliveryStatus::from_twilio(&status) {
            advance_delivery(
                pool,
                DeliveryTarget::MessageSid(message_sid),
                next,
                error_code,
            )
            .await?;
        }
    }
    Ok(done.rows_affected() == 1)
}

/// Keeps a status callback as received (also for sids not yet known).
pub async fn record_event(
    pool: &PgPool,
    message_sid: &str,
    message_status: &str,
    error_code: Option<i32>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO delivery_events (message_sid, message_status, error_code) VALUES ($1, $2, $3)",
    )
    .bind(message_sid)
    .bind(message_status)
    .bind(error_code)
    .execute(pool)
    .await?;
    Ok(())
}

async fn events_for(pool: &PgPool, message_sid: &str) -> sqlx::Result<Vec<(String, Option<i32>)>> {
    let rows = sqlx::query(
        "SELECT message_status, error_code FROM delivery_events WHERE message_sid = $1 ORDER BY id",
    )
    .bind(message_sid)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
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
