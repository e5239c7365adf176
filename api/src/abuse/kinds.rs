//! The rate limits as types: each start and check limit names its key, its count and
//! window, and its refusal message, so a new limit cannot fall into another's arm.

use std::net::IpAddr;
use std::time::Duration;

use common::limits::Limit;
use common::phone::NumberKind;
use common::texts::Channel;

use super::AbuseConfig;

fn ip_key(kind: &str, ip: Option<IpAddr>) -> String {
    format!(
        "{kind}:ip:{}",
        ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
    )
}

/// The limits on starts. Each names its key, its count and window, and its refusal: a new
/// limit is a new variant, and the compiler asks for all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StartLimit {
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
    pub(super) const ALL: [Self; 4] = [Self::Cooldown, Self::Sends, Self::Ip, Self::Prefix];

    pub(super) fn limit(self, abuse: &AbuseConfig, number: &str, prefix: &str, ip: Option<IpAddr>) -> Limit {
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
    pub(super) fn message(self, abuse: &AbuseConfig, retry_after: Duration) -> String {
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

/// `SMS_NUMBER_TYPES`: the number types accepted; `None` means any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberKinds(pub Option<Vec<NumberKind>>);

impl NumberKinds {
    /// Whether a number of `kind` may get the code on `channel`. Messages (SMS, WhatsApp) go
    /// to the types of `SMS_NUMBER_TYPES`. A call can also reach a fixed line, but never a
    /// premium-rate or shared-cost number (the callee's operator is paid for the call:
    /// international revenue share fraud), whatever the setting says.
    pub fn accept(&self, kind: NumberKind, channel: Channel) -> bool {
        let listed = self.0.as_ref().is_none_or(|kinds| kinds.contains(&kind));
        match channel {
            Channel::Sms | Channel::Whatsapp => listed,
            Channel::Call => {
                !matches!(kind, NumberKind::PremiumRate | NumberKind::SharedCost)
                    && (listed || kind == NumberKind::FixedLine)
            }
        }
    }
}

/// Parses `SMS_NUMBER_TYPES`: libphonenumber's type names, or `any`.
pub fn number_kinds(value: &str) -> Result<NumberKinds, String> {
    let names = common::settings::list(value);
    if names.is_empty() || names.iter().any(|n| n == "any") {
        return Ok(NumberKinds(None));
    }
    let kinds = names
        .iter()
        .map(|n| n.parse::<NumberKind>())
        .collect::<Result<Vec<_>, _>>()?;
    Ok(NumberKinds(Some(kinds)))
}

pub(super) const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(86_400);

/// The limits on checks, like [`StartLimit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CheckLimit {
    /// `CHECKS_PER_IP_PER_MINUTE`.
    Ip,
    /// `WRONG_CODES_PER_NUMBER_PER_DAY`: counted before the comparison, given back when the
    /// code was right ([`CheckTicket::not_wrong`]).
    WrongCodes,
}

impl CheckLimit {
    pub(super) const ALL: [Self; 2] = [Self::Ip, Self::WrongCodes];

    pub(super) fn limit(self, abuse: &AbuseConfig, number: &str, ip: Option<IpAddr>) -> Limit {
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

    pub(super) fn message(self, abuse: &AbuseConfig) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn defaults() -> AbuseConfig {
        crate::config::tests::read(&[]).unwrap().abuse
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

    #[test]
    fn calls_reach_fixed_lines_but_never_premium_rate_or_shared_cost_numbers() {
        use NumberKind::*;
        let defaults = defaults().number_kinds;
        let any = number_kinds("any").unwrap();
        for kinds in [&defaults, &any] {
            assert!(kinds.accept(Mobile, Channel::Call) && kinds.accept(FixedLine, Channel::Call));
            assert!(!kinds.accept(PremiumRate, Channel::Call) && !kinds.accept(SharedCost, Channel::Call));
        }
        assert!(!defaults.accept(FixedLine, Channel::Sms) && !defaults.accept(FixedLine, Channel::Whatsapp));
        assert!(!defaults.accept(PremiumRate, Channel::Sms) && any.accept(PremiumRate, Channel::Sms));
        assert!(
            !defaults.accept(TollFree, Channel::Call),
            "a call takes the listed types and fixed lines only"
        );
    }
}
