//! The targets a run is held to, each met or missed.

use std::fmt::Write;
use std::time::Duration;

use super::report::{Report, mib, ms};

/// Peak RSS allowed of the API and of each worker during the bursts, and of the fake with
/// its sandbox page open.
const RSS_KIB: u64 = 48 * 1024;
const FAKE_RSS_KIB: u64 = 64 * 1024;

impl Report {
    /// The targets table.
    pub(super) fn targets(&self) -> String {
        let raw = self.raw.insert_then_publish;
        let (first, second) = (&self.starts, &self.starts_again);
        let ratios = [first.per_second() / raw, second.per_second() / raw];
        let p99s = [first.quantile(0.99), second.quantile(0.99)];
        let drains = [
            self.one_worker.rate() / self.one_worker.bound,
            self.two_workers.rate() / self.two_workers.bound,
        ];
        let mixed = self.mixed.rate() / self.mixed.bound;
        let scaling = self.two_workers.rate() / self.one_worker.rate();
        let rss_worst = self
            .one_worker
            .peak_rss_kib
            .iter()
            .chain(&self.two_workers.peak_rss_kib)
            .max()
            .copied()
            .unwrap_or(0);
        let rows = [
            (
                format!(
                    "starts ≥ 2 × the naive write (insert, then confirmed publish): {:.3} (first burst), {:.3} (second); a start's writes alone reach {:.3}",
                    ratios[0],
                    ratios[1],
                    self.floor.starts / raw
                ),
                ratios.iter().all(|r| *r >= 2.0),
            ),
            (
                format!(
                    "start p99 ≤ 15 ms: {} (first burst), {} (second)",
                    ms(p99s[0]),
                    ms(p99s[1])
                ),
                p99s.iter().all(|p| *p <= Duration::from_millis(15)),
            ),
            (
                format!(
                    "checks ≥ 15,000/s: {:.0}/s; a check's writes alone reach {:.0}/s",
                    self.checks.per_second(),
                    self.floor.checks
                ),
                self.checks.per_second() >= 15_000.0,
            ),
            (
                format!(
                    "drain ≥ 0.95 of the bound: {:.3} (1 worker), {:.3} (2 workers)",
                    drains[0], drains[1]
                ),
                drains.iter().all(|d| *d >= 0.95),
            ),
            (
                format!("mixed-channel drain ≥ 0.9 of the bound: {mixed:.3}"),
                mixed >= 0.9,
            ),
            (format!("two workers ≥ 1.9 × one: {scaling:.3}"), scaling >= 1.9),
            (
                format!(
                    "peak RSS ≤ 48 MiB: API {}, worker {}",
                    mib(self.api_peak_rss_kib),
                    mib(rss_worst)
                ),
                self.api_peak_rss_kib <= RSS_KIB && rss_worst <= RSS_KIB,
            ),
            match &self.sandbox {
                Some(run) => (
                    format!(
                        "fake Twilio with the sandbox page open: peak RSS < 64 MiB: {}",
                        mib(run.fake_peak_rss_kib)
                    ),
                    run.fake_peak_rss_kib < FAKE_RSS_KIB,
                ),
                None => (
                    "fake Twilio with the sandbox page open: not measured (no Chromium, or --sandbox off)".to_owned(),
                    false,
                ),
            },
            (
                format!(
                    "no SMS lost or sent twice: {} lost, {} twice",
                    self.numbers_never_texted, self.numbers_texted_twice
                ),
                self.numbers_never_texted == 0 && self.numbers_texted_twice == 0,
            ),
            (
                format!(
                    "mixed channels: each number exactly its channels (SMS, WhatsApp, or SMS then a call): {} lost, {} twice",
                    self.mixed.lost, self.mixed.twice
                ),
                self.mixed.exact(),
            ),
            (
                format!(
                    "every event delivered and verified (Standard Webhooks): {} published, {} received, {} verified",
                    self.events.0, self.events.1, self.events.2
                ),
                self.events_ok(),
            ),
        ];
        let mut out = String::from("### Targets\n\n| target | result |\n| --- | --- |\n");
        for (what, ok) in rows {
            let _ = writeln!(out, "| {what} | {} |", if ok { "met" } else { "MISSED" });
        }
        out
    }
}
