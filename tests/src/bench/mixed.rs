//! The mixed-channel burst: 60 % SMS, 20 % WhatsApp, 20 % SMS falling back to a call (the
//! SMS goes unapproved for `FALLBACK_AFTER_SECONDS`), drained by two workers; and the check
//! that every number got exactly what its channels promise.

use std::collections::HashMap;
use std::fmt::Write;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;

use crate::fake_twilio::FakeTwilio;

/// Which channels a number of the burst is started with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Sms,
    Whatsapp,
    SmsThenCall,
}

/// The group of the `i`-th number: the fallback fifth first (their calls come due while the
/// rest drains), then SMS and WhatsApp three to one.
fn group(i: usize, n: usize) -> Group {
    if i < n / 5 {
        Group::SmsThenCall
    } else if i % 4 == 3 {
        Group::Whatsapp
    } else {
        Group::Sms
    }
}

/// The start bodies of the burst, in the order they are posted.
pub fn bodies(phones: &[String]) -> Vec<Value> {
    phones
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let channels = match group(i, phones.len()) {
                Group::Sms => json!(["sms"]),
                Group::Whatsapp => json!(["whatsapp"]),
                Group::SmsThenCall => json!(["sms", "call"]),
            };
            json!({"phone_number": p, "channels": channels})
        })
        .collect()
}

/// Twilio requests the burst needs: one per number, and a call for each fallback.
pub fn requests(n: usize) -> u64 {
    (n + n / 5) as u64
}

/// What the drain of the burst came to.
#[derive(Debug, Clone, Default)]
pub struct Mixed {
    pub numbers: usize,
    /// Twilio requests (messages and calls) made.
    pub requests: u64,
    /// From the first Twilio request of the drain to the last step submitted.
    pub elapsed: Duration,
    /// `workers × WORKER_CONCURRENCY / Twilio latency`.
    pub bound: f64,
    /// Numbers that did not get exactly their channels (a message or call missing).
    pub lost: usize,
    /// Numbers that got something twice.
    pub twice: usize,
}

impl Mixed {
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn exact(&self) -> bool {
        self.lost == 0 && self.twice == 0
    }

    /// The section of the report.
    pub fn markdown(&self, fallback_after: Duration) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n### Mixed-channel burst (60 % SMS, 20 % WhatsApp, 20 % SMS → call after {} s unapproved), 2 workers\n",
            fallback_after.as_secs()
        );
        let _ = writeln!(
            out,
            "| numbers | Twilio requests | drain time | rate | bound | rate / bound | lost | twice |\n| --- | --- | --- | --- | --- | --- | --- | --- |"
        );
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} s | {:.0}/s | {:.0}/s | {:.2} | {} | {} |",
            self.numbers,
            self.requests,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.bound,
            self.rate() / self.bound,
            self.lost,
            self.twice
        );
        out
    }
}

/// Waits until the fake has taken `before + requests(n)` create requests and every number's
/// last step is submitted; returns the drain time from the first request after `before`.
pub async fn wait_drained(fake: &FakeTwilio, pool: &PgPool, phones: &[String], before: u64) -> Duration {
    let started = super::wait_for_creates(fake, before, before + requests(phones.len())).await;
    loop {
        let done: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM verifications WHERE phone_number = ANY($1) \
             AND step = cardinality(channels) - 1 AND delivery_status IN ('submitted', 'sent', 'delivered')",
        )
        .bind(phones)
        .fetch_one(pool)
        .await
        .unwrap_or(0);
        if done == phones.len() as i64 {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "the mixed drain did not finish in 30 minutes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Counts, per number, its SMS, WhatsApp messages and calls against what its group promises:
/// `(lost, twice)`.
pub fn tally(fake: &FakeTwilio, phones: &[String]) -> (usize, usize) {
    let mut got = HashMap::<String, (usize, usize, usize)>::new();
    for m in fake.messages() {
        match m.to.strip_prefix("whatsapp:") {
            Some(number) => got.entry(number.to_owned()).or_default().1 += 1,
            None => got.entry(m.to).or_default().0 += 1,
        }
    }
    for c in fake.calls() {
        got.entry(c.to).or_default().2 += 1;
    }
    let (mut lost, mut twice) = (0, 0);
    for (i, phone) in phones.iter().enumerate() {
        let expected = match group(i, phones.len()) {
            Group::Sms => (1, 0, 0),
            Group::Whatsapp => (0, 1, 0),
            Group::SmsThenCall => (1, 0, 1),
        };
        let (sms, whatsapp, calls) = got.get(phone).copied().unwrap_or_default();
        if sms > expected.0 || whatsapp > expected.1 || calls > expected.2 {
            twice += 1;
        } else if (sms, whatsapp, calls) != expected {
            lost += 1;
        }
    }
    (lost, twice)
}
