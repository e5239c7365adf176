//! What operators and probes read: waiting ages, database liveness.

use sqlx::{PgPool, Row};

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

/// Whether PostgreSQL answers (used by `/readyz`).
pub async fn ping(pool: &PgPool) -> bool {
    sqlx::query("SELECT 1").execute(pool).await.is_ok()
}
