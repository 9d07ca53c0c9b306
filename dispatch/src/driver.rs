//! The writer's loop, written once for every caller that drives transitions while readers run:
//! the stress engine ([`torture`](crate::torture)), the harness's writer thread and the contended
//! benchmark. One transition goes through five steps:
//!
//! 1. **announce** the universe the operation leads to (readers check their critical sections
//!    against the announced ones, so it must be announced before any reader can see it);
//! 2. **start** the operation ([`Patcher::enable`], [`Patcher::disable`] or [`Patcher::replace`]);
//! 3. optionally **reverse** it mid-flight, announcing the universe it goes back to first (refused
//!    once the transition is settling: it then completes forward);
//! 4. **poll** until it completes: woken by the tasks that make progress ([`Driver::finish_woken`]),
//!    or with a waiting policy the caller chooses ([`Driver::finish`]);
//! 5. **record**: the driver's own view of which patches are enabled (its oracle) follows the
//!    operation only if it [finished forward](TransitionStats::finished_forward).

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use crate::check;
use crate::model::{Code, Error, Op, PatchId, PatchSpec, PatchState};
use crate::strategy::Strategy;
use crate::transition::{Patcher, Progress, TransitionStats, Waiting};

/// Drives transitions of a set of loaded patches on one patcher.
///
/// `announce` is called with the patches enabled in a universe (oldest first) whenever that
/// universe must become legal for readers; callers without readers to check pass `|_| {}`.
pub struct Driver<'a, S: Strategy, A: FnMut(&[&PatchSpec])> {
    patcher: &'a Patcher<S>,
    specs: Vec<PatchSpec>,
    ids: Vec<PatchId>,
    /// The oracle: indexes into `specs` of the enabled patches, oldest first.
    enabled: Vec<usize>,
    /// What `enabled` becomes if the transition in flight finishes forward.
    after: Option<Vec<usize>>,
    announce: A,
    reversals: u64,
}

impl<'a, S: Strategy, A: FnMut(&[&PatchSpec])> Driver<'a, S, A> {
    /// Loads `specs` into `patcher`, none of them enabled.
    pub fn new(patcher: &'a Patcher<S>, specs: Vec<PatchSpec>, announce: A) -> Result<Self, Error> {
        let ids = specs.iter().map(|s| patcher.load(s.clone())).collect::<Result<_, _>>()?;
        Ok(Self { patcher, specs, ids, enabled: Vec::new(), after: None, announce, reversals: 0 })
    }

    pub fn patcher(&self) -> &'a Patcher<S> {
        self.patcher
    }

    pub fn specs(&self) -> &[PatchSpec] {
        &self.specs
    }

    /// Indexes of the enabled patches, oldest first (as of the last completed transition).
    pub fn enabled(&self) -> &[usize] {
        &self.enabled
    }

    /// Transitions reversed so far (reversals the patcher refused are not counted).
    pub fn reversals(&self) -> u64 {
        self.reversals
    }

    /// Enables the first `n` patches one after the other, with no reader running (setup).
    pub fn enable_first(&mut self, n: usize, timeout: Duration) -> Result<(), Error> {
        for i in 0..n {
            self.start(Op::Enable, i, false)?;
            self.patcher.wait(timeout)?;
            self.enabled.push(i);
            self.after = None;
        }
        Ok(())
    }

    /// Steps 1–3: announces where `op` on patch `patch` leads, starts it and, if `reverse`,
    /// reverses it at once. Returns whether the patcher accepted the reversal.
    pub fn start(&mut self, op: Op, patch: usize, reverse: bool) -> Result<bool, Error> {
        let after: Vec<usize> = match op {
            Op::Enable => self.enabled.iter().copied().chain([patch]).collect(),
            Op::Disable => self.enabled.iter().copied().filter(|&i| i != patch).collect(),
            Op::Replace => vec![patch],
        };
        (self.announce)(&pick(&self.specs, &after));
        let id = self.ids[patch];
        match op {
            Op::Enable => self.patcher.enable(id),
            Op::Disable => self.patcher.disable(id),
            Op::Replace => self.patcher.replace(id),
        }?;
        self.after = Some(after);
        if !reverse {
            return Ok(false);
        }
        (self.announce)(&pick(&self.specs, &self.enabled));
        // Refused once the transition is settling: it then completes forward.
        let reversed = self.patcher.reverse().is_ok();
        self.reversals += u64::from(reversed);
        Ok(reversed)
    }

    /// Step 4, once: `Some` when the transition in flight has completed (step 5 done).
    pub fn poll(&mut self) -> Option<TransitionStats> {
        let progress = self.patcher.try_complete();
        self.completed(progress)
    }

    /// Step 5 once `progress` says the transition completed; `None` if it has not.
    fn completed(&mut self, progress: Progress) -> Option<TransitionStats> {
        let stats = match progress {
            Progress::Done(stats) => stats,
            // Completed when it started (no task had to migrate): its statistics are the last.
            Progress::NoTransition => self.patcher.last_transition()?,
            Progress::Migrating { .. } | Progress::Reversing | Progress::Settling => return None,
        };
        let after = self.after.take();
        if stats.finished_forward()
            && let Some(after) = after
        {
            self.enabled = after;
        }
        Some(stats)
    }

    /// Steps 4–5: polls until the transition completes. Between polls it calls `wait` with the
    /// time spent so far; `wait` sleeps, spins or yields as the caller needs, and breaks to give
    /// up (then `None`, and the transition is left in flight).
    pub fn finish(&mut self, mut wait: impl FnMut(Duration) -> ControlFlow<()>) -> Option<TransitionStats> {
        let started = Instant::now();
        loop {
            if let Some(stats) = self.poll() {
                return Some(stats);
            }
            if wait(started.elapsed()).is_break() {
                return None;
            }
        }
    }

    /// Steps 4–5, woken rather than polling on a timer: [`Patcher::wait_with`], which spins
    /// briefly after each change and then sleeps until a task that made progress wakes it.
    /// `give_up` is asked with the time waited so far at least every `waiting.nap`; when it says
    /// so, `None`, and the transition is left in flight.
    pub fn finish_woken(&mut self, waiting: Waiting, give_up: impl FnMut(Duration) -> bool) -> Option<TransitionStats> {
        let progress = self.patcher.wait_with(waiting, give_up);
        self.completed(progress)
    }

    /// Whether the engine's own stacks agree with the oracle: every site runs, for an Idle task,
    /// what the enabled patches say ([`check::resolve`]). For checks between transitions.
    pub fn agrees_with_engine(&self, originals: &[Code]) -> bool {
        let expected = check::resolve(originals, &pick(&self.specs, &self.enabled));
        let actual = self.patcher.universe(PatchState::Idle);
        expected.iter().zip(&actual).all(|(e, a)| e(0) == a(0)) && expected.len() == actual.len()
    }
}

impl<S: Strategy, A: FnMut(&[&PatchSpec])> std::fmt::Debug for Driver<'_, S, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver").field("strategy", &S::INFO.name).field("enabled", &self.enabled).finish()
    }
}

/// The specs of a set of indexes into `specs`. (A free function, so that it borrows only the specs
/// while `announce` is borrowed mutably.)
fn pick<'s>(specs: &'s [PatchSpec], set: &[usize]) -> Vec<&'s PatchSpec> {
    set.iter().map(|&i| &specs[i]).collect()
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A waiting policy for [`Driver::finish`] that gives up after `limit`: sleep with a
    /// back-off that doubles from 1 µs to 1 ms.
    fn back_off(limit: Duration) -> impl FnMut(Duration) -> ControlFlow<()> {
        let mut step = Duration::from_micros(1);
        move |waited| {
            if waited >= limit {
                return ControlFlow::Break(());
            }
            std::thread::sleep(step);
            step = (step * 2).min(Duration::from_millis(1));
            ControlFlow::Continue(())
        }
    }
    use crate::check::code;
    use crate::model::{FuncSpec, SiteId};
    use crate::strategy::klp::Klp;
    use crate::transition::PatcherConfig;

    fn spec(name: &str, n: usize) -> PatchSpec {
        PatchSpec::new(name, [FuncSpec::new(SiteId(0), code(n))])
    }

    /// The oracle follows forward transitions and ignores reversed ones; every universe a reader
    /// could see was announced first.
    #[test]
    fn the_oracle_follows_only_forward_transitions() {
        let originals = [code(0)];
        let p = Patcher::<Klp>::new(&originals, PatcherConfig::default());
        let task = p.register().unwrap();
        let mut announced = Vec::new();
        let mut d = Driver::new(&p, vec![spec("a", 1), spec("b", 2)], |e: &[&PatchSpec]| {
            announced.push(e.iter().map(|s| s.name.clone()).collect::<Vec<_>>())
        })
        .unwrap();
        let mut safe_points = |_: Duration| {
            task.safe_point().unwrap();
            ControlFlow::Continue(())
        };
        d.start(Op::Enable, 0, false).unwrap();
        assert!(d.finish(&mut safe_points).unwrap().finished_forward());
        assert_eq!(d.enabled(), [0]);
        assert!(d.start(Op::Replace, 1, true).unwrap(), "a migrating transition can be reversed");
        assert!(!d.finish(&mut safe_points).unwrap().finished_forward());
        assert_eq!(d.enabled(), [0], "a reversed replace leaves the oracle as it was");
        assert_eq!(d.reversals(), 1);
        assert!(d.agrees_with_engine(&originals));
        drop(d);
        assert_eq!(announced, [vec!["a"], vec!["b"], vec!["a"]]);
    }

    #[test]
    fn finish_gives_up_when_the_policy_breaks() {
        let p = Patcher::<Klp>::new(&[code(0)], PatcherConfig::default());
        let _blocker = p.register().unwrap();
        let mut d = Driver::new(&p, vec![spec("a", 1)], |_: &[&PatchSpec]| {}).unwrap();
        d.start(Op::Enable, 0, false).unwrap();
        assert!(d.finish(back_off(Duration::from_millis(5))).is_none(), "a task that never reaches a safe point");
        assert!(d.enabled().is_empty());
    }
}
