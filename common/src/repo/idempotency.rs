//! `idempotency_keys`: the first answer to an `Idempotency-Key`, per API key, for 24 hours.
//!
//! A request takes its key with one statement (a new key, an expired one, or one whose
//! holder's lease ran out); every other request with the key finds it taken and reads what
//! is there: another body (422), no answer yet (409), or the answer to replay.

use sqlx::{PgPool, Row};
use uuid::Uuid;

/// How long a key is kept after its first request.
pub const IDEMPOTENCY_HOURS: i32 = 24;

/// A key as a request names it: the API key's digest, the key, the request's fingerprint.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    pub scope: String,
    pub key: String,
    pub fingerprint: Vec<u8>,
}

/// What a request found when it tried to take its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// The key is this request's: it runs, then stores its answer (or gives the key up).
    Ours,
    /// The key was used with another method, path or body.
    OtherRequest,
    /// The first request with the key is still running.
    InProgress,
    /// The first request's answer.
    Answered { status: u16, body: Vec<u8> },
    /// The first request's process died after its start committed: the verification it made.
    Started(Uuid),
}

/// Tries to take many keys at once (one statement, one commit, for concurrent requests),
/// each for its `holder`: `true` where the key is now that request's (a new key, or an
/// expired or abandoned one of the same request), `false` where it is taken, for which
/// [`take_idempotency_key`] says why. The keys must be distinct.
///
/// It commits without waiting for the WAL flush (`synchronous_commit = off`): what a request
/// does with its key afterwards (a start, an answer) commits with the flush, which takes the
/// key's row with it; a key lost with a crash of PostgreSQL before anything else was written
/// only lets a retry run afresh, which is what it would do without a key.
pub async fn take_idempotency_keys(
    db: impl sqlx::PgExecutor<'_>,
    keys: &[(&IdempotencyKey, &str)],
    lease_seconds: f64,
) -> sqlx::Result<Vec<bool>> {
    let rows = sqlx::query(concat!(
        "INSERT INTO idempotency_keys (scope, idem_key, fingerprint, holder, locked_until, expires_at) \
         SELECT scope, idem_key, fingerprint, holder, now() + make_interval(secs => $5), now() + make_interval(hours => $6) \
         FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[]) AS t(scope, idem_key, fingerprint, holder), \
              (SELECT set_config('synchronous_commit', 'off', true)) AS no_wait \
         ORDER BY scope, idem_key ",
        key_upsert!(),
        " RETURNING scope, idem_key"
    ))
    .bind(keys.iter().map(|(k, _)| k.scope.as_str()).collect::<Vec<_>>())
    .bind(keys.iter().map(|(k, _)| k.key.as_str()).collect::<Vec<_>>())
    .bind(keys.iter().map(|(k, _)| k.fingerprint.as_slice()).collect::<Vec<_>>())
    .bind(keys.iter().map(|(_, h)| *h).collect::<Vec<_>>())
    .bind(lease_seconds)
    .bind(IDEMPOTENCY_HOURS)
    .fetch_all(db)
    .await?;
    let taken: std::collections::HashSet<(String, String)> = rows
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<sqlx::Result<_>>()?;
    Ok(keys
        .iter()
        .map(|(k, _)| taken.contains(&(k.scope.clone(), k.key.clone())))
        .collect())
}

/// Takes `key` for the request `holder` for `lease_seconds`, or says why not.
pub async fn take_idempotency_key(
    pool: &PgPool,
    key: &IdempotencyKey,
    holder: &str,
    lease_seconds: f64,
) -> sqlx::Result<Taken> {
    // Two attempts: the key may be given up between the insert and the read.
    for _ in 0..2 {
        let ours = sqlx::query(concat!(
            "INSERT INTO idempotency_keys (scope, idem_key, fingerprint, holder, locked_until, expires_at) \
                 VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5), now() + make_interval(hours => $6)) ",
            key_upsert!(),
            " RETURNING 1"
        ))
        .bind(&key.scope)
        .bind(&key.key)
        .bind(&key.fingerprint)
        .bind(holder)
        .bind(lease_seconds)
        .bind(IDEMPOTENCY_HOURS)
        .fetch_optional(pool)
        .await?;
        if ours.is_some() {
            return Ok(Taken::Ours);
        }
        let row = sqlx::query(
            "SELECT fingerprint, status, body, verification_id, locked_until < now() AS abandoned \
             FROM idempotency_keys WHERE scope = $1 AND idem_key = $2 AND expires_at > now()",
        )
        .bind(&key.scope)
        .bind(&key.key)
        .fetch_optional(pool)
        .await?;
        let Some(row) = row else { continue };
        let fingerprint: Vec<u8> = row.try_get("fingerprint")?;
        if fingerprint != key.fingerprint {
            return Ok(Taken::OtherRequest);
        }
        let status: Option<i32> = row.try_get("status")?;
        let verification: Option<Uuid> = row.try_get("verification_id")?;
        let body: Option<Vec<u8>> = row.try_get("body")?;
        return Ok(match (status, verification) {
            // A start whose statement stored its answer as its verification: rebuilt from it.
            (Some(_), Some(id)) if body.is_none() => Taken::Started(id),
            (Some(status), _) => Taken::Answered {
                status: u16::try_from(status).unwrap_or(500),
                body: body.unwrap_or_default(),
            },
            (None, Some(id)) if row.try_get::<Option<bool>, _>("abandoned")?.unwrap_or(true) => Taken::Started(id),
            _ => Taken::InProgress,
        });
    }
    Ok(Taken::InProgress)
}

/// Stores the answer of the request holding `key`.
pub async fn answer_idempotency_key(
    pool: &PgPool,
    key: &IdempotencyKey,
    holder: Option<&str>,
    status: u16,
    body: &[u8],
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE idempotency_keys SET status = $4, body = $5, holder = NULL, locked_until = NULL \
         WHERE scope = $1 AND idem_key = $2 AND ($3::text IS NULL OR holder = $3)",
    )
    .bind(&key.scope)
    .bind(&key.key)
    .bind(holder)
    .bind(i32::from(status))
    .bind(body)
    .execute(pool)
    .await?;
    Ok(())
}

/// Stores the answer of a request whose key was not taken before it ran (a start that was
/// to take it in its statement, refused before it): as a new key, or over an expired or
/// abandoned one; `false` (nothing written) if the key is in use.
pub async fn answer_new_idempotency_key(
    pool: &PgPool,
    key: &IdempotencyKey,
    status: u16,
    body: &[u8],
) -> sqlx::Result<bool> {
    let done = sqlx::query(concat!(
        "INSERT INTO idempotency_keys (scope, idem_key, fingerprint, status, body, expires_at) \
         VALUES ($1, $2, $3, $4, $5, now() + make_interval(hours => $6)) ",
        key_upsert!()
    ))
    .bind(&key.scope)
    .bind(&key.key)
    .bind(&key.fingerprint)
    .bind(i32::from(status))
    .bind(body)
    .bind(IDEMPOTENCY_HOURS)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Gives the key up (the request was not carried out: refused for now, or failed): the next
/// request with it runs afresh.
pub async fn release_idempotency_key(pool: &PgPool, key: &IdempotencyKey, holder: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND idem_key = $2 AND holder = $3")
        .bind(&key.scope)
        .bind(&key.key)
        .bind(holder)
        .execute(pool)
        .await?;
    Ok(())
}
