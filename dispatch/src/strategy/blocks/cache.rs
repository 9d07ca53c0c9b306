//! What the two cache strategies (`percpu`, `tls`) share: the source of truth they refill from (a
//! [`SeqLockSites`]) and the generation every writer change bumps. A cache entry holds a whole
//! [`Selection`] stamped with the generation it was read at; a reader picks from it with
//! [`TaskState::version`](crate::task_list::TaskState::version), like every other strategy.
//!
//! # Synchronization
//!
//! | writer ([`Source::apply`]) | reader | guarantees |
//! |---|---|---|
//! | seqlock write → `generation.fetch_add(Release)` | `generation.load(Acquire)` → seqlock read on a miss | an entry stamped with generation g holds a selection at least as new as every change before g; a newer change bumps g, so no reader uses an entry older than the generation it loaded |
//! | task states (init) → seqlock write → generation | `generation.load(Acquire)` → `patch_state` | [`Barrier::StatesBeforeFlag`]: a reader whose entry shows a transition sees its own state as Patched or Unpatched |
//!
//! [`Barrier::StatesBeforeFlag`]: crate::docs::Barrier::StatesBeforeFlag

use crate::model::{Code, Selection, SiteId};
use crate::strategy::StackChange;
use crate::strategy::blocks::seqlock_sites::SeqLockSites;
use crate::sync::{AtomicU64, Ordering};

/// The source of truth of a cache strategy.
#[derive(Debug)]
pub(crate) struct Source {
    sites: SeqLockSites,
    /// Starts at 1, so that a zeroed stamp is never current. Boxed: see [`Strategy`]'s note on
    /// immutable fields.
    ///
    /// [`Strategy`]: crate::strategy::Strategy
    generation: Box<AtomicU64>,
}

impl Source {
    pub(crate) fn new(originals: &[Code]) -> Self {
        Self { sites: SeqLockSites::new(originals), generation: Box::new(AtomicU64::new(1)) }
    }

    /// The current generation. Acquire: pairs with the Release bump in `apply`, so that a refill
    /// after this load reads the changes the generation stands for.
    #[inline(always)]
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The slow path of a miss: what `site` selects now.
    #[inline(never)]
    pub(crate) fn read(&self, site: SiteId) -> Selection {
        self.sites.read::<true>(site)
    }

    /// Publishes a change, then invalidates every cache entry by bumping the generation.
    pub(crate) fn apply(&self, site: SiteId, change: StackChange<'_>) {
        self.sites.write(site, Selection::of(change.stack, change.original));
        self.invalidate();
    }

    /// Makes every cache entry stale, so that each task's next call of each site takes the miss
    /// path. The writer does it after every change; tests call it to force the miss path on
    /// purpose instead of hoping a writer runs at the right moment.
    pub(crate) fn invalidate(&self) {
        // Release: pairs with the Acquire in `generation`; the seqlock write before it is visible
        // to a reader that loads the new generation.
        self.generation.fetch_add(1, Ordering::Release);
    }
}

#[cfg(all(test, not(loom)))]
pub(crate) mod tests {
    use super::*;
    use crate::check::{code, fingerprint};
    use crate::model::{FuncId, PatchState, StackEntry};
    use crate::strategy::{StackOp, Strategy};
    use crate::task_list::TaskState;

    /// The miss path, forced: after [`Source::invalidate`] the next call misses, refills and
    /// picks by the task's state like a hit does, and both paths count an Idle task found inside
    /// a transition.
    pub(crate) fn forced_miss<S: Strategy>(new: impl Fn(&[Code]) -> S, source: impl Fn(&S) -> &Source) {
        let s = new(&[code(0)]);
        let stack = [StackEntry { func: FuncId(1), code: code(1), nop: false, transition: true }];
        s.apply(SiteId(0), StackChange { op: StackOp::Push, stack: &stack, original: code(0) });
        let (local, task) = (s.task_local(), TaskState::new());
        let call = || s.call_alone(&local, &task, SiteId(0), 0);
        task.set_state_for_test(PatchState::Unpatched);
        assert_eq!(call(), fingerprint(0));
        assert_eq!(task.stale_cache_refills(), 1, "the first call misses");
        assert_eq!(call(), fingerprint(0));
        assert_eq!(task.stale_cache_refills(), 1, "the second call hits");
        source(&s).invalidate();
        task.set_state_for_test(PatchState::Patched);
        assert_eq!(call(), fingerprint(1), "the refill picks by the new state");
        assert_eq!(task.stale_cache_refills(), 2, "invalidate forces a miss");
        task.set_state_for_test(PatchState::Idle);
        assert_eq!(call(), fingerprint(1));
        assert_eq!((task.stale_cache_refills(), task.idle_in_transition()), (2, 1), "a hit counts Idle in transition");
        source(&s).invalidate();
        assert_eq!(call(), fingerprint(1));
        assert_eq!((task.stale_cache_refills(), task.idle_in_transition()), (3, 2), "so does a miss");
    }
}
