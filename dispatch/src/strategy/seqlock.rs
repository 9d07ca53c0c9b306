//! `seqlock`: per site, a sequence counter over three atomic words (the head's `transition` flag
//! and what a Patched and an Unpatched task run). Writers bump the counter to odd, store, and bump
//! it to even; readers read the words and retry if the counter moved.
//!
//! Trade-off: no reclamation at all (nothing is ever retired) and no writes on the read path, but
//! two extra loads per call, and readers spin while a writer is mid-update. Sound under the Rust
//! memory model: the protected words are atomics read Relaxed and ordered by fences (Boehm,
//! HPL-2012-68; crossbeam-utils `seq_lock.rs`), not racy plain reads. Writers never abandon an
//! update (the engine's lock serializes them and nothing can fail mid-write), so there is no
//! `abort`. The counter is a `usize` bumped twice per update: wrap-around on 64-bit needs 2^63
//! updates, more than a machine can do in its lifetime; on 32-bit it would take 2^31 updates
//! *during one read* to fool a reader.
//!
//! # Synchronization
//!
//! | writer ([`SeqLock::write`]) | reader ([`SeqLock::read`]) | guarantees |
//! |---|---|---|
//! | `seq` odd (Relaxed) → `fence(Release)` → words (Relaxed) | words (Relaxed) → `fence(Acquire)` → `seq` (Relaxed) | a reader that read any word of an update sees the odd `seq` (or later) at its re-check, and retries |
//! | words → `seq` even (Release) | `seq` (Acquire) → words | a reader that starts on the new even `seq` reads the new words |
//! | task states (init) before the odd `seq` store | the fence pair above → `patch_state` | a reader that sees transition=1 sees its state as Patched or Unpatched |

use crate::model::{Code, Resolved, SiteId};
use crate::strategy::{AtomicCode, Change, Consistency, Info, ReadSide, Strategy, WriteSide};
use crate::sync::{AtomicBool, AtomicUsize, Ordering, fence, spin_hint};
use crate::task::TaskState;

#[derive(Debug)]
struct Site {
    seq: AtomicUsize,
    transition: AtomicBool,
    patched: AtomicCode,
    unpatched: AtomicCode,
}

#[derive(Debug)]
pub struct SeqLock {
    sites: Box<[Site]>,
}

impl SeqLock {
    /// Reads a consistent `Resolved` of `site`. `FENCED = false` drops the reader's Acquire fence:
    /// only the loom model uses it, to show that the model catches the torn read that follows.
    #[inline(always)]
    pub(crate) fn read<const FENCED: bool>(&self, site: SiteId) -> Resolved {
        let s = &self.sites[site.index()];
        loop {
            // Acquire: pairs with the Release store of the even `seq` that ends `write`.
            let before = s.seq.load(Ordering::Acquire);
            if before & 1 == 0 {
                let r = Resolved {
                    transition: s.transition.load(Ordering::Relaxed),
                    patched: s.patched.load(Ordering::Relaxed),
                    unpatched: s.unpatched.load(Ordering::Relaxed),
                };
                // Pairs with `fence(Release)` in `write`: if any load above read a word of a newer
                // update, the re-check below sees that update's odd `seq` (or later) and retries.
                // Without it the loads may be reordered after the re-check: a torn `Resolved`.
                if FENCED {
                    fence(Ordering::Acquire);
                }
                if s.seq.load(Ordering::Relaxed) == before {
                    return r;
                }
            }
            spin_hint();
        }
    }

    /// Publishes `r` for `site`. Callers are serialized (the engine's lock).
    pub(crate) fn write(&self, site: SiteId, r: Resolved) {
        let s = &self.sites[site.index()];
        // Relaxed: only this (single) writer stores `seq`.
        let seq = s.seq.load(Ordering::Relaxed);
        s.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        // Orders the odd `seq` (and the engine's earlier task-state writes) before the word
        // stores below; pairs with the reader's `fence(Acquire)`.
        fence(Ordering::Release);
        s.transition.store(r.transition, Ordering::Relaxed);
        s.patched.store(r.patched, Ordering::Relaxed);
        s.unpatched.store(r.unpatched, Ordering::Relaxed);
        // Release: pairs with the reader's Acquire load of `seq`.
        s.seq.store(seq.wrapping_add(2), Ordering::Release);
    }
}

impl ReadSide for SeqLock {
    type TaskLocal = ();

    fn task_local(&self) {}

    #[inline(always)]
    fn call(&self, _local: &(), task: &TaskState, site: SiteId, arg: u64) -> u64 {
        self.read::<true>(site).pick_for(task)(arg)
    }
}

impl WriteSide for SeqLock {
    fn apply(&self, site: SiteId, change: Change<'_>) {
        self.write(site, Resolved::of(change.stack, change.original));
    }
}

impl Strategy for SeqLock {
    const INFO: Info = Info {
        name: "seqlock",
        description: "per-site sequence lock over atomic words: no reclamation, readers retry during writes",
        consistency: Consistency::PerTask,
    };

    fn new(originals: &[Code]) -> Self {
        let site = |c: Code| Site {
            seq: AtomicUsize::new(0),
            transition: AtomicBool::new(false),
            patched: AtomicCode::new(c),
            unpatched: AtomicCode::new(c),
        };
        Self { sites: originals.iter().map(|&c| site(c)).collect() }
    }
}

/// loom model of the sequence lock, run by `scripts/loom`: a reader racing two writes sees one of
/// the three published values whole; without its Acquire fence it can see a torn mix.
#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use crate::check::{code, fingerprint};
    use crate::sync::Arc;

    fn value(n: usize) -> Resolved {
        Resolved { transition: n % 2 == 1, patched: code(10 + n), unpatched: code(20 + n) }
    }

    fn race<const FENCED: bool>() {
        loom::model(|| {
            let lock = Arc::new(SeqLock::new(&[code(10)]));
            lock.write(SiteId(0), value(0));
            let writer = {
                let lock = lock.clone();
                loom::thread::spawn(move || {
                    lock.write(SiteId(0), value(1));
                    lock.write(SiteId(0), value(2));
                })
            };
            let r = lock.read::<FENCED>(SiteId(0));
            let n = (r.patched)(0);
            let which = (0..3).find(|&i| fingerprint(10 + i as u64) == n).expect("a published value");
            let v = value(which);
            assert_eq!(((r.unpatched)(0), r.transition), ((v.unpatched)(0), v.transition), "torn read");
            writer.join().unwrap();
        });
    }

    #[test]
    fn reader_sees_whole_values() {
        race::<true>();
    }

    /// Proof that the model can fail: the same reader without its fence is caught.
    #[test]
    #[should_panic(expected = "torn read")]
    fn unfenced_reader_is_caught() {
        race::<false>();
    }
}
