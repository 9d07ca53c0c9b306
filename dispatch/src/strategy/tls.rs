//! `tls`: a per-task cache of what every site selects, validated by a generation that every writer
//! change bumps. A hit costs the generation load, the entry's stamp compare, the head's
//! `transition` flag (and, only in transition, the task's state) and the call: no dependent chain
//! through shared nodes. A miss re-reads the site from the source of truth (a seqlock) and counts
//! itself.
//!
//! # Synchronization
//!
//! - The cache is the task's own (a `Cell` inside its [`Task`](crate::Task), which is not Sync):
//!   nothing in it is shared. The generation and refill pairs are in [`super::blocks::cache`].

use std::cell::Cell;

use crate::model::{Code, Selection, SiteId};
use crate::strategy::blocks::cache::Source;
use crate::strategy::{Consistency, Info, ReadSide, StackChange, Strategy, WriteSide};
use crate::tasks::TaskState;

/// One site's cached selection.
#[derive(Clone, Copy, Debug)]
struct TlsEntry {
    /// The generation the selection was read at; 0 = empty.
    stamp: u64,
    selection: Selection,
}

/// One task's cache: one entry per site.
#[derive(Debug)]
pub struct TlsEntries(Box<[Cell<TlsEntry>]>);

#[derive(Debug)]
pub struct Tls {
    source: Source,
    originals: Box<[Code]>,
}

impl ReadSide for Tls {
    type TaskLocal = TlsEntries;

    fn task_local(&self) -> TlsEntries {
        let empty = |&c: &Code| Cell::new(TlsEntry { stamp: 0, selection: Selection::of(&[], c) });
        TlsEntries(self.originals.iter().map(empty).collect())
    }

    #[inline(always)]
    fn call(&self, local: &TlsEntries, task: &TaskState, site: SiteId, arg: u64) -> u64 {
        let generation = self.source.generation();
        let cell = &local.0[site.index()];
        let mut entry = cell.get();
        if entry.stamp != generation {
            entry = TlsEntry { stamp: generation, selection: self.source.read(site) };
            cell.set(entry);
            task.note_cache_miss();
        }
        entry.selection.code(task.version(entry.selection.transition))(arg)
    }
}

impl WriteSide for Tls {
    fn apply(&self, site: SiteId, change: StackChange<'_>) {
        self.source.apply(site, change);
    }
}

impl Strategy for Tls {
    const INFO: Info = Info {
        name: "tls",
        description: "the same cache per task: the cheapest hit, but every writer change costs every task one miss per site",
        consistency: Consistency::PerTask,
    };

    fn new(originals: &[Code]) -> Self {
        Self { source: Source::new(originals), originals: originals.into() }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_forced_miss_refills_and_picks_by_state() {
        crate::strategy::blocks::cache::tests::forced_miss(Tls::new, |s| &s.source);
    }
}
