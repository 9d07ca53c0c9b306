//! `tls`: a per-task cache of what every site resolves to for each task state, validated by a
//! generation that every writer change bumps. A hit costs the generation load, the entry's stamp,
//! the task's state and the target: no dependent chain through shared nodes, and the same cost in
//! transition as in steady state. A miss re-reads the site from the source of truth (a seqlock).
//!
//! Trade-off: the cheapest steady state when tasks are long-lived, but every writer change makes
//! every task miss once per site it calls, and the cache costs sites × 32 bytes per task.
//!
//! # Synchronization
//!
//! - The cache is the task's own (a `Cell` inside its [`Task`](crate::Task), which is not Sync):
//!   nothing in it is shared. The generation and refill pairs are in [`super::cache`].

use std::cell::Cell;

use crate::model::{Code, SiteId};
use crate::strategy::cache::{Source, Targets};
use crate::strategy::{Change, Consistency, Info, ReadSide, Strategy, WriteSide};
use crate::task::TaskState;

#[derive(Clone, Copy, Debug)]
struct Entry {
    /// The generation the targets were read at; 0 = empty.
    stamp: u64,
    targets: Targets,
}

/// One task's cache: one entry per site.
#[derive(Debug)]
pub struct TlsEntries(Box<[Cell<Entry>]>);

#[derive(Debug)]
pub struct Tls {
    source: Source,
    originals: Box<[Code]>,
}

impl ReadSide for Tls {
    type TaskLocal = TlsEntries;

    fn task_local(&self) -> TlsEntries {
        let empty = |&c: &Code| Cell::new(Entry { stamp: 0, targets: Targets([c; 3]) });
        TlsEntries(self.originals.iter().map(empty).collect())
    }

    #[inline(always)]
    fn call(&self, local: &TlsEntries, task: &TaskState, site: SiteId, arg: u64) -> u64 {
        let generation = self.source.generation();
        let cell = &local.0[site.index()];
        let mut entry = cell.get();
        if entry.stamp != generation {
            entry = Entry { stamp: generation, targets: self.source.resolve(site) };
            cell.set(entry);
            task.note_cache_miss();
        }
        entry.targets.for_state(task.patch_state())(arg)
    }
}

impl WriteSide for Tls {
    fn apply(&self, site: SiteId, change: Change<'_>) {
        self.source.apply(site, change);
    }
}

impl Strategy for Tls {
    const INFO: Info = Info {
        name: "tls",
        description: "per-task cache of both universes' targets, validated by a writer generation",
        consistency: Consistency::PerTask,
    };

    fn new(originals: &[Code]) -> Self {
        Self { source: Source::new(originals), originals: originals.into() }
    }
}
