//! Call status callbacks (order, parameters, signatures), outcomes, and the spoken text.

use serde_json::Value;
use verify_tests::fake_twilio::{CallEnd, Segment};
use verify_tests::harness::code_in;

use super::receiver::Hit;
use super::{env, rfc2822};

const ALL_EVENTS: [(&str, &str); 4] = [
    ("StatusCallbackEvent", "initiated"),
    ("StatusCallbackEvent", "ringing"),
    ("StatusCallbackEvent", "answered"),
    ("StatusCallbackEvent", "completed"),
];

fn statuses(hits: &[Hit]) -> Vec<&str> {
    hits.iter().map(|h| h.get("CallStatus").unwrap()).collect()
}

#[tokio::test]
async fn callbacks_come_in_twilios_order_signed_over_every_parameter() {
    let env = env().await;
    let url = format!("{}/status?leg=1", env.rx.base);
    let mut form = vec![("StatusCallback", url.as_str())];
    form.extend(ALL_EVENTS);
    let sid = env.call("+14155550110", &form).await;
    let hits = env.rx.wait_for("/status", 4).await;
    assert_eq!(statuses(&hits), ["initiated", "ringing", "in-progress", "completed"]);
    let token = &env.fake.config().auth_token;
    let mut last = None;
    for (n, hit) in hits.iter().enumerate() {
        assert_eq!(hit.method, "POST");
        assert!(hit.signed_with(token), "signature of {hit:?}");
        assert!(!hit.signed_with("another-token"));
        assert_eq!(hit.get("SequenceNumber"), Some(n.to_string().as_str()));
        assert_eq!(hit.get("CallbackSource"), Some("call-progress-events"));
        assert_eq!(hit.get("CallSid"), Some(sid.as_str()));
        assert_eq!(hit.get("AccountSid"), Some(env.fake.config().account_sid.as_str()));
        assert_eq!(
            (hit.get("To"), hit.get("Called")),
            (Some("+14155550110"), Some("+14155550110"))
        );
        assert_eq!(
            (hit.get("From"), hit.get("Caller")),
            (Some("+15005550006"), Some("+15005550006"))
        );
        assert_eq!(
            (hit.get("Direction"), hit.get("ApiVersion")),
            (Some("outbound-api"), Some("2010-04-01"))
        );
        let at = rfc2822(&Value::from(hit.get("Timestamp").unwrap()));
        assert!(last.is_none_or(|l| l <= at), "timestamps in order");
        last = Some(at);
        let terminal = n == 3;
        for key in ["CallDuration", "SipResponseCode", "Duration"] {
            assert_eq!(hit.get(key).is_some(), terminal, "{key} in callback {n}");
        }
    }
    assert_eq!(hits[3].get("SipResponseCode"), Some("200"));
    assert!(hits[3].get("CallDuration").unwrap().parse::<u32>().unwrap() >= 1);
    assert_eq!(hits[3].get("Duration"), Some("1"), "billed minutes");

    let call = env.finished(&sid).await;
    let recorded: Vec<_> = call
        .callbacks_sent
        .iter()
        .map(|c| (c.sequence_number, c.http_status))
        .collect();
    assert_eq!(
        recorded,
        [(0, Some(204)), (1, Some(204)), (2, Some(204)), (3, Some(204))]
    );
    assert_eq!(env.fake.callbacks_sent(), 4);
}

#[tokio::test]
async fn without_events_only_completed_is_posted_and_get_callbacks_sign_the_query() {
    let env = env().await;
    let url = format!("{}/plain", env.rx.base);
    env.call("+14155550111", &[("StatusCallback", &url)]).await;
    let hits = env.rx.wait_for("/plain", 1).await;
    assert_eq!(statuses(&hits), ["completed"]);
    assert_eq!(hits[0].get("SequenceNumber"), Some("0"));

    let url = format!("{}/get", env.rx.base);
    let form = [
        ("StatusCallback", url.as_str()),
        ("StatusCallbackMethod", "GET"),
        ("StatusCallbackEvent", "initiated"),
        ("StatusCallbackEvent", "completed"),
    ];
    env.call("+14155550112", &form).await;
    let hits = env.rx.wait_for("/get", 2).await;
    for hit in &hits {
        assert_eq!(hit.method, "GET");
        assert!(
            hit.params.is_empty() && hit.signed_with(&env.fake.config().auth_token),
            "{hit:?}"
        );
    }
    let query: Vec<String> = hits.iter().map(|h| h.url.clone()).collect();
    assert!(query[0].contains("CallStatus=initiated") && query[0].contains("SequenceNumber=0"));
    assert!(query[1].contains("CallStatus=completed") && query[1].contains("SequenceNumber=1"));
}

#[tokio::test]
async fn busy_no_answer_and_failed_calls_end_with_their_callbacks() {
    let env = env().await;
    env.fake.set_call_outcome("+14155550113", CallEnd::Busy);
    let control = serde_json::json!({"call_outcomes": {"+14155550114": "failed"}});
    let r = env
        .http
        .post(format!("{}/_fake/faults", env.fake.base_url))
        .json(&control);
    assert_eq!(r.send().await.unwrap().status(), 204);
    let cases = [
        ("+14155550113", "/busy", vec!["initiated", "busy"], "486"),
        (
            "+15005550021",
            "/none",
            vec!["initiated", "ringing", "no-answer"],
            "487",
        ),
        ("+14155550114", "/failed", vec!["initiated", "failed"], "404"),
    ];
    for (to, path, expected, sip) in cases {
        let url = format!("{}{path}", env.rx.base);
        let mut form = vec![("StatusCallback", url.as_str())];
        form.extend(ALL_EVENTS);
        let sid = env.call(to, &form).await;
        let hits = env.rx.wait_for(path, expected.len()).await;
        assert_eq!(statuses(&hits), expected, "{to}");
        let last = hits.last().unwrap();
        assert_eq!(
            (last.get("CallDuration"), last.get("SipResponseCode")),
            (Some("0"), Some(sip))
        );
        assert_eq!(last.get("Duration"), None, "no billed minutes for {to}");
        let call = env.finished(&sid).await;
        assert_eq!(call.status, *expected.last().unwrap());
        assert_eq!(
            (call.duration, call.spoken.as_str()),
            (None, ""),
            "nothing heard on {to}"
        );
        let (_, resource) = env.get(&format!("Calls/{sid}.json")).await;
        assert_eq!(resource["status"], *expected.last().unwrap());
        assert_eq!(resource["duration"], Value::Null);
    }
}

#[tokio::test]
async fn twiml_is_read_into_the_spoken_text_and_shown_in_the_inbox() {
    let env = env().await;
    let sid = env.call("+14155550115", &[]).await;
    let call = env.finished(&sid).await;
    assert_eq!(call.spoken, "Your verification code is 4 8 2 9 1 3. 4 8 2 9 1 3.");
    assert_eq!(code_in(&call.code_text()).as_deref(), Some("482913"));
    assert_eq!(
        (call.language.as_deref(), call.voice.as_deref()),
        (Some("en-US"), Some("Polly.Joanna"))
    );
    assert_eq!(call.segments[1], Segment::Pause { seconds: 1 });

    let twiml = r#"<?xml version="1.0" encoding="UTF-8"?>
        <Response><!-- a comment -->
          <Say language="de-DE" voice="Polly.Vicki">Ihr Code &amp; mehr:
            <prosody rate="slow"><say-as interpret-as="digits">90 21</say-as></prosody></Say>
          <Pause length="2"/>
          <Gather numDigits="1"><Say loop="3">Noch einmal: <say-as interpret-as="digits">9021</say-as>,</Say></Gather>
          <Hangup/><Say>never heard</Say>
        </Response>"#;
    let sid = env.call("+14155550116", &[("Twiml", twiml)]).await;
    let call = env.finished(&sid).await;
    assert_eq!(
        call.spoken,
        "Ihr Code & mehr: 9 0 2 1 Noch einmal: 9 0 2 1, Noch einmal: 9 0 2 1, Noch einmal: 9 0 2 1,"
    );
    assert_eq!(code_in(&call.code_text()).as_deref(), Some("9021"));
    assert_eq!(
        (call.language.as_deref(), call.voice.as_deref()),
        (Some("de-DE"), Some("Polly.Vicki"))
    );
    assert!(call.segments.contains(&Segment::Pause { seconds: 2 }));

    let inbox: Value = env
        .http
        .get(format!("{}/inbox?to=%2B14155550116", env.fake.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed = &inbox["calls"][0];
    assert_eq!(
        (listed["kind"].as_str(), listed["sid"].as_str()),
        (Some("call"), Some(sid.as_str()))
    );
    assert_eq!(listed["spoken"], call.spoken.as_str());
    assert_eq!(
        (listed["language"].as_str(), listed["status"].as_str()),
        (Some("de-DE"), Some("completed"))
    );
    assert_eq!(listed["twiml"], twiml);
    assert!(listed["callbacks_sent"].is_array() && inbox["messages"].as_array().unwrap().is_empty());

    let sid = env
        .call("+14155550117", &[("Twiml", "<Response><Say>broken</Response>")])
        .await;
    let call = env.finished(&sid).await;
    assert!(call.twiml_error.as_deref().unwrap().starts_with("12100"), "{call:?}");
    assert_eq!((call.spoken.as_str(), call.status.as_str()), ("", "completed"));
}

#[tokio::test]
async fn a_url_is_fetched_signed_when_answered_and_wins_over_twiml() {
    let env = env().await;
    let url = format!("{}/twiml?call=1", env.rx.base);
    let ignored = "<Response><Say>ignored</Say></Response>";
    let sid = env.call("+14155550118", &[("Url", &url), ("Twiml", ignored)]).await;
    let call = env.finished(&sid).await;
    assert_eq!(call.spoken, "Your code is 7 3 0 1");
    let fetches = env.rx.hits("/twiml");
    assert_eq!(fetches.len(), 1);
    assert_eq!(
        (fetches[0].method.as_str(), fetches[0].get("CallStatus")),
        ("POST", Some("in-progress"))
    );
    assert_eq!(fetches[0].get("CallSid"), Some(sid.as_str()));
    assert!(fetches[0].signed_with(&env.fake.config().auth_token));

    let refused = format!("{}/refuse", env.rx.base);
    let sid = env.call("+14155550119", &[("Url", &refused), ("Method", "GET")]).await;
    let call = env.finished(&sid).await;
    assert!(call.twiml_error.as_deref().unwrap().starts_with("11200"), "{call:?}");
    assert_eq!(env.rx.hits("/refuse")[0].method, "GET");
}
