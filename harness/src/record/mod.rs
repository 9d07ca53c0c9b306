//! The records of a run, as `run.json` holds them (results/SCHEMA.md describes every field): the
//! bottom of what the harness writes, and all that `output`, `report`, `plot` and `compare` read.

use dispatch::strategy::Consistency;
use serde::{Deserialize, Serialize};

use crate::config::{RunConfig, Scenario, Skipped};
use crate::counters::{CounterKind, CounterValues};
use crate::env::Env;
use crate::sched::{HostLoad, ReaderSched};

mod load;
pub use load::{load_run, read_run_json, readable};

/// Bumped whenever a field of `run.json` changes meaning or disappears (results/SCHEMA.md), or
/// when a harness that ignores a new field would misread the run: 4 added [`RunFile::skipped`],
/// without which a schema-3 reader would take a skipped strategy for rows gone missing; 5 added
/// `env.cpu`, without which a schema-4 `compare` would gate a Zen 3 run against a Zen 5 one as
/// the same host, and made each row carry its [`Scenario`] (`scenario` an object, `call_sites`
/// and `readers` inside it) and name its round `round` (was `run`); 6 added
/// [`RunFile::fidelity_check`] (which a schema-5 `harness report` would drop from the report.md
/// it writes again, warning and all) and each row's [`Row::phases_us`], [`Row::start_late_us`]
/// and [`Row::histograms`] (a schema-5 reader would drop the histograms when it rewrites a run's
/// files with `harness report`, and take `transition_us` for the only record of a transition's
/// time).
pub const SCHEMA_VERSION: u32 = 6;

/// The oldest `schema_version` this harness reads: a schema-3 run is a schema-4 run that skipped
/// nothing (4 only added `skipped`), and a schema-4 run a schema-5 run whose CPU was not recorded
/// (`env.cpu` absent: compare says what it could not check) and whose rows name their scenario
/// (the scenario of `config.scenarios` of that name, as its harness named it) and whose
/// strategies' facts about the machine were two fields of env (see `load::to_schema_5`), so both
/// are read as this schema's; a schema-5 run is a schema-6 run without phases or histograms
/// (absent: empty), which its harness did not record.
pub const OLDEST_READABLE: u32 = 3;

/// Every leaf of a JSON value with its dotted path (`batch_ns.p99`, `sched.0.migrations`), in
/// order: the one walk of a record that `rows.csv` and the reader's check for negative numbers
/// share. A list of text (or an empty list) is one leaf, which `rows.csv` joins.
pub fn leaves(v: &serde_json::Value) -> Vec<(String, &serde_json::Value)> {
    fn walk<'v>(path: String, v: &'v serde_json::Value, out: &mut Vec<(String, &'v serde_json::Value)>) {
        let join = |k: &str| if path.is_empty() { k.to_owned() } else { format!("{path}.{k}") };
        match v {
            serde_json::Value::Object(o) => o.iter().for_each(|(k, v)| walk(join(k), v, out)),
            serde_json::Value::Array(a) if !a.iter().all(|x| x.is_string()) => {
                a.iter().enumerate().for_each(|(i, v)| walk(join(&i.to_string()), v, out))
            }
            leaf => out.push((path, leaf)),
        }
    }
    let mut out = Vec::new();
    walk(String::new(), v, &mut out);
    out
}

/// The JSON Schema of `run.json`, as committed in results/run.schema.json and written into every
/// run directory. The test below generates it from these types (schemars, a dev-dependency: the
/// release build does not compile a schema generator to write a constant) and fails when the two
/// differ.
pub const JSON_SCHEMA: &str = include_str!("../../../results/run.schema.json");

/// The JSON Schema of `run.json`, generated from these types.
#[cfg(test)]
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(RunFile);
    serde_json::to_string_pretty(&schema).expect("a schema serializes") + "\n"
}

/// Everything `run.json` holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
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
    /// The host's load average and steal time across the run.
    pub host_load: HostLoad,
    /// Strategies asked for that this machine cannot run, with why: not measured, so they have
    /// no rows (and are not in `config.strategies`). Absent from schema 3, read as empty.
    #[serde(default)]
    pub skipped: Vec<Skipped>,
    /// Whether `klp` costs here what the kernel's own handler costs (`harness::fidelity`); `None`
    /// when the run had no per-site steady scenario of 8 sites with both `klp` and `fnptr`.
    /// Absent before schema 6, read as `None`.
    #[serde(default)]
    pub fidelity_check: Option<FidelityCheck>,
}

/// One round's timing of the C loops (`dispatch::kernel_c`), made right after the round's
/// strategies in the fidelity check's scenario, on its first reader's CPU: ns per call.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct CRound {
    pub round: usize,
    /// A C direct call per site.
    pub direct_ns: f64,
    /// A C relaxed function pointer per site.
    pub fnptr_ns: f64,
    /// The kernel's `klp_ftrace_handler` in C per site.
    pub handler_ns: f64,
}

/// The run's fidelity check (`harness::fidelity`): `klp ÷ fnptr` against the kernel's handler in
/// C over a C function pointer, in the same rounds of one scenario.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct FidelityCheck {
    /// The scenario the check was made on.
    pub scenario: String,
    /// Median over rounds of klp's ns/call divided by fnptr's in the same round.
    pub klp_over_fnptr: f64,
    /// Median over rounds of the C handler's ns/call divided by the C pointer's in the same round.
    pub c_handler_over_c_fnptr: f64,
    /// Median over rounds of the C pointer's ns/call divided by the C direct call's: the C side's
    /// method check.
    pub c_fnptr_over_c_direct: f64,
    /// Median over rounds of `klp ÷ fnptr` divided by `C handler ÷ C fnptr` of the same round.
    pub fidelity: f64,
    /// Above it (1.1) the run warns.
    pub limit: f64,
    /// `fidelity` ≤ `limit`: klp costs what the kernel's handler costs over a plain pointer here.
    pub within: bool,
    /// Every round's C timings.
    pub rounds: Vec<CRound>,
}

/// Whether this machine predicts the per-site calls: in the first per-site steady scenario (one
/// reader in the default suite), an indirect call through a pointer (`fnptr`) should cost what a direct call costs.
/// Where it costs much more, indirect calls are not predicted here, and every ratio to `fnptr`
/// measures mispredictions rather than redirection.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
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
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// One strategy × scenario × round: the unit of `run.json` (see results/SCHEMA.md).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct Row {
    pub strategy: String,
    pub consistency: String,
    /// The scenario measured, every dimension of it: consumers select rows by its fields
    /// (`scenario.name()` is for people and file names).
    pub scenario: Scenario,
    /// The round (0-based): within a round every strategy is measured once, in a shuffled order.
    pub round: usize,
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
    /// End minus intended start of each transition, µs: what a caller of an open-loop writer
    /// waits, scheduling delays of the writer included.
    pub transition_us: Option<Percentiles>,
    /// End minus actual start of each transition (service time), µs.
    pub transition_service_us: Option<Percentiles>,
    /// The CPU the writer was pinned to; `None`: unpinned (`--writer-cpu any`) or no writer.
    pub writer_cpu: Option<usize>,
    /// Whether the writer had to share a CPU with a reader (pinned to a reader's CPU, or
    /// unpinned with a reader on every CPU of the mask); `None` without a writer.
    pub writer_shares_cpu: Option<bool>,
    /// Mean wait per grace period of each transition, µs.
    pub grace_period_us: Option<Percentiles>,
    pub critical_sections: u64,
    pub violations: u64,
    pub use_after_reclaim: u64,
    pub idle_in_transition: u64,
    /// Refills of `percpu`'s or `tls`'s cache that found it stale (its generation behind the
    /// writer's), summed over readers: not hardware cache misses (those are `counters`). Named
    /// `cache_misses` before schema 5.
    #[serde(alias = "cache_misses")]
    pub stale_cache_refills: u64,
    pub counter_kind: CounterKind,
    /// Counter totals over readers' measured spans; `None` when no counters were opened.
    pub counters: Option<CounterValues>,
    /// Clock overhead subtracted from every batch, ns.
    pub clock_overhead_ns: f64,
    /// What the scheduler did to each reader over its measured span.
    pub sched: Vec<ReaderSched>,
    /// Share of the host's CPU time the hypervisor stole during this measurement.
    pub host_steal_share: Option<f64>,
    /// Whether something else took the readers' time: see [`Interference::judge`].
    pub interference: Interference,
    /// The transitions' phases (`dispatch::Phases`, in its order), µs; empty without a writer
    /// and in runs of schema 5 and older.
    #[serde(default)]
    pub phases_us: Vec<PhasePercentiles>,
    /// Actual minus intended start of each transition, µs: the writer's own lateness, the part
    /// of `transition_us` before the strategy's first phase; absent in runs of schema 5 and older.
    #[serde(default)]
    pub start_late_us: Option<Percentiles>,
    /// The whole distributions behind `batch_ns` and `transition_us`; absent in runs of schema 5
    /// and older.
    #[serde(default)]
    pub histograms: Histograms,
}

/// One phase of a row's transitions: its name (`dispatch::Phases::NAMES`) and percentiles, µs.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct PhasePercentiles {
    pub phase: String,
    pub us: Percentiles,
}

/// A row's distributions, each an HdrHistogram V2 serialization in base64 (see `hist`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct Histograms {
    /// Per-batch time per call, picoseconds, merged over readers (`batch_ns` is its percentiles).
    pub batch_ps: Option<String>,
    /// Transition latency (end minus intended start), ns (`transition_us` is its percentiles).
    pub transition_ns: Option<String>,
}

impl Row {
    /// Violations that fail the run: any for a strategy that promises per-task consistency.
    pub fn failed(&self) -> bool {
        self.consistency == Consistency::PerTask.name()
            && (self.violations > 0 || self.use_after_reclaim > 0 || self.idle_in_transition > 0)
    }
}

/// A reader off its CPU for more than this share of its measured span was preempted or waited
/// for a CPU: 5%, where an undisturbed pinned reader loses well under 1% (timer ticks and
/// interrupts), and a CPU shared half and half with a hog loses about 50%.
pub const LOST_SHARE_LIMIT: f64 = 0.05;

/// A mean ns/call above this multiple of the median batch's says that a few batches took far
/// longer than the rest (a preemption inside a batch is counted in full): 1.5, where undisturbed
/// rows stay within a few percent of their median, and the loaded VM of issue 14 showed 2.3.
pub const MEAN_OVER_MEDIAN_LIMIT: f64 = 1.5;

/// Whether a row's figures are the strategy's or its neighbours': the evidence, and the reasons
/// it was flagged for (none: not flagged).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct Interference {
    /// The largest share of its measured span any reader spent off its CPU; `None` without
    /// `/proc/thread-self/schedstat`.
    pub lost_share: Option<f64>,
    /// Readers that changed CPU during their measured span.
    pub migrated_readers: usize,
    /// Mean ns/call over the median batch's ns/call; `None` without batches.
    pub mean_over_median: Option<f64>,
    pub reasons: Vec<String>,
}

impl Interference {
    /// The verdict on one measurement, against [`LOST_SHARE_LIMIT`] and
    /// [`MEAN_OVER_MEDIAN_LIMIT`]; any migration of a reader flags it too (readers are pinned:
    /// one that moved was not where it was measured to be).
    pub fn judge(sched: &[ReaderSched], ns_per_call: f64, batch_ns: Option<&Percentiles>) -> Self {
        let lost_share = sched.iter().filter_map(|r| r.on_cpu_share()).map(|on| 1.0 - on).reduce(f64::max);
        let migrated_readers = sched.iter().filter(|r| r.migrated()).count();
        let mean_over_median = batch_ns.filter(|p| p.p50 > 0.0).map(|p| ns_per_call / p.p50);
        let mut reasons = Vec::new();
        if let Some(lost) = lost_share.filter(|l| *l > LOST_SHARE_LIMIT) {
            reasons.push(format!(
                "a reader was off its CPU {:.0}% of its time (limit {:.0}%)",
                lost * 100.0,
                LOST_SHARE_LIMIT * 100.0
            ));
        }
        if migrated_readers > 0 {
            reasons.push(format!("{migrated_readers} pinned reader(s) changed CPU"));
        }
        if let Some(ratio) = mean_over_median.filter(|r| *r > MEAN_OVER_MEDIAN_LIMIT) {
            reasons.push(format!("mean {ratio:.2}x the median batch (limit {MEAN_OVER_MEDIAN_LIMIT}x)"));
        }
        Self { lost_share, migrated_readers, mean_over_median, reasons }
    }

    pub fn flagged(&self) -> bool {
        !self.reasons.is_empty()
    }
}

/// Rows and runs for the crate's unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use crate::config::CallSites;

    /// A row of the default scenario in the regime `call_sites` (1 reader, steady).
    pub(crate) fn row(strategy: &str, call_sites: CallSites, round: usize, ns_per_call: f64) -> Row {
        Row {
            strategy: strategy.into(),
            consistency: "n/a".into(),
            scenario: Scenario::DEFAULT.in_regime(call_sites),
            round,
            pinned: true,
            oversubscribed: false,
            calls: 1000,
            ns_per_call,
            ratio_to_fnptr: None,
            calls_per_sec: 1e9 / ns_per_call,
            batch_ns: None,
            clamped: 0,
            transitions: 0,
            rate_target_hz: None,
            rate_achieved_hz: None,
            rate_kept: None,
            transition_us: None,
            transition_service_us: None,
            writer_cpu: None,
            writer_shares_cpu: None,
            grace_period_us: None,
            critical_sections: 1,
            violations: 0,
            use_after_reclaim: 0,
            idle_in_transition: 0,
            stale_cache_refills: 0,
            counter_kind: CounterKind::None,
            counters: None,
            clock_overhead_ns: 0.0,
            sched: Vec::new(),
            host_steal_share: None,
            interference: Default::default(),
            phases_us: Vec::new(),
            start_late_us: None,
            histograms: Histograms::default(),
        }
    }

    /// A run of `rows`, of this machine, with the config of `config::test_support`.
    pub(crate) fn run(rows: Vec<Row>) -> RunFile {
        RunFile {
            schema_version: SCHEMA_VERSION,
            started: "2025-01-01T00:00:00Z".into(),
            config: crate::config::test_support::config(2, 1, 3, 0.3),
            env: crate::env::test_support::env(),
            rows,
            method_check: None,
            host_load: HostLoad::default(),
            skipped: Vec::new(),
            fidelity_check: None,
        }
    }
    /// Rows of three rounds: direct at 1 ns, fnptr at `fnptr` ns per site and 8 ns shared.
    pub(crate) fn method_rows(fnptr: [f64; 3]) -> Vec<Row> {
        let mut rows = Vec::new();
        for (run, ns) in fnptr.into_iter().enumerate() {
            rows.push(row("direct", CallSites::PerSite, run, 1.0));
            rows.push(row("fnptr", CallSites::PerSite, run, ns));
            rows.push(row("fnptr", CallSites::Shared, run, 8.0));
        }
        rows
    }

    /// A run under transitions: `fnptr` (immediate) with violations, `klp` (per-task) with one,
    /// and a scenario whose name the config describes.
    pub(crate) fn transition_run() -> RunFile {
        let mut rows = Vec::new();
        for run in 0..3 {
            for (strategy, consistency, violations) in [("fnptr", "immediate", 7404), ("klp", "per-task", 1)] {
                let mut r = row(strategy, CallSites::PerSite, run, 1.5);
                r.consistency = consistency.into();
                r.violations = violations;
                r.transitions = 1000;
                r.rate_kept = Some(true);
                r.ratio_to_fnptr = Some(if strategy == "fnptr" { 1.0 } else { 1.5 });
                r.batch_ns = Some(Percentiles { p50: 1.4, p99: 2.0 + run as f64, p999: 9.0, max: 90.0 });
                r.transition_us = Some(Percentiles { p50: 10.0, p99: 100.0 + run as f64, p999: 200.0, max: 300.0 });
                r.clock_overhead_ns = 18.0;
                rows.push(r);
            }
        }
        run(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// results/run.schema.json is what the types generate: a field changed without the schema
    /// fails here. `UPDATE_SCHEMA=1` rewrites the file (then review and commit it).
    #[test]
    fn the_committed_json_schema_matches_the_record_types() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../results/run.schema.json");
        let generated = json_schema();
        if std::env::var_os("UPDATE_SCHEMA").is_some() {
            crate::output::write_file(&path, generated.as_bytes(), true).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "results/run.schema.json does not match the types of record.rs (or is missing); regenerate it with \
             `UPDATE_SCHEMA=1 cargo test -p harness the_committed_json_schema`, review the diff, and if a field \
             changed meaning or went away bump SCHEMA_VERSION and results/SCHEMA.md"
        );
        // What a run writes is that file as this build read it.
        assert!(JSON_SCHEMA == generated, "JSON_SCHEMA is not the file this test checked; build again");
        let schema: serde_json::Value = serde_json::from_str(&generated).unwrap();
        assert_eq!(schema["title"], "RunFile");
        for field in ["schema_version", "config", "env", "rows", "host_load"] {
            assert!(schema["required"].as_array().unwrap().contains(&field.into()), "{field} not required");
        }
    }

    fn reader(on_cpu_share: f64, migrations: u64) -> ReaderSched {
        ReaderSched {
            cpu_start: Some(0),
            cpu_end: Some(0),
            wall_ns: 1_000_000,
            on_cpu_ns: Some((on_cpu_share * 1e6) as u64),
            runqueue_wait_ns: Some(0),
            voluntary_switches: Some(0),
            involuntary_switches: Some(0),
            migrations: Some(migrations),
        }
    }

    fn batches(p50: f64) -> Percentiles {
        Percentiles { p50, p99: p50 * 2.0, p999: p50 * 3.0, max: p50 * 4.0 }
    }

    #[test]
    fn an_undisturbed_row_is_not_flagged() {
        let v = Interference::judge(&[reader(0.99, 0), reader(1.0, 0)], 1.02, Some(&batches(1.0)));
        assert!(!v.flagged(), "{v:?}");
        assert!((v.lost_share.unwrap() - 0.01).abs() < 1e-9);
        assert_eq!(v.migrated_readers, 0);
    }

    #[test]
    fn each_limit_flags_on_its_own_just_past_it() {
        let past = 1.0 - LOST_SHARE_LIMIT - 0.001;
        let lost = Interference::judge(&[reader(1.0, 0), reader(past, 0)], 1.0, Some(&batches(1.0)));
        assert_eq!(lost.reasons.len(), 1, "{lost:?}");
        assert!(lost.reasons[0].contains("off its CPU 5% of its time (limit 5%)"), "{lost:?}");
        let within = Interference::judge(&[reader(1.0 - LOST_SHARE_LIMIT + 0.001, 0)], 1.0, Some(&batches(1.0)));
        assert!(!within.flagged(), "{within:?}");

        let moved = Interference::judge(&[reader(1.0, 1)], 1.0, Some(&batches(1.0)));
        assert_eq!(moved.reasons, ["1 pinned reader(s) changed CPU"]);

        let skewed = Interference::judge(&[reader(1.0, 0)], MEAN_OVER_MEDIAN_LIMIT + 0.01, Some(&batches(1.0)));
        assert_eq!(skewed.reasons, ["mean 1.51x the median batch (limit 1.5x)"]);
        let within = Interference::judge(&[reader(1.0, 0)], MEAN_OVER_MEDIAN_LIMIT, Some(&batches(1.0)));
        assert!(!within.flagged());
    }

    /// The loaded VM of issue 14: 60% of the time lost, mean 18.0 against a median of 7.8.
    #[test]
    fn the_loaded_vm_of_the_issue_is_flagged_for_both() {
        let v = Interference::judge(&[reader(0.4, 0)], 18.0, Some(&batches(7.8)));
        assert_eq!(v.reasons.len(), 2, "{v:?}");
        assert!(v.reasons[0].contains("60%") && v.reasons[1].contains("2.31x"), "{v:?}");
    }

    #[test]
    fn missing_accounting_is_no_evidence() {
        let unknown = ReaderSched { on_cpu_ns: None, migrations: None, ..reader(0.0, 0) };
        let v = Interference::judge(&[unknown], 1.0, None);
        assert_eq!((v.lost_share, v.mean_over_median, v.flagged()), (None, None, false));
    }
}
