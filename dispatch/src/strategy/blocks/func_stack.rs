//! The kernel handler's walk of a func stack, written once for every strategy that keeps one
//! (`klp` with its own grace periods, `epoch` under crossbeam-epoch; `textpoke` runs `klp`'s
//! during transitions), and the per-site table those strategies keep the stacks in.
//! Each strategy supplies its node type and how to follow a `next` link under its own
//! reclamation scheme.
//!
//! The read path does what the kernel's does and no more (`klp_ftrace_handler`; the C handler of
//! [`kernel_c`](crate::kernel_c) is it, measured beside `klp`): the head's load, its test for an
//! empty stack, one load and one test of its flags, the call through its code. Three choices
//! keep it there, each measured in the gate's counts of `klp`'s per-site loop (25.0
//! instructions per call before them, `fnptr` 10.6):
//!
//! - the sites are a table of [`TABLE_SITES`] entries, so that a site known at compile time
//!   indexes it without a bounds check (the kernel's ftrace trampoline passes its `klp_ops` as a
//!   constant); two slices checked against lengths reloaded from the stack cost a compare and a
//!   branch per call each;
//! - a func's `transition` and `nop` flags are bits of one byte ([`Flags`]): one load and one test
//!   cover the steady path, where the kernel loads and tests two bytes;
//! - [`handler`] returns the code to call, the original included, and reads the original only on
//!   its cold paths: a func's code is never null (a `klp_func` always has its `new_func`), so
//!   there is nothing to test about it.

use crate::check;
use crate::model::{Code, Version};
use crate::task_list::TaskState;

/// The most sites a strategy with a fixed per-site table serves (the func-stack strategies, and
/// `kgraft`, for the same reason: a site known at compile time indexes the table without a
/// bounds check): the sites any caller may have (the harness's `--sites` and the fingerprinted
/// functions stop there too). Under loom, whose every atomic is an object it tracks, a few: its
/// models use one site.
pub(crate) const TABLE_SITES: usize = if cfg!(loom) { 4 } else { check::CODE_COUNT };

/// A site of a func-stack strategy: what the kernel keeps per patched function (`struct
/// klp_ops`): the head of its func stack, and the original, which runs when no func applies.
#[derive(Debug)]
pub(crate) struct Ops<H> {
    pub(crate) head: H,
    pub(crate) original: Code,
}

/// The table of a func-stack strategy's sites: [`TABLE_SITES`] entries, `originals` first, each
/// with an empty stack. Entries past `originals` run [`unbound`]. Panics with more originals than
/// [`TABLE_SITES`].
pub(crate) fn ops_table<H>(name: &str, originals: &[Code], empty: impl Fn() -> H) -> Box<[Ops<H>; TABLE_SITES]> {
    check_sites(name, originals);
    let table: Vec<Ops<H>> = (0..TABLE_SITES).map(|i| ops_entry(originals, i, &empty)).collect();
    table.into_boxed_slice().try_into().unwrap_or_else(|_| unreachable!("TABLE_SITES entries"))
}

/// [`ops_table`]'s entries by value, for a strategy that keeps them inside a type of its own
/// (`klp`'s [`Sites`](crate::strategy::klp::Sites), which `textpoke`'s slow path reaches through
/// a static), boxed once: built by `ops_table` and moved, they cost the heap a second allocation
/// and its free, which changed where later allocations came from (the gate counted `klp`'s
/// writer 2% dearer in malloc and free alone).
pub(crate) fn ops_array<H>(name: &str, originals: &[Code], empty: impl Fn() -> H) -> [Ops<H>; TABLE_SITES] {
    check_sites(name, originals);
    std::array::from_fn(|i| ops_entry(originals, i, &empty))
}

pub(crate) fn check_sites(name: &str, originals: &[Code]) {
    assert!(
        originals.len() <= TABLE_SITES,
        "{name}: {} sites; a strategy with a per-site table serves at most {TABLE_SITES}",
        originals.len()
    );
}

fn ops_entry<H>(originals: &[Code], i: usize, empty: impl Fn() -> H) -> Ops<H> {
    Ops { head: empty(), original: originals.get(i).copied().unwrap_or(unbound) }
}

/// The original of every table entry past the strategy's sites (of `kgraft`'s too). Only a call
/// for a site the strategy was not made with gets here (a caller's bug, which the other
/// strategies meet as a bounds-check panic); a [`Code`] cannot unwind, so it aborts, saying why.
pub(crate) extern "C" fn unbound(_arg: u64) -> u64 {
    eprintln!("dispatch: a strategy was called for a site it was not made with; aborting");
    std::process::abort()
}

/// A func's `transition` and `nop` flags, as bits of one byte: the steady path (neither set)
/// is one load and one test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Flags(pub(crate) u8);

impl Flags {
    /// `func->transition`.
    pub(crate) const TRANSITION: u8 = 1;
    /// `func->nop`.
    pub(crate) const NOP: u8 = 2;

    pub(crate) fn new(nop: bool, transition: bool) -> Self {
        Self(if nop { Self::NOP } else { 0 } | if transition { Self::TRANSITION } else { 0 })
    }

    #[inline(always)]
    pub(crate) fn transition(self) -> bool {
        self.0 & Self::TRANSITION != 0
    }

    #[inline(always)]
    pub(crate) fn nop(self) -> bool {
        self.0 & Self::NOP != 0
    }
}

/// What a func-stack node offers [`handler`].
pub(crate) trait StackNode {
    /// The func's flags, in one load. Acquire: pairs with the Release store of the writer that
    /// sets `transition`, which follows the engine's task-state init
    /// ([`Barrier::StatesBeforeFlag`]); without it a reader could see transition=1 with its
    /// stale Idle state. (`nop` is written before the func is published and never changes while
    /// it is linked.)
    ///
    /// [`Barrier::StatesBeforeFlag`]: crate::docs::Barrier::StatesBeforeFlag
    fn flags(&self) -> Flags;
    /// `new_func`: never null.
    fn code(&self) -> Code;
}

/// Which case a caller of [`handler`] expects, so that the compiler lays that one out as the
/// straight path: [`Steady`] or [`InTransition`]. Both pick the same func: only the layout and
/// the steady shortcut differ.
pub(crate) trait Expect {
    /// Whether the head is expected in transition.
    const TRANSITION: bool;
}

/// The kernel's handler, called on every call of a patched function (`klp`, `epoch`): the head
/// is steady, and the kernel's `unlikely(func->transition)` sends the rest out of line.
#[derive(Debug)]
pub(crate) enum Steady {}

impl Expect for Steady {
    const TRANSITION: bool = false;
}

/// A slow path that only a transition leads to (`textpoke`'s: a site whose head is not in
/// transition does not get there, but for a call that races the writer). The head is in
/// transition, so testing for steady first would cost a test and a branch on every call, and the
/// transition path laid out of line a jump there and back.
#[derive(Debug)]
pub(crate) enum InTransition {}

impl Expect for InTransition {
    const TRANSITION: bool = true;
}

/// Steps [`LoadHead`] (given its result) to [`Redirect`] of the handler: from the head (`None`:
/// an empty stack), pick the func for the task's state and return its code, or `original()` when
/// the original runs (no func, no older func for an Unpatched task, or a nop). `E` says which
/// case to lay out straight ([`Expect`]); every case picks the same under either.
///
/// [`LoadHead`]: crate::docs::HandlerStep::LoadHead
/// [`Redirect`]: crate::docs::HandlerStep::Redirect
#[inline(always)]
pub(crate) fn handler<'a, N: StackNode, E: Expect>(
    head: Option<&'a N>,
    task: &TaskState,
    next: impl FnOnce(&'a N) -> Option<&'a N>,
    original: impl FnOnce() -> Code,
) -> Code {
    // HandlerStep::LoadHead: the kernel's `WARN_ON_ONCE(!func)`; here a site that no patch has
    // touched yet, which the measured paths never are.
    let Some(head) = head else {
        std::hint::cold_path();
        return original();
    };
    let flags = head.flags();
    let in_transition = if !E::TRANSITION {
        // Neither in transition nor a nop: the steady path, one test for both flags.
        if flags.0 == 0 {
            return head.code();
        }
        // HandlerStep::CheckTransition, the kernel's `unlikely(func->transition)`, and the
        // nop: both rare, so out of the straight path.
        std::hint::cold_path();
        flags.transition() && task.version(true) == Version::Previous
    } else {
        // HandlerStep::CheckTransition, expected set: the same test and the same state read
        // (`version`'s own tail), laid out straight.
        flags.transition() && task.version_in_transition() == Version::Previous
    };
    let (func, flags) = if in_transition {
        // HandlerStep::PickByState: an Unpatched task runs the func below the head, or the
        // original when there is none.
        let Some(previous) = next(head) else { return original() };
        (previous, previous.flags())
    } else {
        (head, flags)
    };
    // HandlerStep::Nop: a nop runs the original (redirecting it would loop, in the kernel).
    if flags.nop() {
        return original();
    }
    func.code()
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::check::{code, small_stacks};
    use crate::model::{PatchState, select};

    /// A node of a test stack: plain fields, the link to the one below by index.
    struct TestNode {
        code: Code,
        flags: Flags,
        below: Option<usize>,
    }

    impl StackNode for TestNode {
        fn flags(&self) -> Flags {
            self.flags
        }

        fn code(&self) -> Code {
            self.code
        }
    }

    /// [`handler`] picks what the model's one rule ([`select`]) picks, under either [`Expect`],
    /// for every small stack ([`small_stacks`]; a steady head under `Expect::Transition` is what
    /// a slow path meets when it races the writer) and every task state; and counts an Idle task
    /// in a transition.
    #[test]
    fn the_handler_selects_as_the_model_does() {
        let original = code(0);
        for entries in small_stacks() {
            // Oldest first, as `StackChange::stack`; node i links to node i - 1.
            let nodes: Vec<TestNode> = entries
                .iter()
                .enumerate()
                .map(|(i, e)| TestNode {
                    code: e.code,
                    flags: Flags::new(e.nop, e.transition),
                    below: i.checked_sub(1),
                })
                .collect();
            for state in [PatchState::Idle, PatchState::Unpatched, PatchState::Patched] {
                let want = select(&entries, original, state);
                let in_transition = entries.last().is_some_and(|h| h.transition);
                let counted = u64::from(in_transition && state == PatchState::Idle);
                let below = |n: &TestNode| n.below.map(|b| &nodes[b]);
                for expect in ["Steady", "InTransition"] {
                    let task = TaskState::new();
                    task.set_state_for_test(state);
                    let got = match expect {
                        "Steady" => handler::<_, Steady>(nodes.last(), &task, below, || original),
                        _ => handler::<_, InTransition>(nodes.last(), &task, below, || original),
                    };
                    assert!(std::ptr::fn_addr_eq(got, want), "stack {entries:?}, {state:?}, {expect}");
                    assert_eq!(task.idle_in_transition(), counted, "stack {entries:?}, {state:?}, {expect}");
                }
            }
        }
    }
}
