//! Plots of a run, each as PNG and SVG (plotters): the ratio to `fnptr` per strategy with
//! min–max whiskers (a panel per scenario; a series per host in the cross-host report), reader
//! throughput against readers, slowdown against transition rate, per-batch latency percentiles
//! and transition latency percentiles per scenario, ns/call in each call-site regime, and each
//! scenario's whole transition-latency distribution as a percentile plot (`percentiles`).
//!
//! Every plot is one [`Figure`]: panels of strategies (or reader counts, or rates) along x, a log
//! y axis (the figures span decades: `direct` next to `rwlock`), medians as dots with min–max
//! whiskers, and the legend in a strip of its own beside the panels, never over the data. Text
//! needs a TrueType font, registered by [`plotfont::register`] (a DejaVu or Liberation font from
//! the usual system places, or from `DISPATCH_BENCH_FONT_DIRS`). On a machine without one the run
//! still completes and writes every other file, but no plot: `report.md` and stderr say why and
//! how to fix it. (criterion's plots need the same font: see `plotfont`.)

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

mod percentiles;

use crate::config::{CallSites, Rate, Scenario};
use crate::hosts::HostRun;
use crate::summary::{Spread, Summary};

fn color(i: usize) -> RGBColor {
    const PALETTE: [RGBColor; 10] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    PALETTE[i % PALETTE.len()]
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// One panel: categories along x, one value (median and range) per series and category.
#[derive(Debug)]
struct Panel {
    title: String,
    x_desc: String,
    y_desc: String,
    xs: Vec<String>,
    /// Per series (in legend order), per category: the value, if measured.
    series: Vec<Vec<Option<Spread>>>,
    /// Joins each series' medians (x is an ordered quantity: readers, rates).
    lines: bool,
}

/// A plot: a title, panels in a grid, and the legend naming the series of every panel.
#[derive(Debug)]
struct Figure {
    title: String,
    panels: Vec<Panel>,
    legend: Vec<String>,
}

const LEGEND_WIDTH: u32 = 190;
const PANEL: (u32, u32) = (620, 360);

impl Figure {
    fn columns(&self) -> usize {
        self.panels.len().clamp(1, 2)
    }

    fn size(&self) -> (u32, u32) {
        let rows = self.panels.len().div_ceil(self.columns()) as u32;
        (self.columns() as u32 * PANEL.0 + LEGEND_WIDTH, 50 + rows * PANEL.1)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let root = root.titled(&self.title, ("sans-serif", 20))?;
        let (w, _) = root.dim_in_pixel();
        let (grid, legend) = root.split_horizontally(w - LEGEND_WIDTH);
        let rows = self.panels.len().div_ceil(self.columns());
        for (panel, area) in self.panels.iter().zip(grid.split_evenly((rows, self.columns()))) {
            draw_panel(&area, panel)?;
        }
        for (i, label) in self.legend.iter().enumerate() {
            let y = 40 + 24 * i as i32;
            legend.draw(&Rectangle::new([(8, y - 6), (20, y + 6)], color(i).filled()))?;
            legend.draw(&Text::new(label.clone(), (28, y - 8), ("sans-serif", 15)))?;
        }
        let y = 50 + 24 * self.legend.len() as i32;
        legend.draw(&Text::new("dot: median over rounds", (8, y), ("sans-serif", 13)))?;
        legend.draw(&Text::new("whisker: min to max", (8, y + 18), ("sans-serif", 13)))?;
        Ok(())
    }

    /// Writes `NAME.png` and `NAME.svg` into `dir`; returns their names.
    fn save(&self, dir: &Path, name: &str) -> Result<Vec<String>, String> {
        let mut files = Vec::new();
        for ext in ["png", "svg"] {
            let file = format!("{name}.{ext}");
            let path = dir.join(&file);
            let drawn = if ext == "png" {
                let root = BitMapBackend::new(&path, self.size()).into_drawing_area();
                self.draw(&root).and_then(|()| Ok(root.present()?))
            } else {
                let root = SVGBackend::new(&path, self.size()).into_drawing_area();
                self.draw(&root).and_then(|()| Ok(root.present()?))
            };
            drawn.map_err(|e| {
                // A half-drawn file (a full disk) is no plot.
                let _ = std::fs::remove_file(&path);
                format!("drawing {file}: {e}")
            })?;
            files.push(file);
        }
        Ok(files)
    }
}

fn draw_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, panel: &Panel) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let values: Vec<f64> = panel
        .series
        .iter()
        .flatten()
        .flatten()
        .flat_map(|s| [s.min, s.median, s.max])
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    let (Some(lo), Some(hi)) = (values.iter().copied().reduce(f64::min), values.iter().copied().reduce(f64::max))
    else {
        area.draw(&Text::new(format!("{}: nothing measured", panel.title), (20, 20), ("sans-serif", 14)))?;
        return Ok(());
    };
    // Over two decades or more, plotters labels only powers of ten; reaching down to the power
    // of ten below the lowest point gives every point a labelled tick at or below it (a panel of
    // transition latencies once had its medians under the lowest label, unreadable). Narrower
    // panels get labels at 2, 3, … 9 times a power of ten and need nothing.
    let (bottom, top) = (lo / 1.5, hi * 1.5);
    let bottom = if top / bottom >= 100.0 { bottom.min(10f64.powf(lo.log10().floor())) } else { bottom };
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 14))
        .margin(8)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.5..panel.xs.len() as f64 - 0.5, (bottom..top).log_scale())?;
    let xs = &panel.xs;
    chart
        .configure_mesh()
        .disable_x_mesh()
        // Log axes draw a light line per minor tick: a grey band where decades are close.
        .light_line_style(TRANSPARENT)
        .x_labels(xs.len() + 1)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 0.01 && i >= 0.0 {
                xs.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_desc(panel.x_desc.as_str())
        .y_desc(panel.y_desc.as_str())
        .draw()?;
    let n = panel.series.len();
    for (k, series) in panel.series.iter().enumerate() {
        let c = color(k);
        // Series side by side within a category, so that their whiskers do not overlap.
        let dx = if n > 1 { (k as f64 - (n - 1) as f64 / 2.0) * 0.5 / n as f64 } else { 0.0 };
        let points: Vec<(f64, Spread)> =
            series.iter().enumerate().filter_map(|(i, p)| p.map(|p| (i as f64 + dx, p))).collect();
        if panel.lines {
            chart.draw_series(LineSeries::new(points.iter().map(|(x, p)| (*x, p.median)), c.stroke_width(2)))?;
        }
        for (x, p) in points {
            if p.max > p.min {
                chart.draw_series([
                    PathElement::new(vec![(x, p.min), (x, p.max)], c.stroke_width(2)),
                    PathElement::new(vec![(x - 0.05, p.min), (x + 0.05, p.min)], c.stroke_width(2)),
                    PathElement::new(vec![(x - 0.05, p.max), (x + 0.05, p.max)], c.stroke_width(2)),
                ])?;
            }
            chart.draw_series([Circle::new((x, p.median), 4, c.filled())])?;
        }
    }
    Ok(())
}

fn scale(s: Spread, by: f64) -> Spread {
    Spread { median: s.median * by, min: s.min * by, max: s.max * by }
}

fn exact(v: f64) -> Option<Spread> {
    (v.is_finite() && v > 0.0).then_some(Spread { median: v, min: v, max: v })
}

/// The strategies of `summaries`, in registry order.
fn strategies<'a>(summaries: impl Iterator<Item = &'a Summary> + Clone) -> Vec<String> {
    dispatch::strategy::ALL
        .iter()
        .map(|i| i.name.to_owned())
        .filter(|n| summaries.clone().any(|s| &s.strategy == n))
        .collect()
}

fn find<'a>(summaries: &'a [Summary], scenario: &Scenario, strategy: &str) -> Option<&'a Summary> {
    summaries.iter().find(|s| &s.scenario == scenario && s.strategy == strategy)
}

/// A panel per scenario of `names`, strategies along x, `value` per series of `runs`.
fn per_scenario(
    names: &[Scenario],
    runs: &[&[Summary]],
    y_desc: &str,
    values: &[fn(&Summary) -> Option<Spread>],
) -> Vec<Panel> {
    names
        .iter()
        .map(|sc| {
            let xs = strategies(runs.iter().flat_map(|r| r.iter()).filter(|s| &s.scenario == sc));
            let series = runs
                .iter()
                .flat_map(|r| values.iter().map(move |v| (r, v)))
                .map(|(r, v)| xs.iter().map(|st| find(r, sc, st).and_then(v)).collect())
                .collect();
            Panel { title: sc.name(), x_desc: String::new(), y_desc: y_desc.into(), xs, series, lines: false }
        })
        .collect()
}

const RATIO_TITLE: &str = "Cost over a plain function pointer: ns/call ÷ fnptr's in the same round, per strategy";

fn ratio(runs: &[&[Summary]], legend: Vec<String>) -> Figure {
    let mut names: Vec<Scenario> = Vec::new();
    for s in runs.iter().flat_map(|r| r.iter()).filter(|s| s.ratio_to_fnptr.is_some()) {
        if !names.contains(&s.scenario) {
            names.push(s.scenario.clone());
        }
    }
    let panels = per_scenario(&names, runs, "x fnptr (log)", &[|s| s.ratio_to_fnptr]);
    Figure { title: RATIO_TITLE.into(), panels, legend }
}

/// The percentiles the latency plots show, in the order of their series.
const PERCENTILES: [&str; 4] = ["p50", "p99", "p99.9", "max"];

fn latency(summaries: &[Summary]) -> Figure {
    let names = crate::summary::scenarios(summaries);
    let values: Vec<fn(&Summary) -> Option<Spread>> =
        vec![|s| exact(s.p50), |s| exact(s.p99), |s| exact(s.p999), |s| exact(s.max)];
    Figure {
        title: "Per-batch ns/call percentiles per strategy, every scenario (median over rounds; max: the worst round)"
            .into(),
        panels: per_scenario(&names, &[summaries], "ns per call (log)", &values),
        legend: PERCENTILES.iter().map(|l| l.to_string()).collect(),
    }
}

fn transitions(summaries: &[Summary]) -> Option<Figure> {
    let mut names: Vec<Scenario> = Vec::new();
    for s in summaries.iter().filter(|s| s.transition_us.is_some()) {
        if !names.contains(&s.scenario) {
            names.push(s.scenario.clone());
        }
    }
    if names.is_empty() {
        return None;
    }
    let values: Vec<fn(&Summary) -> Option<Spread>> = vec![
        |s| s.transition_us.and_then(|p| exact(p.p50)),
        |s| s.transition_us.and_then(|p| exact(p.p99)),
        |s| s.transition_us.and_then(|p| exact(p.p999)),
        |s| s.transition_us.and_then(|p| exact(p.max)),
    ];
    Some(Figure {
        title: "Transition latency distribution per strategy, µs (end minus intended start; median over rounds)".into(),
        panels: per_scenario(&names, &[summaries], "µs (log)", &values),
        legend: PERCENTILES.iter().map(|l| l.to_string()).collect(),
    })
}

fn rate_words(rate: Rate) -> String {
    match rate {
        Rate::Steady => "steady state, no writer".into(),
        Rate::Hz(hz) => format!("writer at {hz} transitions/s"),
        Rate::Max => "writer back to back".into(),
    }
}

/// Rates in order: steady, then increasing rates, then back to back.
fn rate_key(rate: Rate) -> f64 {
    match rate {
        Rate::Steady => 0.0,
        Rate::Hz(hz) => hz,
        Rate::Max => f64::INFINITY,
    }
}

/// The summaries of per-site scenarios, each with its scenario.
fn per_site(summaries: &[Summary]) -> Vec<(&Summary, &Scenario)> {
    summaries.iter().filter(|s| s.scenario.call_sites == CallSites::PerSite).map(|s| (s, &s.scenario)).collect()
}

/// Calls a second against readers, at the lowest rate the run has (steady state if it has it).
fn throughput(summaries: &[Summary]) -> Option<Figure> {
    let rows = per_site(summaries);
    let rate = rows.iter().map(|(_, c)| c.rate).min_by(|a, b| rate_key(*a).total_cmp(&rate_key(*b)))?;
    let rows: Vec<_> = rows.into_iter().filter(|(_, c)| c.rate == rate).collect();
    let mut readers: Vec<usize> = rows.iter().map(|(_, c)| c.readers).collect();
    readers.sort_unstable();
    readers.dedup();
    let names = strategies(rows.iter().map(|(s, _)| *s));
    let series = names
        .iter()
        .map(|st| {
            readers
                .iter()
                .map(|r| {
                    rows.iter()
                        .find(|(s, c)| &s.strategy == st && c.readers == *r)
                        .map(|(s, _)| scale(s.calls_per_sec, 1e-6))
                })
                .collect()
        })
        .collect();
    let mut panels = vec![Panel {
        title: "all readers together".into(),
        x_desc: "reader threads".into(),
        y_desc: "million calls / s (log)".into(),
        xs: readers.iter().map(|r| r.to_string()).collect(),
        series,
        lines: true,
    }];
    // Beside it, what the writer sustains back to back: completed transitions a second.
    let max: Vec<_> = per_site(summaries).into_iter().filter(|(_, c)| c.rate == Rate::Max).collect();
    if !max.is_empty() {
        let mut readers: Vec<usize> = max.iter().map(|(_, c)| c.readers).collect();
        readers.sort_unstable();
        readers.dedup();
        let series = names
            .iter()
            .map(|st| {
                readers
                    .iter()
                    .map(|r| {
                        max.iter()
                            .find(|(s, c)| &s.strategy == st && c.readers == *r)
                            .and_then(|(s, _)| s.transitions_per_sec.and_then(exact))
                    })
                    .collect()
            })
            .collect();
        panels.push(Panel {
            title: "completed transitions a second, writer back to back".into(),
            x_desc: "reader threads".into(),
            y_desc: "transitions / s (log)".into(),
            xs: readers.iter().map(|r| r.to_string()).collect(),
            series,
            lines: true,
        });
    }
    Some(Figure {
        title: format!("Reader throughput against readers (per-site call sites, {})", rate_words(rate)),
        panels,
        legend: names,
    })
}

/// ns/call at each transition rate over the same strategy's steady ns/call, a panel per reader
/// count; `None` without a steady scenario and another rate to set against it.
fn slowdown(summaries: &[Summary]) -> Option<Figure> {
    let rows = per_site(summaries);
    let mut rates: Vec<Rate> = Vec::new();
    for (_, c) in &rows {
        if !rates.contains(&c.rate) {
            rates.push(c.rate);
        }
    }
    rates.sort_by(|a, b| rate_key(*a).total_cmp(&rate_key(*b)));
    if rates.first() != Some(&Rate::Steady) || rates.len() < 2 {
        return None;
    }
    let mut readers: Vec<usize> = rows.iter().map(|(_, c)| c.readers).collect();
    readers.sort_unstable();
    readers.dedup();
    let names = strategies(rows.iter().map(|(s, _)| *s));
    let at = |st: &str, r: usize, rate: Rate| {
        rows.iter().find(|(s, c)| s.strategy == st && c.readers == r && c.rate == rate).map(|(s, _)| s)
    };
    let panels = readers
        .iter()
        .map(|&r| Panel {
            title: format!("{r} reader(s)"),
            x_desc: "transition rate (steady: no writer; max: back to back)".into(),
            y_desc: "ns/call ÷ steady ns/call (log)".into(),
            xs: rates.iter().map(|r| r.to_string()).collect(),
            series: names
                .iter()
                .map(|st| {
                    let steady = at(st, r, Rate::Steady).map(|s| s.ns_per_call.median);
                    rates.iter().map(|&rate| Some(scale(at(st, r, rate)?.ns_per_call, 1.0 / steady?))).collect()
                })
                .collect(),
            lines: true,
        })
        .collect();
    Some(Figure {
        title: "Slowdown of the readers against transition rate (per-site call sites; 1.0: as fast as steady)".into(),
        panels,
        legend: names,
    })
}

/// Per call-site regime, its first steady scenario with one reader: what `regimes` sets side by
/// side.
fn regime_scenarios(summaries: &[Summary]) -> Vec<(CallSites, Scenario)> {
    let mut out: Vec<(CallSites, Scenario)> = Vec::new();
    for s in summaries.iter().filter(|s| s.scenario.readers == 1 && s.scenario.is_steady()) {
        if !out.iter().any(|(c, _)| *c == s.scenario.call_sites) {
            out.push((s.scenario.call_sites, s.scenario.clone()));
        }
    }
    out
}

fn regimes(summaries: &[Summary]) -> Option<Figure> {
    let groups = regime_scenarios(summaries);
    if groups.len() < 2 {
        return None;
    }
    let xs = strategies(summaries.iter());
    Some(Figure {
        title: "ns per call by call-site regime (steady state, 1 reader)".into(),
        panels: vec![Panel {
            // The scenarios' full names are too long for a caption; report.md lists them.
            title: "each regime's steady one-reader scenario (named in report.md)".into(),
            x_desc: String::new(),
            y_desc: "ns per call (log)".into(),
            series: groups
                .iter()
                .map(|(_, sc)| xs.iter().map(|st| find(summaries, sc, st).map(|s| s.ns_per_call)).collect())
                .collect(),
            xs,
            lines: false,
        }],
        legend: groups.iter().map(|(c, _)| c.name().to_owned()).collect(),
    })
}

/// Draws every plot of a run into `dir`; returns the file names written, or why none could be.
pub fn draw_all(dir: &Path, summaries: &[Summary], host: &str) -> Result<Vec<String>, String> {
    plotfont::register()?;
    let mut figures = vec![("ratio", ratio(&[summaries], vec![host.to_owned()])), ("latency", latency(summaries))];
    let optional = [
        ("throughput", throughput(summaries)),
        ("slowdown", slowdown(summaries)),
        ("transitions", transitions(summaries)),
        ("regimes", regimes(summaries)),
    ];
    figures.extend(optional.into_iter().filter_map(|(n, f)| Some((n, f?))));
    let mut files = Vec::new();
    for (name, figure) in figures.iter().filter(|(_, f)| !f.panels.is_empty()) {
        files.extend(figure.save(dir, name)?);
    }
    files.extend(percentiles::draw_percentiles(dir, summaries)?);
    Ok(files)
}

/// The cross-host plot: the ratio to `fnptr` with a series per host.
pub fn draw_hosts(dir: &Path, hosts: &[HostRun]) -> Result<Vec<String>, String> {
    plotfont::register()?;
    let runs: Vec<&[Summary]> = hosts.iter().map(|h| h.summaries.as_slice()).collect();
    ratio(&runs, hosts.iter().map(|h| h.label.clone()).collect()).save(dir, "ratio")
}
