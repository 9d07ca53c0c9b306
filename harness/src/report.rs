//! What a run says: the terminal table, `report.md` and the Bencher Metric Format export, all
//! computed from the rows (medians over runs, never a single run's figure).

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::json;

use dispatch::strategy::Consistency;

use crate::config::{self, CallSites};
use crate::record::{LOST_SHARE_LIMIT, MEAN_OVER_MEDIAN_LIMIT, MethodCheck, Percentiles, Row, RunFile};

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
    /// The strategy's consistency model, as the registry names it (`per-task`, `immediate`, `n/a`).
    pub consistency: String,
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

/// Violations or uses after reclaim: a strategy that does not promise per-task consistency is
/// expected to show some under transitions, and they do not fail the run.
fn violations_cell(s: &Summary, n: u64) -> String {
    if n > 0 && s.consistency != Consistency::PerTask.name() { format!("{n} (expected)") } else { n.to_string() }
}

fn rate_cell(s: &Summary) -> String {
    match s.rate_kept {
        Some(false) => format!("{} (rate NOT kept)", s.transitions),
        _ => s.transitions.to_string(),
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

/// One table of a scenario: a title and its rows, the strategy first.
#[derive(Debug)]
pub struct Table {
    pub title: &'static str,
    pub header: Vec<&'static str>,
    pub cells: Vec<Vec<String>>,
}

/// Whether a scenario's rows had a writer or showed violations: only then is its transitions
/// table worth a reader's time (a steady scenario's would be all zeros and dashes).
fn has_transitions(group: &[&Summary]) -> bool {
    group.iter().any(|s| s.transitions > 0 || s.rate_kept.is_some() || s.violations > 0 || s.use_after_reclaim > 0)
}

/// A scenario's tables, one per question a reader asks in turn: what does a call cost, what does
/// a transition cost and did the strategy stay consistent, and were the figures disturbed. Split
/// so that each fits [`MAX_WIDTH`] (the single table of issue 14 was 151 columns wide).
pub fn tables(group: &[&Summary]) -> Vec<Table> {
    let f2 = |x: f64| if x.is_finite() { format!("{x:.2}") } else { "-".into() };
    let spread = |s: Spread| format!("{} ({}-{})", f2(s.median), f2(s.min), f2(s.max));
    let name = |s: &Summary| format!("{}{}", s.strategy, if s.failed { " FAIL" } else { "" });
    let mut out = vec![Table {
        title: "Cost of a call",
        header: vec!["strategy", "ns/call (min-max)", "x fnptr (min-max)", "Mcalls/s", "p50", "p99", "p99.9", "max"],
        cells: group
            .iter()
            .map(|s| {
                vec![
                    name(s),
                    spread(s.ns_per_call),
                    s.ratio.map_or("-".into(), spread),
                    f2(s.calls_per_sec.median / 1e6),
                    f2(s.p50),
                    f2(s.p99),
                    f2(s.p999),
                    f2(s.max),
                ]
            })
            .collect(),
    }];
    if has_transitions(group) {
        let us = |x: Option<f64>| x.filter(|x| x.is_finite()).map_or("-".into(), |x| format!("{x:.1}"));
        out.push(Table {
            title: "Transitions and consistency",
            header: vec![
                "strategy",
                "consistency",
                "transitions",
                "tr p50 us",
                "tr p99 us",
                "svc p99 us",
                "viol",
                "uar",
            ],
            cells: group
                .iter()
                .map(|s| {
                    vec![
                        name(s),
                        s.consistency.clone(),
                        rate_cell(s),
                        us(s.transition_us.map(|p| p.p50)),
                        us(s.transition_p99.map(|p| p.median)),
                        us(s.service_p99_us),
                        violations_cell(s, s.violations),
                        violations_cell(s, s.use_after_reclaim),
                    ]
                })
                .collect(),
        });
    }
    out.push(Table {
        title: "What the scheduler did",
        header: vec!["strategy", "counters/call", "on-CPU %", "ctx sw (inv)", "migr", "flagged rounds"],
        cells: group
            .iter()
            .map(|s| {
                vec![
                    name(s),
                    counters_cell(s),
                    s.on_cpu_share.map_or("-".into(), |x| format!("{:.1}", x * 100.0)),
                    match (s.switches, s.involuntary_switches) {
                        (Some(all), Some(inv)) => format!("{all:.0} ({inv:.0})"),
                        _ => "-".into(),
                    },
                    s.migrations.map_or("-".into(), |x| format!("{x:.0}")),
                    if s.flagged_rounds == 0 { "-".into() } else { format!("{}/{}", s.flagged_rounds, s.rounds) },
                ]
            })
            .collect(),
    });
    out
}

/// The widest line a table of `report.md` may have: what a terminal or a review pane shows
/// without wrapping.
pub const MAX_WIDTH: usize = 120;

/// A Markdown table, split into several (each repeating the first column) where one would be
/// wider than [`MAX_WIDTH`].
pub fn markdown_table(header: &[&str], cells: &[Vec<String>]) -> String {
    // `| a | b |`: every column takes its width plus 3, the line one more.
    let widths: Vec<usize> = (0..header.len())
        .map(|i| cells.iter().map(|c| c[i].chars().count()).chain([header[i].chars().count()]).max().unwrap_or(0) + 3)
        .collect();
    let mut parts: Vec<Vec<usize>> = vec![vec![0]];
    for i in 1..header.len() {
        let current = parts.last_mut().expect("one part at least");
        if current.len() > 1 && 1 + current.iter().map(|&c| widths[c]).sum::<usize>() + widths[i] > MAX_WIDTH {
            parts.push(vec![0, i]);
        } else {
            current.push(i);
        }
    }
    let mut md = String::new();
    for cols in parts {
        let line = |row: &dyn Fn(usize) -> String| {
            format!("| {} |", cols.iter().map(|&c| row(c)).collect::<Vec<_>>().join(" | "))
        };
        writeln!(md, "{}", line(&|c| header[c].to_owned())).unwrap();
        writeln!(md, "|{}|", cols.iter().map(|_| "---").collect::<Vec<_>>().join("|")).unwrap();
        for row in cells {
            writeln!(md, "{}", line(&|c| row[c].clone())).unwrap();
        }
        md.push('\n');
    }
    md
}

/// The scenarios of `summaries`, in run order.
pub fn scenarios(summaries: &[Summary]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in summaries {
        if !out.contains(&s.scenario) {
            out.push(s.scenario.clone());
        }
    }
    out
}

/// The terminal table, one block per scenario and table (per-batch percentiles in ns per call).
pub fn terminal(summaries: &[Summary]) -> String {
    let mut out = String::new();
    for sc in scenarios(summaries) {
        let group: Vec<&Summary> = summaries.iter().filter(|s| s.scenario == sc).collect();
        writeln!(out, "\n== {sc}").unwrap();
        for t in tables(&group) {
            let widths: Vec<usize> = (0..t.header.len())
                .map(|i| t.cells.iter().map(|c| c[i].len()).chain([t.header[i].len()]).max().unwrap_or(0))
                .collect();
            let line = |cols: Vec<String>| {
                cols.iter().zip(&widths).map(|(c, w)| format!("{c:>w$}")).collect::<Vec<_>>().join("  ")
            };
            writeln!(out, "-- {}", t.title.to_lowercase()).unwrap();
            writeln!(out, "{}", line(t.header.iter().map(|h| h.to_string()).collect())).unwrap();
            for c in t.cells {
                writeln!(out, "{}", line(c)).unwrap();
            }
        }
        for line in flag_lines(&group) {
            writeln!(out, "{line}").unwrap();
        }
    }
    writeln!(out, "\n{}", interference_line(summaries)).unwrap();
    out
}

/// Each flagged row of a scenario and why, one line each.
fn flag_lines(group: &[&Summary]) -> Vec<String> {
    group
        .iter()
        .filter(|s| s.flagged_rounds > 0)
        .map(|s| format!("FLAGGED {} {}/{}: {}", s.strategy, s.flagged_rounds, s.rounds, s.interference.join(", ")))
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

/// The machine and the run's settings, as a Markdown list: what `report.md` opens with, and what
/// the cross-host report gives for each host.
pub fn environment(run: &RunFile) -> String {
    let mut md = String::new();
    let e = &run.env;
    let c = &run.config;
    let item = |md: &mut String, label: &str, text: String| writeln!(md, "- **{label}**: {text}").unwrap();
    if let Some(cpu) = &e.cpu {
        item(&mut md, "CPU", cpu.describe());
    }
    item(
        &mut md,
        "Machine",
        format!(
            "host {} (CPU model string {:?}), {} CPUs in the affinity mask {:?} of {} online, kernel {}, {}",
            e.host,
            e.cpu_model,
            e.cpus.len(),
            e.cpus,
            e.online_cpus,
            e.kernel,
            if e.hypervisor { "a VM" } else { "bare metal" }
        ),
    );
    item(
        &mut md,
        "Settings",
        format!(
            "governor {}, turbo {}, SMT {}, perf_event_paranoid {}; {}; commit {}",
            e.governor, e.turbo, e.smt, e.perf_event_paranoid, e.rustc, e.git_commit
        ),
    );
    let counters = match &e.counters {
        None => "not probed".to_owned(),
        Some(a) if a.available => "hardware counters (instructions and cycles per call below)".to_owned(),
        Some(a) => format!(
            "no hardware counters, so software ones (task-clock) are reported: {}",
            a.reason.as_deref().unwrap_or("no reason recorded")
        ),
    };
    item(&mut md, "Counters", format!("{counters}; percpu reads the CPU id with {}", e.percpu_path));
    if !e.textpoke_text.is_empty() {
        item(&mut md, "textpoke", format!("its call instructions: {}", e.textpoke_text));
    }
    let pinned = run.rows.iter().all(|r| r.pinned);
    let oversubscribed = run.rows.iter().any(|r| r.oversubscribed);
    item(
        &mut md,
        "Pinning",
        format!(
            "{}; the writer on {}",
            match (pinned, oversubscribed) {
                (true, _) => "every reader pinned to a CPU of its own",
                (false, true) => "readers NOT all pinned: more readers than CPUs (--oversubscribe)",
                (false, false) => "readers NOT all pinned",
            },
            config::writer_cpu_name(c.writer_cpu)
        ),
    );
    let clock = Spread::of(run.rows.iter().map(|r| r.clock_overhead_ns));
    item(
        &mut md,
        "Clock overhead",
        clock.map_or("no rows".to_owned(), |s| {
            let range = if s.min == s.max { String::new() } else { format!(" ({:.1}-{:.1})", s.min, s.max) };
            format!(
                "{:.1} ns{range} per timed batch, subtracted from every batch before dividing by its calls",
                s.median
            )
        }),
    );
    item(
        &mut md,
        "Method",
        format!(
            "{} round(s) of {:.2} s after {:.2} s of warm-up per strategy and scenario, strategies in a random order \
             per round (seed {}); figures are medians over rounds, (min-max) their range",
            c.runs,
            c.duration.as_secs_f64(),
            c.warmup.as_secs_f64(),
            c.seed
        ),
    );
    if !run.skipped.is_empty() {
        let skipped: Vec<String> = run.skipped.iter().map(|s| format!("`{}` ({})", s.strategy, s.reason)).collect();
        item(
            &mut md,
            "Skipped",
            format!("unavailable on this machine, so not measured and in no table: {}", skipped.join("; ")),
        );
    }
    if let Some(check) = &run.method_check {
        writeln!(md, "- {}", method_line(check)).unwrap();
    }
    writeln!(md, "- {}", host_line(&run.host_load)).unwrap();
    for w in e.warnings() {
        item(&mut md, "Warning", w);
    }
    md
}

/// What each column means, for the tables of [`tables`].
const COLUMNS: &[(&str, &str)] = &[
    ("ns/call", "mean time of one call over every timed batch, clock overhead subtracted"),
    (
        "x fnptr",
        "ns/call divided by `fnptr`'s in the same scenario and round: what the redirection costs over a plain \
         function pointer (1.00: nothing)",
    ),
    ("Mcalls/s", "million calls a second, summed over readers"),
    ("p50 … max", "percentiles of the per-batch ns/call (one batch: one critical section), merged over readers"),
    ("consistency", "what the strategy promises (see below)"),
    ("transitions", "transitions the writer completed, summed over rounds"),
    (
        "tr p50 us, tr p99 us",
        "transition latency, µs: end minus *intended* start, what a caller of an open-loop writer waits",
    ),
    ("svc p99 us", "transition service time, µs: end minus actual start"),
    (
        "viol",
        "critical sections that saw two versions of the patched functions: a consistency violation, summed over \
         rounds",
    ),
    ("uar", "uses after reclaim: a reader used a patch after the writer freed it"),
    ("counters/call", "hardware or software counters divided by calls"),
    ("on-CPU %", "the least share of its measured time any reader ran on its CPU"),
    ("ctx sw (inv)", "context switches of the readers, involuntary ones (preemptions) in brackets"),
    ("migr", "readers' migrations to another CPU"),
    ("flagged rounds", "rounds whose figures include other tasks' time (interference, listed below the tables)"),
];

/// How to read the tables: the call-site regimes, the columns, and which violations are expected.
pub fn guide() -> String {
    let mut md = String::new();
    writeln!(md, "## How to read this report\n").unwrap();
    writeln!(
        md,
        "Scenario names read `REGIME_rREADERS_RATE_sSITESORDER_dDEPTH_OPS_cCALLS`; each scenario below says what \
         it is in words. Call-site regimes: `per-site` calls each site from its own call instruction (every \
         indirect call predicted: the redirection itself); `shared` calls every site from one instruction (what \
         an interpreter or a vtable call site sees: the CPU's indirect-branch predictor shows); `cold` calls {} \
         sites, each from its own instruction, in a fixed random order (more code than the L1i holds).\n",
        dispatch::sections::COLD_SITES
    )
    .unwrap();
    writeln!(md, "Columns (medians over rounds unless a range is given):\n").unwrap();
    for (col, meaning) in COLUMNS {
        writeln!(md, "- `{col}`: {meaning}").unwrap();
    }
    writeln!(md, "\nConsistency, from the strategy registry:\n").unwrap();
    let mut models: Vec<Consistency> = Vec::new();
    for info in dispatch::strategy::ALL {
        if !models.contains(&info.consistency) {
            models.push(info.consistency);
        }
    }
    for model in models {
        let names: Vec<&str> =
            dispatch::strategy::ALL.iter().filter(|i| i.consistency == model).map(|i| i.name).collect();
        let meaning = match model {
            Consistency::PerTask => {
                "the kernel's per-task model: a task sees one version per critical section; any violation, use \
                 after reclaim or read of a transition while Idle FAILS the run (the strategy is marked FAIL)"
            }
            Consistency::Immediate => {
                "a change is seen by every task at once, so a task may mix versions within a critical section: \
                 violations under transitions are EXPECTED, marked `(expected)`, and do not fail the run"
            }
            Consistency::NotPatchable => "not patchable at all: the floor every other strategy is measured against",
        };
        writeln!(md, "- `{}` ({}): {meaning}", model.name(), names.join(", ")).unwrap();
    }
    md.push('\n');
    md
}

/// One scenario's section of `report.md`: what it is, its tables, and its flagged rows.
fn scenario_section(md: &mut String, name: &str, scenario: Option<&config::Scenario>, group: &[&Summary]) {
    writeln!(md, "## {name}\n").unwrap();
    if let Some(sc) = scenario {
        writeln!(md, "*{}.*\n", sc.describe()).unwrap();
    }
    for t in tables(group) {
        writeln!(md, "{}:\n", t.title).unwrap();
        md.push_str(&markdown_table(&t.header, &t.cells));
    }
    let sharing: Vec<&str> =
        group.iter().filter(|s| s.writer_shares_cpu == Some(true)).map(|s| s.strategy.as_str()).collect();
    if !sharing.is_empty() {
        writeln!(
            md,
            "The writer shared a CPU with a reader ({}): transition latencies include waiting for the scheduler, \
             not only for the strategy.\n",
            sharing.join(", ")
        )
        .unwrap();
    }
    let flags = flag_lines(group);
    if !flags.is_empty() {
        for f in flags {
            writeln!(md, "- {f}").unwrap();
        }
        md.push('\n');
    }
}

/// `report.md`: the machine and settings, how to read the tables, then one section per scenario.
pub fn markdown(run: &RunFile, summaries: &[Summary], plots: &[String], plot_note: Option<&str>) -> String {
    let mut md = String::new();
    writeln!(md, "# dispatch-bench run {}\n", run.started).unwrap();
    md.push_str(&environment(run));
    writeln!(md, "- {}\n", interference_line(summaries)).unwrap();
    md.push_str(&guide());
    for sc in scenarios(summaries) {
        let group: Vec<&Summary> = summaries.iter().filter(|s| s.scenario == sc).collect();
        scenario_section(&mut md, &sc, run.config.scenarios.iter().find(|s| s.name() == sc), &group);
    }
    plots_section(&mut md, plots, plot_note);
    md
}

/// The plots, PNG shown (the SVG beside each has the same name).
fn plots_section(md: &mut String, plots: &[String], plot_note: Option<&str>) {
    let pngs: Vec<&String> = plots.iter().filter(|p| p.ends_with(".png")).collect();
    if !pngs.is_empty() {
        writeln!(md, "## Plots\n\nEach plot is also written as SVG under the same name.\n").unwrap();
        for p in pngs {
            writeln!(md, "![{p}]({p})\n").unwrap();
        }
    }
    if let Some(note) = plot_note {
        writeln!(md, "Plots: {note}\n").unwrap();
    }
}

/// Bencher Metric Format: `{"<scenario>/<strategy>": {"latency": {value, lower_value, upper_value}, ...}}`:
/// ns/call, calls a second, the ratio to `fnptr`, the per-batch p99 (ns/call) and the transition
/// latency p99 (µs), each the median over rounds with its range.
pub fn bmf(summaries: &[Summary]) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for s in summaries {
        let measure = |sp: Spread| json!({"value": sp.median, "lower_value": sp.min, "upper_value": sp.max});
        let mut m = serde_json::Map::new();
        m.insert("latency".into(), measure(s.ns_per_call));
        m.insert("throughput".into(), measure(s.calls_per_sec));
        for (name, value) in
            [("ratio-to-fnptr", s.ratio), ("p99-latency", s.p99_rounds), ("transition-p99-us", s.transition_p99)]
        {
            if let Some(v) = value {
                m.insert(name.into(), measure(v));
            }
        }
        out.insert(format!("{}/{}", s.scenario, s.strategy), m.into());
    }
    out.into()
}

/// One run of a cross-host report: a label (its CPU by what it is, made unique) and its summaries.
#[derive(Debug)]
pub struct HostRun {
    pub label: String,
    pub run: RunFile,
    pub summaries: Vec<Summary>,
}

impl HostRun {
    /// Labels runs by their CPU ("AMD Zen 4 (25/17/1), 2 CPUs", see [`Env::host_label`]): VMs
    /// all call themselves "vm", and their CPU is what tells their figures apart. A label that
    /// several runs share gets `#2`, `#3`, … on its later ones.
    ///
    /// [`Env::host_label`]: crate::env::Env::host_label
    pub fn label(runs: Vec<RunFile>) -> Vec<Self> {
        let mut out: Vec<HostRun> = Vec::new();
        for run in runs {
            let host = run.env.host_label();
            let seen = out.iter().filter(|h| h.run.env.host_label() == host).count();
            let label = if seen == 0 { host } else { format!("{host} #{}", seen + 1) };
            out.push(HostRun { label, summaries: summarize(&run.rows), run });
        }
        out
    }
}

/// The cross-host `report.md`: each host's environment, then per scenario a table per figure with
/// a column per host (`-`: not measured there).
pub fn hosts_markdown(hosts: &[HostRun], plots: &[String], plot_note: Option<&str>) -> String {
    let mut md = String::new();
    let labels: Vec<&str> = hosts.iter().map(|h| h.label.as_str()).collect();
    writeln!(md, "# dispatch-bench across {} runs: {}\n", hosts.len(), labels.join(", ")).unwrap();
    writeln!(
        md,
        "Each run was measured on its own machine; figures are medians over its rounds. Ratios to `fnptr` compare \
         across machines best: each is taken within one round on one machine. Differences in the environments \
         below (CPU, kernel, governor, a VM) explain differences in the figures.\n"
    )
    .unwrap();
    writeln!(md, "## Hosts\n").unwrap();
    for h in hosts {
        writeln!(md, "### {} (run of {})\n", h.label, h.run.started).unwrap();
        md.push_str(&environment(&h.run));
        writeln!(md, "- {}\n", interference_line(&h.summaries)).unwrap();
    }
    md.push_str(&guide());
    let mut names: Vec<String> = Vec::new();
    for h in hosts {
        for sc in scenarios(&h.summaries) {
            if !names.contains(&sc) {
                names.push(sc);
            }
        }
    }
    type Figure = (&'static str, fn(&Summary) -> String);
    let figures: [Figure; 3] = [
        ("x fnptr, median (min-max)", |s| {
            s.ratio.map_or("-".into(), |r| format!("{:.2} ({:.2}-{:.2})", r.median, r.min, r.max))
        }),
        ("ns/call, median (min-max)", |s| {
            format!("{:.2} ({:.2}-{:.2})", s.ns_per_call.median, s.ns_per_call.min, s.ns_per_call.max)
        }),
        ("per-batch p99, ns/call", |s| if s.p99.is_finite() { format!("{:.2}", s.p99) } else { "-".into() }),
    ];
    for name in names {
        writeln!(md, "## {name}\n").unwrap();
        let scenario = hosts.iter().find_map(|h| h.run.config.scenarios.iter().find(|s| s.name() == name));
        if let Some(sc) = scenario {
            writeln!(md, "*{}.*\n", sc.describe()).unwrap();
        }
        let strategies: Vec<&str> = dispatch::strategy::ALL
            .iter()
            .map(|i| i.name)
            .filter(|n| hosts.iter().any(|h| h.summaries.iter().any(|s| s.scenario == name && s.strategy == *n)))
            .collect();
        let mut header = vec!["strategy"];
        header.extend(labels.iter().copied());
        for (title, cell) in figures {
            let cells: Vec<Vec<String>> = strategies
                .iter()
                .map(|st| {
                    let mut row = vec![(*st).to_owned()];
                    row.extend(hosts.iter().map(|h| {
                        h.summaries.iter().find(|s| s.scenario == name && s.strategy == *st).map_or("-".into(), |s| {
                            format!("{}{}", cell(s), if s.flagged_rounds > 0 { " !" } else { "" })
                        })
                    }));
                    row
                })
                .collect();
            writeln!(md, "{title}:\n").unwrap();
            md.push_str(&markdown_table(&header, &cells));
        }
    }
    writeln!(md, "A `!` marks a figure with rounds flagged for interference on that host (see its section).\n")
        .unwrap();
    plots_section(&mut md, plots, plot_note);
    md
}

/// `rows.csv`: one line per row of `run.json`, every field a column, nested ones named by their
/// path (`batch_ns.p99`, `sched.0.migrations`), lists of text joined with `; `. Generated from the
/// serialized rows, so a field added to [`Row`] is a column without a change here.
pub fn rows_csv(rows: &[Row]) -> Result<String, serde_json::Error> {
    fn flatten(path: String, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
        let join = |k: &str| if path.is_empty() { k.to_owned() } else { format!("{path}.{k}") };
        match v {
            serde_json::Value::Object(o) => o.iter().for_each(|(k, v)| flatten(join(k), v, out)),
            serde_json::Value::Array(a) if a.iter().all(|x| x.is_string()) => {
                out.push((path, a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join("; ")))
            }
            serde_json::Value::Array(a) => {
                a.iter().enumerate().for_each(|(i, v)| flatten(join(&i.to_string()), v, out))
            }
            serde_json::Value::Null => out.push((path, String::new())),
            serde_json::Value::String(s) => out.push((path, s.clone())),
            other => out.push((path, other.to_string())),
        }
    }
    let flat: Vec<Vec<(String, String)>> = rows
        .iter()
        .map(|r| {
            let mut cells = Vec::new();
            flatten(String::new(), &serde_json::to_value(r)?, &mut cells);
            Ok(cells)
        })
        .collect::<Result<_, serde_json::Error>>()?;
    // What identifies a row first, then columns in the order they first appear (serde_json sorts
    // fields by name): rows with more readers add `sched.N` columns.
    let mut columns: Vec<&str> = vec!["scenario", "strategy", "run"];
    for (name, _) in flat.iter().flatten() {
        if !columns.contains(&name.as_str()) {
            columns.push(name);
        }
    }
    // RFC 4180: quote a field holding a comma, quote or line break, doubling its quotes.
    let quote = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_owned() }
    };
    let mut csv = columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(",") + "\n";
    for cells in &flat {
        let line: Vec<String> = columns
            .iter()
            .map(|c| cells.iter().find(|(n, _)| n == c).map_or(String::new(), |(_, v)| quote(v)))
            .collect();
        csv.push_str(&line.join(","));
        csv.push('\n');
    }
    Ok(csv)
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

    /// A run under transitions: `fnptr` (immediate) with violations, `klp` (per-task) with one,
    /// and a scenario whose name the config describes.
    fn transition_run() -> RunFile {
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
        crate::record::test_support::run(rows)
    }

    #[test]
    fn the_report_decodes_scenarios_marks_expected_violations_and_fits_120_columns() {
        let run = transition_run();
        let summaries = summarize(&run.rows);
        let md = markdown(&run, &summaries, &[], Some("no font"));
        let scenario = &run.config.scenarios[0];
        assert_eq!(scenario.name(), run.rows[0].scenario, "the test's rows belong to the config's scenario");
        assert!(md.contains(&format!("*{}.*", scenario.describe())), "{md}");
        assert!(md.contains("1 reader thread, no writer (steady state)"), "{md}");
        // Both consistency models of the run are explained, with the strategies that have them.
        assert!(md.contains("`immediate` (fnptr)") && md.contains("violations under transitions are EXPECTED"));
        assert!(md.contains("| fnptr | immediate | 3000 |"), "{md}");
        assert!(md.contains("| 22212 (expected) |"), "fnptr's violations are expected: {md}");
        assert!(md.contains("| klp FAIL | per-task |") && md.contains("| 3 | 0 |"), "klp's fail the run: {md}");
        assert!(md.contains("18.0 ns per timed batch, subtracted"), "clock overhead: {md}");
        assert!(md.contains("every reader pinned to a CPU of its own"), "pinning: {md}");
        assert!(md.contains("Plots: no font"));
        for (col, _) in COLUMNS {
            assert!(md.contains(&format!("- `{col}`: ")), "column {col} unexplained");
        }
        let wide: Vec<&str> = md.lines().filter(|l| l.starts_with('|') && l.chars().count() > MAX_WIDTH).collect();
        assert!(wide.is_empty(), "table lines wider than {MAX_WIDTH}: {wide:#?}");
    }

    #[test]
    fn a_wide_table_is_split_repeating_the_first_column() {
        let header: Vec<&str> = vec!["strategy", "a", "b", "c"];
        let cells = vec![vec!["klp".to_owned(), "x".repeat(60), "y".repeat(60), "z".repeat(10)]];
        let md = markdown_table(&header, &cells);
        let tables: Vec<&str> = md.split("\n\n").filter(|t| !t.is_empty()).collect();
        assert_eq!(tables.len(), 2, "{md}");
        assert!(tables[0].starts_with("| strategy | a |") && tables[1].starts_with("| strategy | b | c |"), "{md}");
        assert!(md.lines().all(|l| l.chars().count() <= MAX_WIDTH), "{md}");
        // A narrow table stays one.
        let narrow = markdown_table(&header[..2], &[vec!["klp".into(), "1".into()]]);
        assert_eq!(narrow, "| strategy | a |\n|---|---|\n| klp | 1 |\n\n");
    }

    #[test]
    fn bmf_has_tail_and_transition_measures() {
        let out = bmf(&summarize(&transition_run().rows));
        let klp = &out["per-site_r1_steady_s8seq_d1_cycle_c4096/klp"];
        assert_eq!(klp["p99-latency"], json!({"value": 3.0, "lower_value": 2.0, "upper_value": 4.0}));
        assert_eq!(klp["transition-p99-us"], json!({"value": 101.0, "lower_value": 100.0, "upper_value": 102.0}));
        assert_eq!(klp["ratio-to-fnptr"]["value"], 1.5);
        let steady = bmf(&summarize(&rows([1.0; 3])));
        let fnptr = &steady["per-site_r1_steady_s8seq_d1_cycle_c4096/fnptr"];
        assert!(fnptr.get("transition-p99-us").is_none(), "no writer, no transition measure: {fnptr}");
    }

    #[test]
    fn rows_csv_has_a_column_per_field_and_quotes_text() {
        let mut run = transition_run();
        run.rows[0].interference.reasons = vec!["a, b".into(), "say \"c\"".into()];
        let csv = rows_csv(&run.rows).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 1 + run.rows.len());
        assert!(lines[0].starts_with("scenario,strategy,run,") && lines[0].contains(",batch_ns.p99,"), "{}", lines[0]);
        assert!(lines[1].contains(",\"a, b; say \"\"c\"\"\","), "{}", lines[1]);
        // Every line has the header's columns (the quoted comma is one field).
        let fields = |l: &str| l.split(',').count() - l.matches("a, b").count();
        assert!(lines.iter().all(|l| fields(l) == fields(lines[0])), "{csv}");
        let p99 = lines[0].split(',').position(|c| c == "batch_ns.p99").unwrap();
        assert_eq!(lines[2].split(',').nth(p99), Some("2.0"), "klp's first round: {}", lines[2]);
    }

    #[test]
    fn the_cross_host_report_has_a_column_per_host_and_each_environment() {
        let a = transition_run();
        let mut b = transition_run();
        b.env.cpu_model = "AMD EPYC 9654".into();
        let cpu = b.env.cpu.as_mut().unwrap();
        (cpu.family, cpu.model, cpu.stepping, cpu.microarchitecture) = (Some(26), Some(2), Some(1), "Zen 5".into());
        for r in &mut b.rows {
            r.ns_per_call *= 2.0;
        }
        let mut old = transition_run();
        old.env.cpu = None;
        let hosts = HostRun::label(vec![a.clone(), b, a, old]);
        let labels: Vec<&str> = hosts.iter().map(|h| h.label.as_str()).collect();
        // Labelled by the CPU, never by the host name that every VM shares; a run recorded before
        // the CPU's identity by its model string and host.
        let (zen4, zen5) = ("AMD Zen 4 (25/17/1), 2 CPUs", "AMD Zen 5 (26/2/1), 2 CPUs");
        assert_eq!(labels, [zen4, zen5, &format!("{zen4} #2"), "AMD EPYC on test-host"]);
        let md = hosts_markdown(&hosts[..3], &[], None);
        assert!(md.contains(&format!("| strategy | {zen4} | {zen5} | {zen4} #2 |")), "{md}");
        assert!(md.contains("| klp | 1.50 (1.50-1.50) | 3.00 (3.00-3.00) | 1.50 (1.50-1.50) |"), "{md}");
        assert!(md.contains(&format!("### {zen5}")) && md.contains("AMD EPYC 9654"), "{md}");
        assert!(md.contains("- **CPU**: AMD Zen 5 (26/2/1), 2 CPUs; microcode"), "{md}");
        assert!(md.lines().filter(|l| l.starts_with('|')).all(|l| l.chars().count() <= MAX_WIDTH), "{md}");
    }

    #[test]
    fn no_check_without_a_per_site_steady_scenario() {
        let shared_only: Vec<Row> = rows([1.0; 3]).into_iter().filter(|r| r.call_sites == CallSites::Shared).collect();
        assert!(method_check(&shared_only).is_none());
    }
}
