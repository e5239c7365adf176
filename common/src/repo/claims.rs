//! Taking a send: the lease that lets one worker at a time call Twilio for a verification,
//! claimed one by one or in batches, and renewed before a call made after a long wait.

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
        /// [`claim_sends_and_begin`]); `send_attempts` counts it already.
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

/// Takes the send as [`claim_sends_and_begin`] does, without beginning a call. Tests only:
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
#[cfg(any(test, feature = "test-support"))]
pub async fn claim_send_and_begin(
    pool: &PgPool,
    id: Uuid,
    lease: Lease<'_>,
    worker_id: &str,
    min_lifetime_seconds: f64,
) -> sqlx::Result<Claim> {
    claim(pool, id, lease, Some((worker_id, min_lifetime_seconds))).await
}

#[cfg(any(test, feature = "test-support"))]
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
    match row {
        Some(row) => claimed(&row),
        None => unclaimed(pool, id).await,
    }
}

/// Takes the sends of `asks` with one lease length, as the single claim
/// (`claim_send_and_begin`, whose rules these are) would one by one: the function
/// `claim_sends` runs its statement for each, in the order of their ids. One round trip and
/// one commit for the batch; the claims come back in the order of `asks`.
///
/// A batch holds its rows' locks until it commits, so another transaction that locks two of
/// them in the other order (a batch of starts superseding two numbers being claimed, say)
/// can deadlock with it, and PostgreSQL aborts one side. Nothing of an aborted batch was
/// done: it runs again (up to 3 times) rather than fail every job in it.
pub async fn claim_sends_and_begin(pool: &PgPool, asks: &[ClaimAsk], terms: &ClaimTerms) -> sqlx::Result<Vec<Claim>> {
    let mut retries = 0;
    loop {
        match claim_batch(pool, asks, terms).await {
            Err(e) if retries < 3 && crate::db::is_deadlock(&e) => {
                retries += 1;
                metrics::counter!(crate::metric_names::BATCH_CONFLICTS, "kind" => "claim_deadlock").increment(1);
                tracing::warn!(error = %e, "a batch of claims was aborted by a deadlock; running it again");
            }
            result => return result,
        }
    }
}

/// What every claim of a worker's batches shares.
#[derive(Debug, Clone)]
pub struct ClaimTerms {
    /// How long a lease lasts (`SEND_LEASE_SECONDS`).
    pub lease_seconds: f64,
    /// Recorded on the call each claim begins.
    pub worker_id: String,
    /// A call is begun with the claim only if the code has this long left to live.
    pub min_lifetime_seconds: f64,
}

async fn claim_batch(pool: &PgPool, asks: &[ClaimAsk], terms: &ClaimTerms) -> sqlx::Result<Vec<Claim>> {
    let ids: Vec<Uuid> = asks.iter().map(|a| a.id).collect();
    let holders: Vec<&str> = asks.iter().map(|a| a.holder.as_str()).collect();
    let rows = sqlx::query("SELECT * FROM claim_sends($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(&ids)
        .bind(&holders)
        .bind(terms.lease_seconds)
        .bind(&terms.worker_id)
        .bind(terms.min_lifetime_seconds)
        .bind(AttemptOutcome::unknown())
        .bind(AttemptOutcome::Submitted.as_str())
        .bind(AttemptOutcome::InFlight.as_str())
        .fetch_all(pool)
        .await?;
    let mut claims: Vec<Option<Claim>> = vec![None; asks.len()];
    for row in rows {
        let n: i32 = row.try_get("n")?;
        let slot = usize::try_from(n - 1).ok().and_then(|i| claims.get_mut(i));
        let slot = slot.ok_or_else(|| sqlx::Error::Protocol(format!("claim_sends answered for send {n}")))?;
        *slot = Some(claimed(&row)?);
    }
    let mut out = Vec::with_capacity(asks.len());
    for (ask, claim) in asks.iter().zip(claims) {
        out.push(match claim {
            Some(claim) => claim,
            None => unclaimed(pool, ask.id).await?,
        });
    }
    Ok(out)
}

/// A send to take in a batch: its verification and the lease's holder ([`Lease::holder`]).
#[derive(Debug, Clone)]
pub struct ClaimAsk {
    pub id: Uuid,
    pub holder: String,
}

fn claimed(row: &sqlx::postgres::PgRow) -> sqlx::Result<Claim> {
    Ok(Claim::Claimed {
        phone_number: row.try_get("phone_number")?,
        locale: row.try_get("locale")?,
        channel: row.try_get("channel")?,
        step_started_at: row.try_get("step_started_at")?,
        expires_at: row.try_get("expires_at")?,
        send_attempts: row.try_get("send_attempts")?,
        needs_lookup: row.try_get("needs_lookup")?,
        submitted_sid: row.try_get("submitted_sid")?,
        attempt_row: row.try_get("attempt_row")?,
    })
}

/// Why a send was not taken: someone else holds it, or there is nothing to send.
async fn unclaimed(pool: &PgPool, id: Uuid) -> sqlx::Result<Claim> {
    let found = find(pool, id).await?;
    let claimable = found.as_ref().is_some_and(|v| {
        v.status == VerificationStatus::Pending
            && matches!(v.delivery_status, DeliveryStatus::Queued | DeliveryStatus::Sending)
    });
    Ok(if claimable { Claim::Busy } else { Claim::Skip(found) })
}

/// Renews the lease of `lease.holder` on the send, before a call begun with its claim is
/// made after a long wait. `false`: the lease ran out and another worker took the send, whose
/// call it now is.
pub async fn renew_lease(pool: &PgPool, id: Uuid, lease: Lease<'_>) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE verifications SET claimed_until = now() + make_interval(secs => $3), updated_at = now() \
         WHERE id = $1 AND claimed_by = $2",
    )
    .bind(id)
    .bind(lease.holder)
    .bind(lease.seconds)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}
