//! A sequence lock per site over three atomic words: the head's `transition` flag and the codes of
//! both versions (a [`Selection`]). Writers bump the counter to odd, store, and bump it to even;
//! readers read the words and retry if the counter moved. Used by the `seqlock` strategy as its
//! whole read path and by the caches as their source of truth.
//!
//! Sound under the Rust memory model: the protected words are atomics read Relaxed and ordered by
//! fences (Boehm, "Can seqlocks get along with programming language memory models?", 2012;
//! crossbeam-utils' `seq_lock.rs`), not racy plain reads. Writers never abandon an update (the
//! engine's lock serializes them and nothing can fail mid-write), so there is no `abort`. The
//! counter is a `usize` bumped twice per update: wrap-around on 64-bit needs 2^63 updates, more
//! than a machine can do in its lifetime; on 32-bit it would take 2^31 updates *during one read*
//! to fool a reader.
//!
//! # Synchronization
//!
//! | writer ([`SeqLockSites::write`]) | reader ([`SeqLockSites::read`]) | guarantees |
//! |---|---|---|
//! | `seq` odd (Relaxed) → `fence(Release)` → words (Relaxed) | words (Relaxed) → `fence(Acquire)` → `seq` (Relaxed) | a reader that read any word of an update sees the odd `seq` (or later) at its re-check, and retries |
//! | words → `seq` even (Release) | `seq` (Acquire) → words | a reader that starts on the new even `seq` reads the new words |
//! | task states (init) before the odd `seq` store | the fence pair above → `patch_state` | [`Barrier::StatesBeforeFlag`]: a reader that sees transition=1 sees its state as Patched or Unpatched |
//!
//! [`Barrier::StatesBeforeFlag`]: crate::docs::Barrier::StatesBeforeFlag

use crate::model::{Code, Selection, SiteId};
use crate::strategy::blocks::atomic_code::AtomicCode;
use crate::sync::{AtomicBool, AtomicUsize, Ordering, fence, spin_hint};

#[derive(Debug)]
struct Site {
    seq: AtomicUsize,
    transition: AtomicBool,
    head: AtomicCode,
    previous: AtomicCode,
}

#[derive(Debug)]
pub(crate) struct SeqLockSites {
    sites: Box<[Site]>,
}

impl SeqLockSites {
    pub(crate) fn new(originals: &[Code]) -> Self {
        let site = |c: Code| Site {
            seq: AtomicUsize::new(0),
            transition: AtomicBool::new(false),
            head: AtomicCode::new(c),
            previous: AtomicCode::new(c),
        };
        Self { sites: originals.iter().map(|&c| site(c)).collect() }
    }

    /// Reads a consistent `Selection` of `site`. `FENCED = false` drops the reader's Acquire fence:
    /// only the loom model uses it, to show that the model catches the torn read that follows.
    #[inline(always)]
    pub(crate) fn read<const FENCED: bool>(&self, site: SiteId) -> Selection {
        let s = &self.sites[site.index()];
        loop {
            // Acquire: pairs with the Release store of the even `seq` that ends `write`.
            let before = s.seq.load(Ordering::Acquire);
            if before & 1 == 0 {
                let r = Selection {
                    transition: s.transition.load(Ordering::Relaxed),
                    head: s.head.load(Ordering::Relaxed),
                    previous: s.previous.load(Ordering::Relaxed),
                };
                // Pairs with `fence(Release)` in `write`: if any load above read a word of a newer
                // update, the re-check below sees that update's odd `seq` (or later) and retries.
                // Without it the loads may be reordered after the re-check: a torn `Selection`.
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
    pub(crate) fn write(&self, site: SiteId, r: Selection) {
        let s = &self.sites[site.index()];
        // Relaxed: only this (single) writer stores `seq`.
        let seq = s.seq.load(Ordering::Relaxed);
        s.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        // Orders the odd `seq` (and the engine's earlier task-state writes) before the word
        // stores below; pairs with the reader's `fence(Acquire)`.
        fence(Ordering::Release);
        s.transition.store(r.transition, Ordering::Relaxed);
        s.head.store(r.head, Ordering::Relaxed);
        s.previous.store(r.previous, Ordering::Relaxed);
        // Release: pairs with the reader's Acquire load of `seq`.
        s.seq.store(seq.wrapping_add(2), Ordering::Release);
    }
}

/// loom model of the sequence lock, run by `scripts/loom`: a reader racing two writes sees one of
/// the three published values whole; without its Acquire fence it can see a torn mix.
#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use crate::check::{code, fingerprint};
    use crate::sync::Arc;

    fn value(n: usize) -> Selection {
        Selection { transition: n % 2 == 1, head: code(10 + n), previous: code(20 + n) }
    }

    fn race<const FENCED: bool>() {
        loom::model(|| {
            let lock = Arc::new(SeqLockSites::new(&[code(10)]));
            lock.write(SiteId(0), value(0));
            let writer = {
                let lock = lock.clone();
                loom::thread::spawn(move || {
                    lock.write(SiteId(0), value(1));
                    lock.write(SiteId(0), value(2));
                })
            };
            let r = lock.read::<FENCED>(SiteId(0));
            let n = (r.head)(0);
            let which = (0..3).find(|&i| fingerprint(10 + i as u64) == n).expect("a published value");
            let v = value(which);
            assert_eq!(((r.previous)(0), r.transition), ((v.previous)(0), v.transition), "torn read");
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
