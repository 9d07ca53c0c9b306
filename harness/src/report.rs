//! What a run says to a person: the terminal tables and `report.md`, rendered from the
//! [`summary`](crate::summary) layer (which computes every figure and verdict).

use std::fmt::Write;

use dispatch::strategy::Consistency;

use crate::answer::{self, Matrix};
use crate::config;
use crate::record::{LOST_SHARE_LIMIT, MEAN_OVER_MEDIAN_LIMIT, MethodCheck, RunFile};
use crate::summary::{Spread, Summary, scenarios};

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
    pub header: Vec<String>,
    pub cells: Vec<Vec<String>>,
}

fn header(columns: &[&str]) -> Vec<String> {
    columns.iter().map(|c| c.to_string()).collect()
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
        header: header(&[
            "strategy",
            "ns/call (min-max)",
            "x fnptr (min-max)",
            "Mcalls/s",
            "p50",
            "p99",
            "p99.9",
            "max",
        ]),
        cells: group
            .iter()
            .map(|s| {
                vec![
                    name(s),
                    spread(s.ns_per_call),
                    s.ratio_to_fnptr.map_or("-".into(), spread),
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
            header: header(&[
                "strategy",
                "consistency",
                "transitions",
                "tr/s",
                "tr p50 us",
                "tr p99 us",
                "svc p99 us",
                "viol",
                "uar",
            ]),
            cells: group
                .iter()
                .map(|s| {
                    vec![
                        name(s),
                        s.consistency.clone(),
                        rate_cell(s),
                        s.transitions_per_sec.map_or("-".into(), |x| format!("{x:.0}")),
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
    if group.iter().any(|s| !s.phases.is_empty()) {
        out.push(phases_table(group));
    }
    out.push(Table {
        title: "What the scheduler did",
        header: header(&["strategy", "counters/call", "on-CPU %", "ctx sw (inv)", "migr", "flagged rounds"]),
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

/// Where each strategy's transition time went: the total and each phase (`dispatch::Phases`), p50
/// and p99 each (µs, medians over rounds). The phases' percentiles do not add up to the total's
/// (a percentile of a sum is no sum of percentiles), but the largest shows where the time goes.
fn phases_table(group: &[&Summary]) -> Table {
    let us = |x: f64| if x >= 100.0 { format!("{x:.0}") } else { format!("{x:.1}") };
    let pair = |p50: f64, p99: f64| format!("{} / {}", us(p50), us(p99));
    let mut columns = vec!["strategy", "total", "late"];
    columns.extend(dispatch::Phases::NAMES);
    Table {
        title: "Transition phases, us (p50 / p99)",
        header: header(&columns),
        cells: group
            .iter()
            .map(|s| {
                let mut row = vec![
                    s.strategy.clone(),
                    s.transition_us.map_or("-".into(), |t| pair(t.p50, t.p99)),
                    s.start_late.as_ref().map_or("-".into(), |l| pair(l.p50, l.p99)),
                ];
                row.extend(
                    dispatch::Phases::NAMES.iter().map(|name| {
                        s.phases.iter().find(|p| p.phase == *name).map_or("-".into(), |p| pair(p.p50, p.p99))
                    }),
                );
                row
            })
            .collect(),
    }
}

/// Each strategy's transitions in words: the phase that takes most of the median transition and
/// the one with the longest p99, slowest strategy last, so that the order of the strategies'
/// latencies reads as the order of their phases. Phases as `dispatch::Phases` documents them.
pub fn phase_words(group: &[&Summary]) -> Vec<String> {
    let mut with: Vec<&&Summary> = group.iter().filter(|s| !s.phases.is_empty() && s.transition_us.is_some()).collect();
    with.sort_by(|a, b| a.transition_us.unwrap().p50.total_cmp(&b.transition_us.unwrap().p50));
    // `batch` overlaps `start` and `complete`: named beside them, never as the largest phase.
    // The writer's late start counts as a phase here: it is part of the latency.
    let largest = |s: &Summary, f: fn(&crate::summary::PhaseSummary) -> f64| {
        s.phases
            .iter()
            .chain(&s.start_late)
            .filter(|p| p.phase != "batch")
            .max_by(|a, b| f(a).total_cmp(&f(b)))
            .map(|p| (p.phase.clone(), f(p)))
    };
    with.iter()
        .map(|s| {
            let t = s.transition_us.expect("filtered");
            let (p50_phase, p50) = largest(s, |p| p.p50).expect("has phases");
            let (p99_phase, p99) = largest(s, |p| p.p99).expect("has phases");
            let batch = s.phases.iter().find(|p| p.phase == "batch").map_or(String::new(), |b| {
                format!("; its own batch work (finish_batch) {:.1} / {:.1} us", b.p50, b.p99)
            });
            let rate = s.transitions_per_sec.map_or(String::new(), |r| format!(", {r:.0} transitions/s"));
            format!(
                "`{}`: p50 {:.1} us, most of it `{p50_phase}` ({p50:.1} us); p99 {:.1} us, the longest phase p99 \
                 `{p99_phase}` ({p99:.1} us){batch}{rate}",
                s.strategy, t.p50, t.p99
            )
        })
        .collect()
}

/// The widest line a table of `report.md` may have: what a terminal or a review pane shows
/// without wrapping.
pub const MAX_WIDTH: usize = 120;

/// A Markdown table, split into several (each repeating the first column) where one would be
/// wider than [`MAX_WIDTH`].
pub fn markdown_table<S: AsRef<str>>(header: &[S], cells: &[Vec<String>]) -> String {
    // `| a | b |`: every column takes its width plus 3, the line one more.
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            cells.iter().map(|c| c[i].chars().count()).chain([header[i].as_ref().chars().count()]).max().unwrap_or(0)
                + 3
        })
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
        writeln!(md, "{}", line(&|c| header[c].as_ref().to_owned())).unwrap();
        writeln!(md, "|{}|", cols.iter().map(|_| "---").collect::<Vec<_>>().join("|")).unwrap();
        for row in cells {
            writeln!(md, "{}", line(&|c| row[c].clone())).unwrap();
        }
        md.push('\n');
    }
    md
}

/// The answer's matrix as a table: the strategy, its consistency, then its ratio to `fnptr` in
/// each column (`!`: a round was flagged for interference; `-`: not measured).
fn answer_table(m: &Matrix) -> Table {
    let mut header = vec!["strategy".to_owned(), "consistency".to_owned()];
    header.extend(m.columns.iter().map(|c| c.title.clone()));
    let cells = m
        .rows
        .iter()
        .map(|(name, consistency, cells)| {
            let mut row = vec![name.clone(), consistency.clone()];
            row.extend(cells.iter().map(|c| {
                c.map_or("-".to_owned(), |c| format!("{:.2}{}", c.ratio_to_fnptr, if c.flagged { " !" } else { "" }))
            }));
            row
        })
        .collect();
    Table { title: "The answer", header, cells }
}

/// The lines under the answer's matrix: the method check where it passed (a failed one is the
/// first finding), the fidelity check, then the findings.
fn answer_lines(run: &RunFile, summaries: &[Summary]) -> Vec<String> {
    let check = run.method_check.as_ref();
    let passed = check.filter(|c| c.predicted).map(method_line);
    let fidelity = run.fidelity_check.as_ref().map(crate::fidelity::line);
    passed.into_iter().chain(fidelity).chain(answer::findings(summaries, check)).collect()
}

/// What the run found, for the terminal's last screen: the ranked matrix of ratios to `fnptr`,
/// the method and fidelity checks and one line per finding.
pub fn answer_terminal(run: &RunFile, summaries: &[Summary]) -> String {
    let m = answer::matrix(summaries);
    let mut out = String::new();
    if !m.rows.is_empty() {
        writeln!(
            out,
            "\n== the answer: ratio to fnptr (median over rounds; ! flagged for interference), cheapest first"
        )
        .unwrap();
        out.push_str(&aligned(&answer_table(&m)));
    }
    for line in answer_lines(run, summaries) {
        writeln!(out, "- {line}").unwrap();
    }
    out
}

/// What the run found, at the top of report.md: as [`answer_terminal`], in Markdown.
pub fn answer_markdown(run: &RunFile, summaries: &[Summary]) -> String {
    format!("## The answer\n\n{}", answer_body(run, summaries))
}

/// The answer without its heading: what the README quotes of the reference run.
pub fn answer_body(run: &RunFile, summaries: &[Summary]) -> String {
    let m = answer::matrix(summaries);
    let mut md = String::new();
    if !m.rows.is_empty() {
        writeln!(
            md,
            "Each strategy's ns/call over `fnptr`'s in the same round (median over rounds), cheapest per site first; \
             `!` marks a figure with rounds flagged for interference, `-` one not measured. The columns are the run's \
             scenarios: {}.\n",
            m.columns.iter().map(|c| format!("{} = `{}`", c.title, c.scenario.name())).collect::<Vec<_>>().join(", ")
        )
        .unwrap();
        let t = answer_table(&m);
        md.push_str(&markdown_table(&t.header, &t.cells));
    }
    for line in answer_lines(run, summaries) {
        writeln!(md, "- {line}").unwrap();
    }
    md.push('\n');
    md
}

/// A table for the terminal: columns right-aligned to their widest cell.
fn aligned(t: &Table) -> String {
    let widths: Vec<usize> = (0..t.header.len())
        .map(|i| t.cells.iter().map(|c| c[i].len()).chain([t.header[i].len()]).max().unwrap_or(0))
        .collect();
    let line =
        |cols: &[String]| cols.iter().zip(&widths).map(|(c, w)| format!("{c:>w$}")).collect::<Vec<_>>().join("  ");
    let mut out = format!("{}\n", line(&t.header));
    for c in &t.cells {
        out.push_str(&line(c));
        out.push('\n');
    }
    out
}

/// The terminal table, one block per scenario and table (per-batch percentiles in ns per call).
pub fn terminal(summaries: &[Summary]) -> String {
    let mut out = String::new();
    for sc in scenarios(summaries) {
        let group: Vec<&Summary> = summaries.iter().filter(|s| s.scenario == sc).collect();
        writeln!(out, "\n== {}", sc.name()).unwrap();
        for t in tables(&group) {
            writeln!(out, "-- {}", t.title.to_lowercase()).unwrap();
            out.push_str(&aligned(&t));
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
    item(&mut md, "Counters", counters);
    for f in &e.strategy_facts {
        item(&mut md, &format!("{} {}", f.strategy, f.what), f.value.clone());
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
            c.rounds,
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
    if let Some(check) = &run.fidelity_check {
        writeln!(md, "- {}", crate::fidelity::line(check)).unwrap();
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
    ("tr/s", "transitions completed a second (the writer's achieved rate; at `max`, what the engine sustains)"),
    (
        "tr p50 us, tr p99 us",
        "transition latency, µs: end minus *intended* start, what a caller of an open-loop writer waits",
    ),
    ("svc p99 us", "transition service time, µs: end minus actual start"),
    (
        "total, start … batch",
        "transition phases, µs, p50 / p99 each: `total` is the latency; `late` the writer's own lateness at the \
         start (actual minus intended start); `start` klp_init_transition + \
         klp_start_transition (flags and states set, funcs published, tasks marked); `migrate` until the last task \
         migrated (its safe point, or while parked); `notice` the writer's delay after the event that ended a phase; \
         `complete` klp_complete_transition up to its grace period; `grace` the grace periods; `settle` back to Idle \
         and reclaim; `batch` the strategy's own batch work (finish_batch: textpoke's membarriers), inside `start` \
         and `complete`. A long `migrate` is a task that held the transition (preempted, or not reaching a safe \
         point); a long `notice` is the writer waiting for a CPU",
    ),
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
        dispatch::loops::COLD_SITES
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
fn scenario_section(md: &mut String, scenario: &config::Scenario, group: &[&Summary]) {
    writeln!(md, "## {}\n", scenario.name()).unwrap();
    writeln!(md, "*{}.*\n", scenario.describe()).unwrap();
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
    let words = phase_words(group);
    if !words.is_empty() {
        writeln!(md, "Where the transitions' time went, fastest strategy first:\n").unwrap();
        for w in words {
            writeln!(md, "- {w}").unwrap();
        }
        md.push('\n');
    }
    if scenario.rate == config::Rate::Max {
        let rates: Vec<String> =
            group.iter().filter_map(|s| s.transitions_per_sec.map(|r| format!("{} {r:.0}", s.strategy))).collect();
        if !rates.is_empty() {
            writeln!(
                md,
                "Back to back, with {} reader(s), the writer completed (transitions a second): {}.\n",
                scenario.readers,
                rates.join(", ")
            )
            .unwrap();
        }
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
    md.push_str(&answer_markdown(run, summaries));
    writeln!(md, "## The machine and the method\n").unwrap();
    md.push_str(&environment(run));
    writeln!(md, "- {}\n", interference_line(summaries)).unwrap();
    md.push_str(&guide());
    for sc in scenarios(summaries) {
        let group: Vec<&Summary> = summaries.iter().filter(|s| s.scenario == sc).collect();
        scenario_section(&mut md, &sc, &group);
    }
    plots_section(&mut md, plots, plot_note);
    md
}

/// The plots, PNG shown (the SVG beside each has the same name).
pub fn plots_section(md: &mut String, plots: &[String], plot_note: Option<&str>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    use crate::record::test_support::{method_rows, transition_run};
    use crate::summary::{method_check, summarize};

    /// report.md opens with the answer, and the terminal ends with it: the ranked matrix, the
    /// method check, the findings.
    #[test]
    fn the_answer_comes_first_in_report_md_and_last_on_the_terminal() {
        let mut run = transition_run();
        run.method_check = method_check(&method_rows([1.02, 1.10, 0.98]));
        let summaries = summarize(&run.rows);
        let md = markdown(&run, &summaries, &[], None);
        let (answer, machine) = (md.find("## The answer").unwrap(), md.find("## The machine and the method").unwrap());
        assert!(answer < machine && md[..answer].lines().all(|l| !l.starts_with("## ")), "{md}");
        let block = &md[answer..machine];
        assert!(block.contains("| strategy | consistency | per site |"), "{block}");
        assert!(
            block.contains("| fnptr | immediate | 1.00 |") && block.contains("| klp | per-task | 1.50 |"),
            "{block}"
        );
        assert!(block.contains("- method check: fnptr / direct = 1.02"), "{block}");
        assert!(block.contains("- the cheapest per-task redirection per site is klp: 1.50x fnptr"), "{block}");
        let terminal = terminal(&summaries) + &answer_terminal(&run, &summaries);
        let last = &terminal[terminal.rfind("== the answer").unwrap()..];
        assert!(last.contains("klp") && last.ends_with("1.50x fnptr\n"), "{last}");
    }

    #[test]
    fn the_method_line_says_whether_indirect_calls_are_predicted() {
        let check = method_check(&method_rows([1.02, 1.10, 0.98])).unwrap();
        assert!(method_line(&check).starts_with("method check: fnptr / direct = 1.02"));
        assert!(method_line(&check).contains("one shared call instruction costs fnptr 8.00 ns"));
        let check = method_check(&method_rows([5.7, 5.6, 5.9])).unwrap();
        let line = method_line(&check);
        assert!(line.starts_with("warning: fnptr / direct = 5.70") && line.contains("not predicted"), "{line}");
    }

    #[test]
    fn the_report_decodes_scenarios_marks_expected_violations_and_fits_120_columns() {
        let run = transition_run();
        let summaries = summarize(&run.rows);
        let md = markdown(&run, &summaries, &[], Some("no font"));
        let scenario = &run.config.scenarios[0];
        assert_eq!(scenario, &run.rows[0].scenario, "the test's rows belong to the config's scenario");
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
}
