//! `seqlock`: per site, a sequence lock over the head's `transition` flag and what each version
//! runs ([`SeqLockSites`]). Readers read the three words and retry if a writer moved the counter;
//! the task's state is read after them, only when the site is in transition.
//!
//! # Synchronization
//!
//! All of it is the sites block's: see [`seqlock_sites`](super::blocks::seqlock_sites).

use crate::model::{Code, Selection, SiteId};
use crate::strategy::blocks::seqlock_sites::SeqLockSites;
use crate::strategy::{
    Consistency, Info, ReadSide, StackChange, Strategy, WriteSide, always_available, no_machine_fact,
};
use crate::task_list::TaskState;

#[derive(Debug)]
pub struct SeqLock {
    sites: SeqLockSites,
}

impl ReadSide for SeqLock {
    crate::strategy::stateless_read_side!();

    #[inline(always)]
    fn call(&self, _guard: &(), task: &TaskState, site: SiteId, arg: u64) -> u64 {
        let selection = self.sites.read::<true>(site);
        selection.code(task.version(selection.transition))(arg)
    }
}

impl WriteSide for SeqLock {
    fn apply(&self, site: SiteId, change: StackChange<'_>) {
        self.sites.write(site, Selection::of(change.stack, change.original));
    }
}

impl Strategy for SeqLock {
    const INFO: Info = Info {
        name: "seqlock",
        description: "a per-site sequence lock over atomic words: no reclamation and no reader writes, but extra loads and retries while a writer runs",
        consistency: Consistency::PerTask,
        probe: always_available,
        machine_fact: no_machine_fact,
    };

    fn new(originals: &[Code]) -> Self {
        Self { sites: SeqLockSites::new(originals) }
    }
}
