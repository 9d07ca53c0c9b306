//! The measured loops of the harness, the criterion benches and the gungraun gate, written once:
//! critical sections as code.
//!
//! A kernel that patched eight functions has eight call sites, each calling one function. How the
//! measured loop places its call instructions decides what it measures:
//!
//! - [`per_site`]: each site is called from its own call instruction, with the site a constant at
//!   that instruction. Every indirect call is predicted; what remains is the redirection itself.
//!   The default regime.
//! - [`shared`]: one call instruction cycles through the sites (what an interpreter's dispatch
//!   loop or a vtable call site sees). The CPU's indirect-branch predictor shows here, and
//!   predictors differ by vendor and generation: with 8 sites one Zen 3 part mispredicted almost
//!   every call, a Zen 5 part almost none.
//! - [`cold`]: [`COLD_SITES`] distinct call instructions, one per site, in a fixed random order
//!   of sites: a code footprint larger than the L1 instruction cache and data accessed at random.
//!
//! Each loop is one critical section of its task ([`Task::enter`]): a strategy takes what it
//! keeps per section once, then makes every call of the section with it.
//!
//! Every loop is `#[inline(never)]`: one named function per regime, strategy and size, which the
//! harness times as a whole (one call of overhead per loop of thousands of calls) and which can
//! be read in a disassembly.

use seq_macro::seq;

use crate::check;
use crate::model::SiteId;
use crate::strategy::Strategy;
use crate::task::Task;
use crate::task_list::TaskState;

/// The most sites a per-site loop serves.
pub const MAX_PER_SITE: usize = 64;

/// Sites of the cold loop; each is called once per critical section, from its own call
/// instruction.
///
/// Measured in a release build on x86-64, one inlined call takes 11 bytes of code for `direct`,
/// 68 for `fnptr` and 150 to 430 for the others, so 2048 calls are 22 KiB for `direct` and 140 KiB
/// to 880 KiB for the rest: more than a 32 KiB L1 instruction cache for every redirection. 4096
/// would put `direct` over it too, at twice the build time (the cold loops, one per strategy,
/// are most of the harness's build: 2.7 minutes with 4096, against 1.1 without a cold loop).
pub const COLD_SITES: usize = 2048;

/// The order the cold loop calls its sites in: a permutation of `0..COLD_SITES`, fixed at
/// compile time (its call instructions are laid out in this order).
pub static COLD_ORDER: [u16; COLD_SITES] = cold_order();

/// Fisher-Yates over splitmix64, at compile time.
const fn cold_order() -> [u16; COLD_SITES] {
    let mut order = [0u16; COLD_SITES];
    let mut i = 0;
    while i < COLD_SITES {
        order[i] = i as u16;
        i += 1;
    }
    let mut i = COLD_SITES - 1;
    while i > 0 {
        let j = (check::fingerprint(i as u64) % (i as u64 + 1)) as usize;
        let t = order[i];
        order[i] = order[j];
        order[j] = t;
        i -= 1;
    }
    order
}

/// A loop generated for a known set of sites ([`per_site`] of one size, or [`cold`]): the
/// task, and how many rounds of its sites to call (`cold` always calls one).
pub type LoopFn<S> = fn(&mut Task<S>, usize) -> u64;

/// Calls sites `0..N`, each from its own call instruction, `rounds` times; returns the sum of
/// what they returned (the critical section's signature, see [`check`]).
#[inline(never)]
pub fn per_site<S: Strategy, const N: usize>(task: &mut Task<S>, rounds: usize) -> u64 {
    let section = task.enter();
    let (strategy, guard, state) = section.read_parts();
    per_site_with::<S, N>(strategy, guard, state, rounds)
}

/// [`per_site`]'s body. Its parts are arguments of a function that is not inlined, so that
/// the compiler may keep what they point to in registers across the opaque calls, as a kernel
/// call site keeps its constant operands; reached through `&Task`, a strategy's table would be
/// reloaded after every call (three dependent loads per call that no strategy needs).
#[inline(never)]
fn per_site_with<S: Strategy, const N: usize>(
    strategy: &S,
    guard: &S::Guard<'_>,
    state: &TaskState,
    rounds: usize,
) -> u64 {
    const { assert!(N >= 1 && N <= MAX_PER_SITE, "a per-site loop has 1 to MAX_PER_SITE sites") };
    let mut sum = 0u64;
    for _ in 0..rounds {
        // `I < N` is decided at compile time: exactly N calls, each its own instruction.
        seq!(I in 0..64 {
            if I < N {
                sum = sum.wrapping_add(strategy.call_at::<I>(guard, state, 0));
            }
        });
    }
    sum
}

/// Generates [`PER_SITE_SIZES`] and [`per_site_fn`] from one list, so the two cannot disagree.
macro_rules! per_site_sizes {
    ($($n:literal)*) => {
        /// The sizes a per-site loop is generated for: every size up to the default 8, then
        /// powers of two up to [`MAX_PER_SITE`].
        ///
        /// Each size is its own function for every strategy, its N call instructions compiled ahead,
        /// and the release build pays for each one (fat LTO optimizes them twice). Every size from 1
        /// to 64 was 2080 inlined read paths per strategy and about 30 s of the harness's release
        /// build on 2 vCPUs; these eleven are 148. A size between them would be a new function, not
        /// a composition of these: a loop's cost per call must not depend on how it was put
        /// together.
        pub const PER_SITE_SIZES: &[usize] = &[$($n),*];

        /// The per-site loop of `sites` sites, `None` for a size not in [`PER_SITE_SIZES`].
        pub fn per_site_fn<S: Strategy>(sites: usize) -> Option<LoopFn<S>> {
            match sites {
                $($n => Some(per_site::<S, $n>),)*
                _ => None,
            }
        }
    };
}

per_site_sizes!(1 2 3 4 5 6 7 8 16 32 64);

/// Calls `order`'s sites one after the other from one call instruction.
#[inline(never)]
pub fn shared<S: Strategy>(task: &mut Task<S>, order: &[SiteId]) -> u64 {
    let section = task.enter();
    let (strategy, guard, state) = section.read_parts();
    shared_with(strategy, guard, state, order)
}

/// [`shared`]'s body, with its parts as arguments for the reason [`per_site_with`] gives: the
/// regimes differ only in where the call instructions are.
#[inline(never)]
fn shared_with<S: Strategy>(strategy: &S, guard: &S::Guard<'_>, state: &TaskState, order: &[SiteId]) -> u64 {
    let mut sum = 0u64;
    for &site in order {
        sum = sum.wrapping_add(strategy.call(guard, state, site, 0));
    }
    sum
}

/// Calls every one of [`COLD_SITES`] sites once, in [`COLD_ORDER`], each from its own call
/// instruction. The patcher must have at least `COLD_SITES` sites.
///
/// The calls are laid out in [`COLD_CHUNKS`] functions of [`COLD_CHUNK`] calls each, called one
/// after the other (16 extra calls per loop): the same instructions in the same order, in
/// functions small enough that the optimizer's cost stays linear in the number of sites (its
/// passes grow faster than linearly with a function's size: one function of 4096 inlined read
/// paths took the release build of the harness past 9 minutes).
#[inline(never)]
pub fn cold<S: Strategy>(task: &mut Task<S>, _rounds: usize) -> u64 {
    let section = task.enter();
    let (strategy, guard, state) = section.read_parts();
    let mut sum = 0u64;
    seq!(C in 0..16 {
        sum = sum.wrapping_add(cold_chunk_~C(strategy, guard, state));
    });
    sum
}

/// Calls per chunk of the cold loop.
pub const COLD_CHUNK: usize = 128;
/// Chunks of the cold loop.
pub const COLD_CHUNKS: usize = COLD_SITES / COLD_CHUNK;

seq!(C in 0..16 {
    /// One chunk of [`cold`]: calls `C * COLD_CHUNK ..` of [`COLD_ORDER`], its parts as
    /// arguments for the reason [`per_site_with`] gives.
    // The indexes are the macro's literals: `0 * COLD_CHUNK + 0` and the like are meant.
    #[allow(clippy::erasing_op, clippy::identity_op)]
    #[inline(never)]
    fn cold_chunk_~C<S: Strategy>(strategy: &S, guard: &S::Guard<'_>, state: &TaskState) -> u64 {
        let mut sum = 0u64;
        seq!(K in 0..128 {
            sum = sum.wrapping_add(
                strategy.call_at::<{ COLD_ORDER[C * COLD_CHUNK + K] as usize }>(guard, state, 0),
            );
        });
        sum
    }
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cold_loop_is_its_chunks() {
        assert_eq!(COLD_CHUNKS * COLD_CHUNK, COLD_SITES);
        assert_eq!(COLD_CHUNKS, 16, "cold() calls 16 chunks");
    }

    #[test]
    fn the_cold_order_is_a_permutation() {
        let mut seen = vec![false; COLD_SITES];
        for &s in COLD_ORDER.iter() {
            assert!(!std::mem::replace(&mut seen[s as usize], true), "site {s} twice");
        }
        assert_ne!(COLD_ORDER[..8], [0, 1, 2, 3, 4, 5, 6, 7], "not shuffled");
    }
}
