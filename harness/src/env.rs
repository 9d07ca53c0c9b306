//! The environment record of every run: what the numbers depend on,
//! read before anything is measured and stored with the results.

use std::fs;

use serde::{Deserialize, Serialize};

use crate::counters::Availability;
use crate::cpu::CpuIdentity;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct Env {
    pub host: String,
    /// The CPU's model string. In a VM it may name no generation ("AMD EPYC"): [`Env::cpu`] says
    /// which CPU it is.
    pub cpu_model: String,
    /// The CPU by what it is (vendor, family/model/stepping, microarchitecture, caches, clocks,
    /// topology). Absent from runs of schema 4 and older.
    #[serde(default)]
    pub cpu: Option<CpuIdentity>,
    /// Logical CPUs of the affinity mask (what readers are pinned to).
    pub cpus: Vec<usize>,
    pub online_cpus: usize,
    pub kernel: String,
    pub hypervisor: bool,
    pub governor: String,
    pub turbo: String,
    pub smt: String,
    pub perf_event_paranoid: String,
    pub aslr: String,
    pub nmi_watchdog: String,
    pub rustc: String,
    pub git_commit: String,
    pub counters: Option<Availability>,
    /// What some strategies' figures depend on in this machine, from each strategy's
    /// `Info::machine_fact` (how `percpu` reads the CPU id, how `textpoke` made its call
    /// instructions writable), in registry order.
    pub strategy_facts: Vec<StrategyFact>,
}

/// One strategy's fact about the machine (`dispatch::strategy::MachineFact`), as run.json keeps it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct StrategyFact {
    pub strategy: String,
    /// What it is about (`cpu id`, `text`).
    pub what: String,
    pub value: String,
    /// Why the strategy is slower or less representative here, and what to change.
    pub warning: Option<String>,
}

impl StrategyFact {
    /// Every strategy's fact about this machine, in registry order.
    pub fn capture() -> Vec<Self> {
        dispatch::strategy::ALL
            .iter()
            .filter_map(|info| {
                (info.machine_fact)().map(|f| StrategyFact {
                    strategy: info.name.to_owned(),
                    what: f.what.to_owned(),
                    value: f.value,
                    warning: f.warning,
                })
            })
            .collect()
    }

    /// `percpu cpu id: rseq`.
    pub fn line(&self) -> String {
        format!("{} {}: {}", self.strategy, self.what, self.value)
    }
}

fn read(path: &str) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

fn or_unavailable(v: Option<String>) -> String {
    v.unwrap_or_else(|| "unavailable".to_owned())
}

/// The CPUs of this process's affinity mask, by id (core_affinity reads sched_getaffinity).
pub fn affinity_cpus() -> Vec<usize> {
    core_affinity::get_core_ids().map(|ids| ids.into_iter().map(|c| c.id).collect()).unwrap_or_default()
}

impl Env {
    pub fn capture(counters: Option<Availability>) -> Self {
        let cpuinfo = read("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| {
            cpuinfo
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        };
        let turbo = read("/sys/devices/system/cpu/cpufreq/boost")
            .map(|b| if b == "1" { "on".to_owned() } else { "off".to_owned() })
            .or_else(|| {
                read("/sys/devices/system/cpu/intel_pstate/no_turbo")
                    .map(|t| if t == "1" { "off".into() } else { "on".into() })
            });
        Self {
            host: read("/proc/sys/kernel/hostname").unwrap_or_else(|| "unknown-host".into()),
            cpu_model: or_unavailable(field("model name")),
            cpu: Some(CpuIdentity::capture()),
            cpus: affinity_cpus(),
            online_cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            kernel: or_unavailable(read("/proc/sys/kernel/osrelease")),
            hypervisor: field("flags").is_some_and(|f| f.split_whitespace().any(|x| x == "hypervisor")),
            governor: or_unavailable(read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")),
            turbo: or_unavailable(turbo),
            smt: or_unavailable(
                read("/sys/devices/system/cpu/smt/active").map(|s| if s == "1" { "on".into() } else { "off".into() }),
            ),
            perf_event_paranoid: or_unavailable(read("/proc/sys/kernel/perf_event_paranoid")),
            aslr: or_unavailable(read("/proc/sys/kernel/randomize_va_space")),
            nmi_watchdog: or_unavailable(read("/proc/sys/kernel/nmi_watchdog")),
            rustc: env!("HARNESS_RUSTC").to_owned(),
            git_commit: env!("HARNESS_COMMIT").to_owned(),
            counters,
            strategy_facts: StrategyFact::capture(),
        }
    }

    /// How this host is labelled where runs of several hosts meet: its CPU by what it is ("AMD
    /// Zen 4 (25/17/1), 2 CPUs"); a run recorded before the CPU was (schema 4) by its model string
    /// and host name.
    pub fn host_label(&self) -> String {
        match &self.cpu {
            Some(cpu) => cpu.label(),
            None => format!("{} on {}", self.cpu_model, self.host),
        }
    }

    /// Warnings about settings that make numbers noisy or unrepresentative.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.hypervisor {
            w.push("running in a VM (hypervisor flag): expect noise from the host".to_owned());
        }
        if self.governor != "performance" && self.governor != "unavailable" {
            w.push(format!("CPU governor is {:?}; set `performance` for stable numbers", self.governor));
        }
        if self.turbo == "on" {
            w.push("turbo/boost is on: clock speed varies with load and temperature".to_owned());
        }
        w.extend(self.strategy_facts.iter().filter_map(|f| f.warning.clone()));
        w
    }

    /// The `harness env` report.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let counters = match &self.counters {
            Some(c) if c.available => "hardware (cycles, instructions, branch/L1d/LLC misses)".to_owned(),
            Some(c) => format!("{:?}: {}", c.kind, c.reason.as_deref().unwrap_or("")),
            None => "not probed".to_owned(),
        };
        for (k, v) in [
            ("host", self.host.clone()),
            ("cpu", self.cpu.as_ref().map_or_else(|| "not recorded".to_owned(), CpuIdentity::describe)),
            ("cpu model string", self.cpu_model.clone()),
            ("affinity cpus", format!("{:?}", self.cpus)),
            ("online cpus", self.online_cpus.to_string()),
            ("kernel", self.kernel.clone()),
            ("hypervisor", self.hypervisor.to_string()),
            ("governor", self.governor.clone()),
            ("turbo/boost", self.turbo.clone()),
            ("smt", self.smt.clone()),
            ("perf_event_paranoid", self.perf_event_paranoid.clone()),
            ("aslr", self.aslr.clone()),
            ("nmi_watchdog", self.nmi_watchdog.clone()),
            ("rustc", self.rustc.clone()),
            ("git commit", self.git_commit.clone()),
            ("counters", counters),
        ] {
            s.push_str(&format!("{k:<20} {v}\n"));
        }
        for f in &self.strategy_facts {
            s.push_str(&format!("{:<20} {}\n", format!("{} {}", f.strategy, f.what), f.value));
        }
        for w in self.warnings() {
            s.push_str(&format!("warning: {w}\n"));
        }
        s
    }
}

/// A fixed environment for tests: an AMD Zen 4 guest named `test-host`. No test may take its
/// verdict from the machine it runs on, so tests build the environments they compare.
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    pub(crate) fn env() -> Env {
        Env {
            host: "test-host".into(),
            cpu_model: "AMD EPYC".into(),
            cpu: Some(crate::cpu::test_support::zen4()),
            cpus: vec![0, 1],
            online_cpus: 2,
            kernel: "6.18.0".into(),
            hypervisor: true,
            governor: "unavailable".into(),
            turbo: "unavailable".into(),
            smt: "off".into(),
            perf_event_paranoid: "2".into(),
            aslr: "2".into(),
            nmi_watchdog: "0".into(),
            rustc: "rustc 1.95.0".into(),
            git_commit: "0000000".into(),
            counters: None,
            strategy_facts: vec![StrategyFact {
                strategy: "percpu".into(),
                what: "cpu id".into(),
                value: "rseq".into(),
                warning: None,
            }],
        }
    }
}
