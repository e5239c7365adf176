//! The fake Twilio's memory with its sandbox page open: a `fake-twilio` process of its own,
//! the page open in headless Chromium (live stream and all), and as many messages as the
//! benchmark's fake received, sent the way the two-worker drain sends them (`concurrency`
//! clients, the fake answering after `latency`). Its peak RSS is read from `/proc` once the
//! page shows every number the fake kept (its default `FAKE_TWILIO_KEEP`).

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::Proc;
use crate::harness::sibling_binary;
use crate::webdriver::Browser;

const ACCOUNT: &str = "AC00000000000000000000000000000001";
const TOKEN: &str = "fake-auth-token";

/// What the measurement found.
#[derive(Debug, Clone, Default)]
pub struct SandboxRun {
    pub messages: usize,
    /// The numbers the fake still held at the end (it keeps the newest `FAKE_TWILIO_KEEP`).
    pub kept: u64,
    /// How long sending them took, and until the page showed them all.
    pub sent_in: Duration,
    pub shown_in: Duration,
    pub fake_peak_rss_kib: u64,
}

/// Runs the measurement; `None` when this machine has no Chromium (the report says so).
pub async fn measure(messages: usize, concurrency: usize, latency: Duration) -> anyhow::Result<Option<SandboxRun>> {
    if !Browser::available() {
        return Ok(None);
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let base = format!("http://127.0.0.1:{port}");
    let fake = Proc(
        Command::new(sibling_binary("fake-twilio"))
            .env("FAKE_TWILIO_LISTEN", format!("127.0.0.1:{port}"))
            .env("TWILIO_ACCOUNT_SID", ACCOUNT)
            .env("TWILIO_AUTH_TOKEN", TOKEN)
            // As the benchmark's own fake: no callbacks (nothing would receive them).
            .env("FAKE_TWILIO_CALLBACKS", "false")
            .env("FAKE_TWILIO_LATENCY_MS", latency.as_millis().to_string())
            .env("LOG_FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting fake-twilio")?,
    );
    let http = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        anyhow::ensure!(Instant::now() < deadline, "fake-twilio did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let browser = Browser::start(1280, 900).await?;
    browser.goto(&format!("{base}/")).await?;
    browser.wait_for("#live", "live", Duration::from_secs(20)).await?;

    let began = Instant::now();
    send(&http, &base, messages, concurrency).await?;
    let sent_in = began.elapsed();
    // Every message went to a number of its own; the fake keeps the newest (FAKE_TWILIO_KEEP),
    // and the page shows their count once it caught up.
    let numbers: serde_json::Value = http
        .get(format!("{base}/sandbox/numbers?limit=1"))
        .send()
        .await?
        .json()
        .await?;
    let kept = numbers["total"].as_u64().context("no total in /sandbox/numbers")?;
    browser
        .wait_for("#numbers-count", &format!("({kept})"), Duration::from_secs(120))
        .await?;
    let run = SandboxRun {
        messages,
        kept,
        sent_in,
        shown_in: began.elapsed(),
        fake_peak_rss_kib: fake.peak_rss_kib(),
    };
    browser.quit().await?;
    Ok(Some(run))
}

/// `messages` SMS creates, one per number, from `concurrency` clients.
async fn send(http: &reqwest::Client, base: &str, messages: usize, concurrency: usize) -> anyhow::Result<()> {
    let url = format!("{base}/2010-04-01/Accounts/{ACCOUNT}/Messages.json");
    let next = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..concurrency)
        .map(|_| {
            let (http, url, next) = (http.clone(), url.clone(), Arc::clone(&next));
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= messages {
                        return Ok::<_, anyhow::Error>(());
                    }
                    let to = format!("+1415{:07}", 5_000_000 + i);
                    let form = [
                        ("To", to.as_str()),
                        ("From", "+15005550006"),
                        ("Body", "Your verification code is 482913"),
                    ];
                    let answer = http
                        .post(&url)
                        .basic_auth(ACCOUNT, Some(TOKEN))
                        .form(&form)
                        .send()
                        .await?;
                    anyhow::ensure!(answer.status() == 201, "create answered {}", answer.status());
                }
            })
        })
        .collect();
    for client in clients {
        client.await??;
    }
    Ok(())
}
