//! Starts the whole service for one test: its own PostgreSQL database, its own queue
//! names, the fake Twilio on a random port, the API and (optionally) a worker in process.
//!
//! Tests need PostgreSQL and RabbitMQ and fail loudly, never skip, when either is missing.
//! `TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`) names the
//! server whose databases the tests create; `TEST_AMQP_URL` the broker; `TEST_RABBITMQCTL`
//! (default `rabbitmqctl`) the command that reaches that broker's node, with which the tests
//! that wait for all work to be done count the messages a consumer holds unacknowledged.

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::fake_twilio::{FakeConfig, FakeTwilio};
use crate::watchdog::Watch;

pub const API_KEY: &str = "test-key-0123456789abcdef";
pub const VERIFY_SECRET: &str = "test-secret-0123456789abcdef-0123456789";
/// `CODE_SEALING_KEYS` of the apps the harness starts.
pub const CODE_SEALING_KEYS: &str = "test-sealing-key-0123456789abcdef-0123456789";
pub const FROM: &str = "+15005550006";
/// The event webhooks' signing secret in tests (`whsec_` + base64 of 35 bytes).
pub const EVENTS_SECRET: &str = "whsec_dGVzdC1ldmVudHMtc2VjcmV0LTAxMjM0NTY3ODlhYmNkZWY=";
/// How long a stopping test waits for its queues to be deleted, and for its database to be
/// dropped.
const CLEANUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs a cleanup step for at most [`CLEANUP_TIMEOUT`]; past it, says `unfinished` and what
/// is left behind.
async fn within_cleanup_timeout(unfinished: &str, step: impl std::future::Future<Output = ()>) {
    if tokio::time::timeout(CLEANUP_TIMEOUT, step).await.is_err() {
        eprintln!("{unfinished} within {CLEANUP_TIMEOUT:?}; left behind");
    }
}

pub fn admin_database_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn amqp_url() -> String {
    std::env::var("TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// The virtual host of a broker URL (the first of a list): its path, percent-decoded (`/`
/// when it has none).
fn amqp_vhost(list: &str) -> String {
    let url = common::broker::split_nodes(list).next().unwrap_or_default();
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = after_scheme
        .split_once('/')
        .map_or("", |(_, path)| path)
        .split(['?', '#'])
        .next()
        .unwrap_or("");
    if path.is_empty() {
        return "/".into();
    }
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%')
            .then(|| path.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(byte) => {
                decoded.push(byte);
                i += 3;
            }
            None => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// The command that reaches the test broker's node: `rabbitmqctl`, or the command line in
/// `TEST_RABBITMQCTL`.
pub fn rabbitmqctl_command() -> String {
    std::env::var("TEST_RABBITMQCTL").unwrap_or_else(|_| "rabbitmqctl".into())
}

/// Runs `<command> -q <args>` (`command` is a command line such as [`rabbitmqctl_command`],
/// split at spaces) and returns its output's rows, split at tabs.
async fn rabbitmqctl(command: &str, args: &[&str]) -> Vec<Vec<String>> {
    let mut words = command.split_whitespace();
    let program = words.next().expect("TEST_RABBITMQCTL is empty");
    let run = tokio::process::Command::new(program)
        .args(words)
        .arg("-q")
        .args(args)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .unwrap_or_else(|_| panic!("`{command} {}` did not answer within 30 s", args.join(" ")))
        .unwrap_or_else(|e| {
            panic!(
                "these tests count unacknowledged messages with `{command}` (set TEST_RABBITMQCTL \
                 to a command that reaches the broker's node): {e}"
            )
        });
    assert!(
        output.status.success(),
        "`{command} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split('\t').map(|f| f.trim().to_owned()).collect())
        .collect()
}

/// Settings that differ from the defaults for one test.
#[derive(Debug, Clone)]
pub struct Options {
    pub start_worker: bool,
    /// Event webhooks to the fake's receiver (see [`Options::with_events`]).
    pub events: bool,
    pub extra_env: Vec<(&'static str, String)>,
    pub fake: FakeConfig,
    /// The broker (`AMQP_URL`, a node list for a cluster) and the command line of
    /// `rabbitmqctl` that reaches it; by default `TEST_AMQP_URL` and `TEST_RABBITMQCTL`.
    pub broker: (String, String),
}

impl Default for Options {
    fn default() -> Self {
        Self {
            start_worker: true,
            events: false,
            extra_env: vec![
                ("RETRY_INITIAL_MS", "20".into()),
                ("RETRY_MAX_DELAY_MS", "200".into()),
                ("TWILIO_TIMEOUT_MS", "1000".into()),
                // The least the lease may be with these settings: a killed worker's sends are
                // taken over soon.
                ("SEND_LEASE_SECONDS", "7".into()),
                ("SHUTDOWN_GRACE_SECONDS", "5".into()),
                // Most tests start and check many times from one address; the abuse tests
                // switch the limits on.
                ("RATE_LIMITS", "off".into()),
                // The fake's magic numbers (+1500555…) are personal numbers.
                ("SMS_NUMBER_TYPES", "mobile,fixed_line_or_mobile,personal_number".into()),
            ],
            fake: FakeConfig {
                timeout_hold: Duration::from_secs(3),
                ..FakeConfig::default()
            },
            broker: (amqp_url(), rabbitmqctl_command()),
        }
    }
}

impl Options {
    pub fn env(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.extra_env.retain(|(n, _)| *n != name);
        self.extra_env.push((name, value.into()));
        self
    }

    /// Events on, POSTed to the fake's receiver, which verifies them with [`EVENTS_SECRET`].
    pub fn with_events(mut self) -> Self {
        self.events = true;
        self.fake.events_secret =
            Some(common::standard_webhooks::EventSecret::parse(EVENTS_SECRET).expect("test secret"));
        self
    }

    pub fn without_worker(mut self) -> Self {
        self.start_worker = false;
        self
    }
}

/// One running service, for one test.
pub struct TestApp {
    pub api_base: String,
    pub http: reqwest::Client,
    pub fake: FakeTwilio,
    pub pool: PgPool,
    pub queue: String,
    pub database_name: String,
    /// Ends the suite with the test's name and step if the test hangs.
    pub watch: Watch,
    env: Vec<(String, String)>,
    /// `AMQP_URL` of this app, and the `rabbitmqctl` command line that reaches its broker.
    amqp_url: String,
    rabbitmqctl: String,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

async fn create_database() -> (String, String) {
    let admin = admin_database_url();
    let mut conn = PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is required for these tests and is not reachable at {admin}: {e}"));
    let name = format!("verify_test_{}", Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("creating the test database");
    let url = match admin.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{name}"),
        None => panic!("TEST_DATABASE_URL must end with a database name"),
    };
    (name, url)
}

async fn check_broker(url: &str) {
    let conn = common::broker::connect(url, "verify-tests")
        .await
        .unwrap_or_else(|e| panic!("RabbitMQ is required for these tests and is not reachable at {url}: {e}"));
    drop(conn.close(200, "ok".into()).await);
}

/// Logs through the test harness's capture, so only failing tests show them.
fn init_test_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,lapin=warn"));
    drop(
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init(),
    );
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    let watch = Watch::start();
    let (database_name, database_url) = create_database().await;
    let (amqp_url, rabbitmqctl) = options.broker.clone();
    check_broker(&amqp_url).await;
    let fake = FakeTwilio::start(options.fake.clone()).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding the API");
    let api_base = format!("http://{}", listener.local_addr().expect("API address"));
    let queue = format!("test.{}.sms.send", Uuid::new_v4().simple());
    let mut env: Vec<(String, String)> = [
        ("DATABASE_URL", database_url.as_str()),
        ("AMQP_URL", &amqp_url),
        ("API_LISTEN", "127.0.0.1:0"),
        ("WORKER_LISTEN", "127.0.0.1:0"),
        ("API_KEYS", &format!("{API_KEY},second-key-0123456789")),
        ("VERIFY_SECRET", VERIFY_SECRET),
        ("CODE_SEALING_KEYS", CODE_SEALING_KEYS),
        ("PUBLIC_BASE_URL", &api_base),
        ("TWILIO_ACCOUNT_SID", &options.fake.account_sid),
        ("TWILIO_AUTH_TOKEN", &options.fake.auth_token),
        ("TWILIO_FROM", FROM),
        ("TWILIO_API_BASE", &fake.base_url),
        ("SEND_QUEUE", &queue),
        ("DATABASE_MAX_CONNECTIONS", "8"),
        ("LOG_FORMAT", "text"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    if options.events {
        env.push(("EVENTS_URL".into(), format!("{}/events", fake.base_url)));
        env.push(("EVENTS_SECRET".into(), EVENTS_SECRET.into()));
    }
    for (name, value) in &options.extra_env {
        env.retain(|(n, _)| n != name);
        env.push((name.to_string(), value.clone()));
    }
    init_test_logging();

    let shutdown = CancellationToken::new();
    let api_config = common::settings::from_vars::<verify_api::ApiConfig>(env.clone()).expect("test API settings");
    let api = verify_api::Application::with_listener(api_config, listener, &shutdown)
        .await
        .expect("building the API");
    let pool = PgPool::connect(&database_url)
        .await
        .expect("connecting to the test database");
    let mut app = TestApp {
        api_base,
        http: reqwest::Client::new(),
        fake,
        pool,
        queue,
        database_name,
        watch,
        env,
        amqp_url,
        rabbitmqctl,
        tasks: vec![tokio::spawn(api.run(shutdown.clone()))],
        shutdown,
    };
    if options.start_worker {
        app.start_worker().await;
    }
    app
}

impl TestApp {
    /// Starts one more worker in this process (each is a separate consumer).
    pub async fn start_worker(&mut self) {
        let config =
            common::settings::from_vars::<verify_worker::WorkerConfig>(self.env.clone()).expect("test worker settings");
        let worker = verify_worker::Worker::build(config, &self.shutdown)
            .await
            .expect("building the worker");
        self.tasks.push(tokio::spawn(worker.run(self.shutdown.clone())));
    }

    /// The settings this app runs with, for starting real processes against it.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.api_base))
            .bearer_auth(API_KEY)
            .json(body)
            .send()
            .await
            .expect("calling the API")
    }

    pub async fn start(&self, phone: &str) -> reqwest::Response {
        self.post_json("/v1/verifications", &json!({"phone_number": phone}))
            .await
    }

    /// Starts a verification that must be accepted; returns its id.
    pub async fn start_ok(&self, phone: &str) -> Uuid {
        let response = self.start(phone).await;
        assert_eq!(response.status(), 202, "start for {phone}");
        let body: Value = response.json().await.expect("start body");
        body["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("an id in the start body")
    }

    pub async fn check(&self, phone: &str, code: &str) -> reqwest::Response {
        self.post_json("/v1/verifications/check", &json!({"phone_number": phone, "code": code}))
            .await
    }

    pub async fn get_verification(&self, id: Uuid) -> Value {
        let response = self
            .http
            .get(format!("{}/v1/verifications/{id}", self.api_base))
            .bearer_auth(API_KEY)
            .send()
            .await
            .expect("calling the API");
        assert_eq!(response.status(), 200);
        response.json().await.expect("verification body")
    }

    /// Waits for the `n`-th SMS to `phone` and returns its code (the last run of digits).
    pub async fn wait_for_code(&self, phone: &str, n: usize) -> String {
        self.watch.step(&format!("waiting for SMS #{n} to {phone}"));
        self.fake
            .wait_until(Duration::from_secs(20), &format!("SMS #{n} to {phone}"), |f| {
                f.messages_to(phone).len() >= n
            })
            .await;
        let body = self.fake.messages_to(phone)[n - 1].body.clone();
        code_in(&body).unwrap_or_else(|| panic!("no code in {body:?}"))
    }

    /// Polls the API until the verification's field `field` equals `value`.
    pub async fn wait_for_field(&self, id: Uuid, field: &str, value: &str) -> Value {
        self.watch.step(&format!("waiting for {field} = {value}"));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.get_verification(id).await;
            if v[field] == value {
                return v;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("{field} of {id} never became {value}: {v}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The worker settings of this app (for the `dead-letters` commands, or a process).
    pub fn worker_config(&self) -> verify_worker::WorkerConfig {
        common::settings::from_vars::<verify_worker::WorkerConfig>(self.env.clone()).expect("test worker settings")
    }

    /// The code hasher the API of this app uses.
    pub fn hasher(&self) -> common::code::CodeHasher {
        common::code::CodeHasher::new(common::settings::Secret::new(VERIFY_SECRET))
    }

    /// The sealer the API and the workers of this app use.
    pub fn sealer(&self) -> common::seal::Sealer {
        common::seal::Sealer::from_list(CODE_SEALING_KEYS).expect("test sealing keys")
    }

    /// Publishes a job straight into the send queue, as the API (or a duplicate) would.
    pub async fn publish_job(&self, job: &common::job::SendJob) {
        let conn = common::broker::connect(&self.amqp_url, "verify-tests")
            .await
            .expect("broker");
        let channel = conn.create_channel().await.expect("channel");
        channel.confirm_select(Default::default()).await.expect("confirms");
        let props = common::broker::job_properties(job);
        common::broker::publish_confirmed(&channel, &self.queue, &job.to_bytes(), props, Duration::from_secs(5))
            .await
            .expect("publishing a job");
        drop(conn.close(200, "ok".into()).await);
    }

    /// Messages waiting in all retry queues together.
    pub async fn retry_depth(&self) -> u32 {
        let topology = self.topology();
        let mut total = 0;
        for tier in common::broker::RETRY_TIERS {
            total += self.queue_depth(&topology.retry_queue(tier)).await;
        }
        total
    }

    /// Starts `verify-worker` as a real process with this app's settings; its log goes to a
    /// file in the temporary directory (named in the panic message if it fails to start).
    pub fn spawn_worker_process(&self) -> Process {
        self.spawn_process("verify-worker", &[]).0
    }

    /// Starts a binary of the workspace with this app's settings plus `overrides`; returns
    /// the child and the file its JSON log goes to.
    pub fn spawn_process(&self, name: &str, overrides: &[(&str, &str)]) -> (Process, std::path::PathBuf) {
        let binary = sibling_binary(name);
        let log = std::env::temp_dir().join(format!("{name}-{}.log", Uuid::new_v4().simple()));
        let file = std::fs::File::create(&log).expect("log file");
        let child = std::process::Command::new(&binary)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info,lapin=warn")
            .envs(overrides.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {} (log {}): {e}", binary.display(), log.display()));
        (Process(child), log)
    }

    /// Starts `verify-api` and `verify-worker` as processes on free ports, with this app's
    /// settings plus `extra`, and waits until the API is ready and the worker consumes.
    pub async fn spawn_service_processes(&self, extra: &[(&str, &str)]) -> ServiceProcesses {
        let (api_port, worker_port) = (free_port(), free_port());
        let api_base = format!("http://127.0.0.1:{api_port}");
        let worker_base = format!("http://127.0.0.1:{worker_port}");
        let (api_listen, worker_listen) = (format!("127.0.0.1:{api_port}"), format!("127.0.0.1:{worker_port}"));
        let mut overrides = vec![
            ("API_LISTEN", api_listen.as_str()),
            ("WORKER_LISTEN", worker_listen.as_str()),
            ("PUBLIC_BASE_URL", api_base.as_str()),
        ];
        overrides.extend_from_slice(extra);
        let (api, api_log) = self.spawn_process("verify-api", &overrides);
        let (worker, worker_log) = self.spawn_process("verify-worker", &overrides);
        self.wait_for_consumers(1).await;
        self.wait_until_ready(&api_base, &api_log).await;
        ServiceProcesses {
            api,
            worker,
            api_base,
            worker_base,
            api_log,
            worker_log,
        }
    }

    /// Waits (20 s at most) until the API process at `base` answers `/readyz` with 200.
    pub async fn wait_until_ready(&self, base: &str, log: &std::path::Path) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let ready = || async {
            let answer = self
                .http
                .get(format!("{base}/readyz"))
                .timeout(Duration::from_secs(5))
                .send()
                .await;
            answer.is_ok_and(|r| r.status() == 200)
        };
        while !ready().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the API process at {base} never became ready (log {})",
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// This app's queues (with the event queues when events are on).
    pub fn topology(&self) -> common::broker::Topology {
        self.worker_config().shared.topology
    }

    /// The dead-letter queue's name.
    pub fn dead_queue(&self) -> String {
        self.topology().dead_letter_queue()
    }

    /// Messages ready in a queue, from a passive declare. Not the messages a consumer holds
    /// unacknowledged: to know that a queue is done with, see [`Self::unfinished`].
    pub async fn queue_depth(&self, queue: &str) -> u32 {
        self.depths(&[queue.to_owned()]).await[0].messages_ready
    }

    /// Ready messages and consumers of each of `queues`, from passive declares.
    async fn depths(&self, queues: &[String]) -> Vec<common::broker::QueueDepth> {
        let read = async {
            let conn = common::broker::connect(&self.amqp_url, "verify-tests")
                .await
                .expect("broker");
            let channel = conn.create_channel().await.expect("channel");
            let depths = common::broker::queue_depths(&channel, queues)
                .await
                .expect("queue depth");
            drop(conn.close(200, "ok".into()).await);
            depths
        };
        tokio::time::timeout(Duration::from_secs(20), read)
            .await
            .unwrap_or_else(|_| panic!("RabbitMQ did not tell the depth of {queues:?} within 20 s"))
    }

    /// The send queue and every retry queue: where a job waits until it is finished.
    pub fn job_queues(&self) -> Vec<String> {
        let topology = self.topology();
        let mut queues = vec![self.queue.clone()];
        queues.extend(
            common::broker::RETRY_TIERS
                .iter()
                .map(|tier| topology.retry_queue(*tier)),
        );
        queues
    }

    /// Messages of `queues` that are not done with: ready in one of them, or delivered to a
    /// consumer and not acknowledged yet (a job a worker is working on). 0 means that nothing
    /// in them will be worked on any more (unless something publishes to them again).
    ///
    /// A passive declare counts only ready messages, and `rabbitmqctl list_queues` reads
    /// quorum queues' counts from statistics refreshed every few seconds (it shows an empty
    /// queue while a consumer holds its messages), so the unacknowledged messages are counted
    /// on the consumers' channels (`list_consumers`, `list_channels`), which answer live.
    /// The ready messages are read before and after, so that a message moving between the
    /// queue and a consumer meanwhile is seen in one of the readings.
    pub async fn unfinished(&self, queues: &[String]) -> u32 {
        let before = self.depths(queues).await;
        let ready: u32 = before.iter().map(|d| d.messages_ready).sum();
        let consumers: u32 = before.iter().map(|d| d.consumers).sum();
        if ready > 0 || consumers == 0 {
            // Without a consumer, nothing is held unacknowledged (the tests take no message
            // with `basic.get` and keep it).
            return ready;
        }
        let vhost = amqp_vhost(&self.amqp_url);
        let consumers_of = [
            "list_consumers",
            "-p",
            &vhost,
            "--no-table-headers",
            "queue_name",
            "channel_pid",
        ];
        let channels_of = ["list_channels", "--no-table-headers", "pid", "messages_unacknowledged"];
        let (listed, channels) = tokio::join!(
            rabbitmqctl(&self.rabbitmqctl, &consumers_of),
            rabbitmqctl(&self.rabbitmqctl, &channels_of)
        );
        let ours: Vec<&str> = listed
            .iter()
            .filter(|row| row.len() == 2 && queues.contains(&row[0]))
            .map(|row| row[1].as_str())
            .collect();
        let holding: std::collections::HashSet<&str> = ours.iter().copied().collect();
        let unacked: u32 = channels
            .iter()
            .filter(|row| row.len() == 2 && holding.contains(row[0].as_str()))
            .map(|row| {
                row[1]
                    .parse::<u32>()
                    .unwrap_or_else(|_| panic!("unacknowledged count {:?} of channel {}", row[1], row[0]))
            })
            .sum();
        // A consumer that was cancelled but still holds messages counts in a quorum queue's
        // consumers and is no longer listed: count it as one unfinished message.
        let unlisted = consumers.saturating_sub(ours.len() as u32);
        let after: u32 = self.depths(queues).await.iter().map(|d| d.messages_ready).sum();
        unacked + unlisted + after
    }

    /// Jobs not finished yet, in the send queue and the retry queues (see [`Self::unfinished`]).
    pub async fn unfinished_jobs(&self) -> u32 {
        self.unfinished(&self.job_queues()).await
    }

    /// Waits (20 s at most) until every job is finished: none ready in the send queue or a
    /// retry queue, none held by a worker. What a test asserts did not happen then cannot
    /// happen any more because of the jobs published so far.
    pub async fn wait_until_idle(&self) {
        self.watch.step("waiting until every job is finished");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let left = self.unfinished_jobs().await;
            if left == 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{left} jobs still unfinished in {:?} after 20 s",
                self.job_queues()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `n` consumers are attached to the send queue (a worker is ready).
    pub async fn wait_for_consumers(&self, n: u32) {
        self.watch.step(&format!("waiting for {n} consumers"));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let conn = common::broker::connect(&self.amqp_url, "verify-tests")
                .await
                .expect("broker");
            let channel = conn.create_channel().await.expect("channel");
            let depth = common::broker::queue_depths(&channel, std::slice::from_ref(&self.queue)).await;
            drop(conn.close(200, "ok".into()).await);
            if depth.is_ok_and(|d| d[0].consumers == n) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never {n} consumers on {}",
                self.queue
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `queue` holds exactly `n` ready messages; for `n` = 0, until it is empty:
    /// no message ready and none delivered to a consumer and not acknowledged yet.
    pub async fn wait_for_queue_depth(&self, queue: &str, n: u32) {
        self.watch.step(&format!("waiting for {n} messages in {queue}"));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let depth = if n == 0 {
                self.unfinished(&[queue.to_owned()]).await
            } else {
                self.queue_depth(queue).await
            };
            if depth == n {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{queue} holds {depth} messages, never {n}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the service, then removes this test's database and queues.
    pub async fn stop(self) {
        self.watch.step("stopping the service");
        self.shutdown.cancel();
        let queues = self.topology().queues();
        for task in self.tasks {
            match tokio::time::timeout(Duration::from_secs(15), task).await {
                Ok(Ok(Ok(()))) => {}
                other => panic!("a component did not stop cleanly: {other:?}"),
            }
        }
        self.watch.step("closing the test's pool");
        self.pool.close().await;
        // Bounded: a broker or database that stalls here leaves leftovers (which `.ci/run`
        // deletes before the next run) rather than a hung suite.
        self.watch.step("deleting the test's queues");
        let queues_deleted = async {
            if let Ok(conn) = common::broker::connect(&self.amqp_url, "verify-tests").await {
                if let Ok(channel) = conn.create_channel().await {
                    for q in queues {
                        drop(channel.queue_delete(q.as_str().into(), Default::default()).await);
                    }
                }
                drop(conn.close(200, "ok".into()).await);
            }
        };
        within_cleanup_timeout("the test's queues were not deleted", queues_deleted).await;
        self.watch.step("deleting the test's database");
        let database_dropped = async {
            if let Ok(mut conn) = PgConnection::connect(&admin_database_url()).await {
                let drop_db = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.database_name);
                drop(sqlx::query(sqlx::AssertSqlSafe(drop_db)).execute(&mut conn).await);
            }
        };
        within_cleanup_timeout("the test's database was not dropped", database_dropped).await;
    }
}

/// `verify-api` and `verify-worker` running as processes.
/// A child process of a test, killed when dropped: a test that fails midway leaves no
/// service behind holding connections (PostgreSQL allows 100).
pub struct Process(pub std::process::Child);

impl std::ops::Deref for Process {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Process {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Already ended (waited for) in most tests; then both are no-ops that may fail.
        drop(self.0.kill());
        drop(self.0.wait());
    }
}

pub struct ServiceProcesses {
    pub api: Process,
    pub worker: Process,
    pub api_base: String,
    pub worker_base: String,
    pub api_log: std::path::PathBuf,
    pub worker_log: std::path::PathBuf,
}

impl ServiceProcesses {
    /// SIGTERM to both; each must exit 0.
    pub fn stop(&mut self) {
        for child in [&mut self.api, &mut self.worker] {
            std::process::Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .unwrap();
            assert_eq!(
                child.wait().unwrap().code(),
                Some(0),
                "a process did not stop cleanly on SIGTERM"
            );
        }
    }
}

/// A binary of this workspace, built beside this executable (`cargo test --workspace` builds
/// every binary of the workspace before running any test).
/// A port of 127.0.0.1 that was free a moment ago, for a process to listen on.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

pub fn sibling_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("executable path");
    // A binary sits beside the others; a test executable one level down, in deps/.
    let beside = exe.parent().expect("target directory");
    [
        beside.join(name),
        beside.parent().map(|d| d.join(name)).unwrap_or_default(),
    ]
    .into_iter()
    .find(|p| p.exists())
    .unwrap_or_else(|| {
        panic!(
            "{name} is missing beside {}: build the workspace first",
            beside.display()
        )
    })
}

/// One sample of a scrape: metric name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// A Prometheus text scrape, parsed into samples.
pub struct Scrape {
    pub text: String,
    samples: Vec<Sample>,
}

impl Scrape {
    /// Scrapes `{base}/metrics`.
    pub async fn fetch(http: &reqwest::Client, base: &str) -> Self {
        let response = http.get(format!("{base}/metrics")).send().await;
        let text = response
            .expect("scraping /metrics")
            .text()
            .await
            .expect("the scrape's body");
        Self::parse(text)
    }

    pub fn parse(text: String) -> Self {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                let (name, labels) = match series.split_once('{') {
                    Some((name, rest)) => (name, rest.trim_end_matches('}')),
                    None => (series, ""),
                };
                let labels = labels
                    .split(',')
                    .filter_map(|kv| {
                        let (k, v) = kv.split_once('=')?;
                        Some((k.to_owned(), v.trim_matches('"').to_owned()))
                    })
                    .collect();
                Some((name.to_owned(), labels, value.parse().ok()?))
            })
            .collect();
        Self { text, samples }
    }

    /// The sum of the samples of `name` that carry all of `labels`; `None` if there is none.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<f64> = self
            .samples
            .iter()
            .filter(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v)))
            .map(|(_, _, v)| *v)
            .collect();
        (!matching.is_empty()).then(|| matching.iter().sum())
    }

    /// Whether the scrape has a metric family `name` (histograms count by their base name).
    pub fn has_family(&self, name: &str) -> bool {
        self.text.lines().any(|l| l.starts_with(&format!("# TYPE {name} ")))
    }
}

/// The code in an SMS body: its last run of digits.
pub fn code_in(body: &str) -> Option<String> {
    body.rsplit(|c: char| !c.is_ascii_digit())
        .find(|s| !s.is_empty())
        .map(str::to_owned)
}
