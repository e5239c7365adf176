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

    // The server ends the pooled connection behind the pool's back (as a restart would).
    let mut admin = PgConnection::connect(&url).await.unwrap();
    let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(first)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert!(ended);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let second = backend().await.expect("the dead connection is found out and replaced");
    assert_ne!(first, second);
    pool.close().await;
}
