//! The services' PostgreSQL pool: connections are not pinged before every statement, yet
//! one that died while idle is replaced before anyone uses it.

use std::time::Duration;

use sqlx::{Connection, PgConnection};
use verify_tests::harness::admin_database_url;

#[tokio::test(flavor = "multi_thread")]
async fn a_pooled_connection_that_died_while_idle_is_replaced_before_use() {
    let url = admin_database_url();
    let pool = common::db::pool(&url, 1, false).unwrap();
    let backend = || sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()").fetch_one(&pool);
    let first = backend().await.unwrap();
    // The connection goes back to the pool in a task of its own; it is idle from then on.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while pool.num_idle() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the connection never went back");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let idle_since = tokio::time::Instant::now();

    // The server ends the pooled connection behind the pool's back (as a restart would).
    let mut admin = PgConnection::connect(&url).await.unwrap();
    let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(first)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert!(ended);
    // pg_terminate_backend only signals: wait until the backend is gone.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let alive: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)")
            .bind(first)
            .fetch_one(&mut admin)
            .await
            .unwrap();
        if !alive {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "backend {first} never ended");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Only a connection idle for longer than `PING_IF_IDLE_FOR` (1 s, common/src/db.rs) is
    // pinged before use: a time, not an event, so wait until this one has been idle that long.
    tokio::time::sleep_until(idle_since + Duration::from_millis(1100)).await;

    let second = backend().await.expect("the dead connection is found out and replaced");
    assert_ne!(first, second);
    pool.close().await;
}
