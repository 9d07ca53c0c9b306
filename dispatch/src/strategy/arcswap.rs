//! `arcswap`: each site holds an immutable snapshot of what its stack resolves to (for Patched and
//! for Unpatched tasks, plus the head's `transition` flag) in an `arc_swap::ArcSwap`. Writers build
//! a new snapshot and swap it in; readers borrow the current one through arc-swap's debt slots.
//!
//! RCU-like semantics without any grace-period machinery (arc-swap reclaims by refcount and
//! debts), at the price of arc-swap's `load` (debt-slot bookkeeping: its author's benchmarks
//! report tens of nanoseconds per read) and a store whose cost grows with reader threads.
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

use arc_swap::ArcSwap;

use crate::check;
use crate::model::{Code, Selection, SiteId};
use crate::strategy::{Consistency, Info, ReadSide, StackChange, Strategy, WriteSide};
use crate::tasks::TaskState;

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

#[derive(Debug)]
pub struct ArcSwapStacks {
    sites: Box<[ArcSwap<Snapshot>]>,
}

impl ReadSide for ArcSwapStacks {
    type TaskLocal = ();

    fn task_local(&self) {}

    #[inline(always)]
    fn call(&self, _local: &(), task: &TaskState, site: SiteId, arg: u64) -> u64 {
        // The guard is dropped before the call: holding a debt slot across it would cost more.
        let code = {
            let snapshot = self.sites[site.index()].load();
            let Snapshot(selection) = &**snapshot;
            selection.code(task.version(selection.transition))
        };
        code(arg)
    }
}

impl WriteSide for ArcSwapStacks {
    fn apply(&self, site: SiteId, change: StackChange<'_>) {
        let snapshot = Snapshot(Selection::of(change.stack, change.original));
        self.sites[site.index()].store(snapshot.into());
    }
}

impl Strategy for ArcSwapStacks {
    const INFO: Info = Info {
        name: "arcswap",
        description: "per-site immutable snapshot in `arc_swap::ArcSwap`: RCU-like without grace periods, at a debt-slot load per call",
        consistency: Consistency::PerTask,
    };

    fn new(originals: &[Code]) -> Self {
        Self { sites: originals.iter().map(|&c| ArcSwap::from_pointee(Snapshot(Selection::of(&[], c)))).collect() }
    }
}
