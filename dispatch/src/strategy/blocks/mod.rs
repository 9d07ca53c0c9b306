//! Building blocks that several strategies share, below the strategies themselves:
//!
//! - [`atomic_code`]: a code pointer in an atomic word (`fnptr`, `klp`, `percpu`, the seqlock).
//! - [`func_stack`]: the kernel handler's walk of a func stack (`klp`, `epoch`).
//! - [`seqlock_sites`]: a sequence lock per site over its [`Selection`](crate::model::Selection)
//!   (`seqlock`, and the source of truth of the caches).
//! - [`text`]: call instructions re-pointed while threads run them (`textpoke`).
//! - [`cache`]: what the cache strategies refill from and validate with (`percpu`, `tls`).

pub(crate) mod atomic_code;
pub(crate) mod cache;
pub(crate) mod func_stack;
pub(crate) mod seqlock_sites;
pub(crate) mod text;
