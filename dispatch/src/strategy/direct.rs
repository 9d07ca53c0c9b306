//! `direct`: a plain call of one fixed function. The floor, not a redirection: it ignores the site
//! and every patch, and shows what a call costs when nothing is looked up at run time.
//!
//! # Synchronization
//!
//! None: nothing is shared. The writer side accepts the engine's changes and drops them, because a
//! direct call cannot be patched (its registry entry says so: [`Consistency::NotPatchable`]), and
//! consistency tests skip it.

use crate::check;
use crate::model::{Code, SiteId};
use crate::strategy::{Consistency, Info, ReadSide, StackChange, Strategy, WriteSide};
use crate::tasks::TaskState;

/// The one function `direct` calls. Not inlined, so the floor still pays a call and a return.
#[inline(never)]
pub fn target(_arg: u64) -> u64 {
    check::opaque(check::DIRECT_FINGERPRINT)
}

#[derive(Debug, Default)]
pub struct Direct;

impl ReadSide for Direct {
    type TaskLocal = ();

    fn task_local(&self) {}

    #[inline(always)]
    fn call(&self, _local: &(), _task: &TaskState, _site: SiteId, arg: u64) -> u64 {
        target(arg)
    }
}

impl WriteSide for Direct {
    fn apply(&self, _site: SiteId, _change: StackChange<'_>) {}
}

impl Strategy for Direct {
    const INFO: Info = Info {
        name: "direct",
        description: "a plain call of one fixed function: the floor, not patchable",
        consistency: Consistency::NotPatchable,
    };

    fn new(_originals: &[Code]) -> Self {
        Direct
    }
}
