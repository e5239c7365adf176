//! A hung test must fail the suite, not stall it until the CI's time runs out.
//!
//! Every `TestApp` holds a [`Watch`]: it names the test (the test thread's name) and the step
//! the test is at. A single watchdog thread checks the running tests once a second; when one
//! has run longer than [`LIMIT`], it prints the test and its step to the real stderr (output
//! capture does not apply to direct writes) and ends the process with the test harness's
//! failure code.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Far beyond the slowest test (a fault test's own deadlines add up to about three minutes
/// on a slow machine), so only a test that waits forever reaches it.
pub const LIMIT: Duration = Duration::from_secs(420);

struct Running {
    test: String,
    step: String,
    since: Instant,
}

fn running() -> &'static Mutex<HashMap<u64, Running>> {
    static RUNNING: OnceLock<Mutex<HashMap<u64, Running>>> = OnceLock::new();
    RUNNING.get_or_init(|| {
        std::thread::Builder::new()
            .name("test-watchdog".into())
            .spawn(watch_loop)
            .expect("starting the test watchdog");
        Mutex::new(HashMap::new())
    })
}

fn lock() -> std::sync::MutexGuard<'static, HashMap<u64, Running>> {
    running().lock().unwrap_or_else(|e| e.into_inner())
}

fn watch_loop() {
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let overdue: Vec<String> = lock()
            .values()
            .filter(|r| r.since.elapsed() > LIMIT)
            .map(|r| format!("{} (at: {})", r.test, r.step))
            .collect();
        if !overdue.is_empty() {
            let mut err = std::io::stderr().lock();
            for test in &overdue {
                drop(writeln!(
                    err,
                    "test {test} has run for more than {} s: it is hung; stopping the suite",
                    LIMIT.as_secs()
                ));
            }
            drop(err.flush());
            std::process::exit(101);
        }
    }
}

/// One test under watch, from its app's start until the app is dropped.
#[derive(Debug)]
pub struct Watch {
    key: u64,
}

impl Watch {
    pub fn start() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let key = NEXT.fetch_add(1, Ordering::Relaxed);
        let test = std::thread::current().name().unwrap_or("(unnamed test)").to_owned();
        lock().insert(
            key,
            Running {
                test,
                step: "starting the service".into(),
                since: Instant::now(),
            },
        );
        Self { key }
    }

    /// Records what the test is doing now, for the report if it hangs.
    pub fn step(&self, step: &str) {
        if let Some(r) = lock().get_mut(&self.key) {
            step.clone_into(&mut r.step);
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        lock().remove(&self.key);
    }
}
