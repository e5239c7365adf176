//! A worker's claims: taken in batches exactly as one by one, and a lease renewed only by
//! the holder it still belongs to.

use common::repo::{self, Claim, ClaimAsk, ClaimTerms};
use uuid::Uuid;
use verify_tests::harness::{Options, spawn_app_with};

use super::safety::{OTHER_PHONE, PHONE, lease, stored_verification};

fn terms() -> ClaimTerms {
    ClaimTerms {
        lease_seconds: 30.0,
        worker_id: "w".into(),
        min_lifetime_seconds: 60.0,
    }
}

fn ask(id: Uuid, holder: &str) -> ClaimAsk {
    ClaimAsk {
        id,
        holder: holder.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_claims_each_send_as_a_single_claim_would_in_the_order_asked() {
    let app = spawn_app_with(Options::default().without_worker()).await;
    let (free, _) = stored_verification(&app, PHONE).await;
    let (held, _) = stored_verification(&app, OTHER_PHONE).await;
    let (earlier, _) = stored_verification(&app, "+14155552673").await;
    repo::claim_send(&app.pool, held, lease("other", 30.0)).await.unwrap();
    // A call of `earlier` was in flight when its worker died (its lease has run out).
    repo::claim_send(&app.pool, earlier, lease("dead", 0.0)).await.unwrap();
    repo::begin_attempt(&app.pool, earlier, 1, lease("dead", 0.0), "dead")
        .await
        .unwrap()
        .expect("the dead worker's call begun");
    let unknown = Uuid::new_v4();
    // `free` twice, as two copies of its job would ask: the first asked takes it.
    let asks = [
        ask(unknown, "a"),
        ask(free, "a"),
        ask(held, "b"),
        ask(earlier, "c"),
        ask(free, "d"),
    ];
    let claims = repo::claim_sends_and_begin(&app.pool, &asks, &terms()).await.unwrap();
    assert_eq!(claims.len(), asks.len());
    assert!(matches!(claims[0], Claim::Skip(None)), "{:?}", claims[0]);
    let Claim::Claimed {
        attempt_row: Some(row),
        send_attempts: 1,
        needs_lookup: false,
        ref phone_number,
        ..
    } = claims[1]
    else {
        panic!("the free send claimed and its call begun: {:?}", claims[1]);
    };
    assert_eq!(phone_number, PHONE);
    assert!(matches!(claims[2], Claim::Busy), "{:?}", claims[2]);
    assert!(
        matches!(
            claims[3],
            Claim::Claimed {
                needs_lookup: true,
                attempt_row: None,
                ..
            }
        ),
        "a call to look up first begins nothing: {:?}",
        claims[3]
    );
    assert!(matches!(claims[4], Claim::Busy), "{:?}", claims[4]);
    let attempts = repo::attempts(&app.pool, free).await.unwrap();
    assert_eq!(
        attempts,
        [(1, "in_flight".to_owned(), None)],
        "one call begun for two asks"
    );
    let begun: Uuid = sqlx::query_scalar("SELECT verification_id FROM send_attempts WHERE id = $1")
        .bind(row)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(begun, free);
    // The batch's leases are held: nobody else takes those sends now.
    for id in [free, earlier] {
        assert!(matches!(
            repo::claim_send(&app.pool, id, lease("e", 30.0)).await.unwrap(),
            Claim::Busy
        ));
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_that_waited_for_a_slot_renews_the_lease_only_while_it_holds_it() {
    let app = spawn_app_with(Options::default().without_worker()).await;
    // Worker a's lease ran out while its job waited for a slot, and nobody took the send:
    // renewed, it keeps the others out again.
    let (id, _) = stored_verification(&app, PHONE).await;
    repo::claim_send(&app.pool, id, lease("a", 0.0)).await.unwrap();
    assert!(repo::renew_lease(&app.pool, id, lease("a", 30.0)).await.unwrap());
    assert!(matches!(
        repo::claim_send(&app.pool, id, lease("b", 30.0)).await.unwrap(),
        Claim::Busy
    ));
    // Worker b took this one over meanwhile: a's renewal fails (and a does not call).
    let (other, _) = stored_verification(&app, OTHER_PHONE).await;
    repo::claim_send(&app.pool, other, lease("a", 0.0)).await.unwrap();
    assert!(matches!(
        repo::claim_send(&app.pool, other, lease("b", 30.0)).await.unwrap(),
        Claim::Claimed { .. }
    ));
    assert!(!repo::renew_lease(&app.pool, other, lease("a", 30.0)).await.unwrap());
    assert!(matches!(
        repo::claim_send(&app.pool, other, lease("c", 30.0)).await.unwrap(),
        Claim::Busy
    ));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_of_claims_aborted_by_a_deadlock_runs_again() {
    let app = spawn_app_with(Options::default().without_worker()).await;
    let (x, _) = stored_verification(&app, PHONE).await;
    let (y, _) = stored_verification(&app, OTHER_PHONE).await;
    // The batch takes its rows in the order of their ids.
    let (first, second) = if x < y { (x, y) } else { (y, x) };
    let lock = "SELECT 1 FROM verifications WHERE id = $1 FOR UPDATE";
    // Another transaction holds the row the batch takes second…
    let mut other = app.pool.begin().await.unwrap();
    sqlx::query(lock).bind(second).execute(&mut *other).await.unwrap();
    let pool = app.pool.clone();
    let batch = tokio::spawn(async move {
        let asks = [ask(second, "a"), ask(first, "a")];
        repo::claim_sends_and_begin(&pool, &asks, &terms()).await
    });
    // …until the batch, holding the first, waits for it…
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                   AND wait_event_type = 'Lock' AND query LIKE '%claim_sends%'";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let n: i64 = sqlx::query_scalar(waiting).fetch_one(&app.pool).await.unwrap();
        if n == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the batch never waited for the row"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // …and then wants the first: a deadlock. PostgreSQL aborts the side that has waited
    // longest, the batch, so this lock is granted.
    sqlx::query(lock)
        .bind(first)
        .execute(&mut *other)
        .await
        .expect("the batch was the side aborted");
    other.commit().await.unwrap();
    let claims = batch.await.unwrap().expect("the aborted batch ran again");
    assert!(
        claims.iter().all(|c| matches!(
            c,
            Claim::Claimed {
                attempt_row: Some(_),
                ..
            }
        )),
        "both sends claimed by the second run: {claims:?}"
    );
    app.stop().await;
}
