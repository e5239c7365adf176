//! Abuse rules: which numbers may be texted, and the rate limits on starts and checks.
//!
//! Every limit is a sliding window kept in PostgreSQL ([`common::limits`]), so it holds across
//! any number of API replicas. A refused request answers 429 `rate_limited` with
//! `Retry-After` and a message naming the limit; it uses up nothing. `0` switches one limit
//! off, `RATE_LIMITS=off` all of them (the country and number-type rules stay, and so do the
//! pumping guard, [`crate::pumping`], and the daily SMS budget, [`budget`], which are not
//! rate limits).

use common::metric_names as names;
use std::net::IpAddr;
use std::time::Duration;

use common::guard;
use common::limits::{self, Ask, Limit, Refusal};
use common::phone::PhoneNumber;
use common::texts::Channel;
use sqlx::PgPool;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use crate::batch::LimitTaker;
use crate::error::ApiError;
use crate::pumping::Guard;

pub use crate::config::AbuseConfig;

mod budget;
mod kinds;

pub use budget::{DailyBudget, daily_budget};

use kinds::{CheckLimit, MINUTE, StartLimit};
pub use kinds::{NumberKinds, number_kinds};

/// The abuse rules and rate limits as the request path applies them: the settings, the
/// pumping guard, and the pool of the database that keeps the windows.
pub struct Limits {
    abuse: AbuseConfig,
    guard: Arc<Guard>,
    pool: PgPool,
    /// Takes the limits of concurrent requests together.
    taker: LimitTaker,
}

impl Limits {
    pub fn new(abuse: AbuseConfig, guard: Arc<Guard>, pool: PgPool, taker: LimitTaker) -> Self {
        Self {
            abuse,
            guard,
            pool,
            taker,
        }
    }

    /// Whether a start for `phone` on `channels` from `ip` may go ahead: the country and
    /// number-type rules (per channel: [`NumberKinds::accept`]),
    /// the paused prefixes, then (when on) every start limit and (when set) the country's
    /// daily budget, all at once. A refusal is counted by reason.
    /// Whether admitting a start may write (rate limits, a daily budget): then a start's
    /// `Idempotency-Key` is taken before it, so that a replay never counts.
    pub fn start_admission_writes(&self) -> bool {
        self.abuse.rate_limits || !self.abuse.daily_sms_budget.is_empty()
    }

    pub async fn admit_start(
        &self,
        phone: &PhoneNumber,
        channels: &[Channel],
        ip: Option<IpAddr>,
    ) -> Result<(), ApiError> {
        let refused = self.refuse_start(phone, channels, ip).await;
        if let Err(e) = &refused {
            let reason = match e {
                ApiError::RateLimited { .. } => "rate_limited",
                ApiError::SuspectedPumping { .. } => "suspected_pumping",
                ApiError::BudgetExhausted { .. } => "budget_exhausted",
                _ => return refused,
            };
            metrics::counter!(names::STARTS_REFUSED, "reason" => reason).increment(1);
        }
        refused
    }

    async fn refuse_start(
        &self,
        phone: &PhoneNumber,
        channels: &[Channel],
        ip: Option<IpAddr>,
    ) -> Result<(), ApiError> {
        let abuse = &self.abuse;
        if let Some(allowed) = &abuse.allowed_countries
            && !phone.country().is_some_and(|c| allowed.contains(c))
        {
            return Err(ApiError::CountryNotAllowed(
                phone.country().unwrap_or("unknown").to_owned(),
            ));
        }
        // Every channel of the list must suit the number (a fallback may come to any of them).
        if let Some(refusing) = channels.iter().find(|c| !abuse.number_kinds.accept(phone.kind(), **c)) {
            let channel = match refusing {
                Channel::Sms => "SMS",
                Channel::Whatsapp => "WhatsApp",
                Channel::Call => "calls",
            };
            return Err(ApiError::InvalidPhoneNumber(format!(
                "phone_number is a {} number, which is not accepted for {channel}",
                phone.kind().as_str().replace('_', " ")
            )));
        }
        let prefix = phone.prefix();
        if let Some(left) = self.guard.paused_for(phone) {
            return Err(pumping_refusal(prefix, left));
        }
        let number = phone.as_str();
        let safe = self.guard.is_safe(number);
        let wanted: Vec<(StartLimit, Limit)> = if abuse.rate_limits {
            StartLimit::ALL
                .into_iter()
                .filter(|kind| !(safe && *kind == StartLimit::Prefix))
                .map(|kind| (kind, kind.limit(abuse, number, prefix, ip)))
                .filter(|(_, l)| l.limit > 0 && !l.window.is_zero())
                .collect()
        } else {
            Vec::new()
        };
        let country = phone.country().unwrap_or("unknown");
        let budget = abuse.daily_sms_budget.of(phone.country()).map(|n| (country, n));
        if wanted.is_empty() && budget.is_none() {
            return Ok(());
        }
        let ask = Ask {
            limits: wanted.iter().map(|(_, l)| l.clone()).collect(),
            budget: budget.map(|(country, n)| (country.to_owned(), n)),
        };
        let (index, retry_after) = match self.taker.take(ask).await? {
            None => return Ok(()),
            Some(Refusal::Budget(retry_after)) => {
                return Err(ApiError::BudgetExhausted {
                    message: format!(
                        "the daily SMS budget for {country} numbers ({}) is used up; it renews at 00:00 UTC",
                        budget.map_or(0, |(_, n)| n)
                    ),
                    retry_after,
                });
            }
            Some(Refusal::Limit(index, retry_after)) => (index, retry_after),
        };
        let refused = wanted[index].0;
        if refused == StartLimit::Prefix {
            return Err(self.ceiling_reached(prefix).await?);
        }
        Err(ApiError::RateLimited {
            message: refused.message(abuse, retry_after),
            retry_after,
        })
    }

    /// The hard ceiling of starts per prefix was reached: the prefix is paused, for every
    /// replica, and the refusal says for how long.
    async fn ceiling_reached(&self, prefix: &str) -> Result<ApiError, ApiError> {
        let abuse = &self.abuse;
        let left = match guard::pause(&self.pool, prefix, abuse.prefix_pause, true, "ceiling").await? {
            Some(paused) => {
                tracing::error!(
                    alert = "sms_pumping",
                    prefix,
                    limit = abuse.prefix_starts_per_minute,
                    pause_seconds = paused.lasts.as_secs(),
                    strikes = paused.strikes,
                    "ALERT: starts to one number prefix exceeded PREFIX_STARTS_PER_MINUTE; the prefix is paused"
                );
                metrics::counter!(names::PREFIX_PAUSES).increment(1);
                paused.lasts
            }
            None => limits::prefix_paused(&self.pool, prefix)
                .await?
                .unwrap_or(abuse.prefix_pause),
        };
        self.guard.mark_paused(prefix, left);
        Ok(pumping_refusal(prefix, left))
    }

    /// Whether a check for `phone` from `ip` may go ahead. Counts it as a wrong code up front
    /// (so parallel guesses cannot overrun the daily limit); [`CheckTicket::not_wrong`] undoes that.
    pub async fn admit_check(&self, phone: &PhoneNumber, ip: Option<IpAddr>) -> Result<CheckTicket, ApiError> {
        let abuse = &self.abuse;
        if !abuse.rate_limits {
            return Ok(CheckTicket { wrong_code_key: None });
        }
        let wanted: Vec<(CheckLimit, Limit)> = CheckLimit::ALL
            .into_iter()
            .map(|kind| (kind, kind.limit(abuse, phone.as_str(), ip)))
            .filter(|(_, l)| l.limit > 0)
            .collect();
        let ask = Ask {
            limits: wanted.iter().map(|(_, l)| l.clone()).collect(),
            budget: None,
        };
        match self.taker.take(ask).await? {
            None => Ok(CheckTicket {
                wrong_code_key: wanted
                    .into_iter()
                    .find(|(kind, _)| *kind == CheckLimit::WrongCodes)
                    .map(|(_, l)| l.key),
            }),
            Some(Refusal::Budget(_)) => Err(ApiError::Internal(anyhow::anyhow!("a check has no budget"))),
            Some(Refusal::Limit(index, retry_after)) => Err(ApiError::RateLimited {
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

fn pumping_refusal(prefix: &str, left: Duration) -> ApiError {
    ApiError::SuspectedPumping {
        message: format!(
            "SMS pumping is suspected on numbers starting {prefix}; that prefix is paused, try again later"
        ),
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
