//! The event webhook settings both binaries read: where events go, the secret that signs
//! them, and how long their delivery is retried. The API and the workers write events (each
//! records changes); the workers deliver them.

use std::time::Duration;

use super::SettingError;
use crate::standard_webhooks::EventSecret;

/// The retry delays Standard Webhooks suggests (after the first try: 5 s, 5 min, 30 min,
/// 2 h, 5 h, 10 h, 10 h), 27 h 35 min 5 s in all.
pub const DEFAULT_RETRY_SCHEDULE: &str = "5s,5m,30m,2h,5h,10h,10h";

/// Event webhooks (off unless both `EVENTS_URL` and `EVENTS_SECRET` are set).
#[derive(Debug, Clone, clap::Args)]
pub struct EventSettings {
    /// where events are POSTed (http or https URL) [default: none, no events]
    #[arg(long = "events-url", env = "EVENTS_URL", value_parser = events_url)]
    pub url: Option<String>,
    /// whsec_ + base64 of 24 to 64 bytes: signs every event (Standard Webhooks); never logged [required with EVENTS_URL]
    #[arg(long = "events-secret", env = "EVENTS_SECRET", value_parser = EventSecret::parse)]
    pub secret: Option<EventSecret>,
    /// delays between the tries of an event delivery (s, m or h each), after which it is dead-lettered; 1 to 20 delays of 1 s to 24 h
    #[arg(long = "events-retry-schedule", env = "EVENTS_RETRY_SCHEDULE", default_value = DEFAULT_RETRY_SCHEDULE, value_parser = schedule)]
    pub retry_schedule: Schedule,
}

/// The delays between tries, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule(pub Vec<Duration>);

impl Default for Schedule {
    /// [`DEFAULT_RETRY_SCHEDULE`].
    fn default() -> Self {
        schedule(DEFAULT_RETRY_SCHEDULE).expect("the default schedule parses")
    }
}

impl Schedule {
    /// How long an event is tried for, first try to last.
    pub fn total(&self) -> Duration {
        self.0.iter().sum()
    }
}

impl EventSettings {
    /// Whether events are on.
    pub fn enabled(&self) -> bool {
        self.url.is_some()
    }

    /// Both or neither of the URL and the secret.
    pub fn check(&self) -> Result<(), SettingError> {
        match (&self.url, &self.secret) {
            (Some(_), None) => Err(SettingError::new("EVENTS_SECRET", "is required with EVENTS_URL")),
            (None, Some(_)) => Err(SettingError::new("EVENTS_URL", "is required with EVENTS_SECRET")),
            _ => Ok(()),
        }
    }
}

fn events_url(raw: &str) -> Result<String, String> {
    let url = url::Url::parse(raw.trim()).map_err(|e| format!("is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("must be an http or https URL with a host".into());
    }
    Ok(url.to_string())
}

fn schedule(raw: &str) -> Result<Schedule, String> {
    let delays = raw
        .split(',')
        .map(|item| delay(item.trim()))
        .collect::<Result<Vec<_>, _>>()?;
    if delays.is_empty() || delays.len() > 20 {
        return Err("must list 1 to 20 delays".into());
    }
    Ok(Schedule(delays))
}

/// `5s`, `30m`, `2h`: 1 s to 24 h.
fn delay(item: &str) -> Result<Duration, String> {
    let bad = || format!("{item:?} is not a delay like 5s, 30m or 2h (1 s to 24 h)");
    let split = item.len().checked_sub(1).ok_or_else(bad)?;
    let (number, unit) = item.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => n,
        "m" => n.checked_mul(60).ok_or_else(bad)?,
        "h" => n.checked_mul(3600).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    if (1..=86_400).contains(&seconds) {
        Ok(Duration::from_secs(seconds))
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_retries_for_more_than_a_day() {
        let s = schedule(DEFAULT_RETRY_SCHEDULE).unwrap();
        assert_eq!(s.0.len(), 7);
        assert_eq!(s.total(), Duration::from_secs(5 + 300 + 1800 + 7200 + 18_000 + 72_000));
        assert!(s.total() >= Duration::from_secs(24 * 3600));
    }

    #[test]
    fn schedules_take_seconds_minutes_and_hours_within_bounds() {
        assert_eq!(
            schedule("1s, 2m,3h").unwrap().0,
            [1, 120, 10_800].map(Duration::from_secs)
        );
        for bad in ["", "0s", "25h", "5", "5d", "s", "1s,,2s", &vec!["1s"; 21].join(",")] {
            assert!(schedule(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn urls_must_be_http() {
        assert!(events_url("https://app.example/hooks").is_ok());
        assert!(events_url("ftp://app.example/").is_err());
        assert!(events_url("not a url").is_err());
    }
}
