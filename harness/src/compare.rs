//! `harness compare BASE NEW`: every metric's change, with a verdict that needs both a
//! threshold and a significance test over the runs (Welch's t-test, one-sided, p < 0.05).
//! Exit codes: 0 no regression, 1 regression, 2 unusable input.

use std::fmt::Write;

use crate::record::{Row, RunFile};

/// One-sided significance level.
pub const ALPHA: f64 = 0.05;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Regression,
    Improvement,
    /// Within the threshold, or not significant.
    Unchanged,
}

/// A metric, and whether higher is better.
struct Metric {
    name: &'static str,
    higher_is_better: bool,
    value: fn(&Row) -> Option<f64>,
}

const METRICS: [Metric; 4] = [
    Metric { name: "ns/call", higher_is_better: false, value: |r| Some(r.ns_per_call) },
    Metric { name: "calls/s", higher_is_better: true, value: |r| Some(r.calls_per_sec) },
    Metric { name: "batch p99 ns", higher_is_better: false, value: |r| r.batch_ns.map(|p| p.p99) },
    Metric { name: "transition p99 us", higher_is_better: false, value: |r| r.transition_us.map(|p| p.p99) },
];

#[derive(Clone, Debug)]
pub struct Change {
    pub scenario: String,
    pub strategy: String,
    pub metric: &'static str,
    pub base: f64,
    pub new: f64,
    /// Relative change of the means, in percent; NaN when the base is 0 (no relative change).
    pub change_pct: f64,
    /// One-sided p-value that the change goes in the worse direction.
    pub p_worse: f64,
    pub p_better: f64,
    pub verdict: Verdict,
}

/// Compares two runs; `Err` is unusable input (exit 2).
pub fn compare(base: &RunFile, new: &RunFile, threshold_pct: f64) -> Result<Vec<Change>, String> {
    if base.schema_version != new.schema_version {
        return Err(format!(
            "schema versions differ ({} vs {}); schema 2 added the call-site regimes (a schema-1 run called every \
             site from one shared instruction): compare runs made by the same version of the harness",
            base.schema_version, new.schema_version
        ));
    }
    let regimes = |f: &RunFile| {
        let mut r: Vec<&str> = f.rows.iter().map(|r| r.call_sites.name()).collect();
        r.sort();
        r.dedup();
        r
    };
    if regimes(base) != regimes(new) {
        return Err(format!(
            "the runs measured different call-site regimes (BASE: {:?}; NEW: {:?}); their figures are not comparable: \
             a shared call instruction measures the indirect-branch predictor, per-site ones the redirection; \
             compare runs of the same --call-sites",
            regimes(base),
            regimes(new)
        ));
    }
    let keys = |f: &RunFile| {
        let mut k: Vec<(String, String)> = f.rows.iter().map(|r| (r.scenario.clone(), r.strategy.clone())).collect();
        k.sort();
        k.dedup();
        k
    };
    let (kb, kn) = (keys(base), keys(new));
    if kb != kn {
        let only_base: Vec<_> = kb.iter().filter(|k| !kn.contains(k)).map(|(a, b)| format!("{a}/{b}")).collect();
        let only_new: Vec<_> = kn.iter().filter(|k| !kb.contains(k)).map(|(a, b)| format!("{a}/{b}")).collect();
        return Err(format!(
            "the runs measured different scenarios or strategies (only in BASE: {only_base:?}; only in NEW: {only_new:?}); compare runs of the same command"
        ));
    }
    let mut out = Vec::new();
    for (scenario, strategy) in kb {
        let pick = |f: &RunFile, m: &Metric| -> Vec<f64> {
            f.rows
                .iter()
                .filter(|r| r.scenario == scenario && r.strategy == strategy)
                .filter_map(|r| (m.value)(r))
                .collect()
        };
        for m in &METRICS {
            let (b, n) = (pick(base, m), pick(new, m));
            if b.is_empty() || n.is_empty() {
                continue;
            }
            let (mb, mn) = (mean(&b), mean(&n));
            let change_pct = change_pct(mb, mn);
            let p_increase = welch_p_greater(&n, &b);
            let p_decrease = welch_p_greater(&b, &n);
            let (p_worse, p_better) =
                if m.higher_is_better { (p_decrease, p_increase) } else { (p_increase, p_decrease) };
            let worse_pct = if m.higher_is_better { -change_pct } else { change_pct };
            let verdict = if worse_pct > threshold_pct && p_worse < ALPHA {
                Verdict::Regression
            } else if -worse_pct > threshold_pct && p_better < ALPHA {
                Verdict::Improvement
            } else {
                Verdict::Unchanged
            };
            out.push(Change {
                scenario: scenario.clone(),
                strategy: strategy.clone(),
                metric: m.name,
                base: mb,
                new: mn,
                change_pct,
                p_worse,
                p_better,
                verdict,
            });
        }
        // Consistency is not a statistic: any new violation is a regression.
        let viol = |f: &RunFile| {
            f.rows
                .iter()
                .filter(|r| r.scenario == scenario && r.strategy == strategy)
                .map(|r| r.violations + r.use_after_reclaim)
                .sum::<u64>()
        };
        let consistent =
            base.rows.iter().any(|r| r.scenario == scenario && r.strategy == strategy && r.consistency == "per-task");
        let (vb, vn) = (viol(base), viol(new));
        if consistent && (vb > 0 || vn > 0) {
            out.push(Change {
                scenario: scenario.clone(),
                strategy: strategy.clone(),
                metric: "violations",
                base: vb as f64,
                new: vn as f64,
                change_pct: change_pct(vb as f64, vn as f64),
                p_worse: 0.0,
                p_better: 0.0,
                verdict: if vn > 0 { Verdict::Regression } else { Verdict::Improvement },
            });
        }
    }
    Ok(out)
}

/// The Markdown table of `compare`.
pub fn render(changes: &[Change], threshold_pct: f64) -> String {
    let mut s = String::new();
    writeln!(s, "| scenario | strategy | metric | base | new | change | p (worse) | verdict |").unwrap();
    writeln!(s, "|---|---|---|---|---|---|---|---|").unwrap();
    for c in changes {
        let v = match c.verdict {
            Verdict::Regression => "REGRESSION",
            Verdict::Improvement => "improvement",
            Verdict::Unchanged => "-",
        };
        // From 0 there is no relative change: "+0.0%" would claim none.
        let change = if c.change_pct.is_nan() { "n/a (base 0)".to_owned() } else { format!("{:+.1}%", c.change_pct) };
        writeln!(
            s,
            "| {} | {} | {} | {:.3} | {:.3} | {change} | {:.3} | {v} |",
            c.scenario, c.strategy, c.metric, c.base, c.new, c.p_worse
        )
        .unwrap();
    }
    let regressions = changes.iter().filter(|c| c.verdict == Verdict::Regression).count();
    writeln!(s, "\n{regressions} regression(s): a verdict needs a change beyond {threshold_pct}% and one-sided Welch p < {ALPHA}.").unwrap();
    s
}

/// `new` relative to `base`, in percent; NaN from a base of 0 (NaN exceeds no threshold).
fn change_pct(base: f64, new: f64) -> f64 {
    if base == 0.0 { f64::NAN } else { (new - base) / base * 100.0 }
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

/// P(T > t) for Student's t with `df` degrees of freedom.
pub fn student_t_sf(t: f64, df: f64) -> f64 {
    let tail = 0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t));
    if t > 0.0 { tail } else { 1.0 - tail }
}

fn ln_gamma(x: f64) -> f64 {
    // Lanczos approximation (g = 7, n = 9).
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + 7.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The regularized incomplete beta function I_x(a, b) (Numerical Recipes' continued fraction).
fn incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front = (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    if x < (a + 1.0) / (a + b + 2.0) { front * beta_cf(a, b, x) / a } else { 1.0 - front * beta_cf(b, a, 1.0 - x) / b }
}

fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    let tiny = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < tiny {
        d = tiny;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..300 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        d = if d.abs() < tiny { tiny } else { d };
        c = 1.0 + aa / c;
        c = if c.abs() < tiny { tiny } else { c };
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        d = if d.abs() < tiny { tiny } else { d };
        c = 1.0 + aa / c;
        c = if c.abs() < tiny { tiny } else { c };
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < 1e-12 {
            break;
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

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
            scenario: "s".into(),
            strategy: "klp".into(),
            metric: "violations",
            base: 0.0,
            new: 3.0,
            change_pct: change_pct(0.0, 3.0),
            p_worse: 0.0,
            p_better: 0.0,
            verdict: Verdict::Regression,
        };
        let table = render(&[c], 5.0);
        assert!(table.contains("| 0.000 | 3.000 | n/a (base 0) |") && !table.contains("+0.0%"), "{table}");
    }

    #[test]
    fn welch_separates_clear_shifts_only() {
        let base = [10.0, 10.2, 9.9, 10.1, 10.0];
        assert!(welch_p_greater(&[12.0, 12.1, 11.9, 12.2, 12.0], &base) < 0.001);
        assert!(welch_p_greater(&[10.1, 9.9, 10.2, 10.0, 10.05], &base) > 0.05);
        assert_eq!(welch_p_greater(&[12.0], &base), 1.0);
    }
}
