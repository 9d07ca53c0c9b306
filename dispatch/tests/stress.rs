//! Consistency stress, generic over every strategy in the registry (arc-swap's `tests/stress.rs`
//! pattern): reader tasks call every site of multi-site patches between safe points and check
//! that each critical section saw one universe, while a writer cycles enable / disable / replace /
//! reverse over stacked patches (depth 2) with nops. Per-task-consistent strategies must show 0
//! violations, 0 uses after reclaim and every transition completed; `fnptr` must show violations,
//! which proves that the checker can fail.
//!
//! `_small` runs by default; `_large` (`cargo test --release -- --ignored`) runs 10x longer.

use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dispatch::check::{self, Universes, code, resolve, signature};
use dispatch::strategy::Consistency;
use dispatch::{Code, FuncSpec, Op, PatchId, PatchSpec, PatchState, Patcher, PatcherConfig, SiteId, Strategy};

const SITES: usize = 8;
const READERS: usize = 2;

/// Patches over 8 sites: A and B overlap (stacking), C and D cover parts (replace adds nops).
fn patch_specs() -> Vec<PatchSpec> {
    let patch = |name: &str, base: usize, sites: std::ops::Range<usize>| {
        PatchSpec::new(name, sites.map(|s| FuncSpec::new(SiteId(s as u32), code(base + s))))
    };
    vec![patch("a", 100, 0..6), patch("b", 200, 2..8), patch("c", 300, 0..3), patch("d", 400, 4..8)]
}

/// A tiny deterministic generator (xorshift64*), so that a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}

#[derive(Debug, Default)]
struct Report {
    transitions: u64,
    reversals: u64,
    migrated_at_safe_point: u64,
    migrated_while_parked: u64,
    critical_sections: u64,
    violations: u64,
    poison_hits: u64,
    idle_in_transition: u64,
}

/// Runs readers against a writer until `transitions` completed, or, with `until_violation`,
/// until the first violation (or the time limit).
fn stress<S: Strategy>(transitions: u64, until_violation: bool) -> Report {
    let originals: Vec<Code> = (0..SITES).map(code).collect();
    let p = Patcher::<S>::new(&originals, PatcherConfig::default());
    let specs = patch_specs();
    let ids: Vec<PatchId> = specs.iter().map(|s| p.load(s.clone()).unwrap()).collect();
    let universes = Universes::new(signature(&originals, 0));
    let stop = AtomicBool::new(false);
    let violations = AtomicU64::new(0);
    let sections = AtomicU64::new(0);
    let poison = AtomicU64::new(0);
    let idle = AtomicU64::new(0);
    let start = Barrier::new(READERS + 1);
    let mut report = Report::default();
    let deadline = Instant::now() + Duration::from_secs(60);

    std::thread::scope(|s| {
        for r in 0..READERS {
            let (p, universes, stop, start) = (&p, &universes, &stop, &start);
            let (violations, sections, poison, idle) = (&violations, &sections, &poison, &idle);
            s.spawn(move || {
                let task = p.register().unwrap();
                start.wait();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // One critical section: every site, twice, in a per-reader order; both rounds
                    // must see the same universe, and it must be one the writer announced.
                    let mut sums = [0u64; 2];
                    for (round, sum) in sums.iter_mut().enumerate() {
                        for i in 0..SITES {
                            let site = if (r + round) % 2 == 0 { i } else { SITES - 1 - i };
                            *sum = sum.wrapping_add(task.call(SiteId(site as u32), 0));
                        }
                    }
                    if sums[0] != sums[1] || !universes.contains(sums[0]) {
                        violations.fetch_add(1, Ordering::Relaxed);
                    }
                    sections.fetch_add(1, Ordering::Relaxed);
                    task.safe_point().unwrap();
                    n += 1;
                    if n.is_multiple_of(256) {
                        // Sleep now and then: the patcher migrates parked tasks itself.
                        task.park().unwrap();
                        std::thread::yield_now();
                        task.unpark().unwrap();
                    }
                }
                poison.fetch_add(check::poison_hits(), Ordering::Relaxed);
                idle.fetch_add(task.idle_in_transition(), Ordering::Relaxed);
            });
        }

        start.wait();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ transitions);
        // The oracle: enabled patches (indexes into `specs`), oldest first.
        let mut enabled: Vec<usize> = Vec::new();
        while report.transitions < transitions && Instant::now() < deadline {
            if until_violation && violations.load(Ordering::Relaxed) > 0 {
                break;
            }
            let disabled: Vec<usize> = (0..specs.len()).filter(|i| !enabled.contains(i)).collect();
            let choice = rng.below(4);
            let (op, target, after): (Op, usize, Vec<usize>) = if enabled.is_empty() || (choice == 0 && enabled.len() < 2)
            {
                let t = disabled[rng.below(disabled.len())];
                (Op::Enable, t, enabled.iter().copied().chain([t]).collect())
            } else if choice == 1 {
                let t = disabled[rng.below(disabled.len())];
                (Op::Replace, t, vec![t])
            } else {
                let t = enabled[rng.below(enabled.len())];
                (Op::Disable, t, enabled.iter().copied().filter(|&e| e != t).collect())
            };
            let config = |set: &[usize]| {
                let specs: Vec<&PatchSpec> = set.iter().map(|&i| &specs[i]).collect();
                signature(&resolve(&originals, &specs), 0)
            };
            universes.publish(config(&after));
            match op {
                Op::Enable => p.enable(ids[target]),
                Op::Replace => p.replace(ids[target]),
                Op::Disable => p.disable(ids[target]),
            }
            .unwrap();
            if rng.below(4) == 0 {
                // Reverse mid-flight (refused if the transition is already settling).
                universes.publish(config(&enabled));
                if p.reverse().is_ok() {
                    report.reversals += 1;
                }
            }
            let stats = p.wait(Duration::from_secs(30)).expect("transition did not complete");
            let applied = (stats.op == Op::Disable) == (stats.target == PatchState::Unpatched);
            if applied {
                enabled = after;
            }
            // The engine agrees with the oracle.
            let expected: Vec<u64> = {
                let specs: Vec<&PatchSpec> = enabled.iter().map(|&i| &specs[i]).collect();
                resolve(&originals, &specs).iter().map(|c| c(0)).collect()
            };
            let actual: Vec<u64> = p.universe(PatchState::Idle).iter().map(|c| c(0)).collect();
            assert_eq!(actual, expected, "engine and oracle disagree after {stats:?}");
            report.transitions += 1;
            report.migrated_at_safe_point += stats.migrated_at_safe_point;
            report.migrated_while_parked += stats.migrated_while_parked;
            // Let every reader run a few critical sections before the next transition, so that
            // transitions and reads interleave even on a loaded 2-CPU machine.
            let seen = sections.load(Ordering::Relaxed);
            while sections.load(Ordering::Relaxed) < seen + 2 * READERS as u64 && Instant::now() < deadline {
                std::thread::yield_now();
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    report.critical_sections = sections.into_inner();
    report.violations = violations.into_inner();
    report.poison_hits = poison.into_inner();
    report.idle_in_transition = idle.into_inner();
    report
}

/// The stress tests run one at a time: on 2 CPUs, three of them at once starve each other's
/// readers, and transitions then complete while every reader sleeps (arc-swap serializes its
/// threaded tests the same way).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn check_strategy<S: Strategy>(transitions: u64) {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    match S::INFO.consistency {
        Consistency::PerTask => {
            let r = stress::<S>(transitions, false);
            eprintln!("{}: {r:?}", S::INFO.name);
            assert_eq!(r.transitions, transitions, "{}: not every transition completed", S::INFO.name);
            assert_eq!(r.violations, 0, "{}: consistency violations", S::INFO.name);
            assert_eq!(r.poison_hits, 0, "{}: use after reclaim", S::INFO.name);
            assert_eq!(r.idle_in_transition, 0, "{}: transition seen while Idle", S::INFO.name);
            assert!(r.critical_sections > transitions, "{}: readers barely ran", S::INFO.name);
            assert!(r.migrated_at_safe_point > 0, "{}: no task migrated at a safe point", S::INFO.name);
        }
        Consistency::Immediate => {
            let r = stress::<S>(u64::MAX, true);
            eprintln!("{}: {r:?}", S::INFO.name);
            assert!(r.violations > 0, "{}: the checker found no violation: it cannot fail", S::INFO.name);
        }
        // `direct` is not patchable: there is no universe to check.
        Consistency::NotPatchable => {}
    }
}

macro_rules! per_strategy {
    ($($name:ident : $ty:path),* $(,)?) => {$(
        mod $name {
            #[test]
            fn stress_small() {
                super::check_strategy::<$ty>(300);
            }
            #[test]
            #[ignore = "long: run with --release -- --ignored"]
            fn stress_large() {
                super::check_strategy::<$ty>(3000);
            }
        }
    )*};
}

dispatch::for_each_strategy!(per_strategy);
