//! `epoch`: the kernel's func stack, protected by `crossbeam-epoch` instead of the engine's
//! quiescent states: each call pins the epoch, walks the stack as `klp` does (the same
//! [`handler`]), and unpins; removed funcs are destroyed by the epoch collector once no pinned
//! reader can hold them. What most Rust code would write.
//!
//! Trade-off: no dependence on tasks reaching safe points for reclamation, paid for with a pin
//! and an unpin per call (a thread-local lookup, a store and a fence: tens of instructions) and
//! with garbage collected only as the global epoch advances.
//!
//! # Synchronization
//!
//! | writer | reader | guarantees |
//! |---|---|---|
//! | node fields incl. `transition` → `head.store(Release)` / `prev.next.store(Release)` | `head.load(Acquire)` / `next.load(Acquire)` under a pin → fields | a newly published func is seen whole and in transition |
//! | task states (init) → `transition.store(true, Release)` | `transition.load(Acquire)` → `patch_state` | a reader that sees transition=1 never sees Idle |
//! | unlink → `defer_destroy` | loads only while pinned | crossbeam-epoch frees a node only after every thread pinned before the unlink has unpinned; `Node`'s `Drop` poisons it first, so a reader that still reached it would run [`check::poisoned`] |

use crossbeam_epoch::{self as epoch, Atomic, Guard, Owned, Shared};

use crate::check;
use crate::model::{Code, FuncId, SiteId};
use crate::strategy::klp::{StackNode, handler};
use crate::strategy::{Change, Consistency, Info, ReadSide, StackOp, Strategy, WriteSide};
use crate::sync::{AtomicBool, Ordering};
use crate::task::TaskState;

#[derive(Debug)]
struct Node {
    func: FuncId,
    code: Code,
    nop: bool,
    transition: AtomicBool,
    next: Atomic<Node>,
}

impl Drop for Node {
    fn drop(&mut self) {
        // SAFETY: `&mut self` is valid for writes; volatile so that the poison is not elided as a
        // dead store before the deallocation that follows.
        unsafe {
            std::ptr::write_volatile(&mut self.code, check::poisoned as Code);
            std::ptr::write_volatile(&mut self.nop, false);
        }
    }
}

impl StackNode for Node {
    #[inline(always)]
    fn in_transition(&self) -> bool {
        // Acquire: see `StackNode::in_transition`.
        self.transition.load(Ordering::Acquire)
    }

    #[inline(always)]
    fn is_nop(&self) -> bool {
        self.nop
    }

    #[inline(always)]
    fn code(&self) -> Code {
        self.code
    }
}

#[derive(Debug)]
pub struct Epoch {
    heads: Box<[Atomic<Node>]>,
    originals: Box<[Code]>,
}

impl Epoch {
    /// The link (a head or a `next`) that points at `func` (writer only).
    fn link_to<'g>(&'g self, site: SiteId, func: FuncId, guard: &'g Guard) -> &'g Atomic<Node> {
        let mut link = &self.heads[site.index()];
        loop {
            // Relaxed: the writer reads links only it has written.
            let node = link.load(Ordering::Relaxed, guard);
            // SAFETY: linked nodes are live while pinned; only this single writer unlinks them.
            let n = unsafe { node.as_ref() }.unwrap_or_else(|| panic!("epoch: func {func:?} not on site {site:?}"));
            if n.func == func {
                return link;
            }
            link = &n.next;
        }
    }
}

impl ReadSide for Epoch {
    type TaskLocal = ();

    fn task_local(&self) {}

    #[inline(always)]
    fn call(&self, _local: &(), task: &TaskState, site: SiteId, arg: u64) -> u64 {
        let i = site.index();
        let guard = &epoch::pin();
        // Acquire: pairs with the Release that published or relinked the head.
        // SAFETY: nodes reachable while pinned are destroyed only after this guard is dropped.
        let head = unsafe { self.heads[i].load(Ordering::Acquire, guard).as_ref() };
        // SAFETY: as for `head`; Acquire pairs with the Release that linked `next`.
        let code = handler(head, task, |n| unsafe { n.next.load(Ordering::Acquire, guard).as_ref() });
        code.unwrap_or(self.originals[i])(arg)
    }
}

impl WriteSide for Epoch {
    fn apply(&self, site: SiteId, change: Change<'_>) {
        let guard = &epoch::pin();
        let head = &self.heads[site.index()];
        match change.op {
            StackOp::Push => {
                let e = change.stack.last().expect("epoch: push onto an empty stack");
                let node = Owned::new(Node {
                    func: e.func,
                    code: e.code,
                    nop: e.nop,
                    transition: AtomicBool::new(e.transition),
                    // Relaxed: the writer's own store.
                    next: Atomic::from(head.load(Ordering::Relaxed, guard)),
                });
                // Release: pairs with the reader's Acquire head load.
                head.store(node, Ordering::Release);
            }
            StackOp::Remove(func) => {
                let link = self.link_to(site, func, guard);
                // Relaxed: the writer's own store.
                let node = link.load(Ordering::Relaxed, guard);
                // SAFETY: `link_to` found a live node.
                let next = unsafe { node.deref() }.next.load(Ordering::Relaxed, guard);
                // Release: pairs with the reader's Acquire head/next loads.
                link.store(next, Ordering::Release);
                // SAFETY: the node is unlinked, so no reader that pins from now on can reach it,
                // and it is destroyed exactly once, after every current pin.
                unsafe { guard.defer_destroy(node) };
            }
            StackOp::SetTransition(func) => {
                let on = change.stack.iter().find(|e| e.func == func).expect("epoch: unknown func").transition;
                // Relaxed: the writer's own store.
                let node = self.link_to(site, func, guard).load(Ordering::Relaxed, guard);
                // Release: pairs with the reader's Acquire `transition` load (rmb #2).
                // SAFETY: `link_to` found a live node.
                unsafe { node.deref() }.transition.store(on, Ordering::Release);
            }
        }
    }

    /// After every transition: push this thread's deferred garbage to the collector and help
    /// collect, so that garbage (and what exited threads left registered) does not pile up
    /// between the writer's rare pins. The 10^6-transition soak's peak-RSS growth went from
    /// +18% to +11% with it (still above the 10% bound: see the README).
    fn reclaim(&self) {
        epoch::pin().flush();
    }
}

impl Drop for Epoch {
    fn drop(&mut self) {
        // SAFETY: no reader is left (tasks hold the Arc that owns this strategy); nodes removed
        // earlier are the collector's, linked ones are freed here exactly once.
        let guard = unsafe { epoch::unprotected() };
        for head in self.heads.iter() {
            let mut node = head.swap(Shared::null(), Ordering::Relaxed, guard);
            while !node.is_null() {
                // SAFETY: see above.
                let owned = unsafe { node.into_owned() };
                node = owned.next.load(Ordering::Relaxed, guard);
            }
        }
    }
}

impl Strategy for Epoch {
    const INFO: Info = Info {
        name: "epoch",
        description: "kernel-style func stack under crossbeam-epoch pin/unpin per call: the usual Rust way",
        consistency: Consistency::PerTask,
    };

    fn new(originals: &[Code]) -> Self {
        Self { heads: originals.iter().map(|_| Atomic::null()).collect(), originals: originals.into() }
    }
}
