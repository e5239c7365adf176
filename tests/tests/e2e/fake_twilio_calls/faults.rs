//! Create errors in Twilio's error JSON, and the fault machinery on calls.

use std::time::Duration;

use verify_tests::fake_twilio::Fault;

use super::{TWIML, env, today};

#[tokio::test]
async fn create_errors_use_twilios_error_json() {
    let env = env().await;
    let base = [("To", "+14155550103"), ("From", "+15005550006")];
    let post = |extra: Vec<(&'static str, String)>, drop: Option<&'static str>| {
        let mut form: Vec<(&str, String)> = base.iter().map(|(k, v)| (*k, v.to_string())).collect();
        form.retain(|(k, _)| Some(*k) != drop);
        form.extend(extra);
        let env = &env;
        async move {
            let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (status, body) = env.post("Calls.json", &pairs).await;
            (status, body["code"].as_i64().unwrap_or(0))
        }
    };
    assert_eq!(
        post(vec![], None).await,
        (400, 21205),
        "no Twiml, Url or ApplicationSid"
    );
    assert_eq!(post(vec![("Url", "not a url".into())], None).await, (400, 21205));
    assert_eq!(post(vec![("Twiml", "x".repeat(4001))], None).await.0, 400);
    assert_eq!(post(vec![("Twiml", TWIML.into())], Some("To")).await, (400, 21201));
    assert_eq!(post(vec![("Twiml", TWIML.into())], Some("From")).await, (400, 21213));
    assert_eq!(
        post(vec![("ApplicationSid", "APnope".into())], None).await,
        (400, 21218)
    );
    let magic = env
        .post(
            "Calls.json",
            &[("To", "+15005550001"), ("From", "+15005550006"), ("Twiml", TWIML)],
        )
        .await;
    assert_eq!((magic.0, magic.1["code"].as_i64()), (400, Some(21217)));
    let r = env
        .http
        .post(env.url("Calls.json"))
        .basic_auth("AC00000000000000000000000000000001", Some("bad"));
    let r = r.form(&base).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(env.fake.calls().is_empty(), "nothing was placed");
    // With an application, the call is placed and StatusCallback is ignored.
    let app = "AP0123456789abcdef0123456789abcdef";
    let cb = format!("{}/status", env.rx.base);
    assert_eq!(
        post(vec![("ApplicationSid", app.into()), ("StatusCallback", cb)], None).await,
        (201, 0)
    );
    let sid = env.fake.calls()[0].sid.clone();
    assert!(env.finished(&sid).await.status_callback.is_none());
}

#[tokio::test]
async fn faults_hit_calls_and_a_timeout_after_create_still_places_the_call() {
    let env = env().await;
    env.fake.push_faults([
        Fault::Unavailable,
        Fault::InternalError,
        Fault::Timeout,
        Fault::TimeoutAfterCreate,
        Fault::InternalErrorAfterCreate,
    ]);
    let to = "+14155550104";
    let form = [("To", to), ("From", "+15005550006"), ("Twiml", TWIML)];
    assert_eq!(env.post("Calls.json", &form).await.1["code"], 20503);
    assert_eq!(env.post("Calls.json", &form).await.1["code"], 20500);
    let r = env.auth(env.http.post(env.url("Calls.json"))).form(&form).send().await;
    assert!(r.unwrap_err().is_timeout());
    assert!(env.fake.calls_to(to).is_empty(), "no call for faults before the create");

    let r = env.auth(env.http.post(env.url("Calls.json"))).form(&form).send().await;
    assert!(r.unwrap_err().is_timeout(), "the answer comes after the client gave up");
    // The look-up before a resend finds the call the lost answer was about.
    let (_, page) = env
        .get(&format!("Calls.json?To=%2B14155550104&StartTime%3E={}", today()))
        .await;
    let listed = page["calls"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{page}");
    let sid = listed[0]["sid"].as_str().unwrap();
    assert_eq!(env.finished(sid).await.status, "completed");

    let (status, body) = env.post("Calls.json", &form).await;
    assert_eq!((status, body["code"].as_i64()), (500, Some(20500)));
    assert_eq!(env.fake.calls_to(to).len(), 2, "created despite the 500");
    assert_eq!(env.fake.create_calls(), 5);
    assert_eq!(env.fake.create_call_times(to).len(), 5);

    env.fake.set_latency(Duration::from_millis(300));
    let started = std::time::Instant::now();
    assert_eq!(env.post("Calls.json", &form).await.0, 201);
    assert!(started.elapsed() >= Duration::from_millis(300));
}
