//! The guard's settings: its mode, the safe list and every threshold, each with a default
//! that a converting launch burst of thousands of starts a minute does not trip.

use std::time::Duration;

use common::settings::seconds;

/// `PUMPING_GUARD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Suspected prefixes are paused: their starts answer 429 `suspected_pumping`.
    On,
    /// Suspected prefixes are alerted and counted; nothing is refused.
    Monitor,
    /// No judging (the conversion metrics stay).
    Off,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::On => "on",
            Self::Monitor => "monitor",
            Self::Off => "off",
        }
    }
}

/// The SMS-pumping guard: a prefix is suspected when, over the last `PUMPING_WINDOW_SECONDS`,
/// it had at least `PUMPING_MIN_STARTS` starts, more than `PUMPING_SURGE_FACTOR` times its
/// own usual rate, and fewer than `PUMPING_MAX_CONVERSION` of its starts old enough to have
/// been checked (at least `PUMPING_MIN_MATURED` of them) were approved.
#[derive(Debug, Clone, clap::Args)]
pub struct PumpingConfig {
    /// on (pause suspected prefixes), monitor (alert and count, refuse nothing) or off
    #[arg(long = "pumping-guard", env = "PUMPING_GUARD", default_value = "on", value_parser = mode)]
    pub mode: Mode,
    /// E.164 beginnings never paused, comma-separated (e.g. +1415,+4420) [default: none]
    #[arg(long = "pumping-safe-prefixes", env = "PUMPING_SAFE_PREFIXES", value_parser = safe_prefix, value_delimiter = ',')]
    pub safe_prefixes: Vec<String>,
    /// how far back the guard looks at a prefix's starts and approvals, 60 to 3600 seconds
    #[arg(long = "pumping-window-seconds", env = "PUMPING_WINDOW_SECONDS", default_value = "600", value_parser = seconds(60..=3600))]
    pub window: Duration,
    /// age at which a start counts in its prefix's conversion (its user had time to check), 10 to 1800 seconds; the send queue's wait is added
    #[arg(long = "pumping-maturity-seconds", env = "PUMPING_MATURITY_SECONDS", default_value = "60", value_parser = seconds(10..=1800))]
    pub maturity: Duration,
    /// starts of a prefix within the window below which it is never suspected
    #[arg(long = "pumping-min-starts", env = "PUMPING_MIN_STARTS", default_value = "40", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub min_starts: u32,
    /// matured starts needed before a prefix's conversion is judged
    #[arg(long = "pumping-min-matured", env = "PUMPING_MIN_MATURED", default_value = "20", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub min_matured: u32,
    /// how many times its usual rate of starts a prefix must see to be suspected, 1 to 1000
    #[arg(long = "pumping-surge-factor", env = "PUMPING_SURGE_FACTOR", default_value = "4", value_parser = ratio(1.0, 1000.0))]
    pub surge_factor: f64,
    /// share of matured starts approved below which a surging prefix is suspected, 0 to 1
    #[arg(long = "pumping-max-conversion", env = "PUMPING_MAX_CONVERSION", default_value = "0.25", value_parser = ratio(0.0, 1.0))]
    pub max_conversion: f64,
    /// time constant of a prefix's usual rate (its baseline), 1 to 720 hours
    #[arg(long = "pumping-baseline-hours", env = "PUMPING_BASELINE_HOURS", default_value = "24", value_parser = hours)]
    pub baseline: Duration,
    /// how often each API replica judges the prefixes, 1 to 300 seconds
    #[arg(long = "pumping-evaluate-seconds", env = "PUMPING_EVALUATE_SECONDS", default_value = "10", value_parser = seconds(1..=300))]
    pub evaluate_every: Duration,
}

impl PumpingConfig {
    /// Whether numbers starting `prefix` (a whole prefix) are on the safe list.
    pub fn is_safe_prefix(&self, prefix: &str) -> bool {
        self.safe_prefixes.iter().any(|s| prefix.starts_with(s.as_str()))
    }

    /// The window in minutes.
    pub fn window_minutes(&self) -> f64 {
        self.window.as_secs_f64() / 60.0
    }
}

fn mode(value: &str) -> Result<Mode, String> {
    match value {
        "on" => Ok(Mode::On),
        "monitor" => Ok(Mode::Monitor),
        "off" => Ok(Mode::Off),
        _ => Err("must be on, monitor or off".into()),
    }
}

fn safe_prefix(value: &str) -> Result<String, String> {
    let value = value.trim();
    let digits = value.strip_prefix('+').unwrap_or("");
    if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.starts_with('0')
    {
        return Err(format!(
            "must be E.164 beginnings (+ and 1 to 15 digits), comma-separated, got {value:?}"
        ));
    }
    Ok(value.to_owned())
}

fn ratio(low: f64, high: f64) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static {
    move |value: &str| match value.trim().parse::<f64>() {
        Ok(v) if (low..=high).contains(&v) => Ok(v),
        _ => Err(format!("must be a number from {low} to {high}")),
    }
}

fn hours(value: &str) -> Result<Duration, String> {
    match value.trim().parse::<u64>() {
        Ok(h) if (1..=720).contains(&h) => Ok(Duration::from_secs(h * 3600)),
        _ => Err("must be a whole number of hours from 1 to 720".into()),
    }
}
