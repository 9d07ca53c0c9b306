//! PNG plots of a run (plotters, bitmap backend): throughput against readers per strategy,
//! per-batch latency percentiles per strategy, transition latency per strategy, and ns/call per
//! strategy in each call-site regime. Text needs a
//! TrueType font, registered by [`plotfont::register`] (a DejaVu or Liberation font from the usual
//! system places, or from `DISPATCH_BENCH_FONT_DIRS`). On a machine without one the run still
//! completes and writes `run.json`, `report.md` and `bmf.json`, but no PNG: `report.md` and
//! stderr say why and how to fix it. (criterion's plots need the same font: see `plotfont`.)

use std::path::Path;

use plotters::prelude::*;

use crate::config::CallSites;
use crate::report::Summary;

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

/// Draws every plot into `dir`; returns the file names written, or why none could be.
pub fn draw_all(dir: &Path, summaries: &[Summary]) -> Result<Vec<String>, String> {
    plotfont::register()?;
    let mut files = Vec::new();
    let mut draw = |name: &str, f: &dyn Fn(&Path) -> DrawResult| -> Result<(), String> {
        let path = dir.join(name);
        f(&path).map_err(|e| {
            // A half-drawn file (a full disk) is no plot.
            let _ = std::fs::remove_file(&path);
            format!("drawing {name}: {e}")
        })?;
        files.push(name.to_owned());
        Ok(())
    };
    draw("throughput.png", &|p| throughput(p, summaries))?;
    draw("latency.png", &|p| latency(p, summaries))?;
    if summaries.iter().any(|s| s.transition_p99_us.is_some()) {
        draw("transitions.png", &|p| transitions(p, summaries))?;
    }
    if regime_scenarios(summaries).len() > 1 {
        draw("regimes.png", &|p| regimes(p, summaries))?;
    }
    Ok(files)
}

fn strategies(summaries: &[Summary]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for s in summaries {
        if !names.contains(&s.strategy) {
            names.push(s.strategy.clone());
        }
    }
    names
}

/// The group of scenarios that differ only in readers: the steady per-site ones.
fn steady_hot(s: &Summary) -> bool {
    s.call_sites == CallSites::PerSite && s.scenario.contains("_steady_")
}

/// Per call-site regime, its first steady scenario with one reader: what `regimes.png` sets
/// side by side.
fn regime_scenarios(summaries: &[Summary]) -> Vec<(CallSites, String)> {
    let mut out: Vec<(CallSites, String)> = Vec::new();
    for s in summaries.iter().filter(|s| s.readers == 1 && s.scenario.contains("_steady_")) {
        if !out.iter().any(|(c, _)| *c == s.call_sites) {
            out.push((s.call_sites, s.scenario.clone()));
        }
    }
    out
}

/// ns/call per strategy in each regime's steady one-reader scenario, log scale: how much the
/// placement of call instructions moves each strategy.
fn regimes(path: &Path, summaries: &[Summary]) -> DrawResult {
    let groups = regime_scenarios(summaries);
    let names = strategies(summaries);
    let ns = |scenario: &str, name: &str| {
        summaries.iter().find(|s| s.scenario == scenario && s.strategy == name).map(|s| s.ns_per_call.median)
    };
    let values: Vec<f64> = groups.iter().flat_map(|(_, sc)| names.iter().filter_map(|n| ns(sc, n))).collect();
    let max_y = values.iter().copied().fold(1.0, f64::max) * 2.0;
    let min_y = values.iter().copied().fold(max_y, f64::min).max(0.01) / 2.0;
    let root = BitMapBackend::new(path, (960, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("ns per call by call-site regime (steady, 1 reader, median over runs)", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5..names.len() as f64 - 0.5, (min_y..max_y).log_scale())?;
    chart
        .configure_mesh()
        .x_labels(names.len())
        .x_label_formatter(&|x| names.get(x.round() as usize).cloned().unwrap_or_default())
        .y_desc("ns per call (log)")
        .draw()?;
    for (i, (regime, sc)) in groups.iter().enumerate() {
        let c = color(i);
        let pts: Vec<(f64, f64)> =
            names.iter().enumerate().filter_map(|(x, n)| ns(sc, n).map(|y| (x as f64, y.max(min_y)))).collect();
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 5, c.filled())))?
            .label(regime.name())
            .legend(move |(x, y)| Circle::new((x + 9, y), 5, c.filled()));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.85)).border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}

fn throughput(path: &Path, summaries: &[Summary]) -> DrawResult {
    let points: Vec<&Summary> = summaries.iter().filter(|s| steady_hot(s)).collect();
    let points = if points.is_empty() { summaries.iter().collect() } else { points };
    let max_r = points.iter().map(|s| s.readers).max().unwrap_or(1) as f64;
    let max_y = points.iter().map(|s| s.calls_per_sec.median / 1e6).fold(1.0, f64::max) * 1.1;
    let root = BitMapBackend::new(path, (960, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Throughput against readers (steady state, median over runs)", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(0.5..max_r + 0.5, 0.0..max_y)?;
    chart.configure_mesh().x_desc("reader threads").y_desc("million calls / s (all readers)").draw()?;
    for (i, name) in strategies(summaries).iter().enumerate() {
        let mut xy: Vec<(f64, f64)> = points
            .iter()
            .filter(|s| &s.strategy == name)
            .map(|s| (s.readers as f64, s.calls_per_sec.median / 1e6))
            .collect();
        xy.sort_by(|a, b| a.0.total_cmp(&b.0));
        let c = color(i);
        chart
            .draw_series(LineSeries::new(xy.clone(), c.stroke_width(2)))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        chart.draw_series(xy.into_iter().map(|p| Circle::new(p, 4, c.filled())))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Per-strategy percentiles of the first steady scenario, log scale.
fn latency(path: &Path, summaries: &[Summary]) -> DrawResult {
    let scenario = summaries.iter().find(|s| steady_hot(s)).unwrap_or(&summaries[0]).scenario.clone();
    let group: Vec<&Summary> = summaries.iter().filter(|s| s.scenario == scenario).collect();
    let max_y = group.iter().map(|s| s.max).filter(|x| x.is_finite()).fold(1.0, f64::max) * 2.0;
    let min_y =
        group.iter().map(|s| s.p50).filter(|x| x.is_finite() && *x > 0.0).fold(f64::INFINITY, f64::min).min(1.0) / 2.0;
    let root = BitMapBackend::new(path, (960, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("Per-batch ns/call percentiles ({scenario})"), ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5..group.len() as f64 - 0.5, (min_y..max_y).log_scale())?;
    let names: Vec<String> = group.iter().map(|s| s.strategy.clone()).collect();
    chart
        .configure_mesh()
        .x_labels(group.len())
        .x_label_formatter(&|x| names.get(x.round() as usize).cloned().unwrap_or_default())
        .y_desc("ns per call (log)")
        .draw()?;
    type Series = (&'static str, fn(&Summary) -> f64);
    let series: [Series; 4] = [("p50", |s| s.p50), ("p99", |s| s.p99), ("p99.9", |s| s.p999), ("max", |s| s.max)];
    for (i, (label, f)) in series.into_iter().enumerate() {
        let c = color(i);
        let pts: Vec<(f64, f64)> =
            group.iter().enumerate().map(|(x, s)| (x as f64, f(s))).filter(|p| p.1.is_finite() && p.1 > 0.0).collect();
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 5, c.filled())))?
            .label(label)
            .legend(move |(x, y)| Circle::new((x + 9, y), 5, c.filled()));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.85)).border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}

/// Transition latency p99 per strategy and scenario with a writer.
fn transitions(path: &Path, summaries: &[Summary]) -> DrawResult {
    let scenarios: Vec<String> = {
        let mut v: Vec<String> = Vec::new();
        for s in summaries.iter().filter(|s| s.transition_p99_us.is_some()) {
            if !v.contains(&s.scenario) {
                v.push(s.scenario.clone());
            }
        }
        v
    };
    let names = strategies(summaries);
    let max_y = summaries.iter().filter_map(|s| s.transition_p99_us).fold(1.0, f64::max) * 2.0;
    let root = BitMapBackend::new(path, (960, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Transition latency p99 (end minus intended start)", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5..names.len() as f64 - 0.5, (0.1..max_y).log_scale())?;
    chart
        .configure_mesh()
        .x_labels(names.len())
        .x_label_formatter(&|x| names.get(x.round() as usize).cloned().unwrap_or_default())
        .y_desc("microseconds (log)")
        .draw()?;
    for (i, sc) in scenarios.iter().enumerate() {
        let c = color(i);
        let pts: Vec<(f64, f64)> = names
            .iter()
            .enumerate()
            .filter_map(|(x, n)| {
                summaries
                    .iter()
                    .find(|s| &s.scenario == sc && &s.strategy == n)
                    .and_then(|s| s.transition_p99_us)
                    .map(|y| (x as f64, y.max(0.1)))
            })
            .collect();
        chart
            .draw_series(pts.into_iter().map(|p| TriangleMarker::new(p, 6, c.filled())))?
            .label(sc.as_str())
            .legend(move |(x, y)| TriangleMarker::new((x + 9, y), 6, c.filled()));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.85)).border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}
