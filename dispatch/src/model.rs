//! The livepatch model: sites, funcs, patches, the tri-state task state, and the typed errors.
//!
//! The bottom layer of code (only the prose of [`docs`](crate::docs) is below it): it imports
//! nothing else of this crate. Vocabulary follows the kernel (see
//! [`docs`](crate::docs)): a *site* is a patchable function (its original implementation plus a
//! func stack), a *func* is one patch's replacement for one site, a *patch* is a set of funcs.
//! `nop` funcs are made by [`Patcher::replace`](crate::Patcher::replace) only.
//!
//! The one selection rule, "which code does this task run at this site", is [`Version::select`];
//! the writer side precomputes with [`select`] and [`Selection`], the reader side asks
//! [`TaskState::version`](crate::task_list::TaskState::version), which applies the same rule and counts
//! an Idle task found inside a transition.

use std::fmt;
use std::time::Duration;

/// The code of a function: what a redirection resolves to and then calls. The C calling
/// convention, so that `textpoke` may call it from a call instruction of its own (the Rust
/// convention is unspecified); on x86-64 both pass the argument and the result in the same
/// registers, so no strategy's call costs more for it. One difference: a panic cannot unwind out
/// of an `extern "C"` function, so a patched function that panics aborts the process, under
/// every strategy.
pub type Code = extern "C" fn(u64) -> u64;

/// A patchable function, by index into the sites the [`Patcher`](crate::Patcher) was created with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SiteId(pub u32);

impl SiteId {
    #[inline]
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A loaded patch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PatchId(pub u32);

/// One func on a func stack; unique for the life of a [`Patcher`](crate::Patcher).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FuncId(pub u32);

/// A task's `patch_state` (the kernel's `KLP_TRANSITION_{IDLE,UNPATCHED,PATCHED}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PatchState {
    /// No transition is in progress (`KLP_UNDEFINED` before 2024).
    Idle = 0,
    Unpatched = 1,
    Patched = 2,
}

impl PatchState {
    /// `!state` of `klp_init_transition`: the state every task starts a transition in.
    pub(crate) fn opposite(self) -> Self {
        match self {
            Self::Patched => Self::Unpatched,
            Self::Unpatched => Self::Patched,
            Self::Idle => Self::Idle,
        }
    }
}

/// One func of a patch, as the user writes it.
#[derive(Clone, Copy, Debug)]
pub struct FuncSpec {
    pub site: SiteId,
    pub code: Code,
    /// Switched for every task at once, without per-task consistency (the kernel's `immediate`,
    /// v4.12–v4.15): the func still carries a `transition` flag while its patch is in transition,
    /// but the patcher's stack check ignores it, so a task asleep inside it may be migrated. A
    /// patch whose funcs are all immediate completes at once, without per-task work.
    pub immediate: bool,
}

impl FuncSpec {
    pub fn new(site: SiteId, code: Code) -> Self {
        Self { site, code, immediate: false }
    }

    pub fn immediate(site: SiteId, code: Code) -> Self {
        Self { site, code, immediate: true }
    }
}

/// A patch as the user writes it: a name and at most one func per site.
#[derive(Clone, Debug)]
pub struct PatchSpec {
    pub name: String,
    pub funcs: Vec<FuncSpec>,
}

impl PatchSpec {
    pub fn new(name: impl Into<String>, funcs: impl IntoIterator<Item = FuncSpec>) -> Self {
        Self { name: name.into(), funcs: funcs.into_iter().collect() }
    }
}

/// One func on a site's func stack, as the writer side of a strategy sees it.
#[derive(Clone, Copy, Debug)]
pub struct StackEntry {
    pub func: FuncId,
    pub code: Code,
    /// A placeholder of an atomic replace: run the original ([`HandlerStep::Nop`](crate::docs::HandlerStep::Nop)).
    pub nop: bool,
    /// `func->transition`: during a transition, pick by the calling task's state.
    pub transition: bool,
}

/// Which func of a site's stack a task runs: the head, or the one below it (the previous version;
/// the original when there is none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Head,
    Previous,
}

impl Version {
    /// The selection rule ([`Invariant::Selection`](crate::docs::Invariant::Selection)), written
    /// once: outside a transition every task runs the head; inside one, an Unpatched task runs the
    /// previous version and a Patched one the head. An Idle task inside a transition breaks
    /// [`Invariant::TriState`](crate::docs::Invariant::TriState): it runs the head, as the kernel
    /// does after its warning; readers count it ([`TaskState::version`](crate::task_list::TaskState::version)).
    #[inline(always)]
    pub fn select(in_transition: bool, state: PatchState) -> Self {
        if in_transition && state == PatchState::Unpatched { Self::Previous } else { Self::Head }
    }
}

/// What a task in `state` runs for a site whose stack is `stack` (oldest first), given the site's
/// `original`: [`Version::select`] applied to a whole stack, for every strategy that precomputes
/// its answer and for the tests' oracle.
pub fn select(stack: &[StackEntry], original: Code, state: PatchState) -> Code {
    let Some((head, below)) = stack.split_last() else { return original };
    let func = match Version::select(head.transition, state) {
        Version::Head => head,
        Version::Previous => match below.last() {
            Some(previous) => previous,
            None => return original,
        },
    };
    if func.nop { original } else { func.code }
}

/// What a site's stack selects for each [`Version`], precomputed by the writer: snapshot-style
/// strategies publish it whole, and readers pick with [`Selection::code`]. Outside a transition
/// both codes are equal.
#[derive(Clone, Copy, Debug)]
pub struct Selection {
    /// The head's `transition` flag.
    pub transition: bool,
    pub head: Code,
    pub previous: Code,
}

impl Selection {
    pub fn of(stack: &[StackEntry], original: Code) -> Self {
        Self {
            transition: stack.last().is_some_and(|e| e.transition),
            head: select(stack, original, PatchState::Patched),
            previous: select(stack, original, PatchState::Unpatched),
        }
    }

    /// The code of `version`.
    #[inline(always)]
    pub fn code(&self, version: Version) -> Code {
        match version {
            Version::Head => self.head,
            Version::Previous => self.previous,
        }
    }
}

/// The kind of operation a transition carries out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Enable,
    Disable,
    Replace,
}

/// Why an operation the API accepts in general is refused for this patch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forbidden {
    /// Strict stacking (kernels before v5.1): only the most recently enabled patch may be disabled.
    NotTopmost,
    /// A cumulative replace needs per-task consistency to discard what it replaces; `immediate`
    /// funcs (removed in v4.16, before atomic replace existed in v5.1) cannot take part.
    ImmediateInReplace,
    /// A patch with `immediate` funcs can be disabled only while it is the most recently enabled
    /// one. `immediate` existed only under strict stacking (v4.12 to v4.15), and a reversed
    /// disable pushes those funcs back on top of their stacks, where they would cover the funcs
    /// of a patch enabled after theirs.
    ImmediateNotTopmost,
    /// The patch was forced: its code can never be released (kernel: `patch->forced`).
    Forced,
    /// The patch is enabled or in transition; disable it first.
    StillEnabled,
    /// The transition has finished migrating tasks and is settling; it can no longer be reversed.
    Settling,
}

impl fmt::Display for Forbidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotTopmost => {
                "strict stacking: only the most recently enabled patch can be disabled; disable the patches above it first"
            }
            Self::ImmediateInReplace => {
                "a replace patch cannot contain immediate funcs; load it without `immediate`"
            }
            Self::ImmediateNotTopmost => {
                "a patch with immediate funcs can be disabled only while it is the most recently enabled (a reversed disable would put them back above newer patches' funcs); disable the patches enabled after it first"
            }
            Self::Forced => "the patch was forced, so its code is pinned for ever and cannot be released",
            Self::StillEnabled => "the patch is enabled; disable it and wait for the transition first",
            Self::Settling => {
                "every task has migrated and the transition is settling; wait for it, then disable or enable"
            }
        })
    }
}

/// Every way the model refuses bad input. Each leaves every state as it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    UnknownSite {
        site: SiteId,
        sites: usize,
    },
    UnknownPatch(PatchId),
    EmptyPatch {
        name: String,
    },
    DuplicateSite {
        name: String,
        site: SiteId,
    },
    AlreadyEnabled(PatchId),
    NotEnabled(PatchId),
    TransitionInProgress {
        patch: PatchId,
    },
    NoTransition,
    Forbidden {
        patch: PatchId,
        reason: Forbidden,
    },
    /// A task handle was used from a thread other than the one that registered it.
    WrongThread,
    TooManyTasks {
        capacity: usize,
    },
    NotParked,
    AlreadyParked,
    /// The transition did not complete in time; `pending` tasks have not reached the target.
    Timeout {
        patch: PatchId,
        pending: usize,
        waited: Duration,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownSite { site, sites } => write!(
                f,
                "unknown site {}: this patcher has {sites} sites (0..{sites}); create it with more sites or fix the patch",
                site.0
            ),
            Self::UnknownPatch(p) => write!(f, "unknown patch {}: load it with Patcher::load first", p.0),
            Self::EmptyPatch { name } => write!(f, "patch {name:?} has no funcs; give it at least one FuncSpec"),
            Self::DuplicateSite { name, site } => {
                write!(f, "patch {name:?} has two funcs for site {}; a patch may replace a site only once", site.0)
            }
            Self::AlreadyEnabled(p) => write!(f, "patch {} is already enabled; disable it first", p.0),
            Self::NotEnabled(p) => write!(f, "patch {} is not enabled; enable it first", p.0),
            Self::TransitionInProgress { patch } => write!(
                f,
                "a transition of patch {} is in progress; wait for it (Patcher::wait), reverse or force it first",
                patch.0
            ),
            Self::NoTransition => {
                f.write_str("no transition is in progress; there is nothing to reverse, force or wait for")
            }
            Self::Forbidden { patch, reason } => write!(f, "patch {}: {reason}", patch.0),
            Self::WrongThread => f.write_str(
                "this task handle belongs to another thread; register a task (or spawn a child task) on this thread",
            ),
            Self::TooManyTasks { capacity } => {
                write!(f, "all {capacity} task slots are in use; raise PatcherConfig::capacity or drop finished tasks")
            }
            Self::NotParked => f.write_str("the task is not parked; call park() before unpark()"),
            Self::AlreadyParked => f.write_str("the task is already parked; unpark() it first"),
            Self::Timeout { patch, pending, waited } => write!(
                f,
                "the transition of patch {} did not complete within {waited:?}: {pending} task(s) have not reached a safe point; \
                 let them run safe_point()/park(), or reverse() or force() the transition",
                patch.0
            ),
        }
    }
}

impl std::error::Error for Error {}
