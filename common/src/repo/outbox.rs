//! Starts and the `outbox` table: a verification is written with its send job, which stays
//! in the outbox until the broker confirmed it.

use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::*;

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

/// Removes a verification whose send job never reached the broker (and, by cascade, its
/// outbox row), so nothing is left pending with no job. Only while its SMS is still `queued`.
pub async fn discard_unpublished(pool: &PgPool, id: Uuid) -> sqlx::Result<bool> {
    let done = sqlx::query("DELETE FROM verifications WHERE id = $1 AND delivery_status = 'queued'")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}
