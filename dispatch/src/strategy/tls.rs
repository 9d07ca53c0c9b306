//! `tls`: a per-task cache of what every site selects, validated by a generation that every writer
//! change bumps. The generation is loaded once per critical section ([`ReadSide::enter`]); a call
//! then costs what it must: its entry's stamp compared with that generation, the head's
//! `transition` flag (and, only in transition, the task's state), and the call. No atomic, no
//! shared cache line on a hit. A miss re-reads the site from the source of truth (a seqlock),
//! refills the entry and counts itself.
//!
//! # Synchronization
//!
//! - The cache is the task's own (a `Cell` inside its [`Task`](crate::Task), which is not Sync):
//!   nothing in it is shared. The generation and refill pairs are in [`super::blocks::cache`].
//! - A section compares entries with the generation it loaded at its start, so a writer change
//!   made during the section may go unseen until the next one; why that is sound is in
//!   [`ReadSide`]'s documentation. An entry refilled during a section holds a selection at least
//!   as new as its stamp says.

use std::cell::Cell;

use crate::model::{Code, Selection, SiteId};
use crate::strategy::blocks::cache::Source;
use crate::strategy::{
    Consistency, Info, ReadSide, StackChange, Strategy, WriteSide, always_available, no_machine_fact,
};
use crate::task_list::TaskState;

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

/// `tls`'s [`Guard`](ReadSide::Guard) of a critical section: the task's entries and the generation
/// loaded when the section opened.
///
/// The slice itself, not a reference to the task's `TlsEntries`: a measured loop receives the
/// guard by reference, and the compiler keeps what that reference points to in registers
/// across the calls, but not what lies one pointer further (the entries' address and length were
/// reloaded after every call: two loads and a compare per call, seen in the disassembly).
#[derive(Debug)]
pub struct TlsGuard<'a> {
    entries: &'a [Cell<TlsEntry>],
    generation: u64,
}

impl ReadSide for Tls {
    type TaskLocal = TlsEntries;
    type Guard<'a> = TlsGuard<'a>;

    fn task_local(&self) -> TlsEntries {
        let empty = |&c: &Code| Cell::new(TlsEntry { stamp: 0, selection: Selection::of(&[], c) });
        TlsEntries(self.originals.iter().map(empty).collect())
    }

    #[inline(always)]
    fn enter<'a>(&'a self, entries: &'a TlsEntries) -> TlsGuard<'a> {
        TlsGuard { entries: &entries.0, generation: self.source.generation() }
    }

    #[inline(always)]
    fn call(&self, guard: &TlsGuard<'_>, task: &TaskState, site: SiteId, arg: u64) -> u64 {
        let cell = &guard.entries[site.index()];
        let mut entry = cell.get();
        if entry.stamp != guard.generation {
            entry = self.refill(cell, guard.generation, site);
            task.note_stale_cache_refill();
        }
        entry.selection.code(task.version(entry.selection.transition))(arg)
    }
}

impl Tls {
    /// The miss path, out of line so that the hit path stays a few instructions.
    #[inline(never)]
    fn refill(&self, cell: &Cell<TlsEntry>, generation: u64, site: SiteId) -> TlsEntry {
        let entry = TlsEntry { stamp: generation, selection: self.source.read(site) };
        cell.set(entry);
        entry
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
        description: "the same cache per task, its generation loaded once per critical section: the cheapest hit (one stamp compare), but every writer change costs every task one miss per site",
        consistency: Consistency::PerTask,
        probe: always_available,
        machine_fact: no_machine_fact,
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
