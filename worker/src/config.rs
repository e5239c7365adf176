//! `verify-worker`'s settings: one table for `--help` and for reading.

use std::net::SocketAddr;
use std::time::Duration;

use common::broker::Topology;
use common::phone::PhoneNumber;
use common::seal::Sealer;
use common::settings::{
    Env, Secret, Setting, SettingError, account_sid, amqp_url, database_url, log_format, public_base_url,
};
use common::twilio_sid::is_sid;

use crate::retry::RetryPolicy;

pub const SETTINGS: &[Setting] = &[
    Setting::with_default(
        "DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/verify",
        "PostgreSQL URL",
    ),
    Setting::with_default(
        "AMQP_URL",
        "amqp://guest:guest@127.0.0.1:5672/%2f",
        "RabbitMQ URL (the vhost is part of it)",
    ),
    Setting::with_default(
        "WORKER_LISTEN",
        "127.0.0.1:9091",
        "address of the worker's /healthz, /readyz and /metrics",
    ),
    Setting::required(
        "CODE_SEALING_KEYS",
        "comma-separated keys, at least 32 bytes each, that open the codes in send jobs (the same list as verify-api's); the first seals, every one opens (rotation: README); never logged",
    ),
    Setting::with_default(
        "PUBLIC_BASE_URL",
        "http://127.0.0.1:8080",
        "the API's external URL; StatusCallback points at it",
    ),
    Setting::required("TWILIO_ACCOUNT_SID", "AC + 32 hex digits"),
    Setting::required("TWILIO_AUTH_TOKEN", "Basic-auth password of Twilio's REST API"),
    Setting::with_default(
        "TWILIO_FROM",
        "",
        "sender number (E.164); this or TWILIO_MESSAGING_SERVICE_SID is required",
    ),
    Setting::with_default(
        "TWILIO_MESSAGING_SERVICE_SID",
        "",
        "MG + 32 hex digits; used instead of TWILIO_FROM when set",
    ),
    Setting::with_default(
        "TWILIO_API_BASE",
        "https://api.twilio.com",
        "where Twilio's Messages API lives",
    ),
    Setting::with_default("TWILIO_TIMEOUT_MS", "10000", "longest wait for one Twilio call"),
    Setting::with_default(
        "WORKER_CONCURRENCY",
        "64",
        "sends in flight per worker (RabbitMQ prefetch), 1 to 1000",
    ),
    Setting::with_default(
        "SEND_MAX_ATTEMPTS",
        "5",
        "Twilio calls per verification before its delivery is failed, 1 to 20",
    ),
    Setting::with_default(
        "SMS_TEMPLATE",
        "Your verification code is {code}",
        "message body; must contain {code}",
    ),
    Setting::with_default(
        "SEND_QUEUE",
        "sms.send",
        "name of the send queue; retry and dead-letter queues are named after it",
    ),
    Setting::with_default(
        "RETRY_INITIAL_MS",
        "2000",
        "first retry delay after a transient Twilio error (each delay gets ±50 % jitter)",
    ),
    Setting::with_default(
        "RETRY_MULTIPLIER",
        "4.0",
        "growth of the retry delay per attempt, 1.0 to 10.0",
    ),
    Setting::with_default("RETRY_MAX_DELAY_MS", "300000", "longest retry delay"),
    Setting::with_default(
        "RETRY_INPROCESS_MAX_MS",
        "1000",
        "delays up to this are waited in the worker; longer ones in a delay queue",
    ),
    Setting::with_default(
        "MIN_USEFUL_LIFETIME_SECONDS",
        "30",
        "no SMS is sent when less of the code's lifetime than this is left",
    ),
    Setting::with_default(
        "SEND_LEASE_SECONDS",
        "20",
        "how long a worker holds a send (no other worker calls Twilio for it meanwhile); at least TWILIO_TIMEOUT_MS + RETRY_INPROCESS_MAX_MS + 5 s",
    ),
    Setting::with_default("DATABASE_MAX_CONNECTIONS", "16", "PostgreSQL connections in the pool"),
    Setting::with_default(
        "SHUTDOWN_GRACE_SECONDS",
        "30",
        "longest wait for in-flight sends on SIGTERM",
    ),
    common::retention::SETTING,
    Setting::with_default(
        "LOG_FORMAT",
        "auto",
        "json, text, or auto (json unless stderr is a terminal)",
    ),
    Setting::with_default(
        "WEBOTP_DOMAIN",
        "",
        "when set (example.com), adds the last line '@example.com #123456' that WebOTP and phones' autofill read",
    ),
    Setting::with_default(
        "WORKER_ID",
        "",
        "name of this worker in the send_attempts table (default: host name, process id and a random part)",
    ),
];

/// Who the SMS is from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sender {
    From(String),
    MessagingService(String),
}

/// Everything `verify-worker` reads at start, validated.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub database_url: Secret,
    pub amqp_url: Secret,
    pub listen: SocketAddr,
    pub public_base_url: String,
    /// `CODE_SEALING_KEYS`.
    pub sealer: Sealer,
    pub twilio_account_sid: String,
    pub twilio_auth_token: Secret,
    pub sender: Sender,
    pub twilio_api_base: String,
    pub twilio_timeout: Duration,
    pub concurrency: u16,
    pub sms_template: String,
    pub webotp_domain: Option<String>,
    pub worker_id: String,
    pub topology: Topology,
    pub retry: RetryPolicy,
    /// How long a worker holds a send (`SEND_LEASE_SECONDS`).
    pub send_lease: Duration,
    pub database_max_connections: u32,
    pub shutdown_grace: Duration,
    /// `RETENTION_DAYS`.
    pub retention_days: u32,
    pub log_format: String,
}

/// What a lease must cover beyond a Twilio call and an in-process wait: the database writes
/// around them, and clocks that differ between PostgreSQL and the worker.
pub const LEASE_MARGIN: Duration = Duration::from_secs(5);

impl WorkerConfig {
    pub fn from_env(env: &Env) -> Result<Self, SettingError> {
        let config = Self::read(env)?;
        config.check_lease()?;
        Ok(config)
    }

    /// A lease is renewed before each Twilio call, so between two renewals a worker makes
    /// one call (at most `TWILIO_TIMEOUT_MS`) and waits in process (at most
    /// `RETRY_INPROCESS_MAX_MS`). A lease shorter than that could run out while the worker
    /// still works on the send, and a second worker could call Twilio for it too.
    fn check_lease(&self) -> Result<(), SettingError> {
        let needed = self.twilio_timeout + self.retry.in_process_max + LEASE_MARGIN;
        if self.send_lease < needed {
            return Err(SettingError::new(
                "SEND_LEASE_SECONDS",
                format!(
                    "must be at least TWILIO_TIMEOUT_MS + RETRY_INPROCESS_MAX_MS + 5 s = {} s, got {} s",
                    needed.as_secs_f64().ceil(),
                    self.send_lease.as_secs()
                ),
            ));
        }
        Ok(())
    }

    fn read(env: &Env) -> Result<Self, SettingError> {
        Ok(Self {
            database_url: database_url(env)?,
            amqp_url: amqp_url(env)?,
            listen: env.parse("WORKER_LISTEN")?,
            public_base_url: public_base_url(env)?,
            sealer: Sealer::from_list(&env.string(common::seal::SETTING_NAME)?)?,
            twilio_account_sid: account_sid(env)?,
            twilio_auth_token: Secret::new(env.string("TWILIO_AUTH_TOKEN")?),
            sender: sender(env)?,
            twilio_api_base: api_base(env)?,
            twilio_timeout: Duration::from_millis(env.number_in("TWILIO_TIMEOUT_MS", 100..=120_000)?),
            concurrency: env.number_in("WORKER_CONCURRENCY", 1..=1000)?,
            sms_template: sms_template(env)?,
            webotp_domain: webotp_domain(env)?,
            worker_id: env.optional("WORKER_ID").unwrap_or_else(default_worker_id),
            topology: Topology::new(&env.string("SEND_QUEUE")?).map_err(|e| SettingError::new("SEND_QUEUE", e))?,
            retry: RetryPolicy {
                initial: Duration::from_millis(env.number_in("RETRY_INITIAL_MS", 1..=600_000)?),
                multiplier: env.number_in("RETRY_MULTIPLIER", 1.0..=10.0)?,
                max_delay: Duration::from_millis(env.number_in("RETRY_MAX_DELAY_MS", 1..=3_600_000)?),
                max_attempts: env.number_in("SEND_MAX_ATTEMPTS", 1..=20)?,
                in_process_max: Duration::from_millis(env.number_in("RETRY_INPROCESS_MAX_MS", 0..=60_000)?),
                min_useful_lifetime: Duration::from_secs(env.number_in("MIN_USEFUL_LIFETIME_SECONDS", 0..=3600)?),
            },
            send_lease: Duration::from_secs(env.number_in("SEND_LEASE_SECONDS", 1..=3600)?),
            database_max_connections: env.number_in("DATABASE_MAX_CONNECTIONS", 1..=1000)?,
            shutdown_grace: Duration::from_secs(env.number_in("SHUTDOWN_GRACE_SECONDS", 0..=3600)?),
            retention_days: common::retention::days(env)?,
            log_format: log_format(env)?,
        })
    }
}

fn sender(env: &Env) -> Result<Sender, SettingError> {
    if let Some(sid) = env.optional("TWILIO_MESSAGING_SERVICE_SID") {
        if !is_sid(&sid, "MG") {
            return Err(SettingError::new(
                "TWILIO_MESSAGING_SERVICE_SID",
                "must be MG followed by 32 hex digits",
            ));
        }
        return Ok(Sender::MessagingService(sid));
    }
    let from = env.optional("TWILIO_FROM").ok_or_else(|| {
        SettingError::new(
            "TWILIO_FROM",
            "is required when TWILIO_MESSAGING_SERVICE_SID is not set",
        )
    })?;
    PhoneNumber::parse(&from)
        .map(|p| Sender::From(p.as_str().to_owned()))
        .map_err(|e| SettingError::new("TWILIO_FROM", e.to_string()))
}

fn api_base(env: &Env) -> Result<String, SettingError> {
    let raw = env.string("TWILIO_API_BASE")?;
    let base = raw.trim_end_matches('/');
    match url::Url::parse(base) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Ok(base.to_owned()),
        _ => Err(SettingError::new(
            "TWILIO_API_BASE",
            format!("must be an http(s) URL, got {raw:?}"),
        )),
    }
}

fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_owned());
    format!("{host}-{}-{:04x}", std::process::id(), rand::random::<u16>())
}

fn webotp_domain(env: &Env) -> Result<Option<String>, SettingError> {
    match env.optional("WEBOTP_DOMAIN") {
        Some(d) if !crate::sms::is_webotp_domain(&d) => Err(SettingError::new(
            "WEBOTP_DOMAIN",
            "must be a host name such as example.com (no scheme, no path)",
        )),
        other => Ok(other),
    }
}

fn sms_template(env: &Env) -> Result<String, SettingError> {
    let template = env.string("SMS_TEMPLATE")?;
    if !template.contains("{code}") {
        return Err(SettingError::new("SMS_TEMPLATE", "must contain {code}"));
    }
    if template.chars().count() > 1500 {
        return Err(SettingError::new(
            "SMS_TEMPLATE",
            "must be at most 1500 characters (Twilio takes 1600 with the code)",
        ));
    }
    Ok(template)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(extra: &[(&str, &str)]) -> Env {
        let mut pairs = vec![
            ("TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef"),
            ("TWILIO_AUTH_TOKEN", "token"),
            ("TWILIO_FROM", "+14155550100"),
            ("CODE_SEALING_KEYS", "a sealing key of at least 32 bytes long"),
        ];
        pairs.extend_from_slice(extra);
        Env::from_map(SETTINGS, pairs.into_iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = WorkerConfig::from_env(&env(&[])).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9091");
        assert_eq!(c.concurrency, 64);
        assert_eq!(c.retry.max_attempts, 5);
        assert_eq!(c.retry.min_useful_lifetime, Duration::from_secs(30));
        assert_eq!(c.twilio_api_base, "https://api.twilio.com");
        assert_eq!(c.sms_template, "Your verification code is {code}");
        assert_eq!(c.sender, Sender::From("+14155550100".into()));
    }

    #[test]
    fn a_messaging_service_wins_over_a_from_number() {
        let c = WorkerConfig::from_env(&env(&[(
            "TWILIO_MESSAGING_SERVICE_SID",
            "MG0123456789abcdef0123456789abcdef",
        )]))
        .unwrap();
        assert!(matches!(c.sender, Sender::MessagingService(_)));
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (name, value) in [
            ("SMS_TEMPLATE", "no placeholder"),
            ("TWILIO_FROM", "12345"),
            ("TWILIO_MESSAGING_SERVICE_SID", "MG12"),
            ("WORKER_CONCURRENCY", "0"),
            ("SEND_MAX_ATTEMPTS", "many"),
            ("TWILIO_API_BASE", "not a url"),
            ("WORKER_LISTEN", "x"),
        ] {
            let err = WorkerConfig::from_env(&env(&[(name, value)])).unwrap_err();
            assert_eq!(err.name, name, "{name}={value}: {err}");
        }
    }

    #[test]
    fn a_lease_shorter_than_a_call_and_an_in_process_wait_is_refused() {
        let err = WorkerConfig::from_env(&env(&[
            ("TWILIO_TIMEOUT_MS", "10000"),
            ("RETRY_INPROCESS_MAX_MS", "6000"),
        ]))
        .unwrap_err();
        assert_eq!(err.name, "SEND_LEASE_SECONDS", "{err}");
        assert!(err.to_string().contains("21 s"), "{err}");
        let fits = WorkerConfig::from_env(&env(&[
            ("TWILIO_TIMEOUT_MS", "10000"),
            ("RETRY_INPROCESS_MAX_MS", "6000"),
            ("SEND_LEASE_SECONDS", "21"),
        ]));
        assert!(fits.is_ok());
    }

    #[test]
    fn a_sender_is_required() {
        let env = Env::from_map(
            SETTINGS,
            [
                ("TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef"),
                ("TWILIO_AUTH_TOKEN", "t"),
                ("CODE_SEALING_KEYS", "a sealing key of at least 32 bytes long"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        assert_eq!(WorkerConfig::from_env(&env).unwrap_err().name, "TWILIO_FROM");
    }
}
