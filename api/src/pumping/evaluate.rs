//! The evaluation every replica runs every `PUMPING_EVALUATE_SECONDS`: judge every prefix of
//! the window, pause (or in monitor mode only flag) the suspected ones, fold the buckets that
//! left the window into the baselines, and refresh the conversion and budget metrics.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use common::guard::{self, PrefixStats};
use common::metric_names as names;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::judge::{self, Suspicion};
use super::{Guard, Mode, unix_now};
use crate::abuse::DailyBudget;

/// The busiest prefixes shown in the metrics (a bounded label set).
const BUSIEST: usize = 10;

/// The metrics of the last evaluation, rendered into `/metrics` as they are: a prefix that
/// left the busiest, or a country without traffic in the window, leaves the scrape.
pub struct Snapshot(RwLock<String>);

impl Snapshot {
    /// The families, without samples, until the first evaluation: a scrape shows every
    /// metric from the start.
    pub fn new(budget: &DailyBudget) -> Self {
        Self(RwLock::new(render(&[], &[], budget)))
    }

    pub fn render(&self) -> String {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Evaluates until `shutdown`, every `PUMPING_EVALUATE_SECONDS`.
pub async fn run(
    guard: Arc<Guard>,
    budget: DailyBudget,
    snapshot: Arc<Snapshot>,
    pool: PgPool,
    shutdown: CancellationToken,
) {
    let mut waits = SendWaits::default();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(guard.config.evaluate_every) => {}
        }
        waits.push(guard.send_wait(), guard.config.window);
        if let Err(e) = evaluate(&guard, &budget, &snapshot, &pool, waits.longest()).await {
            tracing::warn!(error = %e, "pumping evaluation failed; trying again at the next one");
        }
    }
}

/// The send queue's waits seen within the window: a start is judged only once its SMS had
/// `PUMPING_MATURITY_SECONDS` to be read, so while the queue holds a burst back the guard
/// waits as long as the longest recent wait before judging.
#[derive(Default)]
struct SendWaits(VecDeque<(Instant, Duration)>);

impl SendWaits {
    fn push(&mut self, wait: Duration, window: Duration) {
        let now = Instant::now();
        self.0.push_back((now, wait));
        while self.0.front().is_some_and(|(at, _)| now.duration_since(*at) > window) {
            self.0.pop_front();
        }
    }

    fn longest(&self) -> Duration {
        self.0.iter().map(|(_, w)| *w).max().unwrap_or_default()
    }
}

async fn evaluate(
    guard: &Guard,
    budget: &DailyBudget,
    snapshot: &Snapshot,
    pool: &PgPool,
    send_wait: Duration,
) -> sqlx::Result<()> {
    let config = &guard.config;
    let now = unix_now();
    let since = now - config.window.as_secs_f64();
    let matured_by = now - config.maturity.as_secs_f64() - send_wait.as_secs_f64();
    let stats = guard::prefix_stats(pool, since, matured_by).await?;
    if config.mode != Mode::Off {
        for s in &stats {
            if let Some(suspicion) = judge::suspected(s, config)
                && !config.is_safe_prefix(&s.prefix)
            {
                raise(guard, pool, s, suspicion).await?;
            }
        }
    }
    guard::fold_into_baselines(pool, since, config.baseline).await?;
    let used = guard::budget_used_today(pool).await?;
    *snapshot.0.write().unwrap_or_else(|e| e.into_inner()) = render(&stats, &used, budget);
    metrics::counter!(names::PUMPING_EVALUATIONS).increment(1);
    metrics::gauge!(names::PUMPING_JUDGED_UNTIL).set(matured_by);
    Ok(())
}

/// Pauses a suspected prefix (flags it in monitor mode); alerts once per pause.
async fn raise(guard: &Guard, pool: &PgPool, s: &PrefixStats, suspicion: Suspicion) -> sqlx::Result<()> {
    let config = &guard.config;
    let enforced = config.mode == Mode::On;
    let Some(paused) = guard::pause(pool, &s.prefix, guard.pause, enforced, "guard").await? else {
        return Ok(());
    };
    metrics::counter!(names::PUMPING_SUSPECTED, "mode" => config.mode.as_str()).increment(1);
    if enforced {
        guard.mark_paused(&s.prefix, paused.lasts);
        metrics::counter!(names::PREFIX_PAUSES).increment(1);
    }
    tracing::error!(
        alert = "sms_pumping",
        prefix = %s.prefix,
        country = %s.country,
        mode = config.mode.as_str(),
        starts = s.recent,
        starts_per_minute = suspicion.per_minute,
        usual_per_minute = suspicion.baseline_per_minute,
        matured = s.matured,
        approved = s.approved,
        conversion = suspicion.conversion,
        pause_seconds = paused.lasts.as_secs(),
        strikes = paused.strikes,
        "ALERT: SMS pumping suspected: many starts to one number prefix, rarely approved; {}",
        if enforced { "the prefix is paused" } else { "monitor mode: nothing refused" }
    );
    Ok(())
}

/// The conversion and budget metrics, as Prometheus text.
fn render(stats: &[PrefixStats], used: &[(String, i64)], budget: &DailyBudget) -> String {
    let mut countries: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for s in stats {
        let c = countries.entry(&s.country).or_default();
        c.0 += s.matured;
        c.1 += s.approved;
    }
    let mut busiest: Vec<&PrefixStats> = stats.iter().collect();
    busiest.sort_by(|a, b| b.recent.cmp(&a.recent).then_with(|| a.prefix.cmp(&b.prefix)));
    busiest.truncate(BUSIEST);

    let ratio = |approved: i64, matured: i64| approved as f64 / matured as f64;
    let by_country = |pick: &dyn Fn(i64, i64) -> Option<f64>| -> Vec<(String, f64)> {
        countries
            .iter()
            .filter_map(|(c, (m, a))| Some((format!("country=\"{c}\""), pick(*m, *a)?)))
            .collect()
    };
    let by_prefix = |pick: &dyn Fn(&PrefixStats) -> Option<f64>| -> Vec<(String, f64)> {
        busiest
            .iter()
            .filter_map(|s| Some((format!("prefix=\"{}\",country=\"{}\"", s.prefix, s.country), pick(s)?)))
            .collect()
    };
    let families = [
        (
            names::CONVERSION_RATIO,
            "Approved over matured starts in the guard's window, by country",
            by_country(&|m, a| (m > 0).then(|| ratio(a, m))),
        ),
        (
            names::CONVERSION_MATURED,
            "Matured starts in the guard's window, by country",
            by_country(&|m, _| Some(m as f64)),
        ),
        (
            names::PREFIX_RECENT_STARTS,
            "Starts in the guard's window of the busiest number prefixes",
            by_prefix(&|s| Some(s.recent as f64)),
        ),
        (
            names::PREFIX_CONVERSION_RATIO,
            "Approved over matured starts of the busiest number prefixes",
            by_prefix(&|s| (s.matured > 0).then(|| ratio(s.approved, s.matured))),
        ),
        (
            names::SMS_BUDGET_USED,
            "SMS accepted today (UTC), by country",
            used.iter()
                .map(|(c, n)| (format!("country=\"{c}\""), *n as f64))
                .collect(),
        ),
        (
            names::SMS_BUDGET_LIMIT,
            "DAILY_SMS_BUDGET, by country (* for any other)",
            budget
                .limits()
                .into_iter()
                .map(|(c, n)| (format!("country=\"{c}\""), f64::from(n)))
                .collect(),
        ),
    ];
    let mut out = String::new();
    for (name, help, samples) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(prefix: &str, country: &str, recent: i64, matured: i64, approved: i64) -> PrefixStats {
        PrefixStats {
            prefix: prefix.into(),
            country: country.into(),
            recent,
            matured,
            approved,
            baseline_per_minute: 0.0,
        }
    }

    #[test]
    fn the_metrics_name_countries_and_only_the_busiest_prefixes() {
        let mut all: Vec<PrefixStats> = (0..30)
            .map(|i| stats(&format!("+1{}", 200 + i), "US", i, i, i / 2))
            .collect();
        all.push(stats("+4420", "GB", 100, 80, 60));
        let budget = crate::abuse::daily_budget("US:50,*:5").unwrap();
        let text = render(&all, &[("US".into(), 7)], &budget);
        let lines = |name: &str| text.lines().filter(|l| l.starts_with(&format!("{name}{{"))).count();
        assert_eq!(lines(names::PREFIX_RECENT_STARTS), BUSIEST, "{text}");
        assert!(text.contains("verify_prefix_recent_starts{prefix=\"+4420\",country=\"GB\"} 100"));
        assert!(!text.contains("prefix=\"+1200\""), "the quietest prefix is not shown");
        assert!(text.contains("verify_conversion_ratio{country=\"GB\"} 0.75"), "{text}");
        assert_eq!(lines(names::CONVERSION_RATIO), 2);
        assert!(text.contains("verify_sms_budget_used{country=\"US\"} 7"));
        assert!(text.contains("verify_sms_budget_limit{country=\"*\"} 5"));
        for family in [names::CONVERSION_RATIO, names::SMS_BUDGET_LIMIT] {
            assert!(text.contains(&format!("# TYPE {family} gauge")));
        }
    }
}
