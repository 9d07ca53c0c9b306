//! `soak`: one strategy under the torture engine for a long time, with tasks parking, forking and
//! oversubscribed readers, checking consistency, use after reclaim and memory growth.
//! `scripts/soak` runs it once per per-task-consistent strategy, each in its own process (so that
//! peak RSS is the strategy's own).
//!
//! `soak --list` | `soak --strategy NAME [--transitions N | --minutes M]`; `soak --help` says more.
//! Exit: 0 pass (or the strategy is unavailable on this machine: skipped, saying why on stderr),
//! 1 a check failed, 2 bad input (clap's own code for a usage error).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use dispatch::strategy::{Consistency, Info, UnknownStrategy};
use dispatch::torture::{self, Config, Report};
use dispatch::{Strategy, Visitor};

/// The transition count at which the first peak-RSS sample is taken.
const CHECKPOINT: u64 = 10_000;

/// Peak resident set size of this process, in KiB (`VmHWM`).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

struct Soak {
    cfg: Config,
}

impl Visitor for Soak {
    type Output = (Report, u64, u64, Duration);

    fn visit<S: Strategy>(&mut self) -> Self::Output {
        let start = Instant::now();
        let mut at_checkpoint = 0;
        let report = torture::run::<S>(&self.cfg, |n| {
            if n == CHECKPOINT {
                at_checkpoint = peak_rss_kib();
            }
        });
        (report, at_checkpoint, peak_rss_kib(), start.elapsed())
    }
}

/// The largest `--transitions`: a run stops after 24 hours whatever the count, and the dev VM took
/// 56 minutes for 10^6 transitions of every strategy (README), so anything above is a typo.
const MAX_TRANSITIONS: u64 = 1_000_000_000;
/// The longest `--minutes`: 24 hours, the same time limit a run by `--transitions` has.
const MAX_MINUTES: f64 = 24.0 * 60.0;
/// The shortest `--minutes`: 0.6 s, a few hundred transitions. Below, a tiny value (1e-300) made
/// a time limit of zero: no transition, nothing checked, and a pass.
const MIN_MINUTES: f64 = 0.01;

#[derive(Parser, Debug)]
#[command(
    name = "soak",
    about = "One per-task-consistent strategy under the torture engine for a long time: readers = CPUs + 1\n\
(oversubscribed), tasks parking and forking mid-section, the writer cycling enable / disable /\n\
replace / reverse. Checks consistency, use after reclaim and peak-RSS growth.",
    override_usage = "soak --list\n       soak --strategy NAME [--transitions N | --minutes M]",
    after_help = "A run stops after 24 hours, whatever --transitions says.\n\n\
Exit codes: 0 pass; 1 a check failed (a consistency violation, a use after reclaim, an idle task\n\
in a transition, an inheritance error, fewer transitions than asked, or peak RSS grown more than\n\
10% between 10^4 transitions and the end); 2 bad input.\n\n\
A strategy this machine cannot run (see `harness list`) is skipped: one line on stderr saying why,\n\
exit 0."
)]
struct Cli {
    /// Print the per-task-consistent strategies, one a line, and exit
    #[arg(long, exclusive = true)]
    list: bool,
    /// The strategy to soak: one of those --list prints
    #[arg(long, value_name = "NAME", value_parser = per_task_strategy, required_unless_present = "list")]
    strategy: Option<Info>,
    /// Stop after N transitions: 1 to 10^9 [default: 1000000]
    // Negative numbers reach the value parser, whose message is clearer than "unexpected argument".
    #[arg(long, value_name = "N", value_parser = transitions, conflicts_with = "minutes", allow_negative_numbers = true)]
    transitions: Option<u64>,
    /// Run for M minutes instead: 0.01 to 1440 (24 hours); fractions allowed
    #[arg(long, value_name = "M", value_parser = minutes, allow_negative_numbers = true)]
    minutes: Option<f64>,
}

/// The strategies soak checks: the others are expected to fail the consistency check.
fn per_task() -> impl Iterator<Item = Info> {
    dispatch::strategy::ALL.iter().copied().filter(|i| i.consistency == Consistency::PerTask)
}

fn per_task_strategy(name: &str) -> Result<Info, String> {
    let valid = || per_task().map(|i| i.name).collect::<Vec<_>>().join(", ");
    match dispatch::strategy::info(name) {
        Ok(i) if i.consistency == Consistency::PerTask => Ok(i),
        Ok(i) => Err(format!(
            "{name} is not per-task consistent (its consistency: {}); soak checks only those: {}",
            i.consistency.name(),
            valid()
        )),
        Err(UnknownStrategy(name)) => Err(format!("unknown strategy {name:?}; valid names: {}", valid())),
    }
}

fn transitions(v: &str) -> Result<u64, String> {
    match v.parse::<u64>() {
        Ok(n) if (1..=MAX_TRANSITIONS).contains(&n) => Ok(n),
        _ => Err(format!("give a positive count of at most {MAX_TRANSITIONS}, or --minutes for a timed run")),
    }
}

fn minutes(v: &str) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(m) if (MIN_MINUTES..=MAX_MINUTES).contains(&m) => Ok(m),
        _ => Err(format!("give {MIN_MINUTES} to {MAX_MINUTES} minutes (24 hours)")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.list {
        for info in per_task() {
            println!("{}", info.name);
        }
        return ExitCode::SUCCESS;
    }
    let info = cli.strategy.expect("clap requires --strategy without --list");
    let name = info.name;
    // Probed before any thread exists (a probe's set-up can cost more once there are several),
    // and once. A strategy this machine cannot run is skipped, not failed: scripts/soak runs
    // every name of --list, and a machine without one still soaks the others.
    if let Err(why) = info.availability() {
        eprintln!("soak: {name}: skipped: {why}");
        return ExitCode::SUCCESS;
    }
    let (transitions, minutes) = (cli.transitions, cli.minutes);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cfg = Config {
        readers: cpus + 1,
        transitions: transitions.unwrap_or(if minutes.is_some() { u64::MAX } else { 1_000_000 }),
        time_limit: Duration::from_secs_f64(minutes.unwrap_or(MAX_MINUTES) * 60.0),
        park_every: 64,
        spawn_every: 128,
        ..Config::default()
    };
    let (r, rss_checkpoint, rss_end, took) =
        dispatch::strategy::visit(name, &mut Soak { cfg: cfg.clone() }).expect("the value parser checked the name");
    let growth = if rss_checkpoint > 0 { (rss_end as f64 / rss_checkpoint as f64 - 1.0) * 100.0 } else { 0.0 };
    let rss = if rss_checkpoint > 0 {
        format!("peak RSS {rss_checkpoint} KiB at {CHECKPOINT}, {rss_end} KiB at end ({growth:+.1}%)")
    } else {
        format!("peak RSS {rss_end} KiB at end (fewer than {CHECKPOINT} transitions: no growth check)")
    };
    println!(
        "{name:<8} transitions {:>8} in {:>6.1}s  reversals {:>6}  children {:>7}  sections {:>10}  violations {}  use-after-reclaim {}  idle-in-transition {}  inheritance errors {}  {rss}",
        r.transitions,
        took.as_secs_f64(),
        r.reversals,
        r.children,
        r.critical_sections,
        r.violations,
        r.poison_hits,
        r.idle_in_transition,
        r.inheritance_errors,
    );
    let mut failures = Vec::new();
    if r.violations > 0 || r.poison_hits > 0 || r.idle_in_transition > 0 || r.inheritance_errors > 0 {
        failures.push("consistency or reclamation checks failed".to_owned());
    }
    if minutes.is_none() && r.transitions < cfg.transitions {
        failures.push(format!("only {} of {} transitions completed", r.transitions, cfg.transitions));
    }
    if rss_checkpoint > 0 && growth > 10.0 {
        failures.push(format!("peak RSS grew {growth:.1}% after {CHECKPOINT} transitions (limit 10%)"));
    }
    for f in &failures {
        eprintln!("soak: {name}: FAIL: {f}");
    }
    if failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) }
}
