//! The signup-burst benchmark (`cargo run --release -p verify-tests --bin bench`): the raw
//! limits of this machine, then a burst of starts at a running `verify-api`, its drain by
//! one and two `verify-worker`s against the fake Twilio, a mixed-channel burst with
//! fallbacks, a run of checks, peak memory, and a check that every verification got exactly
//! one SMS (or exactly its channels).

pub mod load;
pub mod mixed;
pub mod raw;
pub mod report;

use std::time::{Duration, Instant};

use crate::fake_twilio::FakeTwilio;

/// Waits for the first Twilio create request after `before` (within a minute), then until
/// `target` have been made (within 30 minutes); returns when the first came. Reads the fake
/// in this process, not PostgreSQL: polling the database during a drain would take CPU from
/// the system under test.
pub async fn wait_for_creates(fake: &FakeTwilio, before: u64, target: u64) -> Instant {
    let spawned = Instant::now();
    while fake.create_calls() == before {
        assert!(
            spawned.elapsed() < Duration::from_secs(60),
            "no worker made a call within a minute"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let started = Instant::now();
    while fake.create_calls() < target {
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "the drain did not finish in 30 minutes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started
}
