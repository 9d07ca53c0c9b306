//! The kernel's own handler, written in C over the kernel's data layout (`c/kernel_handler.c`,
//! compiled by the system C compiler at -O2), and its two floors in C (a relaxed function
//! pointer, a direct call), in the per-site loop shape of [`loops`](crate::loops): 8
//! sites, each called from its own call instruction, the loop's sum returned.
//!
//! It is what `klp` re-creates, measured beside it: the harness times these loops in the same
//! rounds as its per-site steady scenario and reports `klp ÷ fnptr` against `C handler ÷ C fnptr`
//! (the run's fidelity check), and the gungraun gate counts their instructions and fails when
//! `klp` takes more than one instruction per call over the C handler's. A ratio that moves
//! between CPUs is then explained where the C handler's moves with it, and overhead that is
//! ours, not the kernel's, shows as the gap between the two.
//!
//! The C handler's steps quote the kernel lines they stand for (`klp_ftrace_handler` in
//! `kernel/livepatch/patch.c`); its sites are set up once per process, in the steady state of one
//! patch on every site (one func per stack, not in transition, not a nop), and only read after.

use std::ffi::c_int;
#[cfg(all(test, not(loom)))]
use std::ffi::c_uint;
use std::sync::Once;

use crate::check;
use crate::model::{Code, PatchState};

/// Sites of every C loop.
pub const C_SITES: usize = 8;

/// The three C loops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CLoop {
    /// A direct call per site: `direct`'s counterpart.
    Direct,
    /// A relaxed atomic function pointer per site: `fnptr`'s counterpart.
    Fnptr,
    /// The kernel's `klp_ftrace_handler` per site: `klp`'s counterpart.
    Handler,
}

impl CLoop {
    pub const ALL: [CLoop; 3] = [CLoop::Direct, CLoop::Fnptr, CLoop::Handler];

    /// The name under which runs and the gate report it.
    pub fn name(self) -> &'static str {
        match self {
            CLoop::Direct => "C direct",
            CLoop::Fnptr => "C fnptr",
            CLoop::Handler => "C handler",
        }
    }

    /// The name without spaces (a benchmark id, a file name).
    pub fn id(self) -> &'static str {
        match self {
            CLoop::Direct => "c_direct",
            CLoop::Fnptr => "c_fnptr",
            CLoop::Handler => "c_handler",
        }
    }
}

/// The part of a task the C handler reads (`current->patch_state`, the kernel's
/// `KLP_TRANSITION_*` values) and its stand-in for `WARN_ON_ONCE(patch_state == IDLE)`: a count.
/// `struct kh_task` in the C.
#[repr(C)]
#[derive(Debug)]
struct CTask {
    patch_state: c_int,
    idle_warnings: u64,
}

impl CTask {
    fn new(state: PatchState) -> Self {
        // include/linux/livepatch.h: KLP_TRANSITION_IDLE -1, _UNPATCHED 0, _PATCHED 1.
        let patch_state = match state {
            PatchState::Idle => -1,
            PatchState::Unpatched => 0,
            PatchState::Patched => 1,
        };
        Self { patch_state, idle_warnings: 0 }
    }
}

// SAFETY (of every call below): the C functions take only the pointers described at each, read
// and write nothing else but their own static sites, and never unwind.
unsafe extern "C" {
    fn kh_init_loops(originals: *const Code, news: *const Code);
    fn kh_direct_loop(current: *mut CTask, rounds: usize) -> u64;
    fn kh_fnptr_loop(current: *mut CTask, rounds: usize) -> u64;
    fn kh_handler_loop(current: *mut CTask, rounds: usize) -> u64;
    fn kh_direct_signature() -> u64;
}

/// `struct kh` in the C: a set of 8 sites (their `klp_ops`, `klp_func`s and function pointers).
#[cfg(all(test, not(loom)))]
#[repr(C)]
struct Kh {
    _opaque: [u8; 0],
}

// The C's set-up of a set of sites of the caller's own, for tests of the handler's selection.
// SAFETY: as above.
#[cfg(all(test, not(loom)))]
unsafe extern "C" {
    fn kh_new(originals: *const Code) -> *mut Kh;
    fn kh_free(d: *mut Kh);
    fn kh_push(d: *mut Kh, site: c_uint, new_func: Code, nop: bool, transition: bool) -> c_int;
    fn kh_handler_call(d: *mut Kh, current: *mut CTask, site: c_uint, arg: u64) -> u64;
}

/// The loops' originals and new funcs: what `C handler` and `C fnptr` call. They are the
/// fingerprinted functions every strategy calls, so a call here costs what a call of a strategy
/// costs beyond its redirection (the gate compares whole counts).
fn codes() -> ([Code; C_SITES], [Code; C_SITES]) {
    (std::array::from_fn(check::code), std::array::from_fn(|k| check::code(C_SITES + k)))
}

static INIT: Once = Once::new();

/// A thread's handle on the C loops: its own task (the C handler's `current`), the sites
/// shared by every handle. Not `Sync`: the task is the calling thread's, as `current` is.
#[derive(Debug)]
pub struct CLoops {
    task: CTask,
}

impl Default for CLoops {
    fn default() -> Self {
        Self::new()
    }
}

impl CLoops {
    /// Sets the sites up (once per process) and makes a task for the calling thread, Idle as
    /// every task is outside a transition.
    pub fn new() -> Self {
        INIT.call_once(|| {
            let (originals, news) = codes();
            // SAFETY: two arrays of C_SITES (KH_SITES in the C) codes; `Once` makes this the
            // only call, before any loop can run (every loop needs a `CLoops`).
            unsafe { kh_init_loops(originals.as_ptr(), news.as_ptr()) };
        });
        Self { task: CTask::new(PatchState::Idle) }
    }

    /// Runs `which` for `rounds` rounds of the 8 sites; returns the sum of every call.
    #[inline(never)]
    pub fn run(&mut self, which: CLoop, rounds: usize) -> u64 {
        let task = &mut self.task as *mut CTask;
        // SAFETY: the sites were set up in `new` (this handle exists) and are only read now;
        // `task` is this handle's own, exclusively borrowed for the call.
        unsafe {
            match which {
                CLoop::Direct => kh_direct_loop(task, rounds),
                CLoop::Fnptr => kh_fnptr_loop(task, rounds),
                CLoop::Handler => kh_handler_loop(task, rounds),
            }
        }
    }

    /// What one round of `which` returns: [`run`](Self::run) returns `rounds` times it
    /// (wrapping).
    pub fn signature(which: CLoop) -> u64 {
        match which {
            // SAFETY: a pure function of constants.
            CLoop::Direct => unsafe { kh_direct_signature() },
            CLoop::Fnptr | CLoop::Handler => check::signature(&codes().1, 0),
        }
    }
}

/// A func on a test stack: its code, and whether it is a nop and in transition.
#[cfg(all(test, not(loom)))]
#[derive(Clone, Copy, Debug)]
struct TestFunc {
    code: Code,
    nop: bool,
    transition: bool,
}

/// A single site of the C handler with a stack of the caller's choosing (oldest first), for
/// tests of its selection; one call for a task in `state`. Returns what ran, and whether the
/// handler warned that the task was Idle.
#[cfg(all(test, not(loom)))]
fn c_handler_call(original: Code, stack: &[TestFunc], state: PatchState) -> (u64, bool) {
    let originals = [original; C_SITES];
    // SAFETY: an array of KH_SITES codes.
    let d = unsafe { kh_new(originals.as_ptr()) };
    assert!(!d.is_null(), "kh_new: out of memory");
    for f in stack {
        // SAFETY: `d` is live (freed below); site 0 exists.
        let pushed = unsafe { kh_push(d, 0, f.code, f.nop, f.transition) };
        assert_eq!(pushed, 0, "kh_push refused a func (depth above KH_DEPTH)");
    }
    let mut task = CTask::new(state);
    // SAFETY: `d` is live and set up; `task` is ours.
    let ran = unsafe { kh_handler_call(d, &mut task, 0, 0) };
    // SAFETY: from `kh_new`, freed once.
    unsafe { kh_free(d) };
    (ran, task.idle_warnings > 0)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::check::{code, fingerprint, small_stacks};
    use crate::model::select;

    #[test]
    fn every_loop_calls_every_site_every_round() {
        let mut c = CLoops::new();
        for which in CLoop::ALL {
            let one = CLoops::signature(which);
            assert_eq!(c.run(which, 1), one, "{}", which.name());
            assert_eq!(c.run(which, 5), one.wrapping_mul(5), "{}", which.name());
            assert_eq!(c.run(which, 0), 0, "{}", which.name());
        }
        // Steady state: the handler and the pointer run the patch's funcs, not the originals.
        let (originals, news) = codes();
        assert_eq!(CLoops::signature(CLoop::Handler), check::signature(&news, 0));
        assert_ne!(CLoops::signature(CLoop::Handler), check::signature(&originals, 0));
        assert_eq!(c.task.idle_warnings, 0, "the steady path never reads the task's state");
    }

    /// The C handler selects what the model's one rule ([`select`]) selects, for every small
    /// stack ([`small_stacks`]: each func a nop or not, in transition or not; only the head's
    /// flag matters to the handler) and every state; and warns exactly where the kernel's
    /// `WARN_ON_ONCE` does (an Idle task in a transition).
    #[test]
    fn the_c_handler_selects_as_the_model_does() {
        let original = code(0);
        let mut cases = 0;
        for entries in small_stacks() {
            let stack: Vec<TestFunc> =
                entries.iter().map(|e| TestFunc { code: e.code, nop: e.nop, transition: e.transition }).collect();
            for state in [PatchState::Idle, PatchState::Unpatched, PatchState::Patched] {
                let (ran, warned) = c_handler_call(original, &stack, state);
                let want = select(&entries, original, state)(0);
                assert_eq!(ran, want, "stack {stack:?}, {state:?}");
                let in_transition = stack.last().is_some_and(|h| h.transition);
                assert_eq!(warned, in_transition && state == PatchState::Idle, "stack {stack:?}, {state:?}");
                cases += 1;
            }
        }
        assert_eq!(cases, 3 * (1 + 4 + 16));
        assert_eq!(fingerprint(1), code(1)(0), "the codes are told apart by what they return");
    }
}
