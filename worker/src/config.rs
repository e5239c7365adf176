//! `verify-worker`'s settings, declared once: each field names its environment variable, its
//! default and its `--help` line; [`Shared`] holds what the API reads too, the retry timing
//! is [`RetryPolicy`]'s.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use common::settings::{SettingError, Settings, Shared, millis, seconds};
use common::texts::{Channel, Texts};
use common::twilio_sid::is_sid;

use crate::retry::RetryPolicy;

/// Who the SMS is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender<'a> {
    From(&'a str),
    MessagingService(&'a str),
}

/// Everything `verify-worker` reads at start, validated.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "verify-worker",
    about = "Sends verification codes by SMS from the RabbitMQ send queue",
    after_help = common::settings::AFTER_HELP
)]
pub struct WorkerConfig {
    #[command(flatten)]
    pub shared: Shared,
    /// address of the worker's /healthz, /readyz and /metrics
    #[arg(long = "worker-listen", env = "WORKER_LISTEN", default_value = "127.0.0.1:9091")]
    pub listen: SocketAddr,
    /// MG + 32 hex digits; used instead of TWILIO_FROM when set
    #[arg(long = "twilio-messaging-service-sid", env = "TWILIO_MESSAGING_SERVICE_SID", value_parser = messaging_service)]
    pub twilio_messaging_service: Option<String>,
    /// where Twilio's REST API lives
    #[arg(long, env = "TWILIO_API_BASE", default_value = "https://api.twilio.com", value_parser = api_base)]
    pub twilio_api_base: String,
    /// longest wait for one Twilio call, 100 to 120000 ms
    #[arg(long = "twilio-timeout-ms", env = "TWILIO_TIMEOUT_MS", default_value = "10000", value_parser = millis(100..=120_000))]
    pub twilio_timeout: Duration,
    /// sends in flight per worker (Twilio calls at once; the prefetch is twice this), 1 to 1000
    #[arg(long = "worker-concurrency", env = "WORKER_CONCURRENCY", default_value = "64", value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub concurrency: u16,
    /// the English SMS text; must contain {code} (TEMPLATES_DIR holds the other languages' texts)
    #[arg(long, env = "SMS_TEMPLATE", default_value = DEFAULT_SMS_TEMPLATE, value_parser = sms_template)]
    pub sms_template: String,
    /// when set (example.com), adds the last line '@example.com #123456' that WebOTP and phones' autofill read
    #[arg(long, env = "WEBOTP_DOMAIN", value_parser = webotp_domain)]
    pub webotp_domain: Option<String>,
    /// name of this worker in the send_attempts table [default: host name, process id and a random part]
    #[arg(long, env = "WORKER_ID", default_value_t = default_worker_id(), hide_default_value = true)]
    pub worker_id: String,
    #[command(flatten)]
    pub retry: RetryPolicy,
    /// longest wait for the event receiver's answer, 100 to 60000 ms
    #[arg(long = "events-timeout-ms", env = "EVENTS_TIMEOUT_MS", default_value = "10000", value_parser = millis(100..=60_000))]
    pub events_timeout: Duration,
    /// event deliveries in flight per worker (prefetch of the events queue), 1 to 1000
    #[arg(long = "events-concurrency", env = "EVENTS_CONCURRENCY", default_value = "32", value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub events_concurrency: u16,
    /// how long a worker holds a send (no other worker calls Twilio for it meanwhile); at least TWILIO_TIMEOUT_MS + RETRY_INPROCESS_MAX_MS + 5 s
    #[arg(long = "send-lease-seconds", env = "SEND_LEASE_SECONDS", default_value = "20", value_parser = seconds(1..=3600))]
    pub send_lease: Duration,
}

/// The English SMS text unless SMS_TEMPLATE or `en.sms.txt` says otherwise.
const DEFAULT_SMS_TEMPLATE: &str = "Your verification code is {code}";

/// What a lease must cover beyond a Twilio call and an in-process wait: the database writes
/// around them, and clocks that differ between PostgreSQL and the worker.
pub const LEASE_MARGIN: Duration = Duration::from_secs(5);

impl WorkerConfig {
    /// Every locale's texts: TEMPLATES_DIR's over the built-in ones, and SMS_TEMPLATE as the
    /// English SMS (unless en.sms.txt sets it).
    pub fn texts(&self) -> Texts {
        let mut texts = self.shared.texts.clone();
        if !texts.is_overridden("en", Channel::Sms) {
            texts
                .set("en", Channel::Sms, &self.sms_template)
                .expect("SMS_TEMPLATE was checked for {code} and length");
        }
        texts
    }

    /// Who the SMS is from: the messaging service when set, else the number.
    pub fn sender(&self) -> Sender<'_> {
        match (&self.twilio_messaging_service, &self.shared.channels.twilio_from) {
            (Some(sid), _) => Sender::MessagingService(sid),
            (None, Some(from)) => Sender::From(from),
            (None, None) => unreachable!("checked when the settings were read"),
        }
    }
}

impl Settings for WorkerConfig {
    fn finish(&mut self) {
        self.shared.finish();
    }

    /// A sender is required. A lease is renewed before each Twilio call, so between two
    /// renewals a worker makes one call (at most `TWILIO_TIMEOUT_MS`) and waits in process
    /// (at most `RETRY_INPROCESS_MAX_MS`). A lease shorter than that could run out while the
    /// worker still works on the send, and a second worker could call Twilio for it too.
    fn check(&self) -> Result<(), SettingError> {
        self.shared.check()?;
        if self.sms_template != DEFAULT_SMS_TEMPLATE && self.shared.texts.is_overridden("en", Channel::Sms) {
            return Err(SettingError::new(
                "SMS_TEMPLATE",
                "is set and so is en.sms.txt in TEMPLATES_DIR: set the English SMS in one place",
            ));
        }
        if self.shared.channels.twilio_from.is_none() && self.twilio_messaging_service.is_none() {
            return Err(SettingError::new(
                "TWILIO_FROM",
                "is required when TWILIO_MESSAGING_SERVICE_SID is not set",
            ));
        }
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
}

fn messaging_service(sid: &str) -> Result<String, String> {
    if is_sid(sid, "MG") {
        Ok(sid.to_owned())
    } else {
        Err("must be MG followed by 32 hex digits".into())
    }
}

fn api_base(raw: &str) -> Result<String, String> {
    let base = raw.trim_end_matches('/');
    match url::Url::parse(base) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Ok(base.to_owned()),
        _ => Err(format!("must be an http(s) URL, got {raw:?}")),
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

fn webotp_domain(domain: &str) -> Result<String, String> {
    if crate::sms::is_webotp_domain(domain) {
        Ok(domain.to_owned())
    } else {
        Err("must be a host name such as example.com (no scheme, no path)".into())
    }
}

fn sms_template(template: &str) -> Result<String, String> {
    if !template.contains("{code}") {
        return Err("must contain {code}".into());
    }
    if template.chars().count() > 1500 {
        return Err("must be at most 1500 characters (Twilio takes 1600 with the code)".into());
    }
    Ok(template.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::settings::from_vars;

    const BASE: [(&str, &str); 4] = [
        ("TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef"),
        ("TWILIO_AUTH_TOKEN", "token"),
        ("TWILIO_FROM", "+14155550100"),
        ("CODE_SEALING_KEYS", "a sealing key of at least 32 bytes long"),
    ];

    fn read(extra: &[(&str, &str)]) -> Result<WorkerConfig, SettingError> {
        let mut pairs = BASE.to_vec();
        pairs.extend_from_slice(extra);
        from_vars(pairs.into_iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = read(&[]).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9091");
        assert_eq!(c.concurrency, 64);
        assert_eq!(c.retry.max_attempts, 5);
        assert_eq!(c.retry.initial, Duration::from_secs(2));
        assert_eq!(c.retry.multiplier, 4.0);
        assert_eq!(c.retry.min_useful_lifetime, Duration::from_secs(30));
        assert_eq!(c.send_lease, Duration::from_secs(20));
        assert_eq!(c.twilio_api_base, "https://api.twilio.com");
        assert_eq!(c.sms_template, "Your verification code is {code}");
        assert_eq!(c.sender(), Sender::From("+14155550100"));
        assert!(!c.worker_id.is_empty());
    }

    #[test]
    fn a_messaging_service_wins_over_a_from_number() {
        let c = read(&[("TWILIO_MESSAGING_SERVICE_SID", "MG0123456789abcdef0123456789abcdef")]).unwrap();
        assert!(matches!(c.sender(), Sender::MessagingService(_)));
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
            ("RETRY_MULTIPLIER", "11"),
            ("WEBOTP_DOMAIN", "https://example.com/x"),
        ] {
            let err = read(&[(name, value)]).unwrap_err();
            assert_eq!(err.name, name, "{name}={value}: {err}");
        }
    }

    #[test]
    fn a_lease_shorter_than_a_call_and_an_in_process_wait_is_refused() {
        let err = read(&[("TWILIO_TIMEOUT_MS", "10000"), ("RETRY_INPROCESS_MAX_MS", "6000")]).unwrap_err();
        assert_eq!(err.name, "SEND_LEASE_SECONDS", "{err}");
        assert!(err.to_string().contains("21 s"), "{err}");
        let fits = read(&[
            ("TWILIO_TIMEOUT_MS", "10000"),
            ("RETRY_INPROCESS_MAX_MS", "6000"),
            ("SEND_LEASE_SECONDS", "21"),
        ]);
        assert!(fits.is_ok());
    }

    #[test]
    fn a_sender_is_required() {
        let vars = BASE
            .iter()
            .filter(|(k, _)| *k != "TWILIO_FROM")
            .map(|(k, v)| (k.to_string(), v.to_string()));
        assert_eq!(from_vars::<WorkerConfig>(vars).unwrap_err().name, "TWILIO_FROM");
    }

    #[test]
    fn the_english_sms_is_set_in_one_place() {
        let custom = read(&[("SMS_TEMPLATE", "Acme code: {code}")]).unwrap();
        assert_eq!(custom.texts().get("en").text(Channel::Sms), "Acme code: {code}");
        assert_eq!(custom.texts().get("es"), Texts::default().get("es"));
        let dir = std::env::temp_dir().join(format!("worker-texts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("en.sms.txt"), "From the folder: {code}").unwrap();
        let folder = dir.display().to_string();
        let from_folder = read(&[("TEMPLATES_DIR", &folder)]).unwrap();
        assert_eq!(
            from_folder.texts().get("en").text(Channel::Sms),
            "From the folder: {code}"
        );
        let both = read(&[("TEMPLATES_DIR", &folder), ("SMS_TEMPLATE", "Acme code: {code}")]);
        assert_eq!(both.unwrap_err().name, "SMS_TEMPLATE");
        std::fs::write(dir.join("en.fax.txt"), "{code}").unwrap();
        assert_eq!(read(&[("TEMPLATES_DIR", &folder)]).unwrap_err().name, "TEMPLATES_DIR");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
