//! criterion: every strategy of the registry on every read path, the writer operations, and a
//! contended group (readers plus a writer cycling transitions).
//!
//! `cargo bench -p benches --bench suite [-- --quick]`. `DISPATCH_BENCH_MEASURE=instructions` or
//! `cycles` counts with perf-event2 instead of timing (calling thread only, user space); where the
//! counter cannot be opened the reason is printed once and time is used.
//!
//! Plots: criterion's plotters has the `ab_glyph` feature (the harness's; cargo unifies features
//! at the workspace root, and `plotfont` asks for it too), so it draws text only in registered
//! fonts, and criterion registers none: it panicked with `FontUnavailable` at its first plot.
//! `main` registers the harness's system font first ([`plotfont::register`]); without one it
//! runs without plots (criterion then writes no HTML report, only its estimates under
//! `target/criterion`) and says why once.
//!
//! A strategy this machine cannot run is skipped in every group, said once on stderr with the
//! reason ([`Available`]).

use std::cell::RefCell;
use std::hint::black_box;
use std::ops::ControlFlow;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use benches::{Fixture, Path, TRANSITION_SITES, TransitionCycle, WriterFixture, WriterOp};
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BatchSize, BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use dispatch::driver::Driver;
use dispatch::strategy::Availability;
use dispatch::{Op, Strategy, Visitor};
use perf_event::events::Hardware;
use perf_event::{Builder, Counter};

/// Rounds of every site per iteration of the read-path benches (256 calls over 8 sites).
const ROUNDS: usize = 32;

struct ReadPath<'a, 'c, M: Measurement> {
    group: &'a mut BenchmarkGroup<'c, M>,
    path: Path,
    available: &'a Availability,
}

impl<M: Measurement> Visitor for ReadPath<'_, '_, M> {
    type Output = ();

    fn visit<S: Strategy>(&mut self) {
        if !self.available.runs(S::INFO.name) {
            return;
        }
        // Verifies that the path resolves as expected before timing, and again after.
        let mut fixture = Fixture::<S>::new(self.path);
        self.group.bench_function(BenchmarkId::from_parameter(S::INFO.name), |b| {
            b.iter(|| black_box(fixture.per_site(ROUNDS)))
        });
        fixture.verify();
    }
}

struct Writer<'a, 'c, M: Measurement> {
    group: &'a mut BenchmarkGroup<'c, M>,
    op: WriterOp,
    available: &'a Availability,
}

impl<M: Measurement> Visitor for Writer<'_, '_, M> {
    type Output = ();

    fn visit<S: Strategy>(&mut self) {
        if !self.available.runs(S::INFO.name) {
            return;
        }
        {
            let check = WriterFixture::<S>::new(self.op);
            check.run();
            check.verify();
        }
        let id = BenchmarkId::new(self.op.name(), S::INFO.name);
        // One fixture alive at a time, dropped outside the timed part: `textpoke`'s call
        // instructions are the process's, so a second patcher waits for the first to go. An
        // operation takes microseconds, so timing each one alone costs little.
        self.group.bench_function(id, |b| {
            b.iter_batched_ref(|| WriterFixture::<S>::new(self.op), |w| black_box(w.run()), BatchSize::PerIteration)
        });
    }
}

/// Readers (pinned) plus a writer enabling and disabling a patch back to back; each reader times
/// its own calls after a start barrier, thread creation stays outside the timed part, and the
/// sample is the mean of the readers' times.
struct Contended<'a, 'c> {
    group: &'a mut BenchmarkGroup<'c, WallTime>,
    readers: usize,
    available: &'a Availability,
}

impl Visitor for Contended<'_, '_> {
    type Output = ();

    fn visit<S: Strategy>(&mut self) {
        if !self.available.runs(S::INFO.name) {
            return;
        }
        let readers = self.readers;
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        let id = BenchmarkId::new(S::INFO.name, format!("r{readers}w1"));
        self.group.bench_function(id, |b| {
            b.iter_custom(|iters| {
                let mut fixture = Fixture::<S>::new(Path::Steady);
                let start = Barrier::new(readers + 1);
                let stop = AtomicBool::new(false);
                let contender = dispatch::PatchSpec::new(
                    "contender",
                    (0..benches::FIXTURE_SITES)
                        .map(|s| dispatch::FuncSpec::new(dispatch::SiteId(s as u32), dispatch::check::code(700 + s))),
                );
                // The fixture's own task sleeps meanwhile, so that it never holds a transition up.
                fixture.task.park().expect("owner");
                let patcher = &fixture.patcher;
                let total: Duration = std::thread::scope(|s| {
                    let handles: Vec<_> = (0..readers)
                        .map(|i| {
                            let (start, core) = (&start, cores.get(i % cores.len().max(1)).copied());
                            s.spawn(move || {
                                if let Some(core) = core {
                                    core_affinity::set_for_current(core);
                                }
                                let mut task = patcher.register().expect("capacity");
                                start.wait();
                                let t0 = Instant::now();
                                let mut done = 0u64;
                                while done < iters {
                                    let n = (iters - done).min(1024);
                                    // One critical section per batch, a safe point after it.
                                    let section = task.enter();
                                    for i in 0..n {
                                        black_box(
                                            section
                                                .call(dispatch::SiteId((i % benches::FIXTURE_SITES as u64) as u32), 0),
                                        );
                                    }
                                    drop(section);
                                    task.safe_point().expect("owner");
                                    done += n;
                                }
                                t0.elapsed()
                            })
                        })
                        .collect();
                    let writer = s.spawn(|| {
                        // No reader checks universes here: nothing to announce.
                        let mut driver = Driver::new(patcher, vec![contender], |_: &[&dispatch::PatchSpec]| {})
                            .expect("valid patch");
                        start.wait();
                        // Relaxed: `stop` is a signal; nothing is published with it.
                        while !stop.load(Ordering::Relaxed) {
                            let op = if driver.enabled().is_empty() { Op::Enable } else { Op::Disable };
                            driver.start(op, 0, false).expect("writer op");
                            driver.finish(|_| {
                                if stop.load(Ordering::Relaxed) {
                                    return ControlFlow::Break(());
                                }
                                std::thread::yield_now();
                                ControlFlow::Continue(())
                            });
                        }
                    });
                    let total = handles.into_iter().map(|h| h.join().expect("reader")).sum();
                    stop.store(true, Ordering::Relaxed);
                    writer.join().expect("writer");
                    total
                });
                fixture.task.unpark().expect("owner");
                fixture.verify_after_contention();
                total / readers as u32
            })
        });
    }
}

fn benches<M: Measurement + 'static>(c: &mut Criterion<M>, available: &Availability) {
    for path in Path::ALL {
        let mut group = c.benchmark_group(path.name());
        group.throughput(Throughput::Elements((ROUNDS * benches::FIXTURE_SITES) as u64));
        dispatch::strategy::visit_all(&mut ReadPath { group: &mut group, path, available });
        group.finish();
    }
    let mut group = c.benchmark_group("writer");
    for op in WriterOp::ALL {
        dispatch::strategy::visit_all(&mut Writer { group: &mut group, op, available });
    }
    group.finish();
}

/// Whole transitions (enable or disable, start to completion) of 8 and 1024 sites, with and
/// without a busy reader: what the writer's work costs when it grows with the sites (`textpoke`
/// stores into every call instruction and syncs every core), and what a running task adds.
struct Transitions<'a, 'c> {
    group: &'a mut BenchmarkGroup<'c, WallTime>,
    sites: usize,
    busy_reader: bool,
    available: &'a Availability,
}

impl Visitor for Transitions<'_, '_> {
    type Output = ();

    fn visit<S: Strategy>(&mut self) {
        if !self.available.runs(S::INFO.name) {
            return;
        }
        let (sites, busy_reader) = (self.sites, self.busy_reader);
        let id = BenchmarkId::new(format!("s{sites}{}", if busy_reader { "_busy_reader" } else { "" }), S::INFO.name);
        self.group.bench_function(id, |b| {
            b.iter_custom(|iters| {
                let cycle = TransitionCycle::<S>::new(sites, busy_reader);
                (0..iters).map(|_| cycle.cycle()).sum()
            })
        });
    }
}

fn transitions(c: &mut Criterion<WallTime>, available: &Availability) {
    let mut group = c.benchmark_group("transition");
    for sites in TRANSITION_SITES {
        for busy_reader in [false, true] {
            dispatch::strategy::visit_all(&mut Transitions { group: &mut group, sites, busy_reader, available });
        }
    }
    group.finish();
}

fn contended(c: &mut Criterion<WallTime>, available: &Availability) {
    let cpus = core_affinity::get_core_ids().map_or(1, |c| c.len());
    let mut group = c.benchmark_group("contended");
    group.throughput(Throughput::Elements(1));
    for readers in [1, cpus].into_iter().collect::<std::collections::BTreeSet<_>>() {
        dispatch::strategy::visit_all(&mut Contended { group: &mut group, readers, available });
    }
    group.finish();
}

/// A perf-event2 hardware counter as a criterion measurement (criterion-perf-events does not
/// build against criterion 0.8). Counts the calling thread, user space only.
struct PerfMeasurement {
    counter: RefCell<Counter>,
    unit: &'static str,
}

impl PerfMeasurement {
    fn open(event: Hardware, unit: &'static str) -> std::io::Result<Self> {
        Ok(Self { counter: RefCell::new(Builder::new(event).build()?), unit })
    }
}

impl Measurement for PerfMeasurement {
    type Intermediate = ();
    type Value = u64;

    fn start(&self) {
        let mut c = self.counter.borrow_mut();
        c.reset().expect("reset a perf counter");
        c.enable().expect("enable a perf counter");
    }

    fn end(&self, _: ()) -> u64 {
        let mut c = self.counter.borrow_mut();
        c.disable().expect("disable a perf counter");
        c.read().expect("read a perf counter")
    }

    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }

    fn zero(&self) -> u64 {
        0
    }

    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        self
    }
}

impl ValueFormatter for PerfMeasurement {
    fn scale_values(&self, _typical: f64, _values: &mut [f64]) -> &'static str {
        self.unit
    }

    fn scale_throughputs(&self, _typical: f64, throughput: &Throughput, values: &mut [f64]) -> &'static str {
        let n = match throughput {
            Throughput::Elements(n) | Throughput::Bytes(n) | Throughput::BytesDecimal(n) | Throughput::Bits(n) => *n,
            Throughput::ElementsAndBytes { elements, .. } => *elements,
        };
        for v in values.iter_mut() {
            *v /= n as f64;
        }
        match self.unit {
            "instructions" => "instructions/call",
            _ => "cycles/call",
        }
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        self.unit
    }
}

/// Criterion with its plots as the font allows: off when [`plotfont::register`] failed.
fn plots<M: Measurement>(c: Criterion<M>, font: &Result<(), String>) -> Criterion<M> {
    if font.is_ok() { c } else { c.without_plots() }
}

fn main() {
    // Probed first thing, while the process has one thread (criterion's rayon pool and the
    // contended group's threads come later), and kept for the whole suite.
    let available = Availability::probe();
    for (name, why) in available.unavailable() {
        eprintln!("{name}: skipped: {why}");
    }
    let font = plotfont::register();
    if let Err(why) = &font {
        eprintln!("suite: criterion's plots and HTML report are skipped: {why}");
    }
    let choice = std::env::var("DISPATCH_BENCH_MEASURE").unwrap_or_else(|_| "time".into());
    let event = match choice.as_str() {
        "time" => None,
        "instructions" => Some((Hardware::INSTRUCTIONS, "instructions")),
        "cycles" => Some((Hardware::CPU_CYCLES, "cycles")),
        other => {
            eprintln!("DISPATCH_BENCH_MEASURE={other:?} is not one of time, instructions, cycles");
            std::process::exit(2);
        }
    };
    if let Some((event, unit)) = event {
        match PerfMeasurement::open(event, unit) {
            Ok(m) => {
                let mut c = plots(Criterion::default().with_measurement(m).configure_from_args(), &font);
                benches(&mut c, &available);
                eprintln!("contended: skipped under DISPATCH_BENCH_MEASURE={choice} (it times several threads)");
                c.final_summary();
                return;
            }
            Err(e) => {
                eprintln!("DISPATCH_BENCH_MEASURE={choice}: cannot open the counter ({e}); measuring time instead")
            }
        }
    }
    let mut c = plots(Criterion::default().configure_from_args(), &font);
    benches(&mut c, &available);
    transitions(&mut c, &available);
    contended(&mut c, &available);
    c.final_summary();
}
