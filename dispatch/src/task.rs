//! The task handle: what a registered thread calls sites through, one layer above the strategies
//! (it holds the strategy's per-task state) and one below the [`Patcher`](crate::Patcher), which
//! hands handles out. The per-task atomics it wraps live in [`task_list`](crate::task_list).

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;

use crate::model::{Code, Error, PatchState, SiteId};
use crate::strategy::Strategy;
use crate::sync::{Arc, thread_token};
use crate::task_list::{TaskState, Tasks};

/// The patched program, as the patcher and every task hold it: the strategy that redirects its
/// calls, its task list and its sites' original code.
pub(crate) struct Program<S> {
    pub(crate) strategy: S,
    pub(crate) tasks: Tasks,
    pub(crate) originals: Box<[Code]>,
}

/// A registered task: the handle its thread calls sites through.
///
/// A `Task` may be moved to another thread before first use (that is how [`Task::spawn_child`]
/// hands a child to its new thread); the first thread to call [`Task::safe_point`], [`Task::park`],
/// [`Task::unpark`] or [`Task::spawn_child`] owns it, and any other thread gets
/// [`Error::WrongThread`]. The read path [`Task::call`] does not check ownership: it must stay as
/// cheap as the kernel handler's `current->patch_state` load.
pub struct Task<S: Strategy> {
    /// First, so that it is dropped before `program`: a strategy's reader state may point into the
    /// strategy (`arcswap`'s caches do), and must not outlive it.
    local: S::TaskLocal,
    program: Arc<Program<S>>,
    slot: NonNull<TaskState>,
    index: usize,
    /// The owning thread's token, 0 until first use.
    owner: Cell<u64>,
    /// Tasks are per-thread: not Sync.
    _not_sync: PhantomData<Cell<()>>,
}

// SAFETY: `slot` points into `program.tasks.slots`, a boxed slice that lives as long as the `Arc`
// this handle holds and whose fields are all atomics; the handle is not Sync, so it is used by one
// thread at a time, and `S::TaskLocal: Send` covers the rest.
unsafe impl<S: Strategy> Send for Task<S> {}

impl<S: Strategy> Task<S> {
    pub(crate) fn register(program: &Arc<Program<S>>, parent: Option<&TaskState>) -> Result<Self, Error> {
        let index = program.tasks.register(parent)?;
        Ok(Self {
            slot: program.tasks.slot(index),
            index,
            owner: Cell::new(thread_token()),
            local: program.strategy.task_local(),
            program: Arc::clone(program),
            _not_sync: PhantomData,
        })
    }

    #[inline(always)]
    fn state(&self) -> &TaskState {
        // SAFETY: see `unsafe impl Send`: the slot outlives `self.program`, which we hold.
        unsafe { self.slot.as_ref() }
    }

    /// Test-only: this task's shared state, for test strategies that watch it from the engine.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn state_for_test(&self) -> *const TaskState {
        self.slot.as_ptr()
    }

    fn check_owner(&self) -> Result<(), Error> {
        let me = thread_token();
        match self.owner.get() {
            0 => {
                self.owner.set(me);
                Ok(())
            }
            o if o == me => Ok(()),
            _ => Err(Error::WrongThread),
        }
    }

    /// Resolves `site` for this task and calls it, in a critical section of its own. Always
    /// inlined, like every strategy's `call`.
    #[inline(always)]
    pub fn call(&self, site: SiteId, arg: u64) -> u64 {
        self.program.strategy.call_alone(&self.local, self.state(), site, arg)
    }

    /// [`call`](Task::call) for a site known at compile time.
    #[inline(always)]
    pub fn call_at<const SITE: usize>(&self, arg: u64) -> u64 {
        let strategy = &self.program.strategy;
        strategy.call_at::<SITE>(&strategy.enter(&self.local), self.state(), arg)
    }

    /// Opens a critical section: the calls between two safe points, which must all resolve in one
    /// universe ([`Invariant::OneUniverse`](crate::docs::Invariant::OneUniverse)). The section
    /// borrows the task, so no safe point (nor park, nor fork) can happen until it ends; that is
    /// what lets a strategy keep some of what it reads for the whole section (see
    /// [`ReadSide`](crate::strategy::ReadSide)).
    ///
    /// ```
    /// use dispatch::{Patcher, PatcherConfig, SiteId, check::code, strategy::klp::Klp};
    /// let p = Patcher::<Klp>::new(&[code(0)], PatcherConfig::default());
    /// let mut task = p.register().unwrap();
    /// let section = task.enter();
    /// section.call(SiteId(0), 0);
    /// drop(section);
    /// task.safe_point().unwrap();
    /// ```
    ///
    /// A safe point inside the section does not compile:
    ///
    /// ```compile_fail,E0502
    /// use dispatch::{Patcher, PatcherConfig, SiteId, check::code, strategy::klp::Klp};
    /// let p = Patcher::<Klp>::new(&[code(0)], PatcherConfig::default());
    /// let mut task = p.register().unwrap();
    /// let section = task.enter();
    /// task.safe_point().unwrap();
    /// section.call(SiteId(0), 0);
    /// ```
    #[inline(always)]
    pub fn enter(&mut self) -> CriticalSection<'_, S> {
        let strategy = &self.program.strategy;
        CriticalSection { strategy, guard: strategy.enter(&self.local), state: self.state(), _not_sync: PhantomData }
    }

    /// A safe point: migrate if a transition is pending for this task, then report a quiescent
    /// state. Between two safe points every call resolves in one universe
    /// ([`Invariant::OneUniverse`](crate::docs::Invariant::OneUniverse)).
    #[inline]
    pub fn safe_point(&self) -> Result<(), Error> {
        self.check_owner()?;
        self.program.tasks.safe_point(self.state());
        Ok(())
    }

    /// Sleeps outside any site: quiescent for grace periods, and migratable by the patcher.
    pub fn park(&self) -> Result<(), Error> {
        self.check_owner()?;
        self.program.tasks.park(self.state(), None)
    }

    /// Sleeps inside `site` (a patched function on the stack): quiescent for grace periods, but a
    /// transition that touches `site` cannot migrate it (the kernel's -EADDRINUSE stack check).
    pub fn park_in(&self, site: SiteId) -> Result<(), Error> {
        self.check_owner()?;
        self.program.tasks.park(self.state(), Some(site))
    }

    pub fn unpark(&self) -> Result<(), Error> {
        self.check_owner()?;
        self.program.tasks.unpark(self.state())
    }

    /// Creates a task that inherits this task's state and pending flag (fork,
    /// [`Invariant::Inheritance`](crate::docs::Invariant::Inheritance)). Move
    /// it to the new thread; its first use there makes that thread its owner.
    pub fn spawn_child(&self) -> Result<Self, Error> {
        self.check_owner()?;
        let mut child = Self::register(&self.program, Some(self.state()))?;
        child.owner = Cell::new(0);
        Ok(child)
    }

    pub fn patch_state(&self) -> PatchState {
        self.state().patch_state()
    }

    pub fn is_pending(&self) -> bool {
        self.state().is_pending()
    }

    /// Refills of a cache strategy's stale cache on this task's reads (`percpu`, `tls`).
    pub fn stale_cache_refills(&self) -> u64 {
        self.state().stale_cache_refills()
    }

    /// How often this task saw a transition while Idle
    /// ([`Invariant::TriState`](crate::docs::Invariant::TriState)); must stay 0.
    pub fn idle_in_transition(&self) -> u64 {
        self.state().idle_in_transition()
    }
}

/// An open critical section of a task ([`Task::enter`]); it ends when dropped.
pub struct CriticalSection<'a, S: Strategy> {
    strategy: &'a S,
    guard: S::Guard<'a>,
    state: &'a TaskState,
    /// A task's section is its own thread's, like the task: not Sync.
    _not_sync: PhantomData<Cell<()>>,
}

impl<'a, S: Strategy> CriticalSection<'a, S> {
    /// Resolves `site` for the task and calls it.
    #[inline(always)]
    pub fn call(&self, site: SiteId, arg: u64) -> u64 {
        self.strategy.call(&self.guard, self.state, site, arg)
    }

    /// [`call`](CriticalSection::call) for a site known at compile time: where this is inlined,
    /// the site's call instruction serves that site alone (see [`loops`](crate::loops)).
    #[inline(always)]
    pub fn call_at<const SITE: usize>(&self, arg: u64) -> u64 {
        self.strategy.call_at::<SITE>(&self.guard, self.state, arg)
    }

    /// What a read needs, borrowed once: the strategy, its guard of this section and the task's
    /// shared state. A measured loop that takes them as separate arguments lets the compiler keep
    /// the strategy's fields and the guard in registers across the calls it makes (see
    /// [`loops`](crate::loops)); through a reference to a struct it reloads them after every
    /// call.
    #[inline(always)]
    pub fn read_parts(&self) -> (&'a S, &S::Guard<'a>, &'a TaskState) {
        (self.strategy, &self.guard, self.state)
    }
}

impl<S: Strategy> fmt::Debug for CriticalSection<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CriticalSection").field("strategy", &S::INFO.name).finish_non_exhaustive()
    }
}

impl<S: Strategy> Drop for Task<S> {
    /// An exiting task stops blocking transitions and grace periods at once.
    fn drop(&mut self) {
        self.program.tasks.release(self.index);
    }
}

impl<S: Strategy> fmt::Debug for Task<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("index", &self.index)
            .field("strategy", &S::INFO.name)
            .field("state", &self.patch_state())
            .field("pending", &self.is_pending())
            .finish()
    }
}
