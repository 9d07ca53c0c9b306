//! The records of a run, as `run.json` holds them (results/SCHEMA.md describes every field): the
//! bottom of what the harness writes, and all that `output`, `report`, `plot` and `compare` read.

use dispatch::strategy::Consistency;
use serde::{Deserialize, Serialize};

use crate::config::{CallSites, RunConfig};
use crate::counters::{CounterKind, CounterValues};
use crate::env::Env;

/// Bumped whenever a field of `run.json` changes meaning or disappears (results/SCHEMA.md).
pub const SCHEMA_VERSION: u32 = 2;

/// Everything `run.json` holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunFile {
    pub schema_version: u32,
    /// UTC, `YYYY-MM-DDTHH:MM:SSZ`.
    pub started: String,
    pub config: RunConfig,
    pub env: Env,
    pub rows: Vec<Row>,
    /// The run's check of its own method; `None` when the run had no per-site steady scenario with
    /// both `direct` and `fnptr`.
    pub method_check: Option<MethodCheck>,
}

/// Whether this machine predicts the per-site calls: in the first per-site steady scenario (one
/// reader in the default suite), an indirect call through a pointer (`fnptr`) should cost what a direct call costs.
/// Where it costs much more, indirect calls are not predicted here, and every ratio to `fnptr`
/// measures mispredictions rather than redirection.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MethodCheck {
    /// The scenario the check was made on.
    pub scenario: String,
    /// Median over rounds of fnptr's ns/call divided by direct's in the same round.
    pub fnptr_over_direct: f64,
    /// Above it (1.3) the run warns.
    pub limit: f64,
    pub predicted: bool,
    /// fnptr's median ns/call in that scenario, and in the shared steady scenario with the same
    /// readers, if the run had one: what a shared call instruction costs here.
    pub fnptr_ns_per_site: f64,
    pub fnptr_ns_shared: Option<f64>,
}

/// Percentiles of a distribution, in the unit named by the field that holds them.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// One strategy × scenario × run: the unit of `run.json` (see results/SCHEMA.md).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Row {
    pub strategy: String,
    pub consistency: String,
    /// The scenario's call-site regime (also the first part of its name).
    pub call_sites: CallSites,
    pub scenario: String,
    pub run: usize,
    pub readers: usize,
    pub pinned: bool,
    pub oversubscribed: bool,
    /// Calls timed, over all readers.
    pub calls: u64,
    /// Mean over every timed batch of every reader, clock overhead subtracted.
    pub ns_per_call: f64,
    /// `ns_per_call` / fnptr's in the same scenario and round.
    pub ratio_to_fnptr: Option<f64>,
    /// Sum over readers of calls / measured time.
    pub calls_per_sec: f64,
    /// Per-batch ns/call distribution (hdrhistogram, merged over readers).
    pub batch_ns: Option<Percentiles>,
    /// Batches whose value fell outside the histogram's range (clamped).
    pub clamped: u64,
    pub transitions: u64,
    pub rate_target_hz: Option<f64>,
    pub rate_achieved_hz: Option<f64>,
    /// False when the writer fell more than 5% behind its target rate (the rate is not lowered).
    pub rate_kept: Option<bool>,
    /// End minus intended start of each transition, µs.
    pub transition_us: Option<Percentiles>,
    /// Mean wait per grace period of each transition, µs.
    pub grace_period_us: Option<Percentiles>,
    pub critical_sections: u64,
    pub violations: u64,
    pub use_after_reclaim: u64,
    pub idle_in_transition: u64,
    pub cache_misses: u64,
    pub counter_kind: CounterKind,
    /// Counter totals over readers' measured spans; `None` when no counters were opened.
    pub counters: Option<CounterValues>,
    /// Clock overhead subtracted from every batch, ns.
    pub clock_overhead_ns: f64,
}

impl Row {
    /// Violations that fail the run: any for a strategy that promises per-task consistency.
    pub fn failed(&self) -> bool {
        self.consistency == Consistency::PerTask.name()
            && (self.violations > 0 || self.use_after_reclaim > 0 || self.idle_in_transition > 0)
    }
}
