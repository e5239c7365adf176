//! The persistence a start and a check need, written bare into the product's own tables:
//! no HTTP, no decisions, no locks, nothing read first. What these reach is a ceiling on the
//! product's starts and checks on this machine, with its rate limits, `Idempotency-Key`s and
//! outbox on.
//!
//! - **A start's writes**, 32 starts per transaction (C = 8), as `verify-api` batches them:
//!   the key (`idempotency_keys`), the start's two rate-limit windows (address and number;
//!   the prefix window is one row for the batch), the verification and its outbox row in one
//!   commit; then the send jobs' 32 publishes and their confirms; then the outbox rows'
//!   delete.
//! - **A check's writes**, 32 checks per transaction (C = 8): the two windows of a check
//!   (address, wrong codes of the number) and the attempt counted on a pending verification
//!   (one written by the starts above).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

use super::raw::{BATCHED_CONCURRENCY, BenchQueue, run_for};

/// Starts or checks per transaction.
pub const BATCH: usize = 32;

const QUEUE: &str = "bench.floor";

/// Starts and checks per second.
#[derive(Debug, Clone, Copy, Default)]
pub struct Floor {
    pub starts: f64,
    pub checks: f64,
}

/// Runs each for `run`, then empties the tables it wrote.
pub async fn measure(pool: &PgPool, amqp_url: &str, run: Duration) -> anyhow::Result<Floor> {
    let queue = BenchQueue::open(amqp_url, QUEUE).await?;
    let next = Arc::new(AtomicU64::new(0));

    let starts = {
        let (pool, queue, next) = (pool.clone(), queue.clone(), Arc::clone(&next));
        run_for(BATCHED_CONCURRENCY, run, BATCH, move || {
            let (pool, queue) = (pool.clone(), queue.clone());
            let first = next.fetch_add(BATCH as u64, Ordering::Relaxed);
            async move { write_starts(&pool, &queue, first).await }
        })
        .await?
    };
    let written = next.load(Ordering::Relaxed);
    let checks = {
        let (pool, next) = (pool.clone(), Arc::new(AtomicU64::new(0)));
        run_for(BATCHED_CONCURRENCY, run, BATCH, move || {
            let pool = pool.clone();
            let first = next.fetch_add(BATCH as u64, Ordering::Relaxed) % written.max(1);
            async move { write_checks(&pool, first).await }
        })
        .await?
    };

    queue.delete().await?;
    sqlx::query("TRUNCATE verifications, outbox, idempotency_keys, rate_limits CASCADE")
        .execute(pool)
        .await?;
    Ok(Floor { starts, checks })
}

/// The number of the `i`-th start: `+1` and ten digits, none pending twice.
fn number(i: u64) -> String {
    format!("+1{}", 2_000_000_000 + i)
}

async fn write_starts(pool: &PgPool, queue: &BenchQueue, first: u64) -> anyhow::Result<()> {
    let ids: Vec<Uuid> = (0..BATCH).map(|_| Uuid::new_v4()).collect();
    let numbers: Vec<String> = (first..first + BATCH as u64).map(number).collect();
    let mut keys: Vec<String> = numbers.iter().map(|n| format!("bench-floor:ip:{n}")).collect();
    keys.extend(numbers.iter().map(|n| format!("bench-floor:number:{n}")));
    keys.push("bench-floor:prefix:+1200".to_owned());
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO idempotency_keys (scope, idem_key, fingerprint, status, verification_id, expires_at) \
         SELECT 'bench-floor', id::text, '\\x00', 202, id, now() + interval '1 day' FROM unnest($1::uuid[]) AS id",
    )
    .bind(&ids)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO rate_limits AS r (key, times, expires_at) \
         SELECT k, ARRAY[now()], now() + interval '1 minute' FROM unnest($1::text[]) AS k \
         ON CONFLICT (key) DO UPDATE SET times = excluded.times, expires_at = excluded.expires_at",
    )
    .bind(&keys)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "WITH stored AS ( \
           INSERT INTO verifications (id, phone_number, code_hmac, max_check_attempts, request_id, expires_at) \
           SELECT id, n, '\\x0011223344556677889900112233445566778899001122334455667788990011', 5, 'bench', \
                  now() + interval '10 minutes' \
           FROM unnest($1::uuid[], $2::text[]) AS t(id, n) RETURNING id) \
         INSERT INTO outbox (verification_id, sealed_code, request_id, relay_after) \
         SELECT id, '\\x00112233445566778899', 'bench', now() + interval '5 seconds' FROM stored",
    )
    .bind(&ids)
    .bind(&numbers)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    queue.publish(BATCH).await?;
    sqlx::query("DELETE FROM outbox WHERE verification_id = ANY($1)")
        .bind(&ids)
        .execute(pool)
        .await?;
    Ok(())
}

async fn write_checks(pool: &PgPool, first: u64) -> anyhow::Result<()> {
    let numbers: Vec<String> = (first..first + BATCH as u64).map(number).collect();
    let mut keys: Vec<String> = numbers.iter().map(|n| format!("bench-floor:check-ip:{n}")).collect();
    keys.extend(numbers.iter().map(|n| format!("bench-floor:wrong:{n}")));
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO rate_limits AS r (key, times, expires_at) \
         SELECT k, ARRAY[now()], now() + interval '1 day' FROM unnest($1::text[]) AS k \
         ON CONFLICT (key) DO UPDATE SET times = r.times || now(), expires_at = excluded.expires_at",
    )
    .bind(&keys)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE verifications SET check_attempts = check_attempts + 1, updated_at = now() \
         WHERE phone_number = ANY($1) AND status = 'pending'",
    )
    .bind(&numbers)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}
