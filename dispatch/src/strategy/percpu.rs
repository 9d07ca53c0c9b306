//! `percpu`: a cache slot per possible CPU (`CachePadded`), holding for each site what it selects
//! (both versions' code and the head's `transition` flag), stamped with the generation every writer
//! change bumps. A critical section ([`ReadSide::enter`]) reads its CPU id and the generation once
//! and keeps that CPU's slot; each call then checks its entry's stamp against the generation, reads
//! the entry, re-checks the stamp and picks with its own state; on a miss it reads the site on the
//! slow path (the seqlock source) and refills the entry.
//!
//! Keeping the slot for the whole section is sound because nothing depends on the slot being the
//! current CPU's: the entry's own sequence (below) makes any slot safe to use from any CPU. A task
//! that migrates mid-section only shares another CPU's cache lines until its next section. A
//! restartable sequence (rseq) would not make the hit cheaper here: its critical section cannot
//! include the call (an abort would run it twice), so each call would still begin one (a store
//! of the descriptor and a CPU-id load) where the stamp re-check is one load and a compare.
//!
//! The CPU id comes from the rseq area glibc ≥ 2.35 registers for every thread (`__rseq_offset`
//! from the thread pointer, field `cpu_id`; a plain load, ~0.7 ns here), or from `sched_getcpu`
//! (~4 ns) when rseq is not registered. [`cpu_source`] says which one is active: a per-CPU fast
//! path that silently falls back to a system call runs several times slower with nothing to say
//! why (per-CPU allocators have shipped that way), so the harness prints it.
//!
//! # Synchronization
//!
//! The CPU id can be stale the moment it is read: a thread that migrates, or is preempted, may
//! read or refill another CPU's entry while that CPU's own thread uses it. Each entry is therefore
//! a tiny seqlock whose even values are generation stamps (`2 × generation`):
//!
//! | refiller ([`PerCpu::refill`]) | reader ([`PerCpu::call`]) | guarantees |
//! |---|---|---|
//! | CAS stamp → stamp\|1 claims the entry (losers skip the refill) → `fence(Release)` → words (Relaxed) | words (Relaxed) → `fence(Acquire)` → stamp re-check (Relaxed) | a reader that read any word of a refill in progress sees the odd stamp, or a newer one, and misses |
//! | words → stamp `2g` (Release) | stamp (Acquire) → words | a reader that sees stamp `2g` reads the words refilled for generation g |
//! | refill read the source after loading generation g (see [`super::blocks::cache`]) | — | an entry stamped g holds a selection at least as new as generation g |
//! | task states (init) → source → generation → refiller's stamp (Release) | stamp (Acquire), or the reader's own refill → `patch_state` | [`Barrier::StatesBeforeFlag`]: the state a reader picks with is never older than the selection, so a task that sees a transition sees its own state as Patched or Unpatched (the stress test with forking tasks caught the state read before a refill) |
//!
//! So whichever CPU's entry a thread ends up using, it either gets a whole entry of the
//! generation it loaded or takes the slow path. A hit counts an Idle task inside a transition only
//! after the stamp re-check, so a torn read is never counted.
//!
//! [`Barrier::StatesBeforeFlag`]: crate::docs::Barrier::StatesBeforeFlag

use std::sync::OnceLock;

use crossbeam_utils::CachePadded;

use crate::model::{Code, Selection, SiteId};
use crate::strategy::blocks::atomic_code::AtomicCode;
use crate::strategy::blocks::cache::Source;
use crate::strategy::{Consistency, Info, MachineFact, ReadSide, StackChange, Strategy, WriteSide, always_available};
use crate::sync::{AtomicBool, AtomicU64, Ordering, fence};
use crate::task_list::TaskState;

/// How the current CPU id is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuSource {
    /// The `cpu_id` field of the thread's rseq area, at this offset from the thread pointer.
    Rseq {
        offset: isize,
    },
    SchedGetcpu,
}

impl CpuSource {
    pub fn name(self) -> &'static str {
        match self {
            Self::Rseq { .. } => "rseq",
            Self::SchedGetcpu => "sched_getcpu",
        }
    }

    fn detect() -> Self {
        #[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            // SAFETY: dlsym with RTLD_DEFAULT and NUL-terminated names only looks symbols up.
            let (offset, size) = unsafe {
                (
                    libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_offset".as_ptr()),
                    libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_size".as_ptr()),
                )
            };
            if !offset.is_null() && !size.is_null() {
                // SAFETY: glibc exports these as `const ptrdiff_t` and `const unsigned int`.
                let (offset, size) = unsafe { (*(offset as *const isize), *(size as *const u32)) };
                // `cpu_id` is the u32 at bytes 4..8 of struct rseq; size 0 = not registered.
                let source = Self::Rseq { offset };
                if size >= 8 && source.rseq_cpu().is_some() {
                    return source;
                }
            }
        }
        Self::SchedGetcpu
    }

    /// The rseq `cpu_id` of the calling thread, if its rseq area is registered.
    #[inline(always)]
    fn rseq_cpu(self) -> Option<usize> {
        #[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
        if let Self::Rseq { offset } = self {
            let tp: *const u8;
            // SAFETY: reads the thread pointer register (no memory access, no flags).
            #[cfg(target_arch = "x86_64")]
            unsafe {
                core::arch::asm!("mov {}, fs:0", out(reg) tp, options(nostack, readonly, preserves_flags));
            }
            // SAFETY: as above.
            #[cfg(target_arch = "aarch64")]
            unsafe {
                core::arch::asm!("mrs {}, tpidr_el0", out(reg) tp, options(nostack, nomem, preserves_flags));
            }
            // SAFETY: glibc placed this thread's struct rseq at tp + __rseq_offset, and registered
            // at least 8 bytes of it (checked in `detect`); the kernel updates `cpu_id` in place,
            // so it is read as an atomic.
            let id = unsafe {
                (*(tp.offset(offset).add(4) as *const std::sync::atomic::AtomicU32))
                    .load(std::sync::atomic::Ordering::Relaxed)
            };
            // u32::MAX / MAX-1: RSEQ_CPU_ID_UNINITIALIZED / REGISTRATION_FAILED on this thread.
            return (id < u32::MAX - 1).then_some(id as usize);
        }
        None
    }

    /// The calling thread's CPU (possibly stale by the time it is used).
    #[inline(always)]
    pub fn current(self) -> usize {
        match self.rseq_cpu() {
            Some(cpu) => cpu,
            None => sched_getcpu(),
        }
    }
}

#[cold]
fn sched_getcpu() -> usize {
    // SAFETY: sched_getcpu has no preconditions; -1 (error) maps to CPU 0.
    usize::try_from(unsafe { libc::sched_getcpu() }).unwrap_or(0)
}

/// The CPU-id source of this process (detected once): what the harness records and prints.
pub fn cpu_source() -> CpuSource {
    static SOURCE: OnceLock<CpuSource> = OnceLock::new();
    *SOURCE.get_or_init(CpuSource::detect)
}

/// `percpu`'s [`Info::machine_fact`]: where it reads the CPU id from, with a warning where that
/// is the slower system call.
fn machine_fact() -> Option<MachineFact> {
    let source = cpu_source();
    let warning = matches!(source, CpuSource::SchedGetcpu).then(|| {
        "percpu reads the CPU id with sched_getcpu (no rseq): slower than on glibc >= 2.35, which registers rseq"
            .to_owned()
    });
    Some(MachineFact { what: "cpu id", value: source.name().to_owned(), warning })
}

/// Possible CPUs (`/sys/devices/system/cpu/possible`, e.g. "0-15"), so that every CPU id has a slot.
fn possible_cpus() -> usize {
    let parse = |s: &str| -> Option<usize> {
        s.trim().split(',').map(|r| r.rsplit('-').next()?.parse::<usize>().ok()).try_fold(0, |m, x| Some(m.max(x? + 1)))
    };
    std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|s| parse(&s))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// One site's cached selection in one CPU's slot.
#[derive(Debug)]
struct CpuEntry {
    /// `2 × generation` when valid, odd while a refill is in progress, 0 when empty.
    stamp: AtomicU64,
    transition: AtomicBool,
    head: AtomicCode,
    previous: AtomicCode,
}

impl CpuEntry {
    /// The words, Relaxed: only meaningful once the caller's stamp re-check confirms them.
    #[inline(always)]
    fn selection(&self) -> Selection {
        Selection {
            transition: self.transition.load(Ordering::Relaxed),
            head: self.head.load(Ordering::Relaxed),
            previous: self.previous.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug)]
pub struct PerCpu {
    source: Source,
    slots: Box<[CachePadded<Box<[CpuEntry]>>]>,
    cpu: CpuSource,
}

impl PerCpu {
    fn with_cpus(originals: &[Code], cpus: usize, cpu: CpuSource) -> Self {
        let entry = |&c: &Code| CpuEntry {
            stamp: AtomicU64::new(0),
            transition: AtomicBool::new(false),
            head: AtomicCode::new(c),
            previous: AtomicCode::new(c),
        };
        let slot = || CachePadded::new(originals.iter().map(entry).collect::<Box<[CpuEntry]>>());
        Self { source: Source::new(originals), slots: (0..cpus.max(1)).map(|_| slot()).collect(), cpu }
    }

    /// The CPU-id source this instance uses.
    pub fn cpu_source(&self) -> CpuSource {
        self.cpu
    }

    /// The slot of `cpu` (a CPU id beyond the possible ones, which the kernel never reports,
    /// would share a slot rather than fail).
    #[inline(always)]
    fn slot(&self, cpu: usize) -> &[CpuEntry] {
        &self.slots[cpu % self.slots.len()]
    }

    /// The miss path: read the site from the source and, unless another thread is refilling this
    /// entry, refill it for `generation`.
    #[inline(never)]
    fn refill(&self, entry: &CpuEntry, seen: u64, generation: u64, site: SiteId) -> Selection {
        let selection = self.source.read(site);
        // Relaxed CAS: it only claims the entry; the fence below orders it before the stores.
        if seen & 1 == 0 && entry.stamp.compare_exchange(seen, seen | 1, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            // Pairs with the reader's `fence(Acquire)`: a reader that reads any word stored
            // below also sees the odd stamp (or a later one) at its re-check, and misses.
            fence(Ordering::Release);
            entry.transition.store(selection.transition, Ordering::Relaxed);
            entry.head.store(selection.head, Ordering::Relaxed);
            entry.previous.store(selection.previous, Ordering::Relaxed);
            // Release: pairs with the reader's Acquire stamp load; without it a reader could see
            // the new stamp with the old words, i.e. a stale version for its generation.
            entry.stamp.store(generation << 1, Ordering::Release);
        }
        selection
    }
}

/// `percpu`'s [`Guard`](ReadSide::Guard) of a critical section: the slot of the CPU the task was on
/// when the section opened, and the generation loaded then (why both may be kept: see the module
/// comment and [`ReadSide`]).
#[derive(Debug)]
pub struct PerCpuGuard<'a> {
    slot: &'a [CpuEntry],
    generation: u64,
}

impl ReadSide for PerCpu {
    type TaskLocal = ();
    type Guard<'a> = PerCpuGuard<'a>;

    fn task_local(&self) {}

    #[inline(always)]
    fn enter(&self, _local: &()) -> PerCpuGuard<'_> {
        PerCpuGuard { slot: self.slot(self.cpu.current()), generation: self.source.generation() }
    }

    #[inline(always)]
    fn call(&self, guard: &PerCpuGuard<'_>, task: &TaskState, site: SiteId, arg: u64) -> u64 {
        let entry = &guard.slot[site.index()];
        // Acquire: pairs with the Release stamp store that ends `refill`.
        let seen = entry.stamp.load(Ordering::Acquire);
        if seen == guard.generation << 1 {
            let selection = entry.selection();
            // Pairs with `fence(Release)` in `refill` (see the table above).
            fence(Ordering::Acquire);
            if entry.stamp.load(Ordering::Relaxed) == seen {
                // The state is read after the stamp (see the table above), and only now, once
                // the words are known to be whole.
                return selection.code(task.version(selection.transition))(arg);
            }
        }
        task.note_stale_cache_refill();
        let selection = self.refill(entry, seen, guard.generation, site);
        // The state is read only now, after the source: a refill may read a change newer than
        // the generation loaded above, and only a state read after it is ordered after the task
        // states the engine initialised before that change (a state read before it could still
        // say Idle next to a transition, and pick the new version mid-section).
        selection.code(task.version(selection.transition))(arg)
    }
}

impl WriteSide for PerCpu {
    fn apply(&self, site: SiteId, change: StackChange<'_>) {
        self.source.apply(site, change);
    }
}

impl Strategy for PerCpu {
    const INFO: Info = Info {
        name: "percpu",
        description: "a cache slot per CPU (CPU id from rseq, else `sched_getcpu`), taken once per critical section and validated by a writer generation: memory bounded by CPUs, a stamp check and re-check per call",
        consistency: Consistency::PerTask,
        probe: always_available,
        machine_fact,
    };

    fn new(originals: &[Code]) -> Self {
        // Under loom every thread shares one slot: the CPU id loom cannot control would make its
        // executions differ, and one shared slot is the worst case of stale CPU ids anyway.
        if cfg!(loom) {
            return Self::with_cpus(originals, 1, CpuSource::SchedGetcpu);
        }
        Self::with_cpus(originals, possible_cpus(), cpu_source())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// One slot for every CPU, so that a migration of the test thread cannot add a miss.
    #[test]
    fn a_forced_miss_refills_and_picks_by_state() {
        crate::strategy::blocks::cache::tests::forced_miss(|o| PerCpu::with_cpus(o, 1, cpu_source()), |s| &s.source);
    }
}

/// loom model of the cache refill (run by `scripts/loom`): two threads share one CPU's entry (a
/// stale CPU id); one refills it while the writer changes the site; a reader that has seen the new
/// generation must get the new target, whether it hits the refilled entry or misses.
#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use crate::check::{code, fingerprint};
    use crate::model::{FuncId, PatchState, StackEntry};
    use crate::strategy::StackOp;
    use crate::sync::Arc;

    #[test]
    fn refill_under_a_stale_cpu_id() {
        loom::model(|| {
            let s = Arc::new(PerCpu::with_cpus(&[code(0)], 1, CpuSource::SchedGetcpu));
            let task = Arc::new(TaskState::new());
            // Warm the (only) entry for generation 1.
            assert_eq!(s.call_alone(&(), &task, SiteId(0), 0), fingerprint(0));
            let writer = {
                let s = s.clone();
                loom::thread::spawn(move || {
                    let stack = [StackEntry { func: FuncId(1), code: code(1), nop: false, transition: false }];
                    s.apply(SiteId(0), StackChange { op: StackOp::Push, stack: &stack, original: code(0) });
                })
            };
            let refiller = {
                let (s, task) = (s.clone(), task.clone());
                loom::thread::spawn(move || {
                    let got = s.call_alone(&(), &task, SiteId(0), 0);
                    assert!(got == fingerprint(0) || got == fingerprint(1));
                })
            };
            while s.source.generation() < 2 {
                loom::thread::yield_now();
            }
            assert_eq!(s.call_alone(&(), &task, SiteId(0), 0), fingerprint(1), "stale target for the generation seen");
            writer.join().unwrap();
            refiller.join().unwrap();
        });
    }

    /// A task that was Idle when the transition started, and is switched to Unpatched by the
    /// engine's init before the func is pushed, must never run the new func: not even when a
    /// stale generation sends it to refill from a source that already holds the transition.
    #[test]
    fn state_is_read_after_a_refill() {
        loom::model(|| {
            let s = Arc::new(PerCpu::with_cpus(&[code(0)], 1, CpuSource::SchedGetcpu));
            let task = Arc::new(TaskState::new());
            assert_eq!(s.call_alone(&(), &task, SiteId(0), 0), fingerprint(0));
            let writer = {
                let (s, task) = (s.clone(), task.clone());
                loom::thread::spawn(move || {
                    // klp_init_transition(PATCHED): the running task becomes Unpatched …
                    task.set_state_for_test(PatchState::Unpatched);
                    // … then the new func is published in transition.
                    let stack = [StackEntry { func: FuncId(1), code: code(1), nop: false, transition: true }];
                    s.apply(SiteId(0), StackChange { op: StackOp::Push, stack: &stack, original: code(0) });
                })
            };
            let refiller = {
                let s = s.clone();
                loom::thread::spawn(move || {
                    // Another task, already migrated, refills the shared entry.
                    let other = TaskState::new();
                    other.set_state_for_test(PatchState::Patched);
                    s.call_alone(&(), &other, SiteId(0), 0);
                })
            };
            assert_eq!(
                s.call_alone(&(), &task, SiteId(0), 0),
                fingerprint(0),
                "an Idle/Unpatched task ran the new func"
            );
            writer.join().unwrap();
            refiller.join().unwrap();
        });
    }
}
