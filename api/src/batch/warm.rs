//! The batch statements run once, empty, on every connection that runs them before the API
//! takes work.

use common::repo;
use sqlx::PgPool;

/// Runs each batch statement, with nothing in it, once on every connection that runs it (the
/// start and check statements on `batch_pool`'s, the key statement on `pool`'s; all of a
/// pool's connections held at once, so each is a different one), within `within`. A connection's first run
/// of the start statement costs PostgreSQL about 6 ms more than the next ones (loading its
/// catalog caches for the tables, indexes and triggers involved): without this, the first
/// batches of a new replica's first burst paid it once per connection (BENCHMARKS.md). An
/// empty batch stores, counts and takes nothing.
pub async fn warm(pool: &PgPool, batch_pool: &PgPool, within: std::time::Duration) {
    let warming = async {
        let mut warmed = 0;
        for conn in &mut hold_all(batch_pool).await? {
            repo::insert_batch_with_outbox(&mut **conn, &[], 0).await?;
            repo::reserve_checks(&mut **conn, &[]).await?;
            repo::delete_outbox_rows(&mut **conn, &[]).await?;
            warmed += 1;
        }
        for conn in &mut hold_all(pool).await? {
            repo::take_idempotency_keys(&mut **conn, &[], 0.0).await?;
            warmed += 1;
        }
        Ok::<_, sqlx::Error>(warmed)
    };
    match tokio::time::timeout(within, warming).await {
        Ok(Ok(n)) => tracing::debug!(connections = n, "batch statements warmed"),
        Ok(Err(e)) => tracing::warn!(error = %e, "warming the batch statements failed; going on"),
        Err(_) => tracing::warn!("warming the batch statements took too long; going on"),
    }
}

/// Every connection `pool` keeps, held at once (each one taken is held, so the next is another).
async fn hold_all(pool: &PgPool) -> sqlx::Result<Vec<sqlx::pool::PoolConnection<sqlx::Postgres>>> {
    let wanted = pool.options().get_min_connections().max(1);
    let mut held = Vec::with_capacity(wanted as usize);
    for _ in 0..wanted {
        held.push(pool.acquire().await?);
    }
    Ok(held)
}
