//! The PostgreSQL pool and migrations.

use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// A pool whose connections are made on demand, so a process starts (and answers `/readyz`
/// with 503) while the database is away, and recovers when it is back.
pub fn pool(database_url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        // Bounded wait: a request during an outage gets 503 quickly instead of hanging.
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy(database_url)
        .context("Failed to parse DATABASE_URL")
}

/// Applies pending migrations. sqlx takes an advisory lock, so processes starting together
/// apply each migration once.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    crate::MIGRATOR.run(pool).await.context("Failed to apply database migrations")
}
