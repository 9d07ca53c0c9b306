//! The torture engine behind the consistency stress tests and `scripts/soak`: reader tasks call
//! every site of multi-site patches between safe points and check that each critical section saw
//! one universe the writer announced, while a writer cycles enable / disable / replace / reverse
//! over stacked patches (depth 2, with nops). Readers park now and then (the patcher migrates
//! them) and spawn child tasks mid-section (which must inherit their state and stay consistent on
//! their own threads).

use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::check::{self, UniverseLog, code, resolve, signature};
use crate::driver::Driver;
use crate::rng::Rng;
use crate::{Code, FuncSpec, Op, PatchSpec, Patcher, PatcherConfig, SiteId, Strategy, Task, Waiting};

/// The torture engine's sites: every patch set is spread over them, and every reader calls each
/// of them twice per critical section.
pub const TORTURE_SITES: usize = 8;

#[derive(Clone, Debug)]
pub struct Config {
    pub readers: usize,
    /// Stop after this many completed transitions…
    pub transitions: u64,
    /// …or after this long, whichever comes first.
    pub time_limit: Duration,
    /// Stop at the first violation (to prove that the checker catches an inconsistent strategy).
    pub until_violation: bool,
    /// Each reader parks and unparks every this many critical sections (0: never).
    pub park_every: u64,
    /// Each reader spawns a child task every this many critical sections (0: never).
    pub spawn_every: u64,
    /// Test hook: reader 0 panics in the middle of this critical section.
    pub panic_at: Option<u64>,
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            readers: 2,
            transitions: 300,
            time_limit: Duration::from_secs(60),
            until_violation: false,
            park_every: 256,
            spawn_every: 0,
            panic_at: None,
            seed: 0x9E37_79B9_7F4A_7C15,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub transitions: u64,
    pub reversals: u64,
    pub forced: u64,
    pub migrated_at_safe_point: u64,
    pub migrated_while_parked: u64,
    pub critical_sections: u64,
    pub violations: u64,
    pub poison_hits: u64,
    pub idle_in_transition: u64,
    pub children: u64,
    /// Children whose first calls (before their own first safe point) saw another universe
    /// than their parent at the fork: the state or pending flag was not inherited.
    pub inheritance_errors: u64,
}

/// Patches over [`TORTURE_SITES`] sites: A and B overlap (stacking), C and D cover parts (a
/// replace by either gets nops for the rest).
pub fn patch_specs() -> Vec<PatchSpec> {
    let patch = |name: &str, base: usize, sites: std::ops::Range<usize>| {
        PatchSpec::new(name, sites.map(|s| FuncSpec::new(SiteId(s as u32), code(base + s))))
    };
    vec![patch("a", 100, 0..6), patch("b", 200, 2..8), patch("c", 300, 0..3), patch("d", 400, 4..8)]
}

/// Counters shared by readers and children.
#[derive(Default)]
struct Tally {
    sections: AtomicU64,
    violations: AtomicU64,
    poison: AtomicU64,
    idle: AtomicU64,
    children: AtomicU64,
    inheritance: AtomicU64,
}

impl Tally {
    fn add(c: &AtomicU64, n: u64) {
        // Relaxed: statistics, read after every thread is joined.
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// Every site once, summed, each call in a section of its own: the universe the task sees.
fn round<S: Strategy>(task: &Task<S>, r: usize) -> u64 {
    (0..TORTURE_SITES).fold(0u64, |sum, i| sum.wrapping_add(task.call(SiteId(((i + r) % TORTURE_SITES) as u32), 0)))
}

/// One critical section: every site, twice, in an order that depends on `r`; both rounds must
/// see the same universe, and it must be one the writer announced. The calls share one
/// [`Task::enter`], so what a strategy keeps for a whole section is tested here.
fn section<S: Strategy>(task: &mut Task<S>, r: usize, universes: &UniverseLog, tally: &Tally, panic_here: bool) {
    let section = task.enter();
    let mut sums = [0u64; 2];
    for (round, sum) in sums.iter_mut().enumerate() {
        for i in 0..TORTURE_SITES {
            let site = if (r + round).is_multiple_of(2) { i } else { TORTURE_SITES - 1 - i };
            *sum = sum.wrapping_add(section.call(SiteId(site as u32), 0));
            if panic_here && round == 1 && i == TORTURE_SITES / 2 {
                panic!("injected reader panic in the middle of a critical section (test hook)");
            }
        }
    }
    if sums[0] != sums[1] || !universes.contains(sums[0]) {
        Tally::add(&tally.violations, 1);
    }
    Tally::add(&tally.sections, 1);
}

/// Raises `stop` if its thread unwinds, so that one panicking reader ends the run at once
/// instead of leaving the others (and the writer) running until the time limit.
struct StopOnPanic<'a>(&'a AtomicBool);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Relaxed: `stop` is a signal; nothing is published with it.
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

/// Runs readers against a writer; `after_transition(n)` is called after the n-th completion.
pub fn run<S: Strategy>(cfg: &Config, mut after_transition: impl FnMut(u64)) -> Report {
    let originals: Vec<Code> = (0..TORTURE_SITES).map(code).collect();
    let capacity = cfg.readers * 4 + 4;
    let p = Patcher::<S>::new(&originals, PatcherConfig { capacity, ..Default::default() });
    let universes = UniverseLog::new(signature(&originals, 0));
    let stop = AtomicBool::new(false);
    let tally = Tally::default();
    let start = Barrier::new(cfg.readers + 1);
    let mut report = Report::default();
    let deadline = Instant::now() + cfg.time_limit;

    std::thread::scope(|s| {
        for r in 0..cfg.readers {
            let (p, universes, stop, start, tally) = (&p, &universes, &stop, &start, &tally);
            s.spawn(move || {
                let _stop_on_panic = StopOnPanic(stop);
                let mut task = p.register().expect("capacity");
                start.wait();
                let mut n = 0u64;
                // Relaxed: a signal (see StopOnPanic).
                while !stop.load(Ordering::Relaxed) {
                    let panic_here = r == 0 && cfg.panic_at == Some(n);
                    if cfg.spawn_every > 0 && n % cfg.spawn_every == cfg.spawn_every / 2 {
                        // Fork in the middle of a critical section. The child inherits the state
                        // and pending flag, so until its own first safe point it must see the
                        // very universe its parent sees now.
                        let parent_view = round(&task, r);
                        if let Ok(mut child) = task.spawn_child() {
                            Tally::add(&tally.children, 1);
                            s.spawn(move || {
                                let _stop_on_panic = StopOnPanic(stop);
                                if round(&child, r) != parent_view {
                                    Tally::add(&tally.inheritance, 1);
                                }
                                for _ in 0..4 {
                                    section(&mut child, r + 1, universes, tally, false);
                                    child.safe_point().expect("the child's own thread");
                                }
                                Tally::add(&tally.poison, check::poison_hits());
                                Tally::add(&tally.idle, child.idle_in_transition());
                            });
                        }
                        // Still the parent's universe: the fork is not a safe point.
                        if round(&task, r) != parent_view {
                            Tally::add(&tally.violations, 1);
                        }
                    }
                    section(&mut task, r, universes, tally, panic_here);
                    task.safe_point().expect("the reader's own thread");
                    n += 1;
                    if cfg.park_every > 0 && n.is_multiple_of(cfg.park_every) {
                        // Sleep now and then: the patcher migrates parked tasks itself.
                        task.park().expect("running");
                        std::thread::yield_now();
                        task.unpark().expect("parked");
                    }
                }
                Tally::add(&tally.poison, check::poison_hits());
                Tally::add(&tally.idle, task.idle_in_transition());
            });
        }

        start.wait();
        let announce = |enabled: &[&PatchSpec]| universes.announce(signature(&resolve(&originals, enabled), 0));
        let mut writer = Driver::new(&p, patch_specs(), announce).expect("valid patches");
        let mut rng = Rng::new(cfg.seed ^ cfg.transitions);
        while report.transitions < cfg.transitions && Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
            if cfg.until_violation && tally.violations.load(Ordering::Relaxed) > 0 {
                break;
            }
            let enabled = writer.enabled().to_vec();
            let disabled: Vec<usize> = (0..writer.specs().len()).filter(|i| !enabled.contains(i)).collect();
            let choice = rng.below(4);
            let (op, patch) = if enabled.is_empty() || (choice == 0 && enabled.len() < 2) {
                (Op::Enable, disabled[rng.below(disabled.len())])
            } else if choice == 1 {
                (Op::Replace, disabled[rng.below(disabled.len())])
            } else {
                (Op::Disable, enabled[rng.below(enabled.len())])
            };
            // Reverse mid-flight one time in four.
            let reverse = rng.below(4) == 0;
            writer.start(op, patch, reverse).expect("a valid operation");
            // Woken by the tasks, as the harness's writer is: the stress covers the wake-up too.
            let limit = Duration::from_secs(30);
            let stats =
                writer.finish_woken(Waiting::default(), |waited| waited >= limit).expect("transition did not complete");
            assert!(writer.agrees_with_engine(&originals), "engine and oracle disagree after {stats:?}");
            report.transitions += 1;
            report.migrated_at_safe_point += stats.migrated_at_safe_point;
            report.migrated_while_parked += stats.migrated_while_parked;
            report.forced += u64::from(stats.forced);
            after_transition(report.transitions);
            // Let every reader run a few sections before the next transition, so that
            // transitions and reads interleave even on a loaded 2-CPU machine.
            let seen = tally.sections.load(Ordering::Relaxed);
            while tally.sections.load(Ordering::Relaxed) < seen + 2 * cfg.readers as u64
                && Instant::now() < deadline
                && !stop.load(Ordering::Relaxed)
            {
                std::thread::yield_now();
            }
        }
        report.reversals = writer.reversals();
        // Relaxed: a signal; the scope's join orders the tallies read below.
        stop.store(true, Ordering::Relaxed);
    });
    report.critical_sections = tally.sections.into_inner();
    report.violations = tally.violations.into_inner();
    report.poison_hits = tally.poison.into_inner();
    report.idle_in_transition = tally.idle.into_inner();
    report.children = tally.children.into_inner();
    report.inheritance_errors = tally.inheritance.into_inner();
    report
}
