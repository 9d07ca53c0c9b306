//! `report.html`: a run's report as one self-contained page, as criterion's `report/index.html`
//! is for its users: the summary first, then the machine, each scenario's tables (sortable by a
//! click on a header, flagged rows marked, exact values on hover) and every plot, its SVG inlined.
//!
//! Nothing is fetched: no CDN, stylesheet, script or font from elsewhere (the page's own
//! Content-Security-Policy forbids it), so the file shows the same mailed, archived or offline.
//! Every text that comes from data (strategy and host names, reasons, labels) goes through
//! [`esc`]. The page's script is run in a real browser by `tests/html.rs`; opened with `#selftest`
//! in its address, the page sorts every table by every column and writes the verdict into
//! `<p id="selftest">`.
//!
//! Only rendering lives here: every figure and verdict comes from the [`summary`](crate::summary)
//! layer, and the tables and the environment are [`report`](mod@crate::report)'s, so report.md and
//! report.html say the same.

use std::fmt::Write;
use std::path::Path;

use crate::answer;
use crate::config::Scenario;
use crate::hosts::HostRun;
use crate::plot;
use crate::record::RunFile;
use crate::report;
use crate::summary::{Spread, Summary, scenarios};

/// `text` with HTML's five special characters escaped: safe in an element and in a quoted
/// attribute.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` (already escaped) with the spans between pairs of `marker` wrapped in `<tag>`; the
/// text outside them goes through `outside`. An unpaired marker stays as it is.
fn spans(text: &str, marker: &str, tag: &str, outside: &dyn Fn(&str) -> String) -> String {
    let parts: Vec<&str> = text.split(marker).collect();
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        if i % 2 == 0 {
            out.push_str(&outside(part));
        } else if i + 1 < parts.len() {
            write!(out, "<{tag}>{part}</{tag}>").unwrap();
        } else {
            write!(out, "{marker}{}", outside(part)).unwrap();
        }
    }
    out
}

/// report.md's inline Markdown (`` `code` ``, `**bold**`) as HTML, escaped first: the environment
/// and the guide are written once, in report.rs, for both reports.
fn inline(md: &str) -> String {
    spans(&esc(md), "`", "code", &|t| spans(t, "**", "strong", &|t| t.to_owned()))
}

/// report.md's blocks (headings, `- ` lists, paragraphs) as HTML.
fn blocks(md: &str) -> String {
    let mut out = String::new();
    let mut list = false;
    for line in md.lines() {
        let item = line.strip_prefix("- ");
        if list && item.is_none() {
            out.push_str("</ul>\n");
            list = false;
        }
        if let Some(item) = item {
            if !list {
                out.push_str("<ul>\n");
                list = true;
            }
            writeln!(out, "<li>{}</li>", inline(item)).unwrap();
        } else if let Some(heading) = line.strip_prefix("## ") {
            writeln!(out, "<h3>{}</h3>", inline(heading)).unwrap();
        } else if !line.trim().is_empty() {
            writeln!(out, "<p>{}</p>", inline(line)).unwrap();
        }
    }
    if list {
        out.push_str("</ul>\n");
    }
    out
}

/// One cell: its text, and where the text is rounded, the exact value (the sort key) and a hover
/// title saying it.
struct Cell {
    text: String,
    exact: Option<(f64, String)>,
    flagged: bool,
}

/// One row: its cells, a class (`flagged`, `failed`) and a hover title saying why.
struct Row {
    class: Vec<&'static str>,
    title: Option<String>,
    cells: Vec<Cell>,
}

/// A table, sortable by a click on a header (the page's script finds it by its class).
fn table(caption: &str, header: &[String], rows: &[Row]) -> String {
    let mut h = String::from("<div class=\"scroll\"><table class=\"sortable\">\n");
    writeln!(h, "<caption>{}</caption>", esc(caption)).unwrap();
    h.push_str("<thead><tr>");
    for col in header {
        write!(h, "<th scope=\"col\" title=\"click to sort\">{}</th>", esc(col)).unwrap();
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    for row in rows {
        h.push_str("<tr");
        if !row.class.is_empty() {
            write!(h, " class=\"{}\"", row.class.join(" ")).unwrap();
        }
        if let Some(title) = &row.title {
            write!(h, " title=\"{}\"", esc(title)).unwrap();
        }
        h.push('>');
        for cell in &row.cells {
            let mut class = Vec::new();
            // Right-aligned where the text is a figure: a number, or `-` for none.
            if cell.text.starts_with(|c: char| c.is_ascii_digit()) || cell.text == "-" {
                class.push("num");
            }
            if cell.flagged {
                class.push("flagged");
            }
            h.push_str("<td");
            if !class.is_empty() {
                write!(h, " class=\"{}\"", class.join(" ")).unwrap();
            }
            if let Some((sort, title)) = &cell.exact {
                write!(h, " data-sort=\"{sort}\" title=\"{}\"", esc(title)).unwrap();
            }
            write!(h, ">{}</td>", esc(&cell.text)).unwrap();
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody></table></div>\n");
    h
}

/// The exact figures behind a rounded `median (min-max)` cell.
fn spread_title(s: Spread, unit: &str, rounds: usize) -> (f64, String) {
    (s.median, format!("median {} {unit}, min {}, max {} over {rounds} round(s)", s.median, s.min, s.max))
}

fn value_title(v: f64, unit: &str) -> Option<(f64, String)> {
    v.is_finite().then(|| (v, format!("{v} {unit}")))
}

/// The exact value behind the rounded cell of column `header` of [`report::tables`], where the
/// column is a figure of `s`; `None` for a column of words (or one this list does not know yet:
/// it then sorts by the number its text starts with).
fn exact(header: &str, s: &Summary) -> Option<(f64, String)> {
    let n = s.rounds;
    match header {
        "ns/call (min-max)" => Some(spread_title(s.ns_per_call, "ns/call", n)),
        "x fnptr (min-max)" => s.ratio_to_fnptr.map(|r| spread_title(r, "x fnptr", n)),
        "Mcalls/s" => {
            let c = s.calls_per_sec;
            Some((
                c.median / 1e6,
                format!("median {} calls/s, min {}, max {} over {n} round(s)", c.median, c.min, c.max),
            ))
        }
        "p50" => value_title(s.p50, "ns/call (per-batch p50)"),
        "p99" => value_title(s.p99, "ns/call (per-batch p99)"),
        "p99.9" => value_title(s.p999, "ns/call (per-batch p99.9)"),
        "max" => value_title(s.max, "ns/call (slowest batch)"),
        "tr p50 us" => s.transition_us.and_then(|p| value_title(p.p50, "µs")),
        "tr p99 us" => s.transition_p99.map(|p| spread_title(p, "µs", n)),
        "svc p99 us" => s.service_p99_us.and_then(|v| value_title(v, "µs")),
        "on-CPU %" => s.on_cpu_share.and_then(|v| value_title(v * 100.0, "%")),
        _ => None,
    }
}

/// Why a flagged row is flagged, in words (the hover title of its row, the line under its tables).
fn flag_reason(s: &Summary) -> String {
    format!("{} flagged in {}/{} round(s): {}", s.strategy, s.flagged_rounds, s.rounds, s.interference.join(", "))
}

/// A table of [`report::tables`], its rows annotated from the summaries they were made from.
fn run_table(t: &report::Table, group: &[&Summary]) -> String {
    let header: Vec<String> = t.header.iter().map(|h| (*h).to_owned()).collect();
    let rows: Vec<Row> = t
        .cells
        .iter()
        .enumerate()
        .map(|(i, cells)| {
            // `tables` makes one row per summary, in order; the strategy's name (first cell,
            // `klp FAIL` for a failed one) confirms the match before anything is said of it.
            let s = group.get(i).filter(|s| cells.first().and_then(|c| c.split(' ').next()) == Some(&s.strategy));
            let mut class = Vec::new();
            if s.is_some_and(|s| s.flagged_rounds > 0) {
                class.push("flagged");
            }
            if s.is_some_and(|s| s.failed) {
                class.push("failed");
            }
            Row {
                class,
                title: s.filter(|s| s.flagged_rounds > 0).map(|s| flag_reason(s)),
                cells: t
                    .header
                    .iter()
                    .zip(cells)
                    .map(|(h, text)| Cell { text: text.clone(), exact: s.and_then(|s| exact(h, s)), flagged: false })
                    .collect(),
            }
        })
        .collect();
    table(t.title, &header, &rows)
}

/// The legend under a scenario's tables, and each flagged row's reason.
fn flag_legend(group: &[&Summary]) -> String {
    let flagged: Vec<&&Summary> = group.iter().filter(|s| s.flagged_rounds > 0).collect();
    if flagged.is_empty() {
        return String::new();
    }
    let mut h = String::from(
        "<p class=\"legend\"><span class=\"key\"></span>flagged: rounds whose figures include other tasks' time \
         (interference):</p>\n<ul class=\"flags\">\n",
    );
    for s in flagged {
        writeln!(h, "<li>{}</li>", esc(&flag_reason(s))).unwrap();
    }
    h.push_str("</ul>\n");
    h
}

/// The anchor of a scenario's section.
fn anchor(scenario: &Scenario) -> String {
    format!("sc-{}", esc(&scenario.name()))
}

/// The plots that were drawn, each SVG inlined (read from `dir`, where plot.rs wrote it), or why
/// there are none; returns the HTML and how many SVGs it holds.
fn plots(dir: &Path, plots: &[String], plot_note: Option<&str>) -> (String, usize) {
    let mut h = String::from("<section id=\"plots\">\n<h2>Plots</h2>\n");
    let mut inlined = 0;
    for file in plots.iter().filter(|p| p.ends_with(".svg")) {
        let stem = file.trim_end_matches(".svg");
        let svg = std::fs::read_to_string(dir.join(file)).map_err(|e| e.to_string()).and_then(|text| {
            // Inlined from its `<svg` on: a prolog (`<?xml …?>`) has no place inside HTML.
            text.find("<svg").map(|at| text[at..].to_owned()).ok_or_else(|| "no <svg> element in it".to_owned())
        });
        match svg {
            Ok(svg) => {
                inlined += 1;
                writeln!(
                    h,
                    "<figure id=\"plot-{0}\">\n{svg}\n<figcaption>{0} (also {0}.png beside this file)</figcaption>\n</figure>",
                    esc(stem)
                )
                .unwrap();
            }
            Err(why) => {
                writeln!(h, "<p class=\"note\">{}: could not be inlined: {}</p>", esc(file), esc(&why)).unwrap()
            }
        }
    }
    if let Some(note) = plot_note {
        writeln!(h, "<p class=\"note\">Plots: {}</p>", esc(note)).unwrap();
    } else if inlined == 0 {
        h.push_str("<p class=\"note\">No plot has data from this run.</p>\n");
    }
    h.push_str("</section>\n");
    (h, inlined)
}

/// Links from a scenario to the plots: every figure has a panel per scenario it covers.
fn plot_links(plots: &[String]) -> String {
    let links: Vec<String> = plots
        .iter()
        .filter_map(|p| p.strip_suffix(".svg"))
        .map(|stem| format!("<a href=\"#plot-{0}\">{0}</a>", esc(stem)))
        .collect();
    if links.is_empty() {
        return String::new();
    }
    format!("<p class=\"see\">Plots with a panel per scenario: {}</p>\n", links.join(" · "))
}

/// The checks the summary layer makes today: the method check, the fidelity check (where the run
/// made one), the interference verdict and the consistency verdict, one line each, marked `ok` or
/// `warn`.
fn checks(run: &RunFile, summaries: &[Summary]) -> String {
    let mut h = String::from("<ul class=\"checks\">\n");
    let mut line = |ok: bool, text: &str| {
        writeln!(h, "<li class=\"{}\">{}</li>", if ok { "ok" } else { "warn" }, esc(text)).unwrap();
    };
    match &run.method_check {
        Some(check) => line(check.predicted, &report::method_line(check)),
        None => line(
            false,
            "method check: not made; it needs direct and fnptr in a per-site steady scenario (the default run has them)",
        ),
    }
    if let Some(check) = &run.fidelity_check {
        line(check.within, &crate::fidelity::line(check));
    }
    line(summaries.iter().all(|s| s.flagged_rounds == 0), &report::interference_line(summaries));
    let failures = crate::summary::failures(summaries);
    if failures.is_empty() {
        line(true, "consistency: no strategy broke what it promises (an immediate strategy's violations are expected)");
    } else {
        line(false, &format!("consistency FAILED (the run fails): {}", failures.join("; ")));
    }
    h.push_str("</ul>\n");
    h
}

/// The top of the page: what a reader needs first, from the summary layer. A block the summary
/// layer adds (a ranked strategy × regime matrix, for one) is one more call here.
pub fn summary_block(run: &RunFile, summaries: &[Summary]) -> String {
    let mut h = String::from("<section id=\"summary\">\n<h2>Summary</h2>\n");
    h.push_str(&answer_matrix(summaries));
    h.push_str(&checks(run, summaries));
    let findings = answer::findings(summaries, run.method_check.as_ref());
    if !findings.is_empty() {
        h.push_str("<ul class=\"findings\">\n");
        for f in findings {
            writeln!(h, "<li>{}</li>", esc(&f)).unwrap();
        }
        h.push_str("</ul>\n");
    }
    h.push_str("</section>\n");
    h
}

/// The answer's ranked strategy × regime matrix of ratios to `fnptr` (see [`answer::matrix`]),
/// sortable like every table, a flagged cell marked, its exact median on hover.
fn answer_matrix(summaries: &[Summary]) -> String {
    let m = answer::matrix(summaries);
    if m.rows.is_empty() {
        return String::new();
    }
    let mut header = vec!["strategy".to_owned(), "consistency".to_owned()];
    header.extend(m.columns.iter().map(|c| c.title.clone()));
    let rows: Vec<Row> = m
        .rows
        .iter()
        .map(|(name, consistency, cells)| {
            let mut row = vec![
                Cell { text: name.clone(), exact: None, flagged: false },
                Cell { text: consistency.clone(), exact: None, flagged: false },
            ];
            row.extend(cells.iter().map(|c| match c {
                Some(c) => Cell {
                    text: format!("{:.2}{}", c.ratio_to_fnptr, if c.flagged { " !" } else { "" }),
                    exact: Some((c.ratio_to_fnptr, format!("{} x fnptr, median over rounds", c.ratio_to_fnptr))),
                    flagged: c.flagged,
                },
                None => Cell { text: "-".into(), exact: None, flagged: false },
            }));
            Row { class: Vec::new(), title: None, cells: row }
        })
        .collect();
    let columns: Vec<String> = m.columns.iter().map(|c| format!("{}: {}", c.title, c.scenario.name())).collect();
    table(
        &format!(
            "The answer: ns/call over fnptr's in the same round, cheapest per site first (! flagged for \
             interference). Columns: {}",
            columns.join("; ")
        ),
        &header,
        &rows,
    )
}

/// `report.html` of one run; `dir` holds the plots (`plots`, as plot.rs named them).
pub fn run_page(
    run: &RunFile,
    summaries: &[Summary],
    dir: &Path,
    plot_files: &[String],
    plot_note: Option<&str>,
) -> String {
    let e = &run.env;
    let c = &run.config;
    let mut body = String::from("<header>\n");
    writeln!(body, "<h1>dispatch-bench run {}</h1>", esc(&run.started)).unwrap();
    writeln!(
        body,
        "<p class=\"sub\"><strong>{}</strong> · host {} · kernel {} · commit {}</p>",
        esc(&e.host_label()),
        esc(&e.host),
        esc(&e.kernel),
        esc(&e.git_commit)
    )
    .unwrap();
    writeln!(
        body,
        "<p class=\"sub\">{} strategies × {} scenarios, {} round(s) of {:.2} s after {:.2} s of warm-up; figures \
         are medians over rounds</p>",
        c.strategies.len(),
        c.scenarios.len(),
        c.rounds,
        c.duration.as_secs_f64(),
        c.warmup.as_secs_f64()
    )
    .unwrap();
    body.push_str(
        "<nav><a href=\"#summary\">Summary</a> <a href=\"#machine\">Machine and settings</a> \
         <a href=\"#scenarios\">Scenarios</a> <a href=\"#plots\">Plots</a></nav>\n</header>\n",
    );
    body.push_str(&summary_block(run, summaries));
    writeln!(
        body,
        "<section id=\"machine\">\n<h2>Machine and settings</h2>\n{}</section>",
        blocks(&report::environment(run))
    )
    .unwrap();
    body.push_str("<section id=\"scenarios\">\n<h2>Scenarios</h2>\n");
    writeln!(body, "<details class=\"guide\">{}</details>", guide()).unwrap();
    let links = plot_links(plot_files);
    for sc in scenarios(summaries) {
        let group: Vec<&Summary> = summaries.iter().filter(|s| s.scenario == sc).collect();
        writeln!(body, "<section class=\"scenario\" id=\"{}\">", anchor(&sc)).unwrap();
        writeln!(body, "<h3>{}</h3>\n<p class=\"describe\">{}.</p>", esc(&sc.name()), esc(&sc.describe())).unwrap();
        for t in report::tables(&group) {
            body.push_str(&run_table(&t, &group));
        }
        let sharing: Vec<&str> =
            group.iter().filter(|s| s.writer_shares_cpu == Some(true)).map(|s| s.strategy.as_str()).collect();
        if !sharing.is_empty() {
            writeln!(
                body,
                "<p class=\"note\">The writer shared a CPU with a reader ({}): transition latencies include waiting \
                 for the scheduler, not only for the strategy.</p>",
                esc(&sharing.join(", "))
            )
            .unwrap();
        }
        body.push_str(&flag_legend(&group));
        // The scenario's own plots beside its tables (the run's figures, every scenario a panel,
        // are under Plots).
        for svg in plot::scenario_svgs(summaries, &sc, &e.host_label()) {
            writeln!(body, "<figure class=\"scenario-plot\">\n{svg}\n</figure>").unwrap();
        }
        body.push_str(&links);
        body.push_str("</section>\n");
    }
    body.push_str("</section>\n");
    body.push_str(&plots(dir, plot_files, plot_note).0);
    page(&format!("dispatch-bench run {} on {}", run.started, e.host_label()), &body)
}

/// report.rs's guide, its heading the `<summary>` of a `<details>` (closed: it is reference).
fn guide() -> String {
    let md = report::guide();
    let (heading, rest) = md.split_once('\n').unwrap_or(("", &md));
    format!("<summary>{}</summary>\n{}", inline(heading.trim_start_matches("## ")), blocks(rest))
}

/// A figure of one strategy on one host, as the cross-host report.md gives it.
type HostFigure = (&'static str, fn(&Summary) -> Option<(String, f64, String)>);

/// `report.html` of several runs (`harness report RUN RUN…`): each host by its label with its
/// environment, then per scenario a table per figure with a column per host, then the merged
/// plots.
/// The cross-host page's top: the answer host by host (a sortable table per regime, a column per
/// host) and the largest differences between hosts with their likely cause.
fn hosts_summary(hosts: &[HostRun]) -> String {
    let mut h = String::from("<section id=\"summary\">\n<h2>Summary: the answer, host by host</h2>\n");
    writeln!(h, "<p>{}</p>", inline(crate::hosts::ANSWER_NOTE)).unwrap();
    for (key, header, cells) in crate::hosts::answer_tables(hosts) {
        let rows: Vec<Row> = cells
            .into_iter()
            .map(|row| Row {
                class: Vec::new(),
                title: None,
                cells: row.into_iter().map(|text| Cell { flagged: text.ends_with(" !"), exact: None, text }).collect(),
            })
            .collect();
        h.push_str(&table(&key, &header, &rows));
    }
    let lines = crate::hosts::difference_lines(hosts);
    if !lines.is_empty() {
        h.push_str("<h3>The largest differences between hosts</h3>\n<ul class=\"findings\">\n");
        for line in lines {
            writeln!(h, "<li>{}</li>", esc(&line)).unwrap();
        }
        h.push_str("</ul>\n");
    }
    h.push_str("</section>\n");
    h
}

pub fn hosts_page(hosts: &[HostRun], dir: &Path, plot_files: &[String], plot_note: Option<&str>) -> String {
    let labels: Vec<String> = hosts.iter().map(|h| h.label.clone()).collect();
    let mut body = String::from("<header>\n");
    writeln!(body, "<h1>dispatch-bench across {} runs</h1>", hosts.len()).unwrap();
    writeln!(body, "<p class=\"sub\">{}</p>", esc(&labels.join(" · "))).unwrap();
    body.push_str(
        "<p class=\"sub\">Each run was measured on its own machine; figures are medians over its rounds. Ratios to \
         <code>fnptr</code> compare across machines best: each is taken within one round on one machine.</p>\n\
         <nav><a href=\"#summary\">Summary</a> <a href=\"#hosts\">Hosts</a> <a href=\"#scenarios\">Scenarios</a> \
         <a href=\"#plots\">Plots</a></nav>\n</header>\n",
    );
    body.push_str(&hosts_summary(hosts));
    body.push_str("<section id=\"hosts\">\n<h2>Hosts</h2>\n");
    for h in hosts {
        writeln!(body, "<h3>{} (run of {})</h3>", esc(&h.label), esc(&h.run.started)).unwrap();
        body.push_str(&blocks(&report::environment(&h.run)));
        writeln!(body, "<p>{}</p>", esc(&report::interference_line(&h.summaries))).unwrap();
    }
    body.push_str("</section>\n<section id=\"scenarios\">\n<h2>Scenarios</h2>\n");
    writeln!(body, "<details class=\"guide\">{}</details>", guide()).unwrap();
    let mut all: Vec<Scenario> = Vec::new();
    for h in hosts {
        for sc in scenarios(&h.summaries) {
            if !all.contains(&sc) {
                all.push(sc);
            }
        }
    }
    let figures: [HostFigure; 3] = [
        ("x fnptr, median (min-max)", |s| {
            s.ratio_to_fnptr.map(|r| {
                let (sort, title) = spread_title(r, "x fnptr", s.rounds);
                (format!("{:.2} ({:.2}-{:.2})", r.median, r.min, r.max), sort, title)
            })
        }),
        ("ns/call, median (min-max)", |s| {
            let r = s.ns_per_call;
            let (sort, title) = spread_title(r, "ns/call", s.rounds);
            Some((format!("{:.2} ({:.2}-{:.2})", r.median, r.min, r.max), sort, title))
        }),
        ("per-batch p99, ns/call", |s| {
            value_title(s.p99, "ns/call (per-batch p99)").map(|(sort, title)| (format!("{:.2}", s.p99), sort, title))
        }),
    ];
    let mut header = vec!["strategy".to_owned()];
    header.extend(labels.iter().cloned());
    for sc in all {
        writeln!(body, "<section class=\"scenario\" id=\"{}\">", anchor(&sc)).unwrap();
        writeln!(body, "<h3>{}</h3>\n<p class=\"describe\">{}.</p>", esc(&sc.name()), esc(&sc.describe())).unwrap();
        let strategies: Vec<&str> = dispatch::strategy::ALL
            .iter()
            .map(|i| i.name)
            .filter(|n| hosts.iter().any(|h| h.summaries.iter().any(|s| s.scenario == sc && s.strategy == *n)))
            .collect();
        let mut any_flagged = false;
        for (title, figure) in figures {
            let rows: Vec<Row> = strategies
                .iter()
                .map(|st| {
                    let mut cells = vec![Cell { text: (*st).to_owned(), exact: None, flagged: false }];
                    cells.extend(hosts.iter().map(|h| {
                        let s = h.summaries.iter().find(|s| s.scenario == sc && s.strategy == *st);
                        let flagged = s.is_some_and(|s| s.flagged_rounds > 0);
                        any_flagged |= flagged;
                        match s.and_then(|s| figure(s).map(|f| (s, f))) {
                            Some((s, (text, sort, title))) => {
                                let title = if flagged { format!("{title}; {}", flag_reason(s)) } else { title };
                                Cell { text, exact: Some((sort, title)), flagged }
                            }
                            None => Cell { text: "-".into(), exact: None, flagged },
                        }
                    }));
                    Row { class: Vec::new(), title: None, cells }
                })
                .collect();
            body.push_str(&table(title, &header, &rows));
        }
        if any_flagged {
            body.push_str(
                "<p class=\"legend\"><span class=\"key\"></span>flagged: a figure with rounds flagged for \
                 interference on that host (hover for why)</p>\n",
            );
        }
        body.push_str("</section>\n");
    }
    body.push_str("</section>\n");
    body.push_str(&plots(dir, plot_files, plot_note).0);
    page(&format!("dispatch-bench across {} runs", hosts.len()), &body)
}

/// Records every uncaught error into `data-errors` on `<html>`, where a test reading the DOM
/// finds it; first in `<head>`, so that it is in place before anything else runs.
pub const ERROR_HOOK: &str = r#"window.addEventListener("error", function (e) {
  var root = document.documentElement;
  root.setAttribute("data-errors", (root.getAttribute("data-errors") || "") + (e.message || "error") + "; ");
});"#;

/// The page's style: system fonts only (a font file would be a fetch or a megabyte).
const CSS: &str = r#"
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1b1b1b; line-height: 1.4;
  max-width: 1240px; margin: 0 auto; padding: 0 1rem 3rem; }
header { border-bottom: 1px solid #ccc; padding-bottom: .4rem; }
h1 { font-size: 1.45rem; margin: .8rem 0 .2rem; }
h2 { font-size: 1.2rem; margin: 1.4rem 0 .4rem; }
h3 { font-size: 1.02rem; margin: 1.2rem 0 .2rem; font-family: ui-monospace, monospace; }
.sub { margin: .15rem 0; color: #444; }
nav a { margin-right: 1rem; }
#summary { background: #f3f6fa; border: 1px solid #c8d4e3; border-radius: 6px; padding: .1rem 1rem .5rem;
  margin-top: .8rem; }
ul.checks { padding-left: 1.4rem; }
ul.checks li { margin: .3rem 0; }
li.ok::marker { content: "✓  "; color: #1a7f37; font-weight: 700; }
li.warn::marker { content: "!  "; color: #b35900; font-weight: 700; }
li.warn { color: #6b3500; }
.describe { margin: 0 0 .4rem; font-style: italic; color: #333; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: .3rem 0 .9rem; font-size: .88rem; }
caption { text-align: left; font-weight: 600; padding: .15rem 0; }
th, td { border: 1px solid #d6d6d6; padding: .18rem .5rem; white-space: nowrap; }
th { background: #eef0f3; cursor: pointer; user-select: none; }
th:hover { background: #dfe4ea; }
th[aria-sort=ascending]::after { content: " ▲"; }
th[aria-sort=descending]::after { content: " ▼"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td[title] { text-decoration: underline dotted #aaa; text-underline-offset: 3px; }
tr.flagged td, td.flagged { background: #fff1c9; }
tr.flagged td:first-child, td.flagged { box-shadow: inset 4px 0 #d99a00; }
tr.failed td:first-child { color: #b00020; font-weight: 700; }
.key { display: inline-block; width: 1.1em; height: .9em; vertical-align: -1px; margin-right: .4em;
  background: #fff1c9; box-shadow: inset 4px 0 #d99a00; border: 1px solid #d6d6d6; }
.legend, .see, .note { font-size: .9rem; }
.note { color: #8a4b00; }
ul.flags { font-size: .88rem; margin-top: 0; }
figure { margin: 1rem 0 1.6rem; }
figure svg { display: block; max-width: 100%; height: auto; border: 1px solid #e4e4e4; }
figcaption { font-size: .85rem; color: #555; }
details.guide { margin: .3rem 0 .8rem; font-size: .92rem; }
details.guide summary { cursor: pointer; font-weight: 600; }
code { font-family: ui-monospace, monospace; font-size: .92em; }
#selftest { font-family: ui-monospace, monospace; }
"#;

/// Sorting by a click on a header (numeric where the column has numbers), and the self-test that
/// `#selftest` in the address runs.
const SCRIPT: &str = r##""use strict";
(function () {
  var each = function (list, f) { Array.prototype.forEach.call(list, f); };
  // A cell's sort key: its exact value (data-sort) where the report gave one, else the number
  // its text starts with ("12.3 (11.0-13.1)": 12.3), else none (NaN).
  function key(td) {
    var exact = td.getAttribute("data-sort");
    if (exact !== null) return parseFloat(exact);
    var m = /^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?/.exec(td.textContent);
    return m ? parseFloat(m[0]) : NaN;
  }
  function text(td) { return td.textContent.trim(); }
  // A column is numeric when any of its cells has a number; a cell without one ("-") goes last
  // in either direction, for it is no figure.
  function numeric(table, col) {
    return Array.prototype.some.call(table.tBodies[0].rows, function (tr) { return !isNaN(key(tr.cells[col])); });
  }
  function order(a, b, col, dir, isNumeric) {
    if (!isNumeric) return dir * text(a.cells[col]).localeCompare(text(b.cells[col]));
    var x = key(a.cells[col]), y = key(b.cells[col]);
    if (isNaN(x) || isNaN(y)) return isNaN(x) === isNaN(y) ? 0 : isNaN(x) ? 1 : -1;
    return dir * (x - y);
  }
  function sortBy(table, col, dir) {
    var body = table.tBodies[0], isNumeric = numeric(table, col);
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) { return order(a, b, col, dir, isNumeric); });
    rows.forEach(function (tr) { body.appendChild(tr); });
    each(table.tHead.rows[0].cells, function (th, i) {
      if (i === col) th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
    });
  }
  function sortable(table) {
    each(table.tHead.rows[0].cells, function (th, col) {
      th.addEventListener("click", function () {
        sortBy(table, col, th.getAttribute("aria-sort") === "ascending" ? -1 : 1);
      });
    });
  }
  var tables = document.querySelectorAll("table.sortable");
  each(tables, sortable);

  function column(table, col) {
    return Array.prototype.map.call(table.tBodies[0].rows, function (tr) { return text(tr.cells[col]); });
  }
  function expect(what, got, want) {
    if (got.join("|") !== want.join("|")) throw new Error(what + ": got " + got.join(", ") + "; want " + want.join(", "));
  }
  // Clicks every header of a table made here (what a plain text sort gets wrong: 9.25 before
  // 10.5, "-" last), then of every table of the page, both ways, checking each order; leaves every
  // table sorted by its first column, descending, for the test to read from the DOM.
  function selftest() {
    var out = document.createElement("p");
    out.id = "selftest";
    document.body.insertBefore(out, document.body.firstChild);
    try {
      var t = document.createElement("table");
      t.innerHTML = "<thead><tr><th>strategy</th><th>ns</th></tr></thead><tbody>" +
        [["klp", "10.5 (9.0-11.0)"], ["direct", "-"], ["fnptr", "9.25"], ["rwlock", "100 (expected)"], ["tls", "2"]]
          .map(function (r) { return "<tr><td>" + r[0] + "</td><td>" + r[1] + "</td></tr>"; }).join("") +
        "</tbody>";
      document.body.appendChild(t);
      sortable(t);
      var th = t.tHead.rows[0].cells;
      th[1].click();
      expect("numbers ascending", column(t, 1), ["2", "9.25", "10.5 (9.0-11.0)", "100 (expected)", "-"]);
      th[1].click();
      expect("numbers descending", column(t, 1), ["100 (expected)", "10.5 (9.0-11.0)", "9.25", "2", "-"]);
      th[0].click();
      expect("names ascending", column(t, 0), ["direct", "fnptr", "klp", "rwlock", "tls"]);
      t.remove();
      var clicks = 0;
      each(tables, function (table, n) {
        each(table.tHead.rows[0].cells, function (th, col) {
          var isNumeric = numeric(table, col);
          [1, -1].forEach(function (dir) {
            th.click();
            clicks++;
            var want = dir > 0 ? "ascending" : "descending";
            if (th.getAttribute("aria-sort") !== want) throw new Error("table " + n + " column " + col + " not " + want);
            var rows = table.tBodies[0].rows;
            for (var i = 1; i < rows.length; i++) {
              if (order(rows[i - 1], rows[i], col, dir, isNumeric) > 0) {
                throw new Error("table " + n + " column " + col + " " + want + ": row " + i + " out of order");
              }
            }
          });
        });
        var first = table.tHead.rows[0].cells[0];
        first.click();
        if (first.getAttribute("aria-sort") !== "descending") first.click();
      });
      out.setAttribute("data-result", "pass");
      out.textContent = "selftest: pass: " + tables.length + " tables, " + clicks + " sorts checked";
    } catch (e) {
      out.setAttribute("data-result", "fail");
      out.textContent = "selftest: fail: " + e.message;
    }
  }
  if (location.hash === "#selftest") selftest();
})();
"##;

/// The whole page around `body`: the error hook first, then the style; the script last, when the
/// tables are there. The Content-Security-Policy lets the page run only its own inline style and
/// script and load nothing, so a fetch added by mistake fails here as it would offline.
fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; \
         script-src 'unsafe-inline'\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<script>{ERROR_HOOK}</script>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\
         <script>{SCRIPT}</script>\n</body>\n</html>\n",
        esc(title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::record::test_support::{method_rows, run, transition_run};
    use crate::summary::{method_check, summarize};

    #[test]
    fn text_from_data_is_escaped_everywhere() {
        let mut r = transition_run();
        r.skipped = vec![crate::config::Skipped { strategy: "tls".into(), reason: "<script>alert(1)</script>".into() }];
        r.env.host = "a\"b<i>".into();
        let mut summaries = summarize(&r.rows);
        summaries[0].flagged_rounds = 1;
        summaries[0].interference = vec!["<script>x()</script> & more".into()];
        let html = run_page(&r, &summaries, Path::new("/nonexistent"), &[], Some("no <font>"));
        assert!(!html.contains("<script>alert") && !html.contains("<script>x()"), "{html}");
        assert!(html.contains("<code>tls</code> (&lt;script&gt;alert(1)&lt;/script&gt;)"), "skipped reason: {html}");
        assert!(html.contains("&lt;script&gt;x()&lt;/script&gt; &amp; more"), "flag reason: {html}");
        assert!(html.contains("host a&quot;b&lt;i&gt;"), "{html}");
        assert!(html.contains("Plots: no &lt;font&gt;"), "{html}");
        // The page's own two scripts, and no other.
        assert_eq!(html.matches("<script>").count(), 2, "{html}");
        assert_eq!(esc("<a href='x'>&\"</a>"), "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;");
    }

    #[test]
    fn inline_markdown_becomes_tags_and_unpaired_markers_stay() {
        assert_eq!(inline("- **CPU**: `a<b`"), "- <strong>CPU</strong>: <code>a&lt;b</code>");
        assert_eq!(inline("one ` tick and **half"), "one ` tick and **half");
        assert_eq!(blocks("- a\n- b\n\ntext\n## H"), "<ul>\n<li>a</li>\n<li>b</li>\n</ul>\n<p>text</p>\n<h3>H</h3>\n");
    }

    #[test]
    fn the_page_has_the_summary_first_tables_with_exact_values_and_flagged_rows_marked() {
        let r = transition_run();
        let mut summaries = summarize(&r.rows);
        summaries[1].flagged_rounds = 2;
        summaries[1].interference = vec!["off CPU 12%".into()];
        let html = run_page(&r, &summaries, Path::new("/nonexistent"), &[], None);
        let summary = html.find("<section id=\"summary\">").expect("a summary");
        assert!(summary < html.find("id=\"machine\"").unwrap() && summary < html.find("class=\"scenario\"").unwrap());
        let block = &html[summary..html[summary..].find("</section>").unwrap() + summary];
        assert!(block.contains("method check: not made"), "{block}");
        assert!(block.contains("<li class=\"warn\">interference: 1 of 2 rows flagged"), "{block}");
        assert!(block.contains("consistency FAILED") && block.contains("klp: 3 violations"), "{block}");
        // klp's row is flagged and failed, with the reason on hover and under the tables.
        assert!(html.contains("<tr class=\"flagged failed\" title=\"klp flagged in 2/3 round(s): off CPU 12%\">"));
        assert!(html.contains("<span class=\"key\"></span>flagged:") && html.contains("<li>klp flagged in 2/3"));
        // A rounded cell carries its exact value, which is also its sort key.
        assert!(
            html.contains(
                "data-sort=\"1.5\" title=\"median 1.5 x fnptr, min 1.5, max 1.5 over 3 round(s)\">1.50 (1.50-1.50)"
            ),
            "{html}"
        );
        assert!(html.contains("data-sort=\"101\" title=\"median 101 µs, min 100, max 102"), "tr p99: {html}");
        // No address outside the page: only anchors, and the SVG namespace (a name, never fetched).
        assert!(!html.contains("src=") && !html.contains("<link") && !html.contains("url("));
        assert!(html.matches("href=\"").count() == html.matches("href=\"#").count());

        let check = method_check(&method_rows([1.02, 1.10, 0.98]));
        let mut predicted = run(method_rows([1.02, 1.10, 0.98]));
        predicted.method_check = check;
        let html = run_page(&predicted, &summarize(&predicted.rows), Path::new("/nonexistent"), &[], None);
        assert!(html.contains("<li class=\"ok\">method check: fnptr / direct = 1.02"), "{html}");
        assert!(html.contains("<li class=\"ok\">interference: no row flagged"), "{html}");
    }

    /// The fidelity check is one of the page's checks: `ok` within its limit, `warn` above it.
    #[test]
    fn the_fidelity_check_is_marked_ok_or_warn() {
        use crate::record::{CRound, FidelityCheck};
        let mut r = run(method_rows([1.02, 1.10, 0.98]));
        let check = |fidelity: f64| FidelityCheck {
            scenario: "s".into(),
            klp_over_fnptr: 1.15 * fidelity,
            c_handler_over_c_fnptr: 1.15,
            c_fnptr_over_c_direct: 1.0,
            fidelity,
            limit: crate::fidelity::FIDELITY_LIMIT,
            within: fidelity <= crate::fidelity::FIDELITY_LIMIT,
            rounds: vec![CRound { round: 0, direct_ns: 1.0, fnptr_ns: 1.0, handler_ns: 1.15 }],
        };
        let page = |r: &RunFile| run_page(r, &summarize(&r.rows), Path::new("/nonexistent"), &[], None);
        assert!(!page(&r).contains("fidelity"), "no check, no line");
        r.fidelity_check = Some(check(1.0));
        assert!(page(&r).contains("<li class=\"ok\">fidelity check: klp / fnptr = 1.15"), "{}", page(&r));
        r.fidelity_check = Some(check(1.4));
        let warning = format!("<li class=\"warn\">warning: {}", esc(crate::fidelity::WARNING));
        assert!(page(&r).contains(&warning), "{}", page(&r));
    }

    #[test]
    fn svg_plots_are_inlined_and_an_unreadable_one_is_said() {
        let dir = std::env::temp_dir().join(format!("dispatch-bench-html-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ratio.svg"), "<?xml version=\"1.0\"?>\n<svg viewBox=\"0 0 1 1\"></svg>").unwrap();
        let files = ["ratio.png".to_owned(), "ratio.svg".to_owned(), "gone.svg".to_owned()];
        let (h, n) = plots(&dir, &files, None);
        assert_eq!(n, 1);
        assert!(h.contains("<figure id=\"plot-ratio\">\n<svg viewBox") && !h.contains("<?xml"), "{h}");
        assert!(h.contains("gone.svg: could not be inlined"), "{h}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
