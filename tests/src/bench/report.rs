//! The benchmark's figures, as a table for the terminal and as Markdown.

use std::fmt::Write;
use std::time::Duration;

use super::load::LoadResult;
use super::mixed::Mixed;
use super::raw::RawLimits;

use super::Drain;

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub machine: String,
    pub command: String,
    pub n: usize,
    pub concurrency: usize,
    pub twilio_latency: Duration,
    pub worker_concurrency: usize,
    pub raw: RawLimits,
    pub starts: LoadResult,
    /// The second burst (the API warm, 20,000 more rows in the tables).
    pub starts_again: LoadResult,
    pub one_worker: Drain,
    pub two_workers: Drain,
    /// The mixed-channel burst's starts and drain, and its `FALLBACK_AFTER_SECONDS`.
    pub mixed_starts: LoadResult,
    pub mixed: Mixed,
    pub fallback_after: Duration,
    pub checks: LoadResult,
    /// A third burst, while a retention sweep deletes the first burst's verifications.
    pub starts_during_sweep: LoadResult,
    /// Verifications the sweep deleted, and how long it took.
    pub swept: (u64, Duration),
    pub api_peak_rss_kib: u64,
    pub sms_expected: usize,
    pub sms_sent: usize,
    pub numbers_texted_twice: usize,
    pub numbers_never_texted: usize,
    /// Prefixes the pumping guard (on, with its defaults) paused during the run.
    pub paused_prefixes: Vec<String>,
    /// Events published by the API, event deliveries the receiver got, and how many of them
    /// verified (events are on, and every start has an Idempotency-Key).
    pub events: (u64, u64, u64),
    /// Whether starts carried an `Idempotency-Key` and events were on (`--idempotency-keys`,
    /// `--events`).
    pub keyed: bool,
    pub events_on: bool,
    /// CPU by process in the bursts, the drains and the checks.
    pub cpu: Vec<super::cpu::Phase>,
    /// The fake's peak RSS with its sandbox page open (`None`: not measured).
    pub sandbox: Option<super::sandbox::SandboxRun>,
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

fn load_row(out: &mut String, what: &str, r: &LoadResult) {
    let _ = writeln!(
        out,
        "| {what} | {} | {:.0}/s | {} | {} | {} | {} | {} |",
        r.requests,
        r.per_second(),
        ms(r.quantile(0.5)),
        ms(r.quantile(0.9)),
        ms(r.quantile(0.99)),
        ms(r.quantile(1.0)),
        r.errors
    );
}

fn drain_row(out: &mut String, d: &Drain) {
    let [p50, p90, p99, max] = d.to_submitted;
    let rss: Vec<String> = d.peak_rss_kib.iter().map(|k| mib(*k)).collect();
    let _ = writeln!(
        out,
        "| {} | {} | {:.2} s | {:.1} s | {:.0}/s | {:.0}/s | {:.2} | {p50:.1} / {p90:.1} / {p99:.1} / {max:.1} s | {} |",
        d.workers,
        d.jobs,
        d.startup.as_secs_f64(),
        d.elapsed.as_secs_f64(),
        d.rate(),
        d.bound,
        d.rate() / d.bound,
        rss.join(", ")
    );
}

impl Report {
    /// The whole report as Markdown (also what the terminal shows).
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "Machine: {}\n\nCommand: `{}`\n", self.machine, self.command);
        let _ = writeln!(
            out,
            "Settings: N = {} starts per burst, concurrency C = {}, fake Twilio latency {} ms, WORKER_CONCURRENCY = {}, rate limits off, pumping guard on (its defaults).\n",
            self.n,
            self.concurrency,
            self.twilio_latency.as_millis(),
            self.worker_concurrency
        );
        let _ = writeln!(out, "### Raw limits of this machine (C = {})\n", self.concurrency);
        let _ = writeln!(out, "| operation | per second |\n| --- | --- |");
        let _ = writeln!(out, "| PostgreSQL single-row insert | {:.0} |", self.raw.inserts);
        let _ = writeln!(
            out,
            "| RabbitMQ persistent publish + confirm | {:.0} |",
            self.raw.publishes
        );
        let _ = writeln!(
            out,
            "| insert, then confirmed publish | {:.0} |\n",
            self.raw.insert_then_publish
        );
        let _ = writeln!(
            out,
            "### HTTP\n\n| run | requests | throughput | p50 | p90 | p99 | max | errors |\n| --- | --- | --- | --- | --- | --- | --- | --- |"
        );
        load_row(&mut out, "POST /v1/verifications (first burst)", &self.starts);
        load_row(&mut out, "POST /v1/verifications (second burst)", &self.starts_again);
        load_row(&mut out, "POST /v1/verifications (mixed channels)", &self.mixed_starts);
        load_row(&mut out, "POST /v1/verifications/check", &self.checks);
        load_row(
            &mut out,
            "POST /v1/verifications (third burst, during a retention sweep)",
            &self.starts_during_sweep,
        );
        let (swept, took) = self.swept;
        let _ = writeln!(
            out,
            "\nRetention sweep beside the third burst: {swept} verifications (with their send attempts) deleted in {:.1} s, {:.0} rows/s; the burst ran at {:.3} of the second burst's rate.",
            took.as_secs_f64(),
            swept as f64 / took.as_secs_f64().max(1e-9),
            self.starts_during_sweep.per_second() / self.starts_again.per_second().max(1e-9)
        );
        let _ = writeln!(out, "\n### Drain against the fake Twilio\n");
        let _ = writeln!(
            out,
            "| workers | jobs | start-up | drain time | rate | bound | rate / bound | start → submitted p50 / p90 / p99 / max | worker peak RSS |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
        );
        drain_row(&mut out, &self.one_worker);
        drain_row(&mut out, &self.two_workers);
        out.push_str(&self.mixed.markdown(self.fallback_after));
        let _ = writeln!(
            out,
            "\n### CPU per operation, by process (from /proc)\n\n{}",
            super::cpu::table(&self.cpu)
        );
        let _ = writeln!(out, "API peak RSS: {}\n", mib(self.api_peak_rss_kib));
        if let Some(run) = &self.sandbox {
            let _ = writeln!(
                out,
                "Fake Twilio (`fake-twilio`, keeping its default newest 10,000) with its sandbox page open in Chromium: {} messages sent in {:.1} s ({:.0}/s, as the two-worker drain sends them), the {} numbers it kept listed by the page after {:.1} s; peak RSS {}.\n",
                run.messages,
                run.sent_in.as_secs_f64(),
                run.messages as f64 / run.sent_in.as_secs_f64().max(1e-9),
                run.kept,
                run.shown_in.as_secs_f64(),
                mib(run.fake_peak_rss_kib)
            );
        }
        let _ = writeln!(
            out,
            "Outcome: {} of {} verifications texted; {} numbers texted twice; {} never texted.\n",
            self.sms_sent, self.sms_expected, self.numbers_texted_twice, self.numbers_never_texted
        );
        let _ = writeln!(
            out,
            "Pumping guard: prefixes paused during the run: {} ({}). The bench never checks a right code, so a burst's prefixes are paused once its starts are old enough to judge; each burst goes to area codes of its own, and every start above counts as an error unless answered 202.\n",
            self.paused_prefixes.len(),
            if self.paused_prefixes.is_empty() {
                "none".to_owned()
            } else {
                self.paused_prefixes.join(", ")
            }
        );
        let _ = writeln!(
            out,
            "Every start {} an Idempotency-Key. Event webhooks {}: {} events published, the receiver got {} deliveries, {} with a verified signature.\n",
            if self.keyed { "with" } else { "without" },
            if self.events_on { "on" } else { "off" },
            self.events.0,
            self.events.1,
            self.events.2
        );
        out.push_str(&self.targets());
        out
    }

    fn targets(&self) -> String {
        let raw = self.raw.insert_then_publish;
        let (first, second) = (&self.starts, &self.starts_again);
        let ratios = [first.per_second() / raw, second.per_second() / raw];
        let p99s = [first.quantile(0.99), second.quantile(0.99)];
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
                    "start throughput ≥ 0.8 × insert-then-confirmed-publish: {:.3} (first burst), {:.3} (second)",
                    ratios[0], ratios[1]
                ),
                ratios.iter().all(|r| *r >= 0.8),
            ),
            (
                format!(
                    "start p99 < 25 ms: {} (first burst), {} (second)",
                    ms(p99s[0]),
                    ms(p99s[1])
                ),
                p99s.iter().all(|p| *p < Duration::from_millis(25)),
            ),
            (
                format!("checks ≥ 5,000/s: {:.0}/s", self.checks.per_second()),
                self.checks.per_second() >= 5000.0,
            ),
            (
                format!(
                    "drain ≥ 0.9 of the bound: {:.3} (1 worker), {:.3} (2 workers)",
                    self.one_worker.rate() / self.one_worker.bound,
                    self.two_workers.rate() / self.two_workers.bound
                ),
                self.one_worker.rate() >= 0.9 * self.one_worker.bound
                    && self.two_workers.rate() >= 0.9 * self.two_workers.bound,
            ),
            (format!("two workers ≥ 1.8 × one: {scaling:.3}"), scaling >= 1.8),
            (
                format!(
                    "peak RSS < 64 MiB: API {}, worker {}",
                    mib(self.api_peak_rss_kib),
                    mib(rss_worst)
                ),
                self.api_peak_rss_kib < 64 * 1024 && rss_worst < 64 * 1024,
            ),
            match &self.sandbox {
                Some(run) => (
                    format!(
                        "fake Twilio with the sandbox page open: peak RSS < 64 MiB: {}",
                        mib(run.fake_peak_rss_kib)
                    ),
                    run.fake_peak_rss_kib < 64 * 1024,
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
            let _ = writeln!(out, "| {what} | {} |", verdict(ok));
        }
        out
    }

    /// Whether nothing was lost or sent twice (the part that must hold in every run).
    pub fn outcome_ok(&self) -> bool {
        self.numbers_never_texted == 0
            && self.numbers_texted_twice == 0
            && self.sms_sent == self.sms_expected
            && self.mixed.exact()
            && self.events_ok()
    }

    /// Every published event reached the receiver (at least once), and every delivery
    /// verified; with events off (`--events off`), nothing was received.
    fn events_ok(&self) -> bool {
        let (published, received, verified) = self.events;
        if self.events_on {
            published > 0 && received >= published && verified == received
        } else {
            received == 0
        }
    }
}
