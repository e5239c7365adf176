//! `verify-api`'s settings: one table for `--help` and for reading.

use std::net::SocketAddr;
use std::time::Duration;

use common::broker::Topology;

use crate::abuse::AbuseConfig;
use common::code::CodeLength;
use common::seal::Sealer;
use common::settings::{
    Env, Secret, Setting, SettingError, account_sid, amqp_url, database_url, log_format, public_base_url,
};

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
    Setting::with_default("API_LISTEN", "127.0.0.1:8080", "HTTP listen address"),
    Setting::required(
        "API_KEYS",
        "comma-separated bearer tokens accepted on /v1/* (not on the webhook)",
    ),
    Setting::required(
        "VERIFY_SECRET",
        "key of the HMAC that stores codes, at least 32 bytes; never logged",
    ),
    Setting::required(
        "CODE_SEALING_KEYS",
        "comma-separated keys, at least 32 bytes each, that seal codes in the outbox and in send jobs; the first seals, every one opens (rotation: README); never logged",
    ),
    Setting::with_default(
        "PUBLIC_BASE_URL",
        "http://127.0.0.1:8080",
        "the API's external URL; Twilio signs callbacks against it",
    ),
    Setting::required("TWILIO_ACCOUNT_SID", "AC + 32 hex digits"),
    Setting::required("TWILIO_AUTH_TOKEN", "HMAC key of X-Twilio-Signature"),
    Setting::with_default("CODE_LENGTH", "6", "digits in a code, 4 to 10"),
    Setting::with_default("CODE_TTL_SECONDS", "600", "how long a code can be checked, 30 to 86400"),
    Setting::with_default(
        "MAX_CHECK_ATTEMPTS",
        "5",
        "wrong codes allowed per verification, 1 to 20",
    ),
    Setting::with_default(
        "SEND_QUEUE",
        "sms.send",
        "name of the send queue; retry and dead-letter queues are named after it",
    ),
    Setting::with_default(
        "PUBLISH_TIMEOUT_MS",
        "5000",
        "longest wait for RabbitMQ (connect, confirms of a batch of jobs) before a 503 or leaving the jobs to the outbox relay",
    ),
    Setting::with_default(
        "OUTBOX_RELAY_AFTER_SECONDS",
        "15",
        "age at which a start's unconfirmed send job is published by the outbox relay",
    ),
    Setting::with_default("DATABASE_MAX_CONNECTIONS", "16", "PostgreSQL connections in the pool"),
    Setting::with_default(
        "SHUTDOWN_GRACE_SECONDS",
        "30",
        "longest wait for in-flight requests on SIGTERM",
    ),
    common::retention::SETTING,
    Setting::with_default(
        "LOG_FORMAT",
        "auto",
        "json, text, or auto (json unless stderr is a terminal)",
    ),
    Setting::with_default(
        "RATE_LIMITS",
        "on",
        "off disables every rate limit below (not the country and number-type rules)",
    ),
    Setting::with_default(
        "SENDS_PER_NUMBER",
        "5",
        "starts per number per SENDS_PER_NUMBER_WINDOW_SECONDS (0: no limit)",
    ),
    Setting::with_default("SENDS_PER_NUMBER_WINDOW_SECONDS", "600", "window of SENDS_PER_NUMBER"),
    Setting::with_default(
        "RESEND_COOLDOWN_SECONDS",
        "30",
        "least time between two starts for one number (0: none)",
    ),
    Setting::with_default(
        "STARTS_PER_IP_PER_MINUTE",
        "20",
        "starts per client IP per minute (0: no limit)",
    ),
    Setting::with_default(
        "WRONG_CODES_PER_NUMBER_PER_DAY",
        "9",
        "wrong codes per number in 24 h, across its verifications (0: no limit)",
    ),
    Setting::with_default(
        "CHECKS_PER_IP_PER_MINUTE",
        "60",
        "checks per client IP per minute (0: no limit)",
    ),
    Setting::with_default(
        "PREFIX_STARTS_PER_MINUTE",
        "60",
        "starts per number prefix (country code + 3 digits) per minute before it is paused (0: no guard)",
    ),
    Setting::with_default("PREFIX_PAUSE_SECONDS", "900", "how long a prefix stays paused"),
    Setting::with_default(
        "TRUSTED_PROXIES",
        "",
        "comma-separated CIDRs whose X-Forwarded-For is believed for the client IP",
    ),
    Setting::with_default(
        "ALLOWED_COUNTRIES",
        "",
        "ISO 3166 codes, comma-separated; numbers of other countries get 403 (empty: all)",
    ),
    Setting::with_default(
        "SMS_NUMBER_TYPES",
        "mobile,fixed_line_or_mobile",
        "number types accepted (libphonenumber's names, or any)",
    ),
];

/// Everything `verify-api` reads at start, validated.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub database_url: Secret,
    pub amqp_url: Secret,
    pub listen: SocketAddr,
    pub api_keys: Vec<Secret>,
    pub verify_secret: Secret,
    /// `CODE_SEALING_KEYS`.
    pub sealer: Sealer,
    pub public_base_url: String,
    pub twilio_account_sid: String,
    pub twilio_auth_token: Secret,
    pub code_length: CodeLength,
    pub code_ttl: Duration,
    pub max_check_attempts: i32,
    pub topology: Topology,
    pub publish_timeout: Duration,
    pub outbox_relay_after: Duration,
    pub database_max_connections: u32,
    pub shutdown_grace: Duration,
    /// `RETENTION_DAYS`.
    pub retention_days: u32,
    pub log_format: String,
    pub abuse: AbuseConfig,
}

impl ApiConfig {
    pub fn from_env(env: &Env) -> Result<Self, SettingError> {
        Ok(Self {
            database_url: database_url(env)?,
            amqp_url: amqp_url(env)?,
            listen: env.parse("API_LISTEN")?,
            api_keys: api_keys(env)?,
            verify_secret: verify_secret(env)?,
            sealer: Sealer::from_list(&env.string(common::seal::SETTING_NAME)?)?,
            public_base_url: public_base_url(env)?,
            twilio_account_sid: account_sid(env)?,
            twilio_auth_token: Secret::new(env.string("TWILIO_AUTH_TOKEN")?),
            code_length: CodeLength::new(env.number_in("CODE_LENGTH", CodeLength::MIN..=CodeLength::MAX)?)
                .expect("range checked"),
            code_ttl: Duration::from_secs(env.number_in("CODE_TTL_SECONDS", 30..=86_400)?),
            max_check_attempts: env.number_in("MAX_CHECK_ATTEMPTS", 1..=20)?,
            topology: Topology::new(&env.string("SEND_QUEUE")?).map_err(|e| SettingError::new("SEND_QUEUE", e))?,
            publish_timeout: Duration::from_millis(env.number_in("PUBLISH_TIMEOUT_MS", 100..=60_000)?),
            outbox_relay_after: outbox_relay_after(env)?,
            database_max_connections: env.number_in("DATABASE_MAX_CONNECTIONS", 1..=1000)?,
            shutdown_grace: Duration::from_secs(env.number_in("SHUTDOWN_GRACE_SECONDS", 0..=3600)?),
            retention_days: common::retention::days(env)?,
            log_format: log_format(env)?,
            abuse: AbuseConfig::from_env(env)?,
        })
    }
}

fn api_keys(env: &Env) -> Result<Vec<Secret>, SettingError> {
    let keys: Vec<Secret> = env
        .string("API_KEYS")?
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(Secret::new)
        .collect();
    if keys.is_empty() {
        return Err(SettingError::new("API_KEYS", "needs at least one non-empty key"));
    }
    if keys.iter().any(|k| k.expose().len() < 16) {
        return Err(SettingError::new(
            "API_KEYS",
            "every key must be at least 16 characters",
        ));
    }
    Ok(keys)
}

/// Must exceed the longest a start can wait for its confirm, so the relay never races a
/// start that is still under way.
fn outbox_relay_after(env: &Env) -> Result<Duration, SettingError> {
    let after = Duration::from_secs(env.number_in("OUTBOX_RELAY_AFTER_SECONDS", 1..=3600)?);
    let publish_timeout = Duration::from_millis(env.parse("PUBLISH_TIMEOUT_MS")?);
    if after <= publish_timeout * 2 {
        return Err(SettingError::new(
            "OUTBOX_RELAY_AFTER_SECONDS",
            "must be more than twice PUBLISH_TIMEOUT_MS, so the relay never races a start under way",
        ));
    }
    Ok(after)
}

fn verify_secret(env: &Env) -> Result<Secret, SettingError> {
    let secret = env.string("VERIFY_SECRET")?;
    if secret.len() < 32 {
        return Err(SettingError::new(
            "VERIFY_SECRET",
            format!("must be at least 32 bytes, got {}", secret.len()),
        ));
    }
    Ok(Secret::new(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(extra: &[(&str, &str)]) -> Env {
        let mut pairs = vec![
            ("API_KEYS", "key-0123456789abcdef"),
            ("VERIFY_SECRET", "0123456789abcdef0123456789abcdef"),
            ("CODE_SEALING_KEYS", "a sealing key of at least 32 bytes long"),
            ("TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef"),
            ("TWILIO_AUTH_TOKEN", "token"),
        ];
        pairs.extend_from_slice(extra);
        Env::from_map(SETTINGS, pairs.into_iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = ApiConfig::from_env(&env(&[])).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.code_length.digits(), 6);
        assert_eq!(c.code_ttl, Duration::from_secs(600));
        assert_eq!(c.max_check_attempts, 5);
        assert_eq!(c.topology.send_queue(), "sms.send");
        assert_eq!(c.public_base_url, "http://127.0.0.1:8080");
    }

    #[test]
    fn a_short_verify_secret_is_refused_by_name() {
        let err = ApiConfig::from_env(&env(&[("VERIFY_SECRET", "short")])).unwrap_err();
        assert_eq!(err.name, "VERIFY_SECRET");
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (name, value) in [
            ("CODE_LENGTH", "3"),
            ("CODE_LENGTH", "six"),
            ("API_LISTEN", "nowhere"),
            ("TWILIO_ACCOUNT_SID", "AC123"),
            ("PUBLIC_BASE_URL", "ftp://x"),
            ("API_KEYS", " , "),
            ("SEND_QUEUE", "amq.x"),
            ("LOG_FORMAT", "xml"),
            ("CODE_SEALING_KEYS", "short"),
        ] {
            let err = ApiConfig::from_env(&env(&[(name, value)])).unwrap_err();
            assert_eq!(err.name, name, "{name}={value}: {err}");
        }
    }
}
