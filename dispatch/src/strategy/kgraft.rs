//! `kgraft`: the kernel's predecessor (SUSE's kGraft), in data. kGraft redirected a patched
//! function through a *fast stub*, a plain jump to the new code, once every task had migrated,
//! and through a *slow stub*, old or new by the calling task's flag, only while a transition ran.
//! Here each site has a fast word: the code every task runs when no transition covers the site, or
//! null while one does. A call loads the word and calls it; only a null word sends it down the
//! slow stub, which is `klp`'s handler on the same func stack, laid out for a head in transition.
//! Steady state costs `fnptr` plus one test; in transition a call costs `klp`'s handler plus that
//! test, laid out away from the fast path (what that and the alternatives cost: see
//! [`Kgraft::call`]). The words sit beside the stacks, in `klp`'s table ([`Klp::extra`]).
//!
//! The word is derived from the stack after every change: the head's code when the head is not
//! in transition (then every task runs the head, whatever its state), null when it is.
//!
//! # Synchronization
//!
//! | writer ([`Kgraft::apply`]) | reader ([`Kgraft::call`]) | guarantees |
//! |---|---|---|
//! | a change that puts the head in transition: fast word ← null (Release) *before* the stack change, which comes before the engine marks any task pending | fast word (Acquire) | no task migrates before its word is null: a task that reaches the target runs the slow stub, which picks by its state; until then a stale word holds the head before the change, which is what the initial state picks |
//! | a change that ends the head's transition (the engine makes it only after the last task reached the target): the stack change *before* fast word ← head (Release) | fast word (Acquire) → call | a task that sees the new word runs what its (target) state picks anyway; one that still sees null takes the slow stub, which sees the stack change |
//! | every earlier word and stack change → fast word (Release) | fast word (Acquire) → the slow stub's loads | a reader that sees a word sees every change published before it, so its slow stub never reads a stack older than that word |
//!
//! The slow stub's own pairs ([`Barrier::FuncBeforeHead`], [`Barrier::StatesBeforeFlag`],
//! reclamation after grace periods) are `klp`'s; see [`klp`](super::klp).
//!
//! [`Barrier::FuncBeforeHead`]: crate::docs::Barrier::FuncBeforeHead
//! [`Barrier::StatesBeforeFlag`]: crate::docs::Barrier::StatesBeforeFlag

use std::ptr;

use crate::model::{Code, Selection, SiteId};
use crate::strategy::klp::Klp;
use crate::strategy::{
    Consistency, Info, ReadSide, StackChange, Strategy, WriteSide, always_available, no_machine_fact,
};
use crate::sync::{AtomicPtr, Ordering};
use crate::task_list::TaskState;

/// A site's fast word: a [`Code`], or null while a transition covers the site.
#[derive(Debug)]
struct FastWord(AtomicPtr<()>);

impl FastWord {
    /// The word of a site: its original, or, for a table entry past the strategy's sites, null,
    /// so that a call for such a site takes the slow stub to `klp`'s entry for it, whose original
    /// aborts saying why (see [`ops_array`](crate::strategy::blocks::func_stack::ops_array)).
    fn of(original: Option<Code>) -> Self {
        Self(AtomicPtr::new(original.map_or(ptr::null_mut(), |c| c as *mut ())))
    }

    /// The code every task runs now, or `None` while the site is in transition.
    #[inline(always)]
    fn load(&self) -> Option<Code> {
        // Acquire: pairs with the Release in `set` and `clear` (see the module's table).
        let p = self.0.load(Ordering::Acquire);
        // SAFETY: the only non-null values ever stored are `Code`s (see `new` and `set`), and a
        // fn pointer round-trips through `*mut ()` unchanged on every platform Rust supports.
        (!p.is_null()).then(|| unsafe { std::mem::transmute::<*mut (), Code>(p) })
    }

    fn set(&self, code: Code) {
        // Release: pairs with the Acquire in `load`.
        self.0.store(code as *mut (), Ordering::Release);
    }

    fn clear(&self) {
        // Release: pairs with the Acquire in `load`.
        self.0.store(ptr::null_mut(), Ordering::Release);
    }
}

#[derive(Debug)]
pub struct Kgraft {
    /// The slow stub and the source of truth: the kernel's func stacks, with each site's fast
    /// word beside its stack ([`Klp::extra`]): one table of `klp`'s size, so that a site known at
    /// compile time indexes it without a bounds check, in the stacks' allocation, so that the
    /// per-site loop reaches both from one register.
    stacks: Klp<FastWord>,
}

impl ReadSide for Kgraft {
    crate::strategy::stateless_read_side!();

    #[inline(always)]
    fn call(&self, _guard: &(), task: &TaskState, site: SiteId, arg: u64) -> u64 {
        match self.stacks.extra(site).load() {
            Some(code) => code(arg),
            None => {
                // kGraft's slow stub runs only during a transition. Inlined, so that each site
                // keeps its own call instruction in transition too; cold, so that the fast path
                // falls straight through to the call; laid out for a head in transition (the
                // only case that gets here). In transition a call is then klp's handler less its
                // steady test, which fails there, plus this word's load, test and branch, and
                // one jump back to the call: the gate counts 29.3 instructions per call in
                // `transition_patched` against klp's 27.4, 12.3 steady against fnptr's 10.7.
                //
                // Measured on an AMD Zen 5 guest (family 26 model 2, 2 vCPUs), criterion's
                // per-site `steady` and `transition_patched`, medians of three sets of 3 to 5
                // interleaved rounds: this 0.98–1.02× `fnptr` and 1.02× `klp` (1.20× with the
                // fast words in a slice of their own and the handler laid out for a steady
                // head); without the cold hint (the stub inline, the fast path jumping over it:
                // the same instruction counts) 1.01–1.04× and 0.90–0.91×. Measured earlier on
                // the Intel dev VM, before those changes: this 1.04× and 1.23×; without the cold
                // hint 1.14× and 0.89×; a stub out of line that returns the code 1.01× and
                // 1.67×; one that calls it (a call instruction shared by every site) 1.04× and
                // 1.29×; a per-section choice of path 1.15× and 1.04×. The fast path is kGraft's
                // point, so it wins.
                std::hint::cold_path();
                self.stacks.call_in_transition(task, site, arg)
            }
        }
    }
}

impl WriteSide for Kgraft {
    fn apply(&self, site: SiteId, change: StackChange<'_>) {
        let fast = self.stacks.extra(site);
        let selection = Selection::of(change.stack, change.original);
        if selection.transition {
            // Null first: the stack change may be what a migrated task must see.
            fast.clear();
            self.stacks.apply(site, change);
        } else {
            // The stack first: a reader that still finds null must find this change there.
            self.stacks.apply(site, change);
            fast.set(selection.head);
        }
    }

    fn reclaim(&self) {
        self.stacks.reclaim();
    }
}

impl Strategy for Kgraft {
    const INFO: Info = Info {
        name: "kgraft",
        description: "kGraft's fast and slow stubs in data: a per-site word holds the code every task runs, cleared while a transition covers the site, when calls take klp's handler instead: steady state is fnptr plus one test",
        consistency: Consistency::PerTask,
        probe: always_available,
        machine_fact: no_machine_fact,
    };

    fn new(originals: &[Code]) -> Self {
        Self { stacks: Klp::with_extra(originals, FastWord::of) }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::check::{code, fingerprint};
    use crate::model::{FuncId, PatchState, StackEntry};
    use crate::strategy::StackOp;

    /// The word follows the head's transition flag: null while it is set, the head's code once
    /// it is cleared, and a null word sends the call down the slow stub, which picks by state.
    #[test]
    fn the_fast_word_is_null_exactly_while_the_head_is_in_transition() {
        let k = Kgraft::new(&[code(0)]);
        let task = TaskState::new();
        let word = || k.stacks.extra(SiteId(0)).load().map(|c| c(0));
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
}

/// loom models of the fast word (run by `scripts/loom`), one per rule of `apply`: cleared before
/// any task can migrate, set only after the last task has.
#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use crate::check::{code, fingerprint};
    use crate::model::{FuncId, PatchState, StackEntry};
    use crate::strategy::StackOp;
    use crate::sync::{Arc, AtomicBool};

    fn push_in_transition(k: &Kgraft) {
        let stack = [StackEntry { func: FuncId(1), code: code(1), nop: false, transition: true }];
        k.apply(SiteId(0), StackChange { op: StackOp::Push, stack: &stack, original: code(0) });
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
                    push_in_transition(&k);
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

    /// The end of the transition: the writer clears the head's flag only once the task has
    /// migrated (as the engine does once none is pending). Before migrating the task must run the
    /// old code. Fails if `apply` sets the word to the new head while the head is in transition.
    #[test]
    fn the_word_is_set_only_after_the_last_task_migrated() {
        loom::model(|| {
            let k = Arc::new(Kgraft::new(&[code(0)]));
            let task = Arc::new(TaskState::new());
            task.set_state_for_test(PatchState::Unpatched);
            push_in_transition(&k);
            let migrated = Arc::new(AtomicBool::new(false));
            let writer = {
                let (k, migrated) = (k.clone(), migrated.clone());
                loom::thread::spawn(move || {
                    while !migrated.load(Ordering::Acquire) {
                        loom::thread::yield_now();
                    }
                    let settled = [StackEntry { func: FuncId(1), code: code(1), nop: false, transition: false }];
                    k.apply(
                        SiteId(0),
                        StackChange { op: StackOp::SetTransition(FuncId(1)), stack: &settled, original: code(0) },
                    );
                })
            };
            assert_eq!(k.call_alone(&(), &task, SiteId(0), 0), fingerprint(0), "the new code before migrating");
            task.set_state_for_test(PatchState::Patched);
            migrated.store(true, Ordering::Release);
            assert_eq!(k.call_alone(&(), &task, SiteId(0), 0), fingerprint(1), "the old code after migrating");
            writer.join().unwrap();
        });
    }
}
