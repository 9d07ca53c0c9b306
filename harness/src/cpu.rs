//! The CPU by what it is: vendor, family, model, stepping, microarchitecture, caches, clocks and
//! topology, read from the CPU itself (cpuid, through `raw-cpuid`) and from the kernel only where
//! cpuid has no answer (the microcode revision, cpufreq's clocks, SMT and NUMA from sysfs).
//!
//! A VM's model string does not say which CPU it is: guests on an AMD Zen 3, Zen 4 and Zen 5 all
//! call themselves "AMD EPYC", and Intel guests from Skylake to Emerald Rapids "Intel(R) Xeon(R)
//! Processor". Their figures differ for real (a locked RMW, the indirect-branch predictor), so a
//! run names its CPU by family, model and stepping, which the hypervisor passes through, and
//! `harness compare` keys on them.

use std::fmt::Write;
use std::fs;

use serde::{Deserialize, Serialize};

/// What the CPU is. Every field that the machine does not report is `None`, shown as "unknown"
/// (normal in a VM for clocks, and off x86 for everything cpuid answers).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct CpuIdentity {
    /// "AMD", "Intel", or cpuid's vendor string as it is (e.g. "HygonGenuine"); "unknown" off x86.
    pub vendor: String,
    /// The displayed family (base family plus extended family where the vendor adds it), as
    /// `/proc/cpuinfo`'s "cpu family" shows it: 25 for AMD Zen 3 and 4, 6 for Intel's cores.
    pub family: Option<u32>,
    /// The displayed model (extended model in the high nibble where the vendor uses it).
    pub model: Option<u32>,
    pub stepping: Option<u32>,
    /// The microcode revision as the kernel reports it (cpuid cannot read it from user space).
    pub microcode: Option<String>,
    /// The microarchitecture's name where family and model are in [`microarchitecture`]'s table,
    /// else "unknown".
    pub microarchitecture: String,
    pub l1i_kib: Option<u32>,
    pub l1d_kib: Option<u32>,
    pub l2_kib: Option<u32>,
    /// The L3 slice a core sees (per CCX on AMD), not the package's sum.
    pub l3_kib: Option<u32>,
    /// Nominal clock, MHz (cpuid leaf 0x16, else cpufreq's `base_frequency`).
    pub base_mhz: Option<u32>,
    /// Maximum clock, MHz (cpuid leaf 0x16, else cpufreq's `cpuinfo_max_freq`).
    pub max_mhz: Option<u32>,
    /// Online logical CPUs.
    pub cpus: usize,
    /// Logical CPUs per core (2 with SMT on), from CPU 0's thread siblings.
    pub threads_per_core: Option<u32>,
    pub numa_nodes: Option<u32>,
}

impl CpuIdentity {
    /// This machine's CPU.
    pub fn capture() -> Self {
        let mut cpu = from_cpuid();
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        cpu.microcode = cpuinfo_field(&cpuinfo, "microcode");
        let cache = |index: u32| sysfs_cache_kib(index);
        // cpuid leaf 4 (0x8000_001D on AMD) may be hidden by a hypervisor; sysfs knows the
        // caches from the same leaves or from firmware tables.
        if cpu.l1d_kib.is_none() && cpu.l1i_kib.is_none() && cpu.l2_kib.is_none() && cpu.l3_kib.is_none() {
            for index in 0..8 {
                match cache(index) {
                    Some(((1, "Data"), kib)) => cpu.l1d_kib = Some(kib),
                    Some(((1, "Instruction"), kib)) => cpu.l1i_kib = Some(kib),
                    Some(((2, _), kib)) => cpu.l2_kib = Some(kib),
                    Some(((3, _), kib)) => cpu.l3_kib = Some(kib),
                    _ => {}
                }
            }
        }
        let khz_to_mhz = |path: &str| read_trimmed(path).and_then(|v| v.parse::<u32>().ok()).map(|khz| khz / 1000);
        cpu.base_mhz = cpu.base_mhz.or_else(|| khz_to_mhz("/sys/devices/system/cpu/cpu0/cpufreq/base_frequency"));
        cpu.max_mhz = cpu.max_mhz.or_else(|| khz_to_mhz("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq"));
        cpu.cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
        if let Some(online) = read_trimmed("/sys/devices/system/cpu/online").and_then(|l| cpu_list_len(&l)) {
            cpu.cpus = online;
        }
        cpu.threads_per_core = read_trimmed("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list")
            .and_then(|l| cpu_list_len(&l))
            .map(|n| n as u32);
        cpu.numa_nodes = fs::read_dir("/sys/devices/system/node").ok().map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|e| {
                    let name = e.file_name();
                    let name = name.to_string_lossy();
                    name.strip_prefix("node").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                })
                .count() as u32
        });
        cpu
    }

    /// How a run of this CPU is labelled wherever runs of several hosts meet: "AMD Zen 4
    /// (25/17/1), 2 CPUs" (family/model/stepping in decimal, as `/proc/cpuinfo` shows them).
    pub fn label(&self) -> String {
        let fms = match (self.family, self.model, self.stepping) {
            (Some(f), Some(m), Some(s)) => format!(" ({f}/{m}/{s})"),
            _ => String::new(),
        };
        let arch =
            if self.microarchitecture == UNKNOWN { "(microarchitecture unknown)" } else { &self.microarchitecture };
        format!("{} {arch}{fms}, {} CPUs", self.vendor, self.cpus)
    }

    /// The CPU in one line for `harness env` and report.md's header: the label's identity, the
    /// microcode, caches, clocks and topology, "unknown" where the machine does not say.
    pub fn describe(&self) -> String {
        let kib = |v: Option<u32>| v.map_or_else(|| UNKNOWN.to_owned(), |k| format!("{k} KiB"));
        let mhz = |v: Option<u32>| v.map_or_else(|| UNKNOWN.to_owned(), |m| format!("{m} MHz"));
        let num = |v: Option<u32>| v.map_or_else(|| UNKNOWN.to_owned(), |n| n.to_string());
        let mut s = self.label();
        write!(
            s,
            "; microcode {}; L1i {}, L1d {}, L2 {}, L3 {}; clock nominal {}, max {}; {} thread(s) per core, {} NUMA \
             node(s)",
            self.microcode.as_deref().unwrap_or(UNKNOWN),
            kib(self.l1i_kib),
            kib(self.l1d_kib),
            kib(self.l2_kib),
            kib(self.l3_kib),
            mhz(self.base_mhz),
            mhz(self.max_mhz),
            num(self.threads_per_core),
            num(self.numa_nodes),
        )
        .unwrap();
        s
    }

    /// The fields that make two CPUs different hosts for `harness compare`, by name, with their
    /// values shown.
    pub fn identity(&self) -> [(&'static str, String); 4] {
        let num = |v: Option<u32>| v.map_or_else(|| UNKNOWN.to_owned(), |n| n.to_string());
        [
            ("CPU vendor", self.vendor.clone()),
            ("CPU family", num(self.family)),
            ("CPU model", num(self.model)),
            ("CPU stepping", num(self.stepping)),
        ]
    }
}

pub const UNKNOWN: &str = "unknown";

/// The microarchitecture of a (vendor, family, model, stepping), or "unknown". Server parts first,
/// then the common client cores; the model numbers are the vendors' (AMD's revision guides,
/// Intel's SDM table of DisplayFamily_DisplayModel), in the decimal that `/proc/cpuinfo` shows.
pub fn microarchitecture(vendor: &str, family: u32, model: u32, stepping: u32) -> &'static str {
    match (vendor, family) {
        ("AMD", 0x17) => match model {
            0x08 | 0x18 => "Zen+",
            0x00..=0x2f => "Zen",
            _ => "Zen 2",
        },
        ("AMD", 0x19) => match model {
            0x10..=0x1f | 0x60..=0x7f | 0xa0..=0xaf => "Zen 4",
            0x40..=0x4f => "Zen 3+",
            0x00..=0x0f | 0x20..=0x3f | 0x50..=0x5f => "Zen 3",
            _ => UNKNOWN,
        },
        ("AMD", 0x1a) => match model {
            0x00..=0x4f | 0x60..=0x7f => "Zen 5",
            _ => UNKNOWN,
        },
        ("Intel", 6) => match model {
            // Skylake-SP, Cascade Lake and Cooper Lake share model 85; the stepping tells them apart.
            0x55 => match stepping {
                0..=4 => "Skylake-SP",
                5..=7 => "Cascade Lake",
                _ => "Cooper Lake",
            },
            0x6a | 0x6c => "Ice Lake-SP",
            0x8f => "Sapphire Rapids",
            0xcf => "Emerald Rapids",
            0xad | 0xae => "Granite Rapids",
            0xaf => "Sierra Forest",
            0x3c | 0x3f | 0x45 | 0x46 => "Haswell",
            0x3d | 0x47 | 0x4f | 0x56 => "Broadwell",
            0x4e | 0x5e => "Skylake",
            0x8e | 0x9e => "Kaby Lake / Coffee Lake",
            0xa5 | 0xa6 => "Comet Lake",
            0x7d | 0x7e => "Ice Lake",
            0x8c | 0x8d => "Tiger Lake",
            0xa7 => "Rocket Lake",
            0x97 | 0x9a => "Alder Lake",
            0xb7 | 0xba | 0xbf => "Raptor Lake",
            0xaa | 0xac => "Meteor Lake",
            0xbd => "Lunar Lake",
            0xc5 | 0xc6 => "Arrow Lake",
            _ => UNKNOWN,
        },
        _ => UNKNOWN,
    }
}

/// What cpuid answers: vendor, family/model/stepping, caches (leaf 4, or 0x8000_001D on AMD) and
/// clocks (leaf 0x16, Intel only, and often zero in a VM).
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn from_cpuid() -> CpuIdentity {
    use raw_cpuid::{CacheType, CpuId};
    let cpuid = CpuId::new();
    let vendor = cpuid.get_vendor_info().map_or_else(
        || UNKNOWN.to_owned(),
        |v| match v.as_str() {
            "AuthenticAMD" => "AMD".to_owned(),
            "GenuineIntel" => "Intel".to_owned(),
            other => other.to_owned(),
        },
    );
    let mut cpu = CpuIdentity { vendor, microarchitecture: UNKNOWN.to_owned(), ..Default::default() };
    if let Some(f) = cpuid.get_feature_info() {
        let (family, model, stepping) = (u32::from(f.family_id()), u32::from(f.model_id()), u32::from(f.stepping_id()));
        cpu.family = Some(family);
        cpu.model = Some(model);
        cpu.stepping = Some(stepping);
        cpu.microarchitecture = microarchitecture(&cpu.vendor, family, model, stepping).to_owned();
    }
    for cache in cpuid.get_cache_parameters().into_iter().flatten() {
        let bytes =
            cache.associativity() * cache.physical_line_partitions() * cache.coherency_line_size() * cache.sets();
        let kib = Some((bytes / 1024) as u32).filter(|&k| k > 0);
        match (cache.level(), cache.cache_type()) {
            (1, CacheType::Data) => cpu.l1d_kib = kib,
            (1, CacheType::Instruction) => cpu.l1i_kib = kib,
            (2, CacheType::Unified) => cpu.l2_kib = kib,
            (3, CacheType::Unified) => cpu.l3_kib = kib,
            _ => {}
        }
    }
    if let Some(f) = cpuid.get_processor_frequency_info() {
        cpu.base_mhz = Some(u32::from(f.processor_base_frequency())).filter(|&m| m > 0);
        cpu.max_mhz = Some(u32::from(f.processor_max_frequency())).filter(|&m| m > 0);
    }
    cpu
}

/// Off x86 there is no cpuid: the identity stays unknown, and the rest comes from the kernel.
#[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
fn from_cpuid() -> CpuIdentity {
    CpuIdentity { vendor: UNKNOWN.to_owned(), microarchitecture: UNKNOWN.to_owned(), ..Default::default() }
}

fn read_trimmed(path: &str) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// The first value of a `/proc/cpuinfo` field (`microcode : 0xa101148`, a tab before the colon).
pub fn cpuinfo_field(cpuinfo: &str, name: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.split(':').next().is_some_and(|k| k.trim() == name))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// One of CPU 0's caches in sysfs: ((level, type), size in KiB).
fn sysfs_cache_kib(index: u32) -> Option<((u32, &'static str), u32)> {
    let dir = format!("/sys/devices/system/cpu/cpu0/cache/index{index}");
    let level = read_trimmed(&format!("{dir}/level"))?.parse().ok()?;
    let kind = match read_trimmed(&format!("{dir}/type"))?.as_str() {
        "Data" => "Data",
        "Instruction" => "Instruction",
        _ => "Unified",
    };
    Some(((level, kind), parse_size_kib(&read_trimmed(&format!("{dir}/size"))?)?))
}

/// A sysfs cache size ("48K", "1024K", "32M") in KiB.
pub fn parse_size_kib(size: &str) -> Option<u32> {
    let size = size.trim();
    let (digits, unit) = size.split_at(size.find(|c: char| !c.is_ascii_digit()).unwrap_or(size.len()));
    let n: u32 = digits.parse().ok()?;
    match unit {
        "" => Some(n / 1024),
        "K" => Some(n),
        "M" => n.checked_mul(1024),
        _ => None,
    }
}

/// How many CPUs a kernel CPU list names ("0-3,8,10-11" is 7).
pub fn cpu_list_len(list: &str) -> Option<usize> {
    let mut n = 0;
    for part in list.trim().split(',') {
        n += match part.split_once('-') {
            Some((a, b)) => b.trim().parse::<usize>().ok()?.checked_sub(a.trim().parse::<usize>().ok()?)? + 1,
            None => {
                part.trim().parse::<usize>().ok()?;
                1
            }
        };
    }
    Some(n)
}

/// A fixed CPU for tests: no test may read the machine it runs on for its verdict.
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    /// An AMD Zen 4 guest (family 25, model 17, stepping 1) with 2 CPUs.
    pub(crate) fn zen4() -> CpuIdentity {
        CpuIdentity {
            vendor: "AMD".into(),
            family: Some(25),
            model: Some(17),
            stepping: Some(1),
            microcode: Some("0xa101148".into()),
            microarchitecture: "Zen 4".into(),
            l1i_kib: Some(32),
            l1d_kib: Some(32),
            l2_kib: Some(1024),
            l3_kib: Some(32768),
            base_mhz: None,
            max_mhz: None,
            cpus: 2,
            threads_per_core: Some(1),
            numa_nodes: Some(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_the_cpus_of_our_hosts_and_says_unknown_otherwise() {
        // The guests of issue 22, and the neighbours that share a model number.
        assert_eq!(microarchitecture("AMD", 25, 1, 1), "Zen 3");
        assert_eq!(microarchitecture("AMD", 25, 17, 1), "Zen 4");
        assert_eq!(microarchitecture("AMD", 25, 0x61, 2), "Zen 4");
        assert_eq!(microarchitecture("AMD", 26, 2, 0), "Zen 5");
        assert_eq!(microarchitecture("AMD", 23, 0x31, 0), "Zen 2");
        assert_eq!(microarchitecture("Intel", 6, 207, 2), "Emerald Rapids");
        assert_eq!(microarchitecture("Intel", 6, 143, 8), "Sapphire Rapids");
        assert_eq!(microarchitecture("Intel", 6, 85, 4), "Skylake-SP");
        assert_eq!(microarchitecture("Intel", 6, 85, 7), "Cascade Lake");
        assert_eq!(microarchitecture("Intel", 6, 85, 11), "Cooper Lake");
        assert_eq!(microarchitecture("Intel", 6, 0xad, 1), "Granite Rapids");
        // Not in the table: said, never guessed.
        assert_eq!(microarchitecture("AMD", 26, 0xf0, 0), UNKNOWN);
        assert_eq!(microarchitecture("Intel", 6, 1, 0), UNKNOWN);
        assert_eq!(microarchitecture("AMD", 6, 207, 2), UNKNOWN, "Intel's model numbers are not AMD's");
        assert_eq!(microarchitecture("HygonGenuine", 24, 0, 1), UNKNOWN);
    }

    #[test]
    fn the_label_names_the_cpu_by_what_it_is() {
        let zen4 = test_support::zen4();
        assert_eq!(zen4.label(), "AMD Zen 4 (25/17/1), 2 CPUs");
        let unknown = CpuIdentity { microarchitecture: UNKNOWN.into(), model: Some(240), ..zen4.clone() };
        assert_eq!(unknown.label(), "AMD (microarchitecture unknown) (25/240/1), 2 CPUs");
        let d = zen4.describe();
        assert!(
            d.starts_with("AMD Zen 4 (25/17/1), 2 CPUs; microcode 0xa101148; L1i 32 KiB, L1d 32 KiB, L2 1024 KiB")
                && d.contains("clock nominal unknown, max unknown"),
            "{d}"
        );
    }

    #[test]
    fn sysfs_and_cpuinfo_texts_parse() {
        assert_eq!(parse_size_kib("48K"), Some(48));
        assert_eq!(parse_size_kib("32M"), Some(32768));
        assert_eq!(parse_size_kib("1024"), Some(1));
        assert_eq!(parse_size_kib("12G"), None);
        assert_eq!(cpu_list_len("0-3,8,10-11"), Some(7));
        assert_eq!(cpu_list_len("0"), Some(1));
        assert_eq!(cpu_list_len("3-1"), None);
        assert_eq!(cpu_list_len("x"), None);
        let cpuinfo = "processor\t: 0\nmicrocode\t: 0xa101148\nmodel name\t: AMD EPYC\n";
        assert_eq!(cpuinfo_field(cpuinfo, "microcode").as_deref(), Some("0xa101148"));
        assert_eq!(cpuinfo_field(cpuinfo, "model"), None, "`model` is not `model name`");
    }

    /// A probe test: it reads this machine, and asserts only what holds on every machine.
    #[test]
    fn capture_fills_what_every_machine_has() {
        let cpu = CpuIdentity::capture();
        assert!(cpu.cpus >= 1, "{cpu:?}");
        assert!(!cpu.vendor.is_empty() && !cpu.microarchitecture.is_empty(), "{cpu:?}");
        if cfg!(any(target_arch = "x86", target_arch = "x86_64")) {
            assert!(cpu.family.is_some() && cpu.model.is_some() && cpu.stepping.is_some(), "cpuid leaf 1: {cpu:?}");
        }
    }
}
