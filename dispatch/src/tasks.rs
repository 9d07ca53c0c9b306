//! Tasks below the strategies: each task's shared state (its tri-state `patch_state`, pending flag,
//! run state and quiescent-state word), the task list, safe points, parking, and the
//! quiescent-state-based grace periods built on them. This layer knows no strategy; the handle a
//! thread calls sites through is [`Task`](crate::Task), above the strategies.
//!
//! A task migrates to the transition's target only at its own [`Tasks::safe_point`] (the kernel's
//! `klp_update_patch_state` on return to user space), while parked (the patcher migrates it, as the
//! kernel migrates a sleeping task whose stack it checked), or by `force`. A grace period ends once
//! every online task has passed a safe point or is parked (QSBR, as liburcu's qsbr flavor): between
//! two safe points a task may hold any func it loaded, exactly as the kernel handler may while
//! preemption is off.
//!
//! # Synchronization
//!
//! | writer (patcher) | reader (task) | guarantees |
//! |---|---|---|
//! | `target` store → `pending.store(true, Release)` ([`Tasks::start`]) | `pending.swap(false, Acquire)` → `target` load ([`Tasks::safe_point`]) | [`Barrier::TargetBeforePending`]: a task never takes a stale target |
//! | `transition` store → `pending.store(true, Release)` (disable path) | `pending.swap(false, Acquire)` → later `transition` loads | [`Barrier::FlagBeforePending`]: a task switched to Unpatched sees transition=1 |
//! | unlink / flag writes → `gp.fetch_add(AcqRel)` | `gp.load(Acquire)` at a safe point | after its safe point a task sees everything done before the grace period began |
//! | `qs.load(Acquire)` in [`Tasks::gp_elapsed`] | `qs.store(Release)` at a safe point / park | everything a task read before its quiescent state happens before the writer reclaims |
//! | `fence(SeqCst)` after `gp.fetch_add` | `fence(SeqCst)` after going online ([`Tasks::online`]) | Dekker: either the writer sees the task online, or the task sees the writer's changes |
//! | `run` CAS Parked→Migrating (Acquire) … store Parked (Release) | `run` CAS Parked→Running (Acquire) in unpark | a task never runs while the patcher migrates it, and sees its new state when it wakes |
//!
//! [`Barrier::TargetBeforePending`]: crate::docs::Barrier::TargetBeforePending
//! [`Barrier::FlagBeforePending`]: crate::docs::Barrier::FlagBeforePending

use std::fmt;
use std::ptr::NonNull;

use crossbeam_utils::CachePadded;

use crate::model::{Error, PatchState, SiteId, Version};
use crate::sync::{AtomicBool, AtomicU8, AtomicU64, Mutex, MutexGuard, Ordering, fence, spin_hint};

/// The quiescent-state word of a task that is offline (parked or unregistered).
const OFFLINE: u64 = 0;

/// Where a task slot is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum RunState {
    /// No task: the slot can be registered.
    Free = 0,
    Running = 1,
    /// Asleep: quiescent for grace periods, and migratable by the patcher.
    Parked = 2,
    /// The patcher holds a parked task to migrate it (the kernel's `task_call_func` lock).
    Migrating = 3,
}

/// A state enum kept in an `AtomicU8`.
trait ByteState: Copy {
    fn to_byte(self) -> u8;
    fn from_byte(b: u8) -> Self;
}

impl ByteState for RunState {
    fn to_byte(self) -> u8 {
        self as u8
    }

    fn from_byte(b: u8) -> Self {
        match b {
            1 => Self::Running,
            2 => Self::Parked,
            3 => Self::Migrating,
            _ => Self::Free,
        }
    }
}

impl ByteState for PatchState {
    #[inline(always)]
    fn to_byte(self) -> u8 {
        self as u8
    }

    #[inline(always)]
    fn from_byte(b: u8) -> Self {
        match b {
            1 => Self::Unpatched,
            2 => Self::Patched,
            _ => Self::Idle,
        }
    }
}

/// An atomic state enum: the orderings are the caller's, as for any atomic.
#[derive(Debug)]
struct AtomicState<T>(AtomicU8, std::marker::PhantomData<T>);

impl<T: ByteState> AtomicState<T> {
    fn new(v: T) -> Self {
        Self(AtomicU8::new(v.to_byte()), std::marker::PhantomData)
    }

    #[inline(always)]
    fn load(&self, order: Ordering) -> T {
        T::from_byte(self.0.load(order))
    }

    /// Whether the state is `v`, comparing the raw byte (no conversion on loops over every slot).
    #[inline(always)]
    fn is(&self, v: T, order: Ordering) -> bool {
        self.0.load(order) == v.to_byte()
    }

    #[inline(always)]
    fn store(&self, v: T, order: Ordering) {
        self.0.store(v.to_byte(), order);
    }

    fn compare_exchange(&self, current: T, new: T, success: Ordering, failure: Ordering) -> Result<T, T> {
        self.0
            .compare_exchange(current.to_byte(), new.to_byte(), success, failure)
            .map(T::from_byte)
            .map_err(T::from_byte)
    }

    fn compare_exchange_weak(&self, current: T, new: T, success: Ordering, failure: Ordering) -> Result<T, T> {
        self.0
            .compare_exchange_weak(current.to_byte(), new.to_byte(), success, failure)
            .map(T::from_byte)
            .map_err(T::from_byte)
    }
}

/// A task's shared state: what its own thread reads on the hot path and what the patcher writes.
#[derive(Debug)]
pub struct TaskState {
    /// `patch_state`.
    state: AtomicState<PatchState>,
    /// `TIF_PATCH_PENDING`.
    pending: AtomicBool,
    /// The grace-period number seen at the last safe point, or [`OFFLINE`].
    qs: AtomicU64,
    run: AtomicState<RunState>,
    /// While parked: 1 + the site the task sleeps inside (the stack check then refuses to migrate
    /// it if that site is in the transition), or 0.
    parked_in: AtomicU64,
    /// Times a reader saw `transition` set while its state was Idle (a breach of
    /// [`Invariant::TriState`](crate::docs::Invariant::TriState); the kernel warns).
    idle_in_transition: AtomicU64,
    /// Cache strategies' misses on this task's reads.
    cache_misses: AtomicU64,
}

impl TaskState {
    pub(crate) fn new() -> Self {
        Self {
            state: AtomicState::new(PatchState::Idle),
            pending: AtomicBool::new(false),
            qs: AtomicU64::new(OFFLINE),
            run: AtomicState::new(RunState::Free),
            parked_in: AtomicU64::new(0),
            idle_in_transition: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
        }
    }

    /// Sets the state directly: only for tests and models of the read path that have no engine
    /// (an Idle task inside a transition, for instance, which the engine never makes).
    #[cfg(test)]
    pub(crate) fn set_state_for_test(&self, state: PatchState) {
        // Relaxed: such tests and models publish the state by their own means (a join, or the
        // strategy's Release that the model is about); the real writer is `Tasks::init`.
        self.state.store(state, Ordering::Relaxed);
    }

    /// The task's `patch_state`. Relaxed: on the read path it is called only after an Acquire
    /// load of a `transition` flag (or of what published one) that pairs with the Release that
    /// published it, which orders the patcher's state writes before
    /// ([`Barrier::StatesBeforeFlag`](crate::docs::Barrier::StatesBeforeFlag)).
    #[inline(always)]
    pub fn patch_state(&self) -> PatchState {
        self.state.load(Ordering::Relaxed)
    }

    /// The reader's half of the selection rule, for a site whose head has `in_transition` as its
    /// flag: [`Version::select`] with this task's state, read only when the site is in transition
    /// (as the kernel handler does), counting an Idle task found there. Every per-task strategy
    /// picks through this, so the count cannot be skipped by one of them.
    #[inline(always)]
    pub fn version(&self, in_transition: bool) -> Version {
        if !in_transition {
            return Version::Head;
        }
        // The kernel's `unlikely(func->transition)`: outside a transition, the usual case, the
        // read path falls straight through to the call instead of jumping over this branch.
        std::hint::cold_path();
        let state = self.patch_state();
        if state == PatchState::Idle {
            self.note_idle_in_transition();
        }
        Version::select(true, state)
    }

    /// Counts a cache miss of this task's read (cache strategies, on their slow path only).
    #[cold]
    pub fn note_cache_miss(&self) {
        // Relaxed: a statistic; only this task's thread writes it, so a load-add-store suffices
        // and keeps a locked RMW off even the miss path.
        let n = self.cache_misses.load(Ordering::Relaxed);
        self.cache_misses.store(n + 1, Ordering::Relaxed);
    }

    /// Whether a transition waits for this task's next safe point (`TIF_PATCH_PENDING`).
    pub fn is_pending(&self) -> bool {
        // Relaxed: an observation for tests and reports, not a synchronization.
        self.pending.load(Ordering::Relaxed)
    }

    pub fn cache_misses(&self) -> u64 {
        // Relaxed: a statistic.
        self.cache_misses.load(Ordering::Relaxed)
    }

    /// How often a reader saw a transition while this task was Idle.
    pub fn idle_in_transition(&self) -> u64 {
        // Relaxed: a statistic.
        self.idle_in_transition.load(Ordering::Relaxed)
    }

    /// Records a breach of [`Invariant::TriState`](crate::docs::Invariant::TriState) (a transition
    /// seen in state Idle), where the kernel would `WARN_ON_ONCE`. Off the hot path: only reached
    /// in the unlikely branch.
    #[cold]
    fn note_idle_in_transition(&self) {
        // Relaxed: a statistic read after the readers are joined.
        self.idle_in_transition.fetch_add(1, Ordering::Relaxed);
    }
}

/// The task list (the kernel's tasklist plus `klp_target_state` and the grace-period counter).
pub(crate) struct Tasks {
    slots: Box<[CachePadded<TaskState>]>,
    /// The kernel's `tasklist_lock`: serializes registration (and fork's inheritance) with the
    /// patcher's loops over every task. Never held while waiting for a grace period.
    list: Mutex<()>,
    /// The grace-period number; starts at 1 so that 0 can mean [`OFFLINE`].
    gp: AtomicU64,
    /// `klp_target_state`.
    target: AtomicState<PatchState>,
    /// Tasks migrated at their own safe point in the current transition.
    at_safe_point: AtomicU64,
}

/// Proof that the caller holds the task-list lock.
pub(crate) type ListGuard<'a> = MutexGuard<'a, ()>;

impl Tasks {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            slots: (0..capacity).map(|_| CachePadded::new(TaskState::new())).collect(),
            list: Mutex::new(()),
            gp: AtomicU64::new(1),
            target: AtomicState::new(PatchState::Idle),
            at_safe_point: AtomicU64::new(0),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn lock(&self) -> ListGuard<'_> {
        // A panic while the list lock is held leaves only plain atomics behind, all valid.
        self.list.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn live(&self) -> impl Iterator<Item = &TaskState> {
        // Acquire: pairs with the Release store of Running in `register`, so the slot's fields are
        // initialised before the patcher touches them.
        self.slots.iter().map(|s| &**s).filter(|s| !s.run.is(RunState::Free, Ordering::Acquire))
    }

    pub(crate) fn target(&self) -> PatchState {
        // Relaxed: the patcher is the only writer and reads its own store.
        self.target.load(Ordering::Relaxed)
    }

    /// Tasks migrated at their own safe point since the current transition began.
    pub(crate) fn migrated_at_safe_point(&self) -> u64 {
        // Relaxed: a statistic, counted by tasks at their safe points.
        self.at_safe_point.load(Ordering::Relaxed)
    }

    /// Takes a free slot. `parent` is the creating task (fork), whose state and pending flag the
    /// child inherits ([`Invariant::Inheritance`](crate::docs::Invariant::Inheritance)); a task without a parent starts at a safe point, i.e. in the
    /// target state of a transition in progress (or Idle), with nothing pending.
    pub(crate) fn register(&self, parent: Option<&TaskState>) -> Result<usize, Error> {
        let _list = self.lock();
        // Relaxed: a slot becomes Free only in `release`, under the list lock we hold, so this
        // load sees every Free store there is.
        let Some(index) = self.slots.iter().position(|s| s.run.is(RunState::Free, Ordering::Relaxed)) else {
            return Err(Error::TooManyTasks { capacity: self.capacity() });
        };
        let slot = &self.slots[index];
        // Relaxed throughout: the list lock orders these with every other writer of the slot, and
        // the Release store of Running below publishes them to lock-free readers of the slot.
        let (state, pending) = match parent {
            Some(p) => (p.state.load(Ordering::Relaxed), p.pending.load(Ordering::Relaxed)),
            None => (self.target.load(Ordering::Relaxed), false),
        };
        slot.state.store(state, Ordering::Relaxed);
        slot.pending.store(pending, Ordering::Relaxed);
        slot.parked_in.store(0, Ordering::Relaxed);
        slot.idle_in_transition.store(0, Ordering::Relaxed);
        slot.cache_misses.store(0, Ordering::Relaxed);
        // Release: pairs with the Acquire in `live`.
        slot.run.store(RunState::Running, Ordering::Release);
        self.online(slot);
        Ok(index)
    }

    pub(crate) fn release(&self, index: usize) {
        let _list = self.lock();
        let slot = &self.slots[index];
        // Release: everything this task read happens before a writer that sees it offline
        // reclaims (pairs with the Acquire in `gp_elapsed`).
        slot.qs.store(OFFLINE, Ordering::Release);
        slot.state.store(PatchState::Idle, Ordering::Relaxed);
        slot.pending.store(false, Ordering::Relaxed);
        // A task may exit while parked, and the patcher may be migrating it right now: wait for
        // the migration to end (it stores Parked back), or the slot would come back to life.
        loop {
            let run = slot.run.load(Ordering::Relaxed);
            if run == RunState::Migrating {
                spin_hint();
                continue;
            }
            // Release: pairs with the Acquire in `live` (the next user of the slot registers
            // under the list lock, which orders it with everything here).
            if slot.run.compare_exchange(run, RunState::Free, Ordering::Release, Ordering::Relaxed).is_ok() {
                break;
            }
        }
    }

    pub(crate) fn slot(&self, index: usize) -> NonNull<TaskState> {
        NonNull::from(&*self.slots[index])
    }

    /// Marks the task online for grace periods. The SeqCst fence pairs with the one in
    /// `gp_start`: either the writer's `gp_elapsed` sees this store (and waits for the task's next
    /// safe point), or this task's later loads see every change made before that grace period
    /// began. Without it, a task waking up could read a func the writer is about to reclaim.
    fn online(&self, slot: &TaskState) {
        // Acquire: pairs with the AcqRel `fetch_add` in `gp_start`.
        let gp = self.gp.load(Ordering::Acquire);
        slot.qs.store(gp, Ordering::Relaxed);
        // SeqCst: the task's half of a store-buffering pair with the writer's fences in
        // `gp_start` and `gp_elapsed`. The task stores its `qs` and then reads the stacks; the
        // writer unlinks, starts a grace period and then reads every `qs`. With a fence on each
        // side, either the writer sees this `qs` (and waits for the task's next safe point) or the
        // task sees the unlink. Without them the writer could still read the slot OFFLINE while
        // the task reads a func unlinked before the grace period, and reclaim it under the task.
        fence(Ordering::SeqCst);
    }

    /// `klp_update_patch_state` followed by a quiescent state.
    #[inline]
    pub(crate) fn safe_point(&self, slot: &TaskState) {
        // Relaxed pre-check: the kernel only calls klp_update_patch_state when the TIF flag is set.
        // Acquire swap: pairs with the Release store in `start`; the target (and, on
        // the disable path, the transition flags) written before it are visible below.
        if slot.pending.load(Ordering::Relaxed) && slot.pending.swap(false, Ordering::Acquire) {
            let target = self.target.load(Ordering::Relaxed);
            slot.state.store(target, Ordering::Relaxed);
            self.at_safe_point.fetch_add(1, Ordering::Relaxed);
        }
        // Acquire: pairs with the AcqRel `fetch_add` in `gp_start`, so that the next critical
        // section sees everything the writer did before that grace period. Release store: pairs
        // with the Acquire in `gp_elapsed`; every load of the critical section that ends here
        // happens before the writer reclaims anything it retired before the grace period.
        let gp = self.gp.load(Ordering::Acquire);
        slot.qs.store(gp, Ordering::Release);
    }

    pub(crate) fn park(&self, slot: &TaskState, inside: Option<SiteId>) -> Result<(), Error> {
        // Relaxed: published by the Release CAS to Parked below.
        slot.parked_in.store(inside.map_or(0, |s| s.0 as u64 + 1), Ordering::Relaxed);
        // Release: the parked_in store and the whole critical section happen before a patcher that
        // acquires Parked migrates this task (pairs with the CAS in `migrate_parked`).
        if slot.run.compare_exchange(RunState::Running, RunState::Parked, Ordering::Release, Ordering::Relaxed).is_err()
        {
            return Err(Error::AlreadyParked);
        }
        // Release: pairs with the Acquire in `gp_elapsed` (a parked task is quiescent).
        slot.qs.store(OFFLINE, Ordering::Release);
        Ok(())
    }

    pub(crate) fn unpark(&self, slot: &TaskState) -> Result<(), Error> {
        loop {
            // Acquire: pairs with the Release store of Parked that ends a migration, so a task
            // migrated while asleep wakes in its new state.
            match slot.run.compare_exchange_weak(
                RunState::Parked,
                RunState::Running,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(RunState::Migrating | RunState::Parked) => spin_hint(),
                Err(_) => return Err(Error::NotParked),
            }
        }
        self.online(slot);
        Ok(())
    }

    // ---- the patcher's side; every `&ListGuard` is proof that the task-list lock is held ----

    /// `klp_init_transition`: set the target, and every task to `!target`. The caller's next
    /// Release (a `transition` flag or a func publication) orders these stores before it.
    pub(crate) fn init(&self, _list: &ListGuard<'_>, target: PatchState) {
        self.target.store(target, Ordering::Relaxed);
        self.at_safe_point.store(0, Ordering::Relaxed);
        for slot in self.live() {
            // Relaxed: see the doc comment; the caller's Release publishes it.
            slot.state.store(target.opposite(), Ordering::Relaxed);
        }
    }

    /// `klp_start_transition`: mark every task not at the target pending.
    pub(crate) fn start(&self, _list: &ListGuard<'_>) {
        let target = self.target.load(Ordering::Relaxed);
        for slot in self.live() {
            if !slot.state.is(target, Ordering::Relaxed) {
                // Release: pairs with the Acquire swap in `safe_point` (see the module table).
                slot.pending.store(true, Ordering::Release);
            }
        }
    }

    /// First half of `klp_reverse_transition`: clear every pending flag. The caller then waits for
    /// a grace period so that safe points already acting on the old target have finished.
    pub(crate) fn clear_pending(&self, _list: &ListGuard<'_>) {
        for slot in self.live() {
            slot.pending.store(false, Ordering::Relaxed);
        }
    }

    pub(crate) fn set_target(&self, _list: &ListGuard<'_>, target: PatchState) {
        // Relaxed: published by the Release of the pending flags that `start` sets next.
        self.target.store(target, Ordering::Relaxed);
    }

    /// End of `klp_complete_transition`: every task back to Idle, no target.
    pub(crate) fn reset_idle(&self, _list: &ListGuard<'_>) {
        self.target.store(PatchState::Idle, Ordering::Relaxed);
        for slot in self.live() {
            // Relaxed: a grace period after transition=0 (or the unlink) separates these stores
            // from every read that could still see a transition ([`Barrier::UnlinkThenGracePeriod`],
            // [`Barrier::ClearThenGracePeriod`] in `crate::docs`).
            slot.pending.store(false, Ordering::Relaxed);
            slot.state.store(PatchState::Idle, Ordering::Relaxed);
        }
    }

    /// `klp_force_transition`: switch every task, running or not. Returns how many were switched.
    pub(crate) fn force(&self, _list: &ListGuard<'_>) -> usize {
        let target = self.target.load(Ordering::Relaxed);
        let mut forced = 0;
        for slot in self.live() {
            // Relaxed: force knowingly breaks consistency; the task's next safe point or the
            // grace periods of completion order everything that matters after it.
            if !slot.state.is(target, Ordering::Relaxed) {
                slot.pending.store(false, Ordering::Relaxed);
                slot.state.store(target, Ordering::Relaxed);
                forced += 1;
            }
        }
        forced
    }

    /// One pass of `klp_try_complete_transition`: migrates parked tasks whose "stack" is clean and
    /// returns (tasks migrated now, tasks still not at the target).
    pub(crate) fn migrate_parked(&self, affected: impl Fn(SiteId) -> bool) -> (usize, usize) {
        let target = self.target.load(Ordering::Relaxed);
        let (mut migrated, mut pending) = (0, 0);
        for slot in self.live() {
            // Relaxed: a progress check; a task's own migration publishes nothing the
            // patcher reads afterwards.
            if slot.state.is(target, Ordering::Relaxed) {
                continue;
            }
            // Acquire: pairs with the Release in `park` (the task's last critical section and its
            // parked_in are visible). Fails if the task runs: it must reach its own safe point.
            if slot
                .run
                .compare_exchange(RunState::Parked, RunState::Migrating, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                pending += 1;
                continue;
            }
            // Relaxed: ordered by the Acquire CAS above.
            let inside = slot.parked_in.load(Ordering::Relaxed);
            // The stack check (-EADDRINUSE): a task asleep inside a site of the transition stays.
            let busy = inside != 0 && affected(SiteId((inside - 1) as u32));
            if busy {
                pending += 1;
            } else {
                // Relaxed: published to the task by the Release store of Parked below.
                slot.pending.store(false, Ordering::Relaxed);
                slot.state.store(target, Ordering::Relaxed);
                migrated += 1;
            }
            // Release: pairs with the Acquire CAS in `unpark`.
            slot.run.store(RunState::Parked, Ordering::Release);
        }
        (migrated, pending)
    }

    /// Starts a grace period and returns its number (`start_poll_synchronize_rcu`).
    pub(crate) fn gp_start(&self) -> u64 {
        // AcqRel: the Release half publishes every change made before this grace period to tasks
        // that Acquire-load the new number at a safe point.
        let gp = self.gp.fetch_add(1, Ordering::AcqRel) + 1;
        // Pairs with the SeqCst fence in `online` (see there).
        fence(Ordering::SeqCst);
        gp
    }

    /// Whether grace period `gp` has elapsed: every task has passed a safe point since it started,
    /// or is offline (`poll_state_synchronize_rcu`).
    pub(crate) fn gp_elapsed(&self, gp: u64) -> bool {
        // SeqCst: the writer's half of the store-buffering pair with the fence in `online` (see
        // there), as the fence in `gp_start` is; this one also orders what the writer stored since
        // the grace period started (a poison pass) before the `qs` loads below.
        fence(Ordering::SeqCst);
        self.slots.iter().all(|s| {
            // Acquire: pairs with the Release store of `qs` in `safe_point`, `park` and `release`.
            let qs = s.qs.load(Ordering::Acquire);
            qs == OFFLINE || qs >= gp
        })
    }
}

impl fmt::Debug for Tasks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tasks")
            .field("capacity", &self.capacity())
            .field("live", &self.live().count())
            .field("target", &self.target())
            .finish()
    }
}
