//! `arcswap`: each site holds an immutable snapshot of what its stack resolves to (for Patched and
//! for Unpatched tasks, plus the head's `transition` flag) in an `arc_swap::ArcSwap`. Writers build
//! a new snapshot and swap it in; each task reads through its own `arc_swap::Cache` per site, the
//! crate's fast path for a reader that reads often and sees few changes: the cache keeps an `Arc`
//! of the last snapshot it loaded and revalidates at every call by comparing the site's current
//! pointer with it (one load), so a hit costs no atomic read-modify-write and touches no shared
//! counter; only after a change does the next call pay `load_full` (debt slots and a reference
//! count increment).
//!
//! RCU-like semantics without any grace-period machinery: arc-swap reclaims by reference count.
//! The price moves to memory and to registration: a task's caches load every site's snapshot when
//! the task registers (one shared reference-count increment per site), and each holds the last
//! snapshot it loaded until the task calls that site again or exits, so a replaced snapshot lives
//! as long as the slowest task's next call of its site. The cache is there because a plain
//! `ArcSwap::load` at every call takes and releases a debt slot: 15.4× `fnptr` per site against
//! 1.2× with the cache (Intel Xeon VM, median of three interleaved harness runs, one reader,
//! 8 sites, steady).
//!
//! # Synchronization
//!
//! | writer | reader | guarantees |
//! |---|---|---|
//! | task states (init) → `ArcSwap::store` (SeqCst swap, a Release) | `ArcSwap::load` (Acquire or stronger) → `patch_state` | [`Barrier::StatesBeforeFlag`]: a reader that sees a snapshot in transition sees its own state as Patched or Unpatched |
//! | snapshot fields written → `store` | `load` → fields | a published snapshot is seen whole |
//! | old snapshot dropped when its last guard goes | the reader copies the code out while holding the guard | no reader touches a freed snapshot; [`Snapshot`]'s `Drop` poisons it first, so one that did would run [`check::poisoned`] |
//!
//! [`Barrier::StatesBeforeFlag`]: crate::docs::Barrier::StatesBeforeFlag

use std::cell::UnsafeCell;
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::Arc;

use arc_swap::{ArcSwap, Cache};

use crate::check;
use crate::model::{Code, Selection, SiteId};
use crate::strategy::{
    Consistency, Info, ReadSide, StackChange, Strategy, WriteSide, always_available, no_machine_fact,
};
use crate::task_list::TaskState;

#[derive(Debug)]
struct Snapshot(Selection);

impl Drop for Snapshot {
    fn drop(&mut self) {
        let poison = Selection { transition: false, head: check::poisoned, previous: check::poisoned };
        // SAFETY: `&mut self` is valid for writes; volatile so that the poison is not elided as a
        // dead store before the deallocation that follows.
        unsafe { std::ptr::write_volatile(&mut self.0, poison) };
    }
}

/// `arcswap`: each site's [`Selection`] (what its stack resolves to), as a snapshot in an `ArcSwap`.
#[derive(Debug)]
pub struct ArcSwapSelections {
    /// Shared with every task's caches, which point into it (see [`SiteRef`]).
    sites: Arc<[ArcSwap<Snapshot>]>,
}

/// A site's `ArcSwap` as a task's cache reaches it: a pointer into the strategy's shared slice of
/// sites, which the task's [`SiteCaches`] keeps alive.
///
/// `Cache` wants something that dereferences to the `ArcSwap`; a plain reference would tie every
/// task's reader state to a borrow of the strategy, and an `Arc` per site would add a load to each
/// call.
#[derive(Debug)]
struct SiteRef(NonNull<ArcSwap<Snapshot>>);

impl Deref for SiteRef {
    type Target = ArcSwap<Snapshot>;

    #[inline(always)]
    fn deref(&self) -> &ArcSwap<Snapshot> {
        // SAFETY: a `SiteRef` lives only in a `SiteCaches`, which holds an `Arc` of the slice it
        // points into (and drops its caches first); the slice never moves.
        unsafe { self.0.as_ref() }
    }
}

/// A task's caches, one per site. `UnsafeCell`: `Cache::load` takes `&mut`, and a task reads its
/// caches only from its own thread, one call at a time.
#[derive(Debug)]
pub struct SiteCaches {
    /// First, so that the caches are dropped before the sites they point into.
    caches: Box<[UnsafeCell<SiteCache>]>,
    /// Keeps the sites alive however long the task's reader state outlives the strategy.
    sites: Arc<[ArcSwap<Snapshot>]>,
}

/// One site's cache.
type SiteCache = Cache<SiteRef, Arc<Snapshot>>;

// SAFETY: the caches move with their task to the thread that will use them, and are used by one
// thread at a time (a task is not Sync); `SiteRef` points at an `ArcSwap`, which is Sync, and the
// cached `Arc<Snapshot>` is Send.
unsafe impl Send for SiteCaches {}

/// `arcswap`'s [`Guard`](ReadSide::Guard) of a critical section: the task's caches, as the slice
/// itself for the reason [`TlsGuard`](super::tls::TlsGuard) gives.
#[derive(Debug)]
pub struct CachesGuard<'a>(&'a [UnsafeCell<SiteCache>]);

impl ReadSide for ArcSwapSelections {
    type TaskLocal = SiteCaches;
    type Guard<'a> = CachesGuard<'a>;

    fn task_local(&self) -> SiteCaches {
        let cache = |site: &ArcSwap<Snapshot>| UnsafeCell::new(Cache::new(SiteRef(NonNull::from(site))));
        SiteCaches { caches: self.sites.iter().map(cache).collect(), sites: Arc::clone(&self.sites) }
    }

    #[inline(always)]
    fn enter<'a>(&'a self, local: &'a SiteCaches) -> CachesGuard<'a> {
        // Another strategy's caches would read its sites, not these.
        assert!(Arc::ptr_eq(&local.sites, &self.sites), "arcswap: reader state of another strategy");
        CachesGuard(&local.caches)
    }

    #[inline(always)]
    fn call(&self, caches: &CachesGuard<'_>, task: &TaskState, site: SiteId, arg: u64) -> u64 {
        // The code is copied out before the call: the `&mut` to the cache ends here.
        let code = {
            // SAFETY: the caches are this task's, used from its thread only (see `SiteCaches`),
            // and no other reference to this cache is alive: `call` does not re-enter itself
            // before this block ends (dropping a replaced snapshot only poisons it).
            let cache = unsafe { &mut *caches.0[site.index()].get() };
            let Snapshot(selection) = &**cache.load();
            selection.code(task.version(selection.transition))
        };
        code(arg)
    }
}

impl WriteSide for ArcSwapSelections {
    fn apply(&self, site: SiteId, change: StackChange<'_>) {
        let snapshot = Snapshot(Selection::of(change.stack, change.original));
        self.sites[site.index()].store(snapshot.into());
    }
}

impl Strategy for ArcSwapSelections {
    const INFO: Info = Info {
        name: "arcswap",
        description: "per-site immutable snapshot in `arc_swap::ArcSwap`, read through a per-task `arc_swap::Cache`: RCU-like without grace periods, a pointer compare per call, each task holding its last snapshots",
        consistency: Consistency::PerTask,
        probe: always_available,
        machine_fact: no_machine_fact,
    };

    fn new(originals: &[Code]) -> Self {
        Self { sites: originals.iter().map(|&c| ArcSwap::from_pointee(Snapshot(Selection::of(&[], c)))).collect() }
    }
}
