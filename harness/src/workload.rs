//! A scenario's workload: its sites, the order a critical section calls them in, and the patches
//! the writer applies.

use dispatch::check::{self, signature};
use dispatch::loops::COLD_ORDER;
use dispatch::rng::Rng;
use dispatch::{Code, FuncSpec, PatchSpec, SiteId};

use crate::config::{CallSites, Order, Scenario};

/// The sites, the order readers call them in, and the patches of a scenario.
#[derive(Debug)]
pub struct Workload {
    pub originals: Vec<Code>,
    /// One critical section: the sites it calls, in order (for the per-site and cold regimes,
    /// what their generated code calls; for the shared regime, what its loop walks).
    pub order: Vec<SiteId>,
    /// Enabled below (depth), then the top patch, then two cumulative replacements.
    pub base: Vec<PatchSpec>,
    pub top: PatchSpec,
    pub replacements: [PatchSpec; 2],
}

/// Where the top patch and the replacements sit in [`Workload::patches`].
#[derive(Clone, Copy, Debug)]
pub struct PatchIndexes {
    pub top: usize,
    pub replacements: [usize; 2],
}

/// The code of version `v` of `site` (0 = original): each version of a site its own function while
/// `site + 131 × v` stays below `check::CODE_COUNT` (4096), as it does for the cold regime's 2048
/// sites; with more sites, functions repeat.
fn version(site: usize, v: usize) -> Code {
    check::code(site + 131 * v)
}

impl Workload {
    pub fn new(s: &Scenario, seed: u64) -> Self {
        let originals: Vec<Code> = (0..s.sites).map(|i| version(i, 0)).collect();
        let mut rng = Rng::new(seed);
        let order = match s.call_sites {
            // What the generated loop calls, in its order.
            CallSites::Cold => COLD_ORDER.iter().map(|&i| SiteId(u32::from(i))).collect(),
            CallSites::PerSite | CallSites::Shared => (0..s.calls_per_safepoint)
                .map(|i| {
                    SiteId(match s.order {
                        Order::Seq => i % s.sites,
                        Order::Random => rng.below(s.sites),
                    } as u32)
                })
                .collect(),
        };
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

    /// Every patch, in the order a writer loads them: base, top, replacements.
    pub fn patches(&self) -> Vec<PatchSpec> {
        self.base.iter().chain([&self.top]).chain(self.replacements.iter()).cloned().collect()
    }

    pub fn indexes(&self) -> PatchIndexes {
        let top = self.base.len();
        PatchIndexes { top, replacements: [top + 1, top + 2] }
    }

    /// The signature of one critical section in the universe where `enabled` (oldest first) are
    /// enabled.
    pub fn signature(&self, enabled: &[&PatchSpec]) -> u64 {
        let codes = check::resolve(&self.originals, enabled);
        let per_call: Vec<Code> = self.order.iter().map(|s| codes[s.index()]).collect();
        signature(&per_call, 0)
    }
}
