//! The fallback workflow: the next channel carries the same code when the one in use fails
//! for good (a permanent error, an undelivered message, a call not answered) or goes
//! `FALLBACK_AFTER_SECONDS` without approval; never after approval or cancel. The races and
//! edges (sweepers racing, late callbacks, expiry) are in `fallback_edges.rs`.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;
use verify_tests::fake_twilio::CallEnd;
use verify_tests::harness::{Options, TestApp, code_in, spawn_app_with};

pub(crate) const WHATSAPP_FROM: &str = "+15005550006";
const CONTENT_SID: &str = "HX0123456789abcdef0123456789abcdef";

pub(crate) async fn start(app: &TestApp, phone: &str, channels: Value) -> Uuid {
    let response = app
        .post_json(
            "/v1/verifications",
            &json!({"phone_number": phone, "channels": channels}),
        )
        .await;
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["channels"], channels);
    body["id"].as_str().unwrap().parse().unwrap()
}

/// The `(channel, delivery_status)` of every step `GET` shows.
pub(crate) fn steps(view: &Value) -> Vec<(String, String)> {
    view["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["channel"].as_str().unwrap().to_owned(),
                s["delivery_status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(c, s)| ((*c).to_owned(), (*s).to_owned()))
        .collect()
}

/// Polls the verification (bounded) until its steps read `expected`.
pub(crate) async fn wait_for_steps(app: &TestApp, id: Uuid, expected: &[(&str, &str)]) -> Value {
    let expected = pairs(expected);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let view = app.get_verification(id).await;
        if steps(&view) == expected {
            return view;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "steps never became {expected:?}: {view}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls PostgreSQL (bounded) until the verification's fallback time is forgotten: the
/// sweep that would have moved it on has passed it by.
pub(crate) async fn wait_until_fallback_forgotten(app: &TestApp, id: Uuid) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let due: Option<time::OffsetDateTime> =
            sqlx::query_scalar("SELECT fallback_due_at FROM verifications WHERE id = $1")
                .bind(id)
                .fetch_one(&app.pool)
                .await
                .unwrap();
        if due.is_none() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the fallback of {id} was never settled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_undelivered_sms_falls_back_to_a_call_that_says_the_same_code() {
    let app = spawn_app_with(Options::default()).await;
    let phone = "+14155552671";
    app.fake.set_final_status(phone, "undelivered", Some(30003));
    let id = start(&app, phone, json!(["sms", "call"])).await;
    let view = wait_for_steps(&app, id, &[("sms", "undelivered"), ("call", "delivered")]).await;
    assert_eq!(
        view["status"], "pending",
        "a failed step does not fail the verification"
    );
    assert_eq!(view["channel"], "call");
    let (sms, calls) = (app.fake.messages_to(phone), app.fake.calls_to(phone));
    assert_eq!((sms.len(), calls.len()), (1, 1), "one message and one call");
    assert_eq!(view["steps"][0]["provider_sid"], sms[0].sid.as_str());
    assert_eq!(view["steps"][0]["error_code"], 30003);
    assert_eq!(view["steps"][1]["provider_sid"], calls[0].sid.as_str());
    assert_eq!(
        view["provider_message_sid"],
        calls[0].sid.as_str(),
        "the top level is the newest step"
    );
    assert!(view["steps"][1]["started_at"].as_str() >= view["steps"][0]["started_at"].as_str());
    // One code for every step.
    let code = code_in(&sms[0].body).unwrap();
    assert_eq!(code_in(&calls[0].code_text()).unwrap(), code);
    let checked: Value = app.check(phone, &code).await.json().await.unwrap();
    assert_eq!(checked["status"], "approved");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_permanent_error_moves_on_at_once_and_the_last_failure_fails_the_verification() {
    let options = Options::default()
        .env("TWILIO_WHATSAPP_FROM", WHATSAPP_FROM)
        .env("TWILIO_WHATSAPP_CONTENT_SID", CONTENT_SID);
    let app = spawn_app_with(options).await;
    // Not reachable by SMS (21612, refused at once): WhatsApp carries the code.
    let phone = "+15005550002";
    let id = start(&app, phone, json!(["sms", "whatsapp"])).await;
    let view = wait_for_steps(&app, id, &[("sms", "failed"), ("whatsapp", "delivered")]).await;
    assert_eq!(view["steps"][0]["error_code"], 21612);
    assert_eq!(view["steps"][0]["provider_sid"], Value::Null, "Twilio never took it");
    assert_eq!(app.fake.messages_to(&format!("whatsapp:{phone}")).len(), 1);
    assert_eq!(view["status"], "pending");

    // A call that is busy, then an undelivered SMS: nothing is left, the verification fails.
    let phone = "+14155552672";
    app.fake.set_call_outcome(phone, CallEnd::Busy);
    app.fake.set_final_status(phone, "undelivered", Some(30005));
    let id = start(&app, phone, json!(["call", "sms"])).await;
    let view = wait_for_steps(&app, id, &[("call", "undelivered"), ("sms", "undelivered")]).await;
    let view = if view["status"] == "failed" {
        view
    } else {
        app.wait_for_field(id, "status", "failed").await
    };
    assert_eq!(view["delivery_error_code"], 30005);
    assert_eq!(
        (app.fake.calls_to(phone).len(), app.fake.messages_to(phone).len()),
        (1, 1)
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_approval_every_channel_is_tried_in_turn_but_never_after_approval_or_cancel() {
    let options = Options::default()
        .env("TWILIO_WHATSAPP_FROM", WHATSAPP_FROM)
        .env("TWILIO_WHATSAPP_CONTENT_SID", CONTENT_SID)
        .env("FALLBACK_AFTER_SECONDS", "1");
    let app = spawn_app_with(options).await;
    let all = json!(["sms", "whatsapp", "call"]);
    let (unanswered, approved, replaced) = ("+14155552671", "+14155552672", "+14155552673");
    let unanswered_id = start(&app, unanswered, all.clone()).await;
    let approved_id = start(&app, approved, all.clone()).await;
    let replaced_id = start(&app, replaced, all).await;

    // Approved on its first step: the sweep that passes its fallback time leaves it be.
    let code = app.wait_for_code(approved, 1).await;
    let checked: Value = app.check(approved, &code).await.json().await.unwrap();
    assert_eq!(checked["status"], "approved");
    // Superseded on its first step by a start on SMS alone.
    app.wait_for_code(replaced, 1).await;
    let newer = start(&app, replaced, json!(["sms"])).await;

    let view = wait_for_steps(
        &app,
        unanswered_id,
        &[("sms", "delivered"), ("whatsapp", "delivered"), ("call", "delivered")],
    )
    .await;
    assert_eq!(view["status"], "pending");
    let sids: Vec<&str> = view["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["provider_sid"].as_str().unwrap())
        .collect();
    assert!(
        sids[0].starts_with("SM") && sids[1].starts_with("SM") && sids[2].starts_with("CA"),
        "{sids:?}"
    );
    assert_eq!(app.fake.messages_to(&format!("whatsapp:{unanswered}")).len(), 1);
    assert_eq!(app.fake.calls_to(unanswered).len(), 1);

    wait_until_fallback_forgotten(&app, approved_id).await;
    wait_until_fallback_forgotten(&app, replaced_id).await;
    app.wait_for_field(newer, "delivery_status", "delivered").await;
    for (phone, id) in [(approved, approved_id), (replaced, replaced_id)] {
        let view = app.get_verification(id).await;
        assert_eq!(steps(&view).len(), 1, "{phone} stayed on its first step: {view}");
        assert!(app.fake.calls_to(phone).is_empty(), "no call to {phone}");
        assert!(app.fake.messages_to(&format!("whatsapp:{phone}")).is_empty());
    }
    // No code is kept once no step can need it.
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM verifications WHERE sealed_code IS NOT NULL")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(kept, 0);
    app.stop().await;
}
