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

fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// A marker's shape: with the colour, what tells a series apart, for any count of series (the
/// 11th strategy once had the 1st's colour and marker).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Circle,
    Triangle,
    Square,
    Cross,
}

/// The style of the series labelled `label`, `k`-th in its legend: a strategy keeps its registry
/// place's colour and marker in every plot (so `rwlock` is the same in each), anything else its
/// place in the legend. Colours cycle every 10, shapes every 10 colours: 40 distinct styles.
fn style(label: &str, k: usize) -> (RGBColor, Shape) {
    let i = dispatch::strategy::ALL.iter().position(|info| info.name == label).unwrap_or(k);
    let shape = [Shape::Circle, Shape::Triangle, Shape::Square, Shape::Cross][(i / PALETTE.len()) % 4];
    (color(i), shape)
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// A value drawn: the median and range over rounds, and whether a round was flagged.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Point {
    spread: Spread,
    flagged: bool,
}

impl From<Spread> for Point {
    fn from(spread: Spread) -> Self {
        Point { spread, flagged: false }
    }
}

/// One panel: categories along x, one value (median and range) per series and category.
#[derive(Debug)]
struct Panel {
    title: String,
    x_desc: String,
    y_desc: String,
    xs: Vec<String>,
    /// Per series (in legend order), per category: the value, if measured.
    series: Vec<Vec<Option<Point>>>,
    /// Joins each series' medians (x is an ordered quantity: readers, rates).
    lines: bool,
    /// A horizontal line to read the values against (1.0 on a ratio: as fast as the baseline),
    /// always inside the y range.
    reference: Option<f64>,
    /// Dashed grey lines along the categories (the ideal scaling of the baseline).
    guides: Vec<Vec<Option<f64>>>,
}

impl Panel {
    fn new(title: String, x_desc: &str, y_desc: &str, xs: Vec<String>, series: Vec<Vec<Option<Point>>>) -> Self {
        Panel {
            title,
            x_desc: x_desc.into(),
            y_desc: y_desc.into(),
            xs,
            series,
            lines: false,
            reference: None,
            guides: Vec::new(),
        }
    }

    /// Every value the panel draws (medians, ranges, the reference line, the guides).
    fn values(&self) -> Vec<f64> {
        let points = self.series.iter().flatten().flatten().flat_map(|p| [p.spread.min, p.spread.median, p.spread.max]);
        points
            .chain(self.reference)
            .chain(self.guides.iter().flatten().flatten().copied())
            .filter(|v| v.is_finite() && *v > 0.0)
            .collect()
    }
}

/// A plot: a title, panels in a grid, and the legend naming the series of every panel.
#[derive(Debug)]
struct Figure {
    title: String,
    panels: Vec<Panel>,
    legend: Vec<String>,
    /// One y range for every panel: where panels are read against each other.
    shared_y: bool,
    /// What the dashed guides stand for, in the legend.
    guide: Option<String>,
    /// What the panels' reference line stands for, in the legend.
    reference: &'static str,
}

const LEGEND_WIDTH: u32 = 250;
const PANEL: (u32, u32) = (620, 360);

/// A y range on a log axis, reaching down to a power of ten at or below the lowest value when the
/// values span a decade or more (plotters then labels only powers of ten: every point has a
/// labelled tick at or below it; a cold panel once showed data at 2.6 under its lowest label, 10),
/// else 1.5x around them (plotters labels 2, 3, … 9 times a power of ten there).
fn y_range(values: &[f64]) -> Option<(f64, f64)> {
    let lo = values.iter().copied().reduce(f64::min)?;
    let hi = values.iter().copied().reduce(f64::max)?;
    let (bottom, top) = (lo / 1.5, hi * 1.5);
    let bottom = if top / bottom >= 10.0 { bottom.min(10f64.powf(lo.log10().floor())) } else { bottom };
    Some((bottom, top))
}

/// A tick's label: three significant digits at most, no trailing zeros, thousands as `k` and
/// millions as `M` (`100000.0` read as `100k`).
fn tick(v: f64) -> String {
    let (v, unit) = match v.abs() {
        a if a >= 1e6 => (v / 1e6, "M"),
        a if a >= 1e4 => (v / 1e3, "k"),
        _ => (v, ""),
    };
    let digits = match v.abs() {
        a if a >= 100.0 => 0,
        a if a >= 10.0 => 1,
        a if a >= 1.0 => 2,
        _ => 3,
    };
    let text = format!("{v:.digits$}");
    let text = if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.').to_owned() } else { text };
    format!("{text}{unit}")
}

impl Figure {
    fn new(title: impl Into<String>, panels: Vec<Panel>, legend: Vec<String>) -> Self {
        Figure { title: title.into(), panels, legend, shared_y: false, guide: None, reference: "1.0: as fnptr" }
    }

    fn columns(&self) -> usize {
        self.panels.len().clamp(1, 2)
    }
}

/// What is drawn into a file: its size, and how it draws itself on either backend.
trait Plot {
    fn size(&self) -> (u32, u32);
    fn draw_on<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static;

    /// Writes `NAME.png` and `NAME.svg` into `dir`, each whole or not at all; returns their names.
    fn save(&self, dir: &Path, name: &str) -> Result<Vec<String>, String> {
        let (width, height) = self.size();
        let mut rgb = vec![0u8; width as usize * height as usize * 3];
        {
            let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
            self.draw_on(&root).and_then(|()| Ok(root.present()?)).map_err(|e| format!("drawing {name}.png: {e}"))?;
        }
        let png = encode_png(&rgb, width, height).map_err(|e| format!("encoding {name}.png: {e}"))?;
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
            self.draw_on(&root).and_then(|()| Ok(root.present()?)).map_err(|e| format!("drawing {name}.svg: {e}"))?;
        }
        let files = [(format!("{name}.png"), png), (format!("{name}.svg"), svg.into_bytes())];
        for (file, bytes) in &files {
            crate::output::write_file(&dir.join(file), bytes, true)?;
        }
        Ok(files.into_iter().map(|(file, _)| file).collect())
    }
}

/// An 8-bit RGB image as PNG, by the `png` crate: plotters' own PNG writer would bring in the
/// `image` crate and its decoders, about 7 s of CPU in a fresh release build for this one call.
fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.write_header()?.write_image_data(rgb)?;
    Ok(out)
}

impl Plot for Figure {
    fn size(&self) -> (u32, u32) {
        let rows = self.panels.len().div_ceil(self.columns()) as u32;
        // Tall enough for the legend and its notes (up to six lines) too.
        let legend = 70 + 24 * self.legend.len() as u32 + 6 * 18;
        (self.columns() as u32 * PANEL.0 + LEGEND_WIDTH, (50 + rows * PANEL.1).max(legend))
    }

    fn draw_on<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let root = root.titled(&self.title, ("sans-serif", 20))?;
        let (w, _) = root.dim_in_pixel();
        let (grid, legend) = root.split_horizontally(w - LEGEND_WIDTH);
        let rows = self.panels.len().div_ceil(self.columns());
        let shared =
            self.shared_y.then(|| y_range(&self.panels.iter().flat_map(Panel::values).collect::<Vec<_>>())).flatten();
        let styles: Vec<(RGBColor, Shape)> = self.legend.iter().enumerate().map(|(k, l)| style(l, k)).collect();
        for (panel, area) in self.panels.iter().zip(grid.split_evenly((rows, self.columns()))) {
            draw_panel(&area, panel, &styles, shared)?;
        }
        let mut y = 40;
        for (label, st) in self.legend.iter().zip(&styles) {
            legend_marker(&legend, (14, y), *st)?;
            legend.draw(&Text::new(label.clone(), (28, y - 8), ("sans-serif", 15)))?;
            y += 24;
        }
        let note = |text: &str, y: &mut i32| -> DrawResult {
            legend.draw(&Text::new(text.to_owned(), (8, *y), ("sans-serif", 13)))?;
            *y += 18;
            Ok(())
        };
        y += 4;
        note("filled: median over rounds", &mut y)?;
        let points = || self.panels.iter().flat_map(|p| p.series.iter().flatten().flatten());
        if points().any(|p| p.flagged) {
            note("hollow: rounds flagged for", &mut y)?;
            note("  interference", &mut y)?;
        }
        if points().any(|p| p.spread.max > p.spread.min) {
            note("whisker: min to max", &mut y)?;
        }
        if self.panels.iter().any(|p| p.reference.is_some()) {
            note(&format!("grey line: {}", self.reference), &mut y)?;
        }
        if let Some(guide) = &self.guide {
            note(&format!("dashed: {guide}"), &mut y)?;
        }
        Ok(())
    }
}

/// A legend's marker, in pixels.
fn legend_marker<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    at: (i32, i32),
    (c, shape): (RGBColor, Shape),
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let e = EmptyElement::at(at);
    match shape {
        Shape::Circle => area.draw(&(e + Circle::new((0, 0), 5, c.filled())))?,
        Shape::Triangle => area.draw(&(e + TriangleMarker::new((0, 0), 6, c.filled())))?,
        Shape::Square => area.draw(&(e + Rectangle::new([(-5, -5), (5, 5)], c.filled())))?,
        Shape::Cross => area.draw(&(e + Cross::new((0, 0), 5, c.stroke_width(2))))?,
    }
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    styles: &[(RGBColor, Shape)],
    shared: Option<(f64, f64)>,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let Some((bottom, top)) = shared.or_else(|| y_range(&panel.values())) else {
        area.draw(&Text::new(format!("{}: nothing measured", panel.title), (20, 20), ("sans-serif", 14)))?;
        return Ok(());
    };
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
        .y_label_formatter(&|v| tick(*v))
        .x_desc(panel.x_desc.as_str())
        .y_desc(panel.y_desc.as_str())
        .draw()?;
    let (left, right) = (-0.5, panel.xs.len() as f64 - 0.5);
    if let Some(y) = panel.reference {
        chart.draw_series([PathElement::new(vec![(left, y), (right, y)], RGBColor(150, 150, 150).stroke_width(1))])?;
    }
    for guide in &panel.guides {
        let points: Vec<(f64, f64)> = guide.iter().enumerate().filter_map(|(i, v)| v.map(|v| (i as f64, v))).collect();
        chart.draw_series(DashedLineSeries::new(points, 6, 4, RGBColor(120, 120, 120).stroke_width(1)))?;
    }
    let n = panel.series.len();
    for (k, series) in panel.series.iter().enumerate() {
        let st = styles.get(k).copied().unwrap_or_else(|| style("", k));
        let c = st.0;
        // Series side by side within a category, so that their whiskers do not overlap.
        let dx = if n > 1 { (k as f64 - (n - 1) as f64 / 2.0) * 0.5 / n as f64 } else { 0.0 };
        let points: Vec<(f64, Point)> =
            series.iter().enumerate().filter_map(|(i, p)| p.map(|p| (i as f64 + dx, p))).collect();
        if panel.lines {
            chart.draw_series(LineSeries::new(points.iter().map(|(x, p)| (*x, p.spread.median)), c.stroke_width(2)))?;
        }
        for (x, p) in points {
            let s = p.spread;
            if s.max > s.min {
                chart.draw_series([
                    PathElement::new(vec![(x, s.min), (x, s.max)], c.stroke_width(2)),
                    PathElement::new(vec![(x - 0.05, s.min), (x + 0.05, s.min)], c.stroke_width(2)),
                    PathElement::new(vec![(x - 0.05, s.max), (x + 0.05, s.max)], c.stroke_width(2)),
                ])?;
            }
            // Hollow where a round was flagged for interference: its figure includes other
            // tasks' time.
            let (c, shape) = st;
            let fill = if p.flagged { c.stroke_width(2) } else { c.filled() };
            let e = EmptyElement::at((x, s.median));
            match shape {
                Shape::Circle => chart.draw_series([e + Circle::new((0, 0), 4, fill)])?,
                Shape::Triangle => chart.draw_series([e + TriangleMarker::new((0, 0), 5, fill)])?,
                Shape::Square => chart.draw_series([e + Rectangle::new([(-4, -4), (4, 4)], fill)])?,
                Shape::Cross => {
                    chart.draw_series([e + Cross::new((0, 0), 4, c.stroke_width(if p.flagged { 1 } else { 2 }))])?
                }
            };
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

/// `s`'s value as drawn: hollow where a round was flagged for interference.
fn point(s: &Summary, value: Option<Spread>) -> Option<Point> {
    value.map(|spread| Point { spread, flagged: s.flagged_rounds > 0 })
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
                .map(|(r, v)| xs.iter().map(|st| find(r, sc, st).and_then(|s| point(s, v(s)))).collect())
                .collect();
            Panel::new(sc.short(), "", y_desc, xs, series)
        })
        .collect()
}

const RATIO_TITLE: &str = "Cost over a plain function pointer: ns/call ÷ fnptr's in the same round, per strategy";

fn ratio_to_fnptr(runs: &[&[Summary]], legend: Vec<String>) -> Figure {
    let mut names: Vec<Scenario> = Vec::new();
    for s in runs.iter().flat_map(|r| r.iter()).filter(|s| s.ratio_to_fnptr.is_some()) {
        if !names.contains(&s.scenario) {
            names.push(s.scenario.clone());
        }
    }
    let mut panels = per_scenario(&names, runs, "x fnptr (log)", &[|s| s.ratio_to_fnptr]);
    for p in &mut panels {
        // 1.0 is fnptr itself: below it (direct, textpoke) is faster than a plain pointer.
        p.reference = Some(1.0);
    }
    Figure { shared_y: true, ..Figure::new(RATIO_TITLE, panels, legend) }
}

/// The percentiles the latency plots show, in the order of their series.
const PERCENTILES: [&str; 4] = ["p50", "p99", "p99.9", "max"];

fn latency(summaries: &[Summary]) -> Figure {
    let names = crate::summary::scenarios(summaries);
    let values: Vec<fn(&Summary) -> Option<Spread>> =
        vec![|s| exact(s.p50), |s| exact(s.p99), |s| exact(s.p999), |s| exact(s.max)];
    let panels = per_scenario(&names, &[summaries], "ns per call (log)", &values);
    let title = "Per-batch ns/call percentiles per strategy, every scenario (median over rounds; max: the worst round)";
    Figure { shared_y: true, ..Figure::new(title, panels, PERCENTILES.iter().map(|l| l.to_string()).collect()) }
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
    let panels = per_scenario(&names, &[summaries], "µs (log)", &values);
    let title = "Transition latency distribution per strategy, µs (end minus intended start; median over rounds)";
    Some(Figure { shared_y: true, ..Figure::new(title, panels, PERCENTILES.iter().map(|l| l.to_string()).collect()) })
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

/// The reader counts of `rows`, ascending, and for each strategy of `names` its `value` at each.
fn against_readers(
    names: &[String],
    rows: &[(&Summary, &Scenario)],
    value: impl Fn(&Summary) -> Option<Spread>,
) -> (Vec<usize>, Vec<Vec<Option<Point>>>) {
    let mut readers: Vec<usize> = rows.iter().map(|(_, c)| c.readers).collect();
    readers.sort_unstable();
    readers.dedup();
    let series = names
        .iter()
        .map(|st| {
            readers
                .iter()
                .map(|r| {
                    let (s, _) = rows.iter().find(|(s, c)| &s.strategy == st && c.readers == *r)?;
                    point(s, value(s))
                })
                .collect()
        })
        .collect();
    (readers, series)
}

/// Calls a second against readers, at the lowest rate the run has (steady state if it has it).
fn throughput(summaries: &[Summary]) -> Option<Figure> {
    let rows = per_site(summaries);
    let rate = rows.iter().map(|(_, c)| c.rate).min_by(|a, b| rate_key(*a).total_cmp(&rate_key(*b)))?;
    let rows: Vec<_> = rows.into_iter().filter(|(_, c)| c.rate == rate).collect();
    let names = strategies(rows.iter().map(|(s, _)| *s));
    let (readers, series) = against_readers(&names, &rows, |s| Some(scale(s.calls_per_sec, 1e-6)));
    // Ideal scaling: the baseline's one-reader throughput times the readers.
    let one = rows.iter().find(|(s, c)| s.strategy == dispatch::strategy::BASELINE && c.readers == readers[0]);
    let ideal = one
        .map(|(s, _)| {
            readers.iter().map(|r| Some(s.calls_per_sec.median * 1e-6 * *r as f64 / readers[0] as f64)).collect()
        })
        .into_iter()
        .collect();
    let mut panels = vec![Panel {
        lines: true,
        guides: ideal,
        ..Panel::new(
            "all readers together".into(),
            "reader threads",
            "million calls / s (log)",
            readers.iter().map(|r| r.to_string()).collect(),
            series,
        )
    }];
    // Beside it, what the writer sustains back to back: completed transitions a second.
    let max: Vec<_> = per_site(summaries).into_iter().filter(|(_, c)| c.rate == Rate::Max).collect();
    if !max.is_empty() {
        let (readers, series) = against_readers(&names, &max, |s| s.transitions_per_sec.and_then(exact));
        panels.push(Panel {
            lines: true,
            ..Panel::new(
                "completed transitions a second, writer back to back".into(),
                "reader threads",
                "transitions / s (log)",
                readers.iter().map(|r| r.to_string()).collect(),
                series,
            )
        });
    }
    let title = format!("Reader throughput against readers (per-site call sites, {})", rate_words(rate));
    Some(Figure { guide: Some("fnptr scaling linearly".into()), ..Figure::new(title, panels, names) })
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
        .map(|&r| {
            let series = names
                .iter()
                .map(|st| {
                    let steady = at(st, r, Rate::Steady).map(|s| s.ns_per_call.median);
                    rates
                        .iter()
                        .map(|&rate| {
                            let s = at(st, r, rate)?;
                            point(s, Some(scale(s.ns_per_call, 1.0 / steady?)))
                        })
                        .collect()
                })
                .collect();
            Panel {
                lines: true,
                reference: Some(1.0),
                ..Panel::new(
                    if r == 1 { "1 reader".into() } else { format!("{r} readers") },
                    "transition rate (steady: no writer; max: back to back)",
                    "ns/call ÷ steady ns/call (log)",
                    rates.iter().map(|r| r.to_string()).collect(),
                    series,
                )
            }
        })
        .collect();
    let title = "Slowdown of the readers against transition rate (per-site call sites; 1.0: as fast as steady)";
    Some(Figure { shared_y: true, reference: "1.0: as fast as steady", ..Figure::new(title, panels, names) })
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
    let series = groups
        .iter()
        .map(|(_, sc)| {
            xs.iter().map(|st| find(summaries, sc, st).and_then(|s| point(s, Some(s.ns_per_call)))).collect()
        })
        .collect();
    let panel = Panel::new("each regime's steady one-reader scenario".into(), "", "ns per call (log)", xs, series);
    let legend = groups.iter().map(|(c, _)| c.name().to_owned()).collect();
    Some(Figure::new("ns per call by call-site regime (steady state, 1 reader)", vec![panel], legend))
}

/// Draws every plot of a run into `dir`; returns the file names written, or why none could be.
pub fn draw_all(dir: &Path, summaries: &[Summary], host: &str) -> Result<Vec<String>, String> {
    plotfont::register()?;
    let mut figures =
        vec![("ratio", ratio_to_fnptr(&[summaries], vec![host.to_owned()])), ("latency", latency(summaries))];
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

/// The plots of one scenario, for its section of report.html: its ratio to `fnptr` per strategy
/// and its per-batch latency percentiles, each an SVG document (the run's figures, one panel per
/// scenario, stay in their own files). Empty without a font.
pub fn scenario_svgs(summaries: &[Summary], scenario: &Scenario, host: &str) -> Vec<String> {
    if plotfont::register().is_err() {
        return Vec::new();
    }
    let own: Vec<Summary> = summaries.iter().filter(|s| &s.scenario == scenario).cloned().collect();
    let mut ratio = ratio_to_fnptr(&[&own], vec![host.to_owned()]);
    let mut latency = latency(&own);
    ratio.title = format!("Ratio to fnptr: {}", scenario.short());
    latency.title = format!("Per-batch ns/call percentiles: {}", scenario.short());
    [ratio, latency]
        .into_iter()
        .filter(|f| !f.panels.is_empty())
        .filter_map(|f| {
            let mut svg = String::new();
            {
                let root = SVGBackend::with_string(&mut svg, f.size()).into_drawing_area();
                f.draw_on(&root).ok()?;
                root.present().ok()?;
            }
            Some(svg)
        })
        .collect()
}

/// A plot of one run's summaries, where it has what the plot needs.
type Builder = fn(&[Summary]) -> Option<Figure>;

/// The cross-host plots: the ratio to `fnptr` with a series per host, and every other plot of a
/// run with each host's panels side by side (titled with its label) where the hosts' legends
/// agree, as they do for runs of the same command; where they do not, each host's own (`NAME-2`
/// for the second host, and so on).
pub fn draw_hosts(dir: &Path, hosts: &[HostRun]) -> Result<Vec<String>, String> {
    plotfont::register()?;
    let runs: Vec<&[Summary]> = hosts.iter().map(|h| h.summaries.as_slice()).collect();
    let mut files = ratio_to_fnptr(&runs, hosts.iter().map(|h| h.label.clone()).collect()).save(dir, "ratio")?;
    let builders: [(&str, Builder); 5] = [
        ("latency", |s| Some(latency(s))),
        ("throughput", throughput),
        ("slowdown", slowdown),
        ("transitions", transitions),
        ("regimes", regimes),
    ];
    for (name, build) in builders {
        let figures: Vec<(&str, Figure)> =
            hosts.iter().filter_map(|h| Some((h.label.as_str(), build(&h.summaries)?))).collect();
        let Some((_, first)) = figures.first() else { continue };
        if figures.iter().all(|(_, f)| f.legend == first.legend) {
            let mut merged = Figure::new(first.title.clone(), Vec::new(), first.legend.clone());
            (merged.shared_y, merged.guide, merged.reference) = (true, first.guide.clone(), first.reference);
            for (label, f) in figures {
                merged
                    .panels
                    .extend(f.panels.into_iter().map(|p| Panel { title: format!("{label}: {}", p.title), ..p }));
            }
            files.extend(merged.save(dir, name)?);
        } else {
            for (i, (_, f)) in figures.iter().enumerate() {
                let file = if i == 0 { name.to_owned() } else { format!("{name}-{}", i + 1) };
                files.extend(f.save(dir, &file)?);
            }
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The PNG written is the bitmap drawn: decoded again, the same size, colour type and pixels.
    #[test]
    fn a_png_decodes_to_the_pixels_drawn() {
        let (width, height) = (3u32, 2u32);
        let rgb: Vec<u8> = (0..width * height * 3).map(|i| (i * 37 % 256) as u8).collect();
        let png = encode_png(&rgb, width, height).expect("encodes");
        let mut reader = png::Decoder::new(png.as_slice()).read_info().expect("a PNG header");
        let mut decoded = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut decoded).expect("one frame");
        assert_eq!((info.width, info.height, info.color_type), (width, height, png::ColorType::Rgb));
        assert_eq!(&decoded[..info.buffer_size()], rgb.as_slice());
    }

    /// Every strategy of the registry, and any 40 series, have a style of their own; a strategy
    /// keeps its style whatever its place in a legend.
    #[test]
    fn styles_are_distinct_for_every_strategy_and_stable() {
        let styles: Vec<(RGBColor, Shape)> = (0..40).map(|k| style("", k)).collect();
        for (i, a) in styles.iter().enumerate() {
            assert!(styles[i + 1..].iter().all(|b| a != b), "series {i} repeats a style");
        }
        let names: Vec<&str> = dispatch::strategy::ALL.iter().map(|i| i.name).collect();
        let registry: Vec<(RGBColor, Shape)> = names.iter().enumerate().map(|(k, n)| style(n, k)).collect();
        for (i, a) in registry.iter().enumerate() {
            assert!(registry[i + 1..].iter().all(|b| a != b), "{} repeats a style", names[i]);
        }
        let last = names.len() - 1;
        assert_eq!(style(names[last], 0), registry[last], "a strategy's style does not follow its legend place");
    }

    #[test]
    fn ticks_read_as_numbers() {
        assert_eq!(
            [100000.0, 2500000.0, 10.0, 2.5, 0.125, 300.0].map(tick),
            ["100k", "2.5M", "10", "2.5", "0.125", "300"]
        );
    }

    /// A ratio panel's range holds its reference line and the values below 1.0, and over two
    /// decades reaches down to a power of ten under its lowest value.
    #[test]
    fn ranges_hold_the_reference_and_a_labelled_decade_below_the_data() {
        let p = |v: f64| Some(Point::from(Spread { median: v, min: v, max: v }));
        let mut panel = Panel::new("t".into(), "", "", vec!["a".into(), "b".into()], vec![vec![p(0.3), p(5.0)]]);
        panel.reference = Some(1.0);
        let (lo, hi) = y_range(&panel.values()).unwrap();
        assert!(lo <= 0.1 && hi > 1.0, "0.3 has the labelled 0.1 under it, and 1.0 is in: {lo}..{hi}");
        let wide = Panel::new("t".into(), "", "", vec!["a".into()], vec![vec![p(2.6)], vec![p(900.0)]]);
        let (lo, _) = y_range(&wide.values()).unwrap();
        assert!(lo <= 1.0, "a labelled tick at or below 2.6: {lo}");
    }
}
