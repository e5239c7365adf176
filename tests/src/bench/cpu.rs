//! CPU time by process around each phase of the run, read from `/proc` (Linux): what the
//! API, the workers, PostgreSQL, RabbitMQ and the bench itself (load generator and fake
//! Twilio, one process) spent per start, per send and per check. On two cores that run all
//! of them, this says which process a target is lost to. Elsewhere the figures read 0.

use std::fmt::Write;
use std::time::Duration;

/// CPU seconds (user + system) of each kind of process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    pub api: f64,
    pub workers: f64,
    pub postgres: f64,
    pub rabbitmq: f64,
    pub bench: f64,
}

impl Cpu {
    /// What the API process `api`, the worker processes `workers`, every PostgreSQL and
    /// RabbitMQ process and this process have used so far. PostgreSQL's ended backends are
    /// counted in their parent's children's time, which is included.
    pub fn now(api: u32, workers: &[u32]) -> Self {
        let mut cpu = Cpu {
            api: seconds(api),
            workers: workers.iter().map(|&pid| seconds(pid)).sum(),
            bench: seconds(std::process::id()),
            ..Cpu::default()
        };
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return cpu;
        };
        for pid in entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            match comm.trim() {
                "postgres" => cpu.postgres += seconds(pid),
                "beam.smp" | "erl_child_setup" | "epmd" | "inet_gethost" => cpu.rabbitmq += seconds(pid),
                _ => {}
            }
        }
        cpu
    }

    /// What was used between `before` and this reading.
    pub fn since(&self, before: &Cpu) -> Cpu {
        Cpu {
            api: self.api - before.api,
            workers: self.workers - before.workers,
            postgres: self.postgres - before.postgres,
            rabbitmq: self.rabbitmq - before.rabbitmq,
            bench: self.bench - before.bench,
        }
    }

    fn total(&self) -> f64 {
        self.api + self.workers + self.postgres + self.rabbitmq + self.bench
    }
}

/// One phase of the run: its name, what it counts ("start", "send", "check"), how many,
/// how long it took, and the CPU used meanwhile.
#[derive(Debug, Clone, Default)]
pub struct Phase {
    pub name: String,
    pub unit: &'static str,
    pub ops: usize,
    pub wall: Duration,
    pub cpu: Cpu,
}

/// The phases as a Markdown table: CPU milliseconds per operation by process, and how many
/// cores were busy on average.
pub fn table(phases: &[Phase]) -> String {
    let mut out = String::from(
        "| phase | per | API | workers | PostgreSQL | RabbitMQ | bench (load, fake Twilio) | all | cores busy |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for p in phases.iter().filter(|p| p.ops > 0) {
        let per = |s: f64| format!("{:.3} ms", s * 1000.0 / p.ops as f64);
        let c = &p.cpu;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.2} |",
            p.name,
            p.unit,
            per(c.api),
            per(c.workers),
            per(c.postgres),
            per(c.rabbitmq),
            per(c.bench),
            per(c.total()),
            c.total() / p.wall.as_secs_f64().max(f64::EPSILON)
        );
    }
    out
}

/// Clock ticks per second of `/proc/*/stat` (`getconf CLK_TCK`; 100 on Linux as built).
fn ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// User + system time of `pid` and of its ended, waited-for children, in seconds (0 for a
/// process that is gone).
fn seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command (which may hold spaces) in parentheses: state is the
    // first, then utime, stime, cutime and cstime are the 12th to 15th.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let ticks: f64 = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .filter_map(|f| f.parse::<f64>().ok())
        .sum();
    ticks / ticks_per_second()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_used_some_cpu() {
        // Spin until the clock-tick counter moves, bounded by the number of rounds.
        for i in 0..200_000_000u64 {
            std::hint::black_box(i);
            if i % 1_000_000 == 0 && seconds(std::process::id()) > 0.0 {
                break;
            }
        }
        assert!(seconds(std::process::id()) > 0.0);
        assert_eq!(seconds(u32::MAX), 0.0, "no such process");
    }

    #[test]
    fn the_table_shows_milliseconds_per_operation() {
        let phase = Phase {
            name: "burst".into(),
            unit: "start",
            ops: 1000,
            wall: Duration::from_secs(2),
            cpu: Cpu {
                api: 0.5,
                workers: 0.0,
                postgres: 1.0,
                rabbitmq: 0.25,
                bench: 0.25,
            },
        };
        let table = table(&[phase]);
        assert!(
            table
                .contains("| burst | start | 0.500 ms | 0.000 ms | 1.000 ms | 0.250 ms | 0.250 ms | 2.000 ms | 1.00 |"),
            "{table}"
        );
    }
}
