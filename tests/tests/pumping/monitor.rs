//! Monitor mode: an attack is alerted on and counted, and nothing is refused.

use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::attack::{Attempt, fire};
use crate::numbers::{Sequence, client_ip};
use crate::{Service, tally};

const PREFIX: &str = "+1212";
/// 150 unchecked starts a minute.
const PACE: Duration = Duration::from_millis(400);
const SUSPECTED_WITHIN: Duration = Duration::from_secs(120);
const ATTACK_AT_MOST: Duration = Duration::from_secs(150);

/// When each sign of the suspicion was first seen, in seconds after the attack began.
#[derive(Debug, Default)]
struct Seen {
    alert: Option<f64>,
    metric: Option<f64>,
    row: Option<f64>,
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "slow process test: simulated launch burst and pumping attack; run with --include-ignored"]
async fn in_monitor_mode_an_attack_is_alerted_and_counted_but_nothing_is_refused() {
    let service = Service::spawn("monitor", &[]).await;
    let log = service.api_log();
    let mut numbers = Sequence::from("+12122000000");
    service
        .app
        .watch
        .step("monitor mode: 150 unchecked starts a minute to one prefix");
    let began = Instant::now();
    let start = OffsetDateTime::now_utc();
    let mut ticks = tokio::time::interval(PACE);
    let mut polls = tokio::time::interval(Duration::from_secs(1));
    let (mut sent, mut firing, mut seen) = (0, true, Seen::default());
    let mut running = FuturesUnordered::new();
    let mut attempts: Vec<Attempt> = Vec::new();
    loop {
        tokio::select! {
            _ = ticks.tick(), if firing => {
                sent += 1;
                running.push(fire(&service, PREFIX, numbers.next().expect("numbers"), client_ip(sent)));
            }
            _ = polls.tick(), if firing => {
                let at = began.elapsed().as_secs_f64();
                let scrape = service.scrape().await;
                if scrape.value("verify_pumping_suspected_total", &[("mode", "monitor")]).is_some_and(|n| n >= 1.0) {
                    seen.metric.get_or_insert(at);
                }
                if service.alerts().iter().any(|a| a.prefix == PREFIX) {
                    seen.alert.get_or_insert(at);
                }
                if service.pauses().await.iter().any(|p| p.prefix == PREFIX && !p.enforced) {
                    seen.row.get_or_insert(at);
                }
                let all_seen = seen.alert.is_some() && seen.metric.is_some() && seen.row.is_some();
                firing = !all_seen && began.elapsed() < ATTACK_AT_MOST;
            }
            Some(attempt) = running.next() => attempts.push(attempt),
            else => break,
        }
    }
    drop(running);
    let answers = tally(attempts.iter().map(|a| &a.answer));
    eprintln!(
        "monitor: {} starts over {:.1} s {answers:?}; first seen (s after the first start): {seen:?}",
        attempts.len(),
        began.elapsed().as_secs_f64()
    );

    let refused: Vec<&Attempt> = attempts.iter().filter(|a| !a.answer.accepted()).collect();
    assert!(
        refused.is_empty(),
        "in monitor mode {} of {} starts were not accepted: {answers:?}, the first {} sent {:.1} s into the attack \
         (API log {log})",
        refused.len(),
        attempts.len(),
        refused[0].number,
        (refused[0].answer.sent_at - start).as_seconds_f64()
    );
    let alerts = service.alerts();
    let alert = alerts.iter().find(|a| a.prefix == PREFIX);
    let alerted_after = alert.and_then(|a| a.at).map(|at| (at - start).as_seconds_f64());
    eprintln!("monitor: the alert was logged {alerted_after:?} s after the attack's start");
    assert!(
        alerted_after.is_some_and(|s| s <= SUSPECTED_WITHIN.as_secs_f64()),
        "no sms_pumping alert for {PREFIX} within {SUSPECTED_WITHIN:?} of the attack's start (the first came \
         {alerted_after:?} s after it: {:?}) (API log {log})",
        alert.map(|a| &a.line)
    );
    // Seen by a scrape once a second: at most a second after it happened.
    assert!(
        seen.metric.is_some_and(|s| s <= SUSPECTED_WITHIN.as_secs_f64() + 1.0),
        "verify_pumping_suspected_total{{mode=\"monitor\"}} first counted {:?} s after the attack's start, not \
         within {SUSPECTED_WITHIN:?} (API log {log})",
        seen.metric
    );
    let pauses = service.pauses().await;
    assert!(
        pauses.iter().any(|p| p.prefix == PREFIX && !p.enforced),
        "no prefix_pauses row for {PREFIX} with enforced = false: {pauses:?} (API log {log})"
    );
    let enforced: Vec<_> = pauses.iter().filter(|p| p.enforced).collect();
    assert!(
        enforced.is_empty(),
        "monitor mode enforced pauses: {enforced:?} (API log {log})"
    );
    let scrape = service.scrape().await;
    let refusals = scrape.value("verify_starts_refused_total", &[("reason", crate::SUSPECTED)]);
    assert!(
        refusals.is_none_or(|n| n == 0.0),
        "verify_starts_refused_total{{reason=\"suspected_pumping\"}} is {refusals:?} in monitor mode (API log {log})"
    );
    let enforcing = scrape.value("verify_pumping_suspected_total", &[("mode", "on")]);
    assert!(
        enforcing.is_none_or(|n| n == 0.0),
        "verify_pumping_suspected_total{{mode=\"on\"}} is {enforcing:?} in monitor mode (API log {log})"
    );
    service.stop().await;
}
