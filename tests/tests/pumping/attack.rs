//! A pumping attack on two prefixes, and the same attack on a prefix listed as safe.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::numbers::{Sequence, client_ip};
use crate::{Answer, Service, tally, unix};

/// One start of an attacker.
pub struct Attempt {
    pub prefix: &'static str,
    pub number: String,
    pub answer: Answer,
}

/// A start for `number` (of `prefix`) from `ip`.
pub async fn fire(service: &Service, prefix: &'static str, number: String, ip: String) -> Attempt {
    let answer = service.start_from(&number, &ip).await;
    Attempt { prefix, number, answer }
}

/// An attacked prefix: the numbers it walks, and when it was seen paused.
struct Target {
    prefix: &'static str,
    numbers: Sequence,
    safe: bool,
    paused_at: Option<OffsetDateTime>,
    done: bool,
}

impl Target {
    fn new(prefix: &'static str, first: &str, safe: bool) -> Self {
        assert!(first.starts_with(prefix), "{first} is not in {prefix}");
        Self {
            prefix,
            numbers: Sequence::from(first),
            safe,
            paused_at: None,
            done: false,
        }
    }

    /// Takes `at` as the pause's time if it is earlier than the one known.
    fn paused(&mut self, at: OffsetDateTime) {
        self.paused_at = Some(self.paused_at.map_or(at, |known| known.min(at)));
    }
}

const SAFE: &str = "+1305";
/// Every 200 ms a start to the next of the three prefixes in turn: 100 a minute to each, so
/// 200 a minute to the two unsafe ones.
const PACE: Duration = Duration::from_millis(200);
const PAUSED_WITHIN: Duration = Duration::from_secs(120);
/// How long a paused prefix is attacked on.
const AFTER_PAUSE: Duration = Duration::from_secs(20);
/// How long the safe prefix is attacked at least: long enough to have been paused if it
/// were not safe (the unsafe ones are paused sooner).
const SAFE_FOR: Duration = Duration::from_secs(100);

#[tokio::test(flavor = "multi_thread")]
#[ignore = "slow process test: simulated launch burst and pumping attack; run with --include-ignored"]
async fn an_attack_pauses_its_prefixes_within_two_minutes_but_not_a_safe_prefix() {
    let service = Service::spawn("on", &[("PUMPING_SAFE_PREFIXES", SAFE)]).await;
    let log = service.api_log();
    let mut targets = [
        Target::new("+1212", "+12122000000", false),
        Target::new("+1718", "+17182000000", false),
        Target::new(SAFE, "+13052000000", true),
    ];
    service
        .app
        .watch
        .step("pumping attack: 100 unchecked starts a minute to each of three prefixes");
    let began = Instant::now();
    let mut ticks = tokio::time::interval(PACE);
    let mut polls = tokio::time::interval(Duration::from_secs(1));
    let (mut turn, mut firing) = (0, true);
    let mut running = FuturesUnordered::new();
    let mut attempts: Vec<Attempt> = Vec::new();
    loop {
        tokio::select! {
            _ = ticks.tick(), if firing => {
                let target = &mut targets[turn % 3];
                turn += 1;
                if !target.done {
                    let number = target.numbers.next().expect("numbers");
                    running.push(fire(&service, target.prefix, number, client_ip(turn)));
                }
            }
            _ = polls.tick(), if firing => {
                for row in service.pauses().await.into_iter().filter(|p| p.enforced) {
                    if let Some(target) = targets.iter_mut().find(|t| t.prefix == row.prefix) {
                        target.paused(row.paused_at);
                    }
                }
                let now = OffsetDateTime::now_utc();
                for target in targets.iter_mut().filter(|t| !t.safe) {
                    target.done = target.paused_at.is_some_and(|at| now >= at + AFTER_PAUSE);
                }
                let unsafe_ones = || targets.iter().filter(|t| !t.safe);
                let gave_up = began.elapsed() > PAUSED_WITHIN + Duration::from_secs(5)
                    && unsafe_ones().any(|t| t.paused_at.is_none());
                let judged_if_unsafe = began.elapsed() >= SAFE_FOR;
                let finished = unsafe_ones().all(|t| t.done) && judged_if_unsafe;
                firing = !(gave_up || finished);
            }
            Some(attempt) = running.next() => {
                if attempt.answer.suspected() {
                    let target = targets.iter_mut().find(|t| t.prefix == attempt.prefix).expect("a target");
                    target.paused(attempt.answer.sent_at);
                }
                attempts.push(attempt);
            }
            else => break,
        }
    }
    drop(running);
    let first = attempts.iter().map(|a| a.answer.sent_at).min().expect("attempts");
    let of = |prefix: &'static str| attempts.iter().filter(move |a| a.prefix == prefix);
    // The evaluation that would have paused the safe prefix for its last start, if any.
    let last_safe = of(SAFE)
        .map(|a| a.answer.answered_at)
        .max()
        .expect("starts to the safe prefix");
    service.wait_until_judged(last_safe, Duration::from_secs(150)).await;
    for target in &targets {
        eprintln!(
            "attack on {}: {} starts {:?}, paused {:?} s after the first start",
            target.prefix,
            of(target.prefix).count(),
            tally(of(target.prefix).map(|a| &a.answer)),
            target.paused_at.map(|at| (at - first).as_seconds_f64())
        );
    }
    let pauses = service.pauses().await;
    eprintln!("attack: prefix_pauses {pauses:?}");

    for target in targets.iter().filter(|t| !t.safe) {
        let prefix = target.prefix;
        let paused_at = target.paused_at.unwrap_or_else(|| {
            panic!(
                "{prefix} was never paused in {:.0} s of attack ({:?}; prefix_pauses {pauses:?}; API log {log})",
                began.elapsed().as_secs_f64(),
                tally(of(prefix).map(|a| &a.answer))
            )
        });
        let after_first = (paused_at - first).as_seconds_f64();
        assert!(
            after_first <= PAUSED_WITHIN.as_secs_f64(),
            "{prefix} was paused {after_first:.1} s after the attack's first start, later than {PAUSED_WITHIN:?} \
             (API log {log})"
        );
        let others: Vec<&Attempt> = of(prefix)
            .filter(|a| !a.answer.accepted() && !a.answer.suspected())
            .collect();
        assert!(
            others.is_empty(),
            "starts to {prefix} answered other than 202 or 429 {}: {:?}, e.g. {} (API log {log})",
            crate::SUSPECTED,
            tally(others.iter().map(|a| &a.answer)),
            others[0].number
        );
        let unhinted = of(prefix)
            .filter(|a| a.answer.suspected() && a.answer.retry_after.is_none())
            .count();
        assert_eq!(unhinted, 0, "refusals for {prefix} without Retry-After (API log {log})");
        let after: Vec<&Attempt> = of(prefix).filter(|a| a.answer.sent_at > paused_at).collect();
        let slipped = after.iter().filter(|a| a.answer.accepted()).count();
        eprintln!(
            "attack on {prefix}: {} starts sent after its pause, {slipped} of them accepted",
            after.len()
        );
        assert!(
            after.len() >= 25,
            "only {} starts to {prefix} after its pause: the attack did not go on for {AFTER_PAUSE:?}",
            after.len()
        );
        assert!(
            slipped * 10 <= after.len(),
            "{slipped} of the {} starts to {prefix} sent after its pause at {paused_at} were accepted (more than \
             10 %) (API log {log})",
            after.len()
        );
    }

    let safe: Vec<&Attempt> = of(SAFE).collect();
    assert!(safe.len() >= 150, "only {} starts to the safe prefix", safe.len());
    let refused: Vec<&Attempt> = safe.iter().copied().filter(|a| !a.answer.accepted()).collect();
    assert!(
        refused.is_empty(),
        "{} of {} starts to the safe prefix {SAFE} were not accepted: {:?}, the first sent {:.1} s into the \
         attack (API log {log})",
        refused.len(),
        safe.len(),
        tally(refused.iter().map(|a| &a.answer)),
        (refused[0].answer.sent_at - first).as_seconds_f64()
    );
    let covering: Vec<_> = pauses
        .iter()
        .filter(|p| SAFE.starts_with(&p.prefix) || p.prefix.starts_with(SAFE))
        .collect();
    assert!(
        covering.is_empty(),
        "the safe prefix {SAFE} was paused: {covering:?} (API log {log})"
    );

    // No SMS for a refused start, once every job is done with.
    service.app.wait_until_idle().await;
    let texted: HashSet<String> = service.app.fake.messages().into_iter().map(|m| m.to).collect();
    let refused_but_texted: Vec<&str> = attempts
        .iter()
        .filter(|a| !a.answer.accepted() && texted.contains(&a.number))
        .map(|a| a.number.as_str())
        .collect();
    assert!(
        refused_but_texted.is_empty(),
        "{} numbers whose start was refused got an SMS, e.g. {} (worker log {})",
        refused_but_texted.len(),
        refused_but_texted[0],
        service.processes.worker_log.display()
    );

    let alerts = service.alerts();
    for prefix in ["+1212", "+1718"] {
        assert!(
            alerts.iter().any(|a| a.prefix == prefix),
            "no sms_pumping alert for {prefix} in the API log {log}; alerts: {:?}",
            alerts.iter().map(|a| &a.line).collect::<Vec<_>>()
        );
    }
    assert!(
        !alerts.iter().any(|a| a.prefix.starts_with(SAFE)),
        "an sms_pumping alert for the safe prefix {SAFE} (API log {log})"
    );
    let scrape = service.scrape().await;
    let pauses_total = scrape.value("verify_prefix_pauses_total", &[]);
    assert!(
        pauses_total.is_some_and(|n| n >= 2.0),
        "verify_prefix_pauses_total is {pauses_total:?} after two prefixes were paused (API log {log})"
    );
    let suspected = scrape.value("verify_pumping_suspected_total", &[("mode", "on")]);
    assert!(
        suspected.is_some_and(|n| n >= 2.0),
        "verify_pumping_suspected_total{{mode=\"on\"}} is {suspected:?} (API log {log})"
    );
    let refusals = attempts.iter().filter(|a| a.answer.suspected()).count() as f64;
    let counted = scrape.value("verify_starts_refused_total", &[("reason", crate::SUSPECTED)]);
    assert_eq!(
        counted,
        Some(refusals),
        "verify_starts_refused_total{{reason=\"suspected_pumping\"}} against the refusals answered (API log {log})"
    );
    eprintln!(
        "attack: done {:.1} s after the first start ({} alerts)",
        unix(OffsetDateTime::now_utc()) - unix(first),
        alerts.len()
    );
    service.stop().await;
}
