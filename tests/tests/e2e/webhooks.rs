//! Twilio's status callbacks: signatures, ordering, repeats.

use verify_tests::harness::{TestApp, spawn_app};

fn params(sid: &str, status: &str, error_code: Option<i32>) -> Vec<(String, String)> {
    let mut p = vec![
        ("AccountSid".to_owned(), "AC00000000000000000000000000000001".to_owned()),
        ("MessageSid".to_owned(), sid.to_owned()),
        ("SmsSid".to_owned(), sid.to_owned()),
        ("MessageStatus".to_owned(), status.to_owned()),
        ("SmsStatus".to_owned(), status.to_owned()),
        ("To".to_owned(), "+14155552671".to_owned()),
    ];
    if let Some(code) = error_code {
        p.push(("ErrorCode".to_owned(), code.to_string()));
    }
    p
}

async fn post_callback(app: &TestApp, params: &[(String, String)], signature: Option<&str>) -> u16 {
    let url = format!("{}/v1/webhooks/twilio/status", app.api_base);
    let mut request = app.http.post(&url).form(params);
    if let Some(sig) = signature {
        request = request.header("X-Twilio-Signature", sig);
    }
    request.send().await.unwrap().status().as_u16()
}

async fn signed_callback(app: &TestApp, sid: &str, status: &str, error_code: Option<i32>) -> u16 {
    let url = format!("{}/v1/webhooks/twilio/status", app.api_base);
    let p = params(sid, status, error_code);
    let signature = common::signature::sign(&app.fake.config().auth_token, &url, &p);
    post_callback(app, &p, Some(&signature)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn callbacks_with_a_missing_or_wrong_signature_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let id = app.start_ok("+14155552671").await;
    let view = app.wait_for_field(id, "delivery_status", "delivered").await;
    let sid = view["provider_message_sid"].as_str().unwrap().to_owned();

    let p = params(&sid, "failed", Some(30008));
    assert_eq!(post_callback(&app, &p, None).await, 403);
    assert_eq!(post_callback(&app, &p, Some("bm90IHRoZSByaWdodCBvbmU=")).await, 403);
    let url = format!("{}/v1/webhooks/twilio/status", app.api_base);
    let signed_with_wrong_token = common::signature::sign("another-token", &url, &p);
    assert_eq!(post_callback(&app, &p, Some(&signed_with_wrong_token)).await, 403);
    // Signed for other parameters than those sent.
    let other = common::signature::sign(&app.fake.config().auth_token, &url, &params(&sid, "sent", None));
    assert_eq!(post_callback(&app, &p, Some(&other)).await, 403);

    let after = app.get_verification(id).await;
    assert_eq!(after["delivery_status"], "delivered");
    assert_eq!(after["delivery_error_code"], serde_json::Value::Null);
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM delivery_events WHERE message_status = 'failed'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(events, 0, "a refused callback is not recorded");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn callbacks_out_of_order_or_repeated_keep_the_final_status() {
    let app = spawn_app().await;
    let id = app.start_ok("+14155552671").await;
    let view = app.wait_for_field(id, "delivery_status", "delivered").await;
    let sid = view["provider_message_sid"].as_str().unwrap().to_owned();

    assert_eq!(signed_callback(&app, &sid, "sent", None).await, 204);
    assert_eq!(signed_callback(&app, &sid, "failed", Some(30008)).await, 204);
    assert_eq!(signed_callback(&app, &sid, "delivered", None).await, 204);
    let after = app.get_verification(id).await;
    assert_eq!(after["delivery_status"], "delivered");
    assert_eq!(
        after["status"], "pending",
        "a late failure does not fail a delivered verification"
    );
    assert_eq!(after["delivery_error_code"], serde_json::Value::Null);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_callback_for_an_unknown_message_is_accepted_and_ignored() {
    let app = spawn_app().await;
    assert_eq!(
        signed_callback(&app, "SM0123456789abcdef0123456789abcdef", "delivered", None).await,
        204
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_callback_that_arrives_before_the_sid_is_recorded_is_applied_later() {
    let app = spawn_app().await;
    // A verification the worker has claimed but whose 201 it has not recorded yet.
    let id = uuid::Uuid::new_v4();
    common::repo::insert(
        &app.pool,
        &common::repo::NewVerification {
            id,
            phone_number: "+14155552679",
            code_hmac: &[0; 32],
            max_check_attempts: 5,
            ttl_seconds: 600,
            request_id: None,
        },
    )
    .await
    .unwrap();
    common::repo::claim_send(
        &app.pool,
        id,
        common::repo::Lease {
            holder: "test",
            seconds: 30.0,
        },
    )
    .await
    .unwrap();
    let sid = "SMabcdef0123456789abcdef0123456789";
    assert_eq!(signed_callback(&app, sid, "delivered", None).await, 204);
    assert_eq!(app.get_verification(id).await["delivery_status"], "sending");

    common::repo::mark_submitted(&app.pool, id, sid).await.unwrap();
    assert_eq!(app.get_verification(id).await["delivery_status"], "delivered");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_that_is_not_a_form_is_refused() {
    let app = spawn_app().await;
    let response = app
        .http
        .post(format!("{}/v1/webhooks/twilio/status", app.api_base))
        .json(&serde_json::json!({"MessageSid": "SM1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    app.stop().await;
}
