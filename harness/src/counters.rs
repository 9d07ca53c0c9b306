//! Per-reader performance counters through perf-event2: a group per reader thread, opened inside
//! the thread (pid 0 = the calling thread), user space only, read around the measured span and
//! scaled by time enabled / time running. Where the PMU is absent (VMs answer ENOENT) the reason
//! is said once and software counters (task-clock, context switches, migrations) are used.
//!
//! Context switches and migrations happen in the kernel: a counter that excludes kernel events
//! (perf-event2's default, and what `:u` asks of `perf stat`) reads 0 for ever. The software group
//! therefore includes kernel events; where `perf_event_paranoid` forbids that, only task-clock is
//! opened (it counts the thread's run time either way), and the switches and migrations of every
//! reader come from the kernel's accounting instead (`crate::sched`, recorded in every row).

use std::collections::BTreeMap;
use std::io;

use perf_event::events::{Cache, CacheId, CacheOp, CacheResult, Hardware, Software};
use perf_event::{Builder, Counter, Group};
use serde::{Deserialize, Serialize};

use crate::config::CountersMode;

/// Which counter set a run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum CounterKind {
    Hardware,
    /// task-clock, context switches and migrations, kernel events included.
    Software,
    /// task-clock alone: kernel events are not permitted (`perf_event_paranoid` above 1 without
    /// CAP_PERFMON), and switch and migration counters without them would read 0.
    TaskClock,
    None,
}

/// Whether hardware counters can be opened here, and why not.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct Availability {
    pub available: bool,
    pub reason: Option<String>,
    /// What the run uses.
    pub kind: CounterKind,
}

const L1D_READ_MISS: Cache = Cache { which: CacheId::L1D, operation: CacheOp::READ, result: CacheResult::MISS };

fn hardware_events() -> [(&'static str, Builder<'static>); 5] {
    [
        ("cycles", Builder::new(Hardware::CPU_CYCLES)),
        ("instructions", Builder::new(Hardware::INSTRUCTIONS)),
        ("branch_misses", Builder::new(Hardware::BRANCH_MISSES)),
        ("l1d_misses", Builder::new(L1D_READ_MISS)),
        ("llc_misses", Builder::new(Hardware::CACHE_MISSES)),
    ]
}

/// The software group, kernel events included (see the module's documentation).
fn software_events() -> [(&'static str, Builder<'static>); 3] {
    let kernel = |event| {
        let mut b = Builder::new(event);
        b.include_kernel();
        b
    };
    [
        ("task_clock_ns", kernel(Software::TASK_CLOCK)),
        ("context_switches", kernel(Software::CONTEXT_SWITCHES)),
        ("cpu_migrations", kernel(Software::CPU_MIGRATIONS)),
    ]
}

/// The name of every counter this harness may open, hardware ones first: what a row's
/// `counters.values` may hold (rows.csv has a column for each).
pub fn counter_names() -> impl Iterator<Item = &'static str> {
    hardware_events().into_iter().chain(software_events()).map(|(name, _)| name)
}

/// Explains an open failure in the terms a user can act on.
fn reason(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(2) => {
            format!("no hardware PMU (ENOENT: {e}); typical of VMs: software counters are reported instead")
        }
        Some(13) | Some(1) => format!(
            "permission denied ({e}); lower /proc/sys/kernel/perf_event_paranoid to 2 or less, or run with CAP_PERFMON"
        ),
        _ => format!("cannot open hardware counters: {e}"),
    }
}

/// Decides the counter set for a run, on the calling thread, before anything is measured.
pub fn probe(mode: CountersMode) -> Result<Availability, String> {
    if mode == CountersMode::Off {
        return Ok(Availability {
            available: false,
            reason: Some("disabled by --counters off".into()),
            kind: CounterKind::None,
        });
    }
    match ThreadCounters::open(CounterKind::Hardware) {
        Ok(_) => Ok(Availability { available: true, reason: None, kind: CounterKind::Hardware }),
        Err(e) if mode == CountersMode::Require => {
            Err(format!("--counters require: {}; use --counters auto to continue without them", reason(&e)))
        }
        Err(e) => {
            let mut why = reason(&e);
            let kind = match ThreadCounters::open(CounterKind::Software) {
                Ok(_) => CounterKind::Software,
                Err(sw) => {
                    why.push_str(&format!(
                        "; software counters with kernel events cannot be opened either ({sw}): task-clock only, \
                         context switches and migrations from the kernel's per-thread accounting"
                    ));
                    if ThreadCounters::open(CounterKind::TaskClock).is_ok() {
                        CounterKind::TaskClock
                    } else {
                        CounterKind::None
                    }
                }
            };
            Ok(Availability { available: false, reason: Some(why), kind })
        }
    }
}

/// One reader thread's counter group.
pub struct ThreadCounters {
    group: Group,
    counters: Vec<(&'static str, Counter)>,
}

/// Counter values over a measured span, scaled for multiplexing.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct CounterValues {
    pub values: BTreeMap<String, f64>,
    /// time_running < time_enabled: the kernel multiplexed the group and values are scaled.
    pub multiplexed: bool,
}

impl std::fmt::Debug for ThreadCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadCounters")
            .field("events", &self.counters.iter().map(|c| c.0).collect::<Vec<_>>())
            .finish()
    }
}

impl ThreadCounters {
    /// Opens the group for the calling thread. `CounterKind::None` opens nothing.
    pub fn open(kind: CounterKind) -> io::Result<Self> {
        let mut group = Group::new()?;
        let events: Vec<(&'static str, Builder<'static>)> = match kind {
            CounterKind::Hardware => hardware_events().into(),
            CounterKind::Software => software_events().into(),
            CounterKind::TaskClock => vec![("task_clock_ns", Builder::new(Software::TASK_CLOCK))],
            CounterKind::None => Vec::new(),
        };
        let mut counters = Vec::new();
        for (name, builder) in events {
            counters.push((name, group.add(&builder)?));
        }
        Ok(Self { group, counters })
    }

    pub fn start(&mut self) -> io::Result<()> {
        self.group.reset()?;
        self.group.enable()
    }

    pub fn stop(&mut self) -> io::Result<CounterValues> {
        self.group.disable()?;
        let data = self.group.read()?;
        let (enabled, running) = (data.time_enabled(), data.time_running());
        let scale = match (enabled, running) {
            (Some(e), Some(r)) if !r.is_zero() => e.as_secs_f64() / r.as_secs_f64(),
            _ => 1.0,
        };
        let values = self.counters.iter().map(|(n, c)| ((*n).to_owned(), data[c] as f64 * scale)).collect();
        Ok(CounterValues { values, multiplexed: scale > 1.0 + 1e-9 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 14: with kernel events excluded, context switches read 0 for ever. A thread that
    /// sleeps switches out at every sleep, so the group must count at least that many. Skipped
    /// only where kernel events are not permitted (then `probe` says so and uses `TaskClock`).
    #[test]
    fn software_counters_count_the_kernels_context_switches() {
        let Ok(mut group) = ThreadCounters::open(CounterKind::Software) else {
            eprintln!("software counters with kernel events cannot be opened here: nothing to check");
            return;
        };
        group.start().unwrap();
        for _ in 0..3 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let v = group.stop().unwrap();
        assert!(v.values["context_switches"] >= 3.0, "{v:?}");
        assert!(v.values["task_clock_ns"] > 0.0, "{v:?}");
    }
}
