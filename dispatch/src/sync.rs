//! The std/loom switch: everything in this crate that synchronizes goes through here, so that
//! `RUSTFLAGS="--cfg loom"` (see `scripts/loom`) model-checks the very code the benchmarks run.
//!
//! loom's own caveats apply (tokio-rs/loom README): it treats `SeqCst` accesses as `AcqRel`, which
//! can raise false alarms but never hides a bug in Acquire/Release code, and it does not explore
//! load buffering, so a Relaxed load may not be shown every value the C++ model allows.

#[cfg(not(loom))]
pub(crate) use std::sync::{
    Arc, Mutex, MutexGuard, RwLock,
    atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicU64, AtomicUsize, Ordering, fence},
};

#[cfg(loom)]
pub(crate) use loom::sync::{
    Arc, Mutex, MutexGuard, RwLock,
    atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicU64, AtomicUsize, Ordering, fence},
};

/// The thread handle a sleeping writer leaves for the task that wakes it.
#[cfg(not(loom))]
pub(crate) use std::thread::{Thread, current as current_thread};

#[cfg(loom)]
pub(crate) use loom::thread::{Thread, current as current_thread};

/// Sleeps until unparked or `timeout` has passed (spurious returns allowed, as for any park).
/// Under loom there is no time: it parks until unparked, so a lost wake-up shows as a deadlock
/// that loom reports instead of a timeout that hides it.
pub(crate) fn park_timeout(timeout: std::time::Duration) {
    #[cfg(not(loom))]
    std::thread::park_timeout(timeout);
    #[cfg(loom)]
    {
        let _ = timeout;
        loom::thread::park();
    }
}

/// A busy-wait step. Under loom it yields, as loom requires of every spin loop.
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(not(loom))]
    std::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}

/// A cheap identity for the calling thread, used to check that a task handle is used only by the
/// thread that registered it (std's `ThreadId` needs `thread::current()`, an Arc clone per call).
pub(crate) fn thread_token() -> u64 {
    use std::{cell::Cell, sync::atomic::AtomicU64 as StdAtomicU64};

    static NEXT: StdAtomicU64 = StdAtomicU64::new(1);
    #[cfg(not(loom))]
    std::thread_local!(static TOKEN: Cell<u64> = const { Cell::new(0) });
    #[cfg(loom)]
    loom::thread_local!(static TOKEN: Cell<u64> = Cell::new(0));
    TOKEN.with(|t| {
        if t.get() == 0 {
            // Relaxed: the counter only has to hand out distinct values; nothing is published.
            t.set(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        }
        t.get()
    })
}
