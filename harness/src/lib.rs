//! The harness: what `cargo run --release -p harness` does, as a library the tests drive.
//!
//! Read it bottom-up; every module imports only modules listed before it:
//!
//! 1. [`config`]: scenarios and run settings, parsed and validated before anything runs.
//! 2. [`counters`]: perf-event2 groups per reader, with the software fallback;
//!    [`sched`]: what the scheduler did to each reader and to the host (schedstat, getrusage);
//!    [`cpu`]: the CPU by what it is (cpuid: vendor, family/model/stepping, caches);
//!    [`env`](mod@env): the environment record (CPU, governor, turbo, counters, the percpu path).
//! 3. [`hist`]: whole distributions (hdrhistogram V2 in base64, `.hgrm` files);
//!    [`record`]: the run's records, as `run.json` holds them (results/SCHEMA.md).
//! 4. [`workload`]: a scenario's sites, call order and patches.
//! 5. [`protocol`]: the reader and writer threads (refscale's protocol).
//! 6. [`measure`]: the runner: rounds, interleaving, one [`record::Row`] per measurement.
//! 7. [`summary`]: the rows aggregated per scenario and strategy, and every verdict (the method
//!    check, the failures that fail the run); [`answer`]: from them, the ranked strategy × regime
//!    matrix and the notable findings that every report opens with;
//!    [`fidelity`]: the C loops timed beside the per-site steady scenario, and whether `klp`
//!    costs what the kernel's handler costs.
//! 8. [`output`], [`compare`], [`report`](mod@report), [`export`], [`hosts`], then [`plot`]: atomic
//!    output, `harness compare`, the tables and `report.md`, `bmf.json` and `rows.csv`, the
//!    cross-host report, and the plots; they read only the records and the summaries.
//! 9. [`html`]: `report.html`, the tables and the environment of [`report`](mod@report) with the
//!    plots inlined, in one self-contained page.

pub mod config;

pub mod counters;
pub mod cpu;
pub mod env;
pub mod sched;

pub mod hist;
pub mod record;

pub mod workload;

pub mod protocol;

pub mod measure;

pub mod output;

pub mod answer;
pub mod summary;

pub mod fidelity;

pub mod compare;
pub mod export;
pub mod report;

pub mod hosts;

pub mod plot;

pub mod html;

use std::fmt::Write;
use std::path::Path;

use config::{ConfigError, RunConfig, Skipped};
use dispatch::strategy::Availability;
use output::{Saved, Staging};
use record::{OLDEST_READABLE, RunFile, SCHEMA_VERSION};

/// The `list` table: one line per strategy of the registry (name, consistency, whether it runs
/// on this machine, description), and under a strategy that cannot run here, why.
pub fn list(available: &Availability) -> String {
    let mut out = String::new();
    for info in dispatch::strategy::ALL {
        let reason = available.reason(info.name);
        let here = if reason.is_some() { "unavailable" } else { "available" };
        writeln!(out, "{:<10} {:<10} {here:<11} {}", info.name, info.consistency.name(), info.description).unwrap();
        if let Some(reason) = reason {
            writeln!(out, "{:<10} unavailable here: {reason}", "").unwrap();
        }
    }
    out
}

/// What `harness env` says of the strategies: one line per strategy this machine cannot run, with
/// why, or one line saying that every strategy runs here.
pub fn availability_lines(available: &Availability) -> String {
    let mut out = String::new();
    for (name, reason) in available.unavailable() {
        writeln!(out, "{:<20} {name} is unavailable here: {reason}", "strategy").unwrap();
    }
    if out.is_empty() {
        writeln!(out, "{:<20} all {} available here", "strategies", dispatch::strategy::ALL.len()).unwrap();
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
    /// The terminal table: printed whatever became of the files.
    pub table: String,
    /// Where the files went, which were written and which not.
    pub saved: Saved,
    /// Every file written where asked (under a default name, `NAME-N` counts when `NAME` was
    /// taken meanwhile); false: the run exits 3 after printing its table.
    pub complete: bool,
    /// Rows of consistent strategies with violations or uses after reclaim (the run fails).
    pub failures: Vec<String>,
    pub notes: Vec<String>,
}

/// Runs `cfg` and writes its output directory. Validation (including the output directory)
/// happens before anything is measured; after measuring, the outcome is always returned, with
/// what became of the files. `skipped`: the strategies asked for that this machine cannot run
/// (left out of `cfg.strategies` by [`config::split_strategies`]), recorded in `run.json`.
pub fn run(cfg: RunConfig, skipped: Vec<Skipped>, log: &mut dyn FnMut(&str)) -> Result<Outcome, RunError> {
    let counters = counters::probe(cfg.counters).map_err(RunError::Failed)?;
    let env = env::Env::capture(Some(counters.clone()));
    let chosen = cfg.out.is_some();
    let dir = cfg.out.clone().unwrap_or_else(|| output::default_dir(&env.host));
    let mut cfg = cfg;
    cfg.out = Some(dir.clone());
    config::validate(&cfg).map_err(RunError::Config)?;
    for note in output::check_target(&dir).map_err(|e| RunError::Config(config::ConfigError(e)))? {
        log(&note);
    }
    let mut notes = Vec::new();
    if let Some(reason) = &counters.reason {
        notes.push(format!("counters: {reason}"));
    }
    notes.extend(env.warnings().into_iter().map(|w| format!("warning: {w}")));
    for n in &notes {
        log(n);
    }
    let clock_ns = measure::calibrate_clock();
    let facts: String = env
        .strategy_facts
        .iter()
        .filter(|f| cfg.strategies.contains(&f.strategy))
        .map(|f| format!("; {}", f.line()))
        .collect();
    log(&format!(
        "{} strategies x {} scenarios x {} rounds of {:.2} s after {:.2} s of warm-up: about {} of measuring; writer on {}; clock overhead {clock_ns:.1} ns per batch (subtracted){facts}",
        cfg.strategies.len(),
        cfg.scenarios.len(),
        cfg.rounds,
        cfg.duration.as_secs_f64(),
        cfg.warmup.as_secs_f64(),
        config::human(config::planned(&cfg)),
        config::writer_cpu_name(cfg.writer_cpu),
    ));
    let started = output::utc_now();
    let host = sched::HostWatch::start();
    // The fidelity check's C loops, timed after each round of its scenario.
    let fidelity_scenario = fidelity::scenario(&cfg).cloned();
    let (mut c_rounds, mut c_rng) = (Vec::new(), dispatch::rng::Rng::new(cfg.seed ^ fidelity::SEED));
    let mut after_round = |scenario: &config::Scenario, round: usize| {
        if fidelity_scenario.as_ref() == Some(scenario) {
            c_rounds.push(fidelity::measure_round(&cfg, scenario, round, clock_ns, &mut c_rng)?);
        }
        Ok(())
    };
    let rows = measure::run_all(&cfg, counters.kind, clock_ns, &mut after_round).map_err(RunError::Failed)?;
    let host_load = host.finish();
    let summaries = summary::summarize(&rows);
    let failures = summary::failures(&summaries);
    let method_check = summary::method_check(&rows);
    let fidelity_check = fidelity_scenario.and_then(|s| fidelity::check(&rows, &s, &c_rounds));
    let run = RunFile {
        schema_version: SCHEMA_VERSION,
        started,
        config: cfg,
        env,
        rows,
        method_check,
        host_load,
        skipped,
        fidelity_check,
    };
    let (saved, rescued, plot_note) = save(&run, &summaries, &dir);
    let complete = saved.dir.is_some() && saved.unwritten.is_empty() && !rescued && (saved.moved.is_none() || !chosen);
    if let Some(note) = plot_note {
        notes.push(format!("plots: {note}"));
    }
    // The answer last: it is what stays on the screen.
    let table = report::terminal(&summaries) + &report::answer_terminal(&run, &summaries);
    Ok(Outcome { table, run, saved, complete, failures, notes })
}

/// Writes the run's files into `dir`, or, when `dir` cannot take `run.json` (a full disk), into
/// [`output::rescue_dir`]. Returns what was saved, whether it went to the rescue directory, and
/// why there are no plots, if there are none.
fn save(run: &RunFile, summaries: &[summary::Summary], dir: &Path) -> (Saved, bool, Option<String>) {
    let why = match Staging::new(dir, run.config.full_disk_after_files) {
        Ok(mut staging) => {
            let plot_note = write_files(&mut staging, run, summaries);
            if staging.has("run.json") {
                if let Some(hook) = run.config.before_commit {
                    hook(dir);
                }
                return (staging.commit(), false, plot_note);
            }
            // Dropped: the staging directory goes, for its files are no run without run.json.
            format!("could not write {}", staging.unwritten().join(", "))
        }
        Err(e) => e,
    };
    let rescue = output::rescue_dir();
    match Staging::new(&rescue, None) {
        Ok(mut staging) => {
            let plot_note = write_files(&mut staging, run, summaries);
            let mut saved = staging.commit();
            let place = saved.dir.as_ref().map_or_else(String::new, |d| d.display().to_string());
            saved.moved = Some(format!("{}: {why}; this run is saved in {place} instead", dir.display()));
            if !saved.written.iter().any(|f| f == "run.json") {
                saved.moved = Some(format!("{}: {why}; {place}: nothing could be saved there either", dir.display()));
            }
            (saved, true, plot_note)
        }
        Err(e) => {
            let moved = Some(format!("{}: {why}; {e}; nothing was saved", dir.display()));
            (Saved { moved, ..Saved::default() }, true, None)
        }
    }
}

/// Writes every file of a run into `staging`, `run.json` first (it alone holds every
/// measurement); returns why there are no plots, if there are none.
fn write_files(staging: &mut Staging, run: &RunFile, summaries: &[summary::Summary]) -> Option<String> {
    match serde_json::to_vec_pretty(run) {
        Ok(json) => staging.write("run.json", &json),
        Err(e) => staging.record("run.json", Err(e.to_string())),
    }
    let (plots, plot_note) = match plot::draw_all(staging.path(), summaries, &run.env.host_label()) {
        Ok(files) => (files, None),
        Err(why) => (Vec::new(), Some(why)),
    };
    for plot in &plots {
        staging.record(plot, Ok(()));
    }
    staging.write("report.md", report::markdown(run, summaries, &plots, plot_note.as_deref()).as_bytes());
    let page = html::run_page(run, summaries, staging.path(), &plots, plot_note.as_deref());
    staging.write("report.html", page.as_bytes());
    match serde_json::to_vec_pretty(&export::bmf(summaries)) {
        Ok(bmf) => staging.write("bmf.json", &bmf),
        Err(e) => staging.record("bmf.json", Err(e.to_string())),
    }
    staging.write("run.schema.json", record::JSON_SCHEMA.as_bytes());
    write_hgrm(staging, summaries);
    match export::rows_csv(&[run]) {
        Ok(csv) => staging.write("rows.csv", csv.as_bytes()),
        Err(e) => staging.record("rows.csv", Err(e.to_string())),
    }
    plot_note
}

/// The `.hgrm` percentile files of every scenario and strategy (merged over rounds) under `hgrm/`:
/// `SCENARIO.STRATEGY.transition.hgrm` in µs and `SCENARIO.STRATEGY.batch.hgrm` in ns per call.
fn write_hgrm(staging: &mut Staging, summaries: &[summary::Summary]) {
    if let Err(e) = std::fs::create_dir_all(staging.path().join("hgrm")) {
        staging.record("hgrm/", Err(e.to_string()));
        return;
    }
    for s in summaries {
        let stem = format!("hgrm/{}.{}", s.scenario.name(), s.strategy);
        if let Some(h) = &s.transition_hist {
            staging.write(&format!("{stem}.transition.hgrm"), hist::hgrm(h, 1000.0).as_bytes());
        }
        if let Some(h) = &s.batch_hist {
            staging.write(&format!("{stem}.batch.hgrm"), hist::hgrm(h, 1000.0).as_bytes());
        }
    }
}

/// `harness report RUN_DIR...`: one run's files written again from its `run.json` by this harness
/// (report.md, report.html, plots, rows.csv, bmf.json and the run.json itself), or, from several
/// runs (made on different machines), one cross-host report: report.md and report.html with a
/// column per host and the ratio plot with a series per host. Refuses (as [`RunError::Config`]) unreadable runs and runs of
/// different schema versions; returns what became of the files.
pub fn report(paths: &[std::path::PathBuf], out: &Path) -> Result<Saved, RunError> {
    let refuse = |e: String| RunError::Config(ConfigError(e));
    let versions: Vec<(std::path::PathBuf, u64)> = paths
        .iter()
        .map(|p| record::read_run_json(p).map(|(file, _, v)| (file, v)))
        .collect::<Result<_, _>>()
        .map_err(refuse)?;
    // Every readable schema is read as this one (record::load_run): only the others differ.
    let schema = |v: u64| if record::readable(v) { u64::from(SCHEMA_VERSION) } else { v };
    if versions.iter().any(|(_, v)| schema(*v) != schema(versions[0].1)) {
        let list: Vec<String> = versions.iter().map(|(f, v)| format!("{} has schema {v}", f.display())).collect();
        return Err(refuse(format!(
            "the runs have different schema versions ({}); one report needs one schema: re-run the older ones with \
             this harness (it reads schema {OLDEST_READABLE} to {SCHEMA_VERSION})",
            list.join(", ")
        )));
    }
    let runs: Vec<RunFile> = paths.iter().map(|p| record::load_run(p)).collect::<Result<_, _>>().map_err(refuse)?;
    output::check_target(out).map_err(refuse)?;
    let mut staging = Staging::new(out, None).map_err(RunError::Failed)?;
    if let [run] = runs.as_slice() {
        write_files(&mut staging, run, &summary::summarize(&run.rows));
        return Ok(staging.commit());
    }
    let hosts = hosts::HostRun::label(runs);
    let (plots, plot_note) = match plot::draw_hosts(staging.path(), &hosts) {
        Ok(files) => (files, None),
        Err(why) => (Vec::new(), Some(why)),
    };
    for plot in &plots {
        staging.record(plot, Ok(()));
    }
    staging.write("report.md", hosts::hosts_markdown(&hosts, &plots, plot_note.as_deref()).as_bytes());
    let runs: Vec<&RunFile> = hosts.iter().map(|h| &h.run).collect();
    match export::rows_csv(&runs) {
        Ok(csv) => staging.write("rows.csv", csv.as_bytes()),
        Err(e) => staging.record("rows.csv", Err(e.to_string())),
    }
    // Each host's benchmarks under its label: Bencher's testbeds are the hosts.
    let mut bmf = serde_json::Map::new();
    for h in &hosts {
        if let serde_json::Value::Object(benchmarks) = export::bmf(&h.summaries) {
            bmf.extend(benchmarks.into_iter().map(|(name, m)| (format!("{}/{name}", h.label), m)));
        }
    }
    match serde_json::to_vec_pretty(&serde_json::Value::Object(bmf)) {
        Ok(bmf) => staging.write("bmf.json", &bmf),
        Err(e) => staging.record("bmf.json", Err(e.to_string())),
    }
    staging.write("report.html", html::hosts_page(&hosts, staging.path(), &plots, plot_note.as_deref()).as_bytes());
    Ok(staging.commit())
}
