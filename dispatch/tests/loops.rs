//! The generated loops call what they claim: for every strategy of the registry, each site's
//! own call instruction reaches that site's current target as `check::resolve` says, in the
//! per-site loops of every size, the shared loop and the cold one.

use dispatch::check::{self, code};
use dispatch::loops::{self, COLD_ORDER, COLD_SITES, MAX_PER_SITE, PER_SITE_SIZES};
use dispatch::strategy::Consistency;
use dispatch::{Code, FuncSpec, PatchSpec, Patcher, PatcherConfig, Progress, SiteId, Strategy, Task};
use seq_macro::seq;

/// A patcher of `sites` sites with a patch on every third site enabled and settled, its task, and
/// what each site must run now.
fn patched<S: Strategy>(sites: usize) -> (Patcher<S>, Task<S>, Vec<Code>) {
    let originals: Vec<Code> = (0..sites).map(code).collect();
    let p = Patcher::<S>::new(&originals, PatcherConfig::default());
    let task = p.register().unwrap();
    let spec = PatchSpec::new("p", (0..sites).step_by(3).map(|i| FuncSpec::new(SiteId(i as u32), code(i + 517))));
    let id = p.load(spec.clone()).unwrap();
    p.enable(id).unwrap();
    while !matches!(p.try_complete(), Progress::Done(_) | Progress::NoTransition) {
        task.safe_point().unwrap();
    }
    let expected = match S::INFO.consistency {
        // `direct` is not patchable: every site runs its original.
        Consistency::NotPatchable => originals,
        _ => check::resolve(&originals, &[&spec]),
    };
    (p, task, expected)
}

fn per_site<S: Strategy>() {
    if dispatch::strategy::skip_if_unavailable(&S::INFO) {
        return;
    }
    let (_p, mut task, expected) = patched::<S>(MAX_PER_SITE);
    let name = S::INFO.name;
    seq!(I in 0..64 {
        assert_eq!(task.call_at::<I>(0), expected[I](0), "{name}: call_at::<{}> reached another target", I);
    });
    for n in 0..=MAX_PER_SITE + 1 {
        let Some(per_site) = loops::per_site_fn::<S>(n) else {
            assert!(!PER_SITE_SIZES.contains(&n), "{name}: no per-site loop of {n} sites, a size it lists");
            continue;
        };
        assert!(PER_SITE_SIZES.contains(&n), "{name}: a per-site loop of {n} sites, a size it does not list");
        let one_round = check::signature(&expected[..n], 0);
        assert_eq!(per_site(&mut task, 3), one_round.wrapping_mul(3), "{name}: the per-site loop of {n} sites");
    }
    assert_eq!(PER_SITE_SIZES.last(), Some(&MAX_PER_SITE));
    let order: Vec<SiteId> = (0..MAX_PER_SITE).rev().map(|i| SiteId(i as u32)).collect();
    assert_eq!(loops::shared(&mut task, &order), check::signature(&expected, 0), "{name}: the shared loop");
}

fn cold<S: Strategy>() {
    if dispatch::strategy::skip_if_unavailable(&S::INFO) {
        return;
    }
    // Unoptimized, each of the cold loop's inlined read paths keeps its own stack slots: 128
    // per chunk overflowed a test thread's default 2 MiB stack (epoch's chunks the first).
    let run = || {
        let (_p, mut task, expected) = patched::<S>(COLD_SITES);
        let in_order: Vec<Code> = COLD_ORDER.iter().map(|&s| expected[s as usize]).collect();
        assert_eq!(loops::cold(&mut task, 1), check::signature(&in_order, 0), "{}: the cold loop", S::INFO.name);
    };
    let big = std::thread::Builder::new().stack_size(512 << 20).spawn(run).expect("a thread");
    if let Err(panic) = big.join() {
        std::panic::resume_unwind(panic);
    }
}

macro_rules! per_strategy {
    ($($name:ident : $ty:path),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn per_site_and_shared_loops() {
                    super::per_site::<$ty>();
                }

                #[test]
                fn cold_loop() {
                    super::cold::<$ty>();
                }
            }
        )*
    };
}

dispatch::for_each_strategy!(per_strategy);
