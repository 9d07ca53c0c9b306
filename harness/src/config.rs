//! What a run measures: the scenarios (one point of every dimension) and the run-wide settings,
//! parsed and checked before anything is measured.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Transition rate of the writer.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
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
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// 0, 1, 2, …: every load and branch predicted.
    Seq,
    /// A pregenerated random order: with many sites, cache misses and mispredicted branches.
    Random,
}

/// Where the measured loop's call instructions are: the call-site regime (see
/// `dispatch::sections`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum CallSites {
    /// Each site called from its own call instruction, the site a constant there: every indirect
    /// call predicted, so what is measured is the redirection itself. At most
    /// `dispatch::sections::MAX_PER_SITE` sites, called in sequence.
    PerSite,
    /// One call instruction cycling through the sites, as in an interpreter or at a vtable call
    /// site: where the CPU's indirect-branch predictor shows.
    Shared,
    /// `dispatch::sections::COLD_SITES` distinct call instructions, one per site, in a fixed
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
#[serde(rename_all = "snake_case")]
pub enum CountersMode {
    /// Use them where available; otherwise say why and record software counters.
    Auto,
    /// Never open counters (the same method everywhere).
    Off,
    /// Fail if hardware counters cannot be opened.
    Require,
}

/// One point of every scenario dimension except the strategy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    /// A compact name, e.g. `per-site_r2_1000hz_s8seq_d1_cycle_c4096`.
    pub fn name(&self) -> String {
        let order = match self.order {
            Order::Seq => "seq",
            Order::Random => "rand",
        };
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
}

/// Everything a `run` needs, after validation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunConfig {
    pub strategies: Vec<String>,
    pub scenarios: Vec<Scenario>,
    #[serde(with = "secs")]
    pub duration: Duration,
    pub runs: usize,
    pub counters: CountersMode,
    pub oversubscribe: bool,
    pub seed: u64,
    /// CPUs readers are pinned to, from the affinity mask.
    pub cpus: Vec<usize>,
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

/// `1,2` or `all` (every CPU of the affinity mask).
pub fn parse_readers(s: &str, cpus: usize) -> Result<Vec<usize>, ConfigError> {
    s.split(',')
        .map(|x| match x.trim() {
            "all" => Ok(cpus),
            x => match x.parse::<usize>() {
                Ok(0) | Err(_) => {
                    Err(bad(format!("--readers: {x:?} is not a positive count; use e.g. `1,2` or `all`")))
                }
                Ok(n) => Ok(n),
            },
        })
        .collect()
}

/// `0,1000,max`: 0 = steady, a positive rate in Hz, or `max` (back to back).
pub fn parse_rates(s: &str) -> Result<Vec<Rate>, ConfigError> {
    s.split(',')
        .map(|x| match x.trim() {
            "max" => Ok(Rate::Max),
            "0" | "steady" => Ok(Rate::Steady),
            v => match v.parse::<f64>() {
                Ok(hz) if hz > 0.0 && hz.is_finite() => Ok(Rate::Hz(hz)),
                _ => Err(bad(format!("--rate: {v:?} is not a rate; use 0 (steady), a positive Hz, or `max`"))),
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

pub fn positive(name: &str, v: f64) -> Result<f64, ConfigError> {
    if v > 0.0 && v.is_finite() { Ok(v) } else { Err(bad(format!("--{name} must be positive, got {v}"))) }
}

/// What each call-site regime can measure (its code is generated at compile time).
fn validate_call_sites(s: &Scenario) -> Result<(), ConfigError> {
    use dispatch::sections::{COLD_SITES, MAX_PER_SITE};
    match s.call_sites {
        CallSites::PerSite if s.sites > MAX_PER_SITE => Err(bad(format!(
            "--sites {}: per-site call sites are generated for 1 to {MAX_PER_SITE} sites; use fewer, or --call-sites shared",
            s.sites
        ))),
        CallSites::PerSite if s.order != Order::Seq => Err(bad(
            "--order random: per-site call sites call their sites in sequence; use --call-sites shared (or cold) for a random order",
        )),
        CallSites::PerSite if !s.calls_per_safepoint.is_multiple_of(s.sites) => Err(bad(format!(
            "--calls-per-safepoint {} is not a multiple of --sites {}: a per-site section calls every site equally often",
            s.calls_per_safepoint, s.sites
        ))),
        CallSites::Cold if s.sites != COLD_SITES || s.calls_per_safepoint != COLD_SITES || s.order != Order::Random => {
            Err(bad(format!(
                "the cold regime calls its {COLD_SITES} sites once each per section in a fixed random order; it takes no --sites, --order or --calls-per-safepoint"
            )))
        }
        _ => Ok(()),
    }
}

/// Checks a full config against the machine: readers vs CPUs, sizes, call-site regimes. (The
/// output directory is checked by the caller, before anything is measured.)
pub fn validate(cfg: &RunConfig) -> Result<(), ConfigError> {
    if cfg.runs == 0 {
        return Err(bad("--runs must be at least 1"));
    }
    if cfg.duration.is_zero() {
        return Err(bad("--duration must be positive"));
    }
    for s in &cfg.scenarios {
        if s.readers > cfg.cpus.len() && !cfg.oversubscribe {
            return Err(bad(format!(
                "{} readers but only {} CPUs in the affinity mask ({:?}); ask for fewer, or pass --oversubscribe (recorded in the run)",
                s.readers,
                cfg.cpus.len(),
                cfg.cpus
            )));
        }
        if s.sites == 0 || s.calls_per_safepoint == 0 {
            return Err(bad("--sites and --calls-per-safepoint must be at least 1"));
        }
        validate_call_sites(s)?;
        if s.readers + 2 > 4096 {
            return Err(bad("at most 4094 readers"));
        }
    }
    Ok(())
}
