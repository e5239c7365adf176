//! Abuse rules: which numbers may be texted, and the rate limits on starts and checks.
//!
//! Every limit is a sliding window kept in PostgreSQL ([`common::limits`]), so it holds across
//! any number of API replicas. A refused request answers 429 `rate_limited` with
//! `Retry-After` and a message naming the limit; it uses up nothing. `0` switches one limit
//! off, `RATE_LIMITS=off` all of them (the country and number-type rules stay).

use common::metric_names as names;
use std::net::IpAddr;
use std::time::Duration;

use common::limits::{self, Limit};
use common::phone::PhoneNumber;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;

pub use crate::config::AbuseConfig;

fn ip_key(kind: &str, ip: Option<IpAddr>) -> String {
    format!(
        "{kind}:ip:{}",
        ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
    )
}

/// The abuse rules and rate limits as the request path applies them: the settings, and the
/// pool of the database that keeps the windows.
pub struct Limits {
    abuse: AbuseConfig,
    pool: PgPool,
}

impl Limits {
    pub fn new(abuse: AbuseConfig, pool: PgPool) -> Self {
        Self { abuse, pool }
    }

    /// Whether a start for `phone` from `ip` may go ahead: the country and number-type rules,
    /// then (when on) the paused prefixes and every start limit, all at once.
    pub async fn admit_start(&self, phone: &PhoneNumber, ip: Option<IpAddr>) -> Result<(), ApiError> {
        let (abuse, pool) = (&self.abuse, &self.pool);
        if let Some(allowed) = &abuse.allowed_countries
            && !phone.country().is_some_and(|c| allowed.contains(c))
        {
            return Err(ApiError::CountryNotAllowed(
                phone.country().unwrap_or("unknown").to_owned(),
            ));
        }
        if let Some(kinds) = &abuse.number_kinds.0
            && !kinds.contains(&phone.kind())
        {
            return Err(ApiError::InvalidPhoneNumber(format!(
                "phone_number is a {} number, which is not accepted for SMS",
                phone.kind().as_str().replace('_', " ")
            )));
        }
        if !abuse.rate_limits {
            return Ok(());
        }
        let prefix = phone.prefix();
        if abuse.prefix_starts_per_minute > 0
            && let Some(left) = limits::prefix_paused(pool, prefix).await?
        {
            return Err(prefix_refusal(prefix, left));
        }
        let number = phone.as_str();
        let wanted: Vec<(StartLimit, Limit)> = StartLimit::ALL
            .into_iter()
            .map(|kind| (kind, kind.limit(abuse, number, prefix, ip)))
            .filter(|(_, l)| l.limit > 0 && !l.window.is_zero())
            .collect();
        let limits: Vec<Limit> = wanted.iter().map(|(_, l)| l.clone()).collect();
        let Some((index, retry_after)) = limits::take(pool, &limits).await? else {
            return Ok(());
        };
        let refused = wanted[index].0;
        if refused == StartLimit::Prefix {
            if limits::pause_prefix(pool, prefix, abuse.prefix_pause).await? {
                tracing::error!(
                    alert = "sms_pumping",
                    prefix,
                    limit = abuse.prefix_starts_per_minute,
                    pause_seconds = abuse.prefix_pause.as_secs(),
                    "ALERT: starts to one number prefix exceeded the limit; the prefix is paused"
                );
                metrics::counter!(names::PREFIX_PAUSES).increment(1);
            }
            return Err(prefix_refusal(prefix, abuse.prefix_pause));
        }
        Err(ApiError::RateLimited {
            message: refused.message(abuse, retry_after),
            retry_after,
        })
    }

    /// Whether a check for `phone` from `ip` may go ahead. Counts it as a wrong code up front
    /// (so parallel guesses cannot overrun the daily limit); [`CheckTicket::not_wrong`] undoes that.
    pub async fn admit_check(&self, phone: &PhoneNumber, ip: Option<IpAddr>) -> Result<CheckTicket, ApiError> {
        let (abuse, pool) = (&self.abuse, &self.pool);
        if !abuse.rate_limits {
            return Ok(CheckTicket { wrong_code_key: None });
        }
        let wanted: Vec<(CheckLimit, Limit)> = CheckLimit::ALL
            .into_iter()
            .map(|kind| (kind, kind.limit(abuse, phone.as_str(), ip)))
            .filter(|(_, l)| l.limit > 0)
            .collect();
        let limits: Vec<Limit> = wanted.iter().map(|(_, l)| l.clone()).collect();
        match limits::take(pool, &limits).await? {
            None => Ok(CheckTicket {
                wrong_code_key: wanted
                    .into_iter()
                    .find(|(kind, _)| *kind == CheckLimit::WrongCodes)
                    .map(|(_, l)| l.key),
            }),
            Some((index, retry_after)) => Err(ApiError::RateLimited {
                message: wanted[index].0.message(abuse),
                retry_after,
            }),
        }
    }
}

/// Deletes the rate-limit bookkeeping of keys that went quiet, once a minute, until `shutdown`.
pub async fn forget_expired(pool: PgPool, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(MINUTE) => {}
        }
        if let Err(e) = limits::forget_expired(&pool).await {
            tracing::warn!(error = %e, "could not delete expired rate-limit keys");
        }
    }
}

/// The limits on starts. Each names its key, its count and window, and its refusal: a new
/// limit is a new variant, and the compiler asks for all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StartLimit {
    /// `RESEND_COOLDOWN_SECONDS` between two starts for a number.
    Cooldown,
    /// `SENDS_PER_NUMBER` per `SENDS_PER_NUMBER_WINDOW_SECONDS`.
    Sends,
    /// `STARTS_PER_IP_PER_MINUTE`.
    Ip,
    /// `PREFIX_STARTS_PER_MINUTE`: past it the prefix is paused (SMS pumping).
    Prefix,
}

impl StartLimit {
    /// In the order they are checked: the first full one is the one reported.
    const ALL: [Self; 4] = [Self::Cooldown, Self::Sends, Self::Ip, Self::Prefix];

    fn limit(self, abuse: &AbuseConfig, number: &str, prefix: &str, ip: Option<IpAddr>) -> Limit {
        let (key, limit, window) = match self {
            Self::Cooldown => (format!("cooldown:number:{number}"), 1, abuse.resend_cooldown),
            Self::Sends => (
                format!("start:number:{number}"),
                abuse.sends_per_number,
                abuse.sends_window,
            ),
            Self::Ip => (ip_key("start", ip), abuse.starts_per_ip_per_minute, MINUTE),
            Self::Prefix => (format!("start:prefix:{prefix}"), abuse.prefix_starts_per_minute, MINUTE),
        };
        Limit { key, limit, window }
    }

    /// The refusal's message (a prefix refusal has its own, with the pause).
    fn message(self, abuse: &AbuseConfig, retry_after: Duration) -> String {
        match self {
            Self::Cooldown => format!(
                "resend cooldown: one code per {} s for a number; ask again in {} s",
                abuse.resend_cooldown.as_secs(),
                retry_after.as_secs()
            ),
            Self::Sends => format!(
                "too many codes for this number: at most {} per {} s",
                abuse.sends_per_number,
                abuse.sends_window.as_secs()
            ),
            Self::Ip => format!(
                "too many verifications from this IP address: at most {} per minute",
                abuse.starts_per_ip_per_minute
            ),
            Self::Prefix => format!(
                "too many verifications to numbers with this prefix: at most {} per minute",
                abuse.prefix_starts_per_minute
            ),
        }
    }
}

fn prefix_refusal(prefix: &str, left: Duration) -> ApiError {
    ApiError::RateLimited {
        message: format!("too many verifications to numbers starting {prefix}; that prefix is paused"),
        retry_after: left,
    }
}

const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(86_400);

/// What a check took from the limits; a check that turns out not to be a wrong code
/// gives its wrong-code event back.
pub struct CheckTicket {
    wrong_code_key: Option<String>,
}

/// The limits on checks, like [`StartLimit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CheckLimit {
    /// `CHECKS_PER_IP_PER_MINUTE`.
    Ip,
    /// `WRONG_CODES_PER_NUMBER_PER_DAY`: counted before the comparison, given back when the
    /// code was right ([`CheckTicket::not_wrong`]).
    WrongCodes,
}

impl CheckLimit {
    const ALL: [Self; 2] = [Self::Ip, Self::WrongCodes];

    fn limit(self, abuse: &AbuseConfig, number: &str, ip: Option<IpAddr>) -> Limit {
        match self {
            Self::Ip => Limit {
                key: ip_key("check", ip),
                limit: abuse.checks_per_ip_per_minute,
                window: MINUTE,
            },
            Self::WrongCodes => Limit {
                key: format!("wrong:number:{number}"),
                limit: abuse.wrong_codes_per_number_per_day,
                window: DAY,
            },
        }
    }

    fn message(self, abuse: &AbuseConfig) -> String {
        match self {
            Self::Ip => format!(
                "too many checks from this IP address: at most {} per minute",
                abuse.checks_per_ip_per_minute
            ),
            Self::WrongCodes => format!(
                "too many wrong codes for this number: at most {} per 24 h",
                abuse.wrong_codes_per_number_per_day
            ),
        }
    }
}

impl CheckTicket {
    /// The check was right, or found nothing to check: it was no wrong code.
    pub async fn not_wrong(self, limits: &Limits) {
        if let Some(key) = self.wrong_code_key
            && let Err(e) = common::limits::give_back(&limits.pool, &key).await
        {
            tracing::warn!(error = %e, "could not give back a wrong-code count");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn defaults() -> AbuseConfig {
        let vars = [
            ("API_KEYS", "key-0123456789abcdef"),
            ("VERIFY_SECRET", "0123456789abcdef0123456789abcdef"),
            ("CODE_SEALING_KEYS", "a sealing key of at least 32 bytes long"),
            ("TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef"),
            ("TWILIO_AUTH_TOKEN", "token"),
        ];
        common::settings::from_vars::<crate::config::ApiConfig>(vars.map(|(k, v)| (k.to_owned(), v.to_owned())))
            .unwrap()
            .abuse
    }

    #[test]
    fn every_limit_has_its_own_key_and_a_message_naming_its_count() {
        let abuse = defaults();
        let ip = Some(IpAddr::from([203, 0, 113, 7]));
        let starts: Vec<Limit> = StartLimit::ALL
            .iter()
            .map(|k| k.limit(&abuse, "+14155552671", "+1415", ip))
            .collect();
        let checks: Vec<Limit> = CheckLimit::ALL
            .iter()
            .map(|k| k.limit(&abuse, "+14155552671", ip))
            .collect();
        let keys: HashSet<&str> = starts.iter().chain(&checks).map(|l| l.key.as_str()).collect();
        assert_eq!(keys.len(), StartLimit::ALL.len() + CheckLimit::ALL.len(), "{keys:?}");
        for (kind, limit) in StartLimit::ALL.iter().zip(&starts).skip(1) {
            let message = kind.message(&abuse, Duration::from_secs(1));
            assert!(message.contains(&limit.limit.to_string()), "{kind:?}: {message}");
        }
        for (kind, limit) in CheckLimit::ALL.iter().zip(&checks) {
            assert!(kind.message(&abuse).contains(&limit.limit.to_string()), "{kind:?}");
        }
    }
}
