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
    /// A start's and a check's writes alone (`floor`).
    pub floor: super::floor::Floor,
    /// Phone numbers parsed on one thread (`phones`).
    pub phones: super::phones::Parsing,
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
    /// Whether the abuse limits were on (`--rate-limits`).
    pub limits_on: bool,
    /// CPU by process in the bursts, the drains and the checks.
    pub cpu: Vec<super::cpu::Phase>,
    /// The fake's peak RSS with its sandbox page open (`None`: not measured).
    pub sandbox: Option<super::sandbox::SandboxRun>,
}

pub(super) fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

pub(super) fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
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
            "Settings: N = {} starts per burst, concurrency C = {}, fake Twilio latency {} ms, WORKER_CONCURRENCY = {}, pumping guard on (its defaults), each client address sending {} requests of a kind (`X-Forwarded-For`).\n\nAbuse limits: {}.\n",
            self.n,
            self.concurrency,
            self.twilio_latency.as_millis(),
            self.worker_concurrency,
            super::load::REQUESTS_PER_CLIENT,
            if self.limits_on {
                format!(
                    "all on: {}",
                    super::LIMITS.map(|(k, v)| format!("`{k}={v}`")).join(", ")
                )
            } else {
                "off (`RATE_LIMITS=off`, `--rate-limits off`; the pumping guard and the daily budget stay on)"
                    .to_owned()
            }
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
            "| insert, then confirmed publish (the naive durable write) | {:.0} |",
            self.raw.insert_then_publish
        );
        for (k, rate) in [(8, self.raw.batched_8), (32, self.raw.batched_32)] {
            let _ = writeln!(
                out,
                "| batched durable write: {k} rows in one `INSERT … UNNEST`, {k} publishes, their confirms (C = {}) | {rate:.0} |",
                super::raw::BATCHED_CONCURRENCY
            );
        }
        let _ = writeln!(
            out,
            "| a start's writes alone, {k} per transaction: its key, two rate-limit windows, verification and outbox row; then its publish and confirm, and the outbox row's delete (C = {c}) | {:.0} |",
            self.floor.starts,
            k = super::floor::BATCH,
            c = super::raw::BATCHED_CONCURRENCY
        );
        let _ = writeln!(
            out,
            "| a check's writes alone, {k} per transaction: two rate-limit windows and the attempt (C = {c}) | {:.0} |",
            self.floor.checks,
            k = super::floor::BATCH,
            c = super::raw::BATCHED_CONCURRENCY
        );
        out.push('\n');
        let p = &self.phones;
        let _ = writeln!(
            out,
            "### Phone numbers parsed (one thread)\n\n| numbers | `common::phone` | the `phonenumber` crate's own parse |\n| --- | --- | --- |\n| US | {:.2} µs each | {:.2} µs each |\n| twenty countries in turn | {:.2} µs each | {:.2} µs each |\n",
            p.us, p.library_us, p.world, p.library_world
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
    pub(super) fn events_ok(&self) -> bool {
        let (published, received, verified) = self.events;
        if self.events_on {
            published > 0 && received >= published && verified == received
        } else {
            received == 0
        }
    }
}
