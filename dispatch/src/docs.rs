//! The rules this crate re-creates, in our own words: what the Linux livepatch redirection path
//! does on every call, the invariants it keeps, and the barrier pairs that keep them. The code
//! cites these items by name (for example [`Barrier::FuncBeforeHead`]); each is a linkable entry.
//!
//! # The model in one paragraph
//!
//! A *site* is a patchable function: its original code plus a *func stack*, newest first. A
//! *patch* pushes one *func* (its replacement code) onto the stack of every site it changes. Every
//! *task* (thread) has a tri-state [`PatchState`](crate::PatchState): Idle outside transitions,
//! Unpatched or Patched during one. A *transition* moves every task from one *universe* (the code
//! every site runs: all previous versions) to the other (all new versions) one task at a time,
//! each at its own *safe point*, so that no task ever mixes the two. Funcs of a patch in transition
//! carry a `transition` flag; a reader that meets the flag picks by its own state.
//!
//! The enums below are documentation: their variants name the rules so that comments can link to
//! them. Nothing in the code matches on them.

/// The redirection path on every call of a patched function (the kernel's `klp_ftrace_handler`),
/// step by step.
#[derive(Clone, Copy, Debug)]
pub enum HandlerStep {
    /// **1.** A recursion guard: if the path is re-entered in the same context, it bails out and
    /// the original runs. In the kernel it also disables preemption, which is what makes a
    /// scheduler-based grace period cover the reader. Our read paths never call patchable code and
    /// write nothing, so re-entering them is harmless ([`Invariant::NoReentrancy`]); `klp` leaves
    /// the guard out and reports it.
    RecursionGuard,
    /// **2.** Load the head of the site's func stack (an RCU list head). With no func, the original
    /// runs.
    LoadHead,
    /// **3.** Read the head's `transition` flag, ordered after the head load
    /// ([`Barrier::FuncBeforeHead`]).
    CheckTransition,
    /// **4.** In transition only: read the calling task's state, ordered after the flag
    /// ([`Barrier::StatesBeforeFlag`]). Unpatched takes the func below the head (or the original if
    /// there is none); Patched keeps the head; Idle breaks [`Invariant::TriState`] (the kernel
    /// warns, we count it) and keeps the head.
    PickByState,
    /// **5.** A `nop` func (the placeholder an atomic replace puts on sites it no longer patches)
    /// runs the original: redirecting to it would loop.
    Nop,
    /// **6.** Redirect: the chosen func's code runs instead of the original.
    Redirect,
}

/// What every consistent strategy and the transition engine must keep. Code cites them by name;
/// the numbers (I1…I11) only order this list.
#[derive(Clone, Copy, Debug)]
pub enum Invariant {
    /// **I1. One universe per critical section.** Between two of its safe points a task runs every
    /// site of a patch in one universe, chosen by its own state alone. That state changes only at
    /// the task's own safe point, while the task is parked (and the patcher has checked that it
    /// does not sleep inside an affected site), or by [`Invariant::Force`].
    OneUniverse,
    /// **I2. Tri-state.** Idle means no transition is in progress. A reader that sees a
    /// `transition` flag sees its own state as Patched or Unpatched; every strategy counts the
    /// opposite (`idle_in_transition`), and a run with a count fails.
    TriState,
    /// **I3. Publish order.** A func that a reader can see on a stack is seen whole: its code, its
    /// `nop` and `transition` flags and the link below it ([`Barrier::FuncBeforeHead`]).
    PublishOrder,
    /// **I4. Selection.** Outside a transition every task runs the head. During one, a Patched task
    /// runs the head, an Unpatched task the func below it, or the original when there is none. A
    /// `nop` runs the original. Written once as [`Version::select`](crate::model::Version::select).
    Selection,
    /// **I5. Removal safety.** A func removed from a stack is reclaimed only after a grace period
    /// that covers every reader that could have loaded it. On unpatch the `transition` flag is
    /// cleared only after the grace period that follows the unlink
    /// ([`Barrier::UnlinkThenGracePeriod`]); on patch the tasks go back to Idle only after the
    /// grace period that follows clearing the flag ([`Barrier::ClearThenGracePeriod`]).
    RemovalSafety,
    /// **I6. Monotone migration.** A task moves from its initial state to the target at most once
    /// per transition. A reversal clears every pending flag, waits for a grace period (so that a
    /// safe point already acting on the old target finishes), flips the target and marks the
    /// tasks again.
    MonotoneMigration,
    /// **I7. One transition at a time.** Writers are serialized; a second operation is refused
    /// while one is in transition.
    OneTransition,
    /// **I8. Inheritance.** A new task (fork) starts in its parent's state with its parent's
    /// pending flag, so it sees the parent's universe until its own first safe point.
    Inheritance,
    /// **I9. No re-entrancy.** The redirection path never calls patchable code; if it were
    /// re-entered it would run the original.
    NoReentrancy,
    /// **I10. Completion.** A transition completes only when every task has reached the target;
    /// only then are replaced patches and `nop`s removed.
    Completion,
    /// **I11. Force.** A forced transition switches every task at once, knowingly breaking
    /// [`Invariant::OneUniverse`]; it is recorded, and the forced patch's code can never be
    /// released.
    Force,
}

/// The ordering pairs between the writer (the transition engine, one at a time) and the lock-free
/// readers (the redirection path and the tasks' safe points). Each strategy states, in its module,
/// which of its atomics carry each pair; the grace-period mechanics are in the `task_list` module.
#[derive(Clone, Copy, Debug)]
pub enum Barrier {
    /// **B1. Task states before the flag.** Writer: every task's state is set to the opposite of
    /// the target, then (Release) the first `transition` flag or func becomes visible. Reader:
    /// (Acquire) the flag, then its own state. Without it a reader could see a transition with its
    /// stale Idle state ([`Invariant::TriState`]) and run the new version in the old universe.
    StatesBeforeFlag,
    /// **B2. A func before the head that points at it.** Writer: the func's fields, `transition`
    /// included, then (Release) the head or the `next` link that publishes it. Reader: (Acquire)
    /// the head, then the fields. Without it a reader could see a new head with a stale flag and
    /// run the new version while Unpatched ([`Invariant::PublishOrder`]).
    FuncBeforeHead,
    /// **B3. The target before the pending flag.** Writer: the transition's target, then (Release)
    /// each task's pending flag. Reader: the safe point's (Acquire) test-and-clear of its pending
    /// flag, then the target. Without it a task could migrate to a stale target.
    TargetBeforePending,
    /// **B4. The flag before the pending flag (disable path).** Writer: `transition` set on the
    /// patch's funcs, then (Release) the pending flags. Reader: the (Acquire) test-and-clear at a
    /// safe point, then every later flag load. A task switched to Unpatched must see the flag, or
    /// it would keep running the head it no longer belongs to.
    FlagBeforePending,
    /// **B5. Unlink, then a grace period, then clear the flag or reclaim.** A func unlinked from a
    /// stack may still be held by a reader in its critical section; only after every task has
    /// passed a safe point (or slept) may the writer clear `transition` flags or free the func.
    UnlinkThenGracePeriod,
    /// **B6. Clear the flag, then a grace period, then Idle.** After a patch completes, tasks go
    /// back to Idle only once no reader can still see `transition` set, so that Idle is never
    /// observed inside a transition ([`Invariant::TriState`]).
    ClearThenGracePeriod,
}
