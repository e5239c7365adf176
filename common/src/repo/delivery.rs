//! Delivery statuses: forward-only updates, and the `delivery_events` Twilio called back with.

use sqlx::{PgPool, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::status::{DeliveryStatus, VerificationStatus};

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
/// status), keeping the Twilio error code, and applies [`verification_effect`]; except that a
/// failure of a step with a next channel makes that channel due at once (the fallback,
/// [`super::advance_due_steps`]) instead of failing the verification. A callback for the sid
/// of a step that already ended updates that step. Returns the row if the step in use changed.
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
               status = CASE WHEN status = 'pending' AND $4::text IS NOT NULL \
                             AND NOT ($6 AND fallback_due_at IS NOT NULL) THEN $4 ELSE status END, \
               fallback_due_at = CASE WHEN $6 AND fallback_due_at IS NOT NULL THEN now() ELSE fallback_due_at END, \
               updated_at = now() \
             WHERE id = $1::text::uuid AND delivery_status = ANY($5) \
             RETURNING id, request_id, created_at",
        ),
        DeliveryTarget::MessageSid(_) => sqlx::query(
            "UPDATE verifications SET delivery_status = $2, \
               delivery_error_code = COALESCE($3, delivery_error_code), \
               status = CASE WHEN status = 'pending' AND $4::text IS NOT NULL \
                             AND NOT ($6 AND fallback_due_at IS NOT NULL) THEN $4 ELSE status END, \
               fallback_due_at = CASE WHEN $6 AND fallback_due_at IS NOT NULL THEN now() ELSE fallback_due_at END, \
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
        .bind(next.is_failure())
        .fetch_optional(pool)
        .await?;
    if row.is_none()
        && let DeliveryTarget::MessageSid(sid) = target
        && let Some(id) = super::advance_ended_step(pool, sid, next, error_code).await?
    {
        tracing::info!(verification_id = %id, status = next.as_str(), "delivery of an earlier channel step recorded");
    }
    row.map(|r| {
        Ok(Advanced {
            id: r.try_get(0)?,
            request_id: r.try_get(1)?,
            created_at: r.try_get(2)?,
        })
    })
    .transpose()
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

/// The callbacks stored for any of `message_sids`, oldest first: (sid, status, error code).
/// `prepared`: on a custom-plan connection (see [`super::finish_submitted`]).
pub(super) async fn events_for_many(
    pool: &PgPool,
    message_sids: &[&str],
    prepared: bool,
) -> sqlx::Result<Vec<(String, String, Option<i32>)>> {
    let rows = sqlx::query(
        "SELECT message_sid, message_status, error_code FROM delivery_events \
         WHERE message_sid = ANY($1) ORDER BY id",
    )
    .bind(message_sids)
    .persistent(prepared)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect()
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
