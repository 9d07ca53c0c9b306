//! The harness: what `cargo run --release -p harness` does, as a library the tests drive.
//!
//! Read it bottom-up; every module imports only modules listed before it:
//!
//! 1. [`config`]: scenarios and run settings, parsed and validated before anything runs.
//! 2. [`counters`]: perf-event2 groups per reader, with the software fallback;
//!    [`env`](mod@env): the environment record (CPU, governor, turbo, counters, the percpu path).
//! 3. [`record`]: the run's records, as `run.json` holds them (results/SCHEMA.md).
//! 4. [`workload`]: a scenario's sites, call order and patches.
//! 5. [`protocol`]: the reader and writer threads (refscale's protocol).
//! 6. [`measure`]: the runner: rounds, interleaving, one [`record::Row`] per measurement.
//! 7. [`output`], [`compare`], [`report`], then [`plot`]: atomic output, `harness compare`, the
//!    tables and `report.md`, and the plots (of `report`'s summaries); they read only the records.

pub mod config;

pub mod counters;
pub mod env;

pub mod record;

pub mod workload;

pub mod protocol;

pub mod measure;

pub mod output;

pub mod compare;
pub mod report;

pub mod plot;

use std::fmt::Write;
use std::path::PathBuf;

use config::{ConfigError, RunConfig};
use output::Staging;
use record::{RunFile, SCHEMA_VERSION};

/// The `list` table: one line per strategy of the registry.
pub fn list() -> String {
    let mut out = String::new();
    for info in dispatch::strategy::ALL {
        writeln!(out, "{:<10} {:<10} {}", info.name, info.consistency.name(), info.description).unwrap();
    }
    out
}

/// How a run ended badly; each kind has its own exit code.
#[derive(Debug)]
pub enum RunError {
    /// Bad input: exit 2.
    Config(ConfigError),
    /// The run could not complete (a thread panicked, counters were required, output failed): exit 3.
    Failed(String),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Config(e) => write!(f, "{e}"),
            RunError::Failed(e) => write!(f, "run aborted: {e}"),
        }
    }
}

/// What a completed run produced.
#[derive(Debug)]
pub struct Outcome {
    pub run: RunFile,
    pub table: String,
    pub dir: PathBuf,
    /// Rows of consistent strategies with violations or uses after reclaim (the run fails).
    pub failures: Vec<String>,
    pub notes: Vec<String>,
}

/// Runs `cfg` and writes its output directory. Validation (including the output directory)
/// happens before anything is measured.
pub fn run(cfg: RunConfig, log: &mut dyn FnMut(&str)) -> Result<Outcome, RunError> {
    let counters = counters::probe(cfg.counters).map_err(RunError::Failed)?;
    let env = env::Env::capture(Some(counters.clone()));
    let dir = cfg.out.clone().unwrap_or_else(|| output::default_dir(&env.host));
    let mut cfg = cfg;
    cfg.out = Some(dir.clone());
    config::validate(&cfg).map_err(RunError::Config)?;
    output::check_target(&dir).map_err(|e| RunError::Config(config::ConfigError(e)))?;
    let mut notes = Vec::new();
    if let Some(reason) = &counters.reason {
        notes.push(format!("counters: {reason}"));
    }
    notes.extend(env.warnings().into_iter().map(|w| format!("warning: {w}")));
    for n in &notes {
        log(n);
    }
    let clock_ns = measure::calibrate_clock();
    log(&format!(
        "{} strategies x {} scenarios x {} runs of {:.2} s; clock overhead {clock_ns:.1} ns per batch (subtracted); percpu CPU id via {}",
        cfg.strategies.len(),
        cfg.scenarios.len(),
        cfg.runs,
        cfg.duration.as_secs_f64(),
        env.percpu_path
    ));
    let started = output::utc_now();
    let rows = measure::run_all(&cfg, counters.kind, clock_ns).map_err(RunError::Failed)?;
    let summaries = report::summarize(&rows);
    let failures: Vec<String> = summaries
        .iter()
        .filter(|s| s.failed)
        .map(|s| {
            format!(
                "{}/{}: {} violations, {} uses after reclaim, {} reads of a transition while Idle",
                s.scenario, s.strategy, s.violations, s.use_after_reclaim, s.idle_in_transition
            )
        })
        .collect();
    let method_check = report::method_check(&rows);
    let run = RunFile { schema_version: SCHEMA_VERSION, started, config: cfg, env, rows, method_check };
    let staging = Staging::new(&dir).map_err(RunError::Failed)?;
    let (plots, plot_note) = match plot::draw_all(staging.path(), &summaries) {
        Ok(files) => (files, None),
        Err(why) => (Vec::new(), Some(why)),
    };
    let json = serde_json::to_vec_pretty(&run).map_err(|e| RunError::Failed(e.to_string()))?;
    staging.write("run.json", &json).map_err(RunError::Failed)?;
    staging
        .write("report.md", report::markdown(&run, &summaries, &plots, plot_note.as_deref()).as_bytes())
        .map_err(RunError::Failed)?;
    let bmf = serde_json::to_vec_pretty(&report::bmf(&summaries)).map_err(|e| RunError::Failed(e.to_string()))?;
    staging.write("bmf.json", &bmf).map_err(RunError::Failed)?;
    let dir = staging.commit().map_err(RunError::Failed)?;
    if let Some(note) = plot_note {
        notes.push(format!("plots: {note}"));
    }
    Ok(Outcome { table: report::terminal(&summaries), run, dir, failures, notes })
}
