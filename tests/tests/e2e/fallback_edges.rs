//! The fallback's races and edges: sweepers racing over the same due steps take each once; a
//! late callback updates the step it belongs to; an expired or exhausted verification never
//! moves on.

use std::time::Duration;

use serde_json::json;
use verify_tests::harness::{Options, spawn_app_with};

use crate::fallback::{WHATSAPP_FROM, start, wait_for_steps, wait_until_fallback_forgotten};

#[tokio::test(flavor = "multi_thread")]
async fn sweepers_racing_over_the_same_due_steps_take_each_step_once() {
    let options = Options::default()
        .without_worker()
        .env("TWILIO_WHATSAPP_FROM", WHATSAPP_FROM);
    let app = spawn_app_with(options).await;
    let phones: Vec<String> = (0..200).map(|i| format!("+1415555{:04}", 3000 + i)).collect();
    let mut ids = Vec::new();
    for phone in &phones {
        ids.push(start(&app, phone, json!(["sms", "whatsapp", "call"])).await);
    }
    // Every first step failed for good (as a worker records it). Four sweepers race over
    // them, and the API's own: a step taken twice would put a verification on its third
    // channel (the second step is not due until the code expires).
    sqlx::query("UPDATE verifications SET delivery_status = 'failed', fallback_due_at = now() WHERE id = ANY($1)")
        .bind(&ids)
        .execute(&app.pool)
        .await
        .unwrap();
    let sweeps = (0..4).map(|_| {
        let pool = app.pool.clone();
        tokio::spawn(async move {
            let mut moved = 0;
            loop {
                let next = common::repo::advance_due_steps(&pool, 37, 60).await.unwrap();
                if next.is_empty() {
                    return moved;
                }
                moved += next.len();
            }
        })
    });
    let moved: usize = futures_util::future::join_all(sweeps)
        .await
        .into_iter()
        .map(Result::unwrap)
        .sum();
    assert!(moved <= ids.len());
    let (second, ended, failed_first): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM verifications WHERE id = ANY($1) AND step = 1 AND delivery_status = 'queued'), \
                (SELECT count(*) FROM verification_steps WHERE verification_id = ANY($1)), \
                (SELECT count(*) FROM verification_steps WHERE verification_id = ANY($1) AND step = 0 \
                   AND channel = 'sms' AND delivery_status = 'failed')",
    )
    .bind(&ids)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!((second, ended, failed_first), (200, 200, 200));
    // Nothing is due any more: a further sweep moves nothing.
    assert!(
        common::repo::advance_due_steps(&app.pool, 500, 60)
            .await
            .unwrap()
            .is_empty()
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_late_callback_updates_the_step_it_belongs_to() {
    let mut options = Options::default().env("FALLBACK_AFTER_SECONDS", "1");
    // Twilio's callbacks come after the step has ended (the fallback time is shorter).
    options.fake.callback_delay = Duration::from_secs(3);
    let app = spawn_app_with(options).await;
    let phone = "+14155552671";
    let id = start(&app, phone, json!(["sms", "call"])).await;
    // The SMS's callbacks find its step by sid; the call's, the row.
    let view = wait_for_steps(&app, id, &[("sms", "delivered"), ("call", "delivered")]).await;
    let sms_sid = app.fake.messages_to(phone)[0].sid.clone();
    assert_eq!(view["steps"][0]["provider_sid"], sms_sid.as_str());
    assert_eq!(view["delivery_status"], "delivered");
    // And they did come after the SMS step had ended.
    let late: bool = sqlx::query_scalar(
        "SELECT bool_and(e.received_at > s.ended_at) FROM delivery_events e \
         JOIN verification_steps s ON s.provider_sid = e.message_sid WHERE e.message_sid = $1",
    )
    .bind(&sms_sid)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(late, "the SMS's callbacks arrived after its step ended");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_or_exhausted_verification_never_moves_on() {
    let app = spawn_app_with(Options::default().without_worker()).await;
    let expired = start(&app, "+14155552671", json!(["sms", "call"])).await;
    let exhausted = start(&app, "+14155552672", json!(["sms", "call"])).await;
    // Both first steps failed for good; one code expired, the other ran out of checks.
    sqlx::query(
        "UPDATE verifications SET delivery_status = 'failed', fallback_due_at = now(), \
           expires_at = CASE WHEN id = $1 THEN now() - interval '1 second' ELSE expires_at END, \
           status = CASE WHEN id = $2 THEN 'max_attempts_reached' ELSE status END \
         WHERE id IN ($1, $2)",
    )
    .bind(expired)
    .bind(exhausted)
    .execute(&app.pool)
    .await
    .unwrap();
    assert!(
        common::repo::advance_due_steps(&app.pool, 500, 60)
            .await
            .unwrap()
            .is_empty()
    );
    for id in [expired, exhausted] {
        wait_until_fallback_forgotten(&app, id).await;
        let (step, kept): (i32, bool) =
            sqlx::query_as("SELECT step, sealed_code IS NOT NULL FROM verifications WHERE id = $1")
                .bind(id)
                .fetch_one(&app.pool)
                .await
                .unwrap();
        assert_eq!(
            (step, kept),
            (0, false),
            "{id} stayed on its first step, its code dropped"
        );
    }
    app.stop().await;
}
