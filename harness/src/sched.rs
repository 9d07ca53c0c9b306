//! What the scheduler did to a reader and to the host while it measured: read from the kernel's
//! own accounting, which needs no perf permission and so works wherever `/proc` does.
//!
//! Per thread: run time and run-queue wait (`/proc/thread-self/schedstat`), voluntary and
//! involuntary context switches (`getrusage(RUSAGE_THREAD)`), migrations
//! (`se.nr_migrations` of `/proc/thread-self/sched`, present with `CONFIG_SCHED_DEBUG`) and the CPU
//! it is on (`sched_getcpu`). Per host: steal time (`/proc/stat`) and the load average
//! (`/proc/loadavg`). A value the kernel does not give is `None`, never a made-up 0.

use std::fs;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// One thread's scheduler accounting at one instant.
#[derive(Clone, Copy, Debug)]
pub struct ThreadSample {
    at: Instant,
    /// Time on a CPU and time waiting on a run queue, ns (`None`: no schedstat).
    on_cpu_ns: Option<u64>,
    wait_ns: Option<u64>,
    voluntary: Option<u64>,
    involuntary: Option<u64>,
    migrations: Option<u64>,
    cpu: Option<usize>,
}

/// The field `name` of `/proc/thread-self/sched` (`se.nr_migrations   :   2`).
fn sched_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == name).then(|| v.trim().parse().ok()).flatten()
    })
}

/// The calling thread's voluntary and involuntary context switches.
fn rusage_switches() -> Option<(u64, u64)> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage writes a whole `rusage` into the pointer it is given on success, and we
    // read it only then.
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) != 0 {
            return None;
        }
        usage.assume_init()
    };
    Some((u64::try_from(usage.ru_nvcsw).ok()?, u64::try_from(usage.ru_nivcsw).ok()?))
}

/// The CPU the calling thread is on.
pub fn current_cpu() -> Option<usize> {
    // SAFETY: sched_getcpu takes no arguments and touches no memory of ours.
    usize::try_from(unsafe { libc::sched_getcpu() }).ok()
}

impl ThreadSample {
    /// The calling thread's accounting now (a few system calls: call it outside timed spans).
    pub fn now() -> Self {
        let schedstat = fs::read_to_string("/proc/thread-self/schedstat").ok();
        let mut fields = schedstat.as_deref().unwrap_or("").split_whitespace().map(|f| f.parse::<u64>().ok());
        let (on_cpu_ns, wait_ns) = (fields.next().flatten(), fields.next().flatten());
        let sched = fs::read_to_string("/proc/thread-self/sched").ok();
        let switches = rusage_switches();
        Self {
            at: Instant::now(),
            on_cpu_ns,
            wait_ns,
            voluntary: switches.map(|s| s.0),
            involuntary: switches.map(|s| s.1),
            migrations: sched.as_deref().and_then(|t| sched_field(t, "se.nr_migrations")),
            cpu: current_cpu(),
        }
    }

    /// What happened between `start` (earlier) and `self`.
    pub fn since(&self, start: &ThreadSample) -> ReaderSched {
        let delta = |a: Option<u64>, b: Option<u64>| Some(a?.saturating_sub(b?));
        ReaderSched {
            cpu_start: start.cpu,
            cpu_end: self.cpu,
            wall_ns: (self.at - start.at).as_nanos() as u64,
            on_cpu_ns: delta(self.on_cpu_ns, start.on_cpu_ns),
            runqueue_wait_ns: delta(self.wait_ns, start.wait_ns),
            voluntary_switches: delta(self.voluntary, start.voluntary),
            involuntary_switches: delta(self.involuntary, start.involuntary),
            migrations: delta(self.migrations, start.migrations),
        }
    }
}

/// What the scheduler did to one reader over its measured span (run.json's `rows[].sched[]`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct ReaderSched {
    /// The CPU it was on when the span began and when it ended.
    pub cpu_start: Option<usize>,
    pub cpu_end: Option<usize>,
    pub wall_ns: u64,
    /// Time it ran on a CPU, and time it was runnable but waited for one.
    pub on_cpu_ns: Option<u64>,
    pub runqueue_wait_ns: Option<u64>,
    pub voluntary_switches: Option<u64>,
    /// Preemptions: another task took its CPU.
    pub involuntary_switches: Option<u64>,
    pub migrations: Option<u64>,
}

impl ReaderSched {
    /// Share of the wall time it was on a CPU (0 to 1); `None` without schedstat.
    pub fn on_cpu_share(&self) -> Option<f64> {
        let on = self.on_cpu_ns? as f64;
        (self.wall_ns > 0).then(|| (on / self.wall_ns as f64).min(1.0))
    }

    /// Whether it changed CPU: by the kernel's count where there is one, else by the CPU it
    /// was on at either end.
    pub fn migrated(&self) -> bool {
        match self.migrations {
            Some(n) => n > 0,
            None => matches!((self.cpu_start, self.cpu_end), (Some(a), Some(b)) if a != b),
        }
    }
}

/// The host's CPU time by kind, from the first (`cpu`, all CPUs) line of `/proc/stat`, in ticks.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuTimes {
    pub steal: u64,
    pub total: u64,
}

/// Parses the `cpu` line of `/proc/stat`: user nice system idle iowait irq softirq steal ...
/// (guest time is already inside user and nice, so it is not added again).
fn parse_cpu_times(stat: &str) -> Option<CpuTimes> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).map_while(|f| f.parse().ok()).collect();
    let steal = *v.get(7)?;
    Some(CpuTimes { steal, total: v.iter().take(8).sum() })
}

impl CpuTimes {
    pub fn now() -> Option<Self> {
        parse_cpu_times(&fs::read_to_string("/proc/stat").ok()?)
    }

    /// Share of all CPUs' time from `start` to `self` that the hypervisor stole; `None` when no
    /// tick passed.
    pub fn steal_share_since(&self, start: &CpuTimes) -> Option<f64> {
        let total = self.total.checked_sub(start.total).filter(|t| *t > 0)?;
        Some(self.steal.saturating_sub(start.steal) as f64 / total as f64)
    }
}

/// The 1-, 5- and 15-minute load averages.
pub fn loadavg() -> Option<[f64; 3]> {
    let text = fs::read_to_string("/proc/loadavg").ok()?;
    let mut f = text.split_whitespace().map(|x| x.parse::<f64>().ok());
    Some([f.next()??, f.next()??, f.next()??])
}

/// The host across a whole run (run.json's `host_load`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct HostLoad {
    pub loadavg_start: Option<[f64; 3]>,
    pub loadavg_end: Option<[f64; 3]>,
    /// Share of all CPUs' time the hypervisor stole during the run.
    pub steal_share: Option<f64>,
}

/// Samples the host at the start of a run; [`HostWatch::finish`] gives the [`HostLoad`].
#[derive(Debug)]
pub struct HostWatch {
    loadavg: Option<[f64; 3]>,
    times: Option<CpuTimes>,
}

impl HostWatch {
    pub fn start() -> Self {
        Self { loadavg: loadavg(), times: CpuTimes::now() }
    }

    pub fn finish(&self) -> HostLoad {
        let end = CpuTimes::now();
        HostLoad {
            loadavg_start: self.loadavg,
            loadavg_end: loadavg(),
            steal_share: end.zip(self.times).and_then(|(e, s)| e.steal_share_since(&s)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_gives_steal_and_the_total_without_guest_time() {
        let stat = "cpu  100 10 20 800 5 0 5 60 30 0\ncpu0 50 5 10 400 2 0 2 30 15 0\n";
        let t = parse_cpu_times(stat).unwrap();
        assert_eq!(t, CpuTimes { steal: 60, total: 1000 });
        let later = CpuTimes { steal: 80, total: 1100 };
        assert_eq!(later.steal_share_since(&t), Some(0.2));
        assert_eq!(t.steal_share_since(&t), None, "no tick, no share");
        assert_eq!(parse_cpu_times("cpu  1 2 3\n"), None, "an old kernel without steal");
    }

    #[test]
    fn sched_fields_are_found_by_name() {
        let text = "se.exec_start  :  1.5\nse.nr_migrations                             :                    7\n";
        assert_eq!(sched_field(text, "se.nr_migrations"), Some(7));
        assert_eq!(sched_field(text, "nr_switches"), None);
    }

    #[test]
    fn migration_falls_back_to_the_cpus_at_either_end() {
        let r = |migrations, a, b| ReaderSched { migrations, cpu_start: a, cpu_end: b, ..Default::default() };
        assert!(r(Some(1), Some(0), Some(0)).migrated(), "the kernel's count wins");
        assert!(!r(Some(0), Some(0), Some(0)).migrated());
        assert!(r(None, Some(0), Some(1)).migrated());
        assert!(!r(None, Some(1), Some(1)).migrated() && !r(None, None, Some(1)).migrated());
    }

    #[test]
    fn on_cpu_share_is_a_share_of_wall_time() {
        let r = ReaderSched { wall_ns: 1000, on_cpu_ns: Some(400), ..Default::default() };
        assert_eq!(r.on_cpu_share(), Some(0.4));
        assert_eq!(ReaderSched { on_cpu_ns: None, ..r.clone() }.on_cpu_share(), None);
        // Accounting granularity can put run time a hair past wall time.
        assert_eq!(ReaderSched { on_cpu_ns: Some(1001), ..r }.on_cpu_share(), Some(1.0));
    }

    /// The calling thread's own accounting moves forward (no timing involved: each sleep is a
    /// voluntary switch, and a thread that ran has run time).
    #[test]
    fn a_thread_that_sleeps_and_works_is_accounted() {
        let start = ThreadSample::now();
        for _ in 0..3 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let mut x = 0u64;
        for i in 0..1_000_000u64 {
            x = std::hint::black_box(x.wrapping_add(i));
        }
        let d = ThreadSample::now().since(&start);
        assert!(d.voluntary_switches.is_some_and(|n| n >= 3), "getrusage(RUSAGE_THREAD): {d:?}");
        if let Some(on) = d.on_cpu_ns {
            assert!(on > 0, "{d:?}");
        }
        assert!(d.cpu_start.is_some() && d.cpu_end.is_some(), "sched_getcpu: {d:?}");
    }
}
