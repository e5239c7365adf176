//! The fake Twilio's voice calls and WhatsApp messages, driven directly over HTTP (no
//! service): shapes of the OpenAPI, filters, faults, callbacks, TwiML, WhatsApp paths.

mod callbacks;
mod faults;
mod receiver;
mod whatsapp;

use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;
use verify_tests::fake_twilio::{CallEnd, FakeConfig, FakeTwilio, SentCall};

use receiver::Receiver;

pub const TWIML: &str = r#"<Response><Say language="en-US" voice="Polly.Joanna">Your verification code is</Say><Pause length="1"/><Say language="en-US" voice="Polly.Joanna" loop="2"><say-as interpret-as="digits">482913</say-as>.</Say></Response>"#;

pub struct Env {
    pub fake: FakeTwilio,
    pub http: reqwest::Client,
    pub rx: Receiver,
}

pub async fn env() -> Env {
    let fake = FakeTwilio::start(FakeConfig {
        timeout_hold: Duration::from_secs(3),
        ..FakeConfig::default()
    })
    .await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let rx =
        Receiver::start("<Response><Say>Your code is <say-as interpret-as=\"digits\">7301</say-as></Say></Response>")
            .await;
    Env { fake, http, rx }
}

impl Env {
    pub fn url(&self, path: &str) -> String {
        let c = self.fake.config();
        format!("{}/2010-04-01/Accounts/{}/{path}", self.fake.base_url, c.account_sid)
    }

    fn auth(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let c = self.fake.config();
        r.basic_auth(&c.account_sid, Some(&c.auth_token))
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let r = self
            .auth(self.http.post(self.url(path)))
            .form(form)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.auth(self.http.get(self.url(path))).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// Places a call to `to` speaking [`TWIML`] from `+15005550006`; `extra` parameters are
    /// added or replace those. Returns its sid.
    pub async fn call(&self, to: &str, extra: &[(&str, &str)]) -> String {
        let mut form = vec![("To", to), ("From", "+15005550006"), ("Twiml", TWIML)];
        form.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
        form.extend_from_slice(extra);
        let (status, body) = self.post("Calls.json", &form).await;
        assert_eq!(status, 201, "{body}");
        body["sid"].as_str().unwrap().to_owned()
    }

    /// Waits until the call reached its final status.
    pub async fn finished(&self, sid: &str) -> SentCall {
        self.fake
            .wait_until(Duration::from_secs(10), "the call to end", |f| {
                f.call(sid).is_some_and(|c| c.is_final())
            })
            .await;
        self.fake.call(sid).unwrap()
    }
}

pub fn rfc2822(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(v.as_str().unwrap_or_else(|| panic!("no date in {v}")), &Rfc2822).unwrap()
}

pub fn today() -> time::Date {
    OffsetDateTime::now_utc().date()
}

#[tokio::test]
async fn calls_are_created_and_fetched_in_the_shape_of_the_openapi() {
    let env = env().await;
    let (status, call) = env
        .post(
            "Calls.json",
            &[("To", "+14155550100"), ("From", "+15005550006"), ("Twiml", TWIML)],
        )
        .await;
    assert_eq!(status, 201);
    let sid = call["sid"].as_str().unwrap().to_owned();
    assert!(sid.len() == 34 && sid.starts_with("CA") && sid[2..].chars().all(|c| c.is_ascii_hexdigit()));
    // Every property of `api.v2010.account.call`.
    for key in [
        "sid",
        "date_created",
        "date_updated",
        "parent_call_sid",
        "account_sid",
        "to",
        "to_formatted",
        "from",
        "from_formatted",
        "phone_number_sid",
        "status",
        "start_time",
        "end_time",
        "duration",
        "price",
        "price_unit",
        "direction",
        "answered_by",
        "api_version",
        "forwarded_from",
        "group_sid",
        "caller_name",
        "queue_time",
        "trunk_sid",
        "uri",
        "subresource_uris",
    ] {
        assert!(call.get(key).is_some(), "{key} missing from {call}");
    }
    assert_eq!(call["status"], "queued");
    assert_eq!(
        (call["to"].as_str(), call["from"].as_str()),
        (Some("+14155550100"), Some("+15005550006"))
    );
    assert_eq!(call["direction"], "outbound-api");
    assert_eq!(call["account_sid"], env.fake.config().account_sid.as_str());
    assert_eq!(call["api_version"], "2010-04-01");
    assert!(
        (OffsetDateTime::now_utc() - rfc2822(&call["date_created"]))
            .whole_seconds()
            .abs()
            < 5
    );
    rfc2822(&call["date_updated"]);
    for key in ["start_time", "end_time", "duration", "price"] {
        assert_eq!(call[key], Value::Null, "{key} of a queued call");
    }
    assert_eq!(call["queue_time"], "0");
    let uri = format!(
        "/2010-04-01/Accounts/{}/Calls/{sid}.json",
        env.fake.config().account_sid
    );
    assert_eq!(call["uri"], uri.as_str());
    assert!(
        call["subresource_uris"]["recordings"]
            .as_str()
            .unwrap()
            .ends_with("/Recordings.json")
    );

    env.finished(&sid).await;
    let (status, fetched) = env.get(&format!("Calls/{sid}.json")).await;
    assert_eq!(status, 200);
    assert_eq!(
        (fetched["sid"].as_str(), fetched["status"].as_str()),
        (Some(sid.as_str()), Some("completed"))
    );
    assert!(rfc2822(&fetched["start_time"]) <= rfc2822(&fetched["end_time"]));
    assert!(fetched["duration"].as_str().unwrap().parse::<u32>().unwrap() >= 1);

    let (status, missing) = env.get("Calls/CA0123456789abcdef0123456789abcdef.json").await;
    assert_eq!(
        (status, missing["code"].as_i64(), missing["status"].as_i64()),
        (404, Some(20404), Some(404))
    );
}

#[tokio::test]
async fn calls_are_listed_with_filters_and_pages() {
    let env = &env().await;
    let a1 = env.call("+14155550101", &[]).await;
    let b = env.call("+14155550102", &[("From", "+15005550007")]).await;
    env.fake.set_call_outcome("+14155550101", CallEnd::Busy);
    let a2 = env.call("+14155550101", &[]).await;
    for sid in [&a1, &b, &a2] {
        env.finished(sid).await;
    }
    let sids = |page: &Value| -> Vec<String> {
        let calls = page["calls"].as_array().unwrap_or_else(|| panic!("no calls in {page}"));
        calls.iter().map(|c| c["sid"].as_str().unwrap().to_owned()).collect()
    };
    let list = |query: String| async move { env.get(&format!("Calls.json?{query}")).await };
    let (status, page) = list("To=%2B14155550101".into()).await;
    assert_eq!(status, 200);
    assert_eq!(sids(&page), [a2.clone(), a1.clone()], "newest first");
    for key in [
        "page",
        "page_size",
        "uri",
        "first_page_uri",
        "next_page_uri",
        "previous_page_uri",
        "start",
        "end",
    ] {
        assert!(page.get(key).is_some(), "{key} missing");
    }
    assert_eq!(sids(&list("From=%2B15005550007".into()).await.1), [b.as_str()]);
    assert_eq!(
        sids(&list("To=%2B14155550101&Status=busy".into()).await.1),
        [a2.as_str()]
    );
    assert_eq!(sids(&list("Status=completed".into()).await.1), [b.clone(), a1.clone()]);
    let (today, tomorrow) = (today(), today().next_day().unwrap());
    assert_eq!(sids(&list(format!("StartTime%3E={today}")).await.1).len(), 3);
    assert_eq!(sids(&list(format!("StartTime%3E%3D={today}")).await.1).len(), 3);
    assert_eq!(sids(&list(format!("StartTime={today}")).await.1).len(), 3);
    assert!(sids(&list(format!("StartTime%3C={today}")).await.1).is_empty());
    assert!(sids(&list(format!("StartTime%3E={tomorrow}")).await.1).is_empty());
    assert_eq!(
        sids(&list(format!("StartTime%3C={tomorrow}T00:00:00Z")).await.1).len(),
        3
    );
    assert_eq!(list("StartTime%3E=yesterday".into()).await.0, 400);

    let (_, first) = list("PageSize=2".into()).await;
    assert_eq!(
        (sids(&first), first["page_size"].as_u64()),
        (vec![a2.clone(), b.clone()], Some(2))
    );
    assert_eq!((first["start"].as_u64(), first["end"].as_u64()), (Some(0), Some(1)));
    let next = first["next_page_uri"].as_str().unwrap();
    let r = env.http.get(format!("{}{next}", env.fake.base_url));
    let second: Value = env.auth(r).send().await.unwrap().json().await.unwrap();
    assert_eq!(sids(&second), [a1.as_str()]);
    assert_eq!(
        (second["page"].as_u64(), second["next_page_uri"].clone()),
        (Some(1), Value::Null)
    );
    assert!(second["previous_page_uri"].as_str().unwrap().contains("Page=0"));
}
