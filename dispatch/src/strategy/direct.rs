//! `direct`: every site calls its own original function directly, with no lookup. The floor, not
//! a redirection: it ignores every patch, and shows what a call costs when nothing is looked up
//! at run time. It relies on the convention every patcher of this workspace follows: site `i`'s
//! original is [`check::code(i)`](check::code) (checked when the strategy is made).
//!
//! At a site known at compile time ([`ReadSide::call_at`]) the target is a constant read from a
//! static table, which the compiler turns into a direct `call` to that function; at a site known
//! only at run time ([`ReadSide::call`]) it is the same function through the table.
//!
//! # Synchronization
//!
//! None: nothing is shared. The writer side accepts the engine's changes and drops them, because a
//! direct call cannot be patched (its registry entry says so: [`Consistency::NotPatchable`]), and
//! consistency tests skip it.

use crate::check;
use crate::model::{Code, SiteId};
use crate::strategy::{
    Consistency, Info, ReadSide, StackChange, Strategy, WriteSide, always_available, no_machine_fact,
};
use crate::task_list::TaskState;

#[derive(Debug, Default)]
pub struct Direct;

impl ReadSide for Direct {
    crate::strategy::stateless_read_side!();

    #[inline(always)]
    fn call(&self, _guard: &(), _task: &TaskState, site: SiteId, arg: u64) -> u64 {
        check::code(site.index())(arg)
    }

    #[inline(always)]
    fn call_at<const SITE: usize>(&self, _guard: &(), _task: &TaskState, arg: u64) -> u64 {
        // A constant index into a static table of functions: a direct call after optimization.
        (check::CODES[SITE % check::CODE_COUNT])(arg)
    }
}

impl WriteSide for Direct {
    fn apply(&self, _site: SiteId, _change: StackChange<'_>) {}
}

impl Strategy for Direct {
    const INFO: Info = Info {
        name: "direct",
        description: "each site calls its own original function directly: the floor, not patchable",
        consistency: Consistency::NotPatchable,
        probe: always_available,
        machine_fact: no_machine_fact,
    };

    /// Panics unless site `i`'s original is `check::code(i)`: the only originals it can call
    /// without a lookup.
    fn new(originals: &[Code]) -> Self {
        for (i, &original) in originals.iter().enumerate() {
            assert!(
                std::ptr::fn_addr_eq(original, check::code(i)),
                "direct: site {i}'s original is not check::code({i}); direct calls that function at that site"
            );
        }
        Direct
    }
}
