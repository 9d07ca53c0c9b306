//! The instruction-count gate (`scripts/gate`): compares the gungraun suite's counts with the
//! committed baseline, benchmark by benchmark, with a limit that has a relative and an absolute
//! part: `limit = base × relative_pct / 100 + absolute_per_call × calls`.
//!
//! With the defaults (2% and 0.5 instructions per call over 1000 calls), noise from unrelated
//! rebuilds (seen at 1.5%) passes, and a regression of 3 instructions per call fails on every
//! steady read path (all below 125 instructions per call, where 2% + 0.5 reaches 3).
//!
//! Beside instructions (callgrind's `Ir`) the gate records simulated indirect-branch
//! mispredictions (`Bim`, from `--branch-sim=yes`) and limits them on their own: a benchmark
//! regresses when its `Bim` exceeds the baseline's by more than `bim_per_call × calls +
//! bim_absolute` (defaults 0.05 and 2) and reaches [`SHARED_BIM_PER_CALL`] per call, whatever its
//! instructions do. This guards how the read paths are measured:
//! with one call instruction per site every indirect call is predicted (≈ 0 `Bim` per call),
//! with one shared call instruction cycling over 8 sites almost none is (≈ 1 per call; valgrind
//! 3.19 on a C loop of that shape: 800,160 of 800,299 indirect branches mispredicted over 100,000
//! rounds of 8 calls, against 168 with a call instruction per site). Callgrind's predictor is
//! the same on every machine, so a change that brings a shared call instruction back into a
//! per-site path fails the gate on any CPU, even when it costs no instruction. Writer
//! benchmarks (one operation, 11 to 23 `Bim` each) are reported but not limited on `Bim`: their
//! indirect branches are the engine's, none of them a measured call, and the count moves with
//! layout changes elsewhere in the binary (by one to three mispredictions, with no change of
//! their own code).
//!
//! Callgrind predicts indirect branches with an untagged table of 512 targets indexed by the low
//! nine bits of the branch's address (valgrind's `cg_branchpred.c`), so two call instructions of
//! one loop whose addresses are equal modulo 512 evict each other: every pair costs two
//! mispredictions per round of 8 sites. That is why a per-site path can show 0.25 or 0.75 per
//! call (8 call sites on 5 distinct addresses modulo 512 give 0.75) where most show under 0.01.
//! It depends only on the loop's own layout, so it moves only when that code changes: then
//! look at the loop's disassembly (each site its own `call`) and update the baseline on
//! purpose.
//!
//! A strategy this machine cannot run (`dispatch::strategy::Info::availability`) is skipped by the
//! suite, which records it with its reason in a file (`benches::available`); given that record,
//! the gate reports the baseline's benchmarks of the strategy as skipped, naming the reason, and
//! neither fails for them nor reads the empty counts the suite left. Only the suite's own record
//! counts: the strategy's probe runs in the process that would have measured it (under valgrind),
//! which may answer otherwise than this one. Any other benchmark missing still makes the baseline
//! unusable.
//!
//! Exit codes of the gate: 0 pass, 1 regression, 2 unusable (missing, corrupt, older-schema or
//! mismatched baseline, a baseline covering fewer than half of the measured benchmarks or with a
//! negative or absurd limit, a measurement without `Bim`, an output path equal to an input path,
//! missing tool).

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::{Deserialize, Serialize};

/// 2: counts carry `indirect_mispredictions` and limits `bim_per_call` and `bim_absolute` (schema
/// 1 had none of them).
pub const BASELINE_SCHEMA: u32 = 2;

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
    /// Indirect-branch mispredictions per call a benchmark may gain. Well below the ≈ 1 per call
    /// that a shared call instruction costs, well above the few per 1000 calls of a per-site path.
    pub bim_per_call: f64,
    /// Indirect-branch mispredictions any benchmark may gain besides: code layout alone moved
    /// writer operations by one.
    pub bim_absolute: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Self { relative_pct: 2.0, absolute_per_call: 0.5, bim_per_call: 0.05, bim_absolute: 2.0 }
    }
}

impl Limits {
    /// Each limit's range: `(name, value, max, unit)`. Below 0 a limit fails unchanged code;
    /// beyond the maximum (a doubling, 100 instructions more per call, a misprediction more per
    /// call) it passes whatever the gate exists to catch.
    fn ranges(&self) -> [(&'static str, f64, f64, &'static str); 4] {
        [
            ("relative_pct", self.relative_pct, 100.0, "percent"),
            ("absolute_per_call", self.absolute_per_call, 100.0, "instructions per call"),
            ("bim_per_call", self.bim_per_call, 1.0, "indirect mispredictions per call"),
            ("bim_absolute", self.bim_absolute, 1000.0, "indirect mispredictions"),
        ]
    }

    /// Refuses a negative or absurd limit, naming it and its range.
    pub fn check(&self, path: &str) -> Result<(), Unusable> {
        for (name, value, max, unit) in self.ranges() {
            // Written so that NaN fails too.
            if !(0.0..=max).contains(&value) {
                return Err(Unusable(format!(
                    "{path}: limits.{name} is {value}, give 0 to {max} {unit}; fix it, or restore the baseline from git"
                )));
            }
        }
        Ok(())
    }

    /// How many more indirect-branch mispredictions than its baseline a benchmark of `calls`
    /// calls may have.
    pub fn bim(&self, calls: u64) -> f64 {
        self.bim_per_call * calls as f64 + self.bim_absolute
    }
}

/// Indirect-branch mispredictions per call from which a read path's rise in Bim is a regression:
/// where a shared call instruction sits (cycling over 8 sites it mispredicts 7 calls in 8 or
/// more). Below it, a rise is callgrind's predictor table aliasing distinct call instructions
/// (an untagged 512-entry table indexed by address: each aliasing pair of 8 sites costs 0.25 per
/// call, at most 0.75 short of all 8 in one entry), and that moves with where the linker puts
/// code: textpoke's eight per-site slow paths showed 0.25 per call in one build and 0.5 in
/// another of the same commit, checked out in another folder. It is reported, not judged.
pub const SHARED_BIM_PER_CALL: f64 = 0.8;

/// One benchmark's count.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Count {
    pub instructions: u64,
    /// Callgrind's simulated indirect-branch mispredictions (`Bim`).
    pub indirect_mispredictions: u64,
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
    /// In the baseline, not measured because its strategy cannot run on this machine (the suite
    /// said so: [`parse_skipped`]). Reported with the reason; not a failure.
    Skipped,
}

/// Which limits a benchmark exceeded (both false unless its verdict is `Regression`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exceeded {
    pub instructions: bool,
    pub indirect_mispredictions: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    pub name: String,
    pub base: Option<u64>,
    pub new: Option<u64>,
    pub limit: Option<f64>,
    /// Indirect-branch mispredictions (`Bim`), base and new, and the limit on their growth.
    pub base_bim: Option<u64>,
    pub new_bim: Option<u64>,
    pub bim_limit: Option<f64>,
    pub calls: u64,
    pub verdict: Verdict,
    pub exceeded: Exceeded,
    /// Why the benchmark's strategy cannot run here (verdict `Skipped` only).
    pub skipped: Option<String>,
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
    let corrupt = |e: serde_json::Error| {
        Unusable(format!(
            "{path} is corrupt ({e}); restore it from git or make one on purpose with scripts/gate --update"
        ))
    };
    // The schema is read first: an older baseline lacks fields of this one, and "corrupt" would
    // send its reader to git instead of to the regeneration it needs.
    let v: serde_json::Value = serde_json::from_str(text).map_err(corrupt)?;
    match v.get("schema").and_then(serde_json::Value::as_u64) {
        Some(s) if s == u64::from(BASELINE_SCHEMA) => {}
        Some(1) => {
            return Err(Unusable(format!(
                "{path} has schema 1 (instructions only, no indirect_mispredictions), this gate reads \
                 {BASELINE_SCHEMA}; it is unusable: regenerate it with scripts/gate --update (and commit it)"
            )));
        }
        Some(s) => {
            return Err(Unusable(format!(
                "{path} has schema {s}, this gate reads {BASELINE_SCHEMA}; re-baseline with scripts/gate --update"
            )));
        }
        None => return Err(Unusable(format!("{path} has no schema; make one on purpose with scripts/gate --update"))),
    }
    let baseline: Baseline = serde_json::from_value(v).map_err(corrupt)?;
    baseline.limits.check(path)?;
    Ok(baseline)
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
        let metric = |m: &str| v.pointer(&format!("/profiles/0/data/total/metrics/{m}/values/new"))?.as_u64();
        let ir = metric("Ir").ok_or_else(|| {
            Unusable(format!("gungraun output line {} has no Ir count (was the output format changed?)", i + 1))
        })?;
        let bim = metric("Bim").ok_or_else(|| {
            Unusable(format!(
                "gungraun output line {} ({group}::{function}::{id}) has no Bim count: the suite must run callgrind \
                 with --branch-sim=yes (main!'s config in benches/benches/instructions.rs)",
                i + 1
            ))
        })?;
        out.insert(
            format!("{group}::{function}::{id}"),
            Count { instructions: ir, indirect_mispredictions: bim, calls: calls_of(&group) },
        );
    }
    if out.is_empty() {
        return Err(Unusable("gungraun produced no benchmark results".into()));
    }
    Ok(out)
}

/// Strategies the suite skipped on this machine, name → reason: the lines `<name>\t<reason>` that
/// `benches::available` appends to the file named by `DISPATCH_BENCH_SKIPPED_LOG` (each once per
/// benchmark process, so usually repeated). `path` names the file in messages.
pub fn parse_skipped(text: &str, path: &str) -> Result<BTreeMap<String, String>, Unusable> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let Some((name, reason)) = line.split_once('\t').filter(|(n, r)| !n.is_empty() && !r.is_empty()) else {
            return Err(Unusable(format!(
                "{path} line {}: {line:?} is not `<strategy>\\t<reason>`; it is the suite's record of skipped \
                 strategies: delete it and run scripts/gate again",
                i + 1
            )));
        };
        out.insert(name.to_owned(), reason.to_owned());
    }
    Ok(out)
}

/// The strategy a benchmark `<group>::<function>::<strategy>` measures.
fn strategy_of(name: &str) -> &str {
    name.rsplit("::").next().unwrap_or(name)
}

/// `measured` without the benchmarks of `skipped` strategies: they ran nothing (no fixture), so
/// their counts measure nothing either.
pub fn without_skipped(
    measured: BTreeMap<String, Count>,
    skipped: &BTreeMap<String, String>,
) -> BTreeMap<String, Count> {
    measured.into_iter().filter(|(name, _)| !skipped.contains_key(strategy_of(name))).collect()
}

/// Refuses a baseline that covers fewer than half of the measured benchmarks: it gates few of
/// them, and an empty one gated none ("0 pass ... 63 new" was a pass).
pub fn coverage(base: &Baseline, measured: &BTreeMap<String, Count>) -> Result<(), Unusable> {
    let covered = measured.keys().filter(|k| base.benchmarks.contains_key(*k)).count();
    if covered * 2 < measured.len() {
        return Err(Unusable(format!(
            "the baseline covers {covered} of the {} measured benchmarks (at least half are needed); it is unusable: \
             make one on purpose with scripts/gate --update (and commit it)",
            measured.len()
        )));
    }
    Ok(())
}

/// Compares measured counts with the baseline. Mismatched tool versions are unusable: counts
/// shift with the compiler and valgrind, so the baseline must be remade on purpose. A baseline
/// benchmark whose strategy is in `skipped` (name → reason, [`parse_skipped`]) is `Skipped`, and
/// its measured counts, if any, are left out (see [`without_skipped`]).
pub fn compare(
    base: &Baseline,
    versions: &Versions,
    measured: &BTreeMap<String, Count>,
    skipped: &BTreeMap<String, String>,
) -> Result<Vec<Line>, Unusable> {
    let measured = &without_skipped(measured.clone(), skipped);
    if &base.versions != versions {
        return Err(Unusable(format!(
            "the baseline was made with {:?}, this machine has {:?}; counts are not comparable across tool versions: \
             re-baseline on purpose with scripts/gate --update (and commit it)",
            base.versions, versions
        )));
    }
    coverage(base, measured)?;
    let mut lines = Vec::new();
    for (name, b) in &base.benchmarks {
        let line = match measured.get(name) {
            None => {
                let reason = skipped.get(strategy_of(name)).cloned();
                Line {
                    name: name.clone(),
                    base: Some(b.instructions),
                    new: None,
                    limit: None,
                    base_bim: Some(b.indirect_mispredictions),
                    new_bim: None,
                    bim_limit: None,
                    calls: b.calls,
                    verdict: if reason.is_some() { Verdict::Skipped } else { Verdict::Missing },
                    exceeded: Exceeded::default(),
                    skipped: reason,
                }
            }
            Some(n) => {
                let limit = b.instructions as f64 * base.limits.relative_pct / 100.0
                    + base.limits.absolute_per_call * b.calls as f64;
                let change = n.instructions as f64 - b.instructions as f64;
                // Per call on both sides is the same as totals over the baseline's calls. Only
                // read paths (many calls) are limited on Bim; see the module.
                let bim_limit = (b.calls > 1).then(|| base.limits.bim(b.calls));
                let bim_change = n.indirect_mispredictions as f64 - b.indirect_mispredictions as f64;
                let shared = n.indirect_mispredictions as f64 >= SHARED_BIM_PER_CALL * b.calls as f64;
                let exceeded = Exceeded {
                    instructions: change > limit,
                    indirect_mispredictions: bim_limit.is_some_and(|l| bim_change > l) && shared,
                };
                let verdict = if exceeded.instructions || exceeded.indirect_mispredictions {
                    Verdict::Regression
                } else if -change > limit || bim_limit.is_some_and(|l| -bim_change > l) {
                    Verdict::Improvement
                } else {
                    Verdict::Pass
                };
                Line {
                    name: name.clone(),
                    base: Some(b.instructions),
                    new: Some(n.instructions),
                    limit: Some(limit),
                    base_bim: Some(b.indirect_mispredictions),
                    new_bim: Some(n.indirect_mispredictions),
                    bim_limit,
                    calls: b.calls,
                    verdict,
                    exceeded,
                    skipped: None,
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
            base_bim: None,
            new_bim: Some(n.indirect_mispredictions),
            bim_limit: None,
            calls: n.calls,
            verdict: Verdict::New,
            exceeded: Exceeded::default(),
            skipped: None,
        });
    }
    Ok(lines)
}

/// The gate's exit code for a comparison: missing benchmarks make the baseline unusable (2),
/// then any regression fails (1); skipped ones (their strategy cannot run here) fail nothing.
pub fn exit_code(lines: &[Line]) -> u8 {
    if lines.iter().any(|l| l.verdict == Verdict::Missing) {
        2
    } else if lines.iter().any(|l| l.verdict == Verdict::Regression) {
        1
    } else {
        0
    }
}

/// The Markdown table (instructions: base, new, change, limit, per call where a benchmark covers
/// calls; indirect mispredictions per call, base → new, and their limit; verdict, naming what regressed).
pub fn markdown(lines: &[Line]) -> String {
    let mut s = String::new();
    writeln!(
        s,
        "| benchmark | base | new | change | limit | per call (base → new) | Bim per call (base → new) | Bim limit | verdict |"
    )
    .unwrap();
    writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---|").unwrap();
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
        // Writers count one operation: their Bim per call is their whole count.
        let calls = l.calls.max(1) as f64;
        let bim = |v: Option<u64>| v.map_or("-".to_owned(), |v| format!("{:.3}", v as f64 / calls));
        let bim_per_call = format!("{} → {}", bim(l.base_bim), bim(l.new_bim));
        let bim_limit = l.bim_limit.map_or("-".into(), |x| format!("+{:.3}", x / calls));
        let verdict = match (l.verdict, l.exceeded.instructions, l.exceeded.indirect_mispredictions) {
            (Verdict::Regression, true, true) => "**REGRESSION** (instructions and Bim)",
            (Verdict::Regression, false, true) => "**REGRESSION** (Bim)",
            (Verdict::Regression, _, _) => "**REGRESSION** (instructions)",
            (Verdict::Pass, ..) => "pass",
            (Verdict::Improvement, ..) => "improvement",
            (Verdict::New, ..) => "new (not in baseline)",
            (Verdict::Missing, ..) => "**MISSING** (in baseline, not measured)",
            (Verdict::Skipped, ..) => "skipped",
        };
        let verdict = match &l.skipped {
            Some(reason) => format!("{verdict}: {} is unavailable here: {reason}", strategy_of(&l.name)),
            None => verdict.to_owned(),
        };
        writeln!(
            s,
            "| {} | {} | {} | {change} | {} | {per_call} | {bim_per_call} | {bim_limit} | {verdict} |",
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
        "\n{} pass, {} improved, {} regressed, {} new, {} missing, {} skipped (unavailable on this machine).",
        count(Verdict::Pass),
        count(Verdict::Improvement),
        count(Verdict::Regression),
        count(Verdict::New),
        count(Verdict::Missing),
        count(Verdict::Skipped)
    )
    .unwrap();
    writeln!(s, "\nBim: callgrind's simulated indirect-branch mispredictions (--branch-sim=yes).").unwrap();
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
                "indirect-mispredictions": {"value": c.indirect_mispredictions},
                "indirect-mispredictions-per-call": {"value": c.indirect_mispredictions as f64 / c.calls.max(1) as f64},
            }),
        );
    }
    out.into()
}

/// The gungraun benchmark of `klp`'s per-site steady read path.
pub const KLP_STEADY: &str = "read_path::steady::klp";

/// The gungraun benchmark of the kernel's handler written in C (`dispatch::kernel_c`), in the
/// same loop shape and calling the same functions as [`KLP_STEADY`].
pub const C_HANDLER_STEADY: &str = "read_path::c_steady::c_handler";

/// How many instructions per call `klp`'s steady read path may take beyond the kernel's own
/// handler in C: one, for the loop's own bookkeeping, which two compilers lay out differently.
/// More is work per call the kernel does not do.
pub const FIDELITY_MARGIN_PER_CALL: f64 = 1.0;

/// `klp` against the kernel's handler in C, per call (steady, per site).
#[derive(Clone, Debug, PartialEq)]
pub enum Fidelity {
    /// Both measured: instructions per call of each, and whether `klp` is within the margin.
    Measured { klp: f64, c_handler: f64, within: bool },
    /// `klp` cannot run here (the suite skipped it): nothing to hold it to.
    Skipped(String),
}

/// Holds `klp`'s steady per-site read path to the kernel's handler in C: at most
/// [`FIDELITY_MARGIN_PER_CALL`] instructions per call more. Unusable when either benchmark is
/// missing from `measured` while `klp` ran (the suite no longer has it).
pub fn fidelity(measured: &BTreeMap<String, Count>, skipped: &BTreeMap<String, String>) -> Result<Fidelity, Unusable> {
    if let Some(reason) = skipped.get(strategy_of(KLP_STEADY)) {
        return Ok(Fidelity::Skipped(reason.clone()));
    }
    let per_call = |name: &str| {
        measured.get(name).map(|c| c.instructions as f64 / c.calls.max(1) as f64).ok_or_else(|| {
            Unusable(format!(
                "the measurement has no {name}: the gungraun suite (benches/benches/instructions.rs) must measure it for \
                 the fidelity check"
            ))
        })
    };
    let (klp, c_handler) = (per_call(KLP_STEADY)?, per_call(C_HANDLER_STEADY)?);
    Ok(Fidelity::Measured { klp, c_handler, within: klp <= c_handler + FIDELITY_MARGIN_PER_CALL })
}

/// The fidelity check in one line.
pub fn fidelity_line(f: &Fidelity) -> String {
    match f {
        Fidelity::Measured { klp, c_handler, within: true } => format!(
            "fidelity: klp {klp:.2} instructions per call, the kernel's handler in C {c_handler:.2} (steady, per site): \
             within {FIDELITY_MARGIN_PER_CALL} of it: pass"
        ),
        Fidelity::Measured { klp, c_handler, within: false } => format!(
            "fidelity: **REGRESSION**: klp {klp:.2} instructions per call, the kernel's handler in C {c_handler:.2} \
             (steady, per site): klp may take at most {FIDELITY_MARGIN_PER_CALL} more per call; look at the \
             disassembly of both loops for the work the kernel does not do"
        ),
        Fidelity::Skipped(reason) => format!("fidelity: skipped: klp is unavailable here: {reason}"),
    }
}

/// The exit code of the whole gate: the comparison's, and 1 if the fidelity check fails
/// (unusable input, 2, takes precedence).
pub fn exit_code_with(lines: &[Line], fidelity: &Fidelity) -> u8 {
    match (exit_code(lines), fidelity) {
        (2, _) => 2,
        (_, Fidelity::Measured { within: false, .. }) => 1,
        (code, _) => code,
    }
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
        // Per-site read paths: each site's call instruction predicted after its first call.
        let count =
            |instructions, indirect_mispredictions, calls| Count { instructions, indirect_mispredictions, calls };
        b.insert("read_path::steady::klp".to_owned(), count(35_110, 8, 1000));
        b.insert("read_path::steady::arcswap".to_owned(), count(91_110, 8, 1000));
        b.insert("writer::writer_enable::klp".to_owned(), count(18_129, 12, 1));
        baseline(versions(), Limits::default(), b)
    }

    /// `m` with `name`'s indirect mispredictions set to `bim`.
    fn with_bim(mut m: BTreeMap<String, Count>, name: &str, bim: u64) -> BTreeMap<String, Count> {
        m.get_mut(name).unwrap().indirect_mispredictions = bim;
        m
    }

    fn measured(f: impl Fn(&str, u64) -> u64) -> BTreeMap<String, Count> {
        base()
            .benchmarks
            .into_iter()
            .map(|(k, c)| (k.clone(), Count { instructions: f(&k, c.instructions), ..c }))
            .collect()
    }

    /// [`compare`] with no strategy skipped.
    fn compare_all(b: &Baseline, v: &Versions, m: &BTreeMap<String, Count>) -> Result<Vec<Line>, Unusable> {
        compare(b, v, m, &BTreeMap::new())
    }

    fn verdict_of(lines: &[Line], name: &str) -> Verdict {
        lines.iter().find(|l| l.name == name).unwrap().verdict
    }

    fn fidelity_counts(klp: u64, c_handler: u64) -> BTreeMap<String, Count> {
        let count = |instructions| Count { instructions, indirect_mispredictions: 1, calls: 1000 };
        BTreeMap::from([(KLP_STEADY.to_owned(), count(klp)), (C_HANDLER_STEADY.to_owned(), count(c_handler))])
    }

    /// klp may take one instruction per call over the C handler, not more: at +1.0 it passes,
    /// at +1.1 the gate fails (exit 1), whatever the other benchmarks say.
    #[test]
    fn klp_more_than_one_instruction_per_call_over_the_c_handler_fails() {
        let none = BTreeMap::new();
        let at = fidelity(&fidelity_counts(17_000, 16_000), &none).unwrap();
        assert_eq!(at, Fidelity::Measured { klp: 17.0, c_handler: 16.0, within: true });
        assert!(fidelity_line(&at).ends_with("pass"));
        assert_eq!(exit_code_with(&[], &at), 0);
        let below = fidelity(&fidelity_counts(12_000, 16_000), &none).unwrap();
        assert!(matches!(below, Fidelity::Measured { within: true, .. }));
        let over = fidelity(&fidelity_counts(17_100, 16_000), &none).unwrap();
        assert!(matches!(over, Fidelity::Measured { within: false, .. }));
        assert!(fidelity_line(&over).contains("REGRESSION"));
        assert_eq!(exit_code_with(&[], &over), 1);
        // Unusable input still says so first.
        let missing = Line {
            name: "x".into(),
            base: Some(1),
            new: None,
            limit: None,
            base_bim: None,
            new_bim: None,
            bim_limit: None,
            calls: 1,
            verdict: Verdict::Missing,
            exceeded: Exceeded::default(),
            skipped: None,
        };
        assert_eq!(exit_code_with(&[missing], &over), 2);
    }

    #[test]
    fn the_fidelity_check_needs_both_benchmarks_unless_klp_is_skipped() {
        let mut only_klp = fidelity_counts(17_000, 16_000);
        only_klp.remove(C_HANDLER_STEADY);
        let Err(Unusable(why)) = fidelity(&only_klp, &BTreeMap::new()) else { panic!("no C handler is unusable") };
        assert!(why.contains(C_HANDLER_STEADY), "{why}");
        let skipped = BTreeMap::from([("klp".to_owned(), "named in DISPATCH_UNAVAILABLE".to_owned())]);
        let f = fidelity(&BTreeMap::new(), &skipped).unwrap();
        assert_eq!(f, Fidelity::Skipped("named in DISPATCH_UNAVAILABLE".into()));
        assert_eq!(exit_code_with(&[], &f), 0);
    }

    /// The committed baseline passes its own fidelity check: the counts it holds are the ones
    /// the gate compares with, so a baseline updated with a costlier klp could not be committed
    /// without this test failing.
    #[test]
    fn the_committed_baseline_holds_klp_to_the_c_handler() {
        let text = include_str!("../../results/baseline/instructions.json");
        let b = parse_baseline(text, "results/baseline/instructions.json").unwrap();
        let f = fidelity(&b.benchmarks, &BTreeMap::new()).unwrap();
        assert!(matches!(f, Fidelity::Measured { within: true, .. }), "{}", fidelity_line(&f));
    }

    #[test]
    fn unchanged_and_rebuild_noise_pass() {
        for noise in [0.0, 0.015, -0.015] {
            let m = measured(|_, n| (n as f64 * (1.0 + noise)) as u64);
            let lines = compare_all(&base(), &versions(), &m).unwrap();
            assert_eq!(exit_code(&lines), 0, "{noise}: {lines:?}");
        }
    }

    #[test]
    fn three_instructions_per_call_on_a_read_path_fail() {
        let m = measured(|k, n| if k == "read_path::steady::arcswap" { n + 3 * 1000 } else { n });
        let lines = compare_all(&base(), &versions(), &m).unwrap();
        assert_eq!(verdict_of(&lines, "read_path::steady::arcswap"), Verdict::Regression);
        assert_eq!(exit_code(&lines), 1);
        assert!(markdown(&lines).contains("**REGRESSION** (instructions)"));
    }

    /// A shared call instruction back in a per-site path: Bim per call from ≈ 0 to ≈ 1 with the
    /// same instructions (the per-site and shared shapes differ by no instruction per call).
    #[test]
    fn per_site_path_whose_bim_jumps_to_one_per_call_fails_with_unchanged_instructions() {
        let m = with_bim(measured(|_, n| n), "read_path::steady::klp", 8 + 1000);
        let lines = compare_all(&base(), &versions(), &m).unwrap();
        let klp = lines.iter().find(|l| l.name == "read_path::steady::klp").unwrap();
        assert_eq!(klp.verdict, Verdict::Regression);
        assert_eq!(klp.exceeded, Exceeded { instructions: false, indirect_mispredictions: true });
        assert_eq!(verdict_of(&lines, "read_path::steady::arcswap"), Verdict::Pass);
        assert_eq!(exit_code(&lines), 1);
        let table = markdown(&lines);
        assert!(table.contains("| 0.008 → 1.008 | +0.052 | **REGRESSION** (Bim) |"), "{table}");
    }

    #[test]
    fn instructions_and_bim_both_failing_are_both_named() {
        let m = measured(|k, n| if k == "read_path::steady::klp" { n + 3 * 1000 } else { n });
        let lines = compare_all(&base(), &versions(), &with_bim(m, "read_path::steady::klp", 1008)).unwrap();
        assert!(markdown(&lines).contains("**REGRESSION** (instructions and Bim)"));
    }

    /// Callgrind's table aliasing separate call instructions (up to 0.75 per call for 8 sites)
    /// moves with layout: reported beside its limit, not a regression; the same rise to where a
    /// shared call instruction sits is one.
    #[test]
    fn aliasing_below_a_shared_call_instruction_is_not_a_regression() {
        for (bim, verdict) in [(8 + 500, Verdict::Pass), (8 + 750, Verdict::Pass), (8 + 800, Verdict::Regression)] {
            let lines = compare_all(&base(), &versions(), &with_bim(measured(|_, n| n), "read_path::steady::klp", bim))
                .unwrap();
            assert_eq!(verdict_of(&lines, "read_path::steady::klp"), verdict, "{bim} per 1000 calls");
        }
    }

    #[test]
    fn small_bim_noise_passes() {
        // +0.02 and -0.008 per call: cache-line and aliasing shifts, not a shared call instruction.
        let m =
            with_bim(with_bim(measured(|_, n| n), "read_path::steady::klp", 8 + 20), "read_path::steady::arcswap", 0);
        let lines = compare_all(&base(), &versions(), &m).unwrap();
        assert!(lines.iter().all(|l| l.verdict == Verdict::Pass), "{lines:?}");
        assert_eq!(exit_code(&lines), 0);
    }

    /// A writer operation's Bim moves with layout elsewhere: reported, never a verdict of its own
    /// (its instructions still are).
    #[test]
    fn writer_bim_is_reported_not_limited() {
        let name = "writer::writer_enable::klp";
        let base_bim = base().benchmarks[name].indirect_mispredictions;
        let lines = compare_all(&base(), &versions(), &with_bim(measured(|_, n| n), name, base_bim + 30)).unwrap();
        assert_eq!(verdict_of(&lines, name), Verdict::Pass);
        let line = lines.iter().find(|l| l.name == name).unwrap();
        assert_eq!((line.new_bim, line.bim_limit), (Some(base_bim + 30), None), "reported, without a limit");
        let lines =
            compare_all(&base(), &versions(), &measured(|k, n| if k == name { n + n / 10 } else { n })).unwrap();
        assert_eq!(verdict_of(&lines, name), Verdict::Regression, "its instructions are still gated");
    }

    #[test]
    fn bim_dropping_to_per_site_is_an_improvement() {
        let shared = Baseline {
            benchmarks: base()
                .benchmarks
                .into_iter()
                .map(|(k, c)| (k, Count { indirect_mispredictions: 1008, ..c }))
                .collect(),
            ..base()
        };
        let lines = compare_all(&shared, &versions(), &measured(|_, n| n)).unwrap();
        assert_eq!(verdict_of(&lines, "read_path::steady::klp"), Verdict::Improvement);
        assert_eq!(exit_code(&lines), 0);
    }

    #[test]
    fn improvements_are_reported_and_pass() {
        let m = measured(|k, n| if k == "read_path::steady::klp" { n - 5 * 1000 } else { n });
        let lines = compare_all(&base(), &versions(), &m).unwrap();
        assert_eq!(verdict_of(&lines, "read_path::steady::klp"), Verdict::Improvement);
        assert_eq!(exit_code(&lines), 0);
    }

    #[test]
    fn missing_benchmark_is_unusable_and_new_one_is_reported() {
        let mut m = measured(|_, n| n);
        m.remove("writer::writer_enable::klp");
        m.insert(
            "read_path::steady::newcomer".into(),
            Count { instructions: 1, indirect_mispredictions: 0, calls: 1000 },
        );
        let lines = compare_all(&base(), &versions(), &m).unwrap();
        assert_eq!(verdict_of(&lines, "writer::writer_enable::klp"), Verdict::Missing);
        assert_eq!(verdict_of(&lines, "read_path::steady::newcomer"), Verdict::New);
        assert_eq!(exit_code(&lines), 2);
    }

    /// A baseline benchmark absent because the suite skipped its strategy (unavailable here) is
    /// skipped with the reason and fails nothing; the counts the suite left for it are not read;
    /// a benchmark absent for any other reason is still missing (unusable).
    #[test]
    fn a_benchmark_of_a_skipped_strategy_is_skipped_with_its_reason_others_still_missing() {
        let log = "klp\tno klp here; run elsewhere\nklp\tno klp here; run elsewhere\n\n";
        let skipped = parse_skipped(log, "skipped.tsv").unwrap();
        assert_eq!(skipped.len(), 1);
        // The suite ran nothing for klp: its entries (if any) measure an empty function.
        let mut m = measured(|k, n| if k.ends_with("::klp") { 3 } else { n });
        let lines = compare(&base(), &versions(), &m, &skipped).unwrap();
        for name in ["read_path::steady::klp", "writer::writer_enable::klp"] {
            let l = lines.iter().find(|l| l.name == name).unwrap();
            assert_eq!(
                (l.verdict, l.new, l.skipped.as_deref()),
                (Verdict::Skipped, None, Some("no klp here; run elsewhere"))
            );
        }
        assert_eq!(verdict_of(&lines, "read_path::steady::arcswap"), Verdict::Pass);
        assert_eq!(exit_code(&lines), 0);
        let table = markdown(&lines);
        assert!(table.contains("| skipped: klp is unavailable here: no klp here; run elsewhere |"), "{table}");
        assert!(table.contains("0 missing, 2 skipped (unavailable on this machine)."), "{table}");
        // Without the suite's record, the same absence is missing: unusable.
        m.retain(|k, _| !k.ends_with("::klp"));
        let unrecorded = compare_all(&base(), &versions(), &m).unwrap();
        assert_eq!(verdict_of(&unrecorded, "read_path::steady::klp"), Verdict::Missing);
        assert_eq!(exit_code(&unrecorded), 2);
        // A skipped strategy excuses only its own benchmarks.
        m.remove("read_path::steady::arcswap");
        let lines = compare(&base(), &versions(), &m, &skipped).unwrap();
        assert_eq!(verdict_of(&lines, "read_path::steady::arcswap"), Verdict::Missing);
        assert_eq!(exit_code(&lines), 2);
        // A record that is not one is unusable, not ignored.
        let e = parse_skipped("klp no tab\n", "skipped.tsv").unwrap_err().0;
        assert!(e.contains("skipped.tsv line 1") && e.contains("delete it"), "{e}");
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

    /// A baseline from before Bim was recorded cannot be compared: it must be regenerated, and
    /// the message says so instead of calling it corrupt.
    #[test]
    fn schema_1_baseline_is_unusable_and_names_the_fix() {
        let old = r#"{"schema": 1, "versions": {"rustc": "rustc 1.95.0", "valgrind": "valgrind-3.19.0", "gungraun": "0.20.0"},
            "limits": {"relative_pct": 2.0, "absolute_per_call": 0.5},
            "benchmarks": {"read_path::steady::klp": {"instructions": 35110, "calls": 1000}}}"#;
        let err = parse_baseline(old, "b.json").unwrap_err().0;
        assert!(err.contains("schema 1") && err.contains("unusable"), "{err}");
        assert!(err.contains("regenerate it with scripts/gate --update"), "{err}");
        assert!(!err.contains("corrupt"), "{err}");
    }

    #[test]
    fn a_baseline_covering_few_of_the_measured_benchmarks_is_unusable() {
        let m = measured(|_, n| n);
        let empty = Baseline { benchmarks: BTreeMap::new(), ..base() };
        let err = compare_all(&empty, &versions(), &m).unwrap_err().0;
        assert!(err.contains("covers 0 of the 3 measured") && err.contains("--update"), "{err}");
        // One of three: fewer than half.
        let mut one = base();
        one.benchmarks.retain(|k, _| k == "read_path::steady::klp");
        let err = compare_all(&one, &versions(), &m).unwrap_err().0;
        assert!(err.contains("covers 1 of the 3"), "{err}");
        // Two of three: new benchmarks beside a baseline that still gates most.
        let mut two = base();
        two.benchmarks.remove("writer::writer_enable::klp");
        assert_eq!(exit_code(&compare_all(&two, &versions(), &m).unwrap()), 0);
    }

    #[test]
    fn negative_or_absurd_limits_are_unusable() {
        let with = |f: fn(&mut Limits)| {
            let mut b = base();
            f(&mut b.limits);
            parse_baseline(&serde_json::to_string(&b).unwrap(), "b.json")
        };
        assert!(with(|_| ()).is_ok());
        type Case = (fn(&mut Limits), &'static str);
        let cases: [Case; 6] = [
            (|l| l.relative_pct = -1.0, "limits.relative_pct is -1, give 0 to 100 percent"),
            (|l| l.relative_pct = 1e9, "limits.relative_pct is 1000000000, give 0 to 100 percent"),
            (|l| l.absolute_per_call = -0.5, "limits.absolute_per_call is -0.5"),
            (|l| l.bim_per_call = 5.0, "limits.bim_per_call is 5, give 0 to 1"),
            (|l| l.bim_absolute = -2.0, "limits.bim_absolute is -2"),
            (|l| l.bim_absolute = 1e300, "limits.bim_absolute is 1000000000000000"),
        ];
        for (f, expected) in cases {
            let err = with(f).unwrap_err().0;
            assert!(err.contains(expected) && err.starts_with("b.json: "), "{expected}: {err}");
        }
    }

    #[test]
    fn version_mismatch_is_unusable() {
        let other = Versions { valgrind: "valgrind-3.22.0".into(), ..versions() };
        let err = compare_all(&base(), &other, &measured(|_, n| n)).unwrap_err();
        assert!(err.0.contains("--update"), "{}", err.0);
    }

    #[test]
    fn gungraun_json_lines_parse() {
        let line = r#"{"group":"read_path","function_name":"steady","id":"klp","profiles":[{"data":{"total":{"metrics":{"Ir":{"values":{"new":35110}},"Bi":{"values":{"new":1001}},"Bim":{"values":{"new":1001}}}}}}]}"#;
        let m = parse_gungraun(line, |g| if g == "read_path" { 1000 } else { 1 }).unwrap();
        assert_eq!(
            m["read_path::steady::klp"],
            Count { instructions: 35_110, indirect_mispredictions: 1001, calls: 1000 }
        );
        assert!(parse_gungraun("not json", |_| 1).is_err());
        assert!(parse_gungraun("", |_| 1).is_err());
        assert!(parse_gungraun(r#"{"group":"g"}"#, |_| 1).is_err());
    }

    #[test]
    fn gungraun_json_without_bim_is_unusable() {
        let line = r#"{"group":"read_path","function_name":"steady","id":"klp","profiles":[{"data":{"total":{"metrics":{"Ir":{"values":{"new":35110}}}}}}]}"#;
        let err = parse_gungraun(line, |_| 1000).unwrap_err().0;
        assert!(err.contains("no Bim") && err.contains("--branch-sim=yes"), "{err}");
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
            // A shared call instruction adds ≈ 1 Bim per call; a few per 1000 calls is noise.
            let bim_limit = b.limits.bim(c.calls);
            assert!(c.calls as f64 > bim_limit, "{name}: +1 Bim/call would pass (limit {bim_limit})");
            assert!(0.005 * c.calls as f64 <= bim_limit, "{name}: Bim noise of 5 per 1000 calls would fail");
        }
    }
}
