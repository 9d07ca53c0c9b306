//! The kernel handler's walk of a func stack, written once for every strategy that keeps one
//! (`klp` with its own grace periods, `epoch` under crossbeam-epoch). Each strategy supplies its
//! node type and how to follow a `next` link under its own reclamation scheme.

use crate::model::{Code, Version};
use crate::tasks::TaskState;

/// What a func-stack node offers [`handler`].
pub(crate) trait StackNode {
    /// `func->transition`. Acquire: pairs with the Release `transition` store of the writer, which
    /// follows the engine's task-state init ([`Barrier::StatesBeforeFlag`]); without it a reader
    /// could see transition=1 with its stale Idle state.
    ///
    /// [`Barrier::StatesBeforeFlag`]: crate::docs::Barrier::StatesBeforeFlag
    fn in_transition(&self) -> bool;
    fn is_nop(&self) -> bool;
    fn code(&self) -> Code;
}

/// Steps [`CheckTransition`] to [`Redirect`] of the handler: from the head (`None`: an empty
/// stack), pick the func for the task's state and return its code, or `None` when the original
/// runs (no func, no older func for an Unpatched task, or a nop).
///
/// [`CheckTransition`]: crate::docs::HandlerStep::CheckTransition
/// [`Redirect`]: crate::docs::HandlerStep::Redirect
#[inline(always)]
pub(crate) fn handler<'a, N: StackNode>(
    head: Option<&'a N>,
    task: &TaskState,
    next: impl FnOnce(&'a N) -> Option<&'a N>,
) -> Option<Code> {
    let head = head?;
    let func = match task.version(head.in_transition()) {
        Version::Head => head,
        Version::Previous => next(head)?,
    };
    // HandlerStep::Nop: a nop runs the original. Rare (only a replace patch's placeholders),
    // so out of the straight path, like the transition branch.
    if func.is_nop() {
        std::hint::cold_path();
        return None;
    }
    Some(func.code())
}
