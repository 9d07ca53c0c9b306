//! The cross-host report: runs of several machines side by side, each labelled by its CPU.

use std::fmt::Write;

use crate::answer::{self, Host, Matrix};
use crate::config::Scenario;
use crate::record::RunFile;
use crate::report::{environment, guide, interference_line, markdown_table, plots_section};
use crate::summary::{Summary, scenarios, summarize};

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

/// How many of the largest differences between hosts the report lists.
pub const DIFFERENCES_LISTED: usize = 12;

/// The answer with a column per host: for each of the answer's columns (per site, shared site,
/// cold, every reader, under transitions), a table of each strategy's ratio to `fnptr` on each
/// host: (what the column stands for, header, cells).
pub fn answer_tables(hosts: &[HostRun]) -> Vec<(String, Vec<String>, Vec<Vec<String>>)> {
    let matrices: Vec<Matrix> = hosts.iter().map(|h| answer::matrix(&h.summaries)).collect();
    let mut keys: Vec<String> = Vec::new();
    let mut strategies: Vec<&str> = Vec::new();
    for m in &matrices {
        for c in &m.columns {
            if !keys.contains(&c.key) {
                keys.push(c.key.clone());
            }
        }
        for (name, _, _) in &m.rows {
            if !strategies.contains(&name.as_str()) {
                strategies.push(name);
            }
        }
    }
    let mut header = vec!["strategy".to_owned()];
    header.extend(hosts.iter().map(|h| h.label.clone()));
    keys.into_iter()
        .map(|key| {
            let cells = strategies
                .iter()
                .map(|st| {
                    let mut row = vec![(*st).to_owned()];
                    row.extend(matrices.iter().map(|m| {
                        let cell = m.columns.iter().position(|c| c.key == key).and_then(|i| {
                            m.rows.iter().find(|(name, _, _)| name == st).and_then(|(_, _, cells)| cells[i])
                        });
                        cell.map_or("-".to_owned(), |c| {
                            format!("{:.2}{}", c.ratio_to_fnptr, if c.flagged { " !" } else { "" })
                        })
                    }));
                    row
                })
                .collect();
            (key, header.clone(), cells)
        })
        .collect()
}

/// The largest differences between hosts, one line each, with their likely cause where the runs
/// know it (at most [`DIFFERENCES_LISTED`]).
pub fn difference_lines(hosts: &[HostRun]) -> Vec<String> {
    let views: Vec<Host<'_>> = hosts
        .iter()
        .map(|h| Host { label: &h.label, summaries: &h.summaries, check: h.run.method_check.as_ref() })
        .collect();
    answer::differences(&views)
        .iter()
        .take(DIFFERENCES_LISTED)
        .map(|d| {
            let cells: Vec<String> =
                d.cells.iter().map(|(label, c)| format!("{:.2}x on {label}", c.ratio_to_fnptr)).collect();
            let cause = d.cause.as_ref().map_or(String::new(), |c| format!("; {c}"));
            format!("{}, {}: {} ({:.1}x apart){cause}", d.strategy, d.key, cells.join(", "), d.spread)
        })
        .collect()
}

/// [`answer_tables`] and [`difference_lines`] as report.md's first section.
fn answer_by_host(hosts: &[HostRun]) -> String {
    let mut md = String::new();
    writeln!(md, "## The answer, host by host\n").unwrap();
    writeln!(md, "{}\n", ANSWER_NOTE).unwrap();
    for (key, header, cells) in answer_tables(hosts) {
        writeln!(md, "{key}:\n").unwrap();
        md.push_str(&markdown_table(&header, &cells));
    }
    let lines = difference_lines(hosts);
    if !lines.is_empty() {
        writeln!(md, "### The largest differences between hosts\n").unwrap();
        for line in lines {
            writeln!(md, "- {line}").unwrap();
        }
        md.push('\n');
    }
    md
}

/// What the host-by-host tables hold.
pub const ANSWER_NOTE: &str = "Each strategy's ns/call over `fnptr`'s in the same round (median over rounds) on each \
     host; `!` marks a figure with rounds flagged for interference, `-` one not measured there.";

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
    let commits: Vec<String> = hosts.iter().map(|h| format!("{} at {}", h.label, h.run.env.git_commit)).collect();
    if hosts.iter().any(|h| h.run.env.git_commit != hosts[0].run.env.git_commit) {
        writeln!(
            md,
            "**The runs were made by different commits** ({}): a difference below may be the code's, not the \
             machine's.\n",
            commits.join(", ")
        )
        .unwrap();
    }
    md.push_str(&answer_by_host(hosts));
    writeln!(md, "## Hosts\n").unwrap();
    for h in hosts {
        writeln!(md, "### {} (run of {})\n", h.label, h.run.started).unwrap();
        md.push_str(&environment(&h.run));
        writeln!(md, "- {}\n", interference_line(&h.summaries)).unwrap();
    }
    md.push_str(&guide());
    let mut all: Vec<Scenario> = Vec::new();
    for h in hosts {
        for sc in scenarios(&h.summaries) {
            if !all.contains(&sc) {
                all.push(sc);
            }
        }
    }
    type Figure = (&'static str, fn(&Summary) -> String);
    let figures: [Figure; 3] = [
        ("x fnptr, median (min-max)", |s| {
            s.ratio_to_fnptr.map_or("-".into(), |r| format!("{:.2} ({:.2}-{:.2})", r.median, r.min, r.max))
        }),
        ("ns/call, median (min-max)", |s| {
            format!("{:.2} ({:.2}-{:.2})", s.ns_per_call.median, s.ns_per_call.min, s.ns_per_call.max)
        }),
        ("per-batch p99, ns/call", |s| if s.p99.is_finite() { format!("{:.2}", s.p99) } else { "-".into() }),
    ];
    for scenario in all {
        writeln!(md, "## {}\n", scenario.name()).unwrap();
        writeln!(md, "*{}.*\n", scenario.describe()).unwrap();
        let strategies: Vec<&str> = dispatch::strategy::ALL
            .iter()
            .map(|i| i.name)
            .filter(|n| hosts.iter().any(|h| h.summaries.iter().any(|s| s.scenario == scenario && s.strategy == *n)))
            .collect();
        let mut header = vec!["strategy"];
        header.extend(labels.iter().copied());
        for (title, cell) in figures {
            let cells: Vec<Vec<String>> = strategies
                .iter()
                .map(|st| {
                    let mut row = vec![(*st).to_owned()];
                    row.extend(hosts.iter().map(|h| {
                        h.summaries
                            .iter()
                            .find(|s| s.scenario == scenario && s.strategy == *st)
                            .map_or("-".into(), |s| {
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

#[cfg(test)]
mod tests {
    use super::*;

    use crate::record::test_support::transition_run;
    use crate::report::MAX_WIDTH;

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
        // The answer host by host comes before the hosts' sections, then the ranked differences.
        let (answer, hosts_at) = (md.find("## The answer, host by host").unwrap(), md.find("## Hosts").unwrap());
        assert!(answer < hosts_at, "{md}");
        assert!(md.contains(&format!("| strategy | {zen4} | {zen5} | {zen4} #2 |")), "{md}");
        assert!(
            md.contains("| klp | 1.50 | 1.50 | 1.50 |"),
            "ratios are per round, so twice the ns is the same ratio: {md}"
        );
        assert!(!md.contains("different commits"), "{md}");
        let mut newer = transition_run();
        newer.env.git_commit = "1111111".into();
        let md = hosts_markdown(&HostRun::label(vec![transition_run(), newer]), &[], None);
        assert!(
            md.contains(&format!(
                "**The runs were made by different commits** ({zen4} at 0000000, {zen4} #2 at 1111111)"
            )),
            "{md}"
        );
        assert!(md.lines().filter(|l| l.starts_with('|')).all(|l| l.chars().count() <= MAX_WIDTH), "{md}");
    }
}
