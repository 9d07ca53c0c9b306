//! The percentile plot of transition latency: for each scenario with a writer, one line per
//! strategy through its whole distribution (merged over rounds, from the histograms `run.json`
//! keeps), percentile on a log axis of 1/(1-q) as HdrHistogram's plotter draws it (so that p99,
//! p99.9 and p99.99 are evenly spaced), latency on a log axis.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{DrawResult, LEGEND_WIDTH, PANEL, Plot, legend_marker, style, tick};
use crate::config::Scenario;
use crate::hist::percentile_points;
use crate::summary::{Summary, scenarios};

/// One scenario's lines: (strategy index in the legend, points).
type Lines = Vec<(usize, Vec<(f64, f64)>)>;

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    panels: &[(Scenario, Lines)],
    legend: &[String],
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let root = root.titled(
        "Transition latency by percentile, µs (end minus intended start; every round's transitions)",
        ("sans-serif", 20),
    )?;
    let (w, _) = root.dim_in_pixel();
    let (grid, side) = root.split_horizontally(w - LEGEND_WIDTH);
    let columns = panels.len().clamp(1, 2);
    let rows = panels.len().div_ceil(columns);
    for ((scenario, lines), area) in panels.iter().zip(grid.split_evenly((rows, columns))) {
        let all = lines.iter().flat_map(|(_, p)| p.iter());
        let x_hi = all.clone().map(|p| p.0).fold(10.0, f64::max) * 1.5;
        let (lo, hi) = all.map(|p| p.1).filter(|v| *v > 0.0).fold((f64::MAX, 0f64), |(a, b), v| (a.min(v), b.max(v)));
        if hi <= 0.0 {
            continue;
        }
        let bottom = 10f64.powf((lo / 1.5).log10().floor());
        let mut chart = ChartBuilder::on(&area)
            .caption(scenario.short(), ("sans-serif", 14))
            .margin(8)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d((1.0..x_hi).log_scale(), (bottom..hi * 1.5).log_scale())?;
        chart
            .configure_mesh()
            .light_line_style(TRANSPARENT)
            .x_label_formatter(&|&x| {
                // 1/(1-q) as the percentile it stands for: 2 is p50, 100 is p99, 1000 p99.9.
                let q = 100.0 * (1.0 - 1.0 / x);
                let digits = if x < 100.5 { 0 } else { (x.log10() - 2.0).ceil() as usize };
                format!("p{q:.digits$}")
            })
            .x_desc("percentile (log of 1/(1-q))")
            .y_label_formatter(&|v| tick(*v))
            .y_desc("µs (log)")
            .draw()?;
        for (k, points) in lines {
            chart.draw_series(LineSeries::new(points.iter().copied(), style(&legend[*k], *k).0.stroke_width(2)))?;
        }
    }
    for (i, label) in legend.iter().enumerate() {
        let y = 40 + 24 * i as i32;
        legend_marker(&side, (14, y), style(label, i))?;
        side.draw(&Text::new(label.clone(), (28, y - 8), ("sans-serif", 15)))?;
    }
    Ok(())
}

/// Draws `percentiles.png` and `.svg` into `dir` when some scenario has transition histograms;
/// returns the file names written.
pub(super) fn draw_percentiles(dir: &Path, summaries: &[Summary]) -> Result<Vec<String>, String> {
    let with: Vec<&Summary> = summaries.iter().filter(|s| s.transition_hist.is_some()).collect();
    let mut legend: Vec<String> = Vec::new();
    for s in &with {
        if !legend.contains(&s.strategy) {
            legend.push(s.strategy.clone());
        }
    }
    let panels: Vec<(Scenario, Lines)> = scenarios(summaries)
        .into_iter()
        .map(|sc| {
            let lines = with
                .iter()
                .filter(|s| s.scenario == sc)
                .map(|s| {
                    let k = legend.iter().position(|l| *l == s.strategy).expect("in the legend");
                    (k, percentile_points(s.transition_hist.as_ref().expect("filtered"), 1000.0))
                })
                .collect::<Lines>();
            (sc, lines)
        })
        .filter(|(_, lines)| !lines.is_empty())
        .collect();
    if panels.is_empty() {
        return Ok(Vec::new());
    }
    Percentiles { panels, legend }.save(dir, "percentiles")
}

/// The plot: a panel per scenario with a writer, a line per strategy.
struct Percentiles {
    panels: Vec<(Scenario, Lines)>,
    legend: Vec<String>,
}

impl Plot for Percentiles {
    fn size(&self) -> (u32, u32) {
        let columns = self.panels.len().clamp(1, 2) as u32;
        (columns * PANEL.0 + LEGEND_WIDTH, 50 + self.panels.len().div_ceil(columns as usize) as u32 * PANEL.1)
    }

    fn draw_on<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        draw(root, &self.panels, &self.legend)
    }
}
