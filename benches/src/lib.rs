//! Fixtures shared by the criterion and gungraun benches: a patcher of one strategy with a task
//! set up on a given read path, and a check that the path resolves where the bench expects before
//! anything is timed.

use std::hint::black_box;

use dispatch::check::{self, code};
use dispatch::strategy::Consistency;
use dispatch::{FuncSpec, PatchSpec, PatchState, Patcher, PatcherConfig, Progress, SiteId, Strategy, Task};

/// Sites per fixture: calls cycle through them, so each call is a different site, as in a kernel
/// that patched several functions.
pub const SITES: usize = 8;

/// Which read path a fixture's task takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// Two patches enabled and settled: the head's func, no transition.
    Steady,
    /// A third patch in transition, the task migrated: the head's func, after reading its state.
    TransitionPatched,
    /// A third patch in transition, the task not migrated: the func below the head.
    TransitionUnpatched,
}

impl Path {
    pub const ALL: [Path; 3] = [Path::Steady, Path::TransitionPatched, Path::TransitionUnpatched];

    pub fn name(self) -> &'static str {
        match self {
            Path::Steady => "steady",
            Path::TransitionPatched => "transition_patched",
            Path::TransitionUnpatched => "transition_unpatched",
        }
    }
}

/// A patcher, a task on `path`, and (in transition) a second task that never reaches a safe
/// point, so that the transition stays in progress while the bench runs.
pub struct Fixture<S: Strategy> {
    pub task: Task<S>,
    _blocker: Option<Task<S>>,
    pub patcher: Patcher<S>,
    sites: [SiteId; SITES],
    /// The signature of one call of every site on this path.
    expected: u64,
}

impl<S: Strategy> Fixture<S> {
    pub fn new(path: Path) -> Self {
        let originals: Vec<_> = (0..SITES).map(code).collect();
        let patcher = Patcher::<S>::new(&originals, PatcherConfig::default());
        let patch = |n: usize| {
            let spec =
                PatchSpec::new(format!("p{n}"), (0..SITES).map(|s| FuncSpec::new(SiteId(s as u32), code(100 * n + s))));
            patcher.load(spec).expect("valid patch")
        };
        let task = patcher.register().expect("capacity");
        for n in 1..=2 {
            patcher.enable(patch(n)).expect("enable");
            settle(&patcher, &task);
        }
        let blocker = (path != Path::Steady).then(|| {
            let blocker = patcher.register().expect("capacity");
            assert!(matches!(patcher.enable(patch(3)).expect("enable"), Progress::Migrating { .. }));
            if path == Path::TransitionPatched {
                task.safe_point().expect("owner");
            }
            blocker
        });
        let state = match path {
            Path::Steady => PatchState::Idle,
            Path::TransitionPatched => PatchState::Patched,
            Path::TransitionUnpatched => PatchState::Unpatched,
        };
        assert_eq!(task.patch_state(), state);
        let sites = std::array::from_fn(|s| SiteId(s as u32));
        let expected = match S::INFO.consistency {
            Consistency::NotPatchable => (SITES as u64).wrapping_mul(check::DIRECT_FINGERPRINT),
            // Per-task strategies honour the state; `fnptr` always runs the head (= Patched view).
            Consistency::PerTask => check::signature(&patcher.universe(state), 0),
            Consistency::Immediate => check::signature(&patcher.universe(PatchState::Patched), 0),
        };
        let fixture = Self { task, _blocker: blocker, patcher, sites, expected };
        fixture.verify();
        fixture
    }

    /// Panics unless every site resolves where this path should: benches measure the right thing.
    pub fn verify(&self) {
        let got = self.round();
        assert_eq!(got, self.expected, "{}: the read path does not resolve to the expected targets", S::INFO.name);
    }

    /// One call of every site, summed (as the consistency check does).
    #[inline]
    pub fn round(&self) -> u64 {
        let mut sum = 0u64;
        for &site in &self.sites {
            sum = sum.wrapping_add(self.task.call(black_box(site), 0));
        }
        sum
    }

    /// `calls` calls, cycling through the sites: the timed body.
    #[inline]
    pub fn calls(&self, calls: usize) -> u64 {
        let mut sum = 0u64;
        for i in 0..calls {
            sum = sum.wrapping_add(self.task.call(black_box(self.sites[i % SITES]), 0));
        }
        sum
    }
}

impl<S: Strategy> std::fmt::Debug for Fixture<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fixture").field("strategy", &S::INFO.name).field("task", &self.task).finish()
    }
}

/// Completes the transition in progress from the calling thread (the only task's thread).
fn settle<S: Strategy>(patcher: &Patcher<S>, task: &Task<S>) {
    for _ in 0..10 {
        if let Progress::Done(_) | Progress::Idle = patcher.try_complete() {
            return;
        }
        task.safe_point().expect("owner");
    }
    panic!("{}: transition did not settle", S::INFO.name);
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
                for path in Path::ALL {
                    let f = Fixture::<S>::new(path);
                    assert_eq!(f.calls(SITES), f.round());
                }
            }
        }
        dispatch::strategy::visit_all(&mut Build);
    }
}
