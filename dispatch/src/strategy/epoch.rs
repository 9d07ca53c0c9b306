//! `epoch`: the kernel's func stack, protected by `crossbeam-epoch` instead of the engine's
//! quiescent states: a task pins the epoch once per critical section ([`ReadSide::enter`]), walks
//! the stack at each call as `klp` does (the same [`handler`]), and unpins when the section ends;
//! removed funcs are destroyed by the epoch collector once no pinned reader can hold them.
//! Reclamation does not depend on tasks reaching safe points; a pin and an unpin (a store, a full
//! fence and two counters) are paid once per section, as an RCU reader pays `rcu_read_lock` once
//! around a section rather than around each dereference, and garbage is collected only as the
//! global epoch advances.
//!
//! Pinning around each call instead, what `epoch::pin()` at every use would give, puts that full
//! fence on every call: 8.4× `fnptr` per site on the Intel Xeon dev VM, against 1.6× pinned per
//! section in the same interleaved harness runs (one reader, 8 sites, steady). The price of the
//! section-long pin is reclamation: the global epoch cannot advance past a pinned participant, so
//! garbage waits for the longest section in progress (in the harness a section is a few
//! microseconds, `--calls-per-safepoint` calls), where per-call pins let it advance between calls.
//! A section that is leaked (`mem::forget`) leaves its participant pinned for good: nothing is
//! collected after that. That is a leak, not unsoundness: the leaked guard is never used again.
//!
//! The strategy owns its [`Collector`]. Every task pins through a participant of it (its
//! [`ReadSide::TaskLocal`]), taken from a pool when the task registers and given back when it
//! exits, so the collector keeps as many participants as tasks were ever alive at once. With
//! crossbeam's default instead (`epoch::pin()`, a participant per OS thread, unlinked and freed
//! lazily after the thread exits), the soak's task churn (tens of thousands of short-lived tasks
//! a second) grew the 10^6-transition soak's peak RSS by 18%, over its 10% bound.
//!
//! A participant's bag also collects the frees of the collector's own queue nodes (one per
//! sealed bag it collected, about 2 KiB each, since a node holds its bag inline), up to 63 before
//! it pushes them. Measured with the soak's engine (1e6 transitions, live heap from `mallinfo2`,
//! peak RSS from `VmHWM`): a pool that never flushes lets the rarely reused participants at its
//! bottom fill up, and the live heap grew linearly (0.34 → 1.6 MiB, peak RSS +22%); flushing every
//! returned participant kept the heap flat but allocated a 2 KiB bag per task exit, and the
//! allocator's high-water marks crept (+6.1% and +8.3% in two runs); flushing only participants
//! that sat unused through a whole transition ([`WriteSide::reclaim`]) keeps the heap flat
//! without that churn (+2.4% and +4.6%; `klp` +2.3%).
//!
//! # Synchronization
//!
//! | writer | reader | guarantees |
//! |---|---|---|
//! | node fields incl. `flags` (transition) → `head.store(Release)` / `prev.next.store(Release)` | `head.load(Acquire)` / `next.load(Acquire)` under a pin → fields | [`Barrier::FuncBeforeHead`]: a newly published func is seen whole and in transition |
//! | task states (init) → `flags.store(transition, Release)` | `flags.load(Acquire)` → `patch_state` | [`Barrier::StatesBeforeFlag`]: a reader that sees transition=1 never sees Idle |
//! | unlink → `defer_destroy` | loads only while pinned | crossbeam-epoch frees a node only after every participant pinned before the unlink has unpinned; `Node`'s `Drop` poisons it first, so a reader that still reached it would run [`check::poisoned`] |
//! | participant returned → pool mutex unlock | pool mutex lock → participant taken | a reused participant's thread-unsafe counters are handed over whole (see [`Participant`]) |
//!
//! [`Barrier::FuncBeforeHead`]: crate::docs::Barrier::FuncBeforeHead
//! [`Barrier::StatesBeforeFlag`]: crate::docs::Barrier::StatesBeforeFlag

use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::sync::PoisonError;

use crossbeam_epoch::{self as epoch, Atomic, Collector, Guard, LocalHandle, Owned, Shared};

use crate::check;
use crate::model::{Code, FuncId, SiteId};
use crate::strategy::blocks::func_stack::{Flags, Ops, StackNode, Steady, TABLE_SITES, handler, ops_table};
use crate::strategy::{
    Consistency, Info, ReadSide, StackChange, StackOp, Strategy, WriteSide, always_available, no_machine_fact,
};
use crate::sync::{Arc, AtomicU8, Mutex, MutexGuard, Ordering};
use crate::task_list::TaskState;

/// A registered participant of the strategy's collector, movable between threads.
#[derive(Debug)]
struct Participant(LocalHandle);

// SAFETY: `LocalHandle` is !Send because its `Local` keeps counters in `Cell`s and a bag of
// deferred functions that only the thread using the handle may touch: two clones of one handle
// used from two threads at once corrupt them (which is why handles are no longer Clone). A
// `Participant` is unique (handles are not Clone, and this type is not), it is moved only while
// none of its guards is alive (every guard is dropped while a borrow of it is held: the section
// that `enter` returns borrows it, and `apply`, `reclaim` and `flush_cold` drop theirs before
// they return), and each move is ordered by what moves it (a thread spawn, or the pool's mutex):
// its `Local` is used by one thread at a time, with happens-before between consecutive users,
// exactly as for a `Cell` in a `Send` type. Nothing in a `Local` depends on the identity of the
// thread. This rests on crossbeam-epoch's private `Local`, so the workspace pins the version
// this was checked against (Cargo.toml): review this argument before moving the pin.
unsafe impl Send for Participant {}

/// An unused participant in the pool, and how many transitions it has sat through unused
/// (capped at 2).
#[derive(Debug)]
struct PooledParticipant {
    participant: Participant,
    quiet: u8,
}

/// The collector and its idle participants.
#[derive(Debug)]
struct Participants {
    collector: Collector,
    idle: Mutex<Vec<PooledParticipant>>,
}

impl Participants {
    fn idle(&self) -> MutexGuard<'_, Vec<PooledParticipant>> {
        // A poisoned pool is still a valid list of unused participants.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take(&self) -> Participant {
        let reused = self.idle().pop().map(|i| i.participant);
        reused.unwrap_or_else(|| Participant(self.collector.register()))
    }

    fn give_back(&self, participant: Participant) {
        self.idle().push(PooledParticipant { participant, quiet: 0 });
    }

    /// Hands to the collector the bag of every participant that has sat unused through a whole
    /// transition, once: cold participants would keep their garbage for good, hot ones push it
    /// when their bag is full (the module comment has the measurements).
    fn flush_cold(&self) {
        for idle in self.idle().iter_mut() {
            if idle.quiet == 1 {
                idle.participant.0.pin().flush();
            }
            idle.quiet = (idle.quiet + 1).min(2);
        }
    }
}

/// A task's participant ([`ReadSide::TaskLocal`]); back to the pool when the task exits.
#[derive(Debug)]
pub struct TaskParticipant {
    /// Always present; `ManuallyDrop` only so that `Drop` can move it into the pool.
    participant: ManuallyDrop<Participant>,
    pool: Arc<Participants>,
}

impl Drop for TaskParticipant {
    fn drop(&mut self) {
        // SAFETY: `participant` is taken exactly once, here, and `self` is not used afterwards.
        let participant = unsafe { ManuallyDrop::take(&mut self.participant) };
        self.pool.give_back(participant);
    }
}

/// A `klp_func`: what the read path loads first (the code and the flags), then the link below.
#[derive(Debug)]
struct Node {
    code: Code,
    /// `transition` and `nop` ([`Flags`]): `nop` written before publication, `transition` by
    /// [`StackOp::SetTransition`] too.
    flags: AtomicU8,
    next: Atomic<Node>,
    func: FuncId,
}

impl Drop for Node {
    fn drop(&mut self) {
        // SAFETY: `&mut self` is valid for writes; volatile so that the poison is not elided as a
        // dead store before the deallocation that follows.
        unsafe {
            std::ptr::write_volatile(&mut self.code, check::poisoned as Code);
        }
        // Neither flag: a reader that still reached the node would take the steady path into the
        // poison. Relaxed: no reader can reach it (the collector destroys it after every pin);
        // an atomic store, which the compiler does not drop as dead.
        self.flags.store(0, Ordering::Relaxed);
    }
}

impl StackNode for Node {
    #[inline(always)]
    fn flags(&self) -> Flags {
        // Acquire: see `StackNode::flags` (Barrier::StatesBeforeFlag).
        Flags(self.flags.load(Ordering::Acquire))
    }

    #[inline(always)]
    fn code(&self) -> Code {
        self.code
    }
}

#[derive(Debug)]
pub struct Epoch {
    /// Per site its `klp_ops`: the head of its stack, and its original. A table of
    /// [`TABLE_SITES`] entries, so that a site known at compile time needs no bounds check.
    ops: Box<[Ops<Atomic<Node>>; TABLE_SITES]>,
    participants: Arc<Participants>,
    /// The writer's own participant (`apply` and `reclaim` run under the engine's lock, so it is
    /// never contended; the mutex only makes the strategy Sync). Boxed: see [`Strategy`]'s note
    /// on immutable fields.
    writer: Box<Mutex<Participant>>,
}

impl Epoch {
    /// The link (a head or a `next`) that points at `func` (writer only).
    fn link_to<'g>(&'g self, site: SiteId, func: FuncId, guard: &'g Guard) -> &'g Atomic<Node> {
        let mut link = &self.ops[site.index()].head;
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

/// `epoch`'s [`Guard`](ReadSide::Guard) of a critical section: the pin of the task's participant,
/// which it borrows so that the participant cannot move to another thread (see [`Participant`])
/// while the pin lasts.
#[derive(Debug)]
pub struct PinnedGuard<'a> {
    guard: Guard,
    _participant: PhantomData<&'a TaskParticipant>,
}

impl ReadSide for Epoch {
    type TaskLocal = TaskParticipant;
    type Guard<'a> = PinnedGuard<'a>;

    fn task_local(&self) -> TaskParticipant {
        TaskParticipant {
            participant: ManuallyDrop::new(self.participants.take()),
            pool: Arc::clone(&self.participants),
        }
    }

    /// Pins the task's participant until the section ends (the guard is dropped with it).
    #[inline(always)]
    fn enter<'a>(&'a self, local: &'a TaskParticipant) -> PinnedGuard<'a> {
        // A participant of another strategy's collector would not hold back this one's.
        assert!(Arc::ptr_eq(&local.pool, &self.participants), "epoch: reader state of another strategy");
        PinnedGuard { guard: local.participant.0.pin(), _participant: PhantomData }
    }

    #[inline(always)]
    fn call(&self, pinned: &PinnedGuard<'_>, task: &TaskState, site: SiteId, arg: u64) -> u64 {
        // A constant index below TABLE_SITES where the site is known at compile time: no bounds
        // check (see `klp`).
        let (ops, guard) = (&self.ops[site.index()], &pinned.guard);
        // Acquire: pairs with the Release that published or relinked the head.
        // SAFETY: nodes reachable while pinned are destroyed only after this guard is dropped.
        let head = unsafe { ops.head.load(Ordering::Acquire, guard).as_ref() };
        // SAFETY: as for `head`; Acquire pairs with the Release that linked `next`.
        let next = |n: &Node| unsafe { n.next.load(Ordering::Acquire, guard).as_ref() };
        handler::<_, Steady>(head, task, next, || ops.original)(arg)
    }
}

impl WriteSide for Epoch {
    fn apply(&self, site: SiteId, change: StackChange<'_>) {
        let writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let guard = &writer.0.pin();
        let head = &self.ops[site.index()].head;
        match change.op {
            StackOp::Push => {
                let e = change.stack.last().expect("epoch: push onto an empty stack");
                let node = Owned::new(Node {
                    func: e.func,
                    code: e.code,
                    flags: AtomicU8::new(Flags::new(e.nop, e.transition).0),
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
                let e = change.stack.iter().find(|e| e.func == func).expect("epoch: unknown func");
                // Relaxed: the writer's own store.
                let node = self.link_to(site, func, guard).load(Ordering::Relaxed, guard);
                // Release: pairs with the reader's Acquire `flags` load
                // (Barrier::StatesBeforeFlag). `nop` is stored again unchanged.
                // SAFETY: `link_to` found a live node.
                unsafe { node.deref() }.flags.store(Flags::new(e.nop, e.transition).0, Ordering::Release);
            }
        }
    }

    /// After every transition: hand the writer's removed nodes to the collector now, so that
    /// they are destroyed (and poisoned) within two epoch advances instead of waiting in its
    /// bag until 64 have piled up.
    fn reclaim(&self) {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner).0.pin().flush();
        self.participants.flush_cold();
    }
}

impl Drop for Epoch {
    fn drop(&mut self) {
        // SAFETY: no reader is left (tasks hold the Arc that owns this strategy); nodes removed
        // earlier are the collector's (it runs their destructors when its last participant is
        // gone), linked ones are freed here exactly once.
        let guard = unsafe { epoch::unprotected() };
        for ops in self.ops.iter() {
            let mut node = ops.head.swap(Shared::null(), Ordering::Relaxed, guard);
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
        description: "the kernel's func stack under crossbeam-epoch (its own collector, a pooled participant per task): reclamation without safe points, a pin and unpin (a full fence) per critical section",
        consistency: Consistency::PerTask,
        probe: always_available,
        machine_fact: no_machine_fact,
    };

    fn new(originals: &[Code]) -> Self {
        let collector = Collector::new();
        let writer = Box::new(Mutex::new(Participant(collector.register())));
        Self {
            ops: ops_table("epoch", originals, Atomic::null),
            participants: Arc::new(Participants { collector, idle: Mutex::new(Vec::new()) }),
            writer,
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::check::code;

    fn idle(e: &Epoch) -> usize {
        e.participants.idle().len()
    }

    /// Tasks that come and go reuse participants: the collector keeps as many as were ever
    /// alive at once, not one per task ever created.
    #[test]
    fn exited_tasks_participants_are_reused() {
        let e = Epoch::new(&[code(0)]);
        for _ in 0..1000 {
            drop(e.task_local());
        }
        assert_eq!(idle(&e), 1);
        let (a, b) = (e.task_local(), e.task_local());
        assert_eq!(idle(&e), 0);
        drop((a, b));
        assert_eq!(idle(&e), 2);
    }

    /// A critical section holds its pin until it ends: what the writer unlinks while a section is
    /// open is not collected before the section ends, however often the writer reclaims.
    #[test]
    fn a_section_holds_its_pin_until_it_ends() {
        let e = Epoch::new(&[code(0)]);
        let reader = e.task_local();
        let collected = Arc::new(AtomicBool::new(false));
        let section = e.enter(&reader);
        let flag = Arc::clone(&collected);
        // Relaxed: read back on this thread.
        e.writer.lock().unwrap().0.pin().defer(move || flag.store(true, Ordering::Relaxed));
        for _ in 0..100 {
            e.reclaim();
        }
        assert!(!collected.load(Ordering::Relaxed), "collected under an open section that began before it");
        drop(section);
        for _ in 0..100 {
            if collected.load(Ordering::Relaxed) {
                return;
            }
            e.reclaim();
        }
        panic!("never collected after the section ended");
    }

    /// Garbage deferred by a task that then exits is collected once its participant has sat
    /// idle in the pool through a whole transition: `reclaim` hands cold participants' bags to
    /// the collector.
    #[test]
    fn an_idle_participant_holds_no_garbage() {
        let e = Epoch::new(&[code(0)]);
        let running = e.task_local();
        let exiting = e.task_local();
        let collected = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&collected);
        // Relaxed: read back on this thread.
        exiting.participant.0.pin().defer(move || flag.store(true, Ordering::Relaxed));
        drop(exiting);
        // The first transition finds it just returned (hot: it may be reused at once, and a hot
        // participant pushes its bag when full), the second finds it cold and flushes it.
        e.reclaim();
        for _ in 0..10 {
            running.participant.0.pin().flush();
        }
        // Relaxed: as above.
        assert!(!collected.load(Ordering::Relaxed), "a just-returned participant was flushed");
        e.reclaim();
        // Each flush tries to advance the epoch and collects expired bags: a few suffice.
        for _ in 0..100 {
            if collected.load(Ordering::Relaxed) {
                return;
            }
            running.participant.0.pin().flush();
        }
        panic!("the exited task's deferred function never ran: its bag stayed with the idle participant");
    }
}
