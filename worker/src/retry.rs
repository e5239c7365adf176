//! The retry policy as data: how long to wait between calls, and when to stop; which
//! outcomes are retried at all is [`crate::classify`].

use std::time::Duration;

use backoff::ExponentialBackoff;
use backoff::backoff::Backoff;
use common::broker::RETRY_TIERS;
use common::settings::{millis, seconds};

/// Exponential delays with jitter between attempts, and the bounds on retrying; each field
/// is a setting of `verify-worker` (flattened into [`crate::config::WorkerConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, clap::Args)]
pub struct RetryPolicy {
    /// first retry delay after a transient Twilio error (each delay gets ±50 % jitter), 1 to 600000 ms
    #[arg(long = "retry-initial-ms", env = "RETRY_INITIAL_MS", default_value = "2000", value_parser = millis(1..=600_000))]
    pub initial: Duration,
    /// growth of the retry delay per attempt, 1.0 to 10.0
    #[arg(long = "retry-multiplier", env = "RETRY_MULTIPLIER", default_value = "4.0", value_parser = multiplier)]
    pub multiplier: f64,
    /// longest retry delay, 1 to 3600000 ms
    #[arg(long = "retry-max-delay-ms", env = "RETRY_MAX_DELAY_MS", default_value = "300000", value_parser = millis(1..=3_600_000))]
    pub max_delay: Duration,
    /// Twilio calls per verification before its delivery is failed, 1 to 20
    #[arg(long = "send-max-attempts", env = "SEND_MAX_ATTEMPTS", default_value = "5", value_parser = clap::value_parser!(u32).range(1..=20))]
    pub max_attempts: u32,
    /// delays up to this are waited in the worker, longer ones in a delay queue; 0 to 60000 ms
    #[arg(long = "retry-inprocess-max-ms", env = "RETRY_INPROCESS_MAX_MS", default_value = "1000", value_parser = millis(0..=60_000))]
    pub in_process_max: Duration,
    /// no SMS is sent when less of the code's lifetime than this is left, 0 to 3600 seconds
    #[arg(long = "min-useful-lifetime-seconds", env = "MIN_USEFUL_LIFETIME_SECONDS", default_value = "30", value_parser = seconds(0..=3600))]
    pub min_useful_lifetime: Duration,
}

fn multiplier(value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(m) if (1.0..=10.0).contains(&m) => Ok(m),
        _ => Err(format!("must be a number from 1.0 to 10.0, got {value:?}")),
    }
}

/// What to do after a call that may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Wait this long in the worker, then call again.
    WaitInProcess(Duration),
    /// Hand the job to the delay queues for this long (the job carries the time it is due;
    /// see [`tier_for`]).
    Defer(Duration),
    /// `SEND_MAX_ATTEMPTS` calls were made.
    AttemptsExhausted,
    /// The next call would come too late for the code to be of use.
    Expiring,
}

/// The tier a delay goes to: the longest tier not longer than the delay (never waiting
/// longer than the policy asked), or the shortest. What the tier leaves of the delay is
/// waited again when the job comes back early: in the worker when it is short, else in the
/// tier that fits the rest, so the delay that happens is the one asked for, jitter included.
pub fn tier_for(delay: Duration) -> Duration {
    RETRY_TIERS
        .iter()
        .rev()
        .copied()
        .find(|t| *t <= delay)
        .unwrap_or(RETRY_TIERS[0])
}

impl RetryPolicy {
    /// A fresh schedule: each delay is the previous one times `multiplier`, capped at
    /// `max_delay`, with ±50 % jitter so that workers hit by the same outage do not retry
    /// in lock-step. Bounded by the caller, not by elapsed time.
    pub fn schedule(&self) -> impl Backoff + Send + use<> {
        let mut backoff = ExponentialBackoff {
            initial_interval: self.initial,
            current_interval: self.initial,
            multiplier: self.multiplier,
            max_interval: self.max_delay,
            randomization_factor: 0.5,
            max_elapsed_time: None,
            ..ExponentialBackoff::default()
        };
        backoff.reset();
        backoff
    }

    /// The delay after call number `attempt` (1-based), wherever the earlier calls were
    /// made: the attempt count travels with the job, so the schedule survives restarts.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let mut schedule = self.schedule();
        for _ in 1..attempt {
            schedule.next_backoff();
        }
        schedule.next_backoff().unwrap_or(self.max_delay)
    }

    /// What follows a retryable failure of call number `attempt`, with `remaining` of the
    /// code's lifetime left. `at_least`: what Twilio asked for (`Retry-After`), which wins
    /// over a shorter delay of the schedule.
    pub fn next(&self, attempt: u32, remaining: Duration, at_least: Option<Duration>) -> Next {
        if attempt >= self.max_attempts {
            return Next::AttemptsExhausted;
        }
        let delay = self.delay_after(attempt).max(at_least.unwrap_or_default());
        self.after_delay(delay, remaining)
    }

    /// Where to wait `delay`, or whether waiting is pointless.
    pub fn after_delay(&self, delay: Duration, remaining: Duration) -> Next {
        if remaining < delay + self.min_useful_lifetime {
            Next::Expiring
        } else if delay <= self.in_process_max {
            Next::WaitInProcess(delay)
        } else {
            Next::Defer(delay)
        }
    }

    /// Whether a call may be made now, with `remaining` of the code's lifetime left.
    pub fn worth_sending(&self, remaining: Duration) -> bool {
        remaining >= self.min_useful_lifetime
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_millis(100),
            multiplier: 2.0,
            max_delay: Duration::from_millis(1000),
            max_attempts: 5,
            in_process_max: Duration::from_millis(300),
            min_useful_lifetime: Duration::from_secs(30),
        }
    }

    #[test]
    fn delays_grow_with_jitter_and_stay_under_the_cap() {
        let mut schedule = policy().schedule();
        let delays: Vec<Duration> = (0..8).map(|_| schedule.next_backoff().unwrap()).collect();
        // First delay: 100 ms ± 50 %.
        assert!((50..=150).contains(&delays[0].as_millis()), "{delays:?}");
        // Third delay: 400 ms ± 50 %.
        assert!((200..=600).contains(&delays[2].as_millis()), "{delays:?}");
        // Never above the cap plus its jitter.
        assert!(delays.iter().all(|d| d.as_millis() <= 1500), "{delays:?}");
        // Jitter: two schedules differ somewhere.
        let mut other = policy().schedule();
        let again: Vec<Duration> = (0..8).map(|_| other.next_backoff().unwrap()).collect();
        assert_ne!(delays, again);
    }

    #[test]
    fn the_delay_depends_on_the_attempt_number_carried_by_the_job() {
        for _ in 0..50 {
            assert!((50..=150).contains(&policy().delay_after(1).as_millis()));
            assert!((200..=600).contains(&policy().delay_after(3).as_millis()));
            assert!(policy().delay_after(10).as_millis() <= 1500);
        }
    }

    #[test]
    fn retries_stop_at_the_attempt_limit() {
        let plenty = Duration::from_secs(600);
        assert_eq!(policy().next(5, plenty, None), Next::AttemptsExhausted);
        assert_eq!(policy().next(6, plenty, None), Next::AttemptsExhausted);
        assert!(matches!(
            policy().next(4, plenty, None),
            Next::WaitInProcess(_) | Next::Defer(_)
        ));
    }

    #[test]
    fn twilio_s_retry_after_wins_over_a_shorter_delay_but_not_a_longer_one() {
        let plenty = Duration::from_secs(600);
        let asked = Duration::from_secs(20);
        assert_eq!(policy().next(1, plenty, Some(asked)), Next::Defer(asked));
        let short = Duration::from_millis(10);
        assert!(matches!(
            policy().next(1, plenty, Some(short)),
            Next::WaitInProcess(d) if d >= Duration::from_millis(50)
        ));
        // A wait the code would not survive is not planned.
        assert_eq!(policy().next(1, Duration::from_secs(40), Some(asked)), Next::Expiring);
    }

    #[test]
    fn no_retry_is_planned_that_would_come_too_late_for_the_code() {
        let p = policy();
        assert_eq!(
            p.after_delay(Duration::from_secs(5), Duration::from_secs(34)),
            Next::Expiring
        );
        assert_eq!(
            p.after_delay(Duration::from_secs(5), Duration::from_secs(36)),
            Next::Defer(Duration::from_secs(5))
        );
        assert!(!p.worth_sending(Duration::from_secs(29)));
        assert!(p.worth_sending(Duration::from_secs(30)));
    }

    #[test]
    fn short_delays_wait_in_process_and_long_ones_in_a_delay_queue() {
        let plenty = Duration::from_secs(600);
        let p = policy();
        assert_eq!(
            p.after_delay(Duration::from_millis(300), plenty),
            Next::WaitInProcess(Duration::from_millis(300))
        );
        assert_eq!(
            p.after_delay(Duration::from_millis(301), plenty),
            Next::Defer(Duration::from_millis(301))
        );
        assert_eq!(
            p.after_delay(Duration::from_secs(45), plenty),
            Next::Defer(Duration::from_secs(45))
        );
    }

    #[test]
    fn a_delay_goes_to_the_longest_tier_not_longer_than_it() {
        assert_eq!(tier_for(Duration::from_millis(10)), Duration::from_secs(1));
        assert_eq!(tier_for(Duration::from_secs(1)), Duration::from_secs(1));
        assert_eq!(tier_for(Duration::from_secs(9)), Duration::from_secs(3));
        assert_eq!(tier_for(Duration::from_secs(10)), Duration::from_secs(10));
        assert_eq!(tier_for(Duration::from_secs(3600)), Duration::from_secs(300));
    }
}
