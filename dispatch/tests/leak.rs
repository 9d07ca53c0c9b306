//! No leak: a patcher dropped mid-transition, its tasks dropped after, frees every byte it
//! allocated. A counting global allocator measures it; this file holds one test so that nothing
//! else allocates meanwhile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use dispatch::check::code;
use dispatch::{FuncSpec, PatchSpec, Patcher, PatcherConfig, SiteId, Strategy, Visitor};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

std::thread_local! {
    /// Only the test's own thread is counted: the test harness's other threads allocate too.
    static COUNTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn counted() -> bool {
    COUNTED.try_with(|c| c.get()).unwrap_or(false)
}

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counted() {
            // Relaxed: one thread counts; read on the same thread.
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract is passed through.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if counted() {
            // Relaxed: as in `alloc`.
            LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract is passed through.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

struct Scenario;

impl Visitor for Scenario {
    type Output = isize;

    /// Bytes still allocated after the scenario (0: nothing leaked, or the strategy is unavailable
    /// here).
    fn visit<S: Strategy>(&mut self) -> isize {
        // An unavailable strategy (said on stderr) allocates nothing: it passes as 0 bytes.
        if dispatch::strategy::skip_if_unavailable(&S::INFO) {
            return 0;
        }
        let run = || {
            let p = Patcher::<S>::new(&[code(0), code(1)], PatcherConfig::default());
            let t = p.register().unwrap();
            let a = p.load(PatchSpec::new("a", [FuncSpec::new(SiteId(0), code(10))])).unwrap();
            let b = p.load(PatchSpec::new("b", [FuncSpec::new(SiteId(1), code(11))])).unwrap();
            p.enable(a).unwrap();
            for _ in 0..4 {
                t.safe_point().unwrap();
                p.try_complete();
            }
            // Replace (retires a's func and nop) and leave it in progress.
            p.replace(b).unwrap();
            t.call(SiteId(0), 0);
            drop(p);
            t.call(SiteId(1), 0);
            t.safe_point().unwrap();
        };
        // Warm up lazily allocated per-thread state (arc-swap's debts) first.
        run();
        let before = LIVE.load(Ordering::Relaxed);
        run();
        LIVE.load(Ordering::Relaxed) - before
    }
}

#[test]
fn nothing_leaks_when_the_patcher_is_dropped_mid_transition() {
    COUNTED.with(|c| c.set(true));
    let leaks: Vec<(&str, isize)> =
        dispatch::strategy::ALL.iter().map(|i| i.name).zip(dispatch::strategy::visit_all(&mut Scenario)).collect();
    for (name, bytes) in &leaks {
        assert_eq!(*bytes, 0, "{name} leaked {bytes} bytes (all: {leaks:?})");
    }
}
