//! `rwlock`: what each site resolves to, behind a reader-writer lock. The naive lock baseline
//! (every ratio is to `fnptr`, the floor; `rwlock` shows what the simplest correct design costs):
//! each call takes and releases a shared lock, an atomic RMW on a word
//! that every reader thread writes, so it stops scaling at two readers (as the kernel's refscale
//! and perfbook's measurements of rwlock readers show).
//!
//! # Synchronization
//!
//! - The lock's own acquire/release pairs carry [`Barrier::StatesBeforeFlag`]: task states (init)
//!   are written before the writer takes the write lock, so a reader that reads a selection in
//!   transition under the read lock sees its own state as Patched or Unpatched. Nothing is ever retired, so nothing can be read after
//!   reclamation.
//!
//! [`Barrier::StatesBeforeFlag`]: crate::docs::Barrier::StatesBeforeFlag

use crate::model::{Code, Selection, SiteId};
use crate::strategy::{
    Consistency, Info, ReadSide, StackChange, Strategy, WriteSide, always_available, no_machine_fact,
};
use crate::sync::RwLock;
use crate::task_list::TaskState;

/// `rwlock`: each site's [`Selection`] (what its stack resolves to) behind a reader-writer lock.
#[derive(Debug)]
pub struct RwLockSelections {
    sites: Box<[RwLock<Selection>]>,
}

impl ReadSide for RwLockSelections {
    crate::strategy::stateless_read_side!();

    #[inline(always)]
    fn call(&self, _guard: &(), task: &TaskState, site: SiteId, arg: u64) -> u64 {
        // A poisoned lock still holds a whole `Selection` (writers store it in one assignment).
        let selection = *self.sites[site.index()].read().unwrap_or_else(|e| e.into_inner());
        selection.code(task.version(selection.transition))(arg)
    }
}

impl WriteSide for RwLockSelections {
    fn apply(&self, site: SiteId, change: StackChange<'_>) {
        let selection = Selection::of(change.stack, change.original);
        *self.sites[site.index()].write().unwrap_or_else(|e| e.into_inner()) = selection;
    }
}

impl Strategy for RwLockSelections {
    const INFO: Info = Info {
        name: "rwlock",
        description: "each site's selection behind a reader-writer lock: the naive baseline, a shared atomic write per call, that stops scaling at two readers",
        consistency: Consistency::PerTask,
        probe: always_available,
        machine_fact: no_machine_fact,
    };

    fn new(originals: &[Code]) -> Self {
        Self { sites: originals.iter().map(|&c| RwLock::new(Selection::of(&[], c))).collect() }
    }
}
