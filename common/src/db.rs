//! The PostgreSQL pool and migrations.

use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool};

/// A pooled connection idle for longer than this is pinged before it is handed out, so one
/// that died meanwhile (a PostgreSQL restart) is replaced instead of failing a statement.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// A pool whose connections are made on demand, so a process starts (and answers `/readyz`
/// with 503) while the database is away, and recovers when it is back. With `keep_full`
/// (the long-running services), every connection is opened in the background from the
/// start and kept open, so a burst that meets a fresh replica or follows a quiet spell does
/// not wait for connections to be made and catalogs to be read.
///
/// sqlx pings every connection before handing it out by default: a second round trip, and a
/// second wake-up of a PostgreSQL backend, for every statement. Under load a connection is
/// idle for microseconds between statements, so only connections idle for longer than
/// [`PING_IF_IDLE_FOR`] are pinged (BENCHMARKS.md, "A ping before every statement"). A
/// connection that fails a statement is still dropped when it goes back to the pool (sqlx
/// pings it then).
pub fn pool(database_url: &str, max_connections: u32, keep_full: bool) -> anyhow::Result<PgPool> {
    pool_with_events(database_url, max_connections, keep_full, false)
}

/// [`pool`], whose connections write events for the changes they make when `events` is on
/// (the session setting `verify.events` that the event triggers look at; see the migration
/// `…_events.sql`). Every process with `EVENTS_URL` set makes its pool so.
pub fn pool_with_events(
    database_url: &str,
    max_connections: u32,
    keep_full: bool,
    events: bool,
) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = database_url.parse().context("Failed to parse DATABASE_URL")?;
    pool_of(options, max_connections, keep_full, events)
}

/// A kept-full pool ([`pool_with_events`]) for the statements over many rows (a batch of
/// starts, of check reservations): its connections plan every statement at every execution
/// (`plan_cache_mode = force_custom_plan`), so those statements are prepared once per
/// connection and still never run a plan cached while a table was small. Prepared, they save
/// a round trip (the parse and describe that an unprepared statement waits for) and the
/// parsing, about a tenth of a start's time in PostgreSQL (BENCHMARKS.md).
pub fn custom_plan_pool(database_url: &str, max_connections: u32, events: bool) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = database_url.parse().context("Failed to parse DATABASE_URL")?;
    pool_of(
        options.options([(PLAN_CACHE_MODE, "force_custom_plan")]),
        max_connections,
        true,
        events,
    )
}

/// The session setting that [`custom_plan_pool`] sets.
const PLAN_CACHE_MODE: &str = "plan_cache_mode";

/// A service's pools within its `total` connections (`DATABASE_MAX_CONNECTIONS`): `custom` of
/// them in a [`custom_plan_pool`] for its batch statements, the rest (at least one) in a
/// kept-full [`pool_with_events`] for everything else. Returns (everything else, batches).
pub fn split_pools(database_url: &str, total: u32, custom: u32, events: bool) -> anyhow::Result<(PgPool, PgPool)> {
    let pool = pool_with_events(database_url, total.saturating_sub(custom).max(1), true, events)?;
    Ok((pool, custom_plan_pool(database_url, custom, events)?))
}

fn pool_of(
    mut options: PgConnectOptions,
    max_connections: u32,
    keep_full: bool,
    events: bool,
) -> anyhow::Result<PgPool> {
    if events {
        options = options.options([(EVENTS_SETTING, "on")]);
    }
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > PING_IF_IDLE_FOR {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .min_connections(if keep_full { max_connections } else { 0 })
        // Bounded wait: a request during an outage gets 503 quickly instead of hanging.
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy_with(options))
}

/// The session setting that turns the event triggers on.
pub const EVENTS_SETTING: &str = "verify.events";

/// Opens the connections a pool keeps (its minimum) before the service takes work, so that
/// the first requests of a burst do not each wait for a connection to be set up. They are
/// held together, so each one is a new connection, then go back to the pool idle. Bounded by
/// `within`: a server that allows fewer connections only delays the start by that much.
pub async fn warm(pool: &PgPool, within: Duration) {
    let wanted = pool.options().get_min_connections();
    let mut opening = tokio::task::JoinSet::new();
    for _ in 0..wanted {
        let pool = pool.clone();
        opening.spawn(async move { pool.acquire().await });
    }
    let all_open = async {
        let mut held = Vec::with_capacity(wanted as usize);
        while let Some(opened) = opening.join_next().await {
            held.extend(opened.ok().and_then(Result::ok));
        }
        held
    };
    if tokio::time::timeout(within, all_open).await.is_err() {
        tracing::warn!(
            wanted,
            open = pool.size(),
            "the connection pool did not fill in time; going on"
        );
    }
}

/// Applies pending migrations. sqlx takes an advisory lock, so processes starting together
/// apply each migration once.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    crate::MIGRATOR
        .run(pool)
        .await
        .context("Failed to apply database migrations")
}

/// Applies migrations, waiting for the database if it is not up yet (a process may start
/// before its database). Gives up only when `shutdown` fires.
pub async fn migrate_when_ready(pool: &PgPool, shutdown: &tokio_util::sync::CancellationToken) -> anyhow::Result<()> {
    let mut delays = crate::reconnect::Delays::default();
    loop {
        match migrate(pool).await {
            Ok(()) => return Ok(()),
            Err(e) => tracing::warn!(error = format!("{e:#}"), "database not ready; retrying"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => anyhow::bail!("stopped before the database was ready"),
            _ = tokio::time::sleep(delays.next_delay()) => {},
        }
    }
}

/// Whether a database error means the database cannot be reached or cannot serve (an outage:
/// refused or broken connections, a server shutting down, starting or out of connections, no
/// connection free within the pool's wait) rather than a bug in a statement.
pub fn is_outage(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db
            .code()
            // Server shutting down, connection failures, authentication, and the server out of
            // resources (53: too many connections, memory, disk): none is the statement's fault.
            .is_some_and(|c| ["57", "08", "3D", "28", "53"].iter().any(|class| c.starts_with(class))),
        _ => false,
    }
}

/// A database outage met by another task (a batch statement shared by several requests),
/// passed on as text: [`caused_by_outage`] recognises it like the `sqlx::Error` it came from.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the database is unreachable: {0}")]
pub struct Unreachable(pub String);

/// Whether a transaction was aborted by PostgreSQL to break a deadlock (or a serialization
/// failure): nothing of it was done, and running it again is safe.
pub fn is_deadlock(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40P01" | "40001")))
}

/// [`is_outage`] for an error chain: whether a database outage is among its causes.
pub fn caused_by_outage(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|cause| cause.downcast_ref::<sqlx::Error>().is_some_and(is_outage) || cause.is::<Unreachable>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_recognised_through_contexts_and_when_passed_on_as_text() {
        let refused = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(caused_by_outage(&anyhow::Error::new(refused).context("claiming")));
        let passed_on = anyhow::Error::new(Unreachable("connection refused".into())).context("recording");
        assert!(caused_by_outage(&passed_on));
        assert!(!caused_by_outage(
            &anyhow::Error::new(sqlx::Error::RowNotFound).context("reading")
        ));
        assert!(!caused_by_outage(&anyhow::anyhow!("the broker closed the channel")));
    }
}
