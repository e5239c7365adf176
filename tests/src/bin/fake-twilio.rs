//! `fake-twilio`: runs the fake Twilio Messages and Calls APIs for local use.
//!
//! Settings: `FAKE_TWILIO_LISTEN` (default 127.0.0.1:8081), `TWILIO_ACCOUNT_SID`,
//! `TWILIO_AUTH_TOKEN` (what it accepts and signs callbacks with), `FAKE_TWILIO_LATENCY_MS`,
//! `FAKE_TWILIO_FAULT_RATE` (0..1), `FAKE_TWILIO_CALLBACKS` (true/false), `EVENTS_SECRET`
//! (what the event receiver at `/events` verifies signatures with),
//! `FAKE_TWILIO_WHATSAPP_FREE_FORM` (`outside-window`: a WhatsApp `Body` without
//! `ContentSid` fails with 63016, as Twilio does; `inside-window`: it is delivered),
//! `FAKE_TWILIO_KEEP` (messages, calls and failed requests kept, default 10,000: the
//! newest; memory stays bounded), `SANDBOX_API_URL` and `SANDBOX_API_KEY` (the API the sandbox page at `/` tries, and the
//! key it uses; without them the page shows what arrives but cannot start verifications).

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use common::process::shutdown_on_signals;
use verify_tests::fake_twilio::{FakeConfig, FakeTwilio, WhatsAppFreeForm};

/// The fake's settings.
#[derive(Debug, Parser)]
#[command(name = "fake-twilio", about = "a stand-in for Twilio's Messages and Calls APIs", after_help = common::settings::AFTER_HELP)]
struct Settings {
    /// listen address
    #[arg(long, env = "FAKE_TWILIO_LISTEN", default_value = "127.0.0.1:8081")]
    listen: std::net::SocketAddr,
    /// account sid it accepts
    #[arg(long, env = "TWILIO_ACCOUNT_SID", default_value = "AC00000000000000000000000000000001", value_parser = common::settings::account_sid)]
    account_sid: String,
    /// auth token it accepts and signs callbacks with
    #[arg(long, env = "TWILIO_AUTH_TOKEN", default_value = "fake-auth-token")]
    auth_token: String,
    /// delay added to every create call (ms)
    #[arg(long = "latency-ms", env = "FAKE_TWILIO_LATENCY_MS", default_value = "0", value_parser = common::settings::millis(0..=600_000))]
    latency: Duration,
    /// fraction of create calls answered 500/503 or timed out, 0 to 1
    #[arg(long, env = "FAKE_TWILIO_FAULT_RATE", default_value = "0", value_parser = fault_rate)]
    fault_rate: f64,
    /// post sent/delivered status callbacks
    #[arg(long, env = "FAKE_TWILIO_CALLBACKS", default_value = "true", value_parser = clap::value_parser!(bool), action = clap::ArgAction::Set)]
    callbacks: bool,
    /// what a WhatsApp Body without ContentSid does: outside-window (fails, 63016) or inside-window (delivered)
    #[arg(long, env = "FAKE_TWILIO_WHATSAPP_FREE_FORM", default_value = "outside-window", value_parser = ["outside-window", "inside-window"])]
    whatsapp_free_form: String,
    /// whsec_ secret the event receiver (/events) verifies signatures with [default: none, nothing verifies]
    #[arg(long = "events-secret", env = "EVENTS_SECRET", value_parser = common::standard_webhooks::EventSecret::parse)]
    events_secret: Option<common::standard_webhooks::EventSecret>,
    /// the API the sandbox page's "try it" panel and queue strip talk to (e.g. http://127.0.0.1:8080) [default: none]
    #[arg(long = "sandbox-api-url", env = "SANDBOX_API_URL", requires = "sandbox_api_key")]
    sandbox_api_url: Option<String>,
    /// the API key the sandbox page's requests carry (one of the API's API_KEYS)
    #[arg(long = "sandbox-api-key", env = "SANDBOX_API_KEY")]
    sandbox_api_key: Option<String>,
    /// messages, calls and failed requests kept, each the newest (memory stays bounded), 100 to 1000000
    #[arg(long, env = "FAKE_TWILIO_KEEP", default_value = "10000", value_parser = clap::value_parser!(u32).range(100..=1_000_000))]
    keep: u32,
    /// json, text, or auto
    #[arg(long, env = "LOG_FORMAT", default_value = "auto", value_parser = ["auto", "json", "text"])]
    log_format: String,
}

impl common::settings::Settings for Settings {}

fn fault_rate(value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("must be a number from 0 to 1, got {value:?}")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let settings: Settings = match common::settings::load("fake-twilio") {
        Ok(s) => s,
        Err(code) => return code,
    };
    common::observability::init_logging(&settings.log_format);
    let listener = match tokio::net::TcpListener::bind(settings.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("fake-twilio: cannot listen on {}: {e}", settings.listen);
            return ExitCode::FAILURE;
        }
    };
    let config = FakeConfig {
        account_sid: settings.account_sid,
        auth_token: settings.auth_token,
        callbacks: settings.callbacks,
        whatsapp_free_form: if settings.whatsapp_free_form == "inside-window" {
            WhatsAppFreeForm::InsideWindow
        } else {
            WhatsAppFreeForm::OutsideWindow
        },
        events_secret: settings.events_secret,
        kept: Some(settings.keep as usize),
        ..FakeConfig::default()
    };
    let fake = FakeTwilio::serve(listener, config);
    fake.set_latency(settings.latency);
    fake.set_fault_rate(settings.fault_rate);
    if let (Some(url), Some(key)) = (&settings.sandbox_api_url, &settings.sandbox_api_key) {
        // API_KEYS may be given as is: its first key.
        fake.set_sandbox_api(url, key.split(',').next().unwrap_or_default().trim());
    }
    tracing::info!(
        base_url = %fake.base_url,
        "fake Twilio listening; the sandbox page is at {}/ (JSON for scripts at /inbox?to=+1…)",
        fake.base_url
    );
    shutdown_on_signals().cancelled().await;
    ExitCode::SUCCESS
}
