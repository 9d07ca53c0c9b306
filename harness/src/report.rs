//! What a run says: the terminal table, `report.md` and the Bencher Metric Format export, all
//! computed from the rows (medians over runs, never a single run's figure).

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::json;

use crate::config::{self, CallSites};
use crate::record::{LOST_SHARE_LIMIT, MEAN_OVER_MEDIAN_LIMIT, MethodCheck, Row, RunFile};

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

/// One strategy in one scenario, summarised over its runs.
#[derive(Clone, Debug)]
pub struct Summary {
    pub strategy: String,
    pub scenario: String,
    pub call_sites: CallSites,
    pub readers: usize,
    pub ns_per_call: Spread,
    pub ratio: Option<Spread>,
    pub calls_per_sec: Spread,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub transitions: u64,
    pub transition_p99_us: Option<f64>,
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
    pub rounds: usize,
    /// Rounds flagged for interference, and the kinds of reason, worst figure first seen.
    pub flagged_rounds: usize,
    pub interference: Vec<String>,
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

/// Groups rows by (scenario, strategy), in the order scenarios and strategies first appear.
pub fn summarize(rows: &[Row]) -> Vec<Summary> {
    let mut keys: Vec<(String, String)> = Vec::new();
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
                call_sites: rs[0].call_sites,
                readers: rs[0].readers,
                ns_per_call: Spread::of(rs.iter().map(|r| r.ns_per_call)).expect("at least one row"),
                ratio: Spread::of(rs.iter().filter_map(|r| r.ratio_to_fnptr)),
                calls_per_sec: Spread::of(rs.iter().map(|r| r.calls_per_sec)).expect("at least one row"),
                p50: med(&|r| r.batch_ns.map(|p| p.p50)).unwrap_or(f64::NAN),
                p99: med(&|r| r.batch_ns.map(|p| p.p99)).unwrap_or(f64::NAN),
                p999: med(&|r| r.batch_ns.map(|p| p.p999)).unwrap_or(f64::NAN),
                max: rs.iter().filter_map(|r| r.batch_ns.map(|p| p.max)).fold(f64::NAN, f64::max),
                transitions: rs.iter().map(|r| r.transitions).sum(),
                transition_p99_us: med(&|r| r.transition_us.map(|p| p.p99)),
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
                rounds: rs.len(),
                flagged_rounds: rs.iter().filter(|r| r.interference.flagged()).count(),
                interference: interference_tags(&rs),
                strategy,
                scenario,
            }
        })
        .collect()
}

fn counters_cell(s: &Summary) -> String {
    let c = &s.counters_per_call;
    if let Some(ins) = c.get("instructions") {
        let cyc = c.get("cycles").copied().unwrap_or(f64::NAN);
        format!("{ins:.1} ins, {cyc:.1} cyc")
    } else if let Some(clock) = c.get("task_clock_ns") {
        format!("{clock:.2} ns task-clock")
    } else {
        "-".to_owned()
    }
}

/// Transition latency p99, with a word when the writer shared a CPU with a reader: then the
/// figure includes waiting for the scheduler, not only for the strategy's grace periods.
fn transition_cell(s: &Summary) -> String {
    match (s.transition_p99_us, s.writer_shares_cpu) {
        (Some(x), Some(true)) => format!("{x:.1} (writer shares a CPU)"),
        (Some(x), _) => format!("{x:.1}"),
        (None, _) => "-".into(),
    }
}

fn interference_cell(s: &Summary) -> String {
    if s.flagged_rounds == 0 {
        "-".into()
    } else {
        format!("FLAGGED {}/{}: {}", s.flagged_rounds, s.rounds, s.interference.join(", "))
    }
}

/// The closing line on interference: how many table rows (and measurements) were flagged, and
/// the limits.
pub fn interference_line(summaries: &[Summary]) -> String {
    let rows = summaries.iter().filter(|s| s.flagged_rounds > 0).count();
    let measurements: usize = summaries.iter().map(|s| s.flagged_rounds).sum();
    let total: usize = summaries.iter().map(|s| s.rounds).sum();
    let limits = format!(
        "a row is flagged when a reader was off its CPU more than {:.0}% of its time, a pinned reader changed CPU, \
         or the mean is more than {MEAN_OVER_MEDIAN_LIMIT}x the median batch",
        LOST_SHARE_LIMIT * 100.0
    );
    if rows == 0 {
        format!("interference: no row flagged ({limits})")
    } else {
        format!(
            "interference: {rows} of {} rows flagged ({measurements} of {total} measurements): their figures include \
             other tasks' time; {limits}",
            summaries.len()
        )
    }
}

fn rate_cell(s: &Summary) -> String {
    match s.rate_kept {
        Some(false) => format!("{} (rate NOT kept)", s.transitions),
        _ => s.transitions.to_string(),
    }
}

/// Rows of one table: (header, cells per summary).
fn table_rows(summaries: &[&Summary]) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let header = vec![
        "strategy",
        "ns/call",
        "min-max",
        "x fnptr",
        "ratio min-max",
        "Mcalls/s",
        "p50",
        "p99",
        "p99.9",
        "max",
        "transitions",
        "tr p99 us",
        "svc p99 us",
        "viol",
        "uar",
        "counters/call",
        "on-CPU %",
        "ctx sw (inv)",
        "migr",
        "interference",
    ];
    let f2 = |x: f64| if x.is_finite() { format!("{x:.2}") } else { "-".into() };
    let cells = summaries
        .iter()
        .map(|s| {
            vec![
                format!("{}{}", s.strategy, if s.failed { " FAIL" } else { "" }),
                f2(s.ns_per_call.median),
                format!("{}-{}", f2(s.ns_per_call.min), f2(s.ns_per_call.max)),
                s.ratio.map_or("-".into(), |r| f2(r.median)),
                s.ratio.map_or("-".into(), |r| format!("{}-{}", f2(r.min), f2(r.max))),
                f2(s.calls_per_sec.median / 1e6),
                f2(s.p50),
                f2(s.p99),
                f2(s.p999),
                f2(s.max),
                rate_cell(s),
                transition_cell(s),
                s.service_p99_us.map_or("-".into(), |x| format!("{x:.1}")),
                s.violations.to_string(),
                s.use_after_reclaim.to_string(),
                counters_cell(s),
                s.on_cpu_share.map_or("-".into(), |x| format!("{:.1}", x * 100.0)),
                match (s.switches, s.involuntary_switches) {
                    (Some(all), Some(inv)) => format!("{all:.0} ({inv:.0})"),
                    _ => "-".into(),
                },
                s.migrations.map_or("-".into(), |x| format!("{x:.0}")),
                interference_cell(s),
            ]
        })
        .collect();
    (header, cells)
}

fn scenarios(summaries: &[Summary]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in summaries {
        if !out.contains(&s.scenario) {
            out.push(s.scenario.clone());
        }
    }
    out
}

/// The terminal table, one block per scenario (per-batch percentiles in ns per call).
pub fn terminal(summaries: &[Summary]) -> String {
    let mut out = String::new();
    for sc in scenarios(summaries) {
        let group: Vec<&Summary> = summaries.iter().filter(|s| s.scenario == sc).collect();
        let (header, cells) = table_rows(&group);
        let widths: Vec<usize> = (0..header.len())
            .map(|i| cells.iter().map(|c| c[i].len()).chain([header[i].len()]).max().unwrap_or(0))
            .collect();
        writeln!(out, "\n== {sc}").unwrap();
        let line = |cols: Vec<String>| {
            cols.iter().zip(&widths).map(|(c, w)| format!("{c:>w$}")).collect::<Vec<_>>().join("  ")
        };
        writeln!(out, "{}", line(header.iter().map(|h| h.to_string()).collect())).unwrap();
        for c in cells {
            writeln!(out, "{}", line(c)).unwrap();
        }
    }
    writeln!(out, "\n{}", interference_line(summaries)).unwrap();
    out
}

/// Above this `fnptr ÷ direct` in the per-site steady scenario, indirect calls are taken as not
/// predicted: on the machines measured so far a predicted indirect call cost 0.9 to 1.1 times a
/// direct one, a mispredicted one several times.
pub const PREDICTED_LIMIT: f64 = 1.3;

/// The run's check of its own method ([`MethodCheck`]): `fnptr ÷ direct` per round in the first
/// per-site steady scenario that has both, and what `fnptr` costs in the shared steady scenario
/// with the same readers.
pub fn method_check(rows: &[Row]) -> Option<MethodCheck> {
    let steady = |r: &Row, regime: CallSites| r.call_sites == regime && r.scenario.contains("_steady_");
    let scenario = rows.iter().find(|r| steady(r, CallSites::PerSite) && r.strategy == "fnptr")?.scenario.clone();
    let readers = rows.iter().find(|r| r.scenario == scenario)?.readers;
    let ns = |scenario: &str, strategy: &str, run: usize| {
        rows.iter().find(|r| r.scenario == scenario && r.strategy == strategy && r.run == run).map(|r| r.ns_per_call)
    };
    let runs: Vec<usize> = rows.iter().filter(|r| r.scenario == scenario).map(|r| r.run).collect();
    let ratio =
        Spread::of(runs.iter().filter_map(|&run| Some(ns(&scenario, "fnptr", run)? / ns(&scenario, "direct", run)?)))?;
    let median_ns = |scenario: &str| {
        Spread::of(rows.iter().filter(|r| r.scenario == scenario && r.strategy == "fnptr").map(|r| r.ns_per_call))
            .map(|s| s.median)
    };
    let shared = rows.iter().find(|r| steady(r, CallSites::Shared) && r.readers == readers && r.strategy == "fnptr");
    Some(MethodCheck {
        fnptr_over_direct: ratio.median,
        limit: PREDICTED_LIMIT,
        predicted: ratio.median <= PREDICTED_LIMIT,
        fnptr_ns_per_site: median_ns(&scenario)?,
        fnptr_ns_shared: shared.and_then(|r| median_ns(&r.scenario)),
        scenario,
    })
}

/// The method check in one line (terminal and report.md).
pub fn method_line(check: &MethodCheck) -> String {
    let shared = check.fnptr_ns_shared.map_or(String::new(), |ns| {
        format!(
            "; one shared call instruction costs fnptr {ns:.2} ns against {:.2} ns per site ({:.2}x)",
            check.fnptr_ns_per_site,
            ns / check.fnptr_ns_per_site
        )
    });
    if check.predicted {
        format!(
            "method check: fnptr / direct = {:.2} in {} (at most {}: indirect calls are predicted here){shared}",
            check.fnptr_over_direct, check.scenario, check.limit
        )
    } else {
        format!(
            "warning: fnptr / direct = {:.2} in {}, above {}: indirect calls are not predicted on this machine even with one call instruction per site, so ratios to fnptr measure \
             mispredictions, not redirection{shared}",
            check.fnptr_over_direct, check.scenario, check.limit
        )
    }
}

/// The host across the run, in one line.
pub fn host_line(h: &crate::sched::HostLoad) -> String {
    let load = |l: Option<[f64; 3]>| l.map_or("unavailable".to_owned(), |l| format!("{:.2}", l[0]));
    let steal = h.steal_share.map_or("unavailable".to_owned(), |s| format!("{:.1}%", s * 100.0));
    format!(
        "Host: 1-minute load average {} at the start, {} at the end; steal time {steal} of all CPUs' time over the run.",
        load(h.loadavg_start),
        load(h.loadavg_end)
    )
}

/// `report.md`: the machine, the config, and the tables.
pub fn markdown(run: &RunFile, summaries: &[Summary], plots: &[String], plot_note: Option<&str>) -> String {
    let mut md = String::new();
    let e = &run.env;
    writeln!(md, "# dispatch-bench run {}\n", run.started).unwrap();
    writeln!(
        md,
        "Machine: {} ({} CPUs in the affinity mask {:?}), kernel {}, {}.",
        e.cpu_model,
        e.cpus.len(),
        e.cpus,
        e.kernel,
        if e.hypervisor { "a VM" } else { "bare metal" }
    )
    .unwrap();
    writeln!(
        md,
        "Governor {}, turbo {}, SMT {}, perf_event_paranoid {}; {}; commit {}.",
        e.governor, e.turbo, e.smt, e.perf_event_paranoid, e.rustc, e.git_commit
    )
    .unwrap();
    let counters = e.counters.as_ref().map_or("not probed".to_owned(), |c| {
        if c.available {
            "hardware counters".to_owned()
        } else {
            format!("no hardware counters ({})", c.reason.as_deref().unwrap_or(""))
        }
    });
    writeln!(md, "Counters: {counters}. percpu reads the CPU id with {}.\n", e.percpu_path).unwrap();
    for w in e.warnings() {
        writeln!(md, "- warning: {w}").unwrap();
    }
    let c = &run.config;
    writeln!(
        md,
        "\nConfig: {} run(s) of {:.2} s after {:.2} s of warm-up per strategy and scenario, the writer on {}, strategies interleaved in a random order per round (seed {}); \
         ns/call is the mean over batches (one critical section each) with the clock's overhead subtracted; \
         percentiles are per-batch ns/call; ratios are to `fnptr` in the same round, median (min-max) over rounds.\n",
        c.runs,
        c.duration.as_secs_f64(),
        c.warmup.as_secs_f64(),
        config::writer_cpu_name(c.writer_cpu),
        c.seed
    )
    .unwrap();
    writeln!(
        md,
        "Call sites: `per-site` scenarios call each site from its own call instruction (every indirect call \
         predicted: the redirection itself); `shared` ones call every site from one instruction (what an \
         interpreter or a vtable call site sees: the CPU's indirect-branch predictor shows); `cold` calls {} \
         sites, each from its own instruction, in a fixed random order (more code than the L1i holds).\n",
        dispatch::sections::COLD_SITES
    )
    .unwrap();
    if let Some(check) = &run.method_check {
        writeln!(md, "{}.\n", method_line(check)).unwrap();
    }
    writeln!(md, "{}\n", host_line(&run.host_load)).unwrap();
    writeln!(
        md,
        "Columns: `tr p99 us` is end minus *intended* start of a transition (what an open-loop caller waits), \
         `svc p99 us` its service time (actual start to completion); `on-CPU %` the least share of its measured \
         time any reader ran, `ctx sw (inv)` context switches of the readers (involuntary ones: preemptions), \
         `migr` their migrations, medians over rounds.\n"
    )
    .unwrap();
    for sc in scenarios(summaries) {
        let group: Vec<&Summary> = summaries.iter().filter(|s| s.scenario == sc).collect();
        let (header, cells) = table_rows(&group);
        writeln!(md, "## {sc}\n").unwrap();
        writeln!(md, "| {} |", header.join(" | ")).unwrap();
        writeln!(md, "|{}|", header.iter().map(|_| "---").collect::<Vec<_>>().join("|")).unwrap();
        for c in cells {
            writeln!(md, "| {} |", c.join(" | ")).unwrap();
        }
        md.push('\n');
    }
    writeln!(md, "{}.\n", interference_line(summaries)).unwrap();
    if !plots.is_empty() {
        writeln!(md, "## Plots\n").unwrap();
        for p in plots {
            writeln!(md, "![{p}]({p})\n").unwrap();
        }
    }
    if let Some(note) = plot_note {
        writeln!(md, "Plots: {note}\n").unwrap();
    }
    md
}

/// Bencher Metric Format: `{"<scenario>/<strategy>": {"latency": {value, lower_value, upper_value}, ...}}`.
pub fn bmf(summaries: &[Summary]) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for s in summaries {
        let measure = |sp: Spread| json!({"value": sp.median, "lower_value": sp.min, "upper_value": sp.max});
        let mut m = serde_json::Map::new();
        m.insert("latency".into(), measure(s.ns_per_call));
        m.insert("throughput".into(), measure(s.calls_per_sec));
        if let Some(r) = s.ratio {
            m.insert("ratio-to-fnptr".into(), measure(r));
        }
        out.insert(format!("{}/{}", s.scenario, s.strategy), m.into());
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::record::test_support::row;

    /// Rows of three rounds: direct at 1 ns, fnptr at `fnptr` ns per site and 8 ns shared.
    fn rows(fnptr: [f64; 3]) -> Vec<Row> {
        let mut rows = Vec::new();
        for (run, ns) in fnptr.into_iter().enumerate() {
            rows.push(row("direct", CallSites::PerSite, run, 1.0));
            rows.push(row("fnptr", CallSites::PerSite, run, ns));
            rows.push(row("fnptr", CallSites::Shared, run, 8.0));
        }
        rows
    }

    #[test]
    fn predicted_indirect_calls_pass_the_method_check() {
        let check = method_check(&rows([1.02, 1.10, 0.98])).expect("a per-site steady scenario");
        assert!(check.predicted);
        assert_eq!(check.fnptr_over_direct, 1.02, "the median over rounds");
        assert_eq!((check.fnptr_ns_per_site, check.fnptr_ns_shared), (1.02, Some(8.0)));
        assert!(method_line(&check).starts_with("method check: fnptr / direct = 1.02"));
        assert!(method_line(&check).contains("one shared call instruction costs fnptr 8.00 ns"));
    }

    #[test]
    fn mispredicted_indirect_calls_are_warned_about() {
        let check = method_check(&rows([5.7, 5.6, 5.9])).unwrap();
        assert!(!check.predicted);
        let line = method_line(&check);
        assert!(line.starts_with("warning: fnptr / direct = 5.70") && line.contains("not predicted"), "{line}");
    }

    #[test]
    fn no_check_without_a_per_site_steady_scenario() {
        let shared_only: Vec<Row> = rows([1.0; 3]).into_iter().filter(|r| r.call_sites == CallSites::Shared).collect();
        assert!(method_check(&shared_only).is_none());
    }
}
