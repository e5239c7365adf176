//! `fake-twilio`: runs the fake Twilio Messages API for local use.
//!
//! Settings: `FAKE_TWILIO_LISTEN` (default 127.0.0.1:8081), `TWILIO_ACCOUNT_SID`,
//! `TWILIO_AUTH_TOKEN` (what it accepts and signs callbacks with), `FAKE_TWILIO_LATENCY_MS`,
//! `FAKE_TWILIO_FAULT_RATE` (0..1), `FAKE_TWILIO_CALLBACKS` (true/false).

use std::process::ExitCode;
use std::time::Duration;

use common::process::{load_config, parse_args, shutdown_on_signals};
use common::settings::{Env, Setting, SettingError};
use verify_tests::fake_twilio::{FakeConfig, FakeTwilio};

const SETTINGS: &[Setting] = &[
    Setting::with_default("FAKE_TWILIO_LISTEN", "127.0.0.1:8081", "listen address"),
    Setting::with_default(
        "TWILIO_ACCOUNT_SID",
        "AC00000000000000000000000000000001",
        "account sid it accepts",
    ),
    Setting::with_default(
        "TWILIO_AUTH_TOKEN",
        "fake-auth-token",
        "auth token it accepts and signs callbacks with",
    ),
    Setting::with_default("FAKE_TWILIO_LATENCY_MS", "0", "delay added to every create call"),
    Setting::with_default(
        "FAKE_TWILIO_FAULT_RATE",
        "0",
        "fraction of create calls answered 500/503 or timed out",
    ),
    Setting::with_default("FAKE_TWILIO_CALLBACKS", "true", "post sent/delivered status callbacks"),
    Setting::with_default("LOG_FORMAT", "auto", "json, text, or auto"),
];

struct Settings {
    listen: std::net::SocketAddr,
    fake: FakeConfig,
    latency: Duration,
    fault_rate: f64,
    log_format: String,
}

fn from_env(env: &Env) -> Result<Settings, SettingError> {
    Ok(Settings {
        listen: env.parse("FAKE_TWILIO_LISTEN")?,
        fake: FakeConfig {
            account_sid: common::settings::account_sid(env)?,
            auth_token: env.string("TWILIO_AUTH_TOKEN")?,
            callbacks: env.parse("FAKE_TWILIO_CALLBACKS")?,
            ..FakeConfig::default()
        },
        latency: Duration::from_millis(env.parse("FAKE_TWILIO_LATENCY_MS")?),
        fault_rate: env.number_in("FAKE_TWILIO_FAULT_RATE", 0.0..=1.0)?,
        log_format: common::settings::log_format(env)?,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    if let Err(code) = parse_args("fake-twilio", "a stand-in for Twilio's Messages API", SETTINGS, &[]) {
        return code;
    }
    let settings = match load_config("fake-twilio", SETTINGS, from_env) {
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
    let fake = FakeTwilio::serve(listener, settings.fake);
    fake.set_latency(settings.latency);
    fake.set_fault_rate(settings.fault_rate);
    tracing::info!(base_url = %fake.base_url, "fake Twilio listening; read codes at /inbox?to=+1…");
    shutdown_on_signals().cancelled().await;
    ExitCode::SUCCESS
}
