//! The Patcher: the kernel's transition engine, written once and generic over the strategy. It
//! keeps the authoritative func stacks, runs one transition at a time
//! ([`Invariant::OneTransition`]), and tells the strategy what changed; the strategy decides only
//! how readers see it.
//!
//! A transition moves through three phases, advanced by [`Patcher::try_complete`] (non-blocking,
//! like one run of `klp_try_complete_transition`) or [`Patcher::wait`]:
//!
//! 1. *Migrating*: tasks reach the target at their safe points, or while parked, or by force.
//! 2. *Reversing* (only after [`Patcher::reverse`]): pending flags cleared, waiting for a grace
//!    period before the target flips.
//! 3. *Settling*: every task is at the target. Target Patched: replaced patches and nops are
//!    unlinked, `transition` cleared, then a grace period, then every task back to Idle
//!    (transition=0 → sync → Idle). Target Unpatched: the patch's funcs are unlinked, then a grace
//!    period, then Idle (unlink → sync → transition=0). Either way, what was unlinked is reclaimed
//!    by that grace period.
//!
//! Grace periods are polled, never blocked on (`start_poll_synchronize_rcu`-style), so neither
//! `try_complete` nor the engine's lock ever waits for a task. A writer that must wait
//! ([`Patcher::wait`], [`Patcher::wait_with`]) spins briefly after each change, then sleeps until
//! the task that makes progress wakes it (see `task_list`, *Waking the writer*).
//!
//! Each transition's time is split into [`Phases`], in the kernel's terms, so that a latency can be
//! read as the strategy's work, the tasks' progress or the writer's own delay.
//!
//! [`Invariant::OneTransition`]: crate::docs::Invariant::OneTransition

use std::fmt;
use std::time::{Duration, Instant};

use crate::model::{Code, Error, Forbidden, FuncId, Op, PatchId, PatchSpec, PatchState, SiteId, StackEntry, select};
use crate::strategy::{StackChange, StackOp, Strategy};
use crate::sync::{Arc, Mutex, MutexGuard, spin_hint};
use crate::task::{Program, Task};
use crate::task_list::Tasks;

/// How patches may stack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Stacking {
    /// v5.1 and later: no order rule; the most recently enabled patch wins.
    #[default]
    Free,
    /// Before v5.1: only the most recently enabled patch may be disabled.
    Strict,
}

#[derive(Clone, Copy, Debug)]
pub struct PatcherConfig {
    /// Task slots; registering more tasks fails with [`Error::TooManyTasks`].
    pub capacity: usize,
    pub stacking: Stacking,
}

impl Default for PatcherConfig {
    fn default() -> Self {
        Self { capacity: 256, stacking: Stacking::Free }
    }
}

/// What one transition did and how long it took.
#[derive(Clone, Debug)]
pub struct TransitionStats {
    /// Counts transitions of this patcher from 1.
    pub id: u64,
    pub patch: PatchId,
    pub op: Op,
    /// The state every task ended in before going Idle.
    pub target: PatchState,
    pub started: Instant,
    /// When the transition completed; `None` while it is in progress.
    pub ended: Option<Instant>,
    pub migrated_at_safe_point: u64,
    pub migrated_while_parked: u64,
    pub migrated_by_force: u64,
    pub reversals: u32,
    pub forced: bool,
    pub grace_periods: u32,
    /// Time from starting each grace period to seeing it elapse, summed.
    pub grace_period_wait: Duration,
    /// Where the time between `started` and `ended` went.
    pub phases: Phases,
}

/// A transition's time, phase by phase, in the kernel's terms. The phases follow one another,
/// each starting where the previous one ended, so that for a transition that was not reversed
/// they add up to its duration exactly; a reversal's grace period counts as `grace`, and the flip
/// after it as `start`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Phases {
    /// `klp_init_transition` and `klp_start_transition`: states and `transition` flags set, funcs
    /// published, the strategy's batch ended, tasks marked pending.
    pub start: Duration,
    /// From the start to the last task's migration (its safe point, or its migration while
    /// parked or by force): how long the slowest task held the transition.
    pub migrate: Duration,
    /// From the event that ended a phase (the last migration, the last quiescent state of a grace
    /// period) to the writer acting on it: the writer's own delay, summed over both.
    pub notice: Duration,
    /// `klp_complete_transition` up to its grace period: replaced funcs and nops unlinked, flags
    /// cleared (or the patch's funcs unlinked), and the strategy's batch ended.
    pub complete: Duration,
    /// `klp_synchronize_transition`: from starting each grace period to the last task's
    /// quiescent state in it (a reversal's included).
    pub grace: Duration,
    /// After the last grace period: every task back to Idle, the unlinked funcs reclaimed.
    pub settle: Duration,
    /// The strategy's own batch work (`finish_batch`: for textpoke its membarriers), wherever it
    /// ran: it is part of `start` and `complete`, not added to the total.
    pub batch: Duration,
}

impl Phases {
    /// Every phase by name, in order, `batch` last (it overlaps the others).
    pub const NAMES: [&'static str; 7] = ["start", "migrate", "notice", "complete", "grace", "settle", "batch"];

    /// The phases in the order of [`Phases::NAMES`].
    pub fn values(&self) -> [Duration; 7] {
        [self.start, self.migrate, self.notice, self.complete, self.grace, self.settle, self.batch]
    }

    /// The sum of the phases that follow one another (every one but `batch`).
    pub fn total(&self) -> Duration {
        self.start + self.migrate + self.notice + self.complete + self.grace + self.settle
    }

    /// Splits the span from `since` to `seen`, which ended with an event at `event` (if the tasks
    /// noted one after `since`), into the phase's own part and the writer's notice.
    fn split(since: Instant, event: Option<Instant>, seen: Instant) -> (Duration, Duration) {
        let event = event.filter(|&e| e > since).unwrap_or(since).min(seen);
        (event - since, seen - event)
    }
}

impl TransitionStats {
    pub fn duration(&self) -> Option<Duration> {
        self.ended.map(|e| e - self.started)
    }

    /// Whether the operation took effect: its transition ended at the target the operation set
    /// out for (Patched for an enable or replace, Unpatched for a disable). A reversed transition
    /// ends at the other one, and every patch is as it was before the operation.
    pub fn finished_forward(&self) -> bool {
        let forward = if self.op == Op::Disable { PatchState::Unpatched } else { PatchState::Patched };
        self.target == forward
    }
}

/// How [`Patcher::wait_with`] waits: it spins for `spin` after every change of progress (tasks
/// pass safe points every few microseconds while they run, so most phases end within it), then
/// sleeps until a task that made progress wakes it, for at most `nap` at a time: a bound only on
/// how long the caller's `give_up` goes unasked, since every event that can let a transition
/// advance wakes the writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Waiting {
    pub spin: Duration,
    pub nap: Duration,
}

impl Default for Waiting {
    fn default() -> Self {
        Self { spin: Duration::from_micros(20), nap: Duration::from_millis(1) }
    }
}

/// What distinguishes one [`Progress`] from the next for [`Patcher::wait_with`]: its phase and,
/// while migrating, how many tasks are left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Over,
    Migrating(usize),
    Reversing,
    Settling,
}

impl Stage {
    fn of(p: &Progress) -> Self {
        match p {
            Progress::NoTransition | Progress::Done(_) => Stage::Over,
            Progress::Migrating { pending } => Stage::Migrating(*pending),
            Progress::Reversing => Stage::Reversing,
            Progress::Settling => Stage::Settling,
        }
    }
}

/// Where a transition stands after a call to [`Patcher::try_complete`].
#[derive(Clone, Debug)]
pub enum Progress {
    /// No transition was in progress.
    NoTransition,
    /// Completed (possibly just now).
    Done(TransitionStats),
    /// Waiting for `pending` tasks to reach the target.
    Migrating { pending: usize },
    /// Reversed; waiting for the grace period before the target flips.
    Reversing,
    /// Every task migrated; waiting for the final grace period.
    Settling,
}

#[derive(Debug)]
struct PatchRecord {
    spec: PatchSpec,
    /// Funcs of this patch on the stacks now, nops included.
    live: Vec<(SiteId, FuncId)>,
    forced: bool,
}

#[derive(Clone, Copy, Debug)]
enum Phase {
    Migrating { since: Instant },
    Reversing { gp: u64, since: Instant },
    Settling { gp: u64, since: Instant },
}

#[derive(Debug)]
struct Transition {
    patch: PatchId,
    op: Op,
    target: PatchState,
    /// Whether any func needs per-task migration (false: every func is immediate).
    per_task: bool,
    /// Patches a replace discards when it completes as Patched.
    replaced: Vec<PatchId>,
    force: bool,
    phase: Phase,
    stats: TransitionStats,
}

/// A site's func stack, oldest first, with the patch that owns each entry.
#[derive(Debug, Default)]
struct Stack {
    entries: Vec<StackEntry>,
    owners: Vec<PatchId>,
}

#[derive(Debug)]
struct Engine {
    patches: Vec<Option<PatchRecord>>,
    stacks: Vec<Stack>,
    /// Enabled patches in enable order, oldest first (a patch joins when its enable starts and
    /// leaves when its disable completes).
    enabled: Vec<PatchId>,
    transition: Option<Transition>,
    last: Option<TransitionStats>,
    next_func: u32,
    transitions: u64,
}

/// The transition engine for strategy `S`.
pub struct Patcher<S: Strategy> {
    program: Arc<Program<S>>,
    engine: Mutex<Engine>,
    config: PatcherConfig,
}

impl<S: Strategy> fmt::Debug for Patcher<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Patcher").field("strategy", &S::INFO.name).field("config", &self.config).finish()
    }
}

impl<S: Strategy> Patcher<S> {
    /// A patcher over sites whose original implementations are `originals` (index = [`SiteId`]).
    pub fn new(originals: &[Code], config: PatcherConfig) -> Self {
        Self {
            program: Arc::new(Program {
                strategy: S::new(originals),
                tasks: Tasks::new(config.capacity),
                originals: originals.into(),
            }),
            engine: Mutex::new(Engine {
                patches: Vec::new(),
                stacks: originals.iter().map(|_| Stack::default()).collect(),
                enabled: Vec::new(),
                transition: None,
                last: None,
                next_func: 0,
                transitions: 0,
            }),
            config,
        }
    }

    pub fn sites(&self) -> usize {
        self.program.originals.len()
    }

    pub fn originals(&self) -> &[Code] {
        &self.program.originals
    }

    /// The strategy, for callers that drive its read side directly (benches).
    pub fn strategy(&self) -> &S {
        &self.program.strategy
    }

    /// Registers the calling thread as a task. During a transition it starts in the target state
    /// (it is at a safe point); use [`Task::spawn_child`] to inherit a parent's state instead.
    pub fn register(&self) -> Result<Task<S>, Error> {
        Task::register(&self.program, None)
    }

    fn engine(&self) -> MutexGuard<'_, Engine> {
        // A panic in the engine is a bug that the panic itself reports; the state is still the
        // last consistent one, because every mutation below is completed before the next check.
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Loads a patch (like inserting its module): checks it, and makes it available to enable.
    pub fn load(&self, spec: PatchSpec) -> Result<PatchId, Error> {
        let sites = self.sites();
        if spec.funcs.is_empty() {
            return Err(Error::EmptyPatch { name: spec.name });
        }
        let mut seen = vec![false; sites];
        for f in &spec.funcs {
            let slot = seen.get_mut(f.site.index()).ok_or(Error::UnknownSite { site: f.site, sites })?;
            if std::mem::replace(slot, true) {
                return Err(Error::DuplicateSite { name: spec.name.clone(), site: f.site });
            }
        }
        let mut e = self.engine();
        e.patches.push(Some(PatchRecord { spec, live: Vec::new(), forced: false }));
        Ok(PatchId(e.patches.len() as u32 - 1))
    }

    /// Unloads a disabled patch, releasing its code. A forced patch's code is pinned for ever.
    pub fn unload(&self, patch: PatchId) -> Result<PatchSpec, Error> {
        let mut e = self.engine();
        let rec = e.record(patch)?;
        if rec.forced {
            return Err(Error::Forbidden { patch, reason: Forbidden::Forced });
        }
        if e.enabled.contains(&patch) {
            return Err(Error::Forbidden { patch, reason: Forbidden::StillEnabled });
        }
        Ok(e.patches[patch.0 as usize].take().expect("checked by record()").spec)
    }

    /// Starts enabling `patch` on top of every enabled patch.
    pub fn enable(&self, patch: PatchId) -> Result<Progress, Error> {
        let mut e = self.engine();
        e.check_no_transition()?;
        e.record(patch)?;
        if e.enabled.contains(&patch) {
            return Err(Error::AlreadyEnabled(patch));
        }
        self.begin(&mut e, patch, Op::Enable, Vec::new());
        Ok(self.advance(&mut e))
    }

    /// Starts enabling `patch` as a cumulative replacement of every enabled patch: sites those
    /// touch and `patch` does not get nop funcs; on completion the replaced patches and the nops
    /// go away.
    pub fn replace(&self, patch: PatchId) -> Result<Progress, Error> {
        let mut e = self.engine();
        e.check_no_transition()?;
        let rec = e.record(patch)?;
        if e.enabled.contains(&patch) {
            return Err(Error::AlreadyEnabled(patch));
        }
        if rec.spec.funcs.iter().any(|f| f.immediate) {
            return Err(Error::Forbidden { patch, reason: Forbidden::ImmediateInReplace });
        }
        let replaced = e.enabled.clone();
        self.begin(&mut e, patch, Op::Replace, replaced);
        Ok(self.advance(&mut e))
    }

    /// Starts disabling `patch`.
    pub fn disable(&self, patch: PatchId) -> Result<Progress, Error> {
        let mut e = self.engine();
        e.check_no_transition()?;
        let rec = e.record(patch)?;
        if !e.enabled.contains(&patch) {
            return Err(Error::NotEnabled(patch));
        }
        let topmost = e.enabled.last() == Some(&patch);
        if self.config.stacking == Stacking::Strict && !topmost {
            return Err(Error::Forbidden { patch, reason: Forbidden::NotTopmost });
        }
        // `flip` pushes a reversed disable's immediate funcs back on top of their stacks: right
        // only where no later patch has a func above them, which strict stacking (the only kind
        // the kernel had while `immediate` existed) guarantees and this check keeps.
        if !topmost && rec.spec.funcs.iter().any(|f| f.immediate) {
            return Err(Error::Forbidden { patch, reason: Forbidden::ImmediateNotTopmost });
        }
        self.begin(&mut e, patch, Op::Disable, Vec::new());
        Ok(self.advance(&mut e))
    }

    /// Reverses the transition in progress (`klp_reverse_transition`): pending flags are cleared,
    /// and after a grace period the target flips and tasks migrate back.
    pub fn reverse(&self) -> Result<Progress, Error> {
        let mut e = self.engine();
        let program = &*self.program;
        let t = e.transition.as_mut().ok_or(Error::NoTransition)?;
        match t.phase {
            Phase::Migrating { since } => {
                let now = Instant::now();
                t.stats.phases.migrate += now - since;
                let list = program.tasks.lock();
                program.tasks.clear_pending(&list);
                drop(list);
                t.phase = Phase::Reversing { gp: program.tasks.gp_start(), since: now };
                t.stats.reversals += 1;
            }
            Phase::Reversing { since, .. } => {
                // Reversing a reversal before its target flipped: keep the target and re-mark.
                let now = Instant::now();
                t.stats.phases.grace += now - since;
                let list = program.tasks.lock();
                program.tasks.start(&list);
                t.phase = Phase::Migrating { since: now };
                t.stats.reversals += 1;
            }
            Phase::Settling { .. } => {
                return Err(Error::Forbidden { patch: t.patch, reason: Forbidden::Settling });
            }
        }
        // A writer asleep in `wait` (on another thread) must see the new phase.
        program.tasks.doorbell.ring();
        Ok(self.advance(&mut e))
    }

    /// Forces the transition in progress (`klp_force_transition`): every task, running or not, is
    /// switched to the target. This knowingly breaks per-task consistency; the patch (and, for a
    /// replace, every replaced patch) is marked forced, so its code can never be released.
    pub fn force(&self) -> Result<Progress, Error> {
        let mut e = self.engine();
        let t = e.transition.as_mut().ok_or(Error::NoTransition)?;
        t.force = true;
        t.stats.forced = true;
        let mut pinned = t.replaced.clone();
        pinned.push(t.patch);
        for p in pinned {
            if let Some(Some(rec)) = e.patches.get_mut(p.0 as usize) {
                rec.forced = true;
            }
        }
        let progress = self.advance(&mut e);
        // A writer asleep in `wait` (on another thread) must see the forced tasks.
        self.program.tasks.doorbell.ring();
        Ok(progress)
    }

    /// Advances the transition in progress as far as it can without waiting.
    pub fn try_complete(&self) -> Progress {
        let mut e = self.engine();
        self.advance(&mut e)
    }

    /// Waits for the transition in progress to complete ([`Waiting::default`], within
    /// `timeout`). Returns its statistics, or those of the last transition if none is in progress.
    pub fn wait(&self, timeout: Duration) -> Result<TransitionStats, Error> {
        let start = Instant::now();
        let waiting = Waiting { nap: Waiting::default().nap.min(timeout), ..Waiting::default() };
        match self.wait_with(waiting, |waited| waited >= timeout) {
            Progress::Done(stats) => Ok(stats),
            Progress::NoTransition => self.last_transition().ok_or(Error::NoTransition),
            progress => {
                let pending = match progress {
                    Progress::Migrating { pending } => pending,
                    _ => 0,
                };
                let patch = self.engine().transition.as_ref().map_or(PatchId(u32::MAX), |t| t.patch);
                Err(Error::Timeout { patch, pending, waited: start.elapsed() })
            }
        }
    }

    /// Advances the transition in progress until it completes (then [`Progress::Done`], or
    /// [`Progress::NoTransition`] if none was in progress), or until `give_up`, asked with the
    /// time waited so far between steps, says so (then the last progress; the transition stays in
    /// flight). It spins for `waiting.spin` after every change of progress, then sleeps until a
    /// task rings the doorbell (see `task_list`, *Waking the writer*) or `waiting.nap` has passed.
    pub fn wait_with(&self, waiting: Waiting, mut give_up: impl FnMut(Duration) -> bool) -> Progress {
        let start = Instant::now();
        let mut last = self.try_complete();
        let mut changed = start;
        loop {
            if matches!(last, Progress::Done(_) | Progress::NoTransition) || give_up(start.elapsed()) {
                return last;
            }
            let before = Stage::of(&last);
            let progress = if changed.elapsed() < waiting.spin {
                spin_hint();
                self.try_complete()
            } else {
                // The check runs after the doorbell has our announcement: progress made before
                // that is seen by it, progress made after it rings.
                let advanced = |p: Progress| (Stage::of(&p) != before).then_some(p);
                match self.program.tasks.doorbell.wait(waiting.nap, || advanced(self.try_complete())) {
                    Some(p) => p,
                    None => self.try_complete(),
                }
            };
            if Stage::of(&progress) != before {
                changed = Instant::now();
            }
            last = progress;
        }
    }

    /// The statistics of the last completed transition.
    pub fn last_transition(&self) -> Option<TransitionStats> {
        self.engine().last.clone()
    }

    /// The patch in transition, if any.
    pub fn in_transition(&self) -> Option<PatchId> {
        self.engine().transition.as_ref().map(|t| t.patch)
    }

    /// Enabled patches, oldest first (including one whose enable is in progress).
    pub fn enabled(&self) -> Vec<PatchId> {
        self.engine().enabled.clone()
    }

    pub fn is_forced(&self, patch: PatchId) -> Result<bool, Error> {
        Ok(self.engine().record(patch)?.forced)
    }

    /// What each site runs for a task in `state`, according to the engine's own stacks.
    pub fn universe(&self, state: PatchState) -> Vec<Code> {
        let e = self.engine();
        e.stacks.iter().zip(self.program.originals.iter()).map(|(s, &o)| select(&s.entries, o, state)).collect()
    }

    // ---- the protocol ----

    fn begin(&self, e: &mut Engine, patch: PatchId, op: Op, replaced: Vec<PatchId>) {
        let tasks = &self.program.tasks;
        let target = if op == Op::Disable { PatchState::Unpatched } else { PatchState::Patched };
        let rec = e.patches[patch.0 as usize].as_ref().expect("checked by the caller");
        let per_task = match op {
            Op::Disable => rec.live.iter().any(|&(site, f)| !e.is_immediate(site, f, rec)),
            Op::Enable => rec.spec.funcs.iter().any(|f| !f.immediate),
            Op::Replace => true,
        };
        e.transitions += 1;
        let started = Instant::now();
        let mut stats = TransitionStats {
            id: e.transitions,
            patch,
            op,
            target,
            started,
            ended: None,
            migrated_at_safe_point: 0,
            migrated_while_parked: 0,
            migrated_by_force: 0,
            reversals: 0,
            forced: false,
            grace_periods: 0,
            grace_period_wait: Duration::ZERO,
            phases: Phases::default(),
        };
        // The task list stays locked from init to start, so that a task registered meanwhile
        // either is initialised and marked with the others or inherits a consistent state.
        let list = tasks.lock();
        if per_task {
            // `klp_init_transition`. The Release of the first `transition` flag or func
            // publication below orders these state stores before it (Barrier::StatesBeforeFlag).
            tasks.init(&list, target);
        }
        match op {
            Op::Enable | Op::Replace => {
                let funcs = rec.spec.funcs.clone();
                for f in funcs {
                    let entry = StackEntry { func: e.new_func(), code: f.code, nop: false, transition: !f.immediate };
                    self.push(e, f.site, patch, entry);
                }
                if op == Op::Replace {
                    for site in e.nop_sites(patch, &replaced) {
                        let original = self.program.originals[site.index()];
                        let entry = StackEntry { func: e.new_func(), code: original, nop: true, transition: true };
                        self.push(e, site, patch, entry);
                    }
                }
                e.enabled.push(patch);
            }
            Op::Disable => {
                let live = rec.live.clone();
                for (site, func) in live {
                    if e.is_immediate(site, func, e.patches[patch.0 as usize].as_ref().unwrap()) {
                        // An immediate func leaves every task's view at once; it is reclaimed by
                        // the grace period that ends the transition.
                        self.remove(e, site, func);
                    } else {
                        self.set_transition(e, site, func, true);
                    }
                }
            }
        }
        // Every change above is visible to every task before any task is told to migrate.
        stats.phases.batch += self.finish_batch();
        if per_task {
            // `klp_start_transition`; the Release of each pending flag orders the target and the
            // transition flags before it (Barrier::TargetBeforePending, Barrier::FlagBeforePending).
            tasks.start(&list);
        }
        drop(list);
        let since = Instant::now();
        stats.phases.start = since - started;
        let phase = Phase::Migrating { since };
        e.transition = Some(Transition { patch, op, target, per_task, replaced, force: false, phase, stats });
    }

    /// The strategy's `finish_batch`, timed.
    fn finish_batch(&self) -> Duration {
        let t = Instant::now();
        self.program.strategy.finish_batch();
        t.elapsed()
    }

    /// Runs the state machine until it has to wait.
    fn advance(&self, e: &mut Engine) -> Progress {
        let tasks = &self.program.tasks;
        loop {
            let Some(t) = e.transition.as_mut() else { return Progress::NoTransition };
            match t.phase {
                Phase::Migrating { since } => {
                    if t.per_task {
                        if t.force {
                            let list = tasks.lock();
                            t.stats.migrated_by_force += tasks.force(&list) as u64;
                        }
                        let affected: Vec<SiteId> = e.patches[t.patch.0 as usize]
                            .as_ref()
                            .map(|r| r.live.iter().map(|&(s, _)| s).collect())
                            .unwrap_or_default();
                        let (migrated, pending) = tasks.migrate_parked(|s| affected.contains(&s));
                        t.stats.migrated_while_parked += migrated as u64;
                        if pending > 0 {
                            return Progress::Migrating { pending };
                        }
                    }
                    let seen = Instant::now();
                    let event = if t.per_task { tasks.last_migration() } else { None };
                    let (migrate, notice) = Phases::split(since, event, seen);
                    t.stats.phases.migrate += migrate;
                    t.stats.phases.notice += notice;
                    self.finish_migration(e, seen);
                }
                Phase::Reversing { gp, since } => {
                    if !tasks.gp_elapsed(gp) {
                        return Progress::Reversing;
                    }
                    let seen = Self::grace_period_seen(t, tasks, since);
                    self.flip(e, seen);
                }
                Phase::Settling { gp, since } => {
                    if !tasks.gp_elapsed(gp) {
                        return Progress::Settling;
                    }
                    let seen = Self::grace_period_seen(t, tasks, since);
                    return Progress::Done(self.settle(e, seen));
                }
            }
        }
    }

    /// Accounts a grace period that began at `since` and has just been seen to elapse; returns
    /// when it was seen.
    fn grace_period_seen(t: &mut Transition, tasks: &Tasks, since: Instant) -> Instant {
        let seen = Instant::now();
        let (grace, notice) = Phases::split(since, tasks.last_quiescent(), seen);
        t.stats.grace_periods += 1;
        t.stats.grace_period_wait += seen - since;
        t.stats.phases.grace += grace;
        t.stats.phases.notice += notice;
        seen
    }

    /// Second half of `klp_reverse_transition`, after its grace period (seen at `seen`): flip
    /// the target and mark the tasks again. A reversed disable gets its immediate funcs back at
    /// once.
    fn flip(&self, e: &mut Engine, seen: Instant) {
        let tasks = &self.program.tasks;
        let t = e.transition.as_mut().expect("in transition");
        t.target = t.target.opposite();
        t.stats.target = t.target;
        let (patch, op, target) = (t.patch, t.op, t.target);
        let list = tasks.lock();
        tasks.set_target(&list, target);
        if op == Op::Disable && target == PatchState::Patched {
            let spec = e.patches[patch.0 as usize].as_ref().expect("patch in transition").spec.clone();
            for f in spec.funcs.iter().filter(|f| f.immediate) {
                let entry = StackEntry { func: e.new_func(), code: f.code, nop: false, transition: false };
                self.push(e, f.site, patch, entry);
            }
        }
        let batch = self.finish_batch();
        // The Release of each pending flag publishes the new target (Barrier::TargetBeforePending).
        tasks.start(&list);
        drop(list);
        let t = e.transition.as_mut().expect("in transition");
        let since = Instant::now();
        t.stats.phases.batch += batch;
        t.stats.phases.start += since - seen;
        t.phase = Phase::Migrating { since };
    }

    /// Every task is at the target (seen at `seen`): `klp_complete_transition` up to its grace
    /// period.
    fn finish_migration(&self, e: &mut Engine, seen: Instant) {
        let t = e.transition.as_ref().expect("in transition");
        let (patch, op, target, replaced) = (t.patch, t.op, t.target, t.replaced.clone());
        match target {
            PatchState::Patched => {
                if op == Op::Replace {
                    // Unlink the replaced patches first: while the nops are still on top, every
                    // task keeps running the original at those sites.
                    for q in &replaced {
                        for (site, func) in e.patches[q.0 as usize].as_ref().map(|r| r.live.clone()).unwrap_or_default()
                        {
                            self.remove(e, site, func);
                        }
                    }
                    e.enabled.retain(|p| !replaced.contains(p));
                    let nops: Vec<_> = e.live(patch).into_iter().filter(|&(s, f)| e.entry(s, f).nop).collect();
                    for (site, func) in nops {
                        self.remove(e, site, func);
                    }
                }
                for (site, func) in e.live(patch) {
                    if e.entry(site, func).transition {
                        self.set_transition(e, site, func, false);
                    }
                }
            }
            PatchState::Unpatched | PatchState::Idle => {
                for (site, func) in e.live(patch) {
                    self.remove(e, site, func);
                }
                e.enabled.retain(|&p| p != patch);
            }
        }
        // The grace period below must cover every task that could still see the changes above.
        let batch = self.finish_batch();
        // transition=0 → sync → Idle (Patched), unlink → sync (Unpatched).
        let gp = self.program.tasks.gp_start();
        let since = Instant::now();
        let t = e.transition.as_mut().expect("in transition");
        t.stats.phases.batch += batch;
        t.stats.phases.complete += since - seen;
        t.phase = Phase::Settling { gp, since };
    }

    /// After the final grace period (seen at `seen`): tasks back to Idle, the unlinked funcs
    /// reclaimed.
    fn settle(&self, e: &mut Engine, seen: Instant) -> TransitionStats {
        let tasks = &self.program.tasks;
        let list = tasks.lock();
        tasks.reset_idle(&list);
        drop(list);
        self.program.strategy.reclaim();
        let mut t = e.transition.take().expect("in transition");
        t.stats.migrated_at_safe_point = tasks.migrated_at_safe_point();
        let ended = Instant::now();
        t.stats.phases.settle = ended - seen;
        t.stats.ended = Some(ended);
        e.last = Some(t.stats.clone());
        t.stats
    }

    // ---- stack edits: the engine's stacks first, then the strategy ----

    fn push(&self, e: &mut Engine, site: SiteId, patch: PatchId, entry: StackEntry) {
        let stack = &mut e.stacks[site.index()];
        stack.entries.push(entry);
        stack.owners.push(patch);
        e.patches[patch.0 as usize].as_mut().expect("live patch").live.push((site, entry.func));
        self.publish(e, site, StackOp::Push);
    }

    fn remove(&self, e: &mut Engine, site: SiteId, func: FuncId) {
        let stack = &mut e.stacks[site.index()];
        let i = stack.entries.iter().position(|x| x.func == func).expect("func on its stack");
        stack.entries.remove(i);
        let owner = stack.owners.remove(i);
        if let Some(Some(rec)) = e.patches.get_mut(owner.0 as usize) {
            rec.live.retain(|&(_, f)| f != func);
        }
        self.publish(e, site, StackOp::Remove(func));
    }

    fn set_transition(&self, e: &mut Engine, site: SiteId, func: FuncId, on: bool) {
        let stack = &mut e.stacks[site.index()];
        stack.entries.iter_mut().find(|x| x.func == func).expect("func on its stack").transition = on;
        self.publish(e, site, StackOp::SetTransition(func));
    }

    fn publish(&self, e: &Engine, site: SiteId, op: StackOp) {
        let change =
            StackChange { op, stack: &e.stacks[site.index()].entries, original: self.program.originals[site.index()] };
        self.program.strategy.apply(site, change);
    }
}

impl Engine {
    fn record(&self, patch: PatchId) -> Result<&PatchRecord, Error> {
        self.patches.get(patch.0 as usize).and_then(Option::as_ref).ok_or(Error::UnknownPatch(patch))
    }

    fn check_no_transition(&self) -> Result<(), Error> {
        match &self.transition {
            Some(t) => Err(Error::TransitionInProgress { patch: t.patch }),
            None => Ok(()),
        }
    }

    fn new_func(&mut self) -> FuncId {
        self.next_func += 1;
        FuncId(self.next_func)
    }

    fn live(&self, patch: PatchId) -> Vec<(SiteId, FuncId)> {
        self.patches[patch.0 as usize].as_ref().map(|r| r.live.clone()).unwrap_or_default()
    }

    fn entry(&self, site: SiteId, func: FuncId) -> StackEntry {
        *self.stacks[site.index()].entries.iter().find(|x| x.func == func).expect("func on its stack")
    }

    /// Whether a live func of `rec` came from an immediate FuncSpec.
    fn is_immediate(&self, site: SiteId, func: FuncId, rec: &PatchRecord) -> bool {
        let nop = self.entry(site, func).nop;
        !nop && rec.spec.funcs.iter().any(|f| f.site == site && f.immediate)
    }

    /// Sites an enabled patch in `replaced` touches and `patch` does not (`klp_add_nops`).
    fn nop_sites(&self, patch: PatchId, replaced: &[PatchId]) -> Vec<SiteId> {
        let covered = &self.patches[patch.0 as usize].as_ref().expect("live patch").spec.funcs;
        let mut sites: Vec<SiteId> = replaced
            .iter()
            .filter_map(|q| self.patches[q.0 as usize].as_ref())
            .flat_map(|r| r.live.iter().map(|&(s, _)| s))
            .filter(|s| !covered.iter().any(|f| f.site == *s))
            .collect();
        sites.sort();
        sites.dedup();
        sites
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::Mutex as StdMutex;
    use std::sync::atomic::{AtomicPtr, Ordering as StdOrdering};

    use super::*;
    use crate::check::code;
    use crate::model::FuncSpec;
    use crate::strategy::{Consistency, Info, ReadSide, WriteSide, always_available, no_machine_fact};
    use crate::task_list::TaskState;

    /// What the engine told [`Recorder`], with whether the watched task was pending then.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Event {
        Apply { pending: bool },
        FinishBatch { pending: bool },
    }

    static EVENTS: StdMutex<Vec<Event>> = StdMutex::new(Vec::new());
    static WATCHED: AtomicPtr<TaskState> = AtomicPtr::new(std::ptr::null_mut());
    /// The test that uses them runs alone.
    static ONE_AT_A_TIME: StdMutex<()> = StdMutex::new(());

    fn pending() -> bool {
        // Relaxed: set before the engine is used, on this thread.
        let task = WATCHED.load(StdOrdering::Relaxed);
        // SAFETY: the test sets it to a task that outlives every engine call it makes.
        !task.is_null() && unsafe { &*task }.is_pending()
    }

    /// A strategy that only records what the engine does: the double of a batching writer.
    struct Recorder;

    impl ReadSide for Recorder {
        type TaskLocal = ();
        type Guard<'a> = ();
        fn task_local(&self) {}
        fn enter(&self, _local: &()) {}
        fn call(&self, _guard: &(), _task: &TaskState, _site: SiteId, arg: u64) -> u64 {
            arg
        }
    }

    impl WriteSide for Recorder {
        fn apply(&self, _site: SiteId, _change: StackChange<'_>) {
            EVENTS.lock().unwrap().push(Event::Apply { pending: pending() });
        }
        fn finish_batch(&self) {
            EVENTS.lock().unwrap().push(Event::FinishBatch { pending: pending() });
        }
    }

    impl Strategy for Recorder {
        const INFO: Info = Info {
            name: "recorder",
            description: "records the engine's calls",
            consistency: Consistency::PerTask,
            probe: always_available,
            machine_fact: no_machine_fact,
        };
        fn new(_originals: &[Code]) -> Self {
            Recorder
        }
    }

    /// The events since the last call, and a check that they end with a batch's end: every
    /// change was followed by `finish_batch` before the engine call returned.
    fn take_batch() -> Vec<Event> {
        let events = std::mem::take(&mut *EVENTS.lock().unwrap());
        assert!(
            matches!(events.last(), Some(Event::FinishBatch { .. })) || events.is_empty(),
            "changes left without finish_batch: {events:?}"
        );
        events
    }

    /// Every step that changes stacks ends its batch before the engine acts on it: before tasks
    /// are marked pending (a transition's start, a reversal's flip) and before the grace period
    /// that ends a transition. A batching strategy (`textpoke`) relies on it for correctness.
    #[test]
    fn every_batch_of_changes_ends_before_the_engine_acts_on_it() {
        let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let p = Patcher::<Recorder>::new(&[code(0), code(1)], PatcherConfig::default());
        let task = p.register().unwrap();
        WATCHED.store(task.state_for_test().cast_mut(), StdOrdering::Relaxed);
        take_batch();
        let both = [FuncSpec::new(SiteId(0), code(10)), FuncSpec::immediate(SiteId(1), code(11))];
        let patch = p.load(PatchSpec::new("p", both)).unwrap();

        // Start: the changes, their batch's end, and only then the pending flag.
        assert!(matches!(p.enable(patch).unwrap(), Progress::Migrating { .. }));
        let start = take_batch();
        assert!(
            !start.is_empty()
                && start
                    .iter()
                    .all(|e| !matches!(e, Event::Apply { pending: true } | Event::FinishBatch { pending: true })),
            "start: {start:?}"
        );
        assert!(task.is_pending());

        // End: after the task migrates, the flags are cleared and the batch ends before the
        // grace period (the call returns Settling, so the grace period has started).
        task.safe_point().unwrap();
        assert!(matches!(p.try_complete(), Progress::Settling));
        let end = take_batch();
        assert!(end.len() >= 2, "end: {end:?}");
        task.safe_point().unwrap();
        assert!(matches!(p.try_complete(), Progress::Done(_)));
        take_batch();

        // A reversed disable gets its immediate func back at the flip: a batch before the tasks
        // are marked again. The watched task migrates first; a second one holds the transition.
        let holder = p.register().unwrap();
        assert!(matches!(p.disable(patch).unwrap(), Progress::Migrating { .. }));
        take_batch();
        task.safe_point().unwrap();
        assert!(!task.is_pending());
        assert!(matches!(p.reverse().unwrap(), Progress::Reversing));
        assert!(take_batch().is_empty(), "a reversal changes no stack");
        task.safe_point().unwrap();
        holder.safe_point().unwrap();
        assert!(matches!(p.try_complete(), Progress::Migrating { .. }));
        let flip = take_batch();
        assert!(flip.contains(&Event::Apply { pending: false }), "the flip re-pushes the immediate func: {flip:?}");
        assert_eq!(
            flip.last(),
            Some(&Event::FinishBatch { pending: false }),
            "its batch ends before the tasks are marked"
        );
        assert!(task.is_pending());
        WATCHED.store(std::ptr::null_mut(), StdOrdering::Relaxed);
    }
}
