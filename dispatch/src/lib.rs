//! `dispatch`: the Linux livepatch redirection path (`klp_ftrace_handler`) re-created in user
//! space, with interchangeable strategies behind one trait.
//!
//! Read it bottom-up; every module imports only modules listed before it:
//!
//! 1. [`docs`]: the rules, in prose: the handler's steps, the invariants, the barrier pairs.
//! 2. [`model`]: ids, states, patch specs, errors, and the one selection rule.
//!    Beside it, [`rng`] and [`check`] (fingerprinted functions, poison, the universe log).
//! 3. [`task_list`]: per-task atomics, safe points, parking, grace periods; knows no strategy.
//! 4. [`strategy`]: the trait, the registry, the shared building blocks, one file per strategy.
//! 5. [`task`]: the handle a thread calls sites through; [`transition`]: the [`Patcher`];
//!    [`loops`]: the measured loops (one call instruction per site, one shared, or cold);
//!    [`kernel_c`]: the kernel's handler in C, and a C function pointer and direct call, in the
//!    per-site loop shape: what `klp` is measured against.
//! 6. [`driver`]: the writer's loop (announce, start, reverse, poll, record), used by every
//!    caller that drives transitions; [`torture`]: the consistency stress engine.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod docs;
pub(crate) mod sync;

pub mod model;

pub mod check;
pub mod rng;

pub mod task_list;

pub mod strategy;

pub mod task;
pub mod transition;

pub mod loops;

pub mod kernel_c;

pub mod driver;
#[cfg(not(loom))]
pub mod torture;

pub use model::{Code, Error, FuncSpec, Op, PatchId, PatchSpec, PatchState, SiteId};
pub use strategy::{Consistency, Info, Strategy, Visitor};
pub use task::{CriticalSection, Task};
pub use transition::{Patcher, PatcherConfig, Phases, Progress, Stacking, TransitionStats, Waiting};
