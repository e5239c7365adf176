//! The raw limits of this machine at a given concurrency: single-row inserts, persistent
//! publishes with confirms, and one insert then one confirmed publish per operation (the
//! naive durable write); and the batched durable write, k rows in one `INSERT … UNNEST`
//! then k publishes and their confirms, at a concurrency of 8 (the ceiling a start's
//! persistence allows).

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
    /// Rows per second of the batched durable write with batches of 8 and of 32 (C = 8).
    pub batched_8: f64,
    pub batched_32: f64,
}

/// The concurrency of the batched durable write.
pub const BATCHED_CONCURRENCY: usize = 8;

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
    let queue = BenchQueue::open(amqp_url, QUEUE).await?;

    // `rows` rows per operation: one insert of them all, then their publishes, then their
    // confirms.
    let ops = |insert: bool, publish: bool, rows: usize, concurrency: usize| {
        let (pool, queue) = (pool.clone(), queue.clone());
        run_for(concurrency, run, rows, move || {
            let (pool, queue) = (pool.clone(), queue.clone());
            async move {
                if insert {
                    sqlx::query(
                        "INSERT INTO bench_raw (id, phone_number, code_hmac) \
                         SELECT * FROM unnest($1::uuid[], $2::text[], $3::bytea[])",
                    )
                    .bind((0..rows).map(|_| Uuid::new_v4()).collect::<Vec<_>>())
                    .bind(vec!["+14155552671"; rows])
                    .bind(vec![&[7u8; 32][..]; rows])
                    .execute(&pool)
                    .await?;
                }
                if publish {
                    queue.publish(rows).await?;
                }
                anyhow::Ok(())
            }
        })
    };
    let limits = RawLimits {
        inserts: ops(true, false, 1, concurrency).await?,
        publishes: ops(false, true, 1, concurrency).await?,
        insert_then_publish: ops(true, true, 1, concurrency).await?,
        batched_8: ops(true, true, 8, BATCHED_CONCURRENCY).await?,
        batched_32: ops(true, true, 32, BATCHED_CONCURRENCY).await?,
    };
    queue.delete().await?;
    sqlx::query("DROP TABLE bench_raw").execute(pool).await?;
    Ok(limits)
}

/// A durable quorum queue of the bench's own, and a channel in confirm mode to publish to it
/// (as `verify-api` publishes its send jobs).
#[derive(Clone)]
pub(super) struct BenchQueue {
    conn: Arc<lapin::Connection>,
    channel: lapin::Channel,
    name: &'static str,
}

impl BenchQueue {
    pub(super) async fn open(amqp_url: &str, name: &'static str) -> anyhow::Result<Self> {
        let conn = common::broker::connect(amqp_url, name).await?;
        let channel = conn.create_channel().await?;
        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
        channel
            .queue_declare(name.into(), QueueDeclareOptions::durable(), args)
            .await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        Ok(Self {
            conn: Arc::new(conn),
            channel,
            name,
        })
    }

    /// Publishes `n` persistent send jobs at once and waits for their confirms.
    pub(super) async fn publish(&self, n: usize) -> anyhow::Result<()> {
        let payload = br#"{"v":1,"verification_id":"00000000-0000-4000-8000-000000000000","code":"123456"}"#;
        let props = lapin::BasicProperties::default().with_delivery_mode(2);
        futures_util::future::try_join_all((0..n).map(|_| {
            common::broker::publish_confirmed(
                &self.channel,
                self.name,
                payload,
                props.clone(),
                Duration::from_secs(10),
            )
        }))
        .await?;
        Ok(())
    }

    /// Deletes the queue and closes the connection.
    pub(super) async fn delete(self) -> anyhow::Result<()> {
        self.channel
            .queue_delete(self.name.into(), QueueDeleteOptions::default())
            .await?;
        self.conn.close(200, "done".into()).await?;
        Ok(())
    }
}

/// Runs `op` in `concurrency` loops for `run`; returns completed rows per second (`rows`
/// per operation).
pub(super) async fn run_for<F, Fut>(concurrency: usize, run: Duration, rows: usize, op: F) -> anyhow::Result<f64>
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
    Ok((total * rows as u64) as f64 / started.elapsed().as_secs_f64())
}
