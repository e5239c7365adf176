//! SMS-pumping tests: real `verify-api` and `verify-worker` processes under traffic shaped
//! like the two cases the conversion-aware guard must tell apart.
//!
//! A product launch: thousands of real users in a minute, spread over some 300 US area codes
//! (a few of them carrying most of the traffic), each from an address of its own, four in
//! five of whom type their code back. Nothing may be refused or paused: a burst of starts
//! whose codes are being used is business, not fraud, however fast it comes.
//!
//! A pumping attack: sequential numbers of a few prefixes, each start from another address
//! (so the limits per IP never see it), and no code ever checked, because the attacker earns
//! from the SMS, not the verification. The guard must pause those prefixes within two minutes
//! and then refuse their starts (no SMS sent), alert once per prefix, leave a prefix listed
//! in `PUMPING_SAFE_PREFIXES` alone, and in monitor mode alert without refusing anything.
//!
//! They take minutes (the guard judges a start only once it is a minute old), so they are
//! `#[ignore]`d in a plain `cargo test`. Each has its own database and queue: they may run in
//! parallel.

mod attack;
mod launch;
mod mailbox;
mod monitor;
mod numbers;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use time::OffsetDateTime;
use verify_tests::harness::{API_KEY, Options, Scrape, ServiceProcesses, TestApp, spawn_app_with};

/// The refusal code of a start to a paused prefix.
pub const SUSPECTED: &str = "suspected_pumping";

/// The API and a worker as processes, with the default abuse rules and the guard in `mode`.
pub struct Service {
    pub app: TestApp,
    pub processes: ServiceProcesses,
    pub http: reqwest::Client,
}

/// The answer to one start.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status; 0 when no answer came (then `code` says why).
    pub status: u16,
    /// `error.code` of a refusal.
    pub code: String,
    pub retry_after: Option<u64>,
    pub sent_at: OffsetDateTime,
    pub answered_at: OffsetDateTime,
}

impl Answer {
    pub fn accepted(&self) -> bool {
        self.status == 202
    }

    pub fn suspected(&self) -> bool {
        self.status == 429 && self.code == SUSPECTED
    }

    /// `202`, or `429 suspected_pumping`: for counting answers by kind.
    pub fn kind(&self) -> String {
        if self.code.is_empty() {
            self.status.to_string()
        } else {
            format!("{} {}", self.status, self.code)
        }
    }
}

/// A row of `prefix_pauses` (all of it shown in failure messages).
#[derive(Debug, Clone, sqlx::FromRow)]
#[allow(
    dead_code,
    reason = "the fields only read through Debug are there for the failure messages"
)]
pub struct Pause {
    pub prefix: String,
    pub paused_at: OffsetDateTime,
    pub until: OffsetDateTime,
    pub enforced: bool,
    pub strikes: i32,
    pub reason: String,
}

/// An `sms_pumping` alert of the API's log.
#[derive(Debug, Clone)]
pub struct Alert {
    pub prefix: String,
    /// The line's `timestamp`.
    pub at: Option<OffsetDateTime>,
    pub line: String,
}

/// Seconds since the Unix epoch, as the guard's gauges tell time.
pub fn unix(t: OffsetDateTime) -> f64 {
    t.unix_timestamp_nanos() as f64 / 1e9
}

/// Counts of each kind of answer, e.g. `{"202": 95, "429 suspected_pumping": 5}`.
pub fn tally<'a>(answers: impl IntoIterator<Item = &'a Answer>) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for a in answers {
        *counts.entry(a.kind()).or_default() += 1;
    }
    counts
}

impl Service {
    /// A test database, queue and fake Twilio; the API (guard in `guard` mode, `extra` on top)
    /// and a worker as processes. The in-process API the harness starts too takes no request
    /// and runs with the guard off, so that every evaluation, pause, alert and metric is the
    /// process's.
    pub async fn spawn(guard: &str, extra: &[(&str, &str)]) -> Self {
        let mut options = Options::default().without_worker().env("PUMPING_GUARD", "off");
        // Not these tests' subject: two status callbacks per SMS would double the API's load.
        options.fake.callbacks = false;
        let app = spawn_app_with(options).await;
        let mut env = vec![
            // The default rules, which the harness switches off or widens for other tests.
            ("RATE_LIMITS", "on"),
            ("SMS_NUMBER_TYPES", "mobile,fixed_line_or_mobile"),
            // Every simulated user comes through the proxy with an address of its own.
            ("TRUSTED_PROXIES", "127.0.0.1"),
            ("PUMPING_GUARD", guard),
        ];
        env.extend_from_slice(extra);
        let processes = app.spawn_service_processes(&env).await;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client");
        Self { app, processes, http }
    }

    pub fn api_log(&self) -> String {
        self.processes.api_log.display().to_string()
    }

    fn log_path(&self) -> PathBuf {
        self.processes.api_log.clone()
    }

    /// Starts a verification for `number` as the client at `ip` (behind the trusted proxy).
    pub async fn start_from(&self, number: &str, ip: &str) -> Answer {
        let sent_at = OffsetDateTime::now_utc();
        let response = self
            .http
            .post(format!("{}/v1/verifications", self.processes.api_base))
            .bearer_auth(API_KEY)
            .header("x-forwarded-for", ip)
            .json(&json!({"phone_number": number}))
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                return Answer {
                    status: 0,
                    code: format!("no answer: {e}"),
                    retry_after: None,
                    sent_at,
                    answered_at: OffsetDateTime::now_utc(),
                };
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()?.parse().ok());
        let body: Value = response.json().await.unwrap_or(Value::Null);
        Answer {
            status,
            code: body["error"]["code"].as_str().unwrap_or("").to_owned(),
            retry_after,
            sent_at,
            answered_at: OffsetDateTime::now_utc(),
        }
    }

    /// Checks `code` for `number` as the client at `ip`: the status and the body.
    pub async fn check_from(&self, number: &str, code: &str, ip: &str) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/v1/verifications/check", self.processes.api_base))
            .bearer_auth(API_KEY)
            .header("x-forwarded-for", ip)
            .json(&json!({"phone_number": number, "code": code}))
            .send()
            .await;
        match response {
            Ok(r) => (r.status().as_u16(), r.json().await.unwrap_or(Value::Null)),
            Err(e) => (0, json!({"error": e.to_string()})),
        }
    }

    /// The API process's metrics.
    pub async fn scrape(&self) -> Scrape {
        Scrape::fetch(&self.http, &self.processes.api_base).await
    }

    /// Every row of `prefix_pauses`.
    pub async fn pauses(&self) -> Vec<Pause> {
        sqlx::query_as("SELECT prefix, paused_at, until, enforced, strikes, reason FROM prefix_pauses ORDER BY prefix")
            .fetch_all(&self.app.pool)
            .await
            .expect("reading prefix_pauses")
    }

    /// The `sms_pumping` alerts in the API's log so far: lines at error level with
    /// `alert = "sms_pumping"`.
    pub fn alerts(&self) -> Vec<Alert> {
        let text = std::fs::read_to_string(self.log_path())
            .unwrap_or_else(|e| panic!("reading the API's log {}: {e}", self.api_log()));
        text.lines()
            .filter_map(|line| {
                let v: Value = serde_json::from_str(line).ok()?;
                let field = |name: &str| v.get(name).or_else(|| v.get("fields")?.get(name)).cloned();
                let is_alert = field("alert")? == "sms_pumping"
                    && v["level"].as_str().is_some_and(|l| l.eq_ignore_ascii_case("error"));
                is_alert.then(|| Alert {
                    prefix: field("prefix")
                        .and_then(|p| p.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    at: v["timestamp"]
                        .as_str()
                        .and_then(|t| OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()),
                    line: line.to_owned(),
                })
            })
            .collect()
    }

    /// Waits (bounded by `limit`) until `verify_pumping_judged_until_seconds` says that every
    /// start made before `instant` was judged by a completed evaluation; returns that scrape.
    pub async fn wait_until_judged(&self, instant: OffsetDateTime, limit: Duration) -> Scrape {
        self.app
            .watch
            .step("waiting until the guard has judged every start made");
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let scrape = self.scrape().await;
            let judged = scrape.value("verify_pumping_judged_until_seconds", &[]);
            if judged.is_some_and(|j| j >= unix(instant)) {
                return scrape;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "verify_pumping_judged_until_seconds is {judged:?}, still before the last start at {:.3} \
                 {limit:?} later (evaluations: {:?}; API log {})",
                unix(instant),
                scrape.value("verify_pumping_evaluations_total", &[]),
                self.api_log()
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// SIGTERM to both processes (each must exit 0), then the harness's own cleanup.
    pub async fn stop(mut self) {
        self.processes.stop();
        self.app.stop().await;
    }
}
