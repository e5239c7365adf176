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

#[tokio::test(flavor = "multi_thread")]
async fn every_connection_runs_the_batch_statements_once_before_work_and_nothing_is_stored() {
    let (app, database_url) = app_without_worker().await;
    let name = format!("warm-{}", uuid::Uuid::new_v4().simple());
    let url = |pool: &str| format!("{database_url}?application_name={name}-{pool}");
    let pool = common::db::pool(&url("main"), 4, true).unwrap();
    let batch_pool = common::db::custom_plan_pool(&url("batch"), 2, false).unwrap();
    common::db::warm(&pool, Duration::from_secs(5)).await;
    verify_api::warm_batch_statements(&pool, &batch_pool, Duration::from_secs(5)).await;

    // Each connection ran its statements: the outbox delete, the last of the batch pool's, on
    // the two batch connections; the key statement on the four others.
    let last = |pool: &'static str| {
        sqlx::query_scalar::<_, String>("SELECT query FROM pg_stat_activity WHERE application_name = $1")
            .bind(format!("{name}-{pool}"))
            .fetch_all(&app.pool)
    };
    let (batch, main) = (last("batch").await.unwrap(), last("main").await.unwrap());
    assert_eq!(batch.len(), 2, "{batch:#?}");
    assert!(batch.iter().all(|q| q.starts_with("DELETE FROM outbox")), "{batch:#?}");
    assert_eq!(main.len(), 4, "{main:#?}");
    assert!(
        main.iter().all(|q| q.starts_with("INSERT INTO idempotency_keys")),
        "{main:#?}"
    );
    // Empty batches store, count and take nothing.
    let stored: Vec<i64> = sqlx::query_scalar(
        "SELECT unnest(ARRAY[(SELECT count(*) FROM verifications), (SELECT count(*) FROM outbox), \
           (SELECT count(*) FROM idempotency_keys), (SELECT count(*) FROM events)])",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(stored, [0, 0, 0, 0], "verifications, outbox, keys, events");
    pool.close().await;
    batch_pool.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_batch_statements_are_prepared_once_and_planned_at_every_execution() {
    let (app, database_url) = app_without_worker().await;
    let batch_pool = common::db::custom_plan_pool(&database_url, 1, false).unwrap();
    let mut conn = batch_pool.acquire().await.unwrap();
    // More runs than the five after which PostgreSQL may switch a prepared statement to a
    // cached generic plan.
    for _ in 0..8 {
        common::repo::insert_batch_with_outbox(&mut *conn, &[], 0)
            .await
            .unwrap();
        common::repo::reserve_checks(&mut *conn, &[]).await.unwrap();
    }
    let plans: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements \
         WHERE statement LIKE '%unnest%' AND statement NOT LIKE '%pg_prepared_statements%'",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    assert_eq!(
        plans.len(),
        2,
        "both statements are prepared on the connection: {plans:?}"
    );
    for (statement, generic, custom) in &plans {
        assert_eq!(*generic, 0, "never a cached generic plan: {statement}");
        assert!(*custom >= 8, "planned at every execution ({custom}): {statement}");
    }
    drop(conn);
    batch_pool.close().await;
    app.stop().await;
}

/// A test app without a worker, and the URL of its database.
async fn app_without_worker() -> (verify_tests::harness::TestApp, String) {
    let app = verify_tests::harness::spawn_app_with(verify_tests::harness::Options::default().without_worker()).await;
    let admin = admin_database_url();
    let (server, _) = admin.rsplit_once('/').unwrap();
    let url = format!("{server}/{}", app.database_name);
    (app, url)
}
