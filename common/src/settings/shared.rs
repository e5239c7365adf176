//! The settings both binaries read, flattened into each one's parser.

use std::time::Duration;

use super::values::{Secret, account_sid, amqp_url, database_url, public_base_url, sealing_keys, seconds, secret};
use crate::broker::Topology;
use crate::seal::Sealer;
use crate::texts::{Channel, Texts};

/// `TEMPLATES_DIR`: the built-in texts with the folder's files over them (none when empty).
fn texts(dir: &str) -> Result<Texts, String> {
    if dir.trim().is_empty() {
        return Ok(Texts::default());
    }
    Texts::load(std::path::Path::new(dir.trim()))
}

/// Who sends on each channel: the worker sends with them, the API refuses a channel that has
/// none.
#[derive(Debug, Clone, clap::Args)]
pub struct ChannelSenders {
    /// SMS sender number (E.164); this or TWILIO_MESSAGING_SERVICE_SID (worker) is required by the worker
    #[arg(long = "twilio-from", env = "TWILIO_FROM", value_parser = e164)]
    pub twilio_from: Option<String>,
    /// the WhatsApp sender (E.164; `whatsapp:` is added) [default: none, no WhatsApp]
    #[arg(long = "twilio-whatsapp-from", env = "TWILIO_WHATSAPP_FROM", value_parser = e164)]
    pub whatsapp_from: Option<String>,
    /// HX + 32 hex digits: an approved WhatsApp authentication template whose variable 1 is the code [default: none, a plain body]
    #[arg(long = "twilio-whatsapp-content-sid", env = "TWILIO_WHATSAPP_CONTENT_SID", value_parser = content_sid)]
    pub whatsapp_content_sid: Option<String>,
    /// voice-capable number (E.164) calls come from [default: TWILIO_FROM]
    #[arg(long = "twilio-voice-from", env = "TWILIO_VOICE_FROM", value_parser = e164)]
    pub voice_from: Option<String>,
}

impl ChannelSenders {
    /// The number calls come from, if calls can be made.
    pub fn voice_from(&self) -> Option<&str> {
        self.voice_from.as_deref().or(self.twilio_from.as_deref())
    }

    /// Whether `channel` can be sent (SMS always can: the worker refuses to start without a sender).
    pub fn offers(&self, channel: Channel) -> bool {
        match channel {
            Channel::Sms => true,
            Channel::Whatsapp => self.whatsapp_from.is_some(),
            Channel::Call => self.voice_from().is_some(),
        }
    }
}

fn e164(value: &str) -> Result<String, String> {
    crate::phone::PhoneNumber::parse(value)
        .map(|p| p.as_str().to_owned())
        .map_err(|e| e.to_string())
}

fn content_sid(value: &str) -> Result<String, String> {
    if crate::twilio_sid::is_sid(value, "HX") {
        Ok(value.to_owned())
    } else {
        Err("must be HX followed by 32 hex digits".into())
    }
}

/// What both binaries read.
#[derive(Debug, Clone, clap::Args)]
pub struct Shared {
    /// PostgreSQL URL
    #[arg(long, env = "DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/verify", value_parser = database_url)]
    pub database_url: Secret,
    /// RabbitMQ URL (the vhost is part of it)
    #[arg(long, env = "AMQP_URL", default_value = "amqp://guest:guest@127.0.0.1:5672/%2f", value_parser = amqp_url)]
    pub amqp_url: Secret,
    /// the API's external URL: StatusCallback points at it and Twilio signs callbacks against it
    #[arg(long, env = "PUBLIC_BASE_URL", default_value = "http://127.0.0.1:8080", value_parser = public_base_url)]
    pub public_base_url: String,
    /// AC + 32 hex digits [required]
    #[arg(long, env = "TWILIO_ACCOUNT_SID", value_parser = account_sid)]
    pub twilio_account_sid: String,
    /// Basic-auth password of Twilio's REST API and HMAC key of X-Twilio-Signature; never logged [required]
    #[arg(long, env = "TWILIO_AUTH_TOKEN", value_parser = secret)]
    pub twilio_auth_token: Secret,
    /// comma-separated keys, at least 32 bytes each, that seal codes in the outbox and in send jobs; the first seals, every one opens (rotation: README); never logged [required]
    #[arg(long = "code-sealing-keys", env = "CODE_SEALING_KEYS", value_parser = sealing_keys)]
    pub sealer: Sealer,
    /// name of the send queue; retry and dead-letter queues are named after it
    #[arg(long = "send-queue", env = "SEND_QUEUE", default_value = "sms.send", value_parser = Topology::new)]
    pub topology: Topology,
    /// PostgreSQL connections in the pool, 1 to 1000
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value = "16", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub database_max_connections: u32,
    /// longest wait for in-flight requests (API) or sends (worker) on SIGTERM, 0 to 3600 seconds
    #[arg(long = "shutdown-grace-seconds", env = "SHUTDOWN_GRACE_SECONDS", default_value = "30", value_parser = seconds(0..=3600))]
    pub shutdown_grace: Duration,
    /// verifications older than this many days are deleted with their send attempts and delivery events, 1 to 3650
    #[arg(long, env = "RETENTION_DAYS", default_value = "30", value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub retention_days: u32,
    #[command(flatten)]
    pub channels: ChannelSenders,
    /// folder of files that override the built-in texts, one per locale and channel: es.sms.txt, pt-BR.call.txt (each with {code}) [default: none]
    #[arg(long = "templates-dir", env = "TEMPLATES_DIR", default_value = "", hide_default_value = true, value_parser = texts)]
    pub texts: Texts,
    #[command(flatten)]
    pub events: super::EventSettings,
    /// json, text, or auto (json unless stderr is a terminal)
    #[arg(long, env = "LOG_FORMAT", default_value = "auto", value_parser = ["auto", "json", "text"])]
    pub log_format: String,
}

impl Shared {
    /// The checks between shared settings.
    pub fn check(&self) -> Result<(), super::SettingError> {
        self.events.check()
    }

    /// With events on, the topology has the event queues too.
    pub fn finish(&mut self) {
        if self.events.enabled() {
            self.topology = self.topology.clone().with_events(self.events.retry_schedule.0.clone());
        }
    }
}
