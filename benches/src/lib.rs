//! Fixtures shared by the criterion and gungraun benches: a patcher of one strategy with a task
//! set up on a given read path, and a check that the path resolves where the bench expects before
//! anything is timed.

pub mod gate;

use dispatch::check::{self, code};
use dispatch::loops;
use dispatch::strategy::Consistency;
use dispatch::{
    FuncSpec, Op, PatchId, PatchSpec, PatchState, Patcher, PatcherConfig, Progress, SiteId, Strategy, Task,
    TransitionStats,
};

/// The environment variable naming a file to which [`available`] appends one line per strategy
/// it skips, `<name>\t<reason>`: how `scripts/gate` learns what the gungraun suite skipped (the
/// suite's benchmarks run under valgrind, where only their counts come back), so that the
/// baseline's benchmarks of those strategies count as skipped rather than missing.
pub const SKIPPED_LOG_VAR: &str = "DISPATCH_BENCH_SKIPPED_LOG";

/// Whether `S` runs on this machine. If not, says so on stderr (`"<name>: skipped: <reason>"`),
/// appends it to the file named by [`SKIPPED_LOG_VAR`] where that is set, and returns false: the
/// bench skips `S`. The probe is `S`'s own, here in the process that would measure it.
pub fn available<S: Strategy>() -> bool {
    let Err(why) = S::INFO.availability() else { return true };
    eprintln!("{}: skipped: {why}", S::INFO.name);
    if let Some(path) = std::env::var_os(SKIPPED_LOG_VAR) {
        use std::io::Write;
        // One short line per append: whole lines even if several benchmark processes append at once.
        let line = format!("{}\t{}\n", S::INFO.name, why.0.replace(['\t', '\n'], " "));
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = appended {
            // The gate would then call the strategy's benchmarks missing: fail here, saying why.
            panic!("{}: cannot record the skip in {} ({e})", S::INFO.name, path.display());
        }
    }
    false
}

/// Sites per fixture: a measured loop calls each of them in turn, as a kernel that patched several
/// functions calls each from its own call sites.
pub const FIXTURE_SITES: usize = 8;

/// Rounds of every site per read-path benchmark of the gungraun suite.
pub const GATE_ROUNDS: usize = 125;

/// Calls per read-path benchmark of the gungraun suite; the gate divides by it.
pub const GATE_CALLS: usize = GATE_ROUNDS * FIXTURE_SITES;

/// Which read path a fixture's task takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// One patch enabled and settled: the head's func, no transition.
    Steady,
    /// A second patch in transition, the task migrated: the head's func, after reading its state.
    TransitionPatched,
    /// A second patch in transition, the task not migrated: the func below the head.
    TransitionUnpatched,
    /// A replace in transition that covers none of the called sites, the task migrated: every
    /// head is a nop, so the original runs.
    Nop,
    /// Two patches stacked and settled: the head's func with an older one below.
    Depth2,
}

impl Path {
    pub const ALL: [Path; 5] =
        [Path::Steady, Path::TransitionPatched, Path::TransitionUnpatched, Path::Nop, Path::Depth2];

    pub fn name(self) -> &'static str {
        match self {
            Path::Steady => "steady",
            Path::TransitionPatched => "transition_patched",
            Path::TransitionUnpatched => "transition_unpatched",
            Path::Nop => "nop",
            Path::Depth2 => "depth2",
        }
    }
}

/// A patcher, a task on `path`, and (in transition) a second task that never reaches a safe
/// point, so that the transition stays in progress while the bench runs.
pub struct Fixture<S: Strategy> {
    pub task: Task<S>,
    _blocker: Option<Task<S>>,
    pub patcher: Patcher<S>,
    /// Every site in turn, [`GATE_ROUNDS`] times: the calls of the shared loop.
    shared_order: Vec<SiteId>,
    /// The signature of one call of every site on this path.
    expected: u64,
}

impl<S: Strategy> Fixture<S> {
    pub fn new(path: Path) -> Self {
        // One extra site, never called: the replace of the nop path patches only that one.
        let originals: Vec<_> = (0..=FIXTURE_SITES).map(code).collect();
        let patcher = Patcher::<S>::new(&originals, PatcherConfig::default());
        let task = patcher.register().expect("capacity");
        let (settled, in_transition) = match path {
            Path::Steady => (1, None),
            Path::Depth2 => (2, None),
            Path::TransitionPatched | Path::TransitionUnpatched => (1, Some(Op::Enable)),
            Path::Nop => (1, Some(Op::Replace)),
        };
        for n in 1..=settled {
            patcher.enable(all_sites(&patcher, n)).expect("enable");
            settle(&patcher, &task);
        }
        let blocker = in_transition.map(|op| {
            let blocker = patcher.register().expect("capacity");
            let progress = match op {
                Op::Replace => {
                    let spare = FuncSpec::new(SiteId(FIXTURE_SITES as u32), code(900));
                    patcher.replace(patcher.load(PatchSpec::new("r", [spare])).expect("valid patch"))
                }
                _ => patcher.enable(all_sites(&patcher, settled + 1)),
            };
            assert!(matches!(progress.expect("start"), Progress::Migrating { .. }));
            if path != Path::TransitionUnpatched {
                task.safe_point().expect("owner");
            }
            blocker
        });
        let state = match path {
            Path::Steady | Path::Depth2 => PatchState::Idle,
            Path::TransitionPatched | Path::Nop => PatchState::Patched,
            Path::TransitionUnpatched => PatchState::Unpatched,
        };
        assert_eq!(task.patch_state(), state);
        let shared_order = (0..GATE_CALLS).map(|i| SiteId((i % FIXTURE_SITES) as u32)).collect();
        // Per-task strategies honour the state; `fnptr` always runs the head (= Patched view).
        let view = if S::INFO.consistency == Consistency::PerTask { state } else { PatchState::Patched };
        let expected = match S::INFO.consistency {
            // `direct` ignores patches: every site calls its original.
            Consistency::NotPatchable => check::signature(&originals[..FIXTURE_SITES], 0),
            _ => check::signature(&patcher.universe(view)[..FIXTURE_SITES], 0),
        };
        let mut fixture = Self { task, _blocker: blocker, patcher, shared_order, expected };
        fixture.verify();
        fixture
    }

    /// Panics unless every site resolves where this path should, through either kind of call
    /// site: benches measure the right thing.
    pub fn verify(&mut self) {
        let (per_site, shared) = (self.per_site(1), self.shared(1));
        assert_eq!(per_site, self.expected, "{}: the per-site loop resolves elsewhere", S::INFO.name);
        assert_eq!(shared, self.expected, "{}: the shared loop resolves elsewhere", S::INFO.name);
    }

    /// After a contended run the patch under contention may or may not be enabled: checks that
    /// every call still resolves to one of the two universes.
    pub fn verify_after_contention(&mut self) {
        if S::INFO.consistency == Consistency::NotPatchable {
            return self.verify();
        }
        let got = self.per_site(1);
        let candidates = [PatchState::Idle, PatchState::Unpatched, PatchState::Patched]
            .map(|s| check::signature(&self.patcher.universe(s)[..FIXTURE_SITES], 0));
        assert!(
            candidates.contains(&got) || got == self.expected,
            "{}: unexpected targets after contention",
            S::INFO.name
        );
    }

    /// `rounds` rounds of every site, each site called from its own call instruction: the timed
    /// body of the read-path benches (`dispatch::loops::per_site`).
    #[inline]
    pub fn per_site(&mut self, rounds: usize) -> u64 {
        loops::per_site::<S, FIXTURE_SITES>(&mut self.task, rounds)
    }

    /// The same calls from one shared call instruction (`dispatch::loops::shared`); at most
    /// [`GATE_ROUNDS`] rounds.
    #[inline]
    pub fn shared(&mut self, rounds: usize) -> u64 {
        loops::shared(&mut self.task, &self.shared_order[..rounds * FIXTURE_SITES])
    }
}

impl<S: Strategy> std::fmt::Debug for Fixture<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fixture").field("strategy", &S::INFO.name).field("task", &self.task).finish()
    }
}

/// Loads patch `n`: a func for every called site.
fn all_sites<S: Strategy>(patcher: &Patcher<S>, n: usize) -> PatchId {
    let spec =
        PatchSpec::new(format!("p{n}"), (0..FIXTURE_SITES).map(|s| FuncSpec::new(SiteId(s as u32), code(100 * n + s))));
    patcher.load(spec).expect("valid patch")
}

/// A writer operation measured without readers: start it and drive it to completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriterOp {
    /// Enable a patch of every site on an empty stack.
    Enable,
    /// Replace an enabled patch with a cumulative one covering half the sites (nops for the rest).
    Replace,
}

impl WriterOp {
    pub const ALL: [WriterOp; 2] = [WriterOp::Enable, WriterOp::Replace];

    pub fn name(self) -> &'static str {
        match self {
            WriterOp::Enable => "enable",
            WriterOp::Replace => "replace",
        }
    }
}

/// A patcher ready for one writer operation.
pub struct WriterFixture<S: Strategy> {
    pub patcher: Patcher<S>,
    op: WriterOp,
    patch: PatchId,
}

impl<S: Strategy> WriterFixture<S> {
    pub fn new(op: WriterOp) -> Self {
        let originals: Vec<_> = (0..FIXTURE_SITES).map(code).collect();
        let patcher = Patcher::<S>::new(&originals, PatcherConfig::default());
        let patch = match op {
            WriterOp::Enable => all_sites(&patcher, 1),
            WriterOp::Replace => {
                patcher.enable(all_sites(&patcher, 1)).expect("enable");
                let half = (0..FIXTURE_SITES / 2).map(|s| FuncSpec::new(SiteId(s as u32), code(300 + s)));
                patcher.load(PatchSpec::new("cumulative", half)).expect("valid patch")
            }
        };
        Self { patcher, op, patch }
    }

    /// Runs the operation to completion (no tasks: it completes without waiting) and checks it.
    #[inline(never)]
    pub fn run(&self) -> TransitionStats {
        let progress = match self.op {
            WriterOp::Enable => self.patcher.enable(self.patch),
            WriterOp::Replace => self.patcher.replace(self.patch),
        };
        match progress.expect("the operation starts") {
            Progress::Done(stats) => stats,
            other => panic!("{}: {:?} did not complete without tasks: {other:?}", S::INFO.name, self.op),
        }
    }

    /// Panics unless the operation took effect.
    pub fn verify(&self) {
        assert_eq!(self.patcher.enabled(), vec![self.patch], "{}: {:?} did not take effect", S::INFO.name, self.op);
    }
}

impl<S: Strategy> std::fmt::Debug for WriterFixture<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterFixture").field("strategy", &S::INFO.name).field("op", &self.op).finish()
    }
}

/// Completes the transition in progress from the calling thread (the only task's thread).
fn settle<S: Strategy>(patcher: &Patcher<S>, task: &Task<S>) {
    for _ in 0..10 {
        if let Progress::Done(_) | Progress::NoTransition = patcher.try_complete() {
            return;
        }
        task.safe_point().expect("owner");
    }
    panic!("{}: transition did not settle", S::INFO.name);
}

/// Sites of the [`TransitionCycle`]s the suite measures: a few functions, and a large live patch.
pub const TRANSITION_SITES: [usize; 2] = [8, 1024];

/// Whole transitions, end to end: a patcher of `sites` sites whose one patch (a func for every
/// site) is enabled and disabled in turn, each transition driven to completion. With a busy
/// reader, one thread calls every site in critical sections with a safe point after each, so the
/// writer waits for it to migrate, and a strategy that interrupts running threads (`textpoke`'s
/// membarrier) pays for it. What the writer's work costs for many sites, and what it costs a
/// running program.
pub struct TransitionCycle<S: Strategy> {
    patcher: std::sync::Arc<Patcher<S>>,
    patch: PatchId,
    reader: Option<(std::thread::JoinHandle<u64>, std::sync::Arc<std::sync::atomic::AtomicBool>)>,
}

impl<S: Strategy> TransitionCycle<S> {
    pub fn new(sites: usize, busy_reader: bool) -> Self {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};

        let originals: Vec<_> = (0..sites).map(code).collect();
        let patcher = Arc::new(Patcher::<S>::new(&originals, PatcherConfig::default()));
        let funcs = (0..sites).map(|s| FuncSpec::new(SiteId(s as u32), code(sites + s)));
        let patch = patcher.load(PatchSpec::new("cycle", funcs)).expect("valid patch");
        let reader = busy_reader.then(|| {
            let (stop, patcher) = (Arc::new(AtomicBool::new(false)), Arc::clone(&patcher));
            let registered = Arc::new(std::sync::Barrier::new(2));
            let handle = std::thread::spawn({
                let (stop, registered) = (Arc::clone(&stop), Arc::clone(&registered));
                move || {
                    let mut task = patcher.register().expect("capacity");
                    registered.wait();
                    let mut sum = 0u64;
                    // Relaxed: `stop` is a signal; nothing is published with it.
                    while !stop.load(Ordering::Relaxed) {
                        {
                            let section = task.enter();
                            for s in 0..sites {
                                sum = sum.wrapping_add(section.call(SiteId(s as u32), 0));
                            }
                        }
                        task.safe_point().expect("owner");
                    }
                    sum
                }
            });
            // The reader is a task before the first transition starts, so every one waits for it.
            registered.wait();
            (handle, stop)
        });
        Self { patcher, patch, reader }
    }

    /// One transition (enable, or disable when enabled), from its start to its completion.
    pub fn cycle(&self) -> std::time::Duration {
        let t0 = std::time::Instant::now();
        if self.patcher.enabled().is_empty() {
            self.patcher.enable(self.patch)
        } else {
            self.patcher.disable(self.patch)
        }
        .expect("no other transition");
        self.patcher.wait(std::time::Duration::from_secs(60)).expect("the transition completes");
        t0.elapsed()
    }
}

impl<S: Strategy> Drop for TransitionCycle<S> {
    fn drop(&mut self) {
        if let Some((handle, stop)) = self.reader.take() {
            // Relaxed: as in `new`.
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            std::hint::black_box(handle.join().expect("the busy reader"));
        }
    }
}

impl<S: Strategy> std::fmt::Debug for TransitionCycle<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransitionCycle")
            .field("strategy", &S::INFO.name)
            .field("sites", &self.patcher.sites())
            .field("busy_reader", &self.reader.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dispatch::Visitor;

    /// Every strategy on every path builds and verifies (what each bench does before timing).
    #[test]
    fn every_fixture_verifies() {
        struct Build;
        impl Visitor for Build {
            type Output = ();
            fn visit<S: Strategy>(&mut self) {
                if dispatch::strategy::skip_if_unavailable(&S::INFO) {
                    return;
                }
                for path in Path::ALL {
                    let mut f = Fixture::<S>::new(path);
                    assert_eq!(f.per_site(GATE_ROUNDS), f.shared(GATE_ROUNDS));
                }
                for op in WriterOp::ALL {
                    let w = WriterFixture::<S>::new(op);
                    w.run();
                    w.verify();
                }
                for busy_reader in [false, true] {
                    let c = TransitionCycle::<S>::new(TRANSITION_SITES[0], busy_reader);
                    for i in 0..4 {
                        c.cycle();
                        assert_eq!(c.patcher.enabled().is_empty(), i % 2 == 1, "{}: cycle {i}", S::INFO.name);
                    }
                }
            }
        }
        dispatch::strategy::visit_all(&mut Build);
    }
}
