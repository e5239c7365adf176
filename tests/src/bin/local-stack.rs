//! `local-stack`: the whole service in one process for trying it out on a machine with
//! PostgreSQL and RabbitMQ on localhost: the fake Twilio, `verify-api` and one
//! `verify-worker`, with development defaults for every required setting.
//!
//! Events go to the fake's receiver (`/events`, signatures verified with the development
//! `EVENTS_SECRET`) unless `EVENTS_URL` is set. It starts PostgreSQL and RabbitMQ when they
//! are installed on this machine but stopped, and exits with code 2 naming the package to
//! install when one is missing ([`verify_tests::local_services`]); it creates the database
//! named in `DATABASE_URL` if it does not exist. Any setting of `verify-api --help` or
//! `verify-worker --help` may be given to override a default. Its last line, once the API
//! and the worker are ready, is the fake's sandbox page.

use std::process::ExitCode;
use std::time::Duration;

use common::process::shutdown_on_signals;
use sqlx::{Connection, PgConnection};
use verify_tests::fake_twilio::{FakeConfig, FakeTwilio};
use verify_tests::local_services::{self, POSTGRESQL, RABBITMQ, Unavailable};

/// Development values for the settings production must provide.
const DEV_DEFAULTS: &[(&str, &str)] = &[
    ("API_KEYS", "local-dev-key-change-me"),
    ("VERIFY_SECRET", "local-dev-secret-0123456789abcdef-change-me"),
    ("CODE_SEALING_KEYS", "local-dev-sealing-key-0123456789abcdef-change-me"),
    ("TWILIO_ACCOUNT_SID", "AC00000000000000000000000000000001"),
    ("TWILIO_AUTH_TOKEN", "fake-auth-token"),
    ("TWILIO_FROM", "+15005550006"),
    // Every channel on, so that the sandbox can try WhatsApp and calls too.
    ("TWILIO_WHATSAPP_FROM", "+15005550006"),
    ("TWILIO_WHATSAPP_CONTENT_SID", "HX00000000000000000000000000000001"),
    ("TWILIO_API_BASE", "http://127.0.0.1:8081"),
    ("EVENTS_SECRET", DEV_EVENTS_SECRET),
    ("LOG_FORMAT", "text"),
];

/// Signs the events the fake's receiver verifies (`whsec_` + base64 of a development phrase).
const DEV_EVENTS_SECRET: &str = "whsec_bG9jYWwtZGV2LWV2ZW50cy1zZWNyZXQtMDEyMzQ1Njc4OQ==";

fn settings() -> Vec<(String, String)> {
    let mut values: Vec<(String, String)> = std::env::vars().filter(|(_, v)| !v.is_empty()).collect();
    for (name, value) in DEV_DEFAULTS {
        if !values.iter().any(|(n, _)| n == name) {
            values.push((name.to_string(), value.to_string()));
        }
    }
    // Events go to the fake's receiver unless EVENTS_URL names another one.
    if !values.iter().any(|(n, _)| n == "EVENTS_URL") {
        let base = values
            .iter()
            .find(|(n, _)| n == "TWILIO_API_BASE")
            .map(|(_, v)| v.trim_end_matches('/').to_owned())
            .unwrap_or_default();
        values.push(("EVENTS_URL".into(), format!("{base}/events")));
    }
    values
}

/// Creates the database of `url` when it is missing (the services only migrate it).
async fn ensure_database(url: &str) -> anyhow::Result<()> {
    let (server, name) = url
        .rsplit_once('/')
        .ok_or_else(|| anyhow::anyhow!("DATABASE_URL has no database name"))?;
    let name = name.split('?').next().unwrap_or(name);
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        anyhow::bail!("database name {name:?} must be letters, digits and '_'");
    }
    let mut admin = PgConnection::connect(&format!("{server}/postgres")).await?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(&mut admin)
        .await?;
    if !exists {
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await?;
        tracing::info!(database = name, "created the database");
    }
    Ok(())
}

async fn run() -> anyhow::Result<()> {
    let values = settings();
    let api_config = common::settings::from_vars::<verify_api::ApiConfig>(values.clone())?;
    let worker_config = common::settings::from_vars::<verify_worker::WorkerConfig>(values)?;
    common::observability::init_logging(&api_config.shared.log_format);
    local_services::ensure(&POSTGRESQL, api_config.shared.database_url.expose()).await?;
    // A list of nodes is a cluster of someone's making: not this machine's RabbitMQ to start.
    let amqp_url = api_config.shared.amqp_url.expose();
    if common::broker::split_nodes(amqp_url).count() == 1 {
        local_services::ensure(&RABBITMQ, amqp_url).await?;
    }
    ensure_database(api_config.shared.database_url.expose()).await?;

    let fake_addr = worker_config.twilio_api_base.trim_start_matches("http://").to_owned();
    let listener = tokio::net::TcpListener::bind(&fake_addr).await?;
    let fake = FakeTwilio::serve(
        listener,
        FakeConfig {
            account_sid: worker_config.shared.twilio_account_sid.clone(),
            auth_token: worker_config.shared.twilio_auth_token.expose().to_owned(),
            events_secret: worker_config.shared.events.secret.clone(),
            // As fake-twilio keeps by default: the newest, so that days of use stay small.
            kept: Some(10_000),
            ..FakeConfig::default()
        },
    );
    // Already split and trimmed by the API's own parser; the setting is required, so never empty.
    let api_key = api_config
        .api_keys
        .first()
        .map(|key| key.expose().to_owned())
        .unwrap_or_default();
    let http = reqwest::Client::builder().no_proxy().build()?;
    let shutdown = shutdown_on_signals();
    let api = verify_api::Application::build(api_config, &shutdown).await?;
    let worker = verify_worker::Worker::build(worker_config, &shutdown).await?;
    let api_port = api.port();
    let api_base = format!("http://127.0.0.1:{api_port}");
    let readiness = [
        format!("{api_base}/readyz"),
        format!("http://127.0.0.1:{}/readyz", worker.port()),
    ];
    let announce = async {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = until_ready(&http, &readiness) => {}
        }
        tracing::info!(
            fake_twilio = %fake.base_url,
            "local stack up: API on port {api_port}, events at {}/events",
            fake.base_url
        );
        fake.set_sandbox_api(&api_base, &api_key);
        // Printed, not logged: it is for the person at the terminal whatever RUST_LOG and
        // LOG_FORMAT say, and nothing of the start-up comes after it.
        eprintln!(
            "Sandbox: {}/  (open it in a browser: every code that arrives, a \"try it\" panel, faults; \
             scripts: /inbox as JSON)",
            fake.base_url
        );
    };
    let (api_result, worker_result, ()) =
        tokio::join!(api.run(shutdown.clone()), worker.run(shutdown.clone()), announce);
    api_result?;
    worker_result
}

/// Returns once every URL answers 2xx, trying every 200 ms. The API and the worker log their
/// own start-up lines from `run` (listening, connected to RabbitMQ, consuming), before they
/// report ready, so whatever is printed after this comes after those.
async fn until_ready(http: &reqwest::Client, urls: &[String]) {
    for url in urls {
        loop {
            let answer = http.get(url).timeout(Duration::from_secs(5)).send().await;
            if answer.is_ok_and(|a| a.status().is_success()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("local-stack: {e:#}");
            // A server missing or not starting here: the person has something to install or fix
            // on this machine, not in the settings.
            if e.is::<Unavailable>() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
