//! `klp`: the kernel's `klp_ftrace_handler`, step for step ([`HandlerStep`]). Each site has the
//! atomic head of a func stack (newest first); a func carries its `transition` flag; during a
//! transition the calling task's `patch_state` picks the head (Patched) or the func below it
//! (Unpatched, or the original when there is none); a `nop` runs the original. Removed funcs are
//! reclaimed after a grace period (quiescent-state based, like `klp_synchronize_transition`).
//!
//! The read path is the kernel's: outside a transition, the head's load and its test for an
//! empty stack, one load and one test of its flags (`transition` and `nop` in one byte), the call
//! through its code, all plain `mov`s on x86-64 (see [`func_stack`](super::blocks::func_stack)
//! for what that took, and [`kernel_c`](crate::kernel_c) for the kernel's C it is measured
//! against). The writer waits for every task's safe point before it reclaims anything.
//!
//! The recursion guard ([`HandlerStep::RecursionGuard`], the kernel's
//! `ftrace_test_recursion_trylock`) is left out on purpose: this read path never calls patchable
//! code and writes nothing, so re-entering it (from a signal handler) is harmless, and
//! [`Invariant::NoReentrancy`] holds without the guard's cost.
//!
//! # Synchronization
//!
//! | writer (engine, one at a time) | reader ([`Klp::call`]) | guarantees |
//! |---|---|---|
//! | node fields incl. `flags` (transition=1) → `head.store(Release)` / `prev.next.store(Release)` | `head.load(Acquire)` → fields; `next.load(Acquire)` → fields | [`Barrier::FuncBeforeHead`]: a newly published func is always seen in transition, with its code and `next` |
//! | task states (init) → `flags.store(transition, Release)` (disable path) | `flags.load(Acquire)` → `patch_state` | [`Barrier::StatesBeforeFlag`]: a reader that sees transition=1 sees state Patched or Unpatched, never Idle |
//! | unlink → grace period → poison → grace period → free | loads end before the task's next safe point | [`Barrier::UnlinkThenGracePeriod`]: a removed func is never freed under a reader; a reader that still reached one would run [`check::poisoned`] |
//!
//! The grace-period pairs themselves are in [`task_list`](crate::task_list); the phase order (unlink →
//! grace period → transition=0, transition=0 → grace period → Idle) is in
//! [`transition`](crate::transition).
//!
//! [`HandlerStep`]: crate::docs::HandlerStep
//! [`HandlerStep::RecursionGuard`]: crate::docs::HandlerStep::RecursionGuard
//! [`Invariant::NoReentrancy`]: crate::docs::Invariant::NoReentrancy
//! [`Barrier::FuncBeforeHead`]: crate::docs::Barrier::FuncBeforeHead
//! [`Barrier::StatesBeforeFlag`]: crate::docs::Barrier::StatesBeforeFlag
//! [`Barrier::UnlinkThenGracePeriod`]: crate::docs::Barrier::UnlinkThenGracePeriod

use std::ptr;

use crate::check;
use crate::model::{Code, FuncId, SiteId};
use crate::strategy::blocks::atomic_code::AtomicCode;
use crate::strategy::blocks::func_stack::{Expect, Flags, Ops, StackNode, Steady, TABLE_SITES, handler, ops_array};
use crate::strategy::{
    Consistency, Info, ReadSide, StackChange, StackOp, Strategy, WriteSide, always_available, no_machine_fact,
};
use crate::sync::{AtomicPtr, AtomicU8, Mutex, Ordering};
use crate::task_list::TaskState;

/// A `klp_func` on a func stack: what the read path loads first (the code and the flags), then
/// the link below it.
#[derive(Debug)]
struct Node {
    /// `new_func`. Atomic only so that reclamation can poison it; written before publication.
    code: AtomicCode,
    /// `transition` and `nop` ([`Flags`]): `nop` written before publication, `transition` by
    /// [`StackOp::SetTransition`] too.
    flags: AtomicU8,
    /// The next older func, or null (then the original runs).
    next: AtomicPtr<Node>,
    func: FuncId,
}

/// Funcs removed from their stacks, waiting for grace periods.
#[derive(Debug, Default)]
struct Retired {
    /// Unlinked; poisoned at the next grace period.
    waiting: Vec<*mut Node>,
    /// Poisoned; freed at the grace period after that.
    poisoned: Vec<*mut Node>,
}

/// `klp`, and the stacks of the strategy that runs its handler as its slow path (`textpoke`).
#[derive(Debug)]
pub struct Klp {
    sites: Box<Sites>,
    /// Boxed, like every mutable part of a strategy: see [`Strategy`]'s note on immutable fields.
    retired: Box<Mutex<Retired>>,
}

/// Per site its `klp_ops` (the head of its stack, and its original): a table of [`TABLE_SITES`]
/// entries, so that a site known at compile time needs no bounds check.
#[derive(Debug)]
pub(crate) struct Sites {
    ops: [Ops<AtomicPtr<Node>>; TABLE_SITES],
}

// SAFETY: the raw node pointers are owned by this strategy: reachable from `heads` while linked,
// in `retired` after. Nodes hold only atomics, readers only read them, and all writes happen
// under the engine's lock (one writer) or in `Drop` (no readers left).
unsafe impl Send for Klp {}
// SAFETY: as above.
unsafe impl Sync for Klp {}

impl Klp {
    /// The stacks themselves, for a slow path that reaches them from a static (`textpoke`'s):
    /// they stay where they are until this strategy is dropped.
    pub(crate) fn sites(&self) -> &Sites {
        &self.sites
    }

    /// Walks the stack of `site` (writer only) to the link that points at `func`.
    fn link_to(&self, site: SiteId, func: FuncId) -> &AtomicPtr<Node> {
        let mut link = &self.sites.ops[site.index()].head;
        loop {
            // Relaxed: the writer reads links only it has written.
            let node = link.load(Ordering::Relaxed);
            assert!(!node.is_null(), "klp: func {func:?} is not on the stack of site {site:?}");
            // SAFETY: a linked node is live: only this (single) writer unlinks and retires nodes.
            let n = unsafe { &*node };
            if n.func == func {
                return link;
            }
            link = &n.next;
        }
    }

    fn poison(node: &Node) {
        // Relaxed: poisoning is a detector, not a protocol; a correct reader can no longer reach
        // this node (a grace period has passed since it was unlinked).
        node.code.store(check::poisoned, Ordering::Relaxed);
        // Neither flag: a reader that still reached it would take the steady path into the poison.
        node.flags.store(0, Ordering::Relaxed);
    }
}

impl ReadSide for Klp {
    crate::strategy::stateless_read_side!();

    #[inline(always)]
    fn call(&self, _guard: &(), task: &TaskState, site: SiteId, arg: u64) -> u64 {
        self.sites.call::<Steady>(task, site, arg)
    }
}

impl Sites {
    /// The handler for `site` on these stacks, laid out for the case `E` expects ([`Expect`]):
    /// [`Steady`] for [`Klp::call`], [`InTransition`](super::blocks::func_stack::InTransition)
    /// for `textpoke`'s slow path, which only a transition leads to.
    #[inline(always)]
    pub(crate) fn call<E: Expect>(&self, task: &TaskState, site: SiteId, arg: u64) -> u64 {
        // A site known at compile time (the per-site loops) is a constant index below
        // TABLE_SITES: no bounds check, as the kernel's trampoline passes its `klp_ops` as a
        // constant.
        let ops = &self.ops[site.index()];
        // HandlerStep::LoadHead, `list_first_or_null_rcu`. Acquire (Barrier::FuncBeforeHead):
        // pairs with the Release publishing the node in `apply(Push)` or relinking in
        // `apply(Remove)`; without it a reader could see a new head with a stale `transition` flag
        // or code and pick the wrong version.
        let head = ops.head.load(Ordering::Acquire);
        // SAFETY: a node reachable from a head is freed only two grace periods after it was
        // unlinked, and this task cannot pass a safe point (end a grace period) inside `call`.
        let head = unsafe { head.as_ref() };
        let code = handler::<_, E>(
            head,
            task,
            |n| {
                // Acquire: pairs with the Release that linked this `next` (see head).
                // SAFETY: as for `head`.
                unsafe { n.next.load(Ordering::Acquire).as_ref() }
            },
            || ops.original,
        );
        code(arg)
    }
}

impl StackNode for Node {
    #[inline(always)]
    fn flags(&self) -> Flags {
        // Acquire: see the trait (Barrier::StatesBeforeFlag).
        Flags(self.flags.load(Ordering::Acquire))
    }

    #[inline(always)]
    fn code(&self) -> Code {
        // Relaxed: written before the node is published (Release, Barrier::FuncBeforeHead), and
        // after that only by poisoning, a grace period after no reader can reach the node.
        self.code.load(Ordering::Relaxed)
    }
}

impl WriteSide for Klp {
    fn apply(&self, site: SiteId, change: StackChange<'_>) {
        let head = &self.sites.ops[site.index()].head;
        match change.op {
            StackOp::Push => {
                let e = change.stack.last().expect("klp: push onto an empty stack");
                let node = Box::into_raw(Box::new(Node {
                    code: AtomicCode::new(e.code),
                    flags: AtomicU8::new(Flags::new(e.nop, e.transition).0),
                    // Relaxed: the writer reads its own store.
                    next: AtomicPtr::new(head.load(Ordering::Relaxed)),
                    func: e.func,
                }));
                // `list_add_rcu`. Release: pairs with the reader's Acquire head load
                // (Barrier::FuncBeforeHead).
                head.store(node, Ordering::Release);
            }
            StackOp::Remove(func) => {
                let link = self.link_to(site, func);
                // Relaxed: the writer's own store.
                let node = link.load(Ordering::Relaxed);
                // SAFETY: `link_to` returned a link to a live node.
                let next = unsafe { &*node }.next.load(Ordering::Relaxed);
                // `list_del_rcu`. Release: pairs with the reader's Acquire head/next loads; the
                // node after the removed one was published earlier by this same writer.
                link.store(next, Ordering::Release);
                self.retired.lock().unwrap_or_else(|e| e.into_inner()).waiting.push(node);
            }
            StackOp::SetTransition(func) => {
                let e = change.stack.iter().find(|e| e.func == func).expect("klp: unknown func");
                // Relaxed: the writer's own store.
                let node = self.link_to(site, func).load(Ordering::Relaxed);
                // SAFETY: `link_to` returned a link to a live node.
                let node = unsafe { &*node };
                // Release: pairs with the reader's Acquire `flags` load
                // (Barrier::StatesBeforeFlag): the task states the engine wrote before this store
                // are visible to a reader who sees it. `nop` is stored again unchanged (the
                // writer's own value): it never changes while the func is linked.
                node.flags.store(Flags::new(e.nop, e.transition).0, Ordering::Release);
            }
        }
    }

    fn reclaim(&self) {
        let mut r = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        for node in r.poisoned.drain(..) {
            // SAFETY: poisoned a grace period ago, unlinked two ago: no reader can reach it, and
            // it came from `Box::into_raw` in `apply(Push)`.
            drop(unsafe { Box::from_raw(node) });
        }
        let Retired { waiting, poisoned } = &mut *r;
        for node in waiting.drain(..) {
            // SAFETY: unlinked a grace period ago and not yet freed.
            Self::poison(unsafe { &*node });
            poisoned.push(node);
        }
    }
}

impl Drop for Klp {
    fn drop(&mut self) {
        // No reader is left: every task holds an Arc to the state that owns this strategy.
        let mut r = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        let Retired { waiting, poisoned } = &mut *r;
        for node in waiting.drain(..).chain(poisoned.drain(..)) {
            // SAFETY: retired nodes are unlinked, owned only by the retire lists, freed once.
            drop(unsafe { Box::from_raw(node) });
        }
        for ops in self.sites.ops.iter() {
            let mut node = ops.head.swap(ptr::null_mut(), Ordering::Relaxed);
            while !node.is_null() {
                // SAFETY: a linked node belongs to exactly one stack and is freed once here.
                let b = unsafe { Box::from_raw(node) };
                node = b.next.load(Ordering::Relaxed);
            }
        }
    }
}

impl Strategy for Klp {
    const INFO: Info = Info {
        name: "klp",
        description: "the kernel's handler: func-stack head, `transition` flag, task state, all plain loads; the writer waits for every task's safe point before reclaiming",
        consistency: Consistency::PerTask,
        probe: always_available,
        machine_fact: no_machine_fact,
    };

    /// Panics with more originals than [`TABLE_SITES`]; entries past them run `unbound` (see
    /// [`ops_array`]).
    fn new(originals: &[Code]) -> Self {
        let sites = Sites { ops: ops_array("klp", originals, || AtomicPtr::new(ptr::null_mut())) };
        Self { sites: Box::new(sites), retired: Box::new(Mutex::new(Retired::default())) }
    }
}

/// loom models of the publication pairs ([`Barrier::FuncBeforeHead`] and
/// [`Barrier::StatesBeforeFlag`]), run by `scripts/loom`.
///
/// [`Barrier::FuncBeforeHead`]: crate::docs::Barrier::FuncBeforeHead
/// [`Barrier::StatesBeforeFlag`]: crate::docs::Barrier::StatesBeforeFlag
#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use crate::check::{code, fingerprint};
    use crate::model::{PatchState, StackEntry};
    use crate::sync::Arc;

    fn entry(func: u32, code: Code, transition: bool) -> StackEntry {
        StackEntry { func: FuncId(func), code, nop: false, transition }
    }

    /// Barrier::FuncBeforeHead: a func published during a transition is seen with transition=1 (and its code), so an
    /// Unpatched reader runs the version below it, never the new one.
    #[test]
    fn push_is_seen_in_transition() {
        loom::model(|| {
            let klp = Arc::new(Klp::new(&[code(0)]));
            let task = Arc::new(TaskState::new());
            task.set_state_for_test(PatchState::Unpatched);
            let stack = [entry(1, code(1), true)];
            let writer = {
                let klp = klp.clone();
                loom::thread::spawn(move || {
                    klp.apply(SiteId(0), StackChange { op: StackOp::Push, stack: &stack, original: code(0) })
                })
            };
            assert_eq!(klp.call(&(), &task, SiteId(0), 0), fingerprint(0));
            writer.join().unwrap();
            assert_eq!(klp.call(&(), &task, SiteId(0), 0), fingerprint(0));
        });
    }

    /// Barrier::StatesBeforeFlag (disable path): states are initialised before transition=1 is set on a published
    /// func, so a reader that sees transition=1 never sees its state Idle.
    #[test]
    fn transition_flag_orders_task_state() {
        loom::model(|| {
            let klp = Arc::new(Klp::new(&[code(0)]));
            let task = Arc::new(TaskState::new());
            let steady = [entry(1, code(1), false)];
            klp.apply(SiteId(0), StackChange { op: StackOp::Push, stack: &steady, original: code(0) });
            let writer = {
                let (klp, task) = (klp.clone(), task.clone());
                loom::thread::spawn(move || {
                    // klp_init_transition(UNPATCHED): every task starts Patched …
                    task.set_state_for_test(PatchState::Patched);
                    // … then transition=1 (Release).
                    let flagged = [entry(1, code(1), true)];
                    klp.apply(
                        SiteId(0),
                        StackChange { op: StackOp::SetTransition(FuncId(1)), stack: &flagged, original: code(0) },
                    );
                })
            };
            // Idle or Patched, the head's version runs; only the Idle-in-transition count may tell.
            assert_eq!(klp.call(&(), &task, SiteId(0), 0), fingerprint(1));
            writer.join().unwrap();
            assert_eq!(task.idle_in_transition(), 0, "saw transition=1 with state Idle");
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::check::{self, code};
    use crate::model::StackEntry;

    /// A func unlinked from its stack is poisoned at the next grace period and freed at the one
    /// after: a reader that (wrongly) still held it would run `check::poisoned` and be counted.
    #[test]
    fn reclaimed_funcs_are_poisoned_then_freed() {
        let klp = Klp::new(&[code(0)]);
        let stack = [StackEntry { func: FuncId(1), code: code(1), nop: false, transition: false }];
        klp.apply(SiteId(0), StackChange { op: StackOp::Push, stack: &stack, original: code(0) });
        // A stale reader's view of the func: taken before it is unlinked.
        let stale = klp.sites.ops[0].head.load(Ordering::Acquire);
        klp.apply(SiteId(0), StackChange { op: StackOp::Remove(FuncId(1)), stack: &[], original: code(0) });
        // SAFETY: (test) the node stays allocated until the second `reclaim` below.
        let node = unsafe { &*stale };
        assert_eq!((node.code.load(Ordering::Relaxed))(0), check::fingerprint(1), "poisoned too early");
        klp.reclaim();
        let before = check::poison_hits();
        assert_eq!((node.code.load(Ordering::Relaxed))(0), check::POISON);
        assert_eq!(node.flags.load(Ordering::Relaxed), 0, "neither nop nor in transition");
        assert_eq!(check::poison_hits(), before + 1);
        assert_eq!(klp.retired.lock().unwrap().poisoned.len(), 1);
        klp.reclaim();
        assert!(klp.retired.lock().unwrap().poisoned.is_empty());
    }
}
