//! The answer first: what a run found, from its summaries, before any table. A ranked strategy ×
//! regime matrix of ratios to `fnptr` (per site, at a shared call site, cold, with every reader,
//! under transitions), and one line per notable finding (a strategy that stops scaling, calls that
//! slow down under transitions, a machine that mispredicts a shared call site). Part of the
//! summary layer: the renderers print it, none computes it.

use dispatch::strategy::{BASELINE, Consistency};

use crate::config::{CallSites, Rate, Scenario};
use crate::record::MethodCheck;
use crate::summary::{PREDICTED_LIMIT, Summary};

/// A column of the matrix: one scenario of the run, and what it stands for in a few words.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    pub title: String,
    /// What the column stands for on any machine ("every reader" where the title says "16
    /// readers"): how the columns of several hosts' runs are matched.
    pub key: String,
    pub scenario: Scenario,
}

/// One strategy's ratio to `fnptr` in one column (the median over rounds), and whether any of
/// its rounds was flagged for interference.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cell {
    pub ratio_to_fnptr: f64,
    pub flagged: bool,
}

/// The strategy × regime matrix: strategies ranked by their per-site steady ratio (the cheapest
/// first), a column per regime the run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    pub columns: Vec<Column>,
    /// (strategy, consistency, a cell per column).
    pub rows: Vec<(String, String, Vec<Option<Cell>>)>,
}

/// Above this, a ratio that grows with readers or under transitions is worth a line.
pub const NOTABLE_GROWTH: f64 = 2.0;
/// Above this, a shared call instruction costs `fnptr` so much more than its own that the
/// shared column says more about the predictor than about the strategies.
pub const MISPREDICTED_SHARED: f64 = 2.0;

/// The first scenario of the run (in run order) that `wanted` accepts.
fn first(summaries: &[Summary], wanted: impl Fn(&Scenario) -> bool) -> Option<Scenario> {
    summaries.iter().map(|s| &s.scenario).find(|s| wanted(s)).cloned()
}

/// The matrix's columns: per site, shared and cold at the fewest readers, steady; per site with
/// the most readers, steady; per site at the fewest readers under the run's transition rates.
fn columns(summaries: &[Summary]) -> Vec<Column> {
    let per_site = |s: &Scenario| s.call_sites == CallSites::PerSite;
    let fewest = summaries.iter().filter(|s| per_site(&s.scenario)).map(|s| s.scenario.readers).min();
    let most = summaries.iter().filter(|s| per_site(&s.scenario)).map(|s| s.scenario.readers).max();
    let mut out = Vec::new();
    let mut add = |title: String, key: &str, scenario: Option<Scenario>| {
        if let Some(scenario) = scenario.filter(|sc| !out.iter().any(|c: &Column| &c.scenario == sc)) {
            let key = if key.is_empty() { title.clone() } else { key.to_owned() };
            out.push(Column { title, key, scenario });
        }
    };
    for (regime, title) in
        [(CallSites::PerSite, "per site"), (CallSites::Shared, "shared site"), (CallSites::Cold, "cold")]
    {
        let readers = if regime == CallSites::PerSite { fewest } else { None };
        add(
            title.to_owned(),
            "",
            first(summaries, |s| s.call_sites == regime && s.is_steady() && readers.is_none_or(|r| s.readers == r)),
        );
    }
    if let Some(most) = most.filter(|m| Some(*m) != fewest) {
        add(
            format!("{most} readers"),
            "every reader",
            first(summaries, |s| per_site(s) && s.is_steady() && s.readers == most),
        );
    }
    let mut rates: Vec<Rate> = Vec::new();
    for s in summaries.iter().filter(|s| per_site(&s.scenario) && Some(s.scenario.readers) == fewest) {
        if !s.scenario.is_steady() && !rates.contains(&s.scenario.rate) {
            rates.push(s.scenario.rate);
        }
    }
    for rate in rates {
        let title = match rate {
            Rate::Hz(hz) => format!("{hz} Hz transitions"),
            Rate::Max => "back-to-back transitions".to_owned(),
            Rate::Steady => unreachable!("steady rates were left out"),
        };
        add(title, "", first(summaries, |s| per_site(s) && Some(s.readers) == fewest && s.rate == rate));
    }
    out
}

fn cell(summaries: &[Summary], scenario: &Scenario, strategy: &str) -> Option<Cell> {
    let s = summaries.iter().find(|s| &s.scenario == scenario && s.strategy == strategy)?;
    Some(Cell { ratio_to_fnptr: s.ratio_to_fnptr?.median, flagged: s.flagged_rounds > 0 })
}

/// The run's matrix (empty without a ratio to `fnptr` anywhere).
pub fn matrix(summaries: &[Summary]) -> Matrix {
    let columns = columns(summaries);
    let mut rows: Vec<(String, String, Vec<Option<Cell>>)> = Vec::new();
    for s in summaries {
        if !rows.iter().any(|(name, _, _)| *name == s.strategy) {
            let cells = columns.iter().map(|c| cell(summaries, &c.scenario, &s.strategy)).collect();
            rows.push((s.strategy.clone(), s.consistency.clone(), cells));
        }
    }
    rows.retain(|(_, _, cells)| cells.iter().any(Option::is_some));
    // Ranked by the first column (per site, steady); a strategy without it goes last.
    rows.sort_by(|a, b| {
        let key = |cells: &[Option<Cell>]| cells.first().copied().flatten().map_or(f64::INFINITY, |c| c.ratio_to_fnptr);
        key(&a.2).total_cmp(&key(&b.2))
    });
    Matrix { columns, rows }
}

/// The notable findings, one line each, the most consequential first: the method (whether the
/// machine predicts the calls at all), a shared call site the predictor loses, strategies that
/// stop scaling with readers or slow down under transitions, the cheapest per-task redirection,
/// and how many cells were flagged.
pub fn findings(summaries: &[Summary], check: Option<&MethodCheck>) -> Vec<String> {
    let m = matrix(summaries);
    let mut out = Vec::new();
    if let Some(c) = check {
        if !c.predicted {
            out.push(format!(
                "indirect calls are not predicted here even with a call instruction per site: fnptr costs {:.2}x \
                 direct (limit {PREDICTED_LIMIT}), so every ratio measures mispredictions",
                c.fnptr_over_direct
            ));
        }
        if let Some(shared) = c.fnptr_ns_shared.map(|ns| ns / c.fnptr_ns_per_site).filter(|x| *x > MISPREDICTED_SHARED)
        {
            out.push(format!(
                "a shared call site is mispredicted here: {shared:.1}x its per-site cost for fnptr, so the shared column \
                 compresses every ratio"
            ));
        }
    }
    let column = |title: &dyn Fn(&Column) -> bool| m.columns.iter().position(title);
    let per_site = column(&|c| c.title == "per site");
    let readers = column(&|c| c.title.ends_with(" readers"));
    for (strategy, _, cells) in &m.rows {
        let steady = per_site.and_then(|i| cells[i]).map(|c| c.ratio_to_fnptr);
        if let (Some(steady), Some(i)) = (steady, readers)
            && let Some(many) = cells[i].filter(|c| c.ratio_to_fnptr > NOTABLE_GROWTH * steady)
        {
            out.push(format!(
                "{strategy} stops scaling at {}: {:.1}x fnptr, against {steady:.2}x with one",
                m.columns[i].title, many.ratio_to_fnptr
            ));
        }
        for (i, c) in m.columns.iter().enumerate().filter(|(_, c)| c.title.ends_with("transitions")) {
            if let (Some(steady), Some(under)) = (
                steady,
                cells[i]
                    .filter(|x| steady.is_some_and(|s| x.ratio_to_fnptr > NOTABLE_GROWTH * s))
                    .map(|x| x.ratio_to_fnptr),
            ) {
                out.push(format!(
                    "{strategy}'s calls cost {:.1}x more with {}: {under:.2}x fnptr, against {steady:.2}x steady",
                    under / steady,
                    c.title
                ));
            }
        }
    }
    let per_task = Consistency::PerTask.name();
    if let Some(i) = per_site
        && let Some((name, cell)) = m
            .rows
            .iter()
            .filter(|(_, consistency, _)| consistency == per_task)
            .find_map(|(name, _, cells)| cells[i].map(|c| (name, c)))
    {
        out.push(format!(
            "the cheapest per-task redirection per site is {name}: {:.2}x {BASELINE}{}",
            cell.ratio_to_fnptr,
            if cell.flagged { " (flagged)" } else { "" }
        ));
    }
    let cells: Vec<Cell> = m.rows.iter().flat_map(|(_, _, cells)| cells.iter().flatten().copied()).collect();
    let flagged = cells.iter().filter(|c| c.flagged).count();
    if flagged > 0 {
        out.push(format!(
            "{flagged} of {} cells are flagged for interference (marked !): their figures include other tasks' time",
            cells.len()
        ));
    }
    out
}

/// One host's run, as the cross-host answer reads it.
#[derive(Clone, Copy, Debug)]
pub struct Host<'a> {
    pub label: &'a str,
    pub summaries: &'a [Summary],
    pub check: Option<&'a MethodCheck>,
}

/// One strategy's ratio in one column on every host that measured it, and how far apart the
/// hosts are.
#[derive(Clone, Debug, PartialEq)]
pub struct Difference {
    pub strategy: String,
    pub key: String,
    /// (host label, cell), in the hosts' order.
    pub cells: Vec<(String, Cell)>,
    /// The largest ratio over the smallest.
    pub spread: f64,
    /// What the runs themselves say about why, where they say anything.
    pub cause: Option<String>,
}

/// Across hosts: for every (strategy, column) that two hosts or more measured, how far apart
/// their ratios to `fnptr` are, the largest first; with a likely cause where the runs know one
/// (calls one host does not predict at all, a shared call site one host mispredicts, figures
/// flagged for interference). Only ratios compare across machines.
pub fn differences(hosts: &[Host<'_>]) -> Vec<Difference> {
    let matrices: Vec<Matrix> = hosts.iter().map(|h| matrix(h.summaries)).collect();
    let mut keys: Vec<(String, String)> = Vec::new();
    for m in &matrices {
        for (strategy, _, _) in &m.rows {
            for c in &m.columns {
                let k = (strategy.clone(), c.key.clone());
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
        }
    }
    let mut out: Vec<Difference> = keys
        .into_iter()
        .filter(|(strategy, _)| strategy != BASELINE)
        .filter_map(|(strategy, key)| {
            let cells: Vec<(String, Cell)> = hosts
                .iter()
                .zip(&matrices)
                .filter_map(|(h, m)| {
                    let i = m.columns.iter().position(|c| c.key == key)?;
                    let (_, _, cells) = m.rows.iter().find(|(name, _, _)| *name == strategy)?;
                    Some((h.label.to_owned(), cells[i]?))
                })
                .collect();
            if cells.len() < 2 {
                return None;
            }
            let ratios = cells.iter().map(|(_, c)| c.ratio_to_fnptr);
            let spread = ratios.clone().fold(f64::MIN, f64::max) / ratios.fold(f64::MAX, f64::min);
            let cause = cause(hosts, &key, &cells);
            Some(Difference { strategy, key, cells, spread, cause })
        })
        .filter(|d| d.spread.is_finite())
        .collect();
    out.sort_by(|a, b| b.spread.total_cmp(&a.spread));
    out
}

/// Why a strategy's ratio differs between hosts, where the runs say: one host does not predict
/// indirect calls, or mispredicts a shared call site, or its figure was flagged for interference.
fn cause(hosts: &[Host<'_>], key: &str, cells: &[(String, Cell)]) -> Option<String> {
    let check = |label: &str| hosts.iter().find(|h| h.label == label).and_then(|h| h.check);
    let unpredicted: Vec<&str> =
        cells.iter().filter(|(l, _)| check(l).is_some_and(|c| !c.predicted)).map(|(l, _)| l.as_str()).collect();
    if !unpredicted.is_empty() {
        return Some(format!("indirect calls are not predicted on {}", unpredicted.join(", ")));
    }
    if key == "shared site" {
        let lost: Vec<String> = cells
            .iter()
            .filter_map(|(l, _)| {
                let c = check(l)?;
                let x = c.fnptr_ns_shared? / c.fnptr_ns_per_site;
                (x > MISPREDICTED_SHARED).then(|| format!("{l} ({x:.1}x fnptr's per-site cost)"))
            })
            .collect();
        if !lost.is_empty() {
            return Some(format!(
                "a shared call site is mispredicted on {}, which compresses its ratios",
                lost.join(", ")
            ));
        }
    }
    let flagged: Vec<&str> = cells.iter().filter(|(_, c)| c.flagged).map(|(l, _)| l.as_str()).collect();
    (!flagged.is_empty()).then(|| format!("flagged for interference on {}", flagged.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::record::Row;
    use crate::record::test_support::row;
    use crate::summary::summarize;

    /// Rows of three rounds of `(strategy, consistency, scenario, ratio)`, fnptr's own beside each
    /// scenario.
    fn rows(cells: &[(&str, &str, Scenario, f64)]) -> Vec<Row> {
        let mut out = Vec::new();
        for round in 0..3 {
            for (strategy, consistency, scenario, ratio) in cells {
                let mut r = row(strategy, scenario.call_sites, round, *ratio);
                r.scenario = scenario.clone();
                r.consistency = (*consistency).into();
                r.ratio_to_fnptr = Some(*ratio);
                out.push(r);
            }
        }
        out
    }

    fn scenario(call_sites: CallSites, readers: usize, rate: Rate) -> Scenario {
        Scenario { readers, rate, ..Scenario::DEFAULT.in_regime(call_sites) }
    }

    #[test]
    fn the_matrix_ranks_strategies_and_has_a_column_per_regime() {
        let steady = scenario(CallSites::PerSite, 1, Rate::Steady);
        let two = scenario(CallSites::PerSite, 2, Rate::Steady);
        let max = scenario(CallSites::PerSite, 1, Rate::Max);
        let cold = scenario(CallSites::Cold, 1, Rate::Steady);
        let mut cells = Vec::new();
        for (strategy, consistency, ratios) in [
            ("fnptr", "immediate", [1.0, 1.0, 1.0, 1.0]),
            ("rwlock", "per-task", [11.0, 87.0, 12.0, 3.0]),
            ("klp", "per-task", [1.3, 1.3, 3.9, 4.1]),
        ] {
            for (sc, ratio) in [&steady, &two, &max, &cold].into_iter().zip(ratios) {
                cells.push((strategy, consistency, sc.clone(), ratio));
            }
        }
        let mut rows = rows(&cells);
        rows.iter_mut().filter(|r| r.strategy == "klp" && r.scenario == cold && r.round == 0).for_each(|r| {
            r.interference.reasons = vec!["migrated".into()];
        });
        let summaries = summarize(&rows);
        let m = matrix(&summaries);
        let titles: Vec<&str> = m.columns.iter().map(|c| c.title.as_str()).collect();
        assert_eq!(titles, ["per site", "cold", "2 readers", "back-to-back transitions"]);
        let names: Vec<&str> = m.rows.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(names, ["fnptr", "klp", "rwlock"], "ranked by the per-site ratio");
        assert_eq!(m.rows[1].2[1], Some(Cell { ratio_to_fnptr: 4.1, flagged: true }));

        let found = findings(&summaries, None);
        assert!(
            found.contains(&"rwlock stops scaling at 2 readers: 87.0x fnptr, against 11.00x with one".to_owned()),
            "{found:#?}"
        );
        assert!(
            found.contains(
                &"klp's calls cost 3.0x more with back-to-back transitions: 3.90x fnptr, against 1.30x steady"
                    .to_owned()
            ),
            "{found:#?}"
        );
        assert!(!found.iter().any(|f| f.starts_with("klp stops scaling")), "{found:#?}");
        assert!(
            found.contains(&"the cheapest per-task redirection per site is klp: 1.30x fnptr".to_owned()),
            "{found:#?}"
        );
        assert!(found.iter().any(|f| f.starts_with("1 of 12 cells are flagged")), "{found:#?}");
    }

    #[test]
    fn hosts_differences_are_ranked_with_their_cause() {
        let per_site = Scenario::DEFAULT;
        let shared = Scenario::DEFAULT.in_regime(CallSites::Shared);
        let host = |rwlock: f64, klp_shared: f64| {
            summarize(&rows(&[
                ("fnptr", "immediate", per_site.clone(), 1.0),
                ("fnptr", "immediate", shared.clone(), 1.0),
                ("rwlock", "per-task", per_site.clone(), rwlock),
                ("klp", "per-task", per_site.clone(), 1.5),
                ("klp", "per-task", shared.clone(), klp_shared),
            ]))
        };
        let (intel, zen4) = (host(11.4, 1.5), host(3.65, 1.1));
        let check = MethodCheck {
            scenario: per_site.name(),
            fnptr_over_direct: 1.0,
            limit: PREDICTED_LIMIT,
            predicted: true,
            fnptr_ns_per_site: 1.19,
            fnptr_ns_shared: Some(7.61),
        };
        let hosts = [
            Host { label: "Intel Emerald Rapids", summaries: &intel, check: None },
            Host { label: "AMD Zen 4", summaries: &zen4, check: Some(&check) },
        ];
        let d = differences(&hosts);
        assert_eq!((d[0].strategy.as_str(), d[0].key.as_str()), ("rwlock", "per site"), "{d:#?}");
        assert!((d[0].spread - 11.4 / 3.65).abs() < 1e-9 && d[0].cause.is_none(), "{d:#?}");
        assert_eq!((d[1].strategy.as_str(), d[1].key.as_str()), ("klp", "shared site"), "{d:#?}");
        assert_eq!(
            d[1].cause.as_deref(),
            Some(
                "a shared call site is mispredicted on AMD Zen 4 (6.4x fnptr's per-site cost), which compresses its ratios"
            )
        );
        assert!(d.iter().all(|x| x.strategy != "fnptr"), "fnptr is 1 everywhere");
    }

    #[test]
    fn a_mispredicted_shared_site_and_unpredicted_calls_are_said_first() {
        let summaries = summarize(&rows(&[("fnptr", "immediate", Scenario::DEFAULT, 1.0)]));
        let check = MethodCheck {
            scenario: Scenario::DEFAULT.name(),
            fnptr_over_direct: 1.6,
            limit: PREDICTED_LIMIT,
            predicted: false,
            fnptr_ns_per_site: 1.19,
            fnptr_ns_shared: Some(7.61),
        };
        let found = findings(&summaries, Some(&check));
        assert!(found[0].starts_with("indirect calls are not predicted here"), "{found:#?}");
        assert!(found[1].starts_with("a shared call site is mispredicted here: 6.4x its per-site cost"), "{found:#?}");
        let predicted = MethodCheck { predicted: true, fnptr_ns_shared: Some(1.3), ..check };
        assert!(findings(&summaries, Some(&predicted)).iter().all(|f| !f.contains("predicted")));
    }
}
