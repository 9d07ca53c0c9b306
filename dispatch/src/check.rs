//! What the tests, the harness and the benches use to verify while they measure: functions that
//! say who they are, a poisoned function that counts who reached reclaimed memory, and a log of
//! the universes a task may legally observe.
//!
//! A *universe* is what every site runs for a task (all previous versions, or all new ones). Every
//! function in [`CODES`] returns its own 64-bit fingerprint, so the sum of what a task's calls
//! returned between two safe points (the critical section's *signature*) identifies the universe
//! it saw: a reader compares its sum with [`UniverseLog::contains`], one add per call and one
//! lookup per critical section.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64 as StdAtomicU64, Ordering as StdOrdering};

use seq_macro::seq;

use crate::model::{Code, PatchSpec};
#[cfg(all(test, not(loom)))]
use crate::model::{FuncId, StackEntry};

/// How many distinct fingerprinted functions [`CODES`] holds.
///
/// As many as the cold loop has sites and more, so that a workload of up to 2048 sites with a
/// few patch versions gives every site of every version its own function: otherwise two sites
/// share one, and universes whose sums cannot be told apart creep in.
pub const CODE_COUNT: usize = 4096;

/// splitmix64: distinct inputs give well-spread, distinct outputs.
pub const fn fingerprint(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What [`poisoned`] returns.
pub const POISON: u64 = 0xDEAD_DEAD_DEAD_DEAD;

/// The body of every fingerprinted function: the `black_box` keeps the compiler from proving the
/// function pure and deleting calls whose target it can see (with LTO it otherwise folds a
/// constant result into the caller and drops the call).
#[inline(always)]
pub fn opaque(fingerprint: u64) -> u64 {
    std::hint::black_box(fingerprint)
}

/// Never inlined: a caller that knows which one it calls (`direct`'s per-site calls) must still
/// pay a call and a return, like every other strategy.
#[inline(never)]
extern "C" fn tagged<const N: usize>(_arg: u64) -> u64 {
    opaque(const { fingerprint(N as u64) })
}

/// `CODE_COUNT` distinct functions; `CODES[n]` returns `fingerprint(n)`.
pub static CODES: [Code; CODE_COUNT] = seq!(N in 0..4096 { [#(tagged::<N>,)*] });

/// The `n`th fingerprinted function (modulo [`CODE_COUNT`]).
pub fn code(n: usize) -> Code {
    CODES[n % CODE_COUNT]
}

/// Every stack up to two funcs deep with every combination of `nop` and `transition` flags
/// (21 stacks, a nop outside a transition and a steady head over one in transition included,
/// which the engine never makes but the rule still answers), oldest first as
/// [`StackChange::stack`](crate::strategy::StackChange): func `i` is `FuncId(i)` with `code(1 +
/// i)`. What the read paths' tests check against [`select`](crate::model::select).
#[cfg(all(test, not(loom)))]
pub(crate) fn small_stacks() -> Vec<Vec<StackEntry>> {
    (0..=2usize)
        .flat_map(|depth| {
            (0..1u32 << (2 * depth)).map(move |bits| {
                (0..depth)
                    .map(|i| StackEntry {
                        func: FuncId(i as u32),
                        code: code(1 + i),
                        nop: bits & (1 << (2 * i)) != 0,
                        transition: bits & (1 << (2 * i + 1)) != 0,
                    })
                    .collect()
            })
        })
        .collect()
}

thread_local!(static POISON_HITS: Cell<u64> = const { Cell::new(0) });
static POISON_TOTAL: StdAtomicU64 = StdAtomicU64::new(0);

/// What reclaimed funcs and snapshots are poisoned with: reaching it is a use after reclaim.
#[cold]
pub extern "C" fn poisoned(_arg: u64) -> u64 {
    POISON_HITS.with(|h| h.set(h.get() + 1));
    // Relaxed: a statistic.
    POISON_TOTAL.fetch_add(1, StdOrdering::Relaxed);
    POISON
}

/// Use-after-reclaim detections on the calling thread.
pub fn poison_hits() -> u64 {
    POISON_HITS.with(Cell::get)
}

/// Use-after-reclaim detections in the whole process.
pub fn poison_hits_total() -> u64 {
    POISON_TOTAL.load(StdOrdering::Relaxed)
}

/// The sum a task gets by calling each of `codes` once with `arg`: a universe's signature.
pub fn signature(codes: &[Code], arg: u64) -> u64 {
    codes.iter().fold(0u64, |acc, c| acc.wrapping_add(c(arg)))
}

/// What every site runs when `enabled` (oldest first) are the enabled patches and no transition
/// is in progress: the newest enabled patch with a func for a site wins, else the original. An
/// oracle written independently of the engine (a nop of a replace patch means "no func here").
pub fn resolve(originals: &[Code], enabled: &[&PatchSpec]) -> Vec<Code> {
    let mut codes = originals.to_vec();
    for patch in enabled {
        for f in &patch.funcs {
            codes[f.site.index()] = f.code;
        }
    }
    codes
}

/// The signatures of the last few universes a writer announced, for readers to check against.
///
/// A writer announces the universe a transition leads to *before* starting it. Per-task
/// consistency means that between two safe points a task sees one universe, and at most two
/// transitions can complete while it is between them (it must pass a safe point before a
/// transition that found it unmigrated can complete), so a ring of [`UniverseLog::RING`] suffices.
#[derive(Debug)]
pub struct UniverseLog {
    ring: [StdAtomicU64; Self::RING],
    next: StdAtomicU64,
}

impl UniverseLog {
    pub const RING: usize = 16;

    /// A log that holds `initial`, the universe before the first transition.
    pub fn new(initial: u64) -> Self {
        let u = Self { ring: std::array::from_fn(|_| StdAtomicU64::new(initial)), next: StdAtomicU64::new(0) };
        u.announce(initial);
        u
    }

    /// Announces a universe. Call it before the transition that leads there starts.
    pub fn announce(&self, signature: u64) {
        // Relaxed: only the single writer advances `next`.
        let i = self.next.fetch_add(1, StdOrdering::Relaxed) as usize % Self::RING;
        // Release: pairs with the Acquire in `contains`; the strategy's own publication, which
        // follows, carries it to any reader that sees the new universe.
        self.ring[i].store(signature, StdOrdering::Release);
    }

    pub fn contains(&self, signature: u64) -> bool {
        // Acquire: pairs with the Release in `announce`.
        self.ring.iter().any(|s| s.load(StdOrdering::Acquire) == signature)
    }
}
