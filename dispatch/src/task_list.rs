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
//! | [`Doorbell::wait`]: `sleepers` += 1 → `fence(SeqCst)` → recheck progress | a progressing safe point / park / exit: state or `qs` store → `fence(SeqCst)` → `sleepers` load ([`Doorbell::ring`]) | no lost wake-up: either the writer's recheck sees the task's progress, or the task sees the sleeper and unparks it |
//!
//! # Waking the writer
//!
//! A writer waiting for a transition sleeps on the [`Doorbell`] instead of polling on a timer; the
//! task whose safe point migrates it or passes a new grace period, a task that parks and a task
//! that exits ring it, and the writer then runs one more `try_complete`. A safe point that does
//! neither (every safe point outside a transition, and all but one per task per grace period
//! inside one) pays one more load of its own `qs` word and a branch; only a progressing one takes
//! the SeqCst fence and a timestamp, once per task per phase.
//!
//! [`Barrier::TargetBeforePending`]: crate::docs::Barrier::TargetBeforePending
//! [`Barrier::FlagBeforePending`]: crate::docs::Barrier::FlagBeforePending

use std::fmt;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::model::{Error, PatchState, SiteId, Version};
use crate::sync::{
    AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Mutex, MutexGuard, Ordering, Thread, current_thread, fence,
    park_timeout, spin_hint, thread_token,
};

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
    /// Refills of a cache strategy's cache that found it stale, on this task's reads.
    stale_cache_refills: AtomicU64,
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
            stale_cache_refills: AtomicU64::new(0),
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
    /// picks through this (or, on a slow path that only a transition leads to, through
    /// [`version_in_transition`](Self::version_in_transition), which counts the same), so the
    /// count cannot be skipped by one of them.
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

    /// [`version`](Self::version) for a site whose head is in transition, where that is the
    /// expected case: the slow paths that only a transition leads to (`kgraft`'s slow stub and
    /// `textpoke`'s slow path), which `version`'s cold hint would lay out as the unlikely case, out
    /// of line and back. The same steps as `version`'s tail, Idle count included; written twice because
    /// `version` calling this changed other strategies' code (the gate's counts of arcswap,
    /// seqlock, percpu and rwlock moved by up to 3 instructions per call).
    #[inline(always)]
    pub fn version_in_transition(&self) -> Version {
        let state = self.patch_state();
        if state == PatchState::Idle {
            self.note_idle_in_transition();
        }
        Version::select(true, state)
    }

    /// Counts a read of this task that found its cache entry stale and refilled it (cache
    /// strategies, on their miss path only).
    #[cold]
    pub fn note_stale_cache_refill(&self) {
        // Relaxed: a statistic; only this task's thread writes it, so a load-add-store suffices
        // and keeps a locked RMW off even the miss path.
        let n = self.stale_cache_refills.load(Ordering::Relaxed);
        self.stale_cache_refills.store(n + 1, Ordering::Relaxed);
    }

    /// Whether a transition waits for this task's next safe point (`TIF_PATCH_PENDING`).
    pub fn is_pending(&self) -> bool {
        // Relaxed: an observation for tests and reports, not a synchronization.
        self.pending.load(Ordering::Relaxed)
    }

    /// How often a cache strategy refilled a stale cache on this task's reads (`percpu`, `tls`):
    /// not hardware cache misses.
    pub fn stale_cache_refills(&self) -> u64 {
        // Relaxed: a statistic.
        self.stale_cache_refills.load(Ordering::Relaxed)
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
    /// Rung by a task that may have let the transition advance; a waiting writer sleeps on it.
    pub(crate) doorbell: Doorbell,
    /// What the event times below count from.
    epoch: Instant,
    /// When the latest migration happened (a task's safe point, a parked migration, a force):
    /// nanoseconds since `epoch`, plus 1 (0: none yet). Read by the patcher as the time the last
    /// task reached the target, the end of the migration phase.
    last_migration: AtomicU64,
    /// When the latest quiescent state that passed a new grace period happened (a safe point
    /// that saw a new grace-period number, a park, an exit), as `last_migration`: the end of a
    /// grace period as the tasks made it, before the writer saw it.
    last_quiescent: AtomicU64,
}

/// The writer's side of the wake-up: a waiting writer announces itself in `sleepers`, rechecks
/// the transition, and parks; a task that made progress rings, and unparks every announced
/// writer if there is one. A ring with no sleeper costs a SeqCst fence and a load.
pub(crate) struct Doorbell {
    /// Writers announced (between their announcement and their leaving, asleep or not).
    sleepers: AtomicUsize,
    /// Their threads, with their `thread_token`, to unpark them and to find one's own entry.
    waiters: Mutex<Vec<(u64, Thread)>>,
}

impl Doorbell {
    fn new() -> Self {
        Self { sleepers: AtomicUsize::new(0), waiters: Mutex::new(Vec::new()) }
    }

    fn waiters(&self) -> MutexGuard<'_, Vec<(u64, Thread)>> {
        // The list holds plain handles; a panic while holding it leaves it valid.
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Called by a task right after the store that may let the transition advance (its state,
    /// its `qs`, its run state).
    #[cold]
    #[inline(never)]
    pub(crate) fn ring(&self) {
        // SeqCst fence: pairs with the fence in `wait` (Dekker). Either this fence comes first
        // in their total order, and the writer's recheck after its fence sees the store this
        // task made before this fence; or the writer's comes first, and the load below sees its
        // announcement. Without the pair both can miss the other: the writer sleeps through
        // the progress it waited for (a lost wake-up; the loom model `doorbell` finds it).
        fence(Ordering::SeqCst);
        // Acquire: pairs with the Release `fetch_add` in `wait`, so that the writer's entry in
        // `waiters`, pushed before it, is there when we lock the list below.
        if self.sleepers.load(Ordering::Acquire) != 0 {
            for (_, t) in self.waiters().iter() {
                t.unpark();
            }
        }
    }

    /// The writer's side: unless `check` finds something to do (`Some`), sleeps until a ring
    /// or until `nap` has passed, then returns `None`; the caller checks again. `check` runs
    /// after the announcement, so progress made before it is seen by `check`, and progress made
    /// after it rings.
    pub(crate) fn wait<T>(&self, nap: Duration, check: impl FnOnce() -> Option<T>) -> Option<T> {
        let me = thread_token();
        self.waiters().push((me, current_thread()));
        // Release: pairs with the Acquire load in `ring` (the push above is visible to a ringer
        // that sees this count).
        self.sleepers.fetch_add(1, Ordering::Release);
        // SeqCst fence: pairs with the fence in `ring` (see there). Without it the recheck
        // below could read a task's state from before its progress while that task's `ring`
        // reads no sleeper: both pass, and the writer sleeps a whole `nap`.
        fence(Ordering::SeqCst);
        let found = check();
        if found.is_none() {
            // A ring since the announcement left a token: this returns at once.
            park_timeout(nap);
        }
        // Relaxed: only a count; a ring that still sees us unparks a thread that is awake,
        // which leaves a token and makes one later park return early (the caller rechecks).
        self.sleepers.fetch_sub(1, Ordering::Relaxed);
        let mut waiters = self.waiters();
        if let Some(i) = waiters.iter().position(|(t, _)| *t == me) {
            waiters.swap_remove(i);
        }
        found
    }
}

impl fmt::Debug for Doorbell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Relaxed: a snapshot for debugging.
        f.debug_struct("Doorbell").field("sleepers", &self.sleepers.load(Ordering::Relaxed)).finish()
    }
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
            doorbell: Doorbell::new(),
            epoch: Instant::now(),
            last_migration: AtomicU64::new(0),
            last_quiescent: AtomicU64::new(0),
        }
    }

    /// Now, as an event time: nanoseconds since `epoch`, plus 1.
    fn event_now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64 + 1
    }

    fn event_instant(&self, t: u64) -> Option<Instant> {
        (t != 0).then(|| self.epoch + Duration::from_nanos(t - 1))
    }

    /// When the latest migration happened, if any since the patcher was made.
    pub(crate) fn last_migration(&self) -> Option<Instant> {
        // Relaxed: a statistic. The Release store of each migrated state orders the time before
        // it, and the patcher reads this after an Acquire load that saw the state (pairs there).
        self.event_instant(self.last_migration.load(Ordering::Relaxed))
    }

    /// When the latest quiescent state that passed a new grace period happened, if any.
    pub(crate) fn last_quiescent(&self) -> Option<Instant> {
        // Relaxed: a statistic, ordered before the Release store of `qs` that follows it and
        // read after the Acquire loads of every `qs` in `gp_elapsed`.
        self.event_instant(self.last_quiescent.load(Ordering::Relaxed))
    }

    fn note_migration(&self) {
        // Relaxed: a statistic (see `last_migration`).
        self.last_migration.fetch_max(self.event_now(), Ordering::Relaxed);
    }

    fn note_quiescent(&self) {
        // Relaxed: a statistic (see `last_quiescent`).
        self.last_quiescent.fetch_max(self.event_now(), Ordering::Relaxed);
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
        slot.stale_cache_refills.store(0, Ordering::Relaxed);
        // Release: pairs with the Acquire in `live`.
        slot.run.store(RunState::Running, Ordering::Release);
        self.online(slot);
        Ok(index)
    }

    pub(crate) fn release(&self, index: usize) {
        let _list = self.lock();
        let slot = &self.slots[index];
        self.note_quiescent();
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
        // An exited task no longer holds a transition nor a grace period.
        self.doorbell.ring();
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
        let migrated = slot.pending.load(Ordering::Relaxed) && slot.pending.swap(false, Ordering::Acquire);
        if migrated {
            self.migrate_at_safe_point(slot);
        }
        // Acquire: pairs with the AcqRel `fetch_add` in `gp_start`, so that the next critical
        // section sees everything the writer did before that grace period. Release store: pairs
        // with the Acquire in `gp_elapsed`; every load of the critical section that ends here
        // happens before the writer reclaims anything it retired before the grace period.
        let gp = self.gp.load(Ordering::Acquire);
        // Relaxed: `qs` is this task's own word (only its thread writes it while it is online).
        // A different number means this safe point is the task's first in a new grace period:
        // it may be the one that ends it.
        let passed = slot.qs.load(Ordering::Relaxed) != gp;
        if passed {
            self.note_quiescent();
        }
        slot.qs.store(gp, Ordering::Release);
        if migrated || passed {
            // After both stores: the ring's fence orders them before its sleeper check.
            self.doorbell.ring();
        }
    }

    /// The migrating half of a safe point, out of line: it runs once per task per transition.
    #[cold]
    #[inline(never)]
    fn migrate_at_safe_point(&self, slot: &TaskState) {
        self.note_migration();
        let target = self.target.load(Ordering::Relaxed);
        // Release: pairs with the Acquire load in `migrate_parked` that counts this task as
        // migrated, so that the time noted just above is seen with it (a statistic, but a
        // migration phase that ends before its last migration would be a wrong one).
        slot.state.store(target, Ordering::Release);
        self.at_safe_point.fetch_add(1, Ordering::Relaxed);
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
        self.note_quiescent();
        // Release: pairs with the Acquire in `gp_elapsed` (a parked task is quiescent).
        slot.qs.store(OFFLINE, Ordering::Release);
        // A parked task may end a grace period, and the patcher may now migrate it.
        self.doorbell.ring();
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
        if forced > 0 {
            self.note_migration();
        }
        forced
    }

    /// One pass of `klp_try_complete_transition`: migrates parked tasks whose "stack" is clean and
    /// returns (tasks migrated now, tasks still not at the target).
    pub(crate) fn migrate_parked(&self, affected: impl Fn(SiteId) -> bool) -> (usize, usize) {
        let target = self.target.load(Ordering::Relaxed);
        let (mut migrated, mut pending) = (0, 0);
        for slot in self.live() {
            // Acquire: pairs with the Release store of the state in `migrate_at_safe_point`, so
            // that the migration's time is seen with it (a statistic: see there).
            if slot.state.is(target, Ordering::Acquire) {
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
                self.note_migration();
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

/// The wake-up protocol under loom (`scripts/loom`): a writer that sleeps on the doorbell until a
/// transition advances is always woken. loom's `park` has no timeout, so a lost wake-up leaves the
/// writer parked for ever, which loom reports as a deadlock.
///
/// These models have no `should_panic` control: loom aborts the process on a deadlock while a
/// thread is parked, which libtest cannot catch. Remove the ring's fence, or make `wait` skip
/// its `check`, and both models abort with "deadlock" (done when this protocol was written).
#[cfg(all(test, loom))]
mod loom_doorbell {
    use super::*;
    use crate::sync::Arc;

    /// The writer waits for `done`, sleeping on the doorbell between checks, as
    /// `Patcher::wait_with` does once its spin window is over.
    fn wait_until(tasks: &Tasks, done: impl Fn() -> bool) {
        while tasks.doorbell.wait(Duration::MAX, || done().then_some(())).is_none() {}
    }

    /// The last task's safe point ends the migration: the writer waiting for it wakes.
    #[test]
    fn a_migrating_safe_point_wakes_the_writer() {
        loom::model(|| {
            let tasks = Arc::new(Tasks::new(1));
            let index = tasks.register(None).unwrap();
            let list = tasks.lock();
            tasks.init(&list, PatchState::Patched);
            tasks.start(&list);
            drop(list);
            let reader = {
                let tasks = tasks.clone();
                loom::thread::spawn(move || {
                    // SAFETY: (test) the slot lives as long as `tasks`, which this thread holds.
                    let slot = unsafe { tasks.slot(index).as_ref() };
                    tasks.safe_point(slot);
                })
            };
            wait_until(&tasks, || tasks.migrate_parked(|_| true).1 == 0);
            reader.join().unwrap();
        });
    }

    /// The last quiescent state of a grace period ends it: the writer waiting for it wakes.
    #[test]
    fn a_safe_point_in_a_new_grace_period_wakes_the_writer() {
        loom::model(|| {
            let tasks = Arc::new(Tasks::new(1));
            let index = tasks.register(None).unwrap();
            let gp = tasks.gp_start();
            let reader = {
                let tasks = tasks.clone();
                loom::thread::spawn(move || {
                    // SAFETY: (test) as above.
                    let slot = unsafe { tasks.slot(index).as_ref() };
                    tasks.safe_point(slot);
                })
            };
            wait_until(&tasks, || tasks.gp_elapsed(gp));
            reader.join().unwrap();
        });
    }
}
