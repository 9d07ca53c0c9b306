//! What a run measures: the scenarios (one point of every dimension) and the run-wide settings,
//! parsed and checked before anything is measured.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use dispatch::strategy::Availability;
use serde::{Deserialize, Serialize};

/// Transition rate of the writer.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Rate {
    /// No writer: steady state.
    Steady,
    /// Open loop at this many transitions per second.
    Hz(f64),
    /// Back to back.
    Max,
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rate::Steady => f.write_str("steady"),
            Rate::Hz(hz) => write!(f, "{hz}hz"),
            Rate::Max => f.write_str("max"),
        }
    }
}

/// The order readers call the sites in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// 0, 1, 2, …: every load and branch predicted.
    Seq,
    /// A pregenerated random order: with many sites, cache misses and mispredicted branches.
    Random,
}

impl Order {
    /// The name used on the command line, in run.json and in scenario names.
    pub fn name(self) -> &'static str {
        match self {
            Order::Seq => "seq",
            Order::Random => "random",
        }
    }
}

/// Where the measured loop's call instructions are: the call-site regime (see
/// `dispatch::loops`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum CallSites {
    /// Each site called from its own call instruction, the site a constant there: every indirect
    /// call predicted, so what is measured is the redirection itself. Generated for the sizes in
    /// `dispatch::loops::PER_SITE_SIZES`, the sites called in sequence.
    PerSite,
    /// One call instruction cycling through the sites, as in an interpreter or at a vtable call
    /// site: where the CPU's indirect-branch predictor shows.
    Shared,
    /// `dispatch::loops::COLD_SITES` distinct call instructions, one per site, in a fixed
    /// random order: more code than the L1 instruction cache holds, data accessed at random.
    Cold,
}

impl CallSites {
    /// The name used on the command line and in run.json.
    pub fn name(self) -> &'static str {
        match self {
            CallSites::PerSite => "per-site",
            CallSites::Shared => "shared",
            CallSites::Cold => "cold",
        }
    }
}

/// What the writer cycles through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Ops {
    /// Enable the top patch, then disable it.
    Cycle,
    /// Replace everything with one cumulative patch, then with another (nops included).
    Replace,
    /// Enable the top patch and reverse the transition at once.
    Reverse,
}

/// Hardware counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum CountersMode {
    /// Use them where available; otherwise say why and record software counters.
    Auto,
    /// Never open counters (the same method everywhere).
    Off,
    /// Fail if hardware counters cannot be opened.
    Require,
}

/// One point of every scenario dimension except the strategy: the harness's one parameter block,
/// as refscale's module parameters are. The grid is built from it ([`Grid`]), every row and
/// summary carries it, its name is derived from it in one place ([`Scenario::name`]), its rules
/// are checked in one place ([`Scenario::in_regime`], [`validate`]), and every consumer selects by
/// its fields, never by its name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct Scenario {
    pub call_sites: CallSites,
    pub readers: usize,
    pub rate: Rate,
    pub sites: usize,
    pub order: Order,
    /// Patches enabled below the one in transition.
    pub depth: usize,
    pub ops: Ops,
    pub calls_per_safepoint: usize,
}

impl Scenario {
    /// The default suite's point of every dimension: 8 sites, each called from its own call
    /// instruction, in sequence, by 1 reader, steady; one patch below the one in transition,
    /// enabled and disabled in turn; 4096 calls per critical section. `harness run`'s flags take
    /// their defaults from here.
    pub const DEFAULT: Scenario = Scenario {
        call_sites: CallSites::PerSite,
        readers: 1,
        rate: Rate::Steady,
        sites: 8,
        order: Order::Seq,
        depth: 1,
        ops: Ops::Cycle,
        calls_per_safepoint: 4096,
    };

    /// A compact name, e.g. `per-site_r2_1000hz_s8seq_d1_cycle_c4096`: for people and file
    /// names. Code selects scenarios by their fields.
    pub fn name(&self) -> String {
        self.name_with(self.order.name())
    }

    /// The name harnesses of schema 3 and 4 gave it, which their rows hold: [`Self::name`] with
    /// `rand` for a random order. Reading such a run matches it (`record::load`); nothing else
    /// uses it.
    pub(crate) fn schema_4_name(&self) -> String {
        self.name_with(match self.order {
            Order::Seq => "seq",
            Order::Random => "rand",
        })
    }

    /// The name's one format, with `order` for the order's part.
    fn name_with(&self, order: &str) -> String {
        let ops = match self.ops {
            Ops::Cycle => "cycle",
            Ops::Replace => "replace",
            Ops::Reverse => "reverse",
        };
        format!(
            "{}_r{}_{}_s{}{}_d{}_{}_c{}",
            self.call_sites.name(),
            self.readers,
            self.rate,
            self.sites,
            order,
            self.depth,
            ops,
            self.calls_per_safepoint
        )
    }

    /// The scenario in a few words, for a plot's panel: `per site, 2 readers, 1000 Hz
    /// transitions` (the sites, order and depth, the same across a run's panels, are left out).
    pub fn short(&self) -> String {
        let regime = match self.call_sites {
            CallSites::PerSite => "per site",
            CallSites::Shared => "shared site",
            CallSites::Cold => "cold",
        };
        let readers = if self.readers == 1 { "1 reader".to_owned() } else { format!("{} readers", self.readers) };
        let rate = match self.rate {
            Rate::Steady => "steady".to_owned(),
            Rate::Hz(hz) => format!("{hz} Hz transitions"),
            Rate::Max => "back-to-back transitions".to_owned(),
        };
        format!("{regime}, {readers}, {rate}")
    }

    /// Whether the scenario has no writer.
    pub fn is_steady(&self) -> bool {
        self.rate == Rate::Steady
    }

    /// This scenario in the regime `call_sites`, with the dimensions that regime fixes: the cold
    /// loop is generated for [`dispatch::loops::COLD_SITES`] sites, each called once per critical
    /// section in a fixed random order. The one place that rule is written: [`Grid`] builds
    /// scenarios with it and [`validate`] refuses any cold scenario it would change.
    pub fn in_regime(&self, call_sites: CallSites) -> Scenario {
        let base = Scenario { call_sites, ..self.clone() };
        match call_sites {
            CallSites::Cold => Scenario {
                sites: dispatch::loops::COLD_SITES,
                order: Order::Random,
                calls_per_safepoint: dispatch::loops::COLD_SITES,
                ..base
            },
            CallSites::PerSite | CallSites::Shared => base,
        }
    }
}

/// The scenarios a run asks for: a list of values for the dimensions a run sweeps, one value
/// for the rest. `harness run`'s flags fill it; [`Grid::scenarios`] builds the run's scenarios.
#[derive(Clone, Debug, PartialEq)]
pub struct Grid {
    pub call_sites: Vec<CallSites>,
    pub readers: Vec<usize>,
    pub rates: Vec<Rate>,
    /// Every other dimension's value (its `call_sites`, `readers` and `rate` are not used).
    pub point: Scenario,
    /// Beside the grid, the regimes it lacks once each: shared and cold, 1 reader, steady.
    pub regime_rows: bool,
}

impl Grid {
    /// Every combination of regime, readers and rate, in that order of nesting, then the regime
    /// rows; scenarios asked for twice are kept once, and their names returned.
    pub fn scenarios(&self) -> (Vec<Scenario>, Vec<String>) {
        let mut scenarios = Vec::new();
        for &regime in &self.call_sites {
            for &readers in &self.readers {
                for &rate in &self.rates {
                    scenarios.push(Scenario { readers, rate, ..self.point.in_regime(regime) });
                }
            }
        }
        if self.regime_rows {
            for regime in [CallSites::Shared, CallSites::Cold] {
                if !self.call_sites.contains(&regime) {
                    scenarios.push(Scenario { readers: 1, rate: Rate::Steady, ..self.point.in_regime(regime) });
                }
            }
        }
        let duplicates = dedup_scenarios(&mut scenarios);
        (scenarios, duplicates)
    }
}

impl Scenario {
    /// The scenario in words, for a reader who does not know the naming scheme of [`Self::name`].
    pub fn describe(&self) -> String {
        let regime = match self.call_sites {
            CallSites::PerSite => "each site called from its own call instruction",
            CallSites::Shared => "every site called from one shared call instruction",
            CallSites::Cold => "each site called from its own call instruction, more code than the L1i holds",
        };
        let readers = match self.readers {
            1 => "1 reader thread".to_owned(),
            n => format!("{n} reader threads"),
        };
        let writer = match self.rate {
            Rate::Steady => "no writer (steady state)".to_owned(),
            Rate::Hz(hz) => format!("a writer starting {hz} transitions a second (open loop)"),
            Rate::Max => "a writer making transitions back to back".to_owned(),
        };
        let order = match self.order {
            Order::Seq => "in sequence",
            Order::Random => "in a fixed random order",
        };
        let ops = match self.ops {
            Ops::Cycle => "enables the top patch, then disables it",
            Ops::Replace => "replaces every patch with one cumulative patch, then with another",
            Ops::Reverse => "enables the top patch and reverses the transition at once",
        };
        let writes = if self.rate == Rate::Steady { String::new() } else { format!("; the writer {ops}") };
        format!(
            "{readers}, {writer}; {} sites {order}, {regime}; {} patch(es) stacked below the one in transition{writes}; \
             {} calls per critical section (one timed batch)",
            self.sites, self.depth, self.calls_per_safepoint
        )
    }
}

/// Everything a `run` needs, after validation.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct RunConfig {
    pub strategies: Vec<String>,
    pub scenarios: Vec<Scenario>,
    /// Seconds.
    #[serde(with = "secs")]
    #[cfg_attr(test, schemars(with = "f64"))]
    pub duration: Duration,
    /// Each measurement's readers run this long before they are timed (see [`WARMUP_DEFAULT`]).
    #[serde(with = "secs")]
    #[cfg_attr(test, schemars(with = "f64"))]
    pub warmup: Duration,
    /// Rounds per scenario: within a round every strategy is measured once, in a shuffled order.
    #[serde(alias = "runs")]
    pub rounds: usize,
    pub counters: CountersMode,
    pub oversubscribe: bool,
    pub seed: u64,
    /// CPUs readers are pinned to, from the affinity mask.
    pub cpus: Vec<usize>,
    /// The CPU the writer is pinned to (`--writer-cpu N`), one of `cpus`; `None`: unpinned
    /// (`--writer-cpu any`).
    pub writer_cpu: Option<usize>,
    #[serde(skip)]
    pub out: Option<PathBuf>,
    /// Test hook: the first reader panics after this many measured batches.
    #[serde(skip)]
    pub panic_after_batches: Option<u64>,
    /// Test hook: the output directory's disk is full after this many files (see
    /// `output::Staging::write`).
    #[serde(skip)]
    pub full_disk_after_files: Option<usize>,
    /// Test hook: called with the output directory after its files are written, before they are
    /// moved into place (to make it appear meanwhile).
    #[serde(skip)]
    pub before_commit: Option<fn(&std::path::Path)>,
}

mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs_f64(f64::deserialize(d)?))
    }
}

/// Bad input: what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn bad(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

/// `all` or a comma list of registry names; unknown names list the valid ones.
pub fn parse_strategies(s: &str) -> Result<Vec<String>, ConfigError> {
    if s.trim() == "all" {
        return Ok(dispatch::strategy::ALL.iter().map(|i| i.name.to_owned()).collect());
    }
    let mut names = Vec::new();
    for name in s.split(',').map(str::trim) {
        let info = dispatch::strategy::info(name).map_err(|e| bad(format!("--strategies: {e}")))?;
        if !names.iter().any(|n| n == info.name) {
            names.push(info.name.to_owned());
        }
    }
    if names.is_empty() {
        return Err(bad("--strategies is empty; give `all` or names from `harness list`"));
    }
    Ok(names)
}

/// A strategy a run was asked for but did not measure, because this machine cannot run it: a
/// top-level list of `run.json` (results/SCHEMA.md), said on stderr and in report.md.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct Skipped {
    pub strategy: String,
    /// What is missing here and what to change (the strategy's `Info::availability`).
    pub reason: String,
}

/// Splits the strategies asked for into those to measure and those `available` says are skipped
/// here, each in the order given. Nothing left to measure is bad input: it names every strategy
/// with its reason, and what to do.
pub fn split_strategies(
    available: &Availability,
    asked: Vec<String>,
) -> Result<(Vec<String>, Vec<Skipped>), ConfigError> {
    let (measured, skipped): (Vec<String>, Vec<String>) = asked.into_iter().partition(|name| available.runs(name));
    let skipped: Vec<Skipped> = skipped
        .into_iter()
        .map(|name| Skipped { reason: available.reason(&name).unwrap_or_default().to_owned(), strategy: name })
        .collect();
    if measured.is_empty() {
        let why: Vec<String> = skipped.iter().map(|s| format!("{}: {}", s.strategy, s.reason)).collect();
        return Err(bad(format!(
            "--strategies: nothing to measure: every strategy asked for is unavailable on this machine ({}); \
             ask for others (`harness list` says which run here)",
            why.join("; ")
        )));
    }
    Ok((measured, skipped))
}

/// A numeric option's documented range: what `--help`, the README and every message about it say.
#[derive(Clone, Copy, Debug)]
pub struct Range<T> {
    pub min: T,
    pub max: T,
    pub unit: &'static str,
}

/// Seconds each reader measures per strategy, scenario and round: a millisecond is a few hundred
/// batches; an hour of one measurement is past any use.
pub const DURATION: Range<f64> = Range { min: 0.001, max: 3600.0, unit: "seconds" };
/// Rounds per scenario: enough for any significance test; rows are kept in memory.
pub const ROUNDS: Range<usize> = Range { min: 1, max: 1000, unit: "rounds" };
/// Readers per scenario: the patcher has 4096 task slots, two of them for the writer and the
/// set-up.
pub const READERS: Range<usize> = Range { min: 1, max: 4094, unit: "readers" };
/// A writer's rate: from one transition per 1000 s to one per nanosecond (a rate the writer
/// cannot keep is measured and reported as not kept).
pub const RATE_HZ: Range<f64> = Range { min: 0.001, max: 1e9, unit: "Hz" };
/// Patched sites: every site its own function up to `dispatch::check::CODE_COUNT`.
pub const SITES: Range<usize> = Range { min: 1, max: dispatch::check::CODE_COUNT, unit: "sites" };
/// Calls per critical section: up to 2^20 (a section of a few milliseconds; its call order is
/// kept in memory, 4 bytes a call).
pub const CALLS_PER_SAFEPOINT: Range<usize> = Range { min: 1, max: 1 << 20, unit: "calls" };
/// Patches stacked below the one in transition: each is enabled before measuring.
pub const DEPTH: Range<usize> = Range { min: 0, max: 64, unit: "patches" };
/// `--duration` when not given: 0.2 s, some 25,000 batches of 4096 calls at 2 ns a call and 200
/// transitions at 1000 Hz per measurement, so that the default suite (264 measurements on 2 CPUs)
/// measures for about 70 s (warm-up and set-up included) and a fresh clone's build and run end
/// within 3 minutes on 2 vCPUs. The spread between rounds, not the length of one, bounds what a
/// measurement tells (see the min-max columns); `--duration` buys more samples per round,
/// `--rounds` more rounds.
pub const DURATION_DEFAULT: f64 = 0.2;
/// `--warmup`: none at all, up to a minute (past that a measurement is mostly warm-up).
pub const WARMUP: Range<f64> = Range { min: 0.0, max: 60.0, unit: "seconds" };
/// The default warm-up, s: cpufreq governors raise a busy CPU's clock within a few of their
/// sampling periods (intel_pstate and schedutil: 1 to 10 ms; ondemand: 10 ms and up), so 50 ms
/// covers five of the slowest; measurements follow each other back to back, so a CPU that
/// ramped up for one stays up for the next. On 2 CPUs the default suite plans 8 scenarios (1 and
/// 2 readers at three rates, one shared and one cold) × 11 strategies × 3 rounds = 264
/// measurements, so the warm-up adds 13 s to 53 s of measuring.
pub const WARMUP_DEFAULT: f64 = 0.05;
/// Any seed will do.
pub const SEED: Range<u64> = Range { min: 0, max: u64::MAX, unit: "(any 64-bit number)" };
/// `compare --threshold`: a change beyond 1000% is no threshold.
pub const THRESHOLD: Range<f64> = Range { min: 0.0, max: 1000.0, unit: "percent" };

impl<T: PartialOrd + fmt::Display + Copy + std::str::FromStr> Range<T> {
    fn contains(&self, v: T) -> bool {
        // Written so that NaN is outside.
        v >= self.min && v <= self.max
    }

    /// `v`, if within the range; else a message naming the option, its range and the value.
    pub fn check(&self, option: &str, v: T) -> Result<T, ConfigError> {
        if self.contains(v) {
            Ok(v)
        } else {
            Err(bad(format!("--{option} {v} is out of range: give {} to {} {}", self.min, self.max, self.unit)))
        }
    }

    /// Parses a command-line value and checks it (clap's value parser: clap names the option and
    /// the value).
    pub fn parse(&self, text: &str) -> Result<T, String> {
        match text.trim().parse::<T>() {
            Ok(v) if self.contains(v) => Ok(v),
            _ => Err(format!("give {} to {} {}", self.min, self.max, self.unit)),
        }
    }
}

/// 1, 2, 4, … below `cpus`, then `cpus` itself: the reader sweep up to every CPU of the mask.
pub fn sweep(cpus: usize) -> Vec<usize> {
    let mut counts: Vec<usize> =
        std::iter::successors(Some(1usize), |n| n.checked_mul(2)).take_while(|n| *n < cpus).collect();
    counts.push(cpus.max(1));
    counts
}

/// 1, 2, half the CPUs and every CPU, each once: the default suite's readers. Four counts on
/// any machine, so that the default stays a few minutes on a 128-CPU box (the full [`sweep`]
/// plans 8 there), and still shows 1 against 2 (where a shared cache line starts to cost) and
/// the whole machine.
pub fn spread(cpus: usize) -> Vec<usize> {
    let mut counts = Vec::new();
    for n in [1, 2.min(cpus), (cpus / 2).max(1), cpus.max(1)] {
        if !counts.contains(&n) {
            counts.push(n);
        }
    }
    counts
}

/// `1,2`, `all` (every CPU of the affinity mask), `half` (half of them), `spread` ([`spread`]:
/// 1, 2, half, all; the default) or `sweep` ([`sweep`]: 1, 2, 4, … up to all).
pub fn parse_readers(s: &str, cpus: usize) -> Result<Vec<usize>, ConfigError> {
    let mut out = Vec::new();
    for x in s.split(',') {
        match x.trim() {
            "all" => out.push(cpus),
            "half" => out.push((cpus / 2).max(1)),
            "spread" => out.extend(spread(cpus)),
            "sweep" => out.extend(sweep(cpus)),
            x => match x.parse::<u64>() {
                Ok(n) => out.push(READERS.check("readers", usize::try_from(n).unwrap_or(usize::MAX))?),
                Err(_) => {
                    return Err(bad(format!(
                        "--readers: {x:?} is not a count; give counts of {} to {} readers, e.g. `1,2`, `all`, `half`, `spread` or `sweep`",
                        READERS.min, READERS.max
                    )));
                }
            },
        }
    }
    Ok(out)
}

/// Where the writer runs, for messages: `CPU 1` or `any CPU (unpinned)`.
pub fn writer_cpu_name(cpu: Option<usize>) -> String {
    cpu.map_or_else(|| "any CPU (unpinned)".to_owned(), |c| format!("CPU {c}"))
}

/// `--writer-cpu`: `any` (unpinned) or a CPU of the affinity mask `cpus`.
pub fn parse_writer_cpu(s: &str, cpus: &[usize]) -> Result<Option<usize>, ConfigError> {
    match s.trim() {
        "any" => Ok(None),
        x => match x.parse::<usize>() {
            Ok(n) if cpus.contains(&n) => Ok(Some(n)),
            _ => Err(bad(format!(
                "--writer-cpu {x:?} is not a CPU of the affinity mask {cpus:?}; give one of them, or `any` (unpinned)"
            ))),
        },
    }
}

/// `0,1000,max`: 0 = steady, a rate in Hz, or `max` (back to back).
pub fn parse_rates(s: &str) -> Result<Vec<Rate>, ConfigError> {
    let rate_help = format!("use 0 (steady), {} to {} Hz, or `max`", RATE_HZ.min, RATE_HZ.max);
    s.split(',')
        .map(|x| match x.trim() {
            "max" => Ok(Rate::Max),
            "0" | "steady" => Ok(Rate::Steady),
            v => match v.parse::<f64>() {
                Ok(0.0) => Ok(Rate::Steady),
                Ok(hz) if RATE_HZ.contains(hz) => Ok(Rate::Hz(hz)),
                Ok(_) => Err(bad(format!("--rate {v} is out of range; {rate_help}"))),
                Err(_) => Err(bad(format!("--rate: {v:?} is not a rate; {rate_help}"))),
            },
        })
        .collect()
}

/// `per-site,shared,cold`: the call-site regimes of the grid.
pub fn parse_call_sites(s: &str) -> Result<Vec<CallSites>, ConfigError> {
    let mut regimes = Vec::new();
    for x in s.split(',').map(str::trim) {
        let regime = <CallSites as clap::ValueEnum>::from_str(x, false)
            .map_err(|_| bad(format!("--call-sites: {x:?} is not a regime; use per-site, shared or cold")))?;
        if !regimes.contains(&regime) {
            regimes.push(regime);
        }
    }
    Ok(regimes)
}

/// What each call-site regime can measure (its code is generated at compile time).
fn validate_call_sites(s: &Scenario) -> Result<(), ConfigError> {
    use dispatch::loops::{COLD_SITES, PER_SITE_SIZES};
    match s.call_sites {
        CallSites::PerSite if !PER_SITE_SIZES.contains(&s.sites) => Err(bad(format!(
            "--sites {}: per-site loops are generated for {} sites (each size its own compiled function); \
             use one of these, or --call-sites shared for any number",
            s.sites,
            per_site_sizes()
        ))),
        CallSites::PerSite if s.order != Order::Seq => Err(bad(
            "--order random: per-site call sites call their sites in sequence; use --call-sites shared (or cold) for a random order",
        )),
        CallSites::PerSite if !s.calls_per_safepoint.is_multiple_of(s.sites) => Err(bad(format!(
            "--calls-per-safepoint {} is not a multiple of --sites {}: a per-site loop calls every site equally often",
            s.calls_per_safepoint, s.sites
        ))),
        CallSites::Cold if *s != s.in_regime(CallSites::Cold) => Err(bad(format!(
            "the cold regime calls its {COLD_SITES} sites once each per section in a fixed random order; it takes no --sites, --order or --calls-per-safepoint"
        ))),
        _ => Ok(()),
    }
}

/// [`dispatch::loops::PER_SITE_SIZES`] in words: "1, 2, …, 32 or 64".
fn per_site_sizes() -> String {
    let sizes: Vec<String> = dispatch::loops::PER_SITE_SIZES.iter().map(usize::to_string).collect();
    match sizes.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// Set-up and tear-down of one measurement beyond its `--duration` (a patcher, its patches, the
/// threads, the warm-up): 0.015 to 0.03 s on the 2-vCPU dev VM, counted as 0.05 s.
pub const OVERHEAD_PER_MEASUREMENT: Duration = Duration::from_millis(50);
/// Measurements (strategies × scenarios × rounds) a run may plan: its rows are kept in memory.
pub const MAX_MEASUREMENTS: usize = 100_000;
/// A run planned longer than this starts only with `--yes`.
pub const CONFIRM_ABOVE: Duration = Duration::from_secs(3600);
/// No run is planned longer than a week, `--yes` or not.
pub const MAX_PLANNED: Duration = Duration::from_secs(7 * 24 * 3600);

/// Strategies × scenarios × rounds (saturating: the sizes are checked against it).
pub fn measurements(cfg: &RunConfig) -> usize {
    cfg.strategies.len().saturating_mul(cfg.scenarios.len()).saturating_mul(cfg.rounds)
}

/// How long measuring will take: every measurement's `--duration` and `--warmup` plus its set-up.
pub fn planned(cfg: &RunConfig) -> Duration {
    let each = cfg.duration.saturating_add(cfg.warmup).saturating_add(OVERHEAD_PER_MEASUREMENT);
    each.saturating_mul(u32::try_from(measurements(cfg)).unwrap_or(u32::MAX))
}

/// `d` as hours, minutes or seconds, for messages.
pub fn human(d: Duration) -> String {
    match d.as_secs_f64() {
        s if s >= 3600.0 => format!("{:.1} hours", s / 3600.0),
        s if s >= 60.0 => format!("{:.1} minutes", s / 60.0),
        s => format!("{s:.1} s"),
    }
}

/// Refuses a run of more than [`MAX_MEASUREMENTS`] or planned longer than [`MAX_PLANNED`]; returns
/// how long it is planned.
fn check_size(cfg: &RunConfig) -> Result<Duration, ConfigError> {
    let n = measurements(cfg);
    if n > MAX_MEASUREMENTS {
        return Err(bad(format!(
            "this run plans {n} measurements (strategies x scenarios x --rounds), at most {MAX_MEASUREMENTS}; lower --rounds or the scenarios"
        )));
    }
    let planned = planned(cfg);
    if planned > MAX_PLANNED {
        return Err(bad(format!(
            "this run would measure for about {}, more than a week; lower --rounds, --duration or the scenarios",
            human(planned)
        )));
    }
    Ok(planned)
}

/// Refuses a run planned longer than [`CONFIRM_ABOVE`] unless the user said `--yes`, saying how
/// long it would take (and any run past [`check_size`]'s ceilings).
pub fn confirm(cfg: &RunConfig, yes: bool) -> Result<(), ConfigError> {
    let planned = check_size(cfg)?;
    if planned > CONFIRM_ABOVE && !yes {
        return Err(bad(format!(
            "this run would measure for about {} ({} measurements of {} s plus {} s of warm-up and about {} s of set-up each); \
             pass --yes to start it, or lower --rounds, --duration or the scenarios",
            human(planned),
            measurements(cfg),
            cfg.duration.as_secs_f64(),
            cfg.warmup.as_secs_f64(),
            OVERHEAD_PER_MEASUREMENT.as_secs_f64()
        )));
    }
    Ok(())
}

/// Checks a full config against the machine: readers vs CPUs, sizes, call-site regimes. (The
/// output directory is checked by the caller, before anything is measured.)
pub fn validate(cfg: &RunConfig) -> Result<(), ConfigError> {
    ROUNDS.check("rounds", cfg.rounds)?;
    DURATION.check("duration", cfg.duration.as_secs_f64())?;
    WARMUP.check("warmup", cfg.warmup.as_secs_f64())?;
    if let Some(cpu) = cfg.writer_cpu {
        parse_writer_cpu(&cpu.to_string(), &cfg.cpus)?;
    }
    for s in &cfg.scenarios {
        READERS.check("readers", s.readers)?;
        if let Rate::Hz(hz) = s.rate {
            RATE_HZ.check("rate", hz)?;
        }
        SITES.check("sites", s.sites)?;
        CALLS_PER_SAFEPOINT.check("calls-per-safepoint", s.calls_per_safepoint)?;
        DEPTH.check("depth", s.depth)?;
        if s.readers > cfg.cpus.len() && !cfg.oversubscribe {
            return Err(bad(format!(
                "{} readers but only {} CPUs in the affinity mask ({:?}); ask for fewer, or pass --oversubscribe (recorded in the run)",
                s.readers,
                cfg.cpus.len(),
                cfg.cpus
            )));
        }
        validate_call_sites(s)?;
    }
    check_size(cfg).map(|_| ())
}

/// Drops scenarios asked for more than once (`--rate 0,steady`, `--readers 1,2,1`): each would be
/// measured again and its rows merged with the first's. Returns the names of those dropped.
pub fn dedup_scenarios(scenarios: &mut Vec<Scenario>) -> Vec<String> {
    let mut seen: Vec<Scenario> = Vec::new();
    let mut dropped = Vec::new();
    scenarios.retain(|s| {
        if seen.contains(s) {
            dropped.push(s.name());
            false
        } else {
            seen.push(s.clone());
            true
        }
    });
    dropped
}

/// A scenario and a config for the crate's unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    pub(crate) fn scenario(readers: usize, rate: Rate) -> Scenario {
        Scenario { readers, rate, ..Scenario::DEFAULT }
    }

    pub(crate) fn config(strategies: usize, scenarios: usize, rounds: usize, secs: f64) -> RunConfig {
        RunConfig {
            strategies: dispatch::strategy::ALL.iter().cycle().take(strategies).map(|i| i.name.to_owned()).collect(),
            scenarios: vec![scenario(1, Rate::Steady); scenarios],
            duration: Duration::from_secs_f64(secs),
            warmup: Duration::ZERO,
            rounds,
            counters: CountersMode::Off,
            oversubscribe: false,
            seed: 1,
            cpus: vec![0],
            writer_cpu: None,
            out: None,
            panic_after_batches: None,
            full_disk_after_files: None,
            before_commit: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What every numeric option is probed with: 0, 1, tiny, huge, `u64::MAX`, NaN, infinities,
    /// negatives and garbage.
    const PROBES: [&str; 12] =
        ["0", "1", "1e-10", "1e-300", "1e9", "1e20", "18446744073709551615", "nan", "inf", "-inf", "-1", "x"];

    #[test]
    fn every_range_takes_its_ends_and_refuses_the_rest_naming_the_range() {
        fn probe<T: PartialOrd + fmt::Display + Copy + std::str::FromStr>(r: Range<T>, accepted: &[&str]) {
            for v in PROBES {
                match r.parse(v) {
                    Ok(x) => assert!(accepted.contains(&v) && r.contains(x), "{v} accepted"),
                    Err(e) => {
                        assert!(!accepted.contains(&v), "{v} refused: {e}");
                        assert_eq!(e, format!("give {} to {} {}", r.min, r.max, r.unit));
                    }
                }
            }
            assert!(r.parse(&r.min.to_string()).is_ok() && r.parse(&r.max.to_string()).is_ok());
        }
        probe(DURATION, &["1"]);
        probe(WARMUP, &["0", "1", "1e-10", "1e-300"]);
        probe(ROUNDS, &["1"]);
        probe(READERS, &["1"]);
        probe(RATE_HZ, &["1", "1e9"]);
        probe(SITES, &["1"]);
        probe(CALLS_PER_SAFEPOINT, &["1"]);
        probe(DEPTH, &["0", "1"]);
        probe(THRESHOLD, &["0", "1", "1e-10", "1e-300"]);
        probe(SEED, &["0", "1", "18446744073709551615"]);
        let e = ROUNDS.check("rounds", 0).unwrap_err();
        assert_eq!(e.0, "--rounds 0 is out of range: give 1 to 1000 rounds");
        let e = DURATION.check("duration", f64::NAN).unwrap_err();
        assert_eq!(e.0, "--duration NaN is out of range: give 0.001 to 3600 seconds");
    }

    #[test]
    fn readers_and_rates_refuse_absurd_values_naming_the_range() {
        for v in ["0", "4095", "18446744073709551615", "99999999999999999999999", "-1", "1.5", "x", ""] {
            let e = parse_readers(v, 2).unwrap_err().0;
            assert!(e.contains("--readers") && e.contains("1 to 4094 readers"), "{v}: {e}");
        }
        assert_eq!(parse_readers("1,all,4094", 2).unwrap(), [1, 2, 4094]);
        assert_eq!(parse_readers("sweep", 2).unwrap(), [1, 2]);
        assert_eq!(parse_readers("sweep", 1).unwrap(), [1]);
        assert_eq!(parse_readers("sweep", 6).unwrap(), [1, 2, 4, 6]);
        assert_eq!(parse_readers("sweep,3", 8).unwrap(), [1, 2, 4, 8, 3]);
        // The default: four counts at most on any machine, each once.
        assert_eq!(parse_readers("spread", 1).unwrap(), [1]);
        assert_eq!(parse_readers("spread", 2).unwrap(), [1, 2]);
        assert_eq!(parse_readers("spread", 16).unwrap(), [1, 2, 8, 16]);
        assert_eq!(parse_readers("spread", 128).unwrap(), [1, 2, 64, 128]);
        assert_eq!(parse_readers("half,all", 6).unwrap(), [3, 6]);
        for v in ["1e-19", "1e-4", "2e9", "1e300", "inf", "nan", "-5", "fast", ""] {
            let e = parse_rates(v).unwrap_err().0;
            assert!(e.contains("--rate") && e.contains("0.001 to 1000000000 Hz"), "{v}: {e}");
        }
        assert_eq!(
            parse_rates("0,steady,0.0,0.001,1e9,max").unwrap(),
            [Rate::Steady, Rate::Steady, Rate::Steady, Rate::Hz(0.001), Rate::Hz(1e9), Rate::Max]
        );
    }

    use super::test_support::{config, scenario};

    /// A config built without the command line (a library caller) is held to the same ranges.
    #[test]
    fn validate_refuses_every_absurd_size_before_anything_is_allocated() {
        assert_eq!(validate(&config(2, 1, 3, 0.3)), Ok(()));
        let cases: Vec<(RunConfig, &str)> = vec![
            (config(2, 1, 0, 0.3), "--rounds 0"),
            (config(2, 1, 1_000_000_000, 0.3), "--rounds 1000000000"),
            (config(2, 1, 3, 1e-10), "--duration 0 is out of range"),
            (config(2, 1, 3, 1e6), "--duration 1000000 is out of range"),
            // 10 x 10000 x 1000 measurements: past the ceiling whatever the duration.
            (config(10, 10_000, 1000, 0.001), "at most 100000"),
            (config(100, 100, 10, 3600.0), "more than a week"),
        ];
        for (cfg, expected) in cases {
            let e = validate(&cfg).unwrap_err().0;
            assert!(e.contains(expected), "{expected}: {e}");
        }
        let with = |f: fn(&mut Scenario)| {
            let mut cfg = config(1, 1, 1, 0.1);
            cfg.oversubscribe = true;
            f(&mut cfg.scenarios[0]);
            validate(&cfg).unwrap_err().0
        };
        assert!(with(|s| s.readers = usize::MAX).contains("--readers 18446744073709551615 is out of range"));
        assert!(with(|s| s.sites = 1_000_000_000).contains("--sites 1000000000 is out of range"));
        assert!(with(|s| s.sites = 0).contains("--sites 0 is out of range"));
        assert_eq!(
            with(|s| s.sites = 13),
            "--sites 13: per-site loops are generated for 1, 2, 3, 4, 5, 6, 7, 8, 16, 32 or 64 sites \
             (each size its own compiled function); use one of these, or --call-sites shared for any number"
        );
        assert!(with(|s| s.sites = 65).contains("--sites 65: per-site loops are generated for"));
        assert!(with(|s| s.calls_per_safepoint = 1_000_000_000).contains("--calls-per-safepoint"));
        assert!(with(|s| s.depth = usize::MAX).contains("--depth 18446744073709551615 is out of range"));
        assert!(with(|s| s.rate = Rate::Hz(1e-19)).contains("--rate 0.0000000000000000001 is out of range"));
        assert!(with(|s| s.rate = Rate::Hz(f64::INFINITY)).contains("--rate inf is out of range"));
        let mut far = config(1, 1, 1, 0.1);
        far.warmup = Duration::from_secs(61);
        assert!(validate(&far).unwrap_err().0.contains("--warmup 61 is out of range: give 0 to 60 seconds"));
        far.warmup = Duration::ZERO;
        far.writer_cpu = Some(1);
        assert!(validate(&far).unwrap_err().0.contains("--writer-cpu \"1\" is not a CPU of the affinity mask [0]"));
    }

    #[test]
    fn the_writer_cpu_is_any_or_one_of_the_mask() {
        assert_eq!(parse_writer_cpu("any", &[0, 1]), Ok(None));
        assert_eq!(parse_writer_cpu("1", &[0, 1]), Ok(Some(1)));
        for bad in ["2", "-1", "x", ""] {
            let e = parse_writer_cpu(bad, &[0, 1]).unwrap_err().0;
            assert!(e.contains("not a CPU of the affinity mask [0, 1]") && e.contains("`any`"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_run_of_more_than_an_hour_needs_yes_and_says_how_long() {
        // Every strategy x 8 scenarios x 3 rounds x 0.2 s: the default suite on 2 CPUs.
        let strategies = dispatch::strategy::ALL.len();
        let default = config(strategies, 8, 3, DURATION_DEFAULT);
        assert_eq!(planned(&default), Duration::from_secs_f64((strategies * 8 * 3) as f64 * 0.25));
        assert_eq!(confirm(&default, false), Ok(()));
        let long = config(9, 8, 100, 10.0);
        let e = confirm(&long, false).unwrap_err().0;
        assert!(e.contains("about 20.1 hours") && e.contains("7200 measurements") && e.contains("--yes"), "{e}");
        assert_eq!(confirm(&long, true), Ok(()));
        // Past the week, --yes does not help.
        assert!(confirm(&config(100, 100, 10, 3600.0), true).unwrap_err().0.contains("more than a week"));
    }

    /// The strategies asked for, split by what this machine can run: the skipped ones keep their
    /// reasons, the order given is kept, and nothing left to measure is refused naming each one.
    #[test]
    fn unavailable_strategies_are_split_off_with_their_reasons() {
        use dispatch::strategy::Unavailable;
        let available = Availability::from_entries(vec![
            ("fnptr", Ok(())),
            ("klp", Err(Unavailable("no klp here; try elsewhere".into()))),
            ("tls", Ok(())),
            ("epoch", Err(Unavailable("no epoch either".into()))),
        ]);
        assert_eq!(available.reason("klp"), Some("no klp here; try elsewhere"));
        assert_eq!(available.reason("fnptr"), None);
        assert_eq!(
            available.unavailable().collect::<Vec<_>>(),
            [("klp", "no klp here; try elsewhere"), ("epoch", "no epoch either")]
        );
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (measured, skipped) = split_strategies(&available, names(&["tls", "klp", "fnptr"])).unwrap();
        assert_eq!(measured, ["tls", "fnptr"]);
        assert_eq!(skipped, [Skipped { strategy: "klp".into(), reason: "no klp here; try elsewhere".into() }]);
        let e = split_strategies(&available, names(&["epoch", "klp"])).unwrap_err().0;
        assert!(
            e.contains("nothing to measure")
                && e.contains("epoch: no epoch either; klp: no klp here; try elsewhere")
                && e.contains("harness list"),
            "{e}"
        );
    }

    #[test]
    fn duplicate_scenarios_are_dropped_and_named() {
        let mut scenarios = vec![
            scenario(1, Rate::Steady),
            scenario(2, Rate::Steady),
            scenario(1, Rate::Steady),
            scenario(1, Rate::Hz(1000.0)),
            scenario(1, Rate::Hz(1e3)),
        ];
        let expected = [scenario(1, Rate::Steady), scenario(2, Rate::Steady), scenario(1, Rate::Hz(1000.0))];
        let dropped = dedup_scenarios(&mut scenarios);
        assert_eq!(dropped, [expected[0].name(), expected[2].name()]);
        assert_eq!(scenarios, expected);
    }

    /// The one test that pins the name's format: every other test derives names from scenarios.
    #[test]
    fn a_scenario_is_named_by_every_dimension() {
        assert_eq!(Scenario::DEFAULT.name(), "per-site_r1_steady_s8seq_d1_cycle_c4096");
        let other = Scenario {
            call_sites: CallSites::Shared,
            readers: 2,
            rate: Rate::Hz(1000.0),
            sites: 16,
            order: Order::Random,
            depth: 0,
            ops: Ops::Replace,
            calls_per_safepoint: 256,
        };
        assert_eq!(other.name(), "shared_r2_1000hz_s16random_d0_replace_c256");
        assert_eq!(other.schema_4_name(), "shared_r2_1000hz_s16rand_d0_replace_c256");
        assert_eq!(Scenario::DEFAULT.in_regime(CallSites::Cold).name(), "cold_r1_steady_s2048random_d1_cycle_c2048");
        assert_eq!(Scenario::DEFAULT.schema_4_name(), Scenario::DEFAULT.name());
    }

    /// An order has one name: the one its flag takes, run.json stores and scenario names show.
    #[test]
    fn an_order_has_the_same_name_everywhere() {
        use clap::ValueEnum;
        for order in [Order::Seq, Order::Random] {
            assert_eq!(order.to_possible_value().unwrap().get_name(), order.name());
            assert_eq!(serde_json::to_value(order).unwrap(), order.name());
        }
    }
}
