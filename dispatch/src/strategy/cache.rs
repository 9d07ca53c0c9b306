//! What the two cache strategies (`percpu`, `tls`) share: the source of truth they refill from
//! (a per-site sequence lock, see [`super::seqlock`]), the generation every writer change bumps,
//! and the per-state targets a cache entry holds.
//!
//! # Synchronization
//!
//! | writer ([`Source::apply`]) | reader | guarantees |
//! |---|---|---|
//! | seqlock write → `generation.fetch_add(Release)` | `generation.load(Acquire)` → seqlock read on a miss | an entry stamped with generation g holds targets at least as new as every change before g; a newer change bumps g, so no reader uses an entry older than the generation it loaded |
//! | task states (init) → seqlock write → generation | `generation.load(Acquire)` → `patch_state` | a reader whose entry shows a transition sees its own state as Patched or Unpatched |

use crate::model::{Code, PatchState, Resolved, SiteId};
use crate::strategy::Change;
use crate::strategy::WriteSide;
use crate::strategy::seqlock::SeqLock;
use crate::sync::{AtomicU64, Ordering};

/// What a task in each state runs, indexed by [`PatchState`] as `usize` (Idle runs the head, like
/// Patched: outside a transition both universes are the same).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Targets(pub(crate) [Code; 3]);

impl Targets {
    fn of(r: &Resolved) -> Self {
        Self([r.patched, r.unpatched, r.patched])
    }

    #[inline(always)]
    pub(crate) fn for_state(&self, state: PatchState) -> Code {
        self.0[state as usize]
    }
}

/// The source of truth of a cache strategy.
#[derive(Debug)]
pub(crate) struct Source {
    sites: SeqLock,
    /// Starts at 1, so that a zeroed stamp is never current.
    generation: AtomicU64,
}

impl Source {
    pub(crate) fn new(originals: &[Code]) -> Self {
        use crate::strategy::Strategy;
        Self { sites: SeqLock::new(originals), generation: AtomicU64::new(1) }
    }

    /// The current generation. Acquire: pairs with the Release bump in `apply`, so that a refill
    /// after this load reads the changes the generation stands for.
    #[inline(always)]
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The slow path of a miss: what `site` resolves to now.
    #[inline(never)]
    pub(crate) fn resolve(&self, site: SiteId) -> Targets {
        Targets::of(&self.sites.read::<true>(site))
    }

    /// Publishes a change, then invalidates every cache entry by bumping the generation.
    pub(crate) fn apply(&self, site: SiteId, change: Change<'_>) {
        self.sites.apply(site, change);
        // Release: pairs with the Acquire in `generation`; the seqlock write above is visible
        // to a reader that loads the new generation.
        self.generation.fetch_add(1, Ordering::Release);
    }
}
