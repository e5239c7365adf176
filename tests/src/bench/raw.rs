//! The raw limits of this machine at a given concurrency: single-row inserts, persistent
//! publishes with confirms, and one insert then one confirmed publish per operation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::options::{ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable};
use sqlx::PgPool;
use uuid::Uuid;

/// Operations per second of each kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawLimits {
    pub inserts: f64,
    pub publishes: f64,
    pub insert_then_publish: f64,
}

const QUEUE: &str = "bench.raw";

/// Runs each kind for `run` with `concurrency` tasks sharing one pool and one confirm channel
/// (as `verify-api` does).
pub async fn measure(pool: &PgPool, amqp_url: &str, concurrency: usize, run: Duration) -> anyhow::Result<RawLimits> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS bench_raw (id uuid PRIMARY KEY, phone_number text NOT NULL, \
         code_hmac bytea NOT NULL, created_at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(pool)
    .await?;
    let conn = common::broker::connect(amqp_url, "bench raw").await?;
    let channel = conn.create_channel().await?;
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    channel
        .queue_declare(QUEUE.into(), QueueDeclareOptions::durable(), args)
        .await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;

    let ops = |insert: bool, publish: bool| {
        let (pool, channel) = (pool.clone(), channel.clone());
        run_for(concurrency, run, move || {
            let (pool, channel) = (pool.clone(), channel.clone());
            async move {
                if insert {
                    sqlx::query("INSERT INTO bench_raw (id, phone_number, code_hmac) VALUES ($1, $2, $3)")
                        .bind(Uuid::new_v4())
                        .bind("+14155552671")
                        .bind(&[7u8; 32][..])
                        .execute(&pool)
                        .await?;
                }
                if publish {
                    let payload =
                        br#"{"v":1,"verification_id":"00000000-0000-4000-8000-000000000000","code":"123456"}"#;
                    let props = lapin::BasicProperties::default().with_delivery_mode(2);
                    common::broker::publish_confirmed(&channel, QUEUE, payload, props, Duration::from_secs(10)).await?;
                }
                anyhow::Ok(())
            }
        })
    };
    let limits = RawLimits {
        inserts: ops(true, false).await?,
        publishes: ops(false, true).await?,
        insert_then_publish: ops(true, true).await?,
    };
    channel
        .queue_delete(QUEUE.into(), QueueDeleteOptions::default())
        .await?;
    conn.close(200, "done".into()).await?;
    sqlx::query("DROP TABLE bench_raw").execute(pool).await?;
    Ok(limits)
}

/// Runs `op` in `concurrency` loops for `run`; returns completed operations per second.
async fn run_for<F, Fut>(concurrency: usize, run: Duration, op: F) -> anyhow::Result<f64>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let op = Arc::clone(&op);
            tokio::spawn(async move {
                let mut done = 0u64;
                while started.elapsed() < run {
                    op().await?;
                    done += 1;
                }
                anyhow::Ok(done)
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}
