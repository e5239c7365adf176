//! A launch burst: 3,000 real users in a minute, most of whom use their code.

use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::mailbox::Mailbox;
use crate::numbers::{client_ip, launch_numbers, us_area_codes, zipf};
use crate::{Answer, Service, tally, unix};

const USERS: usize = 3_000;
/// One start every 20 ms: 50 a second, the 3,000 in a minute.
const PACE: Duration = Duration::from_millis(20);
const AREA_CODES: usize = 300;
/// With 300 area codes, the busiest gets about 10 % of the starts.
const ZIPF_EXPONENT: f64 = 0.85;
/// Four users in five check their code.
const CHECKING: f64 = 0.8;
/// A user gives up on an SMS that has not come this long after its start.
const SMS_WITHIN: Duration = Duration::from_secs(27);
/// Every checking user checks within this long of its start.
const CHECK_WITHIN: Duration = Duration::from_secs(29);

struct User {
    number: String,
    ip: String,
    checks: bool,
    /// How long the user takes to read and type the code once the SMS is there.
    think: Duration,
}

enum Check {
    /// The user does not check (or its start was refused).
    None,
    Approved,
    /// No SMS within [`SMS_WITHIN`].
    NoSms,
    /// The check's status and body, when it did not approve.
    Failed(u16, Value),
}

struct Outcome {
    number: String,
    answer: Answer,
    check: Check,
}

/// One user: starts, waits for the SMS, takes its time, checks the code.
async fn live(service: &Service, mailbox: &Mailbox, user: &User) -> Outcome {
    let sms = user.checks.then(|| mailbox.expect(&user.number));
    let started = Instant::now();
    let answer = service.start_from(&user.number, &user.ip).await;
    let check = match sms {
        Some(sms) if answer.accepted() => match tokio::time::timeout_at(started + SMS_WITHIN, sms).await {
            Ok(Ok((code, arrived))) => {
                // The user reading the SMS and typing the code: load shape, not a wait.
                tokio::time::sleep_until((arrived + user.think).min(started + CHECK_WITHIN)).await;
                match service.check_from(&user.number, &code, &user.ip).await {
                    (200, body) if body["status"] == "approved" => Check::Approved,
                    (status, body) => Check::Failed(status, body),
                }
            }
            _ => Check::NoSms,
        },
        _ => Check::None,
    };
    Outcome {
        number: user.number.clone(),
        answer,
        check,
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "slow process test: simulated launch burst and pumping attack; run with --include-ignored"]
async fn a_launch_burst_whose_codes_are_used_is_never_refused_or_paused() {
    let seed: u64 = rand::random();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut areas = us_area_codes(&mut rng, AREA_CODES);
    // Which area codes are busiest is chance: the first after shuffling gets the most.
    areas.shuffle(&mut rng);
    assert!(
        areas.len() >= 250,
        "only {} area codes in 201..989 are accepted",
        areas.len()
    );
    let weights = zipf(areas.len(), ZIPF_EXPONENT);
    let users: Vec<User> = launch_numbers(&mut rng, &areas, &weights, USERS)
        .into_iter()
        .enumerate()
        .map(|(i, number)| User {
            number,
            ip: client_ip(i),
            checks: rng.random_bool(CHECKING),
            think: Duration::from_secs_f64(rng.random_range(3.0..25.0)),
        })
        .collect();
    let busiest = users
        .iter()
        .filter(|u| u.number.starts_with(&format!("+1{}", areas[0])))
        .count();
    eprintln!(
        "launch (seed {seed}): {USERS} users over {} area codes, the busiest (+1{}) {busiest}, {} checking",
        areas.len(),
        areas[0],
        users.iter().filter(|u| u.checks).count()
    );

    let service = Service::spawn("on", &[]).await;
    let log = service.api_log();
    let mailbox = Mailbox::default();
    let stop = CancellationToken::new();
    let began = Instant::now();
    service.app.watch.step("launch burst: 50 starts a second for a minute");
    let load = async {
        let mut ticks = tokio::time::interval(PACE);
        let mut waiting = users.iter();
        let mut more = true;
        let mut living = FuturesUnordered::new();
        let mut outcomes = Vec::with_capacity(USERS);
        loop {
            tokio::select! {
                _ = ticks.tick(), if more => match waiting.next() {
                    Some(user) => living.push(live(&service, &mailbox, user)),
                    None => more = false,
                },
                Some(outcome) = living.next() => outcomes.push(outcome),
                else => break,
            }
        }
        stop.cancel();
        outcomes
    };
    let (outcomes, ()) = tokio::join!(load, mailbox.deliver(&service.app.fake, &stop));
    let answers = || outcomes.iter().map(|o| &o.answer);
    let first = answers().map(|a| a.sent_at).min().expect("starts");
    let last_sent = answers().map(|a| a.sent_at).max().expect("starts");
    let last = answers().map(|a| a.answered_at).max().expect("starts");
    eprintln!(
        "launch: starts sent over {:.1} s, all answered and checked {:.1} s after the first; answers {:?}",
        (last_sent - first).as_seconds_f64(),
        began.elapsed().as_secs_f64(),
        tally(answers())
    );
    assert!(
        (last_sent - first).as_seconds_f64() < 75.0,
        "the load fell behind: {USERS} starts took {:.1} s to send instead of about 60",
        (last_sent - first).as_seconds_f64()
    );

    let refused: Vec<&Outcome> = outcomes.iter().filter(|o| !o.answer.accepted()).collect();
    assert!(
        refused.is_empty(),
        "{} of {USERS} starts of the launch were not accepted: {:?}; e.g. {:?} (API log {log})",
        refused.len(),
        tally(refused.iter().map(|o| &o.answer)),
        refused
            .iter()
            .take(5)
            .map(|o| (&o.number, o.answer.kind(), o.answer.sent_at))
            .collect::<Vec<_>>()
    );
    let checked = outcomes.iter().filter(|o| !matches!(o.check, Check::None)).count();
    let no_sms: Vec<&str> = outcomes
        .iter()
        .filter(|o| matches!(o.check, Check::NoSms))
        .map(|o| o.number.as_str())
        .collect();
    let failed: Vec<(&str, u16, &Value)> = outcomes
        .iter()
        .filter_map(|o| match &o.check {
            Check::Failed(status, body) => Some((o.number.as_str(), *status, body)),
            _ => None,
        })
        .collect();
    assert!(
        no_sms.is_empty(),
        "{} of {checked} checking users got no SMS within {SMS_WITHIN:?}, e.g. {:?} (worker log {})",
        no_sms.len(),
        &no_sms[..no_sms.len().min(5)],
        service.processes.worker_log.display()
    );
    assert!(
        failed.is_empty(),
        "{} of {checked} checks of the right code did not approve, e.g. {:?} (API log {log})",
        failed.len(),
        &failed[..failed.len().min(5)]
    );

    // The evaluation that would have paused a prefix for these starts, if any.
    let scrape = service.wait_until_judged(last, Duration::from_secs(150)).await;
    eprintln!(
        "launch: every start judged {:.1} s after the first start; evaluations {:?}, US conversion {:?}",
        began.elapsed().as_secs_f64(),
        scrape.value("verify_pumping_evaluations_total", &[]),
        scrape.value("verify_conversion_ratio", &[("country", "US")])
    );
    let pauses = service.pauses().await;
    assert!(
        pauses.is_empty(),
        "a launch whose codes are used paused prefixes: {pauses:?} (API log {log})"
    );
    let alerts = service.alerts();
    assert!(
        alerts.is_empty(),
        "a launch whose codes are used raised {} sms_pumping alerts, e.g. {} (API log {log})",
        alerts.len(),
        alerts.first().map_or("", |a| a.line.as_str())
    );
    let suspected = scrape.value("verify_pumping_suspected_total", &[]);
    assert!(
        suspected.is_none_or(|n| n == 0.0),
        "verify_pumping_suspected_total is {suspected:?} after a launch (API log {log})"
    );
    assert!(
        scrape
            .value("verify_pumping_evaluations_total", &[])
            .is_some_and(|n| n >= 1.0),
        "the guard never completed an evaluation (API log {log})"
    );
    // 80 % of the users approved their code, all within 30 s of their start.
    let conversion = scrape.value("verify_conversion_ratio", &[("country", "US")]);
    assert!(
        conversion.is_some_and(|c| (0.6..=1.0).contains(&c)),
        "verify_conversion_ratio{{country=\"US\"}} is {conversion:?} with 80 % of the launch's codes used \
         (API log {log})"
    );
    eprintln!(
        "launch: done {:.1} s after the first start",
        unix(time::OffsetDateTime::now_utc()) - unix(first)
    );
    service.stop().await;
}
