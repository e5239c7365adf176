//! The `verifications` table: storing, reading and checking verifications.

use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::status::{DeliveryStatus, VerificationStatus};

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
    /// The locale the code is sent in.
    pub locale: String,
    /// The channels, in order, and the index of the one in use.
    pub channels: Vec<String>,
    pub step: i32,
    /// When the step in use started.
    pub step_started_at: OffsetDateTime,
    /// One of `TEST_NUMBERS`: nothing is sent.
    pub test: bool,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

impl Verification {
    /// The channel in use.
    pub fn channel(&self) -> &str {
        usize::try_from(self.step)
            .ok()
            .and_then(|i| self.channels.get(i))
            .map_or("sms", String::as_str)
    }

    pub(super) fn from_row(row: &PgRow) -> sqlx::Result<Self> {
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
            locale: row.try_get("locale")?,
            channels: row.try_get("channels")?,
            step: row.try_get("step")?,
            step_started_at: row.try_get("step_started_at")?,
            test: row.try_get("test")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            expires_at: row.try_get("expires_at")?,
        })
    }
}

pub(super) fn parse_column<T: std::str::FromStr>(row: &PgRow, column: &str) -> sqlx::Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let text: String = row.try_get(column)?;
    text.parse().map_err(|e| sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: Box::new(e),
    })
}

/// A verification for [`insert`] (tests only).
#[cfg(any(test, feature = "test-support"))]
pub struct NewVerification<'a> {
    pub id: Uuid,
    pub phone_number: &'a str,
    pub code_hmac: &'a [u8],
    pub max_check_attempts: i32,
    pub ttl_seconds: i64,
    pub request_id: Option<&'a str>,
}

/// Stores a verification without a send job (for tests of the worker's side).
#[cfg(any(test, feature = "test-support"))]
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

/// Counts one check attempt against the newest pending verification of each number, before
/// the code is compared; one statement (one commit) for all of them. Counting first, in
/// one statement, is what keeps parallel guesses from getting more than
/// `max_check_attempts` comparisons: once the count is reached no further attempt is handed
/// out (a concurrent update of the row makes PostgreSQL re-check the conditions on the new
/// version). `None` where no verification can be checked. The numbers must be distinct.
pub async fn reserve_checks(
    db: impl sqlx::PgExecutor<'_>,
    phone_numbers: &[&str],
) -> sqlx::Result<Vec<Option<ReservedCheck>>> {
    // A number has at most one pending verification (a unique index), so no ordering: the
    // index lookup is the whole subquery, with no sort on top.
    // Each number's pending verification is looked up on its own (the subquery per
    // number), and the rows are then updated by primary key. Not a join with the batch:
    // without table statistics PostgreSQL planned one as a scan of every pending row hashed
    // against the batch, and `status || ''` keeps it from combining the primary key with the
    // partial index of pending rows, whose size it cannot estimate either (BENCHMARKS.md, "Checks").
    let rows = sqlx::query(
        "UPDATE verifications v SET check_attempts = v.check_attempts + 1, updated_at = now() \
         WHERE v.id = ANY(ARRAY(SELECT (SELECT p.id FROM verifications p \
                                        WHERE p.phone_number = input.phone_number AND p.status = 'pending' \
                                        LIMIT 1) \
                                FROM unnest($1::text[]) AS input(phone_number))) \
           AND v.status || '' = 'pending' AND v.expires_at > now() \
           AND v.check_attempts < v.max_check_attempts \
         RETURNING v.phone_number, v.id, v.code_hmac, v.check_attempts, v.max_check_attempts, v.delivery_status",
    )
    .bind(phone_numbers)
    // Prepared, and planned at every execution by its `db::custom_plan_pool` connection, like
    // the batched start (see `repo::outbox`).
    .persistent(true)
    .fetch_all(db)
    .await?;
    // The numbers are distinct (see above), so each row goes back to its number's slot.
    let slots: std::collections::HashMap<&str, usize> =
        phone_numbers.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let mut reserved = vec![None; phone_numbers.len()];
    for row in rows {
        let number: String = row.try_get("phone_number")?;
        let slot = slots
            .get(number.as_str())
            .and_then(|&i| reserved.get_mut(i))
            .ok_or(sqlx::Error::RowNotFound)?;
        *slot = Some(ReservedCheck {
            id: row.try_get("id")?,
            code_hmac: row.try_get("code_hmac")?,
            check_attempts: row.try_get("check_attempts")?,
            max_check_attempts: row.try_get("max_check_attempts")?,
            delivery_status: parse_column(&row, "delivery_status")?,
        });
    }
    Ok(reserved)
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
