//! The runner: every strategy on every scenario, in rounds. Per measurement: a fresh patcher with
//! `depth` patches enabled, the readers and the writer of [`protocol`](crate::protocol), and one
//! [`Row`] from what they measured. Strategies are interleaved within each round, in a fresh
//! random order per round, so that machine drift hits them all alike, and every row's ratio is to
//! `fnptr` of the same round.

use std::io::IsTerminal;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use dispatch::check::UniverseLog;
use dispatch::driver::Driver;
use dispatch::rng::Rng;
use dispatch::strategy::BASELINE;
use dispatch::{PatchSpec, Patcher, PatcherConfig, Strategy, Visitor};
use hdrhistogram::Histogram;

use crate::config::{Rate, RunConfig, Scenario};
use crate::counters::CounterKind;
use crate::hist;
use crate::protocol::{Control, MeasuredLoop, ReaderCtx, ReaderResult, WriterPlace, WriterResult, reader, writer};
use crate::record::{Histograms, Interference, Percentiles, PhasePercentiles, Row};
use crate::sched::CpuTimes;
use crate::workload::Workload;

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

/// The percentiles of a histogram, divided by `unit`; `None` when it is empty.
fn percentiles(h: &Histogram<u64>, unit: f64) -> Option<Percentiles> {
    (!h.is_empty()).then(|| Percentiles {
        p50: h.value_at_quantile(0.5) as f64 / unit,
        p99: h.value_at_quantile(0.99) as f64 / unit,
        p999: h.value_at_quantile(0.999) as f64 / unit,
        max: h.max() as f64 / unit,
    })
}

/// Measures one strategy on one scenario (one round's cell).
#[derive(Debug)]
pub struct Measure<'a> {
    pub cfg: &'a RunConfig,
    pub scenario: &'a Scenario,
    pub work: &'a Workload,
    pub round: usize,
    pub clock_ns: f64,
    pub counters: CounterKind,
}

impl Visitor for Measure<'_> {
    type Output = Result<Row, String>;

    fn visit<S: Strategy>(&mut self) -> Result<Row, String> {
        let (s, work) = (self.scenario, self.work);
        let p = Patcher::<S>::new(&work.originals, PatcherConfig { capacity: s.readers + 2, ..Default::default() });
        let base: Vec<&PatchSpec> = work.base.iter().collect();
        let universes = UniverseLog::new(work.signature(&base));
        // A universe's signature runs every call of a section (thousands): computed once per set
        // of enabled patches (the writer cycles through a few), not inside each transition's
        // timed span, where it once took more than the transition itself (12 µs of `direct`'s 20).
        // Keyed by the specs' addresses: the driver owns them, unmoved, for the whole measurement.
        let mut known: Vec<(Vec<usize>, u64)> = Vec::new();
        let universes_ref = &universes;
        let announce = move |enabled: &[&PatchSpec]| {
            let key: Vec<usize> = enabled.iter().map(|s| std::ptr::from_ref(*s) as usize).collect();
            let signature = match known.iter().find(|(k, _)| *k == key) {
                Some(&(_, sig)) => sig,
                None => {
                    let sig = work.signature(enabled);
                    known.push((key, sig));
                    sig
                }
            };
            universes_ref.announce(signature);
        };
        let mut driver = Driver::new(&p, work.patches(), announce).map_err(|e| e.to_string())?;
        driver.enable_first(work.base.len(), Duration::from_secs(10)).map_err(|e| e.to_string())?;
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
            measured_loop: MeasuredLoop::new(s.call_sites, work, s.sites)?,
            universes: &universes,
            control: &control,
            readers: s.readers,
            duration: self.cfg.duration,
            warmup: self.cfg.warmup,
            clock_ns: self.clock_ns,
            counters: self.counters,
        };
        let panic_after = self.cfg.panic_after_batches;
        let place = match self.cfg.writer_cpu {
            Some(cpu) => WriterPlace::Pinned(cpu),
            None => WriterPlace::Among(free_cpus(cpus, s.readers)),
        };
        let host_before = CpuTimes::now();
        let (readers, writer) = std::thread::scope(|scope| {
            let readers: Vec<_> = (0..s.readers)
                .map(|i| {
                    let cpu = reader_cpu(cpus, i);
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
                let (driver, control) = (&mut driver, &control);
                let patches = work.indexes();
                scope.spawn(move || {
                    match catch_unwind(AssertUnwindSafe(|| writer(driver, patches, s, control, &place))) {
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
        let steal = CpuTimes::now().zip(host_before).and_then(|(end, start)| end.steal_share_since(&start));
        if control.aborted() {
            let why = control.why.lock().unwrap_or_else(|e| e.into_inner()).clone();
            return Err(why.unwrap_or_else(|| "the run was aborted".into()));
        }
        let readers: Vec<ReaderResult> = readers.into_iter().map(|r| r.expect("not aborted")).collect();
        let writer = writer.map(|w| w.expect("not aborted"));
        Ok(self.row::<S>(readers, writer, steal))
    }
}

/// The CPU reader `i` of a measurement is pinned to, if any: readers go round the mask in order.
pub fn reader_cpu(cpus: &[usize], i: usize) -> Option<usize> {
    (!cpus.is_empty()).then(|| cpus[i % cpus.len()])
}

/// The CPUs of the mask no reader of `readers` is pinned to; empty when readers fill the mask
/// (then an unpinned writer may run anywhere).
pub fn free_cpus(cpus: &[usize], readers: usize) -> Vec<usize> {
    let taken: Vec<usize> = (0..readers.min(cpus.len())).filter_map(|i| reader_cpu(cpus, i)).collect();
    cpus.iter().copied().filter(|c| !taken.contains(c)).collect()
}

/// Whether a writer pinned to `writer_cpu` (`None`: unpinned) must share a CPU with one of
/// `readers` readers pinned round `cpus`: pinned to a reader's CPU, or unpinned with a reader on
/// every CPU of the mask.
pub fn writer_shares_cpu(cpus: &[usize], readers: usize, writer_cpu: Option<usize>) -> bool {
    match writer_cpu {
        Some(w) => (0..readers).any(|i| reader_cpu(cpus, i) == Some(w)),
        None => readers >= cpus.len(),
    }
}

impl Measure<'_> {
    fn row<S: Strategy>(&self, readers: Vec<ReaderResult>, writer: Option<WriterResult>, steal: Option<f64>) -> Row {
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
        let ns_per_call = busy / calls.max(1) as f64;
        let batch_ns = percentiles(&hist, 1000.0);
        let sched: Vec<_> = readers.iter().map(|r| r.sched.clone()).collect();
        Row {
            strategy: S::INFO.name.to_owned(),
            consistency: S::INFO.consistency.name().to_owned(),
            scenario: s.clone(),
            round: self.round,
            pinned: readers.iter().all(|r| r.pinned),
            oversubscribed: s.readers > self.cfg.cpus.len(),
            calls,
            ns_per_call,
            ratio_to_fnptr: None,
            calls_per_sec: readers.iter().map(|r| r.calls as f64 / r.elapsed.as_secs_f64().max(1e-9)).sum(),
            batch_ns,
            clamped: sum(|r| r.clamped),
            transitions: writer.as_ref().map_or(0, |w| w.transitions),
            rate_target_hz: rate_target,
            rate_achieved_hz: rate_achieved,
            rate_kept: rate_target.zip(rate_achieved).map(|(t, a)| a >= 0.95 * t),
            transition_us: writer.as_ref().and_then(|w| percentiles(&w.latency, 1000.0)),
            transition_service_us: writer.as_ref().and_then(|w| percentiles(&w.service, 1000.0)),
            writer_cpu: writer.as_ref().and(self.cfg.writer_cpu),
            writer_shares_cpu: writer
                .as_ref()
                .map(|_| writer_shares_cpu(&self.cfg.cpus, s.readers, self.cfg.writer_cpu)),
            grace_period_us: writer.as_ref().and_then(|w| percentiles(&w.grace, 1000.0)),
            critical_sections: sum(|r| r.critical_sections),
            violations: sum(|r| r.violations),
            use_after_reclaim: sum(|r| r.poison),
            idle_in_transition: sum(|r| r.idle_in_transition),
            stale_cache_refills: sum(|r| r.stale_cache_refills),
            counter_kind: self.counters,
            counters,
            clock_overhead_ns: self.clock_ns,
            interference: Interference::judge(&sched, ns_per_call, batch_ns.as_ref()),
            sched,
            host_steal_share: steal,
            phases_us: writer.as_ref().map_or_else(Vec::new, |w| {
                dispatch::Phases::NAMES
                    .iter()
                    .zip(&w.phases)
                    .filter_map(|(name, h)| {
                        Some(PhasePercentiles { phase: (*name).to_owned(), us: percentiles(h, 1000.0)? })
                    })
                    .collect()
            }),
            start_late_us: writer.as_ref().and_then(|w| percentiles(&w.late, 1000.0)),
            histograms: Histograms {
                batch_ps: (!hist.is_empty()).then(|| hist::encode(&hist)),
                transition_ns: writer.as_ref().filter(|w| !w.latency.is_empty()).map(|w| hist::encode(&w.latency)),
            },
        }
    }
}

/// Runs every scenario: per scenario, `rounds` rounds, each measuring every strategy once in a
/// fresh random order. Fills in each row's ratio to the baseline ([`BASELINE`]) from the same
/// round. `after_round` runs after each round of each scenario, given the scenario and the round
/// (the fidelity check times its C loops there).
pub fn run_all(
    cfg: &RunConfig,
    counters: CounterKind,
    clock_ns: f64,
    after_round: &mut dyn FnMut(&Scenario, usize) -> Result<(), String>,
) -> Result<Vec<Row>, String> {
    let mut rng = Rng::new(cfg.seed);
    let total = cfg.scenarios.len() * cfg.rounds * cfg.strategies.len();
    let progress = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut rows = Vec::with_capacity(total);
    for scenario in &cfg.scenarios {
        let work = Workload::new(scenario, cfg.seed);
        for round in 0..cfg.rounds {
            let mut order = cfg.strategies.clone();
            rng.shuffle(&mut order);
            let first = rows.len();
            for name in &order {
                if progress {
                    let eta = eta(started.elapsed(), rows.len(), total);
                    eprint!("\r\x1b[2K[{}/{}] {eta} {} {}", rows.len() + 1, total, scenario.name(), name);
                }
                let mut m = Measure { cfg, scenario, work: &work, round, clock_ns, counters };
                let row = dispatch::strategy::visit(name, &mut m).map_err(|e| e.to_string())??;
                rows.push(row);
            }
            let this_round = &mut rows[first..];
            if let Some(base) = this_round.iter().find(|r| r.strategy == BASELINE).map(|r| r.ns_per_call) {
                for r in this_round.iter_mut() {
                    r.ratio_to_fnptr = Some(r.ns_per_call / base);
                }
            }
            after_round(scenario, round)?;
        }
    }
    if progress {
        eprint!("\r\x1b[2K");
    }
    Ok(rows)
}

/// The progress line's time: elapsed, and what is left at the pace so far (`0:14, ~1:32 left`;
/// nothing to go on before the first measurement).
pub fn eta(elapsed: Duration, done: usize, total: usize) -> String {
    let clock = |d: Duration| format!("{}:{:02}", d.as_secs() / 60, d.as_secs() % 60);
    if done == 0 {
        return clock(elapsed);
    }
    let left = elapsed.mul_f64((total - done.min(total)) as f64 / done as f64);
    format!("{}, ~{} left", clock(elapsed), clock(left))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eta_extrapolates_the_pace_so_far() {
        assert_eq!(eta(Duration::from_secs(3), 0, 10), "0:03");
        assert_eq!(eta(Duration::from_secs(30), 10, 40), "0:30, ~1:30 left");
        assert_eq!(eta(Duration::from_secs(125), 5, 5), "2:05, ~0:00 left");
    }

    #[test]
    fn the_writer_shares_a_cpu_when_pinned_to_a_readers_or_when_readers_fill_the_mask() {
        let mask = [0, 1];
        assert!(!writer_shares_cpu(&mask, 1, Some(1)), "reader on 0, writer on 1");
        assert!(writer_shares_cpu(&mask, 1, Some(0)));
        assert!(writer_shares_cpu(&mask, 2, Some(1)));
        assert!(!writer_shares_cpu(&mask, 1, None), "a CPU is free for it");
        assert!(writer_shares_cpu(&mask, 2, None), "every CPU has a reader");
        assert_eq!((free_cpus(&mask, 1), free_cpus(&mask, 2), free_cpus(&mask, 3)), (vec![1], vec![], vec![]));
        assert_eq!((reader_cpu(&mask, 2), reader_cpu(&[], 0)), (Some(0), None));
    }
}
