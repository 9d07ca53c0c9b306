//! `fnptr`: one atomic code pointer per site, swapped at once. The floor of any run-time
//! redirection (one load and an indirect call), and deliberately without per-task consistency:
//! every task sees every change at once, so a task calling several sites of a patch while it is
//! applied can mix versions. The consistency tests prove that they catch exactly that.
//!
//! # Synchronization
//!
//! - The published word is a pointer to static code: nothing is published *through* it, so the
//!   reader's load and the writer's store are both Relaxed. (A stale value is the point of this
//!   strategy, not a bug; atomicity alone rules out a torn pointer.)

use crate::model::{Code, PatchState, SiteId, select};
use crate::strategy::blocks::atomic_code::AtomicCode;
use crate::strategy::{
    Consistency, Info, ReadSide, StackChange, Strategy, WriteSide, always_available, no_machine_fact,
};
use crate::sync::Ordering;
use crate::task_list::TaskState;

#[derive(Debug)]
pub struct Fnptr {
    sites: Box<[AtomicCode]>,
}

impl ReadSide for Fnptr {
    crate::strategy::stateless_read_side!();

    #[inline(always)]
    fn call(&self, _guard: &(), _task: &TaskState, site: SiteId, arg: u64) -> u64 {
        // Relaxed: see the module's Synchronization section.
        (self.sites[site.index()].load(Ordering::Relaxed))(arg)
    }
}

impl WriteSide for Fnptr {
    fn apply(&self, site: SiteId, change: StackChange<'_>) {
        // What a task outside any transition runs: the head, whatever its transition flag says.
        let code = select(change.stack, change.original, PatchState::Idle);
        // Relaxed: see the module's Synchronization section.
        self.sites[site.index()].store(code, Ordering::Relaxed);
    }
}

impl Strategy for Fnptr {
    const INFO: Info = Info {
        name: "fnptr",
        description: "one atomic code pointer per site, swapped at once: the floor of runtime redirection; tasks can mix versions",
        consistency: Consistency::Immediate,
        probe: always_available,
        machine_fact: no_machine_fact,
    };

    fn new(originals: &[Code]) -> Self {
        Self { sites: originals.iter().map(|&c| AtomicCode::new(c)).collect() }
    }
}
