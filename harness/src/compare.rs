//! `harness compare BASE NEW`: one verdict per measurement (scenario, strategy, metric), on the
//! medians the reports show, that needs both a threshold and a significance test over the rounds
//! (Welch's t-test, one-sided, the t distribution from `statrs`), corrected for the number of
//! tests made (Holm's step-down: with 300 tests at p < 0.05 a clean run would otherwise show about
//! 15 false alarms).
//!
//! Safe as a CI gate: runs of other machines, toolchains or configs are refused unless asked for
//! (their differences would be reported as regressions); across machines only the ratio to
//! `fnptr` of the same round is compared; a measurement flagged for interference on either side
//! is reported, not judged; and a side with fewer than [`MIN_ROUNDS`] rounds gets no verdict but
//! "inconclusive", never a pass.
//! Exit codes: 0 no regression, 1 regression, 2 unusable input or runs that differ, 5 inconclusive.

use std::fmt::Write;

use dispatch::strategy::BASELINE;
use statrs::distribution::{ContinuousCDF, StudentsT};

use crate::config::Scenario;
use crate::record::{Row, RunFile};

/// One-sided significance level.
pub const ALPHA: f64 = 0.05;

/// Rounds a side needs for a verdict: with 2, Welch's test has one or two degrees of freedom and
/// a 10x slowdown of a noisy metric can fail to reach p < 0.05; with 1 it cannot be computed.
pub const MIN_ROUNDS: usize = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Regression,
    Improvement,
    /// Within the threshold, or not significant after the correction for the tests made.
    Unchanged,
    /// A round of either side was flagged for interference: its figures include other tasks'
    /// time, so the change is reported, not judged.
    NotJudged,
    /// Too few rounds on a side for a significance test ([`MIN_ROUNDS`]).
    Inconclusive,
}

impl Verdict {
    fn word(self) -> &'static str {
        match self {
            Verdict::Regression => "REGRESSION",
            Verdict::Improvement => "improvement",
            Verdict::Unchanged => "-",
            Verdict::NotJudged => "not judged (flagged)",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// A metric: lower is better for every one. One per measurement: calls/s is not among them, being
/// ns/call's inverse (the same change, counted twice).
struct Metric {
    name: &'static str,
    value: fn(&Row) -> Option<f64>,
    /// Whether it compares across machines: only a ratio within one round on one machine does.
    across_hosts: bool,
}

const METRICS: [Metric; 4] = [
    Metric { name: "ns/call", value: |r| Some(r.ns_per_call), across_hosts: false },
    // The headline: fnptr of the same round cancels what drifts between rounds, runs and machines.
    // fnptr's own is 1 by definition.
    Metric { name: "x fnptr", value: |r| r.ratio_to_fnptr.filter(|_| r.strategy != BASELINE), across_hosts: true },
    Metric { name: "batch p99 ns", value: |r| r.batch_ns.map(|p| p.p99), across_hosts: false },
    Metric { name: "transition p99 us", value: |r| r.transition_us.map(|p| p.p99), across_hosts: false },
];

#[derive(Clone, Debug)]
pub struct Change {
    pub scenario: Scenario,
    pub strategy: String,
    pub metric: &'static str,
    /// Medians over rounds, as the reports show them.
    pub base: f64,
    pub new: f64,
    /// Relative change of the medians, in percent; NaN when the base is 0 (no relative change).
    pub change_pct: f64,
    /// One-sided p-value (Welch) that the change goes the way the medians moved.
    pub p: f64,
    /// Rounds flagged for interference, BASE and NEW.
    pub flagged: (usize, usize),
    pub verdict: Verdict,
}

/// What `compare` found: the differences between the runs themselves (compared anyway only
/// with `--allow-different-hosts`), and the changes that pass the filter.
#[derive(Clone, Debug)]
pub struct Comparison {
    pub differences: Vec<String>,
    /// What could not be checked of the runs' sameness (see [`unchecked`]).
    pub unchecked: Vec<String>,
    /// Strategies one run measured and the other skipped (its machine could not run them), one
    /// line each with the reason: not compared, and not a difference that refuses the comparison
    /// (a skip is no error anywhere else either).
    pub skipped: Vec<String>,
    pub changes: Vec<Change>,
    /// Whether the runs come from different machines, so that only the ratio to `fnptr` was
    /// compared.
    pub across_hosts: bool,
    /// Significance tests made (changes with enough rounds and no flag), the family of Holm's
    /// correction.
    pub tests: usize,
    /// The fewest rounds of any compared (scenario, strategy) on either side.
    pub rounds: (usize, usize),
    pub threshold_pct: f64,
    pub filter: Option<String>,
}

impl Comparison {
    pub fn count(&self, v: Verdict) -> usize {
        self.changes.iter().filter(|c| c.verdict == v).count()
    }
}

/// The strategies skipped by either run (unavailable on its machine).
fn skipped_names(base: &RunFile, new: &RunFile) -> Vec<String> {
    base.skipped.iter().chain(&new.skipped).map(|s| s.strategy.clone()).collect()
}

/// One line per strategy that one run measured and the other skipped: which side skipped it, on
/// which host, and why.
pub fn skipped(base: &RunFile, new: &RunFile) -> Vec<String> {
    let mut out = Vec::new();
    for (side, this, other) in [("BASE", base, new), ("NEW", new, base)] {
        for s in this.skipped.iter().filter(|s| other.rows.iter().any(|r| r.strategy == s.strategy)) {
            out.push(format!(
                "{}: not compared: skipped in {side} (unavailable on {}: {})",
                s.strategy,
                this.env.host_label(),
                s.reason
            ));
        }
    }
    out
}

/// Everything about two runs that makes their figures incomparable, one line each: the machine
/// (host, the CPU by what it is, its model string, kernel), the toolchain, the call-site regimes,
/// every field of the config, and the (scenario, strategy) pairs measured. A strategy that either
/// run skipped (see [`skipped`]) is left out of the last two: its absence is the machine's, said
/// with its reason.
///
/// The CPU's vendor, family, model and stepping come first: VMs of different CPU generations share
/// a model string ("AMD EPYC") and often a host name ("vm"), and only these tell them apart.
pub fn differences(base: &RunFile, new: &RunFile) -> Vec<String> {
    let mut out = Vec::new();
    let (eb, en) = (&base.env, &new.env);
    if let (Some(cb), Some(cn)) = (&eb.cpu, &en.cpu) {
        for ((what, b), (_, n)) in cb.identity().into_iter().zip(cn.identity()) {
            if b != n {
                out.push(format!(
                    "{what}: BASE {b} ({}), NEW {n} ({}): different CPUs",
                    eb.host_label(),
                    en.host_label()
                ));
            }
        }
    }
    for (what, b, n) in [
        ("host", &eb.host, &en.host),
        ("CPU model string", &eb.cpu_model, &en.cpu_model),
        ("kernel", &eb.kernel, &en.kernel),
        ("rustc", &eb.rustc, &en.rustc),
    ] {
        if b != n {
            out.push(format!("{what}: BASE {b:?}, NEW {n:?}"));
        }
    }
    let regimes = |f: &RunFile| {
        let mut r: Vec<&str> = f.rows.iter().map(|r| r.scenario.call_sites.name()).collect();
        r.sort();
        r.dedup();
        r
    };
    if regimes(base) != regimes(new) {
        out.push(format!(
            "the runs measured different call-site regimes (BASE: {:?}; NEW: {:?}): a shared call instruction \
             measures the indirect-branch predictor, per-site ones the redirection",
            regimes(base),
            regimes(new)
        ));
    }
    // Field by field, so that the message names what differs (config serializes to an object).
    let skipped = skipped_names(base, new);
    let json = |f: &RunFile| {
        let mut config = serde_json::to_value(&f.config).unwrap_or_default();
        if let Some(names) = config.get_mut("strategies").and_then(|v| v.as_array_mut()) {
            names.retain(|n| !n.as_str().is_some_and(|n| skipped.iter().any(|s| s == n)));
        }
        config
    };
    let (cb, cn) = (json(base), json(new));
    if let (Some(cb), Some(cn)) = (cb.as_object(), cn.as_object()) {
        for (k, vb) in cb {
            let vn = cn.get(k).unwrap_or(&serde_json::Value::Null);
            if vb != vn {
                let show = |v: &serde_json::Value| {
                    let text = v.to_string();
                    if text.len() > 120 { format!("{}...", &text[..120]) } else { text }
                };
                out.push(format!("config.{k}: BASE {}, NEW {}", show(vb), show(vn)));
            }
        }
    }
    let measured = |f: &RunFile| -> Vec<(Scenario, String)> {
        keys(f).into_iter().filter(|(_, strategy)| !skipped.contains(strategy)).collect()
    };
    let (kb, kn) = (measured(base), measured(new));
    if kb != kn {
        let only_base: Vec<_> =
            kb.iter().filter(|k| !kn.contains(k)).map(|(a, b)| format!("{}/{b}", a.name())).collect();
        let only_new: Vec<_> =
            kn.iter().filter(|k| !kb.contains(k)).map(|(a, b)| format!("{}/{b}", a.name())).collect();
        out.push(format!(
            "the runs measured different scenarios or strategies (only in BASE: {only_base:?}; only in NEW: {only_new:?})"
        ));
    }
    out
}

/// Whether the runs were made on different machines: another CPU (vendor, family, model,
/// stepping), model string, host or kernel. Then only ratios within a round compare.
pub fn machine_differs(base: &RunFile, new: &RunFile) -> bool {
    let (eb, en) = (&base.env, &new.env);
    let cpu_differs = match (&eb.cpu, &en.cpu) {
        (Some(b), Some(n)) => b.identity() != n.identity(),
        _ => false,
    };
    cpu_differs || eb.cpu_model != en.cpu_model || eb.host != en.host || eb.kernel != en.kernel
}

/// What [`differences`] could not check, one line each: a run recorded before the harness read
/// the CPU's identity (schema 4 and older) is compared on its model string and host name alone.
pub fn unchecked(base: &RunFile, new: &RunFile) -> Vec<String> {
    let sides: Vec<&str> =
        [("BASE", base), ("NEW", new)].into_iter().filter(|(_, f)| f.env.cpu.is_none()).map(|(s, _)| s).collect();
    if sides.is_empty() {
        return Vec::new();
    }
    vec![format!(
        "CPU vendor, family, model and stepping: not recorded in {} (a run of schema 4 or older), so the CPUs are \
         compared by model string and host name only; runs of different CPU generations may pass as one host",
        sides.join(" and ")
    )]
}

/// The (scenario, strategy) pairs of a run, each once, sorted by scenario name and strategy.
fn keys(f: &RunFile) -> Vec<(Scenario, String)> {
    let mut k: Vec<(Scenario, String)> = Vec::new();
    for r in &f.rows {
        if !k.iter().any(|(sc, st)| sc == &r.scenario && st == &r.strategy) {
            k.push((r.scenario.clone(), r.strategy.clone()));
        }
    }
    k.sort_by_cached_key(|(sc, st)| (sc.name(), st.clone()));
    k
}

/// The rows (one per round) of one scenario and strategy.
fn rows_of<'a>(f: &'a RunFile, scenario: &Scenario, strategy: &str) -> Vec<&'a Row> {
    f.rows.iter().filter(|r| &r.scenario == scenario && r.strategy == strategy).collect()
}

/// Compares two runs; `Err` is unusable input or runs that differ without `allow_different`
/// (exit 2). `filter`: only changes whose `scenario/strategy metric` contains it.
pub fn compare(
    base: &RunFile,
    new: &RunFile,
    threshold_pct: f64,
    allow_different: bool,
    filter: Option<&str>,
) -> Result<Comparison, String> {
    if base.schema_version != new.schema_version {
        return Err(format!(
            "schema versions differ ({} vs {}); compare runs made by the same version of the harness",
            base.schema_version, new.schema_version
        ));
    }
    let differences = differences(base, new);
    if !differences.is_empty() && !allow_different {
        return Err(format!(
            "the runs differ, so their figures are not comparable:\n- {}\ncompare runs of the same command on the same \
             machine and build, or pass --allow-different-hosts to compare them anyway (every difference is then listed first)",
            differences.join("\n- ")
        ));
    }
    let across_hosts = machine_differs(base, new);
    let kn = keys(new);
    let common: Vec<_> = keys(base).into_iter().filter(|k| kn.contains(k)).collect();
    let mut changes = Vec::new();
    let mut rounds = (usize::MAX, usize::MAX);
    let wanted = |scenario: &Scenario, strategy: &str, metric: &str| {
        filter.is_none_or(|f| format!("{}/{strategy} {metric}", scenario.name()).contains(f))
    };
    for (scenario, strategy) in common {
        let (rb, rn) = (rows_of(base, &scenario, &strategy), rows_of(new, &scenario, &strategy));
        rounds = (rounds.0.min(rb.len()), rounds.1.min(rn.len()));
        let enough = rb.len() >= MIN_ROUNDS && rn.len() >= MIN_ROUNDS;
        let flags = |rs: &[&Row]| rs.iter().filter(|r| r.interference.flagged()).count();
        let flagged = (flags(&rb), flags(&rn));
        for m in METRICS.iter().filter(|m| m.across_hosts || !across_hosts) {
            let (b, n): (Vec<f64>, Vec<f64>) =
                (rb.iter().filter_map(|r| (m.value)(r)).collect(), rn.iter().filter_map(|r| (m.value)(r)).collect());
            let (Some(mb), Some(mn)) = (median(&b), median(&n)) else { continue };
            if !wanted(&scenario, &strategy, m.name) {
                continue;
            }
            let change_pct = change_pct(mb, mn);
            // The test goes the way the medians moved (lower is better for every metric).
            let p = if mn >= mb { welch_p_greater(&n, &b) } else { welch_p_greater(&b, &n) };
            let verdict = if !enough {
                Verdict::Inconclusive
            } else if flagged != (0, 0) {
                Verdict::NotJudged
            } else {
                // Decided below, once every test of the family is known.
                Verdict::Unchanged
            };
            changes.push(Change {
                scenario: scenario.clone(),
                strategy: strategy.clone(),
                metric: m.name,
                base: mb,
                new: mn,
                change_pct,
                p,
                flagged,
                verdict,
            });
        }
        // Consistency is not a statistic: any new violation is a regression, however few rounds
        // and whatever the interference.
        let viol = |rs: &[&Row]| rs.iter().map(|r| r.violations + r.use_after_reclaim).sum::<u64>();
        let consistent = rb.iter().any(|r| r.consistency == "per-task");
        let (vb, vn) = (viol(&rb), viol(&rn));
        if consistent && (vb > 0 || vn > 0) && wanted(&scenario, &strategy, "violations") {
            changes.push(Change {
                scenario: scenario.clone(),
                strategy: strategy.clone(),
                metric: "violations",
                base: vb as f64,
                new: vn as f64,
                change_pct: change_pct(vb as f64, vn as f64),
                p: 0.0,
                flagged,
                verdict: if vn > 0 { Verdict::Regression } else { Verdict::Improvement },
            });
        }
    }
    let tests = judge(&mut changes, threshold_pct);
    let skipped = skipped(base, new);
    let unchecked = unchecked(base, new);
    Ok(Comparison {
        differences,
        unchecked,
        skipped,
        changes,
        across_hosts,
        tests,
        rounds,
        threshold_pct,
        filter: filter.map(str::to_owned),
    })
}

/// Gives every change still to be judged (those left `Unchanged` with enough rounds and no flag)
/// its verdict, with Holm's step-down correction over all of them: sorted by p, the k-th smallest
/// (from 0) is significant when it and every smaller one are below `ALPHA / (m - k)`. A change is
/// then a regression or an improvement when it is significant and beyond the threshold. Returns
/// m, the number of tests.
fn judge(changes: &mut [Change], threshold_pct: f64) -> usize {
    let mut family: Vec<usize> = (0..changes.len())
        .filter(|&i| changes[i].verdict == Verdict::Unchanged && changes[i].metric != "violations")
        .collect();
    family.sort_by(|&a, &b| changes[a].p.total_cmp(&changes[b].p));
    let m = family.len();
    for (k, &i) in family.iter().enumerate() {
        // A NaN p (no variance to test) is never significant.
        let significant = changes[i].p < ALPHA / (m - k) as f64;
        if !significant {
            break;
        }
        let c = &mut changes[i];
        if c.change_pct > threshold_pct {
            c.verdict = Verdict::Regression;
        } else if -c.change_pct > threshold_pct {
            c.verdict = Verdict::Improvement;
        }
    }
    m
}

/// What `compare` prints: the differences between the runs (if compared anyway), a summary,
/// each regression and improvement from the largest change down, each measurement not judged
/// (flagged), then the Markdown table of every change.
pub fn render(c: &Comparison) -> String {
    let mut s = String::new();
    if !c.differences.is_empty() {
        writeln!(
            s,
            "WARNING: the runs differ (compared anyway, --allow-different-hosts); a change below may be the difference:"
        )
        .unwrap();
        for d in &c.differences {
            writeln!(s, "- {d}").unwrap();
        }
        s.push('\n');
    }
    if c.across_hosts {
        writeln!(
            s,
            "ACROSS MACHINES: only the ratio to fnptr of the same round is compared; ns/call and latencies measure \
             the machine as much as the strategy.\n"
        )
        .unwrap();
    }
    for line in &c.unchecked {
        writeln!(s, "NOT CHECKED {line}\n").unwrap();
    }
    for line in &c.skipped {
        writeln!(s, "SKIPPED {line}").unwrap();
    }
    if !c.skipped.is_empty() {
        s.push('\n');
    }
    let filter = c.filter.as_ref().map_or(String::new(), |f| format!(" matching {f:?}"));
    writeln!(
        s,
        "{} measurement(s){filter}: {} regression(s), {} improvement(s), {} unchanged, {} not judged (flagged for \
         interference), {} inconclusive. A verdict needs the medians to move beyond {}% and a one-sided Welch test \
         significant at {ALPHA} after Holm's correction for the {} tests made, over at least {MIN_ROUNDS} rounds a side.",
        c.changes.len(),
        c.count(Verdict::Regression),
        c.count(Verdict::Improvement),
        c.count(Verdict::Unchanged),
        c.count(Verdict::NotJudged),
        c.count(Verdict::Inconclusive),
        c.threshold_pct,
        c.tests
    )
    .unwrap();
    if c.count(Verdict::Inconclusive) > 0 {
        writeln!(
            s,
            "INCONCLUSIVE: BASE has {} round(s), NEW {} (the fewest of any scenario and strategy); no significance test \
             is possible below {MIN_ROUNDS}: rerun with --rounds {MIN_ROUNDS} or more.",
            c.rounds.0, c.rounds.1
        )
        .unwrap();
    }
    let name = |c: &Change| format!("{}/{} {}", c.scenario.name(), c.strategy, c.metric);
    for verdict in [Verdict::Regression, Verdict::Improvement] {
        let mut listed: Vec<&Change> = c.changes.iter().filter(|c| c.verdict == verdict).collect();
        listed.sort_by(|a, b| b.change_pct.abs().total_cmp(&a.change_pct.abs()));
        for r in listed {
            writeln!(
                s,
                "{} {}: {} (median {} -> {}, p {:.2e})",
                verdict.word().to_uppercase(),
                name(r),
                change_text(r),
                number(r.base),
                number(r.new),
                r.p
            )
            .unwrap();
        }
    }
    for r in c.changes.iter().filter(|c| c.verdict == Verdict::NotJudged) {
        writeln!(
            s,
            "NOT JUDGED {}: {} (flagged for interference in {} BASE and {} NEW round(s))",
            name(r),
            change_text(r),
            r.flagged.0,
            r.flagged.1
        )
        .unwrap();
    }
    writeln!(s, "\n| scenario | strategy | metric | base (median) | new (median) | change | p | verdict |").unwrap();
    writeln!(s, "|---|---|---|---|---|---|---|---|").unwrap();
    for c in &c.changes {
        writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {:.2e} | {} |",
            c.scenario.name(),
            c.strategy,
            c.metric,
            number(c.base),
            number(c.new),
            change_text(c),
            c.p,
            c.verdict.word()
        )
        .unwrap();
    }
    s
}

/// A figure with the digits that matter: 3 significant ones, never scientific notation.
fn number(x: f64) -> String {
    match x.abs() {
        a if a >= 100.0 || a == 0.0 => format!("{x:.0}"),
        a if a >= 10.0 => format!("{x:.1}"),
        a if a >= 1.0 => format!("{x:.2}"),
        _ => format!("{x:.3}"),
    }
}

/// The relative change; from 0 there is none ("+0.0%" would claim no change).
fn change_text(c: &Change) -> String {
    if c.change_pct.is_nan() { "n/a (base 0)".to_owned() } else { format!("{:+.1}%", c.change_pct) }
}

/// `new` relative to `base`, in percent; NaN from a base of 0 (NaN exceeds no threshold).
fn change_pct(base: f64, new: f64) -> f64 {
    if base == 0.0 { f64::NAN } else { (new - base) / base * 100.0 }
}

/// The median of a sample, `None` when it is empty.
fn median(x: &[f64]) -> Option<f64> {
    crate::summary::Spread::of(x.iter().copied()).map(|s| s.median)
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

fn variance(x: &[f64]) -> f64 {
    let m = mean(x);
    x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (x.len() as f64 - 1.0).max(1.0)
}

/// One-sided p-value of Welch's t-test for mean(a) > mean(b).
pub fn welch_p_greater(a: &[f64], b: &[f64]) -> f64 {
    if a.len() < 2 || b.len() < 2 {
        return 1.0; // one run per side: no significance can be claimed
    }
    let (va, vb) = (variance(a) / a.len() as f64, variance(b) / b.len() as f64);
    let diff = mean(a) - mean(b);
    if va + vb == 0.0 {
        return if diff > 0.0 { 0.0 } else { 1.0 };
    }
    let t = diff / (va + vb).sqrt();
    let df = (va + vb).powi(2) / (va.powi(2) / (a.len() as f64 - 1.0) + vb.powi(2) / (b.len() as f64 - 1.0));
    student_t_sf(t, df)
}

/// P(T > t) for Student's t with `df` degrees of freedom (`statrs`).
pub fn student_t_sf(t: f64, df: f64) -> f64 {
    match StudentsT::new(0.0, 1.0, df) {
        Ok(dist) => dist.sf(t),
        // df is NaN or not positive: no test is possible.
        Err(_) => f64::NAN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CallSites;
    use crate::record::test_support::{row, run};

    #[test]
    fn student_t_matches_tables() {
        // t = 2.015, df = 5: one-sided 0.05; t = 3.365, df = 5: 0.01.
        assert!((student_t_sf(2.015, 5.0) - 0.05).abs() < 1e-3);
        assert!((student_t_sf(3.365, 5.0) - 0.01).abs() < 1e-3);
        assert!((student_t_sf(0.0, 7.0) - 0.5).abs() < 1e-9);
        assert!((student_t_sf(-2.015, 5.0) - 0.95).abs() < 1e-3);
    }

    #[test]
    fn a_zero_base_has_no_relative_change() {
        assert!(change_pct(0.0, 5.0).is_nan() && change_pct(0.0, 0.0).is_nan());
        assert_eq!(change_pct(2.0, 3.0), 50.0);
        let c = Change {
            scenario: Scenario::DEFAULT,
            strategy: "klp".into(),
            metric: "violations",
            base: 0.0,
            new: 3.0,
            change_pct: change_pct(0.0, 3.0),
            p: 0.0,
            flagged: (0, 0),
            verdict: Verdict::Regression,
        };
        let c = Comparison {
            differences: vec![],
            unchecked: vec![],
            skipped: vec![],
            changes: vec![c],
            across_hosts: false,
            tests: 0,
            rounds: (3, 3),
            threshold_pct: 5.0,
            filter: None,
        };
        let table = render(&c);
        assert!(table.contains("| 0 | 3.00 | n/a (base 0) |") && !table.contains("+0.0%"), "{table}");
    }

    /// `rounds` rounds of direct, fnptr and klp at about 1, 1 and 1.5 ns/call (a 1% jitter, so
    /// that each side has a variance), with klp's ns/call multiplied by `klp_factor`.
    fn rows(rounds: usize, klp_factor: f64) -> Vec<Row> {
        let mut rows = Vec::new();
        for run in 0..rounds {
            let jitter = 1.0 + 0.01 * (run % 3) as f64;
            let fnptr = jitter;
            for (name, ns) in [("direct", jitter), ("fnptr", fnptr), ("klp", 1.5 * jitter * klp_factor)] {
                let mut r = row(name, CallSites::PerSite, run, ns);
                r.ratio_to_fnptr = Some(ns / fnptr);
                rows.push(r);
            }
        }
        rows
    }

    fn verdicts(c: &Comparison, strategy: &str) -> Vec<(&'static str, Verdict)> {
        c.changes.iter().filter(|x| x.strategy == strategy).map(|x| (x.metric, x.verdict)).collect()
    }

    /// The A/A check: the same figures compare as no change; a planted 10% slowdown of one
    /// strategy is a regression of its ns/call and its ratio to fnptr, and of nothing else.
    #[test]
    fn same_figures_are_unchanged_and_a_planted_slowdown_is_a_regression() {
        let base = run(rows(3, 1.0));
        let same = compare(&base, &run(rows(3, 1.0)), 5.0, false, None).unwrap();
        assert_eq!(same.count(Verdict::Unchanged), same.changes.len(), "{}", render(&same));
        assert!(
            render(&same).starts_with(
                "5 measurement(s): 0 regression(s), 0 improvement(s), 5 unchanged, 0 not judged (flagged for \
                 interference), 0 inconclusive."
            ),
            "{}",
            render(&same)
        );

        let slow = compare(&base, &run(rows(3, 1.1)), 5.0, false, None).unwrap();
        let klp = verdicts(&slow, "klp");
        assert_eq!(klp, [("ns/call", Verdict::Regression), ("x fnptr", Verdict::Regression)], "one verdict each");
        assert_eq!(slow.count(Verdict::Regression), 2, "{}", render(&slow));
        assert!(verdicts(&slow, "fnptr").iter().all(|(m, _)| *m != "x fnptr"), "fnptr's own ratio is 1 by definition");
        // The summary comes first, then each regression, then the table.
        let text = render(&slow);
        let (summary, regression, table) = (
            text.find("2 regression(s)").unwrap(),
            text.find("REGRESSION per-site").unwrap(),
            text.find("| scenario").unwrap(),
        );
        assert!(summary < regression && regression < table, "{text}");
        assert!(text.contains("+10.0% (median 1.52 -> 1.67, p "), "medians, as the reports show: {text}");
    }

    /// Issue 14: one round a side passed a 10x slowdown with p = 1.000. Now nothing passes.
    #[test]
    fn fewer_than_three_rounds_a_side_is_inconclusive_never_a_pass() {
        for (b, n) in [(1, 1), (2, 5), (5, 2)] {
            let c = compare(&run(rows(b, 1.0)), &run(rows(n, 10.0)), 5.0, false, None).unwrap();
            assert_eq!(c.count(Verdict::Inconclusive), c.changes.len(), "{b} vs {n}: {}", render(&c));
            assert_eq!(c.rounds, (b, n));
            let text = render(&c);
            assert!(
                text.contains(&format!("INCONCLUSIVE: BASE has {b} round(s), NEW {n}")) && text.contains("--rounds 3"),
                "{text}"
            );
        }
    }

    /// Issue 22: the base's environment once came from the machine the test ran on, and the
    /// other run's CPU model string was "AMD EPYC", so on an AMD EPYC guest the difference the
    /// test expected was not there. Both environments are built here.
    #[test]
    fn runs_that_differ_are_refused_naming_each_difference_unless_allowed() {
        let base = run(rows(3, 1.0));
        let mut other = run(rows(3, 1.0));
        other.env.cpu_model = "Intel(R) Xeon(R) Processor".into();
        other.env.rustc = "rustc 0.0.1".into();
        other.config.duration = std::time::Duration::from_secs(2);
        let e = compare(&base, &other, 5.0, false, None).unwrap_err();
        for needle in [
            "CPU model string: BASE \"AMD EPYC\", NEW \"Intel(R) Xeon(R) Processor\"",
            "rustc: BASE \"rustc 1.95.0\", NEW \"rustc 0.0.1\"",
            "config.duration: BASE 0.3, NEW 2.0",
            "--allow-different-hosts",
        ] {
            assert!(e.contains(needle), "{needle}: {e}");
        }
        let c = compare(&base, &other, 5.0, true, None).unwrap();
        assert_eq!(c.differences.len(), 3, "{:?}", c.differences);
        let text = render(&c);
        assert!(text.starts_with("WARNING: the runs differ") && text.contains("- CPU model string: BASE"), "{text}");
    }

    /// Two guests of different CPU generations with the same model string and host name (a Zen 4
    /// and a Zen 5, both "AMD EPYC" on "vm") are different hosts: refused naming the family,
    /// compared with `--allow-different-hosts`.
    #[test]
    fn runs_of_another_cpu_family_are_refused_even_when_model_string_and_host_agree() {
        let zen4 = run(rows(3, 1.0));
        let mut zen5 = run(rows(3, 1.0));
        let cpu = zen5.env.cpu.as_mut().unwrap();
        (cpu.family, cpu.model, cpu.microarchitecture) = (Some(26), Some(17), "Zen 5".into());
        assert_eq!((&zen4.env.cpu_model, &zen4.env.host), (&zen5.env.cpu_model, &zen5.env.host));
        let e = compare(&zen4, &zen5, 5.0, false, None).unwrap_err();
        assert!(
            e.contains(
                "- CPU family: BASE 25 (AMD Zen 4 (25/17/1), 2 CPUs), NEW 26 (AMD Zen 5 (26/17/1), 2 CPUs): different CPUs"
            ),
            "{e}"
        );
        let c = compare(&zen4, &zen5, 5.0, true, None).unwrap();
        assert_eq!(c.differences.len(), 1, "only the family differs: {:?}", c.differences);
        assert!(c.unchecked.is_empty());
        // Each identity field on its own is a different host too.
        for field in 0..4 {
            let mut other = run(rows(3, 1.0));
            let cpu = other.env.cpu.as_mut().unwrap();
            match field {
                0 => cpu.vendor = "Intel".into(),
                1 => cpu.family = Some(6),
                2 => cpu.model = Some(97),
                _ => cpu.stepping = Some(2),
            }
            let d = compare(&zen4, &other, 5.0, true, None).unwrap().differences;
            assert_eq!(d.len(), 1, "{d:?}");
            let what = ["CPU vendor", "CPU family", "CPU model:", "CPU stepping"][field];
            assert!(d[0].starts_with(what), "{d:?}");
        }
    }

    /// A run recorded before the CPU's identity (schema 4: `env.cpu` absent) is compared on what
    /// it has, and compare says what it could not check.
    #[test]
    fn a_run_without_the_cpu_identity_is_compared_saying_what_was_not_checked() {
        let new = run(rows(3, 1.0));
        let mut old = run(rows(3, 1.0));
        old.env.cpu = None;
        let c = compare(&old, &new, 5.0, false, None).unwrap();
        assert!(c.differences.is_empty(), "{:?}", c.differences);
        assert_eq!(c.unchecked.len(), 1);
        assert!(c.unchecked[0].contains("not recorded in BASE (a run of schema 4 or older)"), "{:?}", c.unchecked);
        assert!(render(&c).starts_with("NOT CHECKED CPU vendor, family, model and stepping"), "{}", render(&c));
        let both = compare(&old, &old, 5.0, false, None).unwrap();
        assert!(both.unchecked[0].contains("not recorded in BASE and NEW"), "{:?}", both.unchecked);
        assert!(compare(&new, &new, 5.0, false, None).unwrap().unchecked.is_empty());
    }

    /// A strategy one run measured and the other skipped (unavailable on its machine) is named
    /// with the reason, not refused as rows gone missing; the rest is compared as usual. Without
    /// the record of the skip, the same missing rows are a difference that refuses the comparison.
    #[test]
    fn a_strategy_skipped_on_one_side_is_named_with_its_reason_not_a_missing_row() {
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut base = run(rows(3, 1.0));
        base.config.strategies = names(&["direct", "fnptr", "klp"]);
        let mut new = run(rows(3, 1.0).into_iter().filter(|r| r.strategy != "klp").collect());
        new.config.strategies = names(&["direct", "fnptr"]);
        let e = compare(&base, &new, 5.0, false, None).unwrap_err();
        assert!(e.contains("only in BASE") && e.contains("config.strategies"), "{e}");

        let reason = "named in DISPATCH_UNAVAILABLE; unset it (or drop the name) to run it";
        new.skipped = vec![crate::config::Skipped { strategy: "klp".into(), reason: reason.into() }];
        for (b, n, side) in [(&base, &new, "NEW"), (&new, &base, "BASE")] {
            let c = compare(b, n, 5.0, false, None).unwrap();
            assert!(c.differences.is_empty(), "{:?}", c.differences);
            let line =
                format!("klp: not compared: skipped in {side} (unavailable on AMD Zen 4 (25/17/1), 2 CPUs: {reason})");
            assert_eq!(c.skipped, std::slice::from_ref(&line));
            let text = render(&c);
            assert!(text.starts_with(&format!("SKIPPED {line}\n")), "{text}");
            assert!(c.changes.iter().all(|x| x.strategy != "klp") && !c.changes.is_empty(), "{text}");
            assert_eq!(c.count(Verdict::Unchanged), c.changes.len(), "{text}");
        }
        // Skipped on both sides: nothing to say.
        let both = compare(&new, &new, 5.0, false, None).unwrap();
        assert!(both.skipped.is_empty() && !render(&both).contains("SKIPPED"));
    }

    #[test]
    fn the_filter_keeps_only_matching_changes_and_counts_only_them() {
        let c = compare(&run(rows(3, 1.0)), &run(rows(3, 1.1)), 5.0, false, Some("klp x fnptr")).unwrap();
        assert_eq!(verdicts(&c, "klp"), [("x fnptr", Verdict::Regression)]);
        assert_eq!((c.changes.len(), c.tests), (1, 1), "the family of the correction is what was asked for");
        assert!(render(&c).starts_with("1 measurement(s) matching \"klp x fnptr\": 1 regression(s)"), "{}", render(&c));
    }

    /// Regressions and improvements are both listed, each from the largest change down.
    #[test]
    fn regressions_and_improvements_are_listed_by_size() {
        let mut base = rows(3, 1.0);
        base.extend(rows(3, 1.0).into_iter().filter(|r| r.strategy == "klp").map(|mut r| {
            r.strategy = "kgraft".into();
            r
        }));
        let mut new = rows(3, 1.2);
        new.extend(rows(3, 0.5).into_iter().filter(|r| r.strategy == "klp").map(|mut r| {
            r.strategy = "kgraft".into();
            r
        }));
        let c = compare(&run(base), &run(new), 5.0, false, None).unwrap();
        let text = render(&c);
        let lines: Vec<&str> =
            text.lines().filter(|l| l.starts_with("REGRESSION ") || l.starts_with("IMPROVEMENT ")).collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("REGRESSION per-site") && lines[0].contains("+20.0%"), "{text}");
        assert!(lines[2].starts_with("IMPROVEMENT per-site") && lines[2].contains("-50.0%"), "{text}");
    }

    /// A measurement flagged for interference on either side is reported, never judged: a
    /// planted 50% slowdown in flagged rounds is no regression.
    #[test]
    fn flagged_measurements_are_reported_not_judged() {
        let mut new = rows(3, 1.5);
        new.iter_mut().filter(|r| r.strategy == "klp" && r.round == 1).for_each(|r| {
            r.interference.reasons = vec!["a reader was off its CPU 60% of its time (limit 5%)".into()];
        });
        let c = compare(&run(rows(3, 1.0)), &run(new), 5.0, false, None).unwrap();
        assert_eq!(verdicts(&c, "klp"), [("ns/call", Verdict::NotJudged), ("x fnptr", Verdict::NotJudged)]);
        assert_eq!(c.count(Verdict::Regression), 0);
        let text = render(&c);
        assert!(text.contains("NOT JUDGED per-site") && text.contains("in 0 BASE and 1 NEW round(s)"), "{text}");
    }

    /// Holm's correction: ten changes of p = 0.01 each are all significant at 0.05 on their own,
    /// but m = 10 tests ask the smallest for 0.005; one of p = 0.001 among them passes.
    #[test]
    fn holm_corrects_for_the_number_of_tests() {
        let change = |p: f64| Change {
            scenario: Scenario::DEFAULT,
            strategy: "klp".into(),
            metric: "ns/call",
            base: 1.0,
            new: 1.2,
            change_pct: 20.0,
            p,
            flagged: (0, 0),
            verdict: Verdict::Unchanged,
        };
        let mut ten = vec![change(0.01); 10];
        assert_eq!(judge(&mut ten, 5.0), 10);
        assert!(ten.iter().all(|c| c.verdict == Verdict::Unchanged), "{ten:?}");
        let mut one = vec![change(0.01)];
        judge(&mut one, 5.0);
        assert_eq!(one[0].verdict, Verdict::Regression, "alone, p = 0.01 is significant");
        ten[3].p = 0.001;
        judge(&mut ten, 5.0);
        let regressions: Vec<usize> = (0..10).filter(|&i| ten[i].verdict == Verdict::Regression).collect();
        assert_eq!(regressions, [3], "0.001 < 0.05/10, then 0.01 > 0.05/9 stops the step-down");
    }

    /// Across machines only the ratio to fnptr compares: ns/call is not judged at all.
    #[test]
    fn across_machines_only_the_ratio_is_compared() {
        let mut other = run(rows(3, 1.0));
        other.env.cpu.as_mut().unwrap().family = Some(26);
        for r in &mut other.rows {
            r.ns_per_call *= 3.0;
        }
        let c = compare(&run(rows(3, 1.0)), &other, 5.0, true, None).unwrap();
        assert!(c.across_hosts && c.changes.iter().all(|x| x.metric == "x fnptr"), "{}", render(&c));
        assert_eq!(c.count(Verdict::Regression), 0, "3x slower machine, same ratios: {}", render(&c));
        assert!(render(&c).contains("ACROSS MACHINES: only the ratio to fnptr"));
        let same_host = compare(&run(rows(3, 1.0)), &run(rows(3, 1.0)), 5.0, false, None).unwrap();
        assert!(!same_host.across_hosts && same_host.changes.iter().any(|x| x.metric == "ns/call"));
    }

    #[test]
    fn numbers_keep_three_significant_digits() {
        assert_eq!(
            [491325840.179, 123.4, 12.34, 1.234, 0.1234, 0.0].map(number),
            ["491325840", "123", "12.3", "1.23", "0.123", "0"]
        );
    }

    #[test]
    fn welch_separates_clear_shifts_only() {
        let base = [10.0, 10.2, 9.9, 10.1, 10.0];
        assert!(welch_p_greater(&[12.0, 12.1, 11.9, 12.2, 12.0], &base) < 0.001);
        assert!(welch_p_greater(&[10.1, 9.9, 10.2, 10.0, 10.05], &base) > 0.05);
        assert_eq!(welch_p_greater(&[12.0], &base), 1.0);
    }
}
