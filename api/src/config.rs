//! `verify-api`'s settings, declared once: each field names its environment variable, its
//! default and its `--help` line; [`Shared`] holds what the worker reads too, [`AbuseConfig`]
//! the abuse limits and number rules.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::Parser;
use common::code::CodeLength;
use common::settings::{Secret, SettingError, Settings, Shared, millis, seconds};
use ipnet::IpNet;

use crate::abuse::{DailyBudget, NumberKinds};
use crate::channels::ChannelConfig;
use crate::pumping::PumpingConfig;
use crate::test_numbers::TestNumberConfig;

/// Everything `verify-api` reads at start, validated.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "verify-api",
    about = "HTTP API of the phone verification service",
    after_help = common::settings::AFTER_HELP
)]
pub struct ApiConfig {
    #[command(flatten)]
    pub shared: Shared,
    /// HTTP listen address
    #[arg(long = "api-listen", env = "API_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// comma-separated bearer tokens accepted on /v1/* (not on the webhook), 16 characters or more each; list two while rotating [required]
    #[arg(long, env = "API_KEYS", value_parser = api_key, value_delimiter = ',', required = true)]
    pub api_keys: Vec<Secret>,
    /// key of the HMAC that stores codes, at least 32 bytes; never logged [required]
    #[arg(long, env = "VERIFY_SECRET", value_parser = verify_secret)]
    pub verify_secret: Secret,
    /// digits in a code, 4 to 10
    #[arg(long, env = "CODE_LENGTH", default_value = "6", value_parser = code_length)]
    pub code_length: CodeLength,
    /// how long a code can be checked, 30 to 86400 seconds
    #[arg(long = "code-ttl-seconds", env = "CODE_TTL_SECONDS", default_value = "600", value_parser = seconds(30..=86_400))]
    pub code_ttl: Duration,
    /// wrong codes allowed per verification, 1 to 20
    #[arg(long, env = "MAX_CHECK_ATTEMPTS", default_value = "5", value_parser = clap::value_parser!(i32).range(1..=20))]
    pub max_check_attempts: i32,
    /// longest wait for RabbitMQ (connect, confirms of a batch of jobs) before a 503 or leaving the jobs to the outbox relay, 100 to 60000 ms
    #[arg(long = "publish-timeout-ms", env = "PUBLISH_TIMEOUT_MS", default_value = "5000", value_parser = millis(100..=60_000))]
    pub publish_timeout: Duration,
    /// age at which a start's unconfirmed send job is published by the outbox relay, more than twice PUBLISH_TIMEOUT_MS
    #[arg(long = "outbox-relay-after-seconds", env = "OUTBOX_RELAY_AFTER_SECONDS", default_value = "15", value_parser = seconds(1..=3600))]
    pub outbox_relay_after: Duration,
    #[command(flatten)]
    pub abuse: AbuseConfig,
    #[command(flatten)]
    pub pumping: PumpingConfig,
    #[command(flatten)]
    pub channels: ChannelConfig,
    #[command(flatten)]
    pub test_numbers: TestNumberConfig,
}

impl Settings for ApiConfig {
    fn finish(&mut self) {
        self.shared.finish();
    }

    /// The relay must not race a start that still waits for its confirm.
    fn check(&self) -> Result<(), SettingError> {
        self.shared.check()?;
        if self.outbox_relay_after <= self.publish_timeout * 2 {
            return Err(SettingError::new(
                "OUTBOX_RELAY_AFTER_SECONDS",
                "must be more than twice PUBLISH_TIMEOUT_MS, so the relay never races a start under way",
            ));
        }
        self.channels.check(&self.shared.channels)?;
        self.test_numbers.test_numbers.check(self.code_length)?;
        if self.pumping.maturity >= self.pumping.window {
            return Err(SettingError::new(
                "PUMPING_MATURITY_SECONDS",
                "must be shorter than PUMPING_WINDOW_SECONDS, or no start would ever be judged",
            ));
        }
        Ok(())
    }
}

/// The abuse limits (each counted across every replica in PostgreSQL; `0` switches one off)
/// and the rules on which numbers may be texted.
#[derive(Debug, Clone, clap::Args)]
pub struct AbuseConfig {
    /// off disables every rate limit below (not the country and number-type rules)
    #[arg(long, env = "RATE_LIMITS", default_value = "on", value_parser = on_off, action = clap::ArgAction::Set)]
    pub rate_limits: bool,
    /// starts per number per SENDS_PER_NUMBER_WINDOW_SECONDS (0: no limit)
    #[arg(long, env = "SENDS_PER_NUMBER", default_value = "5", value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub sends_per_number: u32,
    /// window of SENDS_PER_NUMBER, 1 to 86400 seconds
    #[arg(long = "sends-per-number-window-seconds", env = "SENDS_PER_NUMBER_WINDOW_SECONDS", default_value = "600", value_parser = seconds(1..=86_400))]
    pub sends_window: Duration,
    /// least time between two starts for one number (0: none), up to 86400 seconds
    #[arg(long = "resend-cooldown-seconds", env = "RESEND_COOLDOWN_SECONDS", default_value = "30", value_parser = seconds(0..=86_400))]
    pub resend_cooldown: Duration,
    /// starts per client IP per minute (0: no limit)
    #[arg(long, env = "STARTS_PER_IP_PER_MINUTE", default_value = "20", value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub starts_per_ip_per_minute: u32,
    /// wrong codes per number in 24 h, across its verifications (0: no limit)
    #[arg(long, env = "WRONG_CODES_PER_NUMBER_PER_DAY", default_value = "9", value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub wrong_codes_per_number_per_day: u32,
    /// checks per client IP per minute (0: no limit)
    #[arg(long, env = "CHECKS_PER_IP_PER_MINUTE", default_value = "60", value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub checks_per_ip_per_minute: u32,
    /// a hard ceiling of starts per number prefix (country code + 3 digits) per minute before it is paused (0: off; the conversion-aware guard, PUMPING_GUARD, is the default defence)
    #[arg(long, env = "PREFIX_STARTS_PER_MINUTE", default_value = "0", value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub prefix_starts_per_minute: u32,
    /// how long a prefix stays paused (doubled for each pause of it within a day, up to 12 h), 1 to 604800 seconds
    #[arg(long = "prefix-pause-seconds", env = "PREFIX_PAUSE_SECONDS", default_value = "900", value_parser = seconds(1..=604_800))]
    pub prefix_pause: Duration,
    /// SMS per country per UTC day, e.g. US:50000,GB:5000,*:1000 (* for any other country); past it 429 budget_exhausted [default: none]
    #[arg(long = "daily-sms-budget", env = "DAILY_SMS_BUDGET", default_value = "", hide_default_value = true, value_parser = crate::abuse::daily_budget)]
    pub daily_sms_budget: DailyBudget,
    /// comma-separated IP addresses or CIDRs whose X-Forwarded-For is believed for the client IP [default: none]
    #[arg(long, env = "TRUSTED_PROXIES", value_parser = ip_net, value_delimiter = ',')]
    pub trusted_proxies: Vec<IpNet>,
    /// ISO 3166 codes, comma-separated; numbers of other countries get 403 [default: all]
    #[arg(long = "allowed-countries", env = "ALLOWED_COUNTRIES", value_parser = countries)]
    pub allowed_countries: Option<HashSet<String>>,
    /// number types accepted, comma-separated (libphonenumber's names), or any
    #[arg(long = "sms-number-types", env = "SMS_NUMBER_TYPES", default_value = "mobile,fixed_line_or_mobile", value_parser = crate::abuse::number_kinds)]
    pub number_kinds: NumberKinds,
}

fn api_key(value: &str) -> Result<Secret, String> {
    let key = value.trim();
    if key.len() < 16 {
        return Err("every key must be at least 16 characters".into());
    }
    Ok(Secret::new(key))
}

fn verify_secret(value: &str) -> Result<Secret, String> {
    if value.len() < 32 {
        return Err(format!("must be at least 32 bytes, got {}", value.len()));
    }
    Ok(Secret::new(value))
}

fn code_length(value: &str) -> Result<CodeLength, String> {
    value
        .trim()
        .parse::<u8>()
        .ok()
        .and_then(CodeLength::new)
        .ok_or_else(|| format!("must be a number of digits from 4 to 10, got {value:?}"))
}

fn on_off(value: &str) -> Result<bool, String> {
    match value {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err("must be on or off".into()),
    }
}

fn ip_net(value: &str) -> Result<IpNet, String> {
    let value = value.trim();
    value
        .parse::<IpNet>()
        .or_else(|_| value.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("must be IP addresses or CIDRs, comma-separated, got {value:?}"))
}

fn countries(value: &str) -> Result<HashSet<String>, String> {
    let codes = common::settings::list(value);
    if codes.is_empty() {
        return Err("must name at least one country (leave it unset for all)".into());
    }
    if codes
        .iter()
        .any(|c| c.len() != 2 || !c.bytes().all(|b| b.is_ascii_alphabetic()))
    {
        return Err("must be two-letter ISO 3166 codes, comma-separated".into());
    }
    Ok(codes.iter().map(|c| c.to_ascii_uppercase()).collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use common::phone::NumberKind;
    use common::settings::from_vars;

    /// The settings of the required variables plus `extra`.
    pub(crate) fn read(extra: &[(&str, &str)]) -> Result<ApiConfig, SettingError> {
        let mut pairs = vec![
            ("API_KEYS", "key-0123456789abcdef"),
            ("VERIFY_SECRET", "0123456789abcdef0123456789abcdef"),
            ("CODE_SEALING_KEYS", "a sealing key of at least 32 bytes long"),
            ("TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef"),
            ("TWILIO_AUTH_TOKEN", "token"),
        ];
        pairs.extend_from_slice(extra);
        from_vars(pairs.into_iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = read(&[]).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.code_length.digits(), 6);
        assert_eq!(c.code_ttl, Duration::from_secs(600));
        assert_eq!(c.max_check_attempts, 5);
        assert_eq!(c.shared.topology.send_queue(), "sms.send");
        assert_eq!(c.shared.public_base_url, "http://127.0.0.1:8080");
        assert_eq!(c.api_keys.len(), 1);
        let a = c.abuse;
        assert!(a.rate_limits);
        assert_eq!((a.sends_per_number, a.sends_window), (5, Duration::from_secs(600)));
        assert_eq!(a.resend_cooldown, Duration::from_secs(30));
        assert_eq!(a.starts_per_ip_per_minute, 20);
        assert_eq!(a.wrong_codes_per_number_per_day, 9);
        assert_eq!(a.checks_per_ip_per_minute, 60);
        assert_eq!(
            (a.prefix_starts_per_minute, a.prefix_pause),
            (0, Duration::from_secs(900))
        );
        assert!(a.allowed_countries.is_none() && a.trusted_proxies.is_empty());
        assert_eq!(a.daily_sms_budget, DailyBudget::default());
        assert_eq!(c.pumping.mode, crate::pumping::Mode::On);
        assert_eq!(
            a.number_kinds,
            NumberKinds(Some(vec![NumberKind::Mobile, NumberKind::FixedLineOrMobile]))
        );
    }

    #[test]
    fn lists_are_read_item_by_item() {
        let c = read(&[
            ("API_KEYS", "key-0123456789abcdef, second-key-0123456789"),
            ("TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.1"),
            ("ALLOWED_COUNTRIES", "us,GB"),
            ("SMS_NUMBER_TYPES", "any"),
            ("RATE_LIMITS", "off"),
            ("PUMPING_GUARD", "monitor"),
            ("PUMPING_SAFE_PREFIXES", "+1415, +4420"),
            ("DAILY_SMS_BUDGET", "US:50000,*:1000"),
        ])
        .unwrap();
        assert_eq!(c.pumping.mode, crate::pumping::Mode::Monitor);
        assert_eq!(c.pumping.safe_prefixes, ["+1415", "+4420"]);
        assert_eq!(c.abuse.daily_sms_budget.of(Some("FR")), Some(1000));
        assert!(!c.abuse.rate_limits);
        assert_eq!(c.api_keys[1].expose(), "second-key-0123456789");
        assert_eq!(c.abuse.trusted_proxies.len(), 2);
        assert_eq!(
            c.abuse.allowed_countries,
            Some(HashSet::from(["US".to_owned(), "GB".to_owned()]))
        );
        assert_eq!(c.abuse.number_kinds, NumberKinds(None));
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (name, value) in [
            ("VERIFY_SECRET", "short"),
            ("CODE_LENGTH", "3"),
            ("CODE_LENGTH", "six"),
            ("API_LISTEN", "nowhere"),
            ("TWILIO_ACCOUNT_SID", "AC123"),
            ("PUBLIC_BASE_URL", "ftp://x"),
            ("API_KEYS", " , "),
            ("API_KEYS", "short"),
            ("SEND_QUEUE", "amq.x"),
            ("LOG_FORMAT", "xml"),
            ("CODE_SEALING_KEYS", "short"),
            ("RATE_LIMITS", "maybe"),
            ("ALLOWED_COUNTRIES", "USA"),
            ("TRUSTED_PROXIES", "10.0.0.0/33"),
            ("SMS_NUMBER_TYPES", "landline"),
            ("SENDS_PER_NUMBER", "-1"),
            ("OUTBOX_RELAY_AFTER_SECONDS", "10"),
            ("PUMPING_GUARD", "yes"),
            ("PUMPING_SAFE_PREFIXES", "1415"),
            ("PUMPING_MAX_CONVERSION", "1.5"),
            ("PUMPING_BASELINE_HOURS", "0"),
            ("PUMPING_MATURITY_SECONDS", "600"),
            ("DAILY_SMS_BUDGET", "US:many"),
        ] {
            let err = read(&[(name, value)]).unwrap_err();
            assert_eq!(err.name, name, "{name}={value}: {err}");
            assert!(!err.to_string().contains("0123456789abcdef"), "{err}");
        }
    }
}
