//! The summary layer: a run's rows aggregated per scenario and strategy (medians over rounds,
//! never a single round's figure), and the verdicts computed from them: the method check and the
//! failures that fail the run. Every renderer (terminal, report.md, exports, the cross-host
//! report, plots) reads these, and none computes a verdict of its own.

use std::collections::BTreeMap;

use dispatch::strategy::BASELINE;
use hdrhistogram::Histogram;

use crate::config::{CallSites, Scenario};
use crate::record::{LOST_SHARE_LIMIT, MEAN_OVER_MEDIAN_LIMIT, MethodCheck, Percentiles, Row};

/// Median, minimum and maximum of a sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Self> {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        Some(Self { median, min: v[0], max: v[n - 1] })
    }
}

/// One strategy in one scenario, summarised over its rounds.
#[derive(Clone, Debug)]
pub struct Summary {
    pub strategy: String,
    /// The strategy's consistency model, as the registry names it (`per-task`, `immediate`, `n/a`).
    pub consistency: String,
    pub scenario: Scenario,
    pub ns_per_call: Spread,
    /// ns/call over the baseline's ([`BASELINE`]) in the same round, over rounds.
    pub ratio_to_fnptr: Option<Spread>,
    pub calls_per_sec: Spread,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    /// The per-batch p99 over rounds (its median is `p99`).
    pub p99_rounds: Option<Spread>,
    pub transitions: u64,
    /// Transition latency (end minus intended start), µs: each percentile's median over rounds.
    pub transition_us: Option<Percentiles>,
    /// Transition latency p99 over rounds, µs.
    pub transition_p99: Option<Spread>,
    /// Service time (start to completion) p99, µs.
    pub service_p99_us: Option<f64>,
    /// Whether the writer shared a CPU with a reader (`None`: no writer).
    pub writer_shares_cpu: Option<bool>,
    pub rate_kept: Option<bool>,
    pub violations: u64,
    pub use_after_reclaim: u64,
    /// Reads that met a transition while their task was Idle (must be 0).
    pub idle_in_transition: u64,
    pub failed: bool,
    /// Per call: counter name → median over runs of value / calls.
    pub counters_per_call: BTreeMap<String, f64>,
    /// Medians over runs of: the least share of its time any reader was on its CPU; context
    /// switches, all and involuntary, summed over readers; migrations summed over readers.
    pub on_cpu_share: Option<f64>,
    pub switches: Option<f64>,
    pub involuntary_switches: Option<f64>,
    pub migrations: Option<f64>,
    /// Clock overhead subtracted from every batch, ns (median over rounds).
    pub clock_overhead_ns: f64,
    /// Whether every round's readers were pinned, one to a CPU.
    pub pinned: bool,
    pub rounds: usize,
    /// Rounds flagged for interference, and the kinds of reason, worst figure first seen.
    pub flagged_rounds: usize,
    pub interference: Vec<String>,
    /// Each phase of the transitions (`dispatch::Phases::NAMES` order), µs: p50 and p99, each the
    /// median over rounds; empty without phases (no writer, or a run of schema 5 and older).
    pub phases: Vec<PhaseSummary>,
    /// The writer's lateness at each transition's start, µs (p50 and p99 are medians over
    /// rounds); `None` without a writer or in runs of schema 5 and older.
    pub start_late: Option<PhaseSummary>,
    /// Completed transitions a second (the writer's achieved rate), median over rounds; `None`
    /// without a writer.
    pub transitions_per_sec: Option<f64>,
    /// The transition latency (ns) and per-batch (ps per call) distributions, merged over rounds;
    /// `None` in runs of schema 5 and older.
    pub transition_hist: Option<Histogram<u64>>,
    pub batch_hist: Option<Histogram<u64>>,
}

/// One phase of a summary's transitions, µs.
#[derive(Clone, Debug, PartialEq)]
pub struct PhaseSummary {
    pub phase: String,
    pub p50: f64,
    pub p99: f64,
}

/// Sum over readers of one scheduler figure; `None` if any reader lacks it.
fn sched_sum(r: &Row, f: fn(&crate::sched::ReaderSched) -> Option<u64>) -> Option<f64> {
    r.sched.iter().map(f).sum::<Option<u64>>().map(|n| n as f64)
}

/// The interference of a group of rows in a few words: the worst figure of each kind flagged.
fn interference_tags(rs: &[&Row]) -> Vec<String> {
    let flagged: Vec<_> = rs.iter().map(|r| &r.interference).filter(|i| i.flagged()).collect();
    let worst =
        |f: fn(&crate::record::Interference) -> Option<f64>| flagged.iter().filter_map(|i| f(i)).reduce(f64::max);
    let mut tags = Vec::new();
    if let Some(lost) = worst(|i| i.lost_share.filter(|l| *l > LOST_SHARE_LIMIT)) {
        tags.push(format!("off CPU {:.0}%", lost * 100.0));
    }
    if flagged.iter().any(|i| i.migrated_readers > 0) {
        tags.push("migrated".to_owned());
    }
    if let Some(ratio) = worst(|i| i.mean_over_median.filter(|m| *m > MEAN_OVER_MEDIAN_LIMIT)) {
        tags.push(format!("mean {ratio:.1}x median"));
    }
    tags
}

/// The phases of a group of rows, in the order the first row that has them lists them.
fn phase_summaries(rs: &[&Row]) -> Vec<PhaseSummary> {
    let Some(first) = rs.iter().find(|r| !r.phases_us.is_empty()) else { return Vec::new() };
    first
        .phases_us
        .iter()
        .filter_map(|p| {
            let of = |f: fn(&Percentiles) -> f64| {
                Spread::of(rs.iter().flat_map(|r| r.phases_us.iter().filter(|q| q.phase == p.phase).map(|q| f(&q.us))))
                    .map(|s| s.median)
            };
            Some(PhaseSummary { phase: p.phase.clone(), p50: of(|u| u.p50)?, p99: of(|u| u.p99)? })
        })
        .collect()
}

/// Groups rows by (scenario, strategy), in the order scenarios and strategies first appear.
pub fn summarize(rows: &[Row]) -> Vec<Summary> {
    let mut keys: Vec<(Scenario, String)> = Vec::new();
    for r in rows {
        let k = (r.scenario.clone(), r.strategy.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    // Scenarios in run order, strategies in registry order (what the README's table lists).
    let registry = |name: &str| dispatch::strategy::ALL.iter().position(|i| i.name == name);
    keys.sort_by_key(|(sc, st)| (rows.iter().position(|r| &r.scenario == sc), registry(st)));
    keys.into_iter()
        .map(|(scenario, strategy)| {
            let rs: Vec<&Row> = rows.iter().filter(|r| r.scenario == scenario && r.strategy == strategy).collect();
            let med = |f: &dyn Fn(&Row) -> Option<f64>| Spread::of(rs.iter().filter_map(|r| f(r))).map(|s| s.median);
            let mut counters_per_call = BTreeMap::new();
            let names: Vec<String> =
                rs.iter().filter_map(|r| r.counters.as_ref()).flat_map(|c| c.values.keys().cloned()).collect();
            for name in names {
                let per_call = Spread::of(rs.iter().filter_map(|r| {
                    r.counters.as_ref().and_then(|c| c.values.get(&name)).map(|v| v / r.calls.max(1) as f64)
                }));
                if let Some(s) = per_call {
                    counters_per_call.insert(name, s.median);
                }
            }
            Summary {
                ns_per_call: Spread::of(rs.iter().map(|r| r.ns_per_call)).expect("at least one row"),
                ratio_to_fnptr: Spread::of(rs.iter().filter_map(|r| r.ratio_to_fnptr)),
                calls_per_sec: Spread::of(rs.iter().map(|r| r.calls_per_sec)).expect("at least one row"),
                p50: med(&|r| r.batch_ns.map(|p| p.p50)).unwrap_or(f64::NAN),
                p99: med(&|r| r.batch_ns.map(|p| p.p99)).unwrap_or(f64::NAN),
                p999: med(&|r| r.batch_ns.map(|p| p.p999)).unwrap_or(f64::NAN),
                max: rs.iter().filter_map(|r| r.batch_ns.map(|p| p.max)).fold(f64::NAN, f64::max),
                p99_rounds: Spread::of(rs.iter().filter_map(|r| r.batch_ns.map(|p| p.p99))),
                transitions: rs.iter().map(|r| r.transitions).sum(),
                transition_us: med(&|r| r.transition_us.map(|p| p.p50)).map(|p50| Percentiles {
                    p50,
                    p99: med(&|r| r.transition_us.map(|p| p.p99)).unwrap_or(f64::NAN),
                    p999: med(&|r| r.transition_us.map(|p| p.p999)).unwrap_or(f64::NAN),
                    max: rs.iter().filter_map(|r| r.transition_us.map(|p| p.max)).fold(f64::NAN, f64::max),
                }),
                transition_p99: Spread::of(rs.iter().filter_map(|r| r.transition_us.map(|p| p.p99))),
                service_p99_us: med(&|r| r.transition_service_us.map(|p| p.p99)),
                writer_shares_cpu: rs.iter().filter_map(|r| r.writer_shares_cpu).reduce(|a, b| a || b),
                rate_kept: rs.iter().filter_map(|r| r.rate_kept).reduce(|a, b| a && b),
                violations: rs.iter().map(|r| r.violations).sum(),
                use_after_reclaim: rs.iter().map(|r| r.use_after_reclaim).sum(),
                idle_in_transition: rs.iter().map(|r| r.idle_in_transition).sum(),
                failed: rs.iter().any(|r| r.failed()),
                counters_per_call,
                on_cpu_share: med(&|r| r.sched.iter().filter_map(|s| s.on_cpu_share()).reduce(f64::min)),
                switches: med(&|r| {
                    Some(sched_sum(r, |s| s.voluntary_switches)? + sched_sum(r, |s| s.involuntary_switches)?)
                }),
                involuntary_switches: med(&|r| sched_sum(r, |s| s.involuntary_switches)),
                migrations: med(&|r| sched_sum(r, |s| s.migrations)),
                clock_overhead_ns: med(&|r| Some(r.clock_overhead_ns)).unwrap_or(f64::NAN),
                pinned: rs.iter().all(|r| r.pinned),
                consistency: rs[0].consistency.clone(),
                rounds: rs.len(),
                flagged_rounds: rs.iter().filter(|r| r.interference.flagged()).count(),
                interference: interference_tags(&rs),
                phases: phase_summaries(&rs),
                start_late: med(&|r| r.start_late_us.map(|p| p.p50)).map(|p50| PhaseSummary {
                    phase: "late".into(),
                    p50,
                    p99: med(&|r| r.start_late_us.map(|p| p.p99)).unwrap_or(f64::NAN),
                }),
                transitions_per_sec: med(&|r| r.rate_achieved_hz),
                // `load_run` refuses a run with a histogram that does not decode.
                transition_hist: crate::hist::merged(rs.iter().filter_map(|r| r.histograms.transition_ns.as_deref()))
                    .ok()
                    .flatten(),
                batch_hist: crate::hist::merged(rs.iter().filter_map(|r| r.histograms.batch_ps.as_deref()))
                    .ok()
                    .flatten(),
                strategy,
                scenario,
            }
        })
        .collect()
}

/// The scenarios of `summaries`, in run order.
pub fn scenarios(summaries: &[Summary]) -> Vec<Scenario> {
    let mut out: Vec<Scenario> = Vec::new();
    for s in summaries {
        if !out.contains(&s.scenario) {
            out.push(s.scenario.clone());
        }
    }
    out
}

/// The run's verdict on consistency: one line per (scenario, strategy) whose violations fail the
/// run (a strategy that promises per-task consistency and broke it); empty: the run passes.
pub fn failures(summaries: &[Summary]) -> Vec<String> {
    summaries
        .iter()
        .filter(|s| s.failed)
        .map(|s| {
            format!(
                "{}/{}: {} violations, {} uses after reclaim, {} reads of a transition while Idle",
                s.scenario.name(),
                s.strategy,
                s.violations,
                s.use_after_reclaim,
                s.idle_in_transition
            )
        })
        .collect()
}

/// Above this `fnptr ÷ direct` in the per-site steady scenario, indirect calls are taken as not
/// predicted: on the machines measured so far a predicted indirect call cost 0.9 to 1.1 times a
/// direct one, a mispredicted one several times.
pub const PREDICTED_LIMIT: f64 = 1.3;

/// The run's check of its own method ([`MethodCheck`]): `fnptr ÷ direct` per round in the first
/// per-site steady scenario that has both, and what `fnptr` costs in the shared steady scenario
/// with the same readers.
pub fn method_check(rows: &[Row]) -> Option<MethodCheck> {
    let steady = |r: &Row, regime: CallSites| r.scenario.call_sites == regime && r.scenario.is_steady();
    let scenario = &rows.iter().find(|r| steady(r, CallSites::PerSite) && r.strategy == BASELINE)?.scenario;
    let ns = |strategy: &str, round: usize| {
        rows.iter()
            .find(|r| &r.scenario == scenario && r.strategy == strategy && r.round == round)
            .map(|r| r.ns_per_call)
    };
    let rounds: Vec<usize> = rows.iter().filter(|r| &r.scenario == scenario).map(|r| r.round).collect();
    let ratio = Spread::of(rounds.iter().filter_map(|&round| Some(ns(BASELINE, round)? / ns("direct", round)?)))?;
    let median_ns = |scenario: &Scenario| {
        Spread::of(rows.iter().filter(|r| &r.scenario == scenario && r.strategy == BASELINE).map(|r| r.ns_per_call))
            .map(|s| s.median)
    };
    let shared = rows
        .iter()
        .find(|r| steady(r, CallSites::Shared) && r.scenario.readers == scenario.readers && r.strategy == BASELINE);
    Some(MethodCheck {
        fnptr_over_direct: ratio.median,
        limit: PREDICTED_LIMIT,
        predicted: ratio.median <= PREDICTED_LIMIT,
        fnptr_ns_per_site: median_ns(scenario)?,
        fnptr_ns_shared: shared.and_then(|r| median_ns(&r.scenario)),
        scenario: scenario.name(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::record::test_support::method_rows as rows;

    #[test]
    fn predicted_indirect_calls_pass_the_method_check() {
        let check = method_check(&rows([1.02, 1.10, 0.98])).expect("a per-site steady scenario");
        assert!(check.predicted);
        assert_eq!(check.fnptr_over_direct, 1.02, "the median over rounds");
        assert_eq!((check.fnptr_ns_per_site, check.fnptr_ns_shared), (1.02, Some(8.0)));
    }

    #[test]
    fn mispredicted_indirect_calls_are_warned_about() {
        let check = method_check(&rows([5.7, 5.6, 5.9])).unwrap();
        assert!(!check.predicted);
        assert_eq!(check.fnptr_over_direct, 5.7);
    }

    #[test]
    fn no_check_without_a_per_site_steady_scenario() {
        let shared_only: Vec<Row> =
            rows([1.0; 3]).into_iter().filter(|r| r.scenario.call_sites == CallSites::Shared).collect();
        assert!(method_check(&shared_only).is_none());
    }
}
