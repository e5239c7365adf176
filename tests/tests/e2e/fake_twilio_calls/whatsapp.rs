//! WhatsApp through the Messages API: templates, the 24-hour window (63016), channel
//! mismatches (30016), numbers not on WhatsApp (63003, 63024); SMS unchanged beside them.

use serde_json::Value;
use verify_tests::fake_twilio::WhatsAppFreeForm;
use verify_tests::harness::code_in;

use super::receiver::Hit;
use super::{Env, env};

const CONTENT_SID: &str = "HX0123456789abcdef0123456789abcdef";
const FROM: &str = "whatsapp:+15005550006";

fn statuses(hits: &[Hit]) -> Vec<(&str, Option<&str>)> {
    hits.iter()
        .map(|h| (h.get("MessageStatus").unwrap(), h.get("ErrorCode")))
        .collect()
}

/// Sends to `to` (a template with `code` when given, else a free-form body) with callbacks
/// to `path`; returns the status and the resource.
async fn send(env: &Env, to: &str, code: Option<&str>, path: &str) -> (u16, Value) {
    let callback = format!("{}{path}", env.rx.base);
    let variables = code.map(|c| serde_json::json!({"1": c}).to_string());
    let mut form = vec![("To", to), ("From", FROM), ("StatusCallback", callback.as_str())];
    match &variables {
        Some(v) => form.extend([("ContentSid", CONTENT_SID), ("ContentVariables", v.as_str())]),
        None => form.push(("Body", "Your verification code is 123456")),
    }
    env.post("Messages.json", &form).await
}

#[tokio::test]
async fn templates_render_the_code_and_are_delivered_then_read() {
    let env = env().await;
    let to = "whatsapp:+14155550120";
    let (status, message) = send(&env, to, Some("123456"), "/wa").await;
    assert_eq!(status, 201, "{message}");
    let body = "123456 is your verification code. For your security, do not share this code.";
    assert_eq!(message["body"], body);
    assert_eq!(
        (message["to"].as_str(), message["from"].as_str()),
        (Some(to), Some(FROM))
    );
    assert_eq!(message["status"], "queued");
    assert!(message["sid"].as_str().unwrap().starts_with("SM"));

    let hits = env.rx.wait_for("/wa", 3).await;
    assert_eq!(statuses(&hits), [("sent", None), ("delivered", None), ("read", None)]);
    for hit in &hits {
        assert!(hit.signed_with(&env.fake.config().auth_token), "{hit:?}");
        assert_eq!((hit.get("To"), hit.get("From")), (Some(to), Some(FROM)));
        assert_eq!(hit.get("ChannelPrefix"), Some("whatsapp"));
    }
    let sid = message["sid"].as_str().unwrap();
    let (_, fetched) = env.get(&format!("Messages/{sid}.json")).await;
    assert_eq!(fetched["status"], "read");
    let sent = &env.fake.messages_to(to)[0];
    assert_eq!(
        (sent.channel.as_str(), sent.content_sid.as_deref()),
        ("whatsapp", Some(CONTENT_SID))
    );
    assert_eq!(code_in(&sent.body).as_deref(), Some("123456"));

    // The inbox shows the channel and finds the number with or without its prefix.
    let url = format!("{}/inbox?to=%2B14155550120", env.fake.base_url);
    let inbox: Value = env.http.get(url).send().await.unwrap().json().await.unwrap();
    let shown = &inbox["messages"][0];
    assert_eq!(
        (shown["kind"].as_str(), shown["channel"].as_str()),
        (Some("message"), Some("whatsapp"))
    );
    assert_eq!(shown["body"], body);

    let bad = [
        ("To", to),
        ("From", FROM),
        ("ContentSid", CONTENT_SID),
        ("ContentVariables", "{1: 2"),
    ];
    assert_eq!(env.post("Messages.json", &bad).await.1["code"], 21656);
    let bad = [
        ("To", to),
        ("From", FROM),
        ("ContentSid", "HXnope"),
        ("ContentVariables", "{}"),
    ];
    assert_eq!(env.post("Messages.json", &bad).await.1["code"], 21655);
}

#[tokio::test]
async fn a_free_form_body_fails_with_63016_unless_the_window_is_open() {
    let env = env().await;
    let to = "whatsapp:+14155550121";
    let (status, message) = send(&env, to, None, "/closed").await;
    assert_eq!(
        (status, message["status"].as_str()),
        (201, Some("queued")),
        "accepted first"
    );
    let hits = env.rx.wait_for("/closed", 1).await;
    assert_eq!(statuses(&hits), [("failed", Some("63016"))]);
    let (_, fetched) = env
        .get(&format!("Messages/{}.json", message["sid"].as_str().unwrap()))
        .await;
    assert_eq!(
        (fetched["status"].as_str(), fetched["error_code"].as_i64()),
        (Some("failed"), Some(63016))
    );
    assert!(fetched["error_message"].as_str().unwrap().contains("Template"));

    env.fake.set_whatsapp_free_form(WhatsAppFreeForm::InsideWindow);
    send(&env, to, None, "/open").await;
    let hits = env.rx.wait_for("/open", 3).await;
    assert_eq!(statuses(&hits), [("sent", None), ("delivered", None), ("read", None)]);

    let control = serde_json::json!({"whatsapp_free_form": "outside_window"});
    let r = env
        .http
        .post(format!("{}/_fake/faults", env.fake.base_url))
        .json(&control);
    assert_eq!(r.send().await.unwrap().status(), 204);
    send(&env, to, None, "/closed-again").await;
    assert_eq!(
        statuses(&env.rx.wait_for("/closed-again", 1).await),
        [("failed", Some("63016"))]
    );
}

#[tokio::test]
async fn mixed_channels_get_30016_and_numbers_not_on_whatsapp_fail_after_acceptance() {
    let env = env().await;
    for (to, from) in [("whatsapp:+14155550122", "+15005550006"), ("+14155550122", FROM)] {
        let (status, error) = env
            .post("Messages.json", &[("To", to), ("From", from), ("Body", "x")])
            .await;
        assert_eq!((status, error["code"].as_i64()), (400, Some(30016)), "{to} from {from}");
        assert_eq!(error["more_info"], "https://www.twilio.com/docs/errors/30016");
    }
    assert!(env.fake.messages().is_empty());

    let (status, _) = send(&env, "whatsapp:+15005550030", Some("111111"), "/magic").await;
    assert_eq!(status, 201);
    assert_eq!(
        statuses(&env.rx.wait_for("/magic", 1).await),
        [("failed", Some("63003"))]
    );

    env.fake.set_not_on_whatsapp("+14155550123", 63024);
    send(&env, "whatsapp:+14155550123", Some("222222"), "/gone").await;
    assert_eq!(
        statuses(&env.rx.wait_for("/gone", 1).await),
        [("failed", Some("63024"))]
    );

    // The same number still gets SMS, in the shape scripts and tests read.
    let callback = format!("{}/sms", env.rx.base);
    let form = [
        ("To", "+14155550123"),
        ("From", "+15005550006"),
        ("Body", "Your code is 333333"),
        ("StatusCallback", callback.as_str()),
    ];
    assert_eq!(env.post("Messages.json", &form).await.0, 201);
    assert_eq!(
        statuses(&env.rx.wait_for("/sms", 2).await),
        [("sent", None), ("delivered", None)]
    );
    let url = format!("{}/inbox?to=%2B14155550123", env.fake.base_url);
    let inbox: Value = env.http.get(url).send().await.unwrap().json().await.unwrap();
    let sms = &inbox["messages"][0];
    for key in [
        "sid",
        "to",
        "from",
        "messaging_service_sid",
        "body",
        "status_callback",
        "validity_period",
    ] {
        assert!(sms.get(key).is_some(), "{key} missing from {sms}");
    }
    assert_eq!(
        (sms["channel"].as_str(), sms["body"].as_str()),
        (Some("sms"), Some("Your code is 333333"))
    );
    assert_eq!(inbox["messages"].as_array().unwrap().len(), 2, "the WhatsApp one too");
}
