//! The measurement protocol's threads: refscale's (the kernel's `kernel/rcu/refscale.c`).
//! Readers are pinned to CPUs of the affinity mask, released together by a start barrier, warmed
//! up for `--warmup` and until every reader has checked in, timed in batches of one critical section
//! (`calls_per_safepoint` calls between two safe points), then kept running until the last reader
//! is done; a writer drives transitions open-loop at the scenario's rate. Each critical section is
//! checked against the universes the writer announced.

use std::hint::black_box;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dispatch::check::{self, UniverseLog};
use dispatch::driver::Driver;
use dispatch::loops::{self, LoopFn};
use dispatch::strategy::Consistency;
use dispatch::{Op, PatchSpec, Patcher, SiteId, Strategy, Task, Waiting};
use hdrhistogram::Histogram;

use crate::config::{CallSites, Ops, Rate, Scenario};
use crate::counters::{CounterKind, CounterValues, ThreadCounters};
use crate::sched::{ReaderSched, ThreadSample};
use crate::workload::{PatchIndexes, Workload};

/// Coordination between readers, the writer and the runner. Every wait checks `abort`, so a
/// panicking thread ends the run instead of hanging it: a benchmark whose barrier waits for a
/// thread that has died waits for ever, the classic way such harnesses hang.
#[derive(Debug, Default)]
pub(crate) struct Control {
    pub(crate) arrived: AtomicUsize,
    pub(crate) checked_in: AtomicUsize,
    pub(crate) done: AtomicUsize,
    pub(crate) stop_writer: AtomicBool,
    pub(crate) abort: AtomicBool,
    pub(crate) why: Mutex<Option<String>>,
}

impl Control {
    pub(crate) fn fail(&self, msg: String) {
        let mut why = self.why.lock().unwrap_or_else(|e| e.into_inner());
        why.get_or_insert(msg);
        // SeqCst: rare, and the simplest to reason about; the message itself is under the mutex.
        self.abort.store(true, Ordering::SeqCst);
    }

    pub(crate) fn aborted(&self) -> bool {
        // Relaxed: a signal, polled; the message is read under the mutex after the join.
        self.abort.load(Ordering::Relaxed)
    }

    /// Waits until `counter` reaches `n`; false if the run was aborted meanwhile.
    fn wait_for(&self, counter: &AtomicUsize, n: usize) -> bool {
        while counter.load(Ordering::Acquire) < n {
            if self.aborted() {
                return false;
            }
            std::hint::spin_loop();
            std::thread::yield_now();
        }
        true
    }
}

/// What one reader measured.
#[derive(Debug)]
pub(crate) struct ReaderResult {
    pub(crate) calls: u64,
    pub(crate) busy_ns: f64,
    pub(crate) elapsed: Duration,
    pub(crate) hist: Histogram<u64>,
    pub(crate) clamped: u64,
    pub(crate) critical_sections: u64,
    pub(crate) violations: u64,
    pub(crate) poison: u64,
    pub(crate) idle_in_transition: u64,
    pub(crate) stale_cache_refills: u64,
    pub(crate) counters: Option<CounterValues>,
    pub(crate) pinned: bool,
    /// What the scheduler did to it over the measured span.
    pub(crate) sched: ReaderSched,
}

/// The measured loop of the scenario's call-site regime, as generated in `dispatch::loops`: one
/// run of it is one critical section, timed as one batch.
pub(crate) enum MeasuredLoop<'a, S: Strategy> {
    /// The per-site loop of the scenario's size, and how many rounds of its sites make a critical
    /// section.
    PerSite(LoopFn<S>, usize),
    Shared(&'a [SiteId]),
    Cold,
}

impl<'a, S: Strategy> MeasuredLoop<'a, S> {
    pub(crate) fn new(call_sites: CallSites, work: &'a Workload, sites: usize) -> Result<Self, String> {
        Ok(match call_sites {
            CallSites::PerSite => {
                let f = loops::per_site_fn::<S>(sites)
                    .ok_or_else(|| format!("no per-site loop is generated for {sites} sites"))?;
                MeasuredLoop::PerSite(f, work.order.len() / sites)
            }
            CallSites::Shared => MeasuredLoop::Shared(&work.order),
            CallSites::Cold => MeasuredLoop::Cold,
        })
    }

    /// Runs it; the sum is passed through `black_box`, so every strategy's results are consumed
    /// the same way, `direct`'s (which no check reads) included.
    #[inline(always)]
    fn run(&self, task: &mut Task<S>) -> u64 {
        black_box(match *self {
            MeasuredLoop::PerSite(f, rounds) => f(task, rounds),
            MeasuredLoop::Shared(order) => loops::shared(task, order),
            MeasuredLoop::Cold => loops::cold(task, 1),
        })
    }
}

pub(crate) struct ReaderCtx<'a, S: Strategy> {
    pub(crate) patcher: &'a Patcher<S>,
    pub(crate) work: &'a Workload,
    pub(crate) measured_loop: MeasuredLoop<'a, S>,
    pub(crate) universes: &'a UniverseLog,
    pub(crate) control: &'a Control,
    pub(crate) readers: usize,
    pub(crate) duration: Duration,
    pub(crate) warmup: Duration,
    pub(crate) clock_ns: f64,
    pub(crate) counters: CounterKind,
}

/// `panic_after`: the test hook of `RunConfig::panic_after_batches`.
pub(crate) fn reader<S: Strategy>(
    ctx: &ReaderCtx<'_, S>,
    cpu: Option<usize>,
    panic_after: Option<u64>,
) -> Result<ReaderResult, String> {
    let pinned = cpu.is_some_and(|id| core_affinity::set_for_current(core_affinity::CoreId { id }));
    let mut task = ctx.patcher.register().map_err(|e| e.to_string())?;
    let mut counters = match ctx.counters {
        CounterKind::None => None,
        kind => Some(ThreadCounters::open(kind).map_err(|e| format!("opening counters in a reader: {e}"))?),
    };
    // Values are ps per call; 1 s per call is far beyond anything a batch can take.
    let mut hist = Histogram::<u64>::new_with_bounds(1, 1_000_000_000_000, 3).expect("valid bounds");
    let measured_loop = &ctx.measured_loop;
    // `direct` is not patchable: it has no universe to check.
    let checked = S::INFO.consistency != Consistency::NotPatchable;
    let check = |sum: u64, violations: &mut u64| {
        if checked && !ctx.universes.contains(sum) {
            *violations += 1;
        }
    };
    let (mut violations, mut critical_sections) = (0u64, 0u64);

    // AcqRel / Acquire in `wait_for`: the start barrier; every thread's setup happens before anyone measures.
    ctx.control.arrived.fetch_add(1, Ordering::AcqRel);
    if !ctx.control.wait_for(&ctx.control.arrived, ctx.readers + 1) {
        return Err("aborted".into());
    }
    // Warm up for `warmup` (the CPU's clock ramps up under load) and until every reader has
    // checked in (and at least a few sections each). AcqRel here pairs with the Acquire load
    // below in every other reader: a reader that counts all check-ins sees each one's setup done;
    // without it a reader could start measuring while another is still warming up alone.
    ctx.control.checked_in.fetch_add(1, Ordering::AcqRel);
    let warm_until = Instant::now() + ctx.warmup;
    let mut warm = 0;
    while warm < 4 || ctx.control.checked_in.load(Ordering::Acquire) < ctx.readers || Instant::now() < warm_until {
        check(measured_loop.run(&mut task), &mut violations);
        task.safe_point().map_err(|e| e.to_string())?;
        warm += 1;
        if ctx.control.aborted() {
            return Err("aborted".into());
        }
    }

    // Measure: one batch = one critical section; bookkeeping happens outside the timed span.
    let per_batch = ctx.work.order.len() as f64;
    let (mut calls, mut busy_ns, mut clamped) = (0u64, 0f64, 0u64);
    // The scheduler's accounting is read around the counters, so that its reads are not counted.
    let sched_start = ThreadSample::now();
    if let Some(c) = counters.as_mut() {
        c.start().map_err(|e| format!("starting counters: {e}"))?;
    }
    let start = Instant::now();
    let deadline = start + ctx.duration;
    loop {
        let t0 = Instant::now();
        let sum = measured_loop.run(&mut task);
        let t1 = Instant::now();
        let ns = ((t1 - t0).as_nanos() as f64 - ctx.clock_ns).max(0.0);
        busy_ns += ns;
        calls += ctx.work.order.len() as u64;
        let ps_per_call = (ns * 1000.0 / per_batch).round() as u64;
        if hist.record(ps_per_call.max(1)).is_err() {
            hist.saturating_record(ps_per_call);
            clamped += 1;
        }
        check(sum, &mut violations);
        critical_sections += 1;
        task.safe_point().map_err(|e| e.to_string())?;
        if panic_after.is_some_and(|n| critical_sections >= n) {
            panic!("injected reader panic after {critical_sections} batches (test hook)");
        }
        if t1 >= deadline || ctx.control.aborted() {
            break;
        }
    }
    let elapsed = start.elapsed();
    let counters = match counters.as_mut() {
        Some(c) => Some(c.stop().map_err(|e| format!("reading counters: {e}"))?),
        None => None,
    };
    let sched = ThreadSample::now().since(&sched_start);

    // Keep the load on until the last reader is done.
    ctx.control.done.fetch_add(1, Ordering::AcqRel);
    while ctx.control.done.load(Ordering::Acquire) < ctx.readers && !ctx.control.aborted() {
        check(measured_loop.run(&mut task), &mut violations);
        task.safe_point().map_err(|e| e.to_string())?;
    }
    Ok(ReaderResult {
        calls,
        busy_ns,
        elapsed,
        hist,
        clamped,
        critical_sections,
        violations,
        poison: check::poison_hits(),
        idle_in_transition: task.idle_in_transition(),
        stale_cache_refills: task.stale_cache_refills(),
        counters,
        pinned,
        sched,
    })
}

#[derive(Debug)]
pub(crate) struct WriterResult {
    pub(crate) transitions: u64,
    pub(crate) elapsed: Duration,
    /// End minus intended start of each transition, ns.
    pub(crate) latency: Histogram<u64>,
    /// End minus actual start (service time), ns.
    pub(crate) service: Histogram<u64>,
    pub(crate) grace: Histogram<u64>,
    /// Each transition's phases, ns, one histogram per phase in the order of `Phases::NAMES`.
    pub(crate) phases: Vec<Histogram<u64>>,
    /// Actual minus intended start of each transition, ns: the writer's own lateness (a
    /// transition that starts late is late by that much, whatever the strategy does).
    pub(crate) late: Histogram<u64>,
}

/// How long before a transition's intended start the writer stops sleeping and spins: a sleep
/// with the timer slack at its minimum ends within a few µs of its deadline on an idle machine.
const START_SPIN: Duration = Duration::from_micros(50);

/// Where the writer runs: pinned to one CPU (`--writer-cpu N`), or unpinned on `cpus` (the CPUs
/// of the mask that no reader is pinned to, or every CPU when readers fill the mask).
#[derive(Clone, Debug)]
pub(crate) enum WriterPlace {
    Pinned(usize),
    Among(Vec<usize>),
}

/// Keeps the calling thread on `cpus` (none: every CPU); false if the kernel refused.
fn run_on(cpus: &[usize]) -> bool {
    if cpus.is_empty() {
        return true;
    }
    // SAFETY: `cpu_set_t` is a plain bit set, valid all-zero; CPU_SET only writes inside it for
    // CPU numbers below CPU_SETSIZE, which the filter ensures.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
        // SAFETY: see above.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: pid 0 is the calling thread; `set` is a valid cpu_set_t of the size given.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 }
}

/// The writer thread: the scenario's operations, open-loop at its rate, through the one writer
/// driver, pinned to `cpu` if given; transition latency is measured from the intended start, and
/// service time from the actual one.
pub(crate) fn writer<S: Strategy, A: FnMut(&[&PatchSpec])>(
    driver: &mut Driver<'_, S, A>,
    patches: PatchIndexes,
    scenario: &Scenario,
    control: &Control,
    place: &WriterPlace,
) -> Result<WriterResult, String> {
    match place {
        WriterPlace::Pinned(id) => {
            if !core_affinity::set_for_current(core_affinity::CoreId { id: *id }) {
                return Err(format!("writer: cannot pin to CPU {id} (--writer-cpu)"));
            }
        }
        // Unpinned, but off the readers' CPUs while one is free: a reader's safe point wakes the
        // writer, and the kernel tends to wake a thread on the waker's CPU, where it would wait
        // for the reader's time slice to end (milliseconds) instead of running at once.
        WriterPlace::Among(cpus) => {
            if !run_on(cpus) {
                return Err(format!("writer: cannot keep to CPUs {cpus:?}: {}", std::io::Error::last_os_error()));
            }
        }
    }
    let mut latency = Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid bounds");
    let mut service = latency.clone();
    let mut grace = latency.clone();
    let mut phases = vec![latency.clone(); dispatch::Phases::NAMES.len()];
    let mut late = latency.clone();
    // The default timer slack (50 µs) stretches every sleep by up to that much: the open-loop
    // start would be late by it. 1 ns, this thread only, makes a sleep end when it was asked to.
    // SAFETY: PR_SET_TIMERSLACK takes one integer and affects only the calling thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    // AcqRel: the start barrier (see `reader`).
    control.arrived.fetch_add(1, Ordering::AcqRel);
    if !control.wait_for(&control.arrived, scenario.readers + 1) {
        return Err("aborted".into());
    }
    let start = Instant::now();
    let period = match scenario.rate {
        Rate::Hz(hz) => Some(Duration::from_secs_f64(1.0 / hz)),
        _ => None,
    };
    // The writer stops once every reader has finished measuring: after that the readers only
    // keep the load on, then exit, and transitions with no task left to migrate complete in
    // well under a microsecond; at `--rate max` those once made most of a row's transitions
    // (p50 0.6 µs at 2 readers on 2 vCPUs). Acquire on `done`: pairs with each reader's AcqRel
    // increment (a signal only: nothing the reader wrote is read here). Acquire on
    // `stop_writer`: pairs with the Release that sets it once every reader has been joined.
    let stopped = || {
        control.done.load(Ordering::Acquire) >= scenario.readers
            || control.stop_writer.load(Ordering::Acquire)
            || control.aborted()
    };
    let mut n = 0u64;
    while !stopped() {
        let intended = match period {
            Some(p) => start + p.mul_f64(n as f64),
            None => Instant::now(),
        };
        // Open loop: sleep until just before the intended start (in steps of at most 1 ms, to
        // notice the stop), then spin to it. Spinning, not yielding: a yield on a CPU shared with
        // another busy thread hands it that thread's whole slice (milliseconds, measured on the
        // 2-vCPU VM with compilers beside the run).
        while let Some(wait) = intended.checked_duration_since(Instant::now()) {
            if stopped() {
                break;
            }
            if wait > START_SPIN {
                std::thread::sleep((wait - START_SPIN).min(Duration::from_millis(1)));
            } else {
                std::hint::spin_loop();
            }
        }
        if stopped() {
            break;
        }
        let (op, patch) = match scenario.ops {
            Ops::Cycle | Ops::Reverse if driver.enabled().contains(&patches.top) => (Op::Disable, patches.top),
            Ops::Cycle | Ops::Reverse => (Op::Enable, patches.top),
            Ops::Replace => (Op::Replace, patches.replacements[n as usize % 2]),
        };
        let started = Instant::now();
        late.saturating_record((started.saturating_duration_since(intended).as_nanos() as u64).max(1));
        driver.start(op, patch, scenario.ops == Ops::Reverse).map_err(|e| format!("writer: {e}"))?;
        // Spin briefly after each phase change (readers pass a safe point every few µs), then
        // sleep until the reader whose safe point lets the transition advance wakes the writer.
        // Sleeping, not yielding: when readers occupy every CPU, a yielding writer waits a whole
        // time slice per poll, while a sleeping one preempts a reader as soon as it is woken.
        let stats = driver.finish_woken(Waiting::default(), |_| control.aborted());
        let Some(stats) = stats else { return Err("aborted".into()) };
        let end = Instant::now();
        latency.saturating_record((end - intended).as_nanos().max(1) as u64);
        service.saturating_record((end - started).as_nanos().max(1) as u64);
        if stats.grace_periods > 0 {
            grace.saturating_record((stats.grace_period_wait.as_nanos() as u64 / stats.grace_periods as u64).max(1));
        }
        for (h, d) in phases.iter_mut().zip(stats.phases.values()) {
            // A phase that took no time is recorded as 1 ns, the histogram's lowest value.
            h.saturating_record((d.as_nanos() as u64).max(1));
        }
        n += 1;
    }
    Ok(WriterResult { transitions: n, elapsed: start.elapsed(), latency, service, grace, phases, late })
}
