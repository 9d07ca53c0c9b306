//! `soak`: one strategy under the torture engine for a long time, with tasks parking, forking and
//! oversubscribed readers, checking consistency, use after reclaim and memory growth.
//! `scripts/soak` runs it once per per-task-consistent strategy, each in its own process (so that
//! peak RSS is the strategy's own).
//!
//! `soak --list` | `soak --strategy NAME [--transitions N | --minutes M]`
//! Exit: 0 pass, 1 a check failed, 2 bad input.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use dispatch::strategy::Consistency;
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

fn usage(msg: &str) -> ExitCode {
    eprintln!("soak: {msg}\nusage: soak --list | soak --strategy NAME [--transitions N | --minutes M]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--list") {
        for info in dispatch::strategy::ALL.iter().filter(|i| i.consistency == Consistency::PerTask) {
            println!("{}", info.name);
        }
        return ExitCode::SUCCESS;
    }
    let (mut name, mut transitions, mut minutes) = (None, None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let value = it.next();
        match (a.as_str(), value) {
            ("--strategy", Some(v)) => name = Some(v.clone()),
            ("--transitions", Some(v)) => match v.parse::<u64>() {
                Ok(n) if n > 0 => transitions = Some(n),
                _ => return usage(&format!("--transitions must be a positive count, got {v:?}")),
            },
            ("--minutes", Some(v)) => match v.parse::<f64>() {
                Ok(m) if m > 0.0 && m.is_finite() => minutes = Some(m),
                _ => return usage(&format!("--minutes must be a positive number, got {v:?}")),
            },
            (flag, _) => return usage(&format!("unknown or incomplete argument {flag:?}")),
        }
    }
    let Some(name) = name else { return usage("--strategy is required") };
    match dispatch::strategy::info(&name) {
        Ok(i) if i.consistency == Consistency::PerTask => {}
        Ok(_) => return usage(&format!("{name} is not per-task consistent; soak checks only those (see soak --list)")),
        Err(e) => return usage(&e.to_string()),
    }
    if transitions.is_some() && minutes.is_some() {
        return usage("give --transitions or --minutes, not both");
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cfg = Config {
        readers: cpus + 1,
        transitions: transitions.unwrap_or(if minutes.is_some() { u64::MAX } else { 1_000_000 }),
        time_limit: minutes.map_or(Duration::from_secs(24 * 3600), |m| Duration::from_secs_f64(m * 60.0)),
        park_every: 64,
        spawn_every: 128,
        ..Config::default()
    };
    let (r, rss_checkpoint, rss_end, took) =
        dispatch::strategy::visit(&name, &mut Soak { cfg: cfg.clone() }).expect("checked above");
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
