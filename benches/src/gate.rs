//! The instruction-count gate (`scripts/gate`): compares the gungraun suite's counts with the
//! committed baseline, benchmark by benchmark, with a limit that has a relative and an absolute
//! part: `limit = base × relative_pct / 100 + absolute_per_call × calls`.
//!
//! With the defaults (2% and 0.5 instructions per call over 1000 calls), noise from unrelated
//! rebuilds (seen at 1.5%) passes, and a regression of 3 instructions per call fails on every
//! steady read path (all below 125 instructions per call, where 2% + 0.5 reaches 3).
//!
//! Exit codes of the gate: 0 pass, 1 regression, 2 unusable (missing, corrupt or mismatched
//! baseline, missing tool).

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::{Deserialize, Serialize};

pub const BASELINE_SCHEMA: u32 = 1;

/// Tool versions a baseline was made with; counts are comparable only with the same ones.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Versions {
    pub rustc: String,
    pub valgrind: String,
    pub gungraun: String,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct Limits {
    pub relative_pct: f64,
    pub absolute_per_call: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Self { relative_pct: 2.0, absolute_per_call: 0.5 }
    }
}

/// One benchmark's count.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Count {
    pub instructions: u64,
    /// Operations the count covers (read paths: calls; writer benchmarks: 1).
    pub calls: u64,
}

/// `results/baseline/instructions.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Baseline {
    pub schema: u32,
    pub versions: Versions,
    pub limits: Limits,
    /// `<group>::<function>::<id>` → count.
    pub benchmarks: BTreeMap<String, Count>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Improvement,
    Regression,
    /// Measured but not in the baseline: reported; `--update` adds it.
    New,
    /// In the baseline but not measured: the baseline does not match the suite.
    Missing,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    pub name: String,
    pub base: Option<u64>,
    pub new: Option<u64>,
    pub limit: Option<f64>,
    pub calls: u64,
    pub verdict: Verdict,
}

/// Why the gate cannot give a verdict (exit 2), with what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unusable(pub String);

/// Parses a baseline file's text.
pub fn parse_baseline(text: &str, path: &str) -> Result<Baseline, Unusable> {
    if text.trim().is_empty() {
        return Err(Unusable(format!(
            "{path} is empty; restore it from git or make one on purpose with scripts/gate --update"
        )));
    }
    let b: Baseline = serde_json::from_str(text).map_err(|e| {
        Unusable(format!(
            "{path} is corrupt ({e}); restore it from git or make one on purpose with scripts/gate --update"
        ))
    })?;
    if b.schema != BASELINE_SCHEMA {
        return Err(Unusable(format!(
            "{path} has schema {}, this gate reads {BASELINE_SCHEMA}; re-baseline with scripts/gate --update",
            b.schema
        )));
    }
    Ok(b)
}

/// Parses gungraun's `--output-format=json` (one summary object per line) into counts.
/// `calls_of(group)` says how many operations a group's benchmarks cover.
pub fn parse_gungraun(text: &str, calls_of: impl Fn(&str) -> u64) -> Result<BTreeMap<String, Count>, Unusable> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| Unusable(format!("gungraun output line {} is not JSON ({e})", i + 1)))?;
        let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
        let (Some(group), Some(function), Some(id)) = (field("group"), field("function_name"), field("id")) else {
            return Err(Unusable(format!("gungraun output line {} lacks group/function_name/id", i + 1)));
        };
        let ir =
            v.pointer("/profiles/0/data/total/metrics/Ir/values/new").and_then(|x| x.as_u64()).ok_or_else(|| {
                Unusable(format!("gungraun output line {} has no Ir count (was the output format changed?)", i + 1))
            })?;
        out.insert(format!("{group}::{function}::{id}"), Count { instructions: ir, calls: calls_of(&group) });
    }
    if out.is_empty() {
        return Err(Unusable("gungraun produced no benchmark results".into()));
    }
    Ok(out)
}

/// Compares measured counts with the baseline. Mismatched tool versions are unusable: counts
/// shift with the compiler and valgrind, so the baseline must be remade on purpose.
pub fn compare(
    base: &Baseline,
    versions: &Versions,
    measured: &BTreeMap<String, Count>,
) -> Result<Vec<Line>, Unusable> {
    if &base.versions != versions {
        return Err(Unusable(format!(
            "the baseline was made with {:?}, this machine has {:?}; counts are not comparable across tool versions: \
             re-baseline on purpose with scripts/gate --update (and commit it)",
            base.versions, versions
        )));
    }
    let mut lines = Vec::new();
    for (name, b) in &base.benchmarks {
        let line = match measured.get(name) {
            None => Line {
                name: name.clone(),
                base: Some(b.instructions),
                new: None,
                limit: None,
                calls: b.calls,
                verdict: Verdict::Missing,
            },
            Some(n) => {
                let limit = b.instructions as f64 * base.limits.relative_pct / 100.0
                    + base.limits.absolute_per_call * b.calls as f64;
                let change = n.instructions as f64 - b.instructions as f64;
                let verdict = if change > limit {
                    Verdict::Regression
                } else if -change > limit {
                    Verdict::Improvement
                } else {
                    Verdict::Pass
                };
                Line {
                    name: name.clone(),
                    base: Some(b.instructions),
                    new: Some(n.instructions),
                    limit: Some(limit),
                    calls: b.calls,
                    verdict,
                }
            }
        };
        lines.push(line);
    }
    for (name, n) in measured.iter().filter(|(k, _)| !base.benchmarks.contains_key(*k)) {
        lines.push(Line {
            name: name.clone(),
            base: None,
            new: Some(n.instructions),
            limit: None,
            calls: n.calls,
            verdict: Verdict::New,
        });
    }
    Ok(lines)
}

/// The gate's exit code for a comparison: missing benchmarks make the baseline unusable (2),
/// then any regression fails (1).
pub fn exit_code(lines: &[Line]) -> u8 {
    if lines.iter().any(|l| l.verdict == Verdict::Missing) {
        2
    } else if lines.iter().any(|l| l.verdict == Verdict::Regression) {
        1
    } else {
        0
    }
}

/// The Markdown table (base, new, change, limit, verdict; per call where a benchmark covers calls).
pub fn markdown(lines: &[Line]) -> String {
    let mut s = String::new();
    writeln!(s, "| benchmark | base | new | change | limit | per call (base → new) | verdict |").unwrap();
    writeln!(s, "|---|---:|---:|---:|---:|---:|---|").unwrap();
    let opt = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
    for l in lines {
        let change = match (l.base, l.new) {
            (Some(b), Some(n)) => {
                format!("{:+} ({:+.2}%)", n as i64 - b as i64, (n as f64 - b as f64) / b.max(1) as f64 * 100.0)
            }
            _ => "-".into(),
        };
        let per_call = match (l.base, l.new) {
            (Some(b), Some(n)) if l.calls > 1 => {
                format!("{:.2} → {:.2}", b as f64 / l.calls as f64, n as f64 / l.calls as f64)
            }
            _ => "-".into(),
        };
        let verdict = match l.verdict {
            Verdict::Pass => "pass",
            Verdict::Improvement => "improvement",
            Verdict::Regression => "**REGRESSION**",
            Verdict::New => "new (not in baseline)",
            Verdict::Missing => "**MISSING** (in baseline, not measured)",
        };
        writeln!(
            s,
            "| {} | {} | {} | {change} | {} | {per_call} | {verdict} |",
            l.name,
            opt(l.base),
            opt(l.new),
            l.limit.map_or("-".into(), |x| format!("±{x:.0}"))
        )
        .unwrap();
    }
    let count = |v: Verdict| lines.iter().filter(|l| l.verdict == v).count();
    writeln!(
        s,
        "\n{} pass, {} improved, {} regressed, {} new, {} missing.",
        count(Verdict::Pass),
        count(Verdict::Improvement),
        count(Verdict::Regression),
        count(Verdict::New),
        count(Verdict::Missing)
    )
    .unwrap();
    s
}

/// Bencher Metric Format of the measured counts.
pub fn bmf(measured: &BTreeMap<String, Count>) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (name, c) in measured {
        out.insert(
            name.clone(),
            serde_json::json!({
                "instructions": {"value": c.instructions},
                "instructions-per-call": {"value": c.instructions as f64 / c.calls.max(1) as f64},
            }),
        );
    }
    out.into()
}

/// A new baseline from measured counts (what `--update` writes).
pub fn baseline(versions: Versions, limits: Limits, measured: BTreeMap<String, Count>) -> Baseline {
    Baseline { schema: BASELINE_SCHEMA, versions, limits, benchmarks: measured }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions() -> Versions {
        Versions { rustc: "rustc 1.95.0".into(), valgrind: "valgrind-3.19.0".into(), gungraun: "0.20.0".into() }
    }

    fn base() -> Baseline {
        let mut b = BTreeMap::new();
        b.insert("read_path::steady::klp".to_owned(), Count { instructions: 35_110, calls: 1000 });
        b.insert("read_path::steady::arcswap".to_owned(), Count { instructions: 91_110, calls: 1000 });
        b.insert("writer::writer_enable::klp".to_owned(), Count { instructions: 18_129, calls: 1 });
        baseline(versions(), Limits::default(), b)
    }

    fn measured(f: impl Fn(&str, u64) -> u64) -> BTreeMap<String, Count> {
        base()
            .benchmarks
            .into_iter()
            .map(|(k, c)| (k.clone(), Count { instructions: f(&k, c.instructions), ..c }))
            .collect()
    }

    fn verdict_of(lines: &[Line], name: &str) -> Verdict {
        lines.iter().find(|l| l.name == name).unwrap().verdict
    }

    #[test]
    fn unchanged_and_rebuild_noise_pass() {
        for noise in [0.0, 0.015, -0.015] {
            let m = measured(|_, n| (n as f64 * (1.0 + noise)) as u64);
            let lines = compare(&base(), &versions(), &m).unwrap();
            assert_eq!(exit_code(&lines), 0, "{noise}: {lines:?}");
        }
    }

    #[test]
    fn three_instructions_per_call_on_a_read_path_fail() {
        let m = measured(|k, n| if k == "read_path::steady::arcswap" { n + 3 * 1000 } else { n });
        let lines = compare(&base(), &versions(), &m).unwrap();
        assert_eq!(verdict_of(&lines, "read_path::steady::arcswap"), Verdict::Regression);
        assert_eq!(exit_code(&lines), 1);
        assert!(markdown(&lines).contains("**REGRESSION**"));
    }

    #[test]
    fn improvements_are_reported_and_pass() {
        let m = measured(|k, n| if k == "read_path::steady::klp" { n - 5 * 1000 } else { n });
        let lines = compare(&base(), &versions(), &m).unwrap();
        assert_eq!(verdict_of(&lines, "read_path::steady::klp"), Verdict::Improvement);
        assert_eq!(exit_code(&lines), 0);
    }

    #[test]
    fn missing_benchmark_is_unusable_and_new_one_is_reported() {
        let mut m = measured(|_, n| n);
        m.remove("writer::writer_enable::klp");
        m.insert("read_path::steady::newcomer".into(), Count { instructions: 1, calls: 1000 });
        let lines = compare(&base(), &versions(), &m).unwrap();
        assert_eq!(verdict_of(&lines, "writer::writer_enable::klp"), Verdict::Missing);
        assert_eq!(verdict_of(&lines, "read_path::steady::newcomer"), Verdict::New);
        assert_eq!(exit_code(&lines), 2);
    }

    #[test]
    fn corrupt_empty_and_foreign_baselines_are_unusable() {
        assert!(parse_baseline("", "b.json").unwrap_err().0.contains("empty"));
        assert!(parse_baseline("{\"schema\": 1,", "b.json").unwrap_err().0.contains("corrupt"));
        let other = serde_json::to_string(&Baseline { schema: 9, ..base() }).unwrap();
        assert!(parse_baseline(&other, "b.json").unwrap_err().0.contains("schema 9"));
        let good = serde_json::to_string(&base()).unwrap();
        assert_eq!(parse_baseline(&good, "b.json").unwrap(), base());
    }

    #[test]
    fn version_mismatch_is_unusable() {
        let other = Versions { valgrind: "valgrind-3.22.0".into(), ..versions() };
        let err = compare(&base(), &other, &measured(|_, n| n)).unwrap_err();
        assert!(err.0.contains("--update"), "{}", err.0);
    }

    #[test]
    fn gungraun_json_lines_parse() {
        let line = r#"{"group":"read_path","function_name":"steady","id":"klp","profiles":[{"data":{"total":{"metrics":{"Ir":{"values":{"new":35110}}}}}}]}"#;
        let m = parse_gungraun(line, |g| if g == "read_path" { 1000 } else { 1 }).unwrap();
        assert_eq!(m["read_path::steady::klp"], Count { instructions: 35_110, calls: 1000 });
        assert!(parse_gungraun("not json", |_| 1).is_err());
        assert!(parse_gungraun("", |_| 1).is_err());
        assert!(parse_gungraun(r#"{"group":"g"}"#, |_| 1).is_err());
    }

    /// The committed baseline's limits hold the promise above for every steady read path in it.
    #[test]
    fn committed_baseline_catches_three_per_call_and_tolerates_noise() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../results/baseline/instructions.json");
        let Ok(text) = std::fs::read_to_string(path) else { return };
        let b = parse_baseline(&text, path).unwrap();
        for (name, c) in b.benchmarks.iter().filter(|(n, _)| n.starts_with("read_path::")) {
            let limit =
                c.instructions as f64 * b.limits.relative_pct / 100.0 + b.limits.absolute_per_call * c.calls as f64;
            assert!(3.0 * c.calls as f64 > limit, "{name}: +3/call would pass (limit {limit})");
            assert!(0.015 * c.instructions as f64 <= limit, "{name}: 1.5% noise would fail");
        }
    }
}
