//! The strategies: one trait split by side, and the one registry every consumer uses.
//!
//! Each strategy is one file; [`Info::description`] is its one-line trade-off (what `harness
//! list` prints and the README's table repeats, checked by a test), and its module documents how
//! its read path works and which of its atomics carry each [`Barrier`](crate::docs::Barrier). The
//! registry's order is [`for_each_strategy!`](crate::for_each_strategy)'s. What several strategies share lives in
//! `blocks`: the func-stack walk (`klp`, `epoch`), the per-site seqlock (`seqlock`, and the
//! caches' source of truth), the cache's source and generation (`percpu`, `tls`) and the atomic
//! code pointer.
//!
//! The reader side ([`ReadSide`]) is the measured hot path: `#[inline(always)]`, no allocation, no
//! syscall, no lock (except in lock baselines). Every per-task strategy picks a version through
//! [`TaskState::version`], the one selection rule. The writer side ([`WriteSide`]) is driven only
//! by the one transition engine ([`Patcher`](crate::Patcher)), which runs the kernel's protocol
//! for every strategy and tells each strategy what changed ([`StackChange`]). Per-task reader
//! state (the home of per-thread caches) is [`ReadSide::TaskLocal`], made when a task registers.

pub mod arcswap;
pub(crate) mod blocks;
pub mod direct;
pub mod epoch;
pub mod fnptr;
pub mod kgraft;
pub mod klp;
pub mod percpu;
pub mod rwlock;
pub mod seqlock;
pub mod textpoke;
pub mod tls;

use std::fmt;

use crate::model::{Code, FuncId, SiteId, StackEntry};
use crate::task_list::TaskState;

/// What a strategy promises about the functions a task sees between two safe points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// Not patchable at all (the `direct` floor).
    NotPatchable,
    /// Every change is seen by every task at once; tasks may mix versions (expected to fail the
    /// consistency check under transitions).
    Immediate,
    /// The kernel's per-task consistency model ([`Invariant::OneUniverse`](crate::docs::Invariant::OneUniverse)).
    PerTask,
}

impl Consistency {
    pub fn name(self) -> &'static str {
        match self {
            Self::NotPatchable => "n/a",
            Self::Immediate => "immediate",
            Self::PerTask => "per-task",
        }
    }
}

/// A strategy's registry entry.
#[derive(Clone, Copy, Debug)]
pub struct Info {
    pub name: &'static str,
    /// One line: what the read path does and what it costs. The README's strategy table repeats
    /// it word for word (a test checks it), so this is the one place to change it.
    pub description: &'static str,
    pub consistency: Consistency,
    /// Whether this machine can run the strategy. Most can anywhere ([`always_available`]);
    /// `textpoke` needs x86-64 Linux and an OS that lets it patch its own code. Consumers call
    /// [`Info::availability`], which adds the `DISPATCH_UNAVAILABLE` override.
    pub probe: fn() -> Result<(), Unavailable>,
    /// What the strategy's figures depend on in this machine, for the run's environment record
    /// (`harness env`, run.json, report.md): how `percpu` reads the CPU id, how `textpoke` made its
    /// call instructions writable. Most depend on nothing of the kind ([`no_machine_fact`]).
    pub machine_fact: fn() -> Option<MachineFact>,
}

/// A fact about this machine that one strategy's figures depend on ([`Info::machine_fact`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MachineFact {
    /// What it is about, in a few words (`cpu id`, `text`).
    pub what: &'static str,
    pub value: String,
    /// Set where the fact makes the strategy slower or less representative here than it is
    /// elsewhere, saying so and what to change.
    pub warning: Option<String>,
}

/// The machine fact of every strategy that depends on nothing a machine may lack.
pub fn no_machine_fact() -> Option<MachineFact> {
    None
}

impl Info {
    /// Whether this machine can run the strategy, and if not, why (what is missing and what to
    /// change). Harness runs, benches and tests skip an unavailable strategy with this reason
    /// instead of failing. A strategy named in the environment variable `DISPATCH_UNAVAILABLE`
    /// (a comma-separated list) is unavailable whatever its probe says: how the skip paths are
    /// tested on machines where every strategy runs.
    pub fn availability(&self) -> Result<(), Unavailable> {
        if let Ok(list) = std::env::var(UNAVAILABLE_VAR)
            && list.split(',').any(|n| n.trim() == self.name)
        {
            return Err(Unavailable(format!("named in {UNAVAILABLE_VAR}; unset it (or drop the name) to run it")));
        }
        (self.probe)()
    }
}

/// The environment variable that marks strategies unavailable on purpose ([`Info::availability`]).
pub const UNAVAILABLE_VAR: &str = "DISPATCH_UNAVAILABLE";

/// The probe of every strategy that runs anywhere.
pub fn always_available() -> Result<(), Unavailable> {
    Ok(())
}

/// For tests and benches that run every strategy of the registry: whether `info`'s strategy is
/// unavailable here, having said so on stderr (`"<name>: skipped: <reason>"`); the caller then
/// returns without running it. A skip is not a failure: the strategy cannot run on this machine,
/// and the line says why and what to change. Calls [`Info::availability`] (its probe) each time.
pub fn skip_if_unavailable(info: &Info) -> bool {
    match info.availability() {
        Ok(()) => false,
        Err(why) => {
            eprintln!("{}: skipped: {why}", info.name);
            true
        }
    }
}

/// Whether each strategy of the registry can run on this machine, probed once and kept for the
/// process. Programs probe at the very start of `main`, while they have a single thread: a probe
/// may do one-time set-up that costs far more once a second thread exists (registering for
/// membarrier), and probing again could give another answer in the middle of a run.
#[derive(Clone, Debug)]
pub struct Availability {
    /// Every registry entry, in registry order, with its probe's result.
    entries: Vec<(&'static str, Result<(), Unavailable>)>,
}

impl Availability {
    /// Calls [`Info::availability`] of every strategy of the registry, once each (the
    /// `DISPATCH_UNAVAILABLE` override included).
    pub fn probe() -> Self {
        Self::from_entries(ALL.iter().map(|i| (i.name, i.availability())).collect())
    }

    /// Given results, in registry order (for tests of what consumes them).
    pub fn from_entries(entries: Vec<(&'static str, Result<(), Unavailable>)>) -> Self {
        Self { entries }
    }

    /// Why `name` cannot run here; `None` when it can (or is not in the registry).
    pub fn reason(&self, name: &str) -> Option<&str> {
        self.entries.iter().find(|(n, _)| *n == name).and_then(|(_, r)| r.as_ref().err()).map(|u| u.0.as_str())
    }

    /// Whether `name` can run here.
    pub fn runs(&self, name: &str) -> bool {
        self.reason(name).is_none()
    }

    /// The strategies this machine cannot run, with why, in registry order.
    pub fn unavailable(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.entries.iter().filter_map(|(n, r)| r.as_ref().err().map(|u| (*n, u.0.as_str())))
    }
}

/// Why a strategy cannot run on this machine: what is missing, and what would make it run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unavailable(pub String);

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unavailable {}

/// What the engine changed on one site's func stack. `stack` is the whole stack *after* the
/// change, oldest first, so snapshot strategies can republish it and list-based ones can apply
/// the single `op`.
#[derive(Clone, Copy, Debug)]
pub struct StackChange<'a> {
    pub op: StackOp,
    pub stack: &'a [StackEntry],
    pub original: Code,
}

/// The three func-stack operations of the kernel's writer side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackOp {
    /// `list_add_rcu`: `stack.last()` is the new head; its `transition` is already set.
    Push,
    /// `list_del_rcu` of this func (anywhere in the stack). It may be reclaimed only by the next
    /// [`WriteSide::reclaim`], which the engine calls after a grace period.
    Remove(FuncId),
    /// `func->transition = x` for this func; the new value is in `stack`.
    SetTransition(FuncId),
}

/// The hot path: resolve a site for the calling task and call it.
///
/// A task calls sites inside critical sections: the stretch between two of its safe points
/// ([`Task::enter`](crate::Task::enter) opens one and borrows the task, so no safe point can
/// happen inside). [`enter`](ReadSide::enter) runs once per section and returns the strategy's
/// [`Guard`](ReadSide::Guard): what it keeps for the whole section (`tls` and `percpu` a writer
/// generation, `percpu` its CPU's slot, `epoch` a pin); [`call`](ReadSide::call) runs per call
/// with it.
///
/// A generation kept for a section lets the section miss the writer's later changes. That is
/// sound because such a view can be stale but never wrong for the task that holds it:
/// - every stack change leaves each task's choice unchanged *given that task's state*: a func is
///   pushed in transition (only tasks already at the target pick it), and a transition flag is
///   cleared or a func unlinked only once every task has reached the target;
/// - a task's own state changes only at its safe points, which are outside every section;
/// - the engine changes every task's state only at a transition's start, before any flag shows
///   the transition ([`Barrier::StatesBeforeFlag`](crate::docs::Barrier::StatesBeforeFlag)), and
///   back to Idle only a grace period after the last flag was cleared, when every section that
///   could still see a flag has ended.
///
/// So whatever a section sees, old or new, is what the task's current state selects. An engine
/// change that broke one of these three (a state change without a grace period, say) would make
/// per-section views wrong; the torture engine's sections span many calls to catch it.
pub trait ReadSide {
    /// Per-task reader state, created once per task (per-thread caches live here).
    type TaskLocal: Send;

    /// What the strategy holds for one critical section of a task: made by
    /// [`enter`](ReadSide::enter), passed to every call of the section, dropped when it ends.
    type Guard<'a>
    where
        Self: 'a;

    fn task_local(&self) -> Self::TaskLocal;

    /// Opens a critical section of the task whose reader state is `local`.
    fn enter<'a>(&'a self, local: &'a Self::TaskLocal) -> Self::Guard<'a>;

    /// Resolves `site` for the task whose state is `task`, inside the critical section that
    /// `guard` was made for, and calls the result with `arg`.
    fn call(&self, guard: &Self::Guard<'_>, task: &TaskState, site: SiteId, arg: u64) -> u64;

    /// [`call`](ReadSide::call) for a site known at compile time. Inlined into a section that
    /// calls each site from its own call instruction (see [`loops`](crate::loops)), the
    /// site's index becomes a constant, as at a kernel call site that always calls one function.
    /// A strategy overrides it only where a constant site changes what it can do (`direct`).
    #[inline(always)]
    fn call_at<const SITE: usize>(&self, guard: &Self::Guard<'_>, task: &TaskState, arg: u64) -> u64 {
        self.call(guard, task, SiteId(SITE as u32), arg)
    }

    /// One call in a critical section of its own (what tests and [`Task::call`](crate::Task::call)
    /// use).
    #[inline(always)]
    fn call_alone(&self, local: &Self::TaskLocal, task: &TaskState, site: SiteId, arg: u64) -> u64 {
        self.call(&self.enter(local), task, site, arg)
    }
}

/// The read side's state of a strategy that keeps none: no per-task state and nothing to set up
/// per critical section (seven strategies; stable Rust has no associated type defaults to say it
/// in the trait). Inside `impl ReadSide for …`, before the strategy's own `call`.
macro_rules! stateless_read_side {
    () => {
        type TaskLocal = ();
        type Guard<'a> = ();

        fn task_local(&self) {}

        fn enter(&self, _local: &()) {}
    };
}
pub(crate) use stateless_read_side;

/// The slow path, driven by the transition engine under its lock (one writer at a time).
pub trait WriteSide {
    fn apply(&self, site: SiteId, change: StackChange<'_>);

    /// Ends a batch of [`apply`](WriteSide::apply) calls. The engine calls it once after each
    /// step's changes and before it acts on them (marks tasks pending, starts a grace period,
    /// reports the transition done), so a strategy that publishes in batches makes the whole
    /// batch visible here: `textpoke` stores every call instruction of a step, then serializes
    /// every core once. The kernel's analogue is the sync that ends a batch of text pokes.
    fn finish_batch(&self) {}

    /// Called after a grace period: everything removed before it began may be reclaimed. Where
    /// removed memory stays visible to racing readers, it is poisoned here and freed one grace
    /// period later, so that a reader who still reaches it runs [`crate::check::poisoned`].
    fn reclaim(&self) {}
}

/// A complete strategy: both sides plus its registry entry.
///
/// Keep a strategy's own fields immutable, and put whatever its writer changes (atomics, locks)
/// behind a pointer (a `Box` or the slice it already owns). A type with no interior mutability of
/// its own lets the compiler keep its table pointers in registers across the calls of a
/// section (see [`loops`](crate::loops)), as a kernel call site keeps its operands; one
/// mutex or atomic directly in the struct made `klp`, `epoch`, `tls` and `percpu` reload them
/// after every call while `fnptr` did not.
pub trait Strategy: ReadSide + WriteSide + Send + Sync + Sized + 'static {
    const INFO: Info;

    /// A strategy for sites whose original implementations are `originals` (index = [`SiteId`]).
    fn new(originals: &[Code]) -> Self;
}

/// Code to run once per strategy, monomorphised (the registry's way to reach a strategy by name
/// without dynamic dispatch inside what it runs).
pub trait Visitor {
    type Output;
    fn visit<S: Strategy>(&mut self) -> Self::Output;
}

/// A name that is not in the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownStrategy(pub String);

impl fmt::Display for UnknownStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = ALL.iter().map(|i| i.name).collect();
        write!(f, "unknown strategy {:?}; valid names: {}", self.0, names.join(", "))
    }
}

impl std::error::Error for UnknownStrategy {}

/// The registry, written once. Calls `$callback! { name: path::Type, ... }` with every strategy,
/// in the order of the README's table; tests use it to instantiate one test per strategy.
#[macro_export]
macro_rules! for_each_strategy {
    ($callback:ident) => {
        $callback! {
            direct: $crate::strategy::direct::Direct,
            fnptr: $crate::strategy::fnptr::Fnptr,
            klp: $crate::strategy::klp::Klp,
            kgraft: $crate::strategy::kgraft::Kgraft,
            textpoke: $crate::strategy::textpoke::Textpoke,
            arcswap: $crate::strategy::arcswap::ArcSwapSelections,
            seqlock: $crate::strategy::seqlock::SeqLock,
            percpu: $crate::strategy::percpu::PerCpu,
            tls: $crate::strategy::tls::Tls,
            epoch: $crate::strategy::epoch::Epoch,
            rwlock: $crate::strategy::rwlock::RwLockSelections,
        }
    };
}

macro_rules! define_registry {
    ($($name:ident : $ty:path),* $(,)?) => {
        /// Every strategy's [`Info`], in registry order.
        pub const ALL: &[Info] = &[$(<$ty as Strategy>::INFO),*];

        /// Runs `visitor` monomorphised for the strategy called `name`.
        pub fn visit<V: Visitor>(name: &str, visitor: &mut V) -> Result<V::Output, UnknownStrategy> {
            $(if name == <$ty as Strategy>::INFO.name {
                return Ok(visitor.visit::<$ty>());
            })*
            Err(UnknownStrategy(name.to_owned()))
        }

        /// Runs `visitor` for every strategy, in registry order.
        pub fn visit_all<V: Visitor>(visitor: &mut V) -> Vec<V::Output> {
            vec![$(visitor.visit::<$ty>()),*]
        }
    };
}

for_each_strategy!(define_registry);

/// The floor every ratio is taken against: a relaxed load of a function pointer and an indirect
/// call, the cheapest redirection that can be patched at all. Harness, benches and reports name it
/// through this constant.
pub const BASELINE: &str = <fnptr::Fnptr as Strategy>::INFO.name;

/// Looks a strategy up by name.
pub fn info(name: &str) -> Result<Info, UnknownStrategy> {
    ALL.iter().copied().find(|i| i.name == name).ok_or_else(|| UnknownStrategy(name.to_owned()))
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::check::{code, fingerprint};

    /// An Idle task on a transition's read path (which the engine never makes: it sets every
    /// task's state before the first flag is visible) is counted by every per-task strategy, as
    /// [`Invariant::TriState`](crate::docs::Invariant::TriState) requires, and runs the head.
    fn idle_in_transition_is_counted<S: Strategy>() {
        if skip_if_unavailable(&S::INFO) || S::INFO.consistency != Consistency::PerTask {
            return;
        }
        let s = S::new(&[code(0)]);
        let stack = [StackEntry { func: FuncId(1), code: code(1), nop: false, transition: true }];
        s.apply(SiteId(0), StackChange { op: StackOp::Push, stack: &stack, original: code(0) });
        let (local, task) = (s.task_local(), TaskState::new());
        assert_eq!(s.call_alone(&local, &task, SiteId(0), 0), fingerprint(1), "{}: the head runs", S::INFO.name);
        assert_eq!(s.call_alone(&local, &task, SiteId(0), 0), fingerprint(1));
        assert_eq!(task.idle_in_transition(), 2, "{}: an Idle task inside a transition went uncounted", S::INFO.name);
        // Outside a transition an Idle task is what every task is: nothing to count.
        let settled = [StackEntry { transition: false, ..stack[0] }];
        s.apply(SiteId(0), StackChange { op: StackOp::SetTransition(FuncId(1)), stack: &settled, original: code(0) });
        s.call_alone(&local, &task, SiteId(0), 0);
        assert_eq!(task.idle_in_transition(), 2, "{}: counted outside a transition", S::INFO.name);
    }

    macro_rules! per_strategy {
        ($($name:ident : $ty:path),* $(,)?) => {
            $(
                #[test]
                fn $name() {
                    idle_in_transition_is_counted::<$ty>();
                }
            )*
        };
    }

    mod idle_in_transition {
        use super::*;
        for_each_strategy!(per_strategy);
    }
}
