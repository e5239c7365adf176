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

mod kinds;

use kinds::{CheckLimit, MINUTE, StartLimit};

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

fn prefix_refusal(prefix: &str, left: Duration) -> ApiError {
    ApiError::RateLimited {
        message: format!("too many verifications to numbers starting {prefix}; that prefix is paused"),
        retry_after: left,
    }
}

/// What a check took from the limits; a check that turns out not to be a wrong code
/// gives its wrong-code event back.
pub struct CheckTicket {
    wrong_code_key: Option<String>,
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
