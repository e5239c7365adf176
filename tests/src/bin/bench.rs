//! `bench`: the signup-burst benchmark. Build it with the binaries it drives, in release:
//!
//!     cargo build --release --workspace && target/release/bench [--n 20000] [--concurrency 64]
//!         [--twilio-latency-ms 100] [--worker-concurrency 64] [--raw-seconds 5] [--markdown PATH]
//!         [--idempotency-keys on|off] [--events on|off] [--rate-limits on|off] [--sandbox on|off]
//!
//! Needs PostgreSQL and RabbitMQ on localhost (`TEST_DATABASE_URL`, `TEST_AMQP_URL` as in
//! the tests). It uses a database `verify_bench` and queues `bench.*`, made afresh each run.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::{Connection, PgConnection, PgPool};
use verify_tests::bench::cpu::{Cpu, Phase};
use verify_tests::bench::load::{LoadResult, post_all};
use verify_tests::bench::mixed::{self, Mixed};
use verify_tests::bench::report::Report;
use verify_tests::bench::wait_for_creates;
use verify_tests::bench::{Drain, Proc};
use verify_tests::bench::{floor, phones, raw};
use verify_tests::fake_twilio::{FakeConfig, FakeTwilio};
use verify_tests::harness::{admin_database_url, amqp_url, sibling_binary};

const KEY: &str = "bench-key-0123456789abcdef";
const QUEUE: &str = "bench.sms.send";
/// Signs the events the bench's receiver (the fake's) verifies.
const EVENTS_SECRET: &str = "whsec_YmVuY2gtZXZlbnRzLXNlY3JldC0wMTIzNDU2Nzg5YWJjZGVm";

struct Args {
    n: usize,
    concurrency: usize,
    twilio_latency: Duration,
    worker_concurrency: usize,
    raw_run: Duration,
    markdown: String,
    /// An `Idempotency-Key` on every start (the default; `--idempotency-keys off` to compare).
    keyed: bool,
    /// Event webhooks on (the default; `--events off` to compare).
    events: bool,
    /// The abuse limits on, as `bench::LIMITS` sizes them (the default; `--rate-limits off`
    /// to compare).
    limits: bool,
    /// The fake's peak RSS with its sandbox page open in Chromium (`--sandbox off` skips it).
    sandbox: bool,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        n: 20_000,
        concurrency: 64,
        twilio_latency: Duration::from_millis(100),
        worker_concurrency: 64,
        raw_run: Duration::from_secs(5),
        markdown: "target/bench.md".into(),
        keyed: true,
        events: true,
        limits: true,
        sandbox: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| v.parse::<u64>().map_err(|_| format!("{flag}: not a number: {v}"));
        match flag.as_str() {
            "--n" => a.n = number(value()?)? as usize,
            "--concurrency" => a.concurrency = number(value()?)? as usize,
            "--twilio-latency-ms" => a.twilio_latency = Duration::from_millis(number(value()?)?),
            "--worker-concurrency" => a.worker_concurrency = number(value()?)? as usize,
            "--raw-seconds" => a.raw_run = Duration::from_secs(number(value()?)?),
            "--markdown" => a.markdown = value()?,
            "--idempotency-keys" => a.keyed = on_off(&flag, &value()?)?,
            "--events" => a.events = on_off(&flag, &value()?)?,
            "--rate-limits" => a.limits = on_off(&flag, &value()?)?,
            "--sandbox" => a.sandbox = on_off(&flag, &value()?)?,
            other => {
                return Err(format!(
                    "unknown argument {other} (see the comment at the top of bench.rs)"
                ));
            }
        }
    }
    // Three bursts of n and a mixed one of n / 4 take 3.25 n distinct numbers of 100,000.
    if a.n == 0 || a.n > 30_000 || a.concurrency == 0 {
        return Err("--n must be 1 to 30000 and --concurrency at least 1".into());
    }
    Ok(a)
}

fn on_off(flag: &str, value: &str) -> Result<bool, String> {
    match value {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("{flag} takes on or off, not {value}")),
    }
}

/// `n` distinct valid US numbers starting at `from` (`+1{area}555xxxx`).
fn numbers(from: usize, n: usize) -> Vec<String> {
    const AREAS: [&str; 10] = ["415", "650", "408", "510", "212", "646", "718", "917", "312", "773"];
    (from..from + n)
        .map(|i| format!("+1{}555{:04}", AREAS[i / 10_000], i % 10_000))
        .collect()
}

struct Env {
    db_url: String,
    events: bool,
    limits: bool,
    api_port: u16,
    fake_base: String,
    fake_account: String,
    fake_token: String,
    worker_concurrency: usize,
    twilio_latency: Duration,
}

impl Env {
    fn spawn(&self, binary: &str, extra: &[(&str, String)]) -> Proc {
        let api_base = format!("http://127.0.0.1:{}", self.api_port);
        let mut cmd = std::process::Command::new(sibling_binary(binary));
        cmd.env_clear()
            .env("DATABASE_URL", &self.db_url)
            .env("AMQP_URL", amqp_url())
            .env("API_LISTEN", format!("127.0.0.1:{}", self.api_port))
            .env("WORKER_LISTEN", "127.0.0.1:0")
            .env("PUBLIC_BASE_URL", &api_base)
            .env("API_KEYS", KEY)
            .env("VERIFY_SECRET", "bench-secret-0123456789abcdef0123456789")
            .env("CODE_SEALING_KEYS", "bench-sealing-key-0123456789abcdef0123456789")
            .env("TWILIO_ACCOUNT_SID", &self.fake_account)
            .env("TWILIO_AUTH_TOKEN", &self.fake_token)
            .env("TWILIO_FROM", "+15005550006")
            .env("TWILIO_WHATSAPP_FROM", "+15005550007")
            .env("TWILIO_WHATSAPP_CONTENT_SID", "HX0123456789abcdef0123456789abcdef")
            .env("TWILIO_API_BASE", &self.fake_base)
            .env("SEND_QUEUE", QUEUE)
            .envs(verify_tests::bench::LIMITS)
            .env("RATE_LIMITS", if self.limits { "on" } else { "off" })
            .env("SMS_NUMBER_TYPES", "any")
            .env("WORKER_CONCURRENCY", self.worker_concurrency.to_string())
            // PostgreSQL allows 100 connections: the API, two workers and the bench stay under.
            .env(
                "DATABASE_MAX_CONNECTIONS",
                if binary == "verify-api" { "24" } else { "16" },
            )
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if self.events {
            // Events on, to the fake's receiver, which verifies every signature.
            cmd.env("EVENTS_URL", format!("{}/events", self.fake_base))
                .env("EVENTS_SECRET", EVENTS_SECRET);
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        Proc(cmd.spawn().unwrap_or_else(|e| panic!("starting {binary}: {e}")))
    }
}

async fn submitted(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM verifications WHERE delivery_status IN ('submitted', 'sent', 'delivered')")
        .fetch_one(pool)
        .await
        .unwrap_or(0)
}

/// Lets `workers` fresh workers drain the queue until `target` verifications are submitted.
/// Progress is read off the fake Twilio (in this process) until it has taken `target`
/// messages, and only then from PostgreSQL: counting rows every few milliseconds during
/// the drain would take CPU from the system under test.
async fn drain(
    env: &Env,
    fake: &FakeTwilio,
    pool: &PgPool,
    api: u32,
    workers: usize,
    target: i64,
    jobs: usize,
) -> (Drain, Phase) {
    let spawned = Instant::now();
    let cpu_before = Cpu::now(api, &[]);
    let before = fake.create_calls();
    let children: Vec<Proc> = (0..workers).map(|_| env.spawn("verify-worker", &[])).collect();
    // The drain is timed from the first Twilio call: process start-up is reported apart.
    let started = wait_for_creates(fake, before, target as u64).await;
    let startup = started - spawned;
    while submitted(pool).await < target {
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "the drain did not finish in 30 minutes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    let peak_rss_kib = children.iter().map(Proc::peak_rss_kib).collect();
    let pids: Vec<u32> = children.iter().map(|c| c.0.id()).collect();
    let phase = Phase {
        name: format!("drain, {workers} worker{}", if workers == 1 { "" } else { "s" }),
        unit: "send",
        ops: jobs,
        wall: spawned.elapsed(),
        cpu: Cpu::now(api, &pids).since(&cpu_before),
    };
    drop(children);
    let since = target - jobs as i64;
    let q: Vec<f64> = sqlx::query_scalar(
        "SELECT percentile_cont(ARRAY[0.5, 0.9, 0.99, 1.0]) WITHIN GROUP (ORDER BY extract(epoch FROM a.finished_at - v.created_at)) \
         FROM send_attempts a JOIN verifications v ON v.id = a.verification_id \
         WHERE a.outcome = 'submitted' AND v.seq > (SELECT coalesce(min(seq), 0) + $1 - 1 FROM verifications)",
    )
    .bind(since)
    .fetch_one(pool)
    .await
    .unwrap_or_else(|_| vec![0.0; 4]);
    let bound = workers as f64 * env.worker_concurrency as f64 / env.twilio_latency.as_secs_f64();
    let drained = Drain {
        workers,
        jobs,
        startup,
        elapsed,
        bound,
        to_submitted: [q[0], q[1], q[2], q[3]],
        peak_rss_kib,
    };
    (drained, phase)
}

/// Runs `load` and measures the CPU that every process used meanwhile.
async fn measured(
    api: u32,
    name: &str,
    unit: &'static str,
    load: impl Future<Output = LoadResult>,
) -> (LoadResult, Phase) {
    let (before, began) = (Cpu::now(api, &[]), Instant::now());
    let result = load.await;
    let phase = Phase {
        name: name.to_owned(),
        unit,
        ops: result.requests - result.errors,
        wall: began.elapsed(),
        cpu: Cpu::now(api, &[]).since(&before),
    };
    (result, phase)
}

/// Waits until every send is over (the worker the caller runs also drains the last burst,
/// whose sends raise events of their own), every event written is published (the table is
/// empty) and the events queue has none ready (that worker took them all).
async fn events_settled(pool: &PgPool) -> anyhow::Result<()> {
    let began = Instant::now();
    let conn = common::broker::connect(&amqp_url(), "bench").await?;
    let channel = conn.create_channel().await?;
    let queue = [format!("{QUEUE}.events")];
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM verifications \
             WHERE status = 'pending' AND delivery_status IN ('queued', 'sending'))",
        )
        .fetch_one(pool)
        .await?;
        let depth = common::broker::queue_depths(&channel, &queue).await?;
        if waiting == 0 && depth.iter().all(|d| d.messages_ready == 0) {
            conn.close(200, "ok".into()).await?;
            return Ok(());
        }
        anyhow::ensure!(
            began.elapsed() < Duration::from_secs(300),
            "events did not settle in 5 minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn fresh_database() -> anyhow::Result<(String, PgPool)> {
    let admin = admin_database_url();
    let mut conn = PgConnection::connect(&admin).await?;
    sqlx::query("DROP DATABASE IF EXISTS verify_bench WITH (FORCE)")
        .execute(&mut conn)
        .await?;
    sqlx::query("CREATE DATABASE verify_bench").execute(&mut conn).await?;
    let url = format!(
        "{}/verify_bench",
        admin.rsplit_once('/').map_or(admin.as_str(), |(s, _)| s)
    );
    // The services' own pool settings, so that the raw limits are not held back by a
    // client setting the services do without (see `common::db::pool`).
    let pool = common::db::pool(&url, 32, false)?;
    common::db::migrate(&pool).await?;
    Ok((url, pool))
}

async fn delete_queues() -> anyhow::Result<()> {
    let conn = common::broker::connect(&amqp_url(), "bench").await?;
    let channel = conn.create_channel().await?;
    for q in common::broker::Topology::new(QUEUE)
        .map_err(anyhow::Error::msg)?
        .with_events(common::settings::Schedule::default().0)
        .queues()
    {
        channel.queue_delete(q.as_str().into(), Default::default()).await?;
    }
    conn.close(200, "ok".into()).await?;
    Ok(())
}

fn machine(pg_version: &str) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024 / 1024);
    format!(
        "{cores} cores ({cpu}), {mem} GiB; {pg_version}; RabbitMQ on localhost; load generator, fake Twilio, API and workers on the same machine"
    )
}

async fn run(a: Args) -> anyhow::Result<Report> {
    let (db_url, pool) = fresh_database().await?;
    delete_queues().await?;
    let fake = FakeTwilio::start(FakeConfig {
        callbacks: false,
        events_secret: Some(common::standard_webhooks::EventSecret::parse(EVENTS_SECRET).map_err(anyhow::Error::msg)?),
        ..FakeConfig::default()
    })
    .await;
    fake.set_latency(a.twilio_latency);
    let pg_version: String = sqlx::query_scalar("SELECT split_part(version(), ' on ', 1)")
        .fetch_one(&pool)
        .await?;
    let mut report = Report {
        machine: machine(&pg_version),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        n: a.n,
        concurrency: a.concurrency,
        twilio_latency: a.twilio_latency,
        worker_concurrency: a.worker_concurrency,
        keyed: a.keyed,
        events_on: a.events,
        limits_on: a.limits,
        ..Report::default()
    };
    println!("measuring the raw limits ({} s each)…", a.raw_run.as_secs());
    report.raw = raw::measure(&pool, &amqp_url(), a.concurrency, a.raw_run).await?;
    report.floor = floor::measure(&pool, &amqp_url(), a.raw_run).await?;
    report.phones = tokio::task::spawn_blocking(phones::measure).await??;

    let api_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let env = Env {
        db_url,
        events: a.events,
        limits: a.limits,
        api_port,
        fake_base: fake.base_url.clone(),
        fake_account: fake.config().account_sid.clone(),
        fake_token: fake.config().auth_token.clone(),
        worker_concurrency: a.worker_concurrency,
        twilio_latency: a.twilio_latency,
    };
    report.fallback_after = Duration::from_secs(1);
    let fallback_after = report.fallback_after.as_secs().to_string();
    let api = env.spawn("verify-api", &[("FALLBACK_AFTER_SECONDS", fallback_after)]);
    let base = format!("http://127.0.0.1:{api_port}");
    let ready = Instant::now();
    while reqwest::get(format!("{base}/readyz"))
        .await
        .map_or(true, |r| r.status() != 200)
    {
        anyhow::ensure!(
            ready.elapsed() < Duration::from_secs(30),
            "verify-api did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let start_url = format!("{base}/v1/verifications");
    let bodies = |phones: &[String]| phones.iter().map(|p| json!({"phone_number": p})).collect::<Vec<_>>();

    let first = numbers(0, a.n);
    println!("burst of {} starts at concurrency {}…", a.n, a.concurrency);
    let api_pid = api.0.id();
    let load = post_all(&start_url, KEY, bodies(&first), a.concurrency, 202, a.keyed);
    let (starts, phase) = measured(api_pid, "first burst", "start", load).await;
    report.starts = starts;
    report.cpu.push(phase);
    println!("draining with 1 worker…");
    let (drained, phase) = drain(&env, &fake, &pool, api_pid, 1, a.n as i64, a.n).await;
    report.one_worker = drained;
    report.cpu.push(phase);

    let second = numbers(a.n, a.n);
    println!("second burst, draining with 2 workers…");
    let load = post_all(&start_url, KEY, bodies(&second), a.concurrency, 202, a.keyed);
    let (starts, phase) = measured(api_pid, "second burst", "start", load).await;
    report.starts_again = starts;
    report.cpu.push(phase);
    let failed = report.starts_again.errors;
    anyhow::ensure!(failed == 0, "{failed} starts of the second burst failed");
    let (drained, phase) = drain(&env, &fake, &pool, api_pid, 2, 2 * a.n as i64, a.n).await;
    report.two_workers = drained;
    report.cpu.push(phase);

    let mixed_phones = numbers(3 * a.n, a.n / 4);
    println!(
        "mixed-channel burst of {}, draining with 2 workers…",
        mixed_phones.len()
    );
    report.mixed_starts = post_all(
        &start_url,
        KEY,
        mixed::bodies(&mixed_phones),
        a.concurrency,
        202,
        a.keyed,
    )
    .await;
    let before = fake.create_calls();
    let workers: Vec<Proc> = (0..2).map(|_| env.spawn("verify-worker", &[])).collect();
    let elapsed = mixed::wait_drained(&fake, &pool, &mixed_phones, before).await;
    drop(workers);
    let (lost, twice) = mixed::tally(&fake, &mixed_phones);
    report.mixed = Mixed {
        numbers: mixed_phones.len(),
        requests: fake.create_calls() - before,
        elapsed,
        bound: 2.0 * a.worker_concurrency as f64 / a.twilio_latency.as_secs_f64(),
        lost,
        twice,
    };

    println!("{} checks at concurrency {}…", a.n, a.concurrency);
    let checks: Vec<_> = first
        .iter()
        .map(|p| json!({"phone_number": p, "code": "0000000"[..6].to_string()}))
        .collect();
    let check_url = format!("{base}/v1/verifications/check");
    let load = post_all(&check_url, KEY, checks, a.concurrency, 200, false);
    let (checked, phase) = measured(api_pid, "checks", "check", load).await;
    report.checks = checked;
    report.cpu.push(phase);

    println!("third burst while a retention sweep deletes the first (aged 40 days)…");
    sqlx::query("UPDATE verifications SET created_at = created_at - interval '40 days' WHERE phone_number = ANY($1)")
        .bind(&first)
        .execute(&pool)
        .await?;
    let third = numbers(2 * a.n, a.n);
    let sweep = async {
        let began = Instant::now();
        let swept = common::repo::sweep_older_than(&pool, 30).await;
        (swept, began.elapsed())
    };
    let (starts, (swept, took)) = tokio::join!(
        post_all(&start_url, KEY, bodies(&third), a.concurrency, 202, a.keyed),
        sweep
    );
    report.starts_during_sweep = starts;
    report.swept = (swept?.verifications, took);
    report.api_peak_rss_kib = api.peak_rss_kib();
    report.events = if !a.events {
        (0, 0, 0)
    } else {
        // The events of the last bursts are still to be delivered, and the last burst is still
        // to be sent: one worker does both, and finishes its deliveries under way when
        // stopped (SIGTERM, waited for).
        let worker = env.spawn("verify-worker", &[]);
        events_settled(&pool).await?;
        drop(worker);
        let scrape = verify_tests::harness::Scrape::fetch(&reqwest::Client::new(), &base).await;
        let published = scrape.value("verify_events_published_total", &[]).unwrap_or(0.0) as u64;
        let (received, verified) = fake.event_totals();
        (published, received, verified)
    };
    report.paused_prefixes = sqlx::query_scalar("SELECT prefix FROM prefix_pauses WHERE until > now() ORDER BY prefix")
        .fetch_all(&pool)
        .await?;
    drop(api);

    let messages = fake.messages();
    let mut per_number = std::collections::HashMap::<&str, usize>::new();
    for m in &messages {
        *per_number.entry(m.to.as_str()).or_default() += 1;
    }
    let all: Vec<&String> = first.iter().chain(&second).collect();
    report.sms_expected = all.len();
    report.sms_sent = all.iter().filter(|p| per_number.get(p.as_str()) == Some(&1)).count();
    report.numbers_texted_twice = per_number.values().filter(|n| **n > 1).count();
    report.numbers_never_texted = all.iter().filter(|p| !per_number.contains_key(p.as_str())).count();
    delete_queues().await?;
    if a.sandbox {
        println!("the fake with its sandbox page open, {} messages…", messages.len());
        report.sandbox =
            verify_tests::bench::sandbox::measure(messages.len(), 2 * a.worker_concurrency, a.twilio_latency).await?;
    }
    Ok(report)
}

#[tokio::main]
async fn main() -> ExitCode {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::from(2);
        }
    };
    let path = a.markdown.clone();
    match run(a).await {
        Ok(report) => {
            let text = report.markdown();
            println!("\n{text}");
            if let Err(e) = std::fs::write(&path, &text) {
                eprintln!("bench: cannot write {path}: {e}");
                return ExitCode::FAILURE;
            }
            println!("written to {path}");
            if report.outcome_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
