//! `send_attempts`: every Twilio call a worker made, recorded before (`in_flight`) and after
//! (its outcome), and the outcomes' one mapping to their text.

use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::Lease;

/// How a Twilio call ended, as `send_attempts.outcome` stores it: the one mapping between
/// these outcomes and their text, for SQL, logs and metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// Recorded before the call; still so if the worker died during it.
    InFlight,
    /// Twilio answered 201 (or a lookup found the message).
    Submitted,
    /// Failed in a way that is safe to call again.
    Retry,
    /// May or may not have reached Twilio: look it up before calling again.
    Ambiguous,
    /// Twilio refused for good.
    Permanent,
    /// An in-flight or ambiguous call that a later lookup found at Twilio.
    FoundAtTwilio,
    /// An in-flight or ambiguous call that a later lookup did not find.
    NotAtTwilio,
}

impl AttemptOutcome {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InFlight => "in_flight",
            Self::Submitted => "submitted",
            Self::Retry => "retry",
            Self::Ambiguous => "ambiguous",
            Self::Permanent => "permanent",
            Self::FoundAtTwilio => "found_at_twilio",
            Self::NotAtTwilio => "not_at_twilio",
        }
    }

    /// Calls whose result is unknown: Twilio must be asked before calling again.
    pub(super) fn unknown() -> [&'static str; 2] {
        [Self::InFlight.as_str(), Self::Ambiguous.as_str()]
    }
}

/// Records that Twilio call number `attempt` is about to be made (outcome `in_flight`),
/// counts it on the verification and renews the lease, before the call: if the worker dies
/// during the call, whoever takes the job next knows to ask Twilio first. Returns the
/// attempt's row id for [`finish_attempt`], or `None` (and records nothing) when `lease` is
/// no longer held by its holder: it ran out and another worker took the send, which must
/// then not be called by this one.
pub async fn begin_attempt(
    pool: &PgPool,
    id: Uuid,
    attempt: i32,
    lease: Lease<'_>,
    worker_id: &str,
) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(
        "WITH renewed AS ( \
           UPDATE verifications SET send_attempts = GREATEST(send_attempts, $2), \
             claimed_until = now() + make_interval(secs => $3), updated_at = now() \
           WHERE id = $1 AND claimed_by = $5 RETURNING id, step) \
         INSERT INTO send_attempts (verification_id, step, attempt, started_at, outcome, worker_id) \
         SELECT id, step, $2, now(), $6, $4 FROM renewed RETURNING id",
    )
    .bind(id)
    .bind(attempt)
    .bind(lease.seconds)
    .bind(worker_id)
    .bind(lease.holder)
    .bind(AttemptOutcome::InFlight.as_str())
    .fetch_optional(pool)
    .await
}

/// How a Twilio call ended, as recorded.
#[derive(Debug, Clone)]
pub struct AttemptResult<'a> {
    pub outcome: AttemptOutcome,
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
    .bind(r.outcome.as_str())
    .bind(r.http_status)
    .bind(r.twilio_error_code)
    .bind(r.error_message)
    .bind(r.provider_message_sid)
    .execute(pool)
    .await?;
    Ok(())
}

/// Marks earlier in-flight or ambiguous calls of the step in use as settled by a lookup at Twilio (`found`
/// tells whether the message was there), so they do not trigger another lookup.
pub async fn settle_unknown_attempts(pool: &PgPool, id: Uuid, found: bool) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE send_attempts SET outcome = $2 WHERE verification_id = $1 AND outcome = ANY($3) \
         AND step = (SELECT step FROM verifications WHERE id = $1)",
    )
    .bind(id)
    .bind(
        if found {
            AttemptOutcome::FoundAtTwilio
        } else {
            AttemptOutcome::NotAtTwilio
        }
        .as_str(),
    )
    .bind(AttemptOutcome::unknown())
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
