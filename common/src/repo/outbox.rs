//! Starts and the `outbox` table: a verification is written with its send job, which stays
//! in the outbox until the broker confirmed it.

use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::idempotency::IdempotencyKey;
use super::*;

/// A start's `Idempotency-Key` as [`insert_batch_with_outbox`] takes it.
#[derive(Debug, Clone)]
pub enum StartKey {
    /// Taken before, by the request `holder` (its admission wrote rate limits or a budget).
    Held(IdempotencyKey, String),
    /// To be taken by the statement itself: the start is stored only if the key is free (a new
    /// key, an expired one, or one abandoned by the same request); else it is not stored at all.
    Claim(IdempotencyKey),
}

impl StartKey {
    fn key(&self) -> &IdempotencyKey {
        match self {
            Self::Held(key, _) | Self::Claim(key) => key,
        }
    }
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
    /// The locale the code is sent in ([`crate::texts`]).
    pub locale: String,
    /// The channels, in order ([`crate::texts::Channel`] names).
    pub channels: Vec<String>,
    /// `FALLBACK_AFTER_SECONDS`: how long a step handed to Twilio waits for approval before
    /// the next channel is used (unused with one channel).
    pub fallback_after_seconds: i32,
    /// The start's `Idempotency-Key`: the statement stores the verification as the key's
    /// answer (202; a replay rebuilds the body from the verification), so a start's answer is
    /// stored with the start and never lost.
    pub idempotency: Option<StartKey>,
    /// One of `TEST_NUMBERS`: stored `delivered`, with no send job.
    pub test: bool,
}

// The statements over many rows are planned at every execution: they run against tables
// that grow by thousands of rows a second in a burst, and a plan cached while a table was
// small (a scan of every pending row, say) would stay in use as it grows. Most are not
// prepared (`persistent(false)`: parsed and planned each time); the API's batches (of starts,
// of check reservations, of settled outbox rows) are prepared and run on connections that
// plan every statement at every execution (`db::custom_plan_pool`), which saves their parsing
// and a round trip.

/// Stores verifications and their send jobs in the outbox, in one statement (one commit),
/// in the order given: from here on no job can be lost, even if this process dies before
/// the broker confirms it (the outbox relay publishes it after `relay_after_seconds`).
///
/// The same statement supersedes every older pending verification of these numbers: they
/// become `canceled` (or `expired` if past their expiry), so their SMS is skipped if still
/// queued, their codes are refused, and their outbox rows go. The numbers of one call must
/// be distinct (the caller splits duplicates over successive calls): the update sees the
/// table as it was before the statement, so it cannot see rows inserted by the same call.
/// Returns each stored verification with how many older ones it superseded; `None` for a
/// start whose `Idempotency-Key` the statement was to take and found taken (nothing of it is
/// written, and it supersedes nothing).
///
/// A verification with more than one channel also keeps its sealed code, for the later
/// steps, and the code's expiry as its fallback time until its first step is handed to
/// Twilio (see [`super::advance_due_steps`]).
///
/// At most one verification of a number is pending, whatever the number of API replicas:
/// the unique index `verifications_one_pending_per_number` refuses a second one. The
/// superseding update runs to its end before the first insert (the insert waits for the
/// count of superseded rows), so this statement never collides with the rows it supersedes.
/// It collides with a pending row that another replica committed after this statement's
/// snapshot: then it fails as a whole ([`is_pending_conflict`]) and the caller runs it again,
/// which supersedes that row; the start that commits last stays pending. Rows are inserted in
/// number order, so two replicas' batches wait for each other in one order, never in a cycle.
///
/// The older ones are found with `phone_number = ANY($2)`, which PostgreSQL always answers
/// from the index, one lookup per number. Written as a join with the input (`IN (SELECT
/// phone_number FROM input)`), it was planned, while the table had no statistics yet, as a
/// scan of every pending verification hashed against the batch: in a new deployment's
/// first burst every batch read all the pending rows (a million index fetches a second).
///
/// The statement is prepared: run it on connections of [`crate::db::custom_plan_pool`], which
/// plan it afresh at every execution.
pub async fn insert_batch_with_outbox(
    db: impl sqlx::PgExecutor<'_>,
    rows: &[NewRow],
    relay_after_seconds: i64,
) -> sqlx::Result<Vec<Option<(Verification, i64)>>> {
    let stored = sqlx::query(concat!(
        "WITH input AS ( \
           SELECT * FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::int[], $5::float8[], $6::text[], $7::bytea[], $9::text[], $10::text[], $11::int[], $15::bool[]) \
             WITH ORDINALITY AS t(id, phone_number, code_hmac, max_check_attempts, ttl, request_id, sealed_code, locale, channels, fallback_after, test, n)), \
         keyed AS ( \
           SELECT * FROM unnest($1::uuid[], $12::text[], $13::text[], $14::text[], $16::bytea[]) AS k(id, scope, idem_key, holder, fingerprint) \
           WHERE scope IS NOT NULL), \
         claimed AS ( \
           INSERT INTO idempotency_keys (scope, idem_key, fingerprint, status, verification_id, expires_at) \
           SELECT scope, idem_key, fingerprint, 202, id, now() + make_interval(hours => $17) FROM keyed \
           WHERE holder IS NULL ORDER BY scope, idem_key ",
        key_upsert!(),
        " RETURNING verification_id), \
         refused AS (SELECT id FROM keyed WHERE holder IS NULL AND id NOT IN (SELECT verification_id FROM claimed)), \
         tied AS ( \
           UPDATE idempotency_keys i SET verification_id = keyed.id, status = 202, holder = NULL, locked_until = NULL \
           FROM keyed WHERE keyed.holder IS NOT NULL \
             AND i.scope = keyed.scope AND i.idem_key = keyed.idem_key AND i.holder = keyed.holder), \
         admitted AS (SELECT * FROM input WHERE id NOT IN (SELECT id FROM refused)), \
         superseded AS ( \
           UPDATE verifications SET \
             status = CASE WHEN expires_at <= now() THEN 'expired' ELSE 'canceled' END, \
             delivery_status = CASE WHEN delivery_status <> 'queued' THEN delivery_status \
                                    WHEN expires_at <= now() THEN 'expired' ELSE 'canceled' END, \
             updated_at = now() \
           WHERE phone_number = ANY(ARRAY(SELECT phone_number FROM admitted)) AND status = 'pending' \
           RETURNING id, phone_number), \
         unsent AS (DELETE FROM outbox WHERE verification_id IN (SELECT id FROM superseded)), \
         job AS ( \
           INSERT INTO outbox (verification_id, sealed_code, request_id, relay_after) \
           SELECT id, sealed_code, request_id, now() + make_interval(secs => $8) FROM admitted WHERE NOT test), \
         stored AS ( \
           INSERT INTO verifications (id, phone_number, code_hmac, max_check_attempts, request_id, locale, channels, expires_at, \
                                      sealed_code, fallback_after_seconds, fallback_due_at, test, delivery_status) \
           SELECT id, phone_number, code_hmac, max_check_attempts, request_id, locale, string_to_array(channels, ','), \
                  now() + make_interval(secs => ttl), \
                  CASE WHEN strpos(channels, ',') > 0 AND NOT test THEN sealed_code END, \
                  CASE WHEN strpos(channels, ',') > 0 AND NOT test THEN fallback_after END, \
                  CASE WHEN strpos(channels, ',') > 0 AND NOT test THEN now() + make_interval(secs => ttl) END, \
                  test, CASE WHEN test THEN 'delivered' ELSE 'queued' END \
           FROM admitted WHERE (SELECT count(*) FROM superseded) >= 0 ORDER BY phone_number RETURNING ",
        columns!(),
        ") \
         SELECT stored.*, (SELECT count(*) FROM superseded s WHERE s.phone_number = stored.phone_number) AS superseded \
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
    .bind(rows.iter().map(|r| r.locale.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.channels.join(",")).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.fallback_after_seconds).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.idempotency.as_ref().map(|k| k.key().scope.as_str())).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.idempotency.as_ref().map(|k| k.key().key.as_str())).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| match &r.idempotency {
        Some(StartKey::Held(_, holder)) => Some(holder.as_str()),
        _ => None,
    }).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.test).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.idempotency.as_ref().map(|k| k.key().fingerprint.as_slice())).collect::<Vec<_>>())
    .bind(super::IDEMPOTENCY_HOURS)
    // Prepared: run on a `db::custom_plan_pool` connection (see above).
    .persistent(true)
    .fetch_all(db)
    .await?;
    let mut by_id: std::collections::HashMap<Uuid, (Verification, i64)> = stored
        .iter()
        .map(|row| Ok((Verification::from_row(row)?, row.try_get("superseded")?)))
        .collect::<sqlx::Result<Vec<_>>>()?
        .into_iter()
        .map(|(v, s)| (v.id, (v, s)))
        .collect();
    // A row missing from the answer was not stored: its key was taken ([`StartKey::Claim`]).
    rows.iter()
        .map(|r| match by_id.remove(&r.id) {
            Some(stored) => Ok(Some(stored)),
            None if matches!(r.idempotency, Some(StartKey::Claim(_))) => Ok(None),
            None => Err(sqlx::Error::RowNotFound),
        })
        .collect()
}

/// The unique index of pending verifications refused a row: another replica committed a
/// pending verification for one of the numbers meanwhile (see [`insert_batch_with_outbox`]).
pub fn is_pending_conflict(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db)
        if db.code().as_deref() == Some("23505")
            && db.constraint() == Some("verifications_one_pending_per_number"))
}

/// Drops the outbox rows of jobs the broker confirmed, in one statement. Prepared: run it on
/// connections of [`crate::db::custom_plan_pool`] (see above).
pub async fn delete_outbox_rows<'c>(db: impl sqlx::PgExecutor<'c>, ids: &[Uuid]) -> sqlx::Result<u64> {
    let done = sqlx::query("DELETE FROM outbox WHERE verification_id = ANY($1)")
        .bind(ids)
        .persistent(true)
        .execute(db)
        .await?;
    Ok(done.rows_affected())
}

/// A send job left in the outbox.
#[derive(Debug, Clone)]
pub struct OutboxJob {
    pub verification_id: Uuid,
    pub sealed_code: Vec<u8>,
    pub request_id: Option<String>,
    /// Whether its verification is still pending and unexpired (else nothing is worth sending).
    pub pending: bool,
}

/// Takes up to `limit` outbox jobs that are due, pushing their `relay_after` forward by
/// `lease_seconds` so that no other relay takes them meanwhile (several API replicas may
/// run a relay; `SKIP LOCKED` keeps them off each other's rows).
///
/// Both statements read by primary key (`= ANY`), whatever PostgreSQL guesses without
/// statistics: as a join and an `EXISTS` they were planned as a scan of the whole outbox and
/// of every pending verification, once per round.
pub async fn take_due_outbox(pool: &PgPool, limit: i64, lease_seconds: i64) -> sqlx::Result<Vec<OutboxJob>> {
    let rows = sqlx::query(
        "UPDATE outbox SET relay_after = now() + make_interval(secs => $2) \
         WHERE verification_id = ANY(ARRAY(SELECT verification_id FROM outbox WHERE relay_after <= now() \
                                           ORDER BY relay_after LIMIT $1 FOR UPDATE SKIP LOCKED)) \
         RETURNING verification_id, sealed_code, request_id",
    )
    .bind(limit)
    .bind(lease_seconds as f64)
    .persistent(false)
    .fetch_all(pool)
    .await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids = rows.iter().map(|r| r.try_get(0)).collect::<sqlx::Result<Vec<Uuid>>>()?;
    // `status || ''`: not the partial index of pending rows, whose size is unknown without
    // statistics (see `reserve_checks`).
    let pending: std::collections::HashSet<Uuid> = sqlx::query_scalar(
        "SELECT id FROM verifications WHERE id = ANY($1) AND status || '' = 'pending' AND expires_at > now()",
    )
    .bind(&ids)
    .persistent(false)
    .fetch_all(pool)
    .await?
    .into_iter()
    .collect();
    rows.iter()
        .zip(ids)
        .map(|(r, id)| {
            Ok(OutboxJob {
                verification_id: id,
                sealed_code: r.try_get(1)?,
                request_id: r.try_get(2)?,
                pending: pending.contains(&id),
            })
        })
        .collect()
}
