//! The runner: refscale's protocol (DOMAIN.md §2.1) for every strategy and scenario.
//!
//! Per measurement: a fresh patcher with `depth` patches enabled; readers pinned to CPUs of the
//! affinity mask, released together by a start barrier, warmed up until every reader has checked
//! in, timed in batches of one critical section (`calls_per_safepoint` calls between two safe
//! points) for `duration`, then kept running until the last reader is done; a writer drives
//! transitions open-loop at the scenario's rate. Each critical section is checked against the
//! universes the writer announced. Strategies are interleaved within each round, in a fresh
//! random order per round, so that machine drift hits them all alike.

use std::io::IsTerminal;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dispatch::check::{self, Universes, signature};
use dispatch::strategy::Consistency;
use dispatch::{
    Code, FuncSpec, Op, PatchId, PatchSpec, PatchState, Patcher, PatcherConfig, Progress, SiteId, Strategy, Task,
    Visitor,
};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::config::{Ops, Order, Rate, RunConfig, Scenario};
use crate::counters::{CounterKind, CounterValues, ThreadCounters};

/// Percentiles of a distribution, in the unit named by the field that holds them.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>, unit: f64) -> Option<Self> {
        (!h.is_empty()).then(|| Self {
            p50: h.value_at_quantile(0.5) as f64 / unit,
            p99: h.value_at_quantile(0.99) as f64 / unit,
            p999: h.value_at_quantile(0.999) as f64 / unit,
            max: h.max() as f64 / unit,
        })
    }
}

/// One strategy × scenario × run: the unit of `run.json` (see results/SCHEMA.md).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Row {
    pub strategy: String,
    pub consistency: String,
    pub scenario: String,
    pub run: usize,
    pub readers: usize,
    pub pinned: bool,
    pub oversubscribed: bool,
    /// Calls timed, over all readers.
    pub calls: u64,
    /// Mean over every timed batch of every reader, clock overhead subtracted.
    pub ns_per_call: f64,
    /// `ns_per_call` / fnptr's in the same scenario and round.
    pub ratio_to_fnptr: Option<f64>,
    /// Sum over readers of calls / measured time.
    pub calls_per_sec: f64,
    /// Per-batch ns/call distribution (hdrhistogram, merged over readers).
    pub batch_ns: Option<Percentiles>,
    /// Batches whose value fell outside the histogram's range (clamped).
    pub clamped: u64,
    pub transitions: u64,
    pub rate_target_hz: Option<f64>,
    pub rate_achieved_hz: Option<f64>,
    /// False when the writer fell more than 5% behind its target rate (the rate is not lowered).
    pub rate_kept: Option<bool>,
    /// End minus intended start of each transition, µs.
    pub transition_us: Option<Percentiles>,
    /// Mean wait per grace period of each transition, µs.
    pub grace_period_us: Option<Percentiles>,
    pub critical_sections: u64,
    pub violations: u64,
    pub use_after_reclaim: u64,
    pub idle_in_transition: u64,
    pub cache_misses: u64,
    pub counter_kind: CounterKind,
    /// Counter totals over readers' measured spans; `None` when no counters were opened.
    pub counters: Option<CounterValues>,
    /// Clock overhead subtracted from every batch, ns.
    pub clock_overhead_ns: f64,
}

impl Row {
    /// Violations that fail the run: any for a strategy that promises per-task consistency.
    pub fn failed(&self) -> bool {
        self.consistency == Consistency::PerTask.name()
            && (self.violations > 0 || self.use_after_reclaim > 0 || self.idle_in_transition > 0)
    }
}

/// Median cost of reading the clock (`Instant::now()` twice), subtracted from every batch.
pub fn calibrate_clock() -> f64 {
    let mut samples: Vec<f64> = (0..2001)
        .map(|_| {
            let a = Instant::now();
            let b = Instant::now();
            (b - a).as_nanos() as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// The sites, the order readers call them in, and the patches of a scenario.
#[derive(Debug)]
pub struct Workload {
    pub originals: Vec<Code>,
    /// One critical section: `calls_per_safepoint` sites.
    pub order: Vec<SiteId>,
    /// Enabled below (depth), then the top patch, then two cumulative replacements.
    pub base: Vec<PatchSpec>,
    pub top: PatchSpec,
    pub replacements: [PatchSpec; 2],
}

/// The code of version `v` of `site` (0 = original): distinct versions per site.
fn version(site: usize, v: usize) -> Code {
    check::code(site + 131 * v)
}

impl Workload {
    pub fn new(s: &Scenario, seed: u64) -> Self {
        let originals: Vec<Code> = (0..s.sites).map(|i| version(i, 0)).collect();
        let mut rng = Rng(seed | 1);
        let order = (0..s.calls_per_safepoint)
            .map(|i| {
                SiteId(match s.order {
                    Order::Seq => i % s.sites,
                    Order::Random => rng.below(s.sites),
                } as u32)
            })
            .collect();
        let patch = |name: String, v: usize, sites: &mut dyn Iterator<Item = usize>| {
            PatchSpec::new(name, sites.map(|i| FuncSpec::new(SiteId(i as u32), version(i, v))))
        };
        let base = (1..=s.depth).map(|v| patch(format!("base{v}"), v, &mut (0..s.sites))).collect();
        let top = patch("top".into(), s.depth + 1, &mut (0..s.sites));
        // Each replacement covers half the sites, so the other half gets nops.
        let half = s.sites.div_ceil(2);
        let replacements = [
            patch("replace-a".into(), s.depth + 2, &mut (0..half)),
            patch("replace-b".into(), s.depth + 3, &mut (half.min(s.sites - 1)..s.sites)),
        ];
        Self { originals, order, base, top, replacements }
    }

    /// The signature of one critical section when `enabled` (oldest first) are enabled.
    fn universe(&self, enabled: &[&PatchSpec]) -> u64 {
        let codes = check::resolve(&self.originals, enabled);
        let per_call: Vec<Code> = self.order.iter().map(|s| codes[s.index()]).collect();
        signature(&per_call, 0)
    }
}

/// xorshift64*: deterministic, seeded from the run's seed.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as usize) % n.max(1)
    }

    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

/// Coordination between readers, the writer and the runner. Every wait checks `abort`, so a
/// panicking thread ends the run instead of hanging it (bustle#9).
#[derive(Debug, Default)]
struct Control {
    arrived: AtomicUsize,
    checked_in: AtomicUsize,
    done: AtomicUsize,
    stop_writer: AtomicBool,
    abort: AtomicBool,
    why: Mutex<Option<String>>,
}

impl Control {
    fn fail(&self, msg: String) {
        let mut why = self.why.lock().unwrap_or_else(|e| e.into_inner());
        why.get_or_insert(msg);
        // SeqCst: rare, and the simplest to reason about; the message itself is under the mutex.
        self.abort.store(true, Ordering::SeqCst);
    }

    fn aborted(&self) -> bool {
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
struct ReaderResult {
    calls: u64,
    busy_ns: f64,
    elapsed: Duration,
    hist: Histogram<u64>,
    clamped: u64,
    sections: u64,
    violations: u64,
    poison: u64,
    idle_in_transition: u64,
    cache_misses: u64,
    counters: Option<CounterValues>,
    pinned: bool,
}

/// One critical section: every call of `order`, summed. Inlined into each strategy's loop.
#[inline(always)]
fn critical_section<S: Strategy>(task: &Task<S>, order: &[SiteId]) -> u64 {
    let mut sum = 0u64;
    for &site in order {
        sum = sum.wrapping_add(task.call(site, 0));
    }
    sum
}

struct ReaderCtx<'a, S: Strategy> {
    patcher: &'a Patcher<S>,
    work: &'a Workload,
    universes: &'a Universes,
    control: &'a Control,
    readers: usize,
    duration: Duration,
    clock_ns: f64,
    counters: CounterKind,
}

/// `panic_after`: the test hook of `RunConfig::panic_after_batches`.
fn reader<S: Strategy>(
    ctx: &ReaderCtx<'_, S>,
    cpu: Option<usize>,
    panic_after: Option<u64>,
) -> Result<ReaderResult, String> {
    let pinned = cpu.is_some_and(|id| core_affinity::set_for_current(core_affinity::CoreId { id }));
    let task = ctx.patcher.register().map_err(|e| e.to_string())?;
    let mut counters = match ctx.counters {
        CounterKind::None => None,
        kind => Some(ThreadCounters::open(kind).map_err(|e| format!("opening counters in a reader: {e}"))?),
    };
    // Values are ps per call; 1 s per call is far beyond anything a batch can take.
    let mut hist = Histogram::<u64>::new_with_bounds(1, 1_000_000_000_000, 3).expect("valid bounds");
    let order = &ctx.work.order[..];
    // `direct` is not patchable: it has no universe to check.
    let checked = S::INFO.consistency != Consistency::NotPatchable;
    let check = |sum: u64, violations: &mut u64| {
        if checked && !ctx.universes.contains(sum) {
            *violations += 1;
        }
    };
    let (mut violations, mut sections) = (0u64, 0u64);

    // AcqRel / Acquire in `wait_for`: the start barrier; every thread's setup happens before anyone measures.
    ctx.control.arrived.fetch_add(1, Ordering::AcqRel);
    if !ctx.control.wait_for(&ctx.control.arrived, ctx.readers + 1) {
        return Err("aborted".into());
    }
    // Warm up until every reader has checked in (and at least a few sections each).
    ctx.control.checked_in.fetch_add(1, Ordering::AcqRel);
    let mut warm = 0;
    while warm < 4 || ctx.control.checked_in.load(Ordering::Acquire) < ctx.readers {
        check(critical_section(&task, order), &mut violations);
        task.safe_point().map_err(|e| e.to_string())?;
        warm += 1;
        if ctx.control.aborted() {
            return Err("aborted".into());
        }
    }

    // Measure: one batch = one critical section; bookkeeping happens outside the timed span.
    let per_batch = order.len() as f64;
    let (mut calls, mut busy_ns, mut clamped) = (0u64, 0f64, 0u64);
    if let Some(c) = counters.as_mut() {
        c.start().map_err(|e| format!("starting counters: {e}"))?;
    }
    let start = Instant::now();
    let deadline = start + ctx.duration;
    loop {
        let t0 = Instant::now();
        let sum = critical_section(&task, order);
        let t1 = Instant::now();
        let ns = ((t1 - t0).as_nanos() as f64 - ctx.clock_ns).max(0.0);
        busy_ns += ns;
        calls += order.len() as u64;
        let ps_per_call = (ns * 1000.0 / per_batch).round() as u64;
        if hist.record(ps_per_call.max(1)).is_err() {
            hist.saturating_record(ps_per_call);
            clamped += 1;
        }
        check(sum, &mut violations);
        sections += 1;
        task.safe_point().map_err(|e| e.to_string())?;
        if panic_after.is_some_and(|n| sections >= n) {
            panic!("injected reader panic after {sections} batches (test hook)");
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

    // Keep the load on until the last reader is done.
    ctx.control.done.fetch_add(1, Ordering::AcqRel);
    while ctx.control.done.load(Ordering::Acquire) < ctx.readers && !ctx.control.aborted() {
        check(critical_section(&task, order), &mut violations);
        task.safe_point().map_err(|e| e.to_string())?;
    }
    Ok(ReaderResult {
        calls,
        busy_ns,
        elapsed,
        hist,
        clamped,
        sections,
        violations,
        poison: check::poison_hits(),
        idle_in_transition: task.idle_in_transition(),
        cache_misses: task.cache_misses(),
        counters,
        pinned,
    })
}

#[derive(Debug)]
struct WriterResult {
    transitions: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
    grace: Histogram<u64>,
}

fn writer<S: Strategy>(
    p: &Patcher<S>,
    work: &Workload,
    ids: &Ids,
    scenario: &Scenario,
    universes: &Universes,
    control: &Control,
) -> Result<WriterResult, String> {
    let mut latency = Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid bounds");
    let mut grace = latency.clone();
    // AcqRel: the start barrier (see `reader`).
    control.arrived.fetch_add(1, Ordering::AcqRel);
    if !control.wait_for(&control.arrived, scenario.readers + 1) {
        return Err("aborted".into());
    }
    // The oracle: which of `all` are enabled, oldest first.
    let all: Vec<&PatchSpec> = work.base.iter().chain([&work.top]).chain(work.replacements.iter()).collect();
    let mut enabled: Vec<usize> = (0..work.base.len()).collect();
    let top = work.base.len();
    let start = Instant::now();
    let period = match scenario.rate {
        Rate::Hz(hz) => Some(Duration::from_secs_f64(1.0 / hz)),
        _ => None,
    };
    let mut n = 0u64;
    // Acquire: pairs with the Release that sets it once every reader has been joined.
    while !control.stop_writer.load(Ordering::Acquire) && !control.aborted() {
        let intended = match period {
            Some(p) => start + p.mul_f64(n as f64),
            None => Instant::now(),
        };
        // Open loop: sleep until the intended start (in short steps, to notice the stop).
        while let Some(wait) = intended.checked_duration_since(Instant::now()) {
            if control.stop_writer.load(Ordering::Acquire) || control.aborted() {
                break;
            }
            if wait > Duration::from_micros(200) {
                std::thread::sleep(wait.min(Duration::from_millis(1)) - Duration::from_micros(100));
            } else {
                std::thread::yield_now();
            }
        }
        // Acquire: as in the loop condition.
        if control.stop_writer.load(Ordering::Acquire) || control.aborted() {
            break;
        }
        let universe = |set: &[usize]| work.universe(&set.iter().map(|&i| all[i]).collect::<Vec<_>>());
        let (op, target, after) = match scenario.ops {
            Ops::Cycle | Ops::Reverse => {
                if enabled.contains(&top) {
                    (Op::Disable, top, enabled.iter().copied().filter(|&i| i != top).collect::<Vec<_>>())
                } else {
                    (Op::Enable, top, enabled.iter().copied().chain([top]).collect())
                }
            }
            Ops::Replace => {
                let r = top + 1 + (n as usize % 2);
                (Op::Replace, r, vec![r])
            }
        };
        universes.publish(universe(&after));
        let id = ids.0[target];
        match op {
            Op::Enable => p.enable(id),
            Op::Disable => p.disable(id),
            Op::Replace => p.replace(id),
        }
        .map_err(|e| format!("writer: {e}"))?;
        if scenario.ops == Ops::Reverse {
            universes.publish(universe(&enabled));
            // Refused once the transition is settling: it then completes forward.
            let _ = p.reverse();
        }
        // Poll: spin briefly (readers pass a safe point every few µs), then sleep in short steps.
        // Sleeping, not yielding: when readers occupy every CPU, a yielding writer waits a whole
        // time slice per poll, while a sleeping one preempts a reader as soon as it wakes.
        let polling = Instant::now();
        let stats = loop {
            match p.try_complete() {
                Progress::Done(stats) => break Some(stats),
                Progress::Idle => break p.last_transition(),
                _ if control.aborted() => return Err("aborted".into()),
                _ if polling.elapsed() < Duration::from_micros(20) => std::hint::spin_loop(),
                _ => std::thread::sleep(Duration::from_micros(20)),
            }
        }
        .ok_or("writer: a transition vanished")?;
        if (stats.op == Op::Disable) == (stats.target == PatchState::Unpatched) {
            enabled = after;
        }
        let end = Instant::now();
        latency.saturating_record((end - intended).as_nanos().max(1) as u64);
        if stats.grace_periods > 0 {
            grace.saturating_record((stats.grace_period_wait.as_nanos() as u64 / stats.grace_periods as u64).max(1));
        }
        n += 1;
    }
    Ok(WriterResult { transitions: n, elapsed: start.elapsed(), latency, grace })
}

/// Patch ids in the order of `Workload`'s base, top, replacements.
#[derive(Debug)]
struct Ids(Vec<PatchId>);

/// Measures one strategy on one scenario (one round's cell).
#[derive(Debug)]
pub struct Measure<'a> {
    pub cfg: &'a RunConfig,
    pub scenario: &'a Scenario,
    pub work: &'a Workload,
    pub run: usize,
    pub clock_ns: f64,
    pub counters: CounterKind,
}

impl Visitor for Measure<'_> {
    type Output = Result<Row, String>;

    fn visit<S: Strategy>(&mut self) -> Result<Row, String> {
        let (s, work) = (self.scenario, self.work);
        let p = Patcher::<S>::new(&work.originals, PatcherConfig { capacity: s.readers + 2, ..Default::default() });
        let specs = work.base.iter().chain([&work.top]).chain(work.replacements.iter());
        let ids = Ids(specs.map(|spec| p.load(spec.clone())).collect::<Result<_, _>>().map_err(|e| e.to_string())?);
        for &id in &ids.0[..work.base.len()] {
            p.enable(id).map_err(|e| e.to_string())?;
            p.wait(Duration::from_secs(10)).map_err(|e| e.to_string())?;
        }
        let base: Vec<&PatchSpec> = work.base.iter().collect();
        let universes = Universes::new(work.universe(&base));
        let control = Control::default();
        let cpus = &self.cfg.cpus;
        let has_writer = s.rate != Rate::Steady;
        if !has_writer {
            // No writer thread: count it as arrived.
            control.arrived.fetch_add(1, Ordering::AcqRel);
        }
        let ctx = ReaderCtx {
            patcher: &p,
            work,
            universes: &universes,
            control: &control,
            readers: s.readers,
            duration: self.cfg.duration,
            clock_ns: self.clock_ns,
            counters: self.counters,
        };
        let panic_after = self.cfg.panic_after_batches;
        let (readers, writer) = std::thread::scope(|scope| {
            let readers: Vec<_> = (0..s.readers)
                .map(|i| {
                    let cpu = (!cpus.is_empty()).then(|| cpus[i % cpus.len()]);
                    let ctx = &ctx;
                    let first = i == 0;
                    scope.spawn(move || {
                        let run = || reader(ctx, cpu, if first { panic_after } else { None });
                        match catch_unwind(AssertUnwindSafe(run)) {
                            Ok(Ok(r)) => Ok(r),
                            Ok(Err(e)) => {
                                ctx.control.fail(format!("reader {i}: {e}"));
                                Err(())
                            }
                            Err(panic) => {
                                let msg = panic
                                    .downcast_ref::<String>()
                                    .cloned()
                                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                                    .unwrap_or_else(|| "unknown panic".into());
                                ctx.control.fail(format!("reader {i} panicked: {msg}"));
                                Err(())
                            }
                        }
                    })
                })
                .collect();
            let writer = has_writer.then(|| {
                let (p, ids, universes, control) = (&p, &ids, &universes, &control);
                scope.spawn(move || {
                    match catch_unwind(AssertUnwindSafe(|| writer(p, work, ids, s, universes, control))) {
                        Ok(Ok(r)) => Ok(r),
                        Ok(Err(e)) => {
                            control.fail(e);
                            Err(())
                        }
                        Err(_) => {
                            control.fail("the writer panicked".into());
                            Err(())
                        }
                    }
                })
            });
            let readers: Vec<_> = readers.into_iter().map(|h| h.join().unwrap_or(Err(()))).collect();
            // Release: pairs with the writer's Acquire loads.
            control.stop_writer.store(true, Ordering::Release);
            let writer = writer.map(|h| h.join().unwrap_or(Err(())));
            (readers, writer)
        });
        if control.aborted() {
            let why = control.why.lock().unwrap_or_else(|e| e.into_inner()).clone();
            return Err(why.unwrap_or_else(|| "the run was aborted".into()));
        }
        let readers: Vec<ReaderResult> = readers.into_iter().map(|r| r.expect("not aborted")).collect();
        let writer = writer.map(|w| w.expect("not aborted"));
        Ok(self.row::<S>(readers, writer))
    }
}

impl Measure<'_> {
    fn row<S: Strategy>(&self, readers: Vec<ReaderResult>, writer: Option<WriterResult>) -> Row {
        let s = self.scenario;
        let mut hist = Histogram::<u64>::new_with_bounds(1, 1_000_000_000_000, 3).expect("valid bounds");
        for r in &readers {
            hist.add(&r.hist).expect("same bounds");
        }
        let sum = |f: fn(&ReaderResult) -> u64| readers.iter().map(f).sum::<u64>();
        let calls = sum(|r| r.calls);
        let busy: f64 = readers.iter().map(|r| r.busy_ns).sum();
        let counters = readers.iter().filter_map(|r| r.counters.clone()).reduce(|mut a, b| {
            for (k, v) in b.values {
                *a.values.entry(k).or_default() += v;
            }
            a.multiplexed |= b.multiplexed;
            a
        });
        let (rate_target, rate_achieved) = match (&writer, s.rate) {
            (Some(w), rate) => {
                let achieved = w.transitions as f64 / w.elapsed.as_secs_f64().max(1e-9);
                let target = match rate {
                    Rate::Hz(hz) => Some(hz),
                    _ => None,
                };
                (target, Some(achieved))
            }
            _ => (None, None),
        };
        Row {
            strategy: S::INFO.name.to_owned(),
            consistency: S::INFO.consistency.name().to_owned(),
            scenario: s.name(),
            run: self.run,
            readers: s.readers,
            pinned: readers.iter().all(|r| r.pinned),
            oversubscribed: s.readers > self.cfg.cpus.len(),
            calls,
            ns_per_call: busy / calls.max(1) as f64,
            ratio_to_fnptr: None,
            calls_per_sec: readers.iter().map(|r| r.calls as f64 / r.elapsed.as_secs_f64().max(1e-9)).sum(),
            batch_ns: Percentiles::of(&hist, 1000.0),
            clamped: sum(|r| r.clamped),
            transitions: writer.as_ref().map_or(0, |w| w.transitions),
            rate_target_hz: rate_target,
            rate_achieved_hz: rate_achieved,
            rate_kept: rate_target.zip(rate_achieved).map(|(t, a)| a >= 0.95 * t),
            transition_us: writer.as_ref().and_then(|w| Percentiles::of(&w.latency, 1000.0)),
            grace_period_us: writer.as_ref().and_then(|w| Percentiles::of(&w.grace, 1000.0)),
            critical_sections: sum(|r| r.sections),
            violations: sum(|r| r.violations),
            use_after_reclaim: sum(|r| r.poison),
            idle_in_transition: sum(|r| r.idle_in_transition),
            cache_misses: sum(|r| r.cache_misses),
            counter_kind: self.counters,
            counters,
            clock_overhead_ns: self.clock_ns,
        }
    }
}

/// Runs every scenario: per scenario, `runs` rounds, each measuring every strategy once in a
/// fresh random order. Fills in each row's ratio to fnptr from the same round.
pub fn run_all(cfg: &RunConfig, counters: CounterKind, clock_ns: f64) -> Result<Vec<Row>, String> {
    let mut rng = Rng(cfg.seed | 1);
    let total = cfg.scenarios.len() * cfg.runs * cfg.strategies.len();
    let progress = std::io::stderr().is_terminal();
    let mut rows = Vec::with_capacity(total);
    for scenario in &cfg.scenarios {
        let work = Workload::new(scenario, cfg.seed);
        for run in 0..cfg.runs {
            let mut order = cfg.strategies.clone();
            rng.shuffle(&mut order);
            let first = rows.len();
            for name in &order {
                if progress {
                    eprint!("\r\x1b[2K[{}/{}] {} {}", rows.len() + 1, total, scenario.name(), name);
                }
                let mut m = Measure { cfg, scenario, work: &work, run, clock_ns, counters };
                let row = dispatch::strategy::visit(name, &mut m).map_err(|e| e.to_string())??;
                rows.push(row);
            }
            let round = &mut rows[first..];
            if let Some(base) = round.iter().find(|r| r.strategy == "fnptr").map(|r| r.ns_per_call) {
                for r in round.iter_mut() {
                    r.ratio_to_fnptr = Some(r.ns_per_call / base);
                }
            }
        }
    }
    if progress {
        eprint!("\r\x1b[2K");
    }
    Ok(rows)
}
