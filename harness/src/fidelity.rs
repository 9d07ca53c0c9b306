//! The run's fidelity check: whether `klp` costs here what the kernel's own handler costs. Beside
//! the per-site steady scenario (8 sites), every round also times the kernel's handler written in
//! C, a C function pointer and a C direct call (`dispatch::kernel_c`, the same loop shape,
//! built by the system C compiler at -O2), on the first reader's CPU, right after the round's
//! strategies. The check compares `klp ÷ fnptr` with `C handler ÷ C fnptr` round by round: a
//! quotient near 1 says the `klp` figure is the kernel's logic at this CPU's prices; above
//! [`FIDELITY_LIMIT`] the run warns ([`WARNING`]) that the overhead is ours. Where `klp ÷ fnptr`
//! moves between CPUs, the C handler's ratio moving with it says the CPU moved it, not the code.
//!
//! Only the measuring ([`measure_round`]) touches the machine; [`check`] and [`line`](fn@line) work on
//! records, so that they are tested on constructed figures and `harness report` renders them again.

use std::hint::black_box;
use std::time::Instant;

use dispatch::kernel_c::{C_SITES, CLoop, CLoops};
use dispatch::rng::Rng;
use dispatch::strategy::BASELINE;

use crate::config::{CallSites, RunConfig, Scenario};
use crate::measure::reader_cpu;
use crate::record::{CRound, FidelityCheck, Row};
use crate::summary::Spread;

/// Above this `(klp ÷ fnptr) ÷ (C handler ÷ C fnptr)` the run warns: 10%, well above what
/// same-round ratios move by between runs of one build (a few percent), well below the 1.2–1.5×
/// that `klp` cost over the kernel's logic before its read path was brought to the kernel's.
pub const FIDELITY_LIMIT: f64 = 1.10;

/// What the run says when the check fails.
pub const WARNING: &str = "klp costs more over a plain pointer than the kernel's own handler does on this CPU";

/// The strategy held to the C handler.
const KLP: &str = "klp";

/// Mixed into the run's seed for the order of the C loops in each round, so that drawing it
/// leaves the strategies' order (drawn from the run's seed) as it was.
pub const SEED: u64 = 0x6b6c_705f_6669_6465;

/// The scenario a run checks its fidelity on: the first per-site steady scenario with the C
/// loops' sites ([`C_SITES`]), where the run measures both `klp` and `fnptr`; `None` otherwise.
pub fn scenario(cfg: &RunConfig) -> Option<&Scenario> {
    let has = |name: &str| cfg.strategies.iter().any(|s| s == name);
    if !has(KLP) || !has(BASELINE) {
        return None;
    }
    cfg.scenarios.iter().find(|s| s.call_sites == CallSites::PerSite && s.is_steady() && s.sites == C_SITES)
}

/// Times the three C loops of `round` once each, in an order drawn from `rng`, on the CPU of
/// the scenario's first reader: per loop `cfg.warmup` of warm-up (and at least 4 batches), then
/// batches of one critical section (the scenario's calls per safe point) for `cfg.duration`, the
/// clock's overhead subtracted per batch, as a reader times a strategy. Every batch's sum is
/// checked: a loop that skipped a call fails the run.
pub fn measure_round(
    cfg: &RunConfig,
    scenario: &Scenario,
    round: usize,
    clock_ns: f64,
    rng: &mut Rng,
) -> Result<CRound, String> {
    let cpu = reader_cpu(&cfg.cpus, 0);
    let rounds = (scenario.calls_per_safepoint / C_SITES).max(1);
    let mut order = CLoop::ALL.to_vec();
    rng.shuffle(&mut order);
    let time = move || -> Result<CRound, String> {
        if let Some(id) = cpu {
            core_affinity::set_for_current(core_affinity::CoreId { id });
        }
        let mut c = CLoops::new();
        let mut ns = [0.0f64; 3];
        for which in order {
            let want = CLoops::signature(which).wrapping_mul(rounds as u64);
            let wrong =
                |sum: u64| format!("{}: a loop returned {sum:#x}, not {want:#x}: a call went missing", which.name());
            let warm_until = Instant::now() + cfg.warmup;
            let mut warm = 0;
            while warm < 4 || Instant::now() < warm_until {
                let sum = black_box(c.run(which, rounds));
                if sum != want {
                    return Err(wrong(sum));
                }
                warm += 1;
            }
            let (mut calls, mut busy_ns) = (0u64, 0f64);
            let deadline = Instant::now() + cfg.duration;
            loop {
                let t0 = Instant::now();
                let sum = black_box(c.run(which, rounds));
                let t1 = Instant::now();
                busy_ns += ((t1 - t0).as_nanos() as f64 - clock_ns).max(0.0);
                calls += (rounds * C_SITES) as u64;
                if sum != want {
                    return Err(wrong(sum));
                }
                if t1 >= deadline {
                    break;
                }
            }
            ns[CLoop::ALL.iter().position(|&s| s == which).expect("one of ALL")] = busy_ns / calls as f64;
        }
        Ok(CRound { round, direct_ns: ns[0], fnptr_ns: ns[1], handler_ns: ns[2] })
    };
    // A thread of its own, so that pinning it leaves the harness's main thread as it was.
    std::thread::scope(|s| s.spawn(time).join().unwrap_or_else(|_| Err("the C loops' thread panicked".into())))
}

/// The fidelity check of a run: per round of `scenario`, `klp ÷ fnptr` (from `rows`) over
/// `C handler ÷ C fnptr` (from `c_rounds`), and its median over the rounds that have both.
/// `None` when no round has both.
pub fn check(rows: &[Row], scenario: &Scenario, c_rounds: &[CRound]) -> Option<FidelityCheck> {
    let ns = |strategy: &str, round: usize| {
        rows.iter()
            .find(|r| &r.scenario == scenario && r.strategy == strategy && r.round == round)
            .map(|r| r.ns_per_call)
    };
    let klp_over_fnptr = |c: &CRound| Some(ns(KLP, c.round)? / ns(BASELINE, c.round)?);
    let c_ratio = |c: &CRound| c.handler_ns / c.fnptr_ns;
    let both: Vec<&CRound> = c_rounds.iter().filter(|c| klp_over_fnptr(c).is_some()).collect();
    let fidelity = Spread::of(both.iter().filter_map(|c| Some(klp_over_fnptr(c)? / c_ratio(c))))?;
    let median = |f: &dyn Fn(&CRound) -> Option<f64>| Spread::of(both.iter().filter_map(|c| f(c))).map(|s| s.median);
    Some(FidelityCheck {
        scenario: scenario.name(),
        klp_over_fnptr: median(&klp_over_fnptr)?,
        c_handler_over_c_fnptr: median(&|c| Some(c_ratio(c)))?,
        c_fnptr_over_c_direct: median(&|c| Some(c.fnptr_ns / c.direct_ns))?,
        fidelity: fidelity.median,
        limit: FIDELITY_LIMIT,
        within: fidelity.median <= FIDELITY_LIMIT,
        rounds: c_rounds.to_vec(),
    })
}

/// The fidelity check in one line (terminal and report.md).
pub fn line(check: &FidelityCheck) -> String {
    let figures = format!(
        "klp / fnptr = {:.2}, the kernel's handler in C / C fnptr = {:.2} in {} (median over {} rounds of the \
         same-round quotient: {:.2}; C fnptr / C direct = {:.2})",
        check.klp_over_fnptr,
        check.c_handler_over_c_fnptr,
        check.scenario,
        check.rounds.len(),
        check.fidelity,
        check.c_fnptr_over_c_direct
    );
    if check.within {
        format!(
            "fidelity check: {figures}: at most {}, klp costs what the kernel's handler costs over a plain pointer here",
            check.limit
        )
    } else {
        format!("warning: {WARNING}: {figures}, above {}", check.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Scenario;
    use crate::record::test_support::row;

    /// The default scenario (per site, 8 sites, 1 reader, steady).
    fn default() -> Scenario {
        Scenario::DEFAULT.in_regime(CallSites::PerSite)
    }

    /// Rounds of `klp` at `klp[r]` ns beside `fnptr` at 1 ns, and of the C handler at `c[r]` ns
    /// beside the C pointer at 1 ns (the C direct call at 0.9): ratios are the figures themselves.
    fn figures(klp: &[f64], c: &[f64]) -> (Vec<Row>, Vec<CRound>) {
        let mut rows = Vec::new();
        for (round, &ns) in klp.iter().enumerate() {
            rows.push(row("fnptr", CallSites::PerSite, round, 1.0));
            rows.push(row("klp", CallSites::PerSite, round, ns));
            rows.push(row("direct", CallSites::PerSite, round, 0.9));
        }
        let c_rounds = c
            .iter()
            .enumerate()
            .map(|(round, &ns)| CRound { round, direct_ns: 0.9, fnptr_ns: 1.0, handler_ns: ns })
            .collect();
        (rows, c_rounds)
    }

    #[test]
    fn klp_at_the_kernels_cost_passes() {
        let (rows, c) = figures(&[1.20, 1.26, 1.15], &[1.15, 1.20, 1.15]);
        let check = check(&rows, &default(), &c).expect("three rounds with both");
        assert_eq!(check.klp_over_fnptr, 1.20, "the median over rounds");
        assert_eq!(check.c_handler_over_c_fnptr, 1.15);
        assert_eq!(check.fidelity, 1.20 / 1.15, "the median of 1.20/1.15, 1.26/1.20 (1.05), 1.15/1.15");
        assert!((check.c_fnptr_over_c_direct - 1.0 / 0.9).abs() < 1e-12);
        assert!(check.within);
        assert_eq!(check.rounds.len(), 3);
        let line = line(&check);
        assert!(
            line.starts_with("fidelity check: klp / fnptr = 1.20, the kernel's handler in C / C fnptr = 1.15"),
            "{line}"
        );
        assert!(!line.contains(WARNING));
    }

    #[test]
    fn klp_dearer_than_the_kernels_handler_is_warned_about() {
        // The figures on one host: klp 1.58x fnptr where the C handler is 1.15x.
        let (rows, c) = figures(&[1.58, 1.51, 1.60], &[1.15, 1.15, 1.16]);
        let check = check(&rows, &default(), &c).unwrap();
        assert!(!check.within);
        assert!(check.fidelity > 1.3);
        let line = line(&check);
        assert!(line.starts_with(&format!("warning: {WARNING}: klp / fnptr = 1.58")), "{line}");
        assert!(line.ends_with("above 1.1"), "{line}");
    }

    /// The limit itself passes; a hair above it warns.
    #[test]
    fn the_limit_is_ten_percent() {
        let at = check(&figures(&[1.10], &[1.0]).0, &default(), &figures(&[1.10], &[1.0]).1).unwrap();
        assert!(at.within, "{}", at.fidelity);
        let (rows, c) = figures(&[1.111], &[1.0]);
        assert!(!check(&rows, &default(), &c).unwrap().within);
    }

    /// The check's scenario: the first per-site steady one of 8 sites, in a run with klp and
    /// fnptr; none otherwise.
    #[test]
    fn the_check_is_made_on_the_first_per_site_steady_scenario_of_8_sites() {
        use crate::config::Rate;
        use crate::config::test_support::config;
        let mut cfg = config(3, 1, 3, 0.1);
        assert_eq!(cfg.strategies, ["direct", "fnptr", "klp"], "the registry's first three");
        assert_eq!(scenario(&cfg), Some(&default()));
        let shared = Scenario::DEFAULT.in_regime(CallSites::Shared);
        let sixteen = Scenario { sites: 16, ..default() };
        let transitions = Scenario { rate: Rate::Hz(1000.0), ..default() };
        let two = Scenario { readers: 2, ..default() };
        cfg.scenarios = vec![shared.clone(), sixteen.clone(), transitions.clone(), two.clone(), default()];
        assert_eq!(scenario(&cfg), Some(&two), "the first that qualifies, whatever its readers");
        cfg.scenarios = vec![shared, sixteen, transitions];
        assert_eq!(scenario(&cfg), None);
        cfg.scenarios = vec![default()];
        for gone in ["klp", "fnptr"] {
            let mut without = cfg.clone();
            without.strategies.retain(|s| s != gone);
            assert_eq!(scenario(&without), None, "without {gone}");
        }
    }

    /// Only rounds with klp, fnptr and the C loops count; none such, no check.
    #[test]
    fn rounds_without_both_sides_do_not_count() {
        let (mut rows, c) = figures(&[1.2, 5.0, 1.2], &[1.2, 1.2, 1.2]);
        rows.retain(|r| !(r.round == 1 && r.strategy == "fnptr"));
        let check = check(&rows, &default(), &c).unwrap();
        assert_eq!(check.fidelity, 1.0, "round 1 (no fnptr) is left out");
        let (rows, _) = figures(&[1.2], &[]);
        assert!(super::check(&rows, &default(), &[]).is_none());
        let (_, c) = figures(&[], &[1.2]);
        assert!(super::check(&[], &default(), &c).is_none());
        let shared = Scenario::DEFAULT.in_regime(CallSites::Shared);
        let (rows, c) = figures(&[1.2], &[1.2]);
        assert!(super::check(&rows, &shared, &c).is_none(), "the rows are of another scenario");
    }
}
