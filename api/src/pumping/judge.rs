//! The decision: is a prefix's recent traffic SMS pumping? Pumped numbers never verify, so
//! the guard looks for starts that are both unusually many and rarely approved.

use common::guard::PrefixStats;

use super::config::PumpingConfig;

/// Why a prefix is suspected, for the alert.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Suspicion {
    /// Starts per minute over the window.
    pub per_minute: f64,
    /// The prefix's usual starts per minute.
    pub baseline_per_minute: f64,
    /// Approved over matured starts.
    pub conversion: f64,
}

/// Whether `stats` show pumping under `config`'s thresholds: at least `min_starts` starts in
/// the window, more than `surge_factor` times the prefix's baseline rate, at least
/// `min_matured` of them old enough to have been checked, and fewer than `max_conversion` of
/// those approved. Each condition alone is normal for some real traffic: a launch has the
/// volume, a prefix of landlines has low conversion at its usual rate.
pub fn suspected(stats: &PrefixStats, config: &PumpingConfig) -> Option<Suspicion> {
    if stats.recent < i64::from(config.min_starts) || stats.matured < i64::from(config.min_matured) {
        return None;
    }
    let per_minute = stats.recent as f64 / config.window_minutes();
    if per_minute <= config.surge_factor * stats.baseline_per_minute {
        return None;
    }
    let conversion = stats.approved as f64 / stats.matured as f64;
    (conversion < config.max_conversion).then_some(Suspicion {
        per_minute,
        baseline_per_minute: stats.baseline_per_minute,
        conversion,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Only {
        #[command(flatten)]
        pumping: PumpingConfig,
    }

    fn defaults() -> PumpingConfig {
        Only::parse_from(["test"]).pumping
    }

    fn stats(recent: i64, matured: i64, approved: i64, baseline: f64) -> PrefixStats {
        PrefixStats {
            prefix: "+1212".into(),
            country: "US".into(),
            recent,
            matured,
            approved,
            baseline_per_minute: baseline,
        }
    }

    #[test]
    fn defaults_match_the_readme() {
        let p = defaults();
        assert!(p.mode == super::super::Mode::On && p.safe_prefixes.is_empty());
        assert_eq!((p.window.as_secs(), p.maturity.as_secs()), (600, 60));
        assert_eq!((p.min_starts, p.min_matured), (40, 20));
        assert_eq!((p.surge_factor, p.max_conversion), (4.0, 0.25));
        assert_eq!(p.baseline.as_secs(), 24 * 3600);
        assert_eq!(p.evaluate_every.as_secs(), 10);
    }

    #[test]
    fn an_unchecked_surge_is_pumping() {
        let s = suspected(&stats(300, 200, 0, 0.0), &defaults()).expect("suspected");
        assert_eq!((s.per_minute, s.conversion), (30.0, 0.0));
    }

    #[test]
    fn a_converting_burst_is_not() {
        // A launch: 300 starts a minute to one city, 80 % approved.
        assert_eq!(suspected(&stats(3000, 2500, 2000, 0.0), &defaults()), None);
        // Slow checkers: only 30 % approved so far still passes the default 25 %.
        assert_eq!(suspected(&stats(3000, 2500, 750, 0.0), &defaults()), None);
    }

    #[test]
    fn each_threshold_holds_alone() {
        let c = defaults();
        // Under the floor of starts.
        assert_eq!(suspected(&stats(39, 39, 0, 0.0), &c), None);
        // Too few matured starts to judge.
        assert_eq!(suspected(&stats(300, 19, 0, 0.0), &c), None);
        // Usual volume for this prefix (120 starts in 10 min = 12/min, baseline 3/min → 4×).
        assert_eq!(suspected(&stats(120, 100, 0, 3.0), &c), None);
        assert!(suspected(&stats(121, 100, 0, 3.0), &c).is_some());
        // Conversion at the threshold is not below it.
        assert_eq!(suspected(&stats(300, 200, 50, 0.0), &c), None);
        assert!(suspected(&stats(300, 200, 49, 0.0), &c).is_some());
    }
}
