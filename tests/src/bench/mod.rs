//! The signup-burst benchmark (`cargo run --release -p verify-tests --bin bench`): the raw
//! limits of this machine, then a burst of starts at a running `verify-api`, its drain by
//! one and two `verify-worker`s against the fake Twilio, a mixed-channel burst with
//! fallbacks, a run of checks, peak memory, CPU by process, and a check that every
//! verification got exactly one SMS (or exactly its channels).

pub mod cpu;
pub mod floor;
pub mod load;
pub mod mixed;
pub mod phones;
pub mod raw;
pub mod report;
pub mod sandbox;
mod targets;

use std::time::{Duration, Instant};

/// The abuse limits of the run: every rate limit on, sized as an operator sizes them for a
/// signup burst of distinct clients (README, "Sizing the limits for a burst"): the per-number
/// and per-client limits at their defaults (each client sends
/// [`load::REQUESTS_PER_CLIENT`] starts and checks, each number is started once), the prefix
/// ceiling above the most starts a prefix gets in a minute of the burst (each burst sends
/// 10,000 to each of its area codes), a daily SMS budget far above the run, and the bench's
/// own address trusted for `X-Forwarded-For`.
pub const LIMITS: [(&str, &str); 10] = [
    ("RATE_LIMITS", "on"),
    ("RESEND_COOLDOWN_SECONDS", "30"),
    ("SENDS_PER_NUMBER", "5"),
    ("SENDS_PER_NUMBER_WINDOW_SECONDS", "600"),
    ("STARTS_PER_IP_PER_MINUTE", "20"),
    ("CHECKS_PER_IP_PER_MINUTE", "60"),
    ("WRONG_CODES_PER_NUMBER_PER_DAY", "9"),
    ("PREFIX_STARTS_PER_MINUTE", "30000"),
    ("DAILY_SMS_BUDGET", "US:1000000"),
    ("TRUSTED_PROXIES", "127.0.0.1/32"),
];

use crate::fake_twilio::FakeTwilio;

/// A drain of the queue by some workers.
#[derive(Debug, Clone, Default)]
pub struct Drain {
    pub workers: usize,
    pub jobs: usize,
    /// From starting the worker processes to the first Twilio call.
    pub startup: Duration,
    /// From the first Twilio call to the last job submitted.
    pub elapsed: Duration,
    /// `workers × WORKER_CONCURRENCY / Twilio latency`.
    pub bound: f64,
    /// Start → submitted, seconds: p50, p90, p99, max.
    pub to_submitted: [f64; 4],
    pub peak_rss_kib: Vec<u64>,
}

impl Drain {
    pub fn rate(&self) -> f64 {
        self.jobs as f64 / self.elapsed.as_secs_f64()
    }
}

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

/// A child process that is stopped (SIGTERM, then waited for) when dropped.
pub struct Proc(pub std::process::Child);

impl Proc {
    /// Peak resident memory (`VmHWM`), in KiB; 0 if it cannot be read.
    pub fn peak_rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.0.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}
