//! loom model of the Patcher's phase ordering for a two-task transition (run by `scripts/loom`):
//! the whole engine under every interleaving loom explores, with `klp`, with `kgraft` (its fast
//! word and slow stub) and with the two strategies that keep a writer generation for a
//! whole critical section (`tls`, `percpu`).

#![cfg(loom)]

use dispatch::check::{code, fingerprint, poison_hits};
use dispatch::strategy::kgraft::Kgraft;
use dispatch::strategy::klp::Klp;
use dispatch::strategy::percpu::PerCpu;
use dispatch::strategy::tls::Tls;
use dispatch::{FuncSpec, PatchSpec, Patcher, PatcherConfig, Progress, SiteId, Strategy, Task};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};

/// The models' two sites: the patch covers both, and each critical section calls both.
const MODEL_SITES: [SiteId; 2] = [SiteId(0), SiteId(1)];

/// One critical section: both sites must come from one universe.
fn section<S: Strategy>(task: &mut Task<S>, old: u64, new: u64) {
    let section = task.enter();
    let sum = MODEL_SITES.iter().fold(0u64, |acc, &s| acc.wrapping_add(section.call(s, 0)));
    assert!(sum == old || sum == new, "mixed universes");
}

/// Two tasks run critical sections around a safe point while the patcher enables (or, with
/// `disable`, disables) a two-site patch and drives it to completion.
/// `preemptions` overrides `LOOM_MAX_PREEMPTIONS` for strategies whose read path has too many
/// atomics for the default bound of 2 to finish (the cache strategies' seqlock source: over 5
/// minutes per model with 2, a quarter of a second with 1).
fn two_task_transition<S: Strategy>(disable: bool, preemptions: Option<usize>) {
    let mut model = loom::model::Builder::new();
    if preemptions.is_some() {
        model.preemption_bound = preemptions;
    }
    // The engine's polling loop takes more branches than loom's default of 1,000 allows.
    model.max_branches = 100_000;
    model.check(move || {
        let p = Arc::new(Patcher::<S>::new(&[code(0), code(1)], PatcherConfig { capacity: 2, ..Default::default() }));
        let patch = p.load(PatchSpec::new("p", MODEL_SITES.map(|s| FuncSpec::new(s, code(10 + s.index()))))).unwrap();
        let (orig, patched) =
            (fingerprint(0).wrapping_add(fingerprint(1)), fingerprint(10).wrapping_add(fingerprint(11)));
        let (old, new) = if disable {
            p.enable(patch).unwrap();
            (patched, orig)
        } else {
            (orig, patched)
        };
        let registered = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..2)
            .map(|_| {
                let (p, registered) = (p.clone(), registered.clone());
                loom::thread::spawn(move || {
                    let mut task = p.register().unwrap();
                    registered.fetch_add(1, Ordering::Release);
                    section(&mut task, old, new);
                    task.safe_point().unwrap();
                    section(&mut task, old, new);
                    assert_eq!(task.idle_in_transition(), 0, "transition seen while Idle");
                    assert_eq!(poison_hits(), 0, "use after reclaim");
                    // Dropping the task takes it offline, which lets the transition finish.
                })
            })
            .collect();
        // Start once both tasks exist, so that both must migrate.
        while registered.load(Ordering::Acquire) < 2 {
            loom::thread::yield_now();
        }
        if disable { p.disable(patch) } else { p.enable(patch) }.unwrap();
        while !matches!(p.try_complete(), Progress::Done(_) | Progress::NoTransition) {
            loom::thread::yield_now();
        }
        for t in tasks {
            t.join().unwrap();
        }
        assert_eq!(p.enabled().is_empty(), disable);
    });
}

macro_rules! per_strategy {
    ($($name:ident: $ty:ty, $preemptions:expr);* $(;)?) => {
        $(
            mod $name {
                use super::*;

                #[test]
                fn enable_two_tasks() {
                    two_task_transition::<$ty>(false, $preemptions);
                }

                #[test]
                fn disable_two_tasks() {
                    two_task_transition::<$ty>(true, $preemptions);
                }
            }
        )*
    };
}

per_strategy!(klp: Klp, None; kgraft: Kgraft, None; tls: Tls, Some(1); percpu: PerCpu, Some(1));
