//! `harness`: measure livepatch-style dispatch strategies under concurrent transitions.
//! Exit codes: 0 success; 1 a consistent strategy showed violations (run) or a regression
//! (compare); 2 bad input or unusable files, refused before measuring; 3 the run could not
//! complete or its files are not all where asked (said which), or counters were required and
//! cannot be opened (run and env); 4 `run --strict` and a row was flagged for interference;
//! 5 `compare` could not decide (a side with fewer than `compare::MIN_ROUNDS` rounds). A strategy
//! this machine cannot run is skipped by `run`, saying why (exit status unchanged); a run left
//! with none to measure is bad input (2). `report`:
//! 0 written, 2 unusable input (mixed schema versions among them), 3 files not all written.

use dispatch::strategy::Availability;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use harness::config::{self, CountersMode, Grid, Ops, Order, RunConfig, Scenario, Skipped};
use harness::{RunError, compare, counters, env, output, record};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Measure livepatch-style dispatch strategies under concurrent transitions.\n\
Without a subcommand, runs the default suite (same as `harness run`)."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Every strategy in the registry: name, consistency, whether it runs on this machine,
    /// description; under one that cannot run here, why.
    List,
    /// Measure strategies over the product of the scenario options below.
    Run(RunArgs),
    /// Compare two runs metric by metric; exit 0 no regression, 1 regression, 2 unusable input
    /// or runs that differ, 5 inconclusive (a side with fewer than 3 rounds).
    Compare {
        base: PathBuf,
        new: PathBuf,
        /// A regression needs a change beyond this many percent (and p < 0.05): 0 to 1000.
        #[arg(long, default_value_t = 5.0, value_parser = |v: &str| config::THRESHOLD.parse(v), allow_negative_numbers = true)]
        threshold: f64,
        /// Compare runs of different hosts, CPUs, kernels, toolchains, regimes or configs anyway;
        /// every difference is listed first.
        #[arg(long)]
        allow_different_hosts: bool,
        /// Only the changes whose `scenario/strategy metric` contains this text (summary and
        /// exit code included), e.g. `klp`, `r1_steady`, `x fnptr`.
        #[arg(long)]
        filter: Option<String>,
    },
    /// One report from runs made on different machines (same schema): a table per scenario with
    /// a column per host, the plot of the ratio to fnptr with a series per host, each host's
    /// environment. Given one run, writes its report files again with this harness. Exit 0
    /// written, 2 unusable input (an unreadable run, mixed schema versions, an existing --out),
    /// 3 files not all written.
    Report {
        /// Run directories (or their run.json files).
        #[arg(required = true, value_name = "RUN_DIR")]
        runs: Vec<PathBuf>,
        /// Output directory (must not exist) [default: results/runs/<timestamp>-report].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The environment check alone, with every strategy this machine cannot run and why.
    Env {
        #[arg(long, value_enum, default_value = "auto")]
        counters: CountersMode,
    },
}

#[derive(Args, Debug)]
struct RunArgs {
    /// `all` or a comma list of strategy names (see `harness list`). One this machine cannot run
    /// is skipped, saying why on stderr and in run.json; none left to run is bad input.
    #[arg(long, default_value = "all")]
    strategies: String,
    /// Reader counts, 1 to 4094 each, e.g. `1,2`; `all` = every CPU of the affinity mask; `half`
    /// = half of them; `spread` = 1, 2, half and all (four counts at most, so the default stays
    /// minutes on a 128-CPU box); `sweep` = 1, 2, 4, … up to every CPU of the mask.
    #[arg(long, default_value = "spread")]
    readers: String,
    /// The CPU the writer is pinned to (one of the affinity mask), or `any` (unpinned, but kept
    /// off the readers' CPUs while the mask has a CPU without a reader). A writer on a reader's
    /// CPU waits for the scheduler: the report says so next to transition latency.
    #[arg(long, default_value = "any", value_name = "N|any")]
    writer_cpu: String,
    /// Seconds each measurement's readers run before they are timed, so that the CPU's clock has
    /// ramped up: 0 to 60 [default: 0.05, enough for cpufreq governors, which sample every 1 to
    /// 10 ms].
    #[arg(long, value_parser = |v: &str| config::WARMUP.parse(v), allow_negative_numbers = true)]
    warmup: Option<f64>,
    /// Exit 4 when any row is flagged for interference (a reader lost time off its CPU or
    /// migrated, or the mean is far above the median).
    #[arg(long)]
    strict: bool,
    /// Transition rates: 0 (steady), 0.001 to 10^9 Hz, or `max` (back to back).
    #[arg(long, default_value = "0,1000,max")]
    rate: String,
    /// Seconds each reader measures per strategy, scenario and round: 0.001 to 3600 [default: 0.2,
    /// --quick 0.05].
    #[arg(long, value_parser = |v: &str| config::DURATION.parse(v), allow_negative_numbers = true)]
    duration: Option<f64>,
    /// Rounds per scenario (strategies shuffled per round): 1 to 1000 [default: 3, --quick 2].
    /// `--runs` is its old name.
    #[arg(long, alias = "runs", value_parser = |v: &str| config::ROUNDS.parse(v), allow_negative_numbers = true)]
    rounds: Option<usize>,
    /// Call-site regimes of the grid: per-site (each site its own call instruction), shared (one
    /// call instruction for every site) or cold (2048 sites, each its own call instruction, in a
    /// fixed random order; ignores --sites, --order and --calls-per-safepoint).
    #[arg(long, default_value = "per-site")]
    call_sites: String,
    /// Beside the grid, also run the regimes it lacks once each: shared and cold, 1 reader, steady.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    regime_rows: bool,
    /// Calls between two safe points: one critical section, timed as one batch; 1 to 2^20.
    #[arg(long, default_value_t = Scenario::DEFAULT.calls_per_safepoint, value_parser = |v: &str| config::CALLS_PER_SAFEPOINT.parse(v), allow_negative_numbers = true)]
    calls_per_safepoint: usize,
    /// Patched sites: 1 to 4096 (per-site: 1 to 8, 16, 32 or 64).
    #[arg(long, default_value_t = Scenario::DEFAULT.sites, value_parser = |v: &str| config::SITES.parse(v), allow_negative_numbers = true)]
    sites: usize,
    /// The order readers call the sites in (per-site: seq only).
    #[arg(long, value_enum, default_value_t = Scenario::DEFAULT.order)]
    order: Order,
    /// Patches stacked below the one in transition: 0 to 64.
    #[arg(long, default_value_t = Scenario::DEFAULT.depth, value_parser = |v: &str| config::DEPTH.parse(v), allow_negative_numbers = true)]
    depth: usize,
    /// What the writer cycles through.
    #[arg(long, value_enum, default_value_t = Scenario::DEFAULT.ops)]
    ops: Ops,
    #[arg(long, value_enum, default_value = "auto")]
    counters: CountersMode,
    /// Output directory (must not exist) [default: results/runs/<timestamp>-<host>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// A short smoke run.
    #[arg(long)]
    quick: bool,
    /// Allow more readers than CPUs (recorded in every row).
    #[arg(long)]
    oversubscribe: bool,
    /// Seed of the strategy order and the random site order: 0 to 2^64 - 1.
    #[arg(long, default_value_t = 1, value_parser = |v: &str| config::SEED.parse(v), allow_negative_numbers = true)]
    seed: u64,
    /// Start a run planned to measure for more than an hour (it says how long first).
    #[arg(long)]
    yes: bool,
}

impl RunArgs {
    /// The default suite: every option at its default.
    fn defaults() -> Self {
        #[derive(Parser)]
        struct Wrap {
            #[command(flatten)]
            args: RunArgs,
        }
        Wrap::parse_from(["harness"]).args
    }

    /// The run's config, the scenarios dropped as asked for twice, and the strategies asked for
    /// that `available` says cannot run here (left out of the config).
    fn into_config(
        self,
        available: &Availability,
    ) -> Result<(RunConfig, Vec<String>, Vec<Skipped>), config::ConfigError> {
        let cpus = env::affinity_cpus();
        let (strategies, skipped) = config::split_strategies(available, config::parse_strategies(&self.strategies)?)?;
        let readers = config::parse_readers(&self.readers, cpus.len().max(1))?;
        let writer_cpu = config::parse_writer_cpu(&self.writer_cpu, &cpus)?;
        let rates = config::parse_rates(&self.rate)?;
        let duration = self.duration.unwrap_or(if self.quick { 0.05 } else { config::DURATION_DEFAULT });
        let rounds = self.rounds.unwrap_or(if self.quick { 2 } else { 3 });
        let grid = Grid {
            call_sites: config::parse_call_sites(&self.call_sites)?,
            readers,
            rates,
            point: Scenario {
                sites: self.sites,
                order: self.order,
                depth: self.depth,
                ops: self.ops,
                calls_per_safepoint: self.calls_per_safepoint,
                ..Scenario::DEFAULT
            },
            regime_rows: self.regime_rows,
        };
        let (scenarios, duplicates) = grid.scenarios();
        let cfg = RunConfig {
            strategies,
            scenarios,
            duration: Duration::from_secs_f64(duration),
            warmup: Duration::from_secs_f64(self.warmup.unwrap_or(config::WARMUP_DEFAULT)),
            rounds,
            counters: self.counters,
            oversubscribe: self.oversubscribe,
            seed: self.seed,
            cpus,
            writer_cpu,
            out: self.out,
            panic_after_batches: None,
            full_disk_after_files: None,
            before_commit: None,
        };
        config::confirm(&cfg, self.yes)?;
        Ok((cfg, duplicates, skipped))
    }
}

fn run(args: RunArgs, available: &Availability) -> ExitCode {
    let strict = args.strict;
    let (cfg, skipped) = match args.into_config(available) {
        Ok((c, duplicates, skipped)) => {
            for name in duplicates {
                eprintln!(
                    "harness: scenario {name} was asked for more than once (a value repeated in --readers, --rate or \
                     --call-sites; 0 and steady are one rate); it is measured once"
                );
            }
            // Not an error: the machine cannot run them, and the run measures the rest.
            for s in &skipped {
                eprintln!("harness: {} skipped: unavailable on this machine: {}", s.strategy, s.reason);
            }
            (c, skipped)
        }
        Err(e) => {
            eprintln!("harness: {e}");
            return ExitCode::from(2);
        }
    };
    match harness::run(cfg, skipped, &mut |line| eprintln!("harness: {line}")) {
        Ok(outcome) => {
            // The table first, whatever became of the files: it may be all that is left.
            print!("{}", outcome.table);
            let saved = &outcome.saved;
            if let Some(dir) = &saved.dir {
                println!("\nwrote {}", dir.display());
            }
            if let Some(moved) = &saved.moved {
                eprintln!("harness: {moved}");
            }
            if !saved.unwritten.is_empty() {
                let place = saved.dir.as_ref().map_or_else(|| "anywhere".to_owned(), |d| d.display().to_string());
                eprintln!(
                    "harness: written: {}; NOT written in {place}: {}",
                    if saved.written.is_empty() { "nothing".to_owned() } else { saved.written.join(", ") },
                    saved.unwritten.join(", ")
                );
            }
            for n in &outcome.notes {
                if n.starts_with("plots:") {
                    eprintln!("harness: {n}");
                }
            }
            for f in &outcome.failures {
                eprintln!("harness: CONSISTENCY FAILURE {f}");
            }
            let flagged = outcome.run.rows.iter().any(|r| r.interference.flagged());
            if strict && flagged {
                eprintln!(
                    "harness: --strict: rows were flagged for interference (see the table); rerun on a quieter machine"
                );
            }
            if !outcome.complete {
                ExitCode::from(3)
            } else if !outcome.failures.is_empty() {
                ExitCode::from(1)
            } else if strict && flagged {
                ExitCode::from(4)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => failed(e),
    }
}

/// Says why a run or report failed; bad input exits 2, a failure after starting 3.
fn failed(e: RunError) -> ExitCode {
    eprintln!("harness: {e}");
    match e {
        RunError::Config(_) => ExitCode::from(2),
        RunError::Failed(_) => ExitCode::from(3),
    }
}

/// Parses the command line; an option of `run` given without it (`harness --quick`) gets clap's
/// message and a hint where it belongs.
fn parse() -> Cli {
    use clap::CommandFactory;
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    Cli::try_parse().unwrap_or_else(|e| {
        if e.kind() == ErrorKind::UnknownArgument
            && let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg)
        {
            let long = arg.trim_start_matches('-').split('=').next().unwrap_or_default();
            let cli = Cli::command();
            let run = cli.find_subcommand("run").expect("run is a subcommand");
            // A run option by its name or an old one (`--runs` for `--rounds`).
            let is_run_option = |a: &clap::Arg| {
                a.get_long() == Some(long) || a.get_all_aliases().is_some_and(|aliases| aliases.contains(&long))
            };
            if run.get_arguments().any(is_run_option) {
                let _ = e.print();
                let given = std::env::args().find(|a| a.starts_with(arg.as_str())).unwrap_or_else(|| arg.clone());
                eprintln!("\nhint: --{long} is an option of `harness run`: harness run {given}");
                std::process::exit(e.exit_code());
            }
        }
        e.exit()
    })
}

fn main() -> ExitCode {
    // First of all, while this process has one thread: a probe may do one-time set-up that costs
    // far more once a second thread exists. Kept for the whole run; nothing probes again.
    let available = Availability::probe();
    let cli = parse();
    match cli.command {
        Some(Command::List) => {
            print!("{}", harness::list(&available));
            ExitCode::SUCCESS
        }
        Some(Command::Run(args)) => run(args, &available),
        None => run(RunArgs::defaults(), &available),
        Some(Command::Env { counters }) => {
            let availability = counters::probe(counters);
            let env = env::Env::capture(availability.as_ref().ok().cloned());
            print!("{}", env.render());
            print!("{}", harness::availability_lines(&available));
            match availability {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    // As under `run`: the machine cannot do what was asked.
                    eprintln!("harness: {e}");
                    ExitCode::from(3)
                }
            }
        }
        Some(Command::Report { runs, out }) => {
            let out = out.unwrap_or_else(|| output::default_dir("report"));
            match harness::report(&runs, &out) {
                Ok(saved) => {
                    if let Some(moved) = &saved.moved {
                        eprintln!("harness: {moved}");
                    }
                    if let Some(dir) = &saved.dir {
                        println!("wrote {} ({})", dir.display(), saved.written.join(", "));
                    }
                    if !saved.unwritten.is_empty() {
                        eprintln!("harness: NOT written: {}", saved.unwritten.join(", "));
                    }
                    if saved.unwritten.is_empty() && saved.moved.is_none() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(3)
                    }
                }
                Err(e) => failed(e),
            }
        }
        Some(Command::Compare { base, new, threshold, allow_different_hosts, filter }) => {
            let load = |p: &PathBuf| record::load_run(p);
            let (b, n) = match (load(&base), load(&new)) {
                (Ok(b), Ok(n)) => (b, n),
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("harness: {e}");
                    return ExitCode::from(2);
                }
            };
            match compare::compare(&b, &n, threshold, allow_different_hosts, filter.as_deref()) {
                Ok(c) => {
                    print!("{}", compare::render(&c));
                    if c.count(compare::Verdict::Regression) > 0 {
                        ExitCode::from(1)
                    } else if c.count(compare::Verdict::Inconclusive) > 0 {
                        ExitCode::from(5)
                    } else {
                        ExitCode::SUCCESS
                    }
                }
                Err(e) => {
                    eprintln!("harness: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
