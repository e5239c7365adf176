//! The one reconnect policy of every connection the service keeps: the worker's RabbitMQ
//! consumer, the API's RabbitMQ publisher, and the wait for the database at start. Delays
//! grow from 200 ms, doubling, up to 5 s, each with ±20 % jitter so that the replicas an
//! outage cut off do not all come back in the same instant. Built on the `backoff` crate,
//! which the worker's retry policy uses too.

use std::time::Duration;

use backoff::ExponentialBackoff;
use backoff::backoff::Backoff;

/// The first delay after a failed connection.
pub const FIRST: Duration = Duration::from_millis(200);
/// The longest delay between two attempts (before jitter).
pub const CAP: Duration = Duration::from_secs(5);

/// Delays between connection attempts; [`Delays::reset`] after a success.
pub struct Delays(ExponentialBackoff);

impl Default for Delays {
    fn default() -> Self {
        let mut backoff = ExponentialBackoff {
            initial_interval: FIRST,
            current_interval: FIRST,
            multiplier: 2.0,
            max_interval: CAP,
            randomization_factor: 0.2,
            max_elapsed_time: None,
            ..ExponentialBackoff::default()
        };
        backoff.reset();
        Self(backoff)
    }
}

impl Delays {
    /// The wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        self.0.next_backoff().unwrap_or(CAP)
    }

    /// Back to the first delay, after a connection succeeded.
    pub fn reset(&mut self) {
        self.0.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_200_ms_to_a_5_s_cap_with_jitter_and_start_over_after_a_reset() {
        let mut delays = Delays::default();
        let seen: Vec<Duration> = (0..10).map(|_| delays.next_delay()).collect();
        assert!((160..=240).contains(&seen[0].as_millis()), "{seen:?}");
        assert!((320..=480).contains(&seen[1].as_millis()), "{seen:?}");
        assert!(seen.iter().all(|d| *d <= CAP.mul_f64(1.2)), "{seen:?}");
        assert!(seen[9] >= CAP.mul_f64(0.8), "{seen:?}");
        delays.reset();
        assert!(delays.next_delay() <= Duration::from_millis(240));
    }
}
