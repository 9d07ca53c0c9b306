//! `kgraft`: the kernel's predecessor (SUSE's kGraft), in data. kGraft redirected a patched
//! function through a *fast stub*, a plain jump to the new code, once every task had migrated,
//! and through a *slow stub* only while a transition ran. The slow stub walked no func stack: each
//! patched function kept two addresses, its new code and the code it replaced, and the stub chose
//! between them by the calling task's in-progress flag. Here each site has the same three words:
//!
//! - the *fast word*: the code every task runs when no transition covers the site, or null while
//!   one does. A call loads it and calls it; only a null word sends it down the slow stub;
//! - the slow stub's two codes, what a Patched task runs ([`Selection::head`]) and what an
//!   Unpatched one runs ([`Selection::previous`]), picked by the task's state as `klp`'s handler
//!   picks ([`TaskState::version_in_transition`], Idle count included).
//!
//! Steady state costs `fnptr` plus one test; in transition a call costs that test, the task's
//! state and one of two loads, where `klp` walks its stack (what that and the alternatives cost:
//! see [`Kgraft::call`]). The writer derives all three from the stack after every change, as the
//! snapshot strategies derive their [`Selection`]: both codes always, then the fast word, the
//! head's code when the head is not in transition (then every task runs it, whatever its state),
//! null when it is. The codes are static functions, so nothing is ever freed and this strategy
//! reclaims nothing; the engine's grace periods matter to it only in keeping two transitions
//! apart (below the table).
//!
//! # Synchronization
//!
//! Each row is one kind of change; in the first two columns, "then" is program order.
//!
//! | writer ([`Kgraft::apply`]) | reader ([`Kgraft::call`]) | guarantees |
//! |---|---|---|
//! | puts the head in transition (the engine makes this change after its task-state init, before it marks any task pending): both codes (Relaxed), then the word cleared (Release) | the word (Acquire), found null; then the task's state; then one code (Relaxed) | a reader that finds null finds this change's codes and its task's state set ([`Barrier::StatesBeforeFlag`]: never Idle); a reader that still finds the word of before runs what its initial state picks, and no task migrates before it is cleared |
//! | ends the head's transition (made only once every task is at the target): both codes (Relaxed), then the word set to the head's code (Relaxed) | the word, found set; the call | a reader that finds the word set runs what its target state picks anyway; one that still finds null picks from codes that answer its state as the new stack does |
//! | leaves the head in transition, the word null (a cumulative replace unlinking funcs below the head): both codes (Relaxed) | one code (Relaxed) | each code is one atomic word: a racing reader gets the code its state picks from the stack before the change or after it, as a `klp` reader racing the same change does |
//!
//! A reader never mixes the codes of two transitions. The transition's last change leaves every
//! site's word set, and the engine ends the transition (and so lets the next begin) only after a
//! grace period that began after that change. A call under way when that grace period began
//! holds it up until it returns, so all its loads come before the next transition's stores. A
//! call that begins after its task's safe point in that grace period finds the word set (after
//! that safe point a task sees everything done before the grace period began: see
//! [`task_list`](crate::task_list)), so it reads no code until the next transition clears the
//! word again, which publishes that transition's codes with it.
//!
//! [`Barrier::StatesBeforeFlag`]: crate::docs::Barrier::StatesBeforeFlag

use std::ptr;

use crate::model::{Code, Selection, SiteId, Version};
use crate::strategy::blocks::atomic_code::AtomicCode;
use crate::strategy::blocks::func_stack::{TABLE_SITES, check_sites, unbound};
use crate::strategy::{
    Consistency, Info, ReadSide, StackChange, Strategy, WriteSide, always_available, no_machine_fact,
};
use crate::sync::{AtomicPtr, Ordering};
use crate::task_list::TaskState;

/// A site's fast word: a [`Code`], or null while a transition covers the site.
#[derive(Debug)]
struct FastWord(AtomicPtr<()>);

impl FastWord {
    fn new(code: Code) -> Self {
        Self(AtomicPtr::new(code as *mut ()))
    }

    /// The code every task runs now, or `None` while the site is in transition.
    #[inline(always)]
    fn load(&self) -> Option<Code> {
        // Acquire: pairs with the Release in `clear` (see the module's table); without
        // it a reader that finds null could read the slow stub's codes of before the change, or
        // its task's state before the engine initialised it.
        let p = self.0.load(Ordering::Acquire);
        // SAFETY: the only non-null values ever stored are `Code`s (see `new` and `set`), and a
        // fn pointer round-trips through `*mut ()` unchanged on every platform Rust supports.
        (!p.is_null()).then(|| unsafe { std::mem::transmute::<*mut (), Code>(p) })
    }

    fn set(&self, code: Code) {
        // Relaxed: a reader that finds this word calls it and reads nothing else, the code is
        // static, and the engine sets it only once every task runs what it holds (the target
        // state's code), so no store before it needs publishing with it.
        self.0.store(code as *mut (), Ordering::Relaxed);
    }

    fn clear(&self) {
        // Release: pairs with the Acquire in `load`: publishes the slow stub's codes stored
        // before it, and the engine's task-state init made before the change.
        self.0.store(ptr::null_mut(), Ordering::Release);
    }
}

/// A site's slow stub: kGraft's two addresses per patched function (`loc_new` and `loc_old` of
/// its `kgr_patch_fun`). Named by [`Version`], not by stack position: `head` is what a Patched
/// (or, breaching the model, an Idle) task runs, the head's code or the original for a nop;
/// `previous` what an Unpatched task runs, the func below the head or the original.
#[derive(Debug)]
struct SlowStub {
    head: AtomicCode,
    previous: AtomicCode,
}

impl SlowStub {
    fn new(code: Code) -> Self {
        Self { head: AtomicCode::new(code), previous: AtomicCode::new(code) }
    }

    /// The code `task` runs while the site is in transition.
    #[inline(always)]
    fn code(&self, task: &TaskState) -> Code {
        // Relaxed: a reader gets here only after its Acquire load of the fast word found null,
        // so it reads codes at least as new as those that store published (newer ones only from
        // a change that left the word null: the module's table, third row); the codes are
        // static functions, so nothing else is published through them.
        match task.version_in_transition() {
            Version::Head => self.head.load(Ordering::Relaxed),
            Version::Previous => self.previous.load(Ordering::Relaxed),
        }
    }

    fn store(&self, selection: &Selection) {
        // Relaxed: published by the fast word's Release store that follows (see `apply`); stored
        // after it instead, a reader that found the word null could run the codes of before
        // (the loom model `a_reader_that_finds_the_word_null_finds_the_codes_stored_before_it`).
        self.head.store(selection.head, Ordering::Relaxed);
        self.previous.store(selection.previous, Ordering::Relaxed);
    }
}

/// Per site its fast word and its slow stub: tables of [`TABLE_SITES`] entries, so that a site
/// known at compile time needs no bounds check, in one allocation, so that the per-site loop
/// reaches both from one base register (with the design before this one, two allocations made
/// the loop keep the second base on the stack and reload it on every call of the slow path).
/// The fast words are a table of their own, so that the steady path's words of neighbouring
/// sites share cache lines as `fnptr`'s do.
#[derive(Debug)]
struct Sites {
    fast: [FastWord; TABLE_SITES],
    slow: [SlowStub; TABLE_SITES],
}

#[derive(Debug)]
pub struct Kgraft {
    /// Boxed: see [`Strategy`]'s note on immutable fields.
    sites: Box<Sites>,
}

impl ReadSide for Kgraft {
    crate::strategy::stateless_read_side!();

    #[inline(always)]
    fn call(&self, _guard: &(), task: &TaskState, site: SiteId, arg: u64) -> u64 {
        // A site known at compile time (the per-site loops) is a constant index below
        // TABLE_SITES: no bounds check.
        let i = site.index();
        match self.sites.fast[i].load() {
            Some(code) => code(arg),
            None => {
                // kGraft's slow stub runs only during a transition. Inlined, so that each site
                // keeps its own call instruction in transition too; cold, so that the fast path
                // falls straight through to the call. In transition a call is then this word's
                // load, test and branch, the task's state and one of two loads, and one jump back
                // to the call.
                //
                // Measured on an AMD Zen 5 guest (family 26 model 2, 2 vCPUs), criterion's
                // per-site `steady` and `transition_patched`, medians of two sets of 5 and 4
                // rounds interleaved with the design before this one: 0.96× `fnptr` and 0.90×
                // `klp` (the gate: 12.3 and 21.3 instructions per call, `fnptr` 10.7, `klp`
                // 27.4). With the slow stub as `klp`'s handler on a func stack (that design):
                // 0.98–1.02× `fnptr` and 1.02× `klp`; without the cold hint 1.01–1.04× and
                // 0.90–0.91×. Measured earlier on the Intel dev VM with that handler: a stub out
                // of line that returns the code 1.01× and 1.67×; one that calls it (a call
                // instruction shared by every site) 1.04× and 1.29×; a per-section choice of path
                // 1.15× and 1.04×. None of these alternatives was measured again with this slow
                // stub. The fast path is kGraft's point, so it stays straight.
                std::hint::cold_path();
                (self.sites.slow[i].code(task))(arg)
            }
        }
    }
}

impl WriteSide for Kgraft {
    fn apply(&self, site: SiteId, change: StackChange<'_>) {
        let i = site.index();
        let selection = Selection::of(change.stack, change.original);
        // The codes first, whatever the word becomes: a reader that finds the word this change
        // stores (null) must find them; one that finds it set never reads them.
        self.sites.slow[i].store(&selection);
        if selection.transition {
            self.sites.fast[i].clear();
        } else {
            self.sites.fast[i].set(selection.head);
        }
    }
}

impl Strategy for Kgraft {
    const INFO: Info = Info {
        name: "kgraft",
        description: "kGraft's fast and slow stubs in data: a per-site word holds the code every task runs, cleared while a transition covers the site, when calls pick the new or the old code by the task's state: steady state is fnptr plus one test",
        consistency: Consistency::PerTask,
        probe: always_available,
        machine_fact: no_machine_fact,
    };

    /// Panics with more originals than [`TABLE_SITES`].
    fn new(originals: &[Code]) -> Self {
        check_sites("kgraft", originals);
        // Entries past `originals` run `unbound`, on either path: a caller's bug, reported.
        let code = |i: usize| originals.get(i).copied().unwrap_or(unbound);
        let sites = Sites {
            fast: std::array::from_fn(|i| FastWord::new(code(i))),
            slow: std::array::from_fn(|i| SlowStub::new(code(i))),
        };
        Self { sites: Box::new(sites) }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::check::{code, fingerprint, small_stacks};
    use crate::model::{FuncId, PatchState, StackEntry, select};
    use crate::strategy::StackOp;

    /// The word follows the head's transition flag: null while it is set, the head's code once
    /// it is cleared, and a null word sends the call down the slow stub, which picks by state.
    #[test]
    fn the_fast_word_is_null_exactly_while_the_head_is_in_transition() {
        let k = Kgraft::new(&[code(0)]);
        let task = TaskState::new();
        let word = || k.sites.fast[0].load().map(|c| c(0));
        assert_eq!(word(), Some(fingerprint(0)), "no stack: the original");
        let pushed = [StackEntry { func: FuncId(1), code: code(1), nop: false, transition: true }];
        k.apply(SiteId(0), StackChange { op: StackOp::Push, stack: &pushed, original: code(0) });
        assert_eq!(word(), None, "in transition: the slow stub");
        task.set_state_for_test(PatchState::Unpatched);
        assert_eq!(k.call_alone(&(), &task, SiteId(0), 0), fingerprint(0));
        task.set_state_for_test(PatchState::Patched);
        assert_eq!(k.call_alone(&(), &task, SiteId(0), 0), fingerprint(1));
        let settled = [StackEntry { transition: false, ..pushed[0] }];
        k.apply(SiteId(0), StackChange { op: StackOp::SetTransition(FuncId(1)), stack: &settled, original: code(0) });
        assert_eq!(word(), Some(fingerprint(1)), "transition over: the head, for everyone");
        task.set_state_for_test(PatchState::Unpatched);
        assert_eq!(k.call_alone(&(), &task, SiteId(0), 0), fingerprint(1), "the fast stub ignores the state");
    }

    /// Whatever the stack ([`small_stacks`]), every task runs what the model's one rule
    /// ([`select`]) picks for its state, on either stub; an Idle task that finds the word null is
    /// counted.
    #[test]
    fn both_stubs_pick_as_the_model_does() {
        let original = code(0);
        for stack in small_stacks() {
            let k = Kgraft::new(&[original]);
            k.apply(SiteId(0), StackChange { op: StackOp::Push, stack: &stack, original });
            for state in [PatchState::Idle, PatchState::Unpatched, PatchState::Patched] {
                let task = TaskState::new();
                task.set_state_for_test(state);
                let want = select(&stack, original, state)(0);
                assert_eq!(k.call_alone(&(), &task, SiteId(0), 0), want, "stack {stack:?}, {state:?}");
                let in_transition = stack.last().is_some_and(|h| h.transition);
                let counted = u64::from(in_transition && state == PatchState::Idle);
                assert_eq!(task.idle_in_transition(), counted, "stack {stack:?}, {state:?}");
            }
        }
    }
}

/// loom models of the fast word (run by `scripts/loom`), one per rule of `apply`: cleared before
/// any task can migrate, after the codes and the task states it publishes, set only after the
/// last task has migrated.
#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use crate::check::{code, fingerprint};
    use crate::model::{FuncId, PatchState, StackEntry};
    use crate::strategy::StackOp;
    use crate::sync::{Arc, AtomicBool};

    fn change(k: &Kgraft, op: StackOp, transition: bool) {
        let stack = [StackEntry { func: FuncId(1), code: code(1), nop: false, transition }];
        k.apply(SiteId(0), StackChange { op, stack: &stack, original: code(0) });
    }

    /// The engine's enable, cut down to the word: the func is pushed in transition, then the
    /// task is marked pending (Release, as the engine's flags). The task migrates to Patched only
    /// after it has seen its flag, and from then on must run the new func, never the word of
    /// before. Fails if `apply` leaves the word set while the head is in transition.
    #[test]
    fn the_word_is_cleared_before_any_task_migrates() {
        loom::model(|| {
            let k = Arc::new(Kgraft::new(&[code(0)]));
            let task = Arc::new(TaskState::new());
            // `klp_init_transition`, before anything else of the transition.
            task.set_state_for_test(PatchState::Unpatched);
            let pending = Arc::new(AtomicBool::new(false));
            let writer = {
                let (k, pending) = (k.clone(), pending.clone());
                loom::thread::spawn(move || {
                    change(&k, StackOp::Push, true);
                    // `klp_start_transition`.
                    pending.store(true, Ordering::Release);
                })
            };
            // The task's safe point: it migrates once it sees its flag (Acquire, as the engine).
            let migrated = pending.load(Ordering::Acquire);
            let expected = if migrated {
                task.set_state_for_test(PatchState::Patched);
                fingerprint(1)
            } else {
                fingerprint(0)
            };
            assert_eq!(k.call_alone(&(), &task, SiteId(0), 0), expected, "migrated: {migrated}");
            writer.join().unwrap();
        });
    }

    /// The word's own pair, without the engine: a reader that finds the word null finds the
    /// slow stub's codes stored before it. The task is Patched from the start (as one that
    /// migrated long ago), so no pending flag orders its loads; in the engine's transitions that
    /// flag would, and the codes of a task's initial state do not change, so the model above
    /// alone passes even with the codes stored after the word. Fails if `apply` does that.
    #[test]
    fn a_reader_that_finds_the_word_null_finds_the_codes_stored_before_it() {
        loom::model(|| {
            let k = Arc::new(Kgraft::new(&[code(0)]));
            let task = Arc::new(TaskState::new());
            task.set_state_for_test(PatchState::Patched);
            let writer = {
                let k = k.clone();
                loom::thread::spawn(move || change(&k, StackOp::Push, true))
            };
            let word = k.sites.fast[0].load();
            let got = k.call_alone(&(), &task, SiteId(0), 0);
            if word.is_none() {
                assert_eq!(got, fingerprint(1), "found the word null, ran the code of before");
            }
            writer.join().unwrap();
        });
    }

    /// [`Barrier::StatesBeforeFlag`] on the disable path: the engine sets every task's state
    /// (Patched) and then puts the steady head in transition, clearing the word. A reader that
    /// finds the word null must find the state set, never Idle. Fails if `clear` is not a
    /// Release store (or `load` not an Acquire load).
    ///
    /// [`Barrier::StatesBeforeFlag`]: crate::docs::Barrier::StatesBeforeFlag
    #[test]
    fn a_reader_that_finds_the_word_null_finds_its_state_set() {
        loom::model(|| {
            let k = Arc::new(Kgraft::new(&[code(0)]));
            let task = Arc::new(TaskState::new());
            change(&k, StackOp::Push, false);
            let writer = {
                let (k, task) = (k.clone(), task.clone());
                loom::thread::spawn(move || {
                    // klp_init_transition(UNPATCHED): every task starts Patched …
                    task.set_state_for_test(PatchState::Patched);
                    // … then transition=1 on the head, the word cleared.
                    change(&k, StackOp::SetTransition(FuncId(1)), true);
                })
            };
            // Idle or Patched, the head's version runs; only the Idle-in-transition count may tell.
            assert_eq!(k.call_alone(&(), &task, SiteId(0), 0), fingerprint(1));
            writer.join().unwrap();
            assert_eq!(task.idle_in_transition(), 0, "found the word null with state Idle");
        });
    }

    /// The end of the transition: the writer clears the head's flag only once the task has
    /// migrated (as the engine does once none is pending). Before migrating the task must run the
    /// old code. Fails if `apply` sets the word to the new head while the head is in transition.
    #[test]
    fn the_word_is_set_only_after_the_last_task_migrated() {
        loom::model(|| {
            let k = Arc::new(Kgraft::new(&[code(0)]));
            let task = Arc::new(TaskState::new());
            task.set_state_for_test(PatchState::Unpatched);
            change(&k, StackOp::Push, true);
            // The engine's view of the task: it ends the transition once this is set. Release and
            // Acquire, as the engine's migration and its check of it.
            let migrated = Arc::new(AtomicBool::new(false));
            let writer = {
                let (k, migrated) = (k.clone(), migrated.clone());
                loom::thread::spawn(move || {
                    while !migrated.load(Ordering::Acquire) {
                        loom::thread::yield_now();
                    }
                    change(&k, StackOp::SetTransition(FuncId(1)), false);
                })
            };
            assert_eq!(k.call_alone(&(), &task, SiteId(0), 0), fingerprint(0), "the old code before migrating");
            task.set_state_for_test(PatchState::Patched);
            migrated.store(true, Ordering::Release);
            assert_eq!(k.call_alone(&(), &task, SiteId(0), 0), fingerprint(1), "the new code after migrating");
            writer.join().unwrap();
        });
    }
}
