//! `dispatch`: the Linux livepatch redirection path (`klp_ftrace_handler`) re-created in user
//! space, with interchangeable strategies behind one trait.
//!
//! - [`model`]: sites, funcs, patches, the tri-state task state, typed errors.
//! - [`task`]: tasks, safe points, parking, and the quiescent-state grace periods.
//! - [`transition`]: the [`Patcher`], the one transition engine, generic over the strategy.
//! - [`strategy`]: the trait (read side / write side) and the one registry of strategies.
//! - [`check`]: fingerprinted functions, poison, and the universe log used to verify readers.
//! - [`torture`]: the consistency torture engine of the stress tests and `scripts/soak`.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod check;
pub mod model;
pub mod strategy;
pub(crate) mod sync;
pub mod task;
#[cfg(not(loom))]
pub mod torture;
pub mod transition;

pub use model::{Code, Error, FuncSpec, Op, PatchId, PatchSpec, PatchState, SiteId};
pub use strategy::{Consistency, Info, Strategy, Visitor};
pub use task::Task;
pub use transition::{Patcher, PatcherConfig, Progress, Stacking, TransitionStats};
