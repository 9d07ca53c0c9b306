//! Faults: a task that never reaches a safe point, a reader that panics mid-section, a task
//! dropped while a transition waits for it, a patcher dropped mid-transition. Nothing may hang,
//! lose a task, or touch freed memory.

use std::time::{Duration, Instant};

use dispatch::check::{code, fingerprint};
use dispatch::strategy::Consistency;
use dispatch::strategy::klp::Klp;
use dispatch::torture::{self, Config};
use dispatch::{Error, FuncSpec, PatchSpec, PatchState, Patcher, PatcherConfig, Progress, SiteId, Strategy};

const S0: SiteId = SiteId(0);

fn patcher<S: Strategy>() -> Patcher<S> {
    Patcher::new(&[code(0), code(1)], PatcherConfig::default())
}

/// A task asleep inside a patched function (the kernel's -EADDRINUSE stack check) never
/// reaches a safe point the transition can use: the wait times out with a typed error, and
/// `reverse` and `force` each resolve it.
fn stuck_task<S: Strategy>() {
    if dispatch::strategy::skip_if_unavailable(&S::INFO) {
        return;
    }
    for resolve in ["reverse", "force"] {
        let p = patcher::<S>();
        let stuck = p.register().unwrap();
        stuck.park_in(S0).unwrap();
        let patch = p.load(PatchSpec::new("p", [FuncSpec::new(S0, code(10))])).unwrap();
        assert!(matches!(p.enable(patch).unwrap(), Progress::Migrating { pending: 1 }));
        let err = p.wait(Duration::from_millis(30)).unwrap_err();
        assert!(matches!(err, Error::Timeout { pending: 1, .. }), "{err:?}");
        assert_eq!((stuck.patch_state(), p.in_transition()), (PatchState::Unpatched, Some(patch)));
        let stats = match resolve {
            "reverse" => {
                p.reverse().unwrap();
                p.wait(Duration::from_secs(10)).unwrap()
            }
            _ => {
                p.force().unwrap();
                p.wait(Duration::from_secs(10)).unwrap()
            }
        };
        if resolve == "reverse" {
            // Back to where it started: the patch is not enabled, nothing was forced.
            assert_eq!((stats.target, stats.reversals, stats.forced), (PatchState::Unpatched, 1, false));
            assert!(p.enabled().is_empty());
            assert!(!p.is_forced(patch).unwrap());
        } else {
            // Forward, by force, recorded as such; the patch's code is pinned for ever.
            assert_eq!((stats.target, stats.forced, stats.migrated_by_force), (PatchState::Patched, true, 1));
            assert_eq!(p.enabled(), vec![patch]);
            assert!(p.is_forced(patch).unwrap());
        }
        stuck.unpark().unwrap();
        let expected = match (S::INFO.consistency, resolve) {
            // `direct` ignores patches: site 0 runs its original.
            (Consistency::NotPatchable, _) | (_, "reverse") => fingerprint(0),
            _ => fingerprint(10),
        };
        assert_eq!(stuck.call(S0, 0), expected);
    }
}

/// A task parked inside a site the transition does not touch is migrated as usual.
fn parked_elsewhere_is_migrated<S: Strategy>() {
    if dispatch::strategy::skip_if_unavailable(&S::INFO) {
        return;
    }
    let p = patcher::<S>();
    let t = p.register().unwrap();
    t.park_in(SiteId(1)).unwrap();
    let patch = p.load(PatchSpec::new("p", [FuncSpec::new(S0, code(10))])).unwrap();
    p.enable(patch).unwrap();
    let stats = p.wait(Duration::from_secs(10)).unwrap();
    assert_eq!(stats.migrated_while_parked, 1);
    t.unpark().unwrap();
}

/// A task that exits while a transition waits for it stops blocking it at once.
fn dropped_task_stops_blocking<S: Strategy>() {
    if dispatch::strategy::skip_if_unavailable(&S::INFO) {
        return;
    }
    let p = patcher::<S>();
    let t = p.register().unwrap();
    let patch = p.load(PatchSpec::new("p", [FuncSpec::new(S0, code(10))])).unwrap();
    assert!(matches!(p.enable(patch).unwrap(), Progress::Migrating { pending: 1 }));
    assert!(matches!(p.try_complete(), Progress::Migrating { pending: 1 }));
    drop(t);
    assert!(matches!(p.try_complete(), Progress::Done(_)));
}

/// A task that exits while parked frees its slot and stops blocking, too.
fn dropped_parked_task_frees_its_slot<S: Strategy>() {
    if dispatch::strategy::skip_if_unavailable(&S::INFO) {
        return;
    }
    let p = Patcher::<S>::new(&[code(0), code(1)], PatcherConfig { capacity: 1, ..Default::default() });
    let t = p.register().unwrap();
    t.park_in(S0).unwrap();
    let patch = p.load(PatchSpec::new("p", [FuncSpec::new(S0, code(10))])).unwrap();
    assert!(matches!(p.enable(patch).unwrap(), Progress::Migrating { pending: 1 }));
    drop(t);
    assert!(matches!(p.try_complete(), Progress::Done(_)));
    // The only slot is free again.
    assert!(p.register().is_ok());
}

/// The patcher dropped mid-transition: tasks keep a consistent, valid view (the shared state
/// lives until the last task goes), and everything is freed then (tests/leak.rs counts it).
fn patcher_dropped_mid_transition<S: Strategy>() {
    if dispatch::strategy::skip_if_unavailable(&S::INFO) {
        return;
    }
    let p = patcher::<S>();
    let t = p.register().unwrap();
    let patch = p.load(PatchSpec::new("p", [FuncSpec::new(S0, code(10))])).unwrap();
    p.enable(patch).unwrap();
    let before = t.call(S0, 0);
    drop(p);
    // Until its safe point the task stays in its universe; then it migrates, as it would have.
    assert_eq!(t.call(S0, 0), before);
    t.safe_point().unwrap();
    let after = t.call(S0, 0);
    assert!([before, fingerprint(10)].contains(&after), "{}: {after:#x}", S::INFO.name);
    assert_eq!(t.patch_state(), PatchState::Patched);
    t.safe_point().unwrap();
    assert_eq!(t.call(S0, 0), after);
}

macro_rules! per_strategy {
    ($($name:ident : $ty:path),* $(,)?) => {$(
        mod $name {
            #[test]
            fn stuck_task_times_out_and_reverse_or_force_resolve_it() {
                super::stuck_task::<$ty>();
            }
            #[test]
            fn parked_elsewhere_is_migrated() {
                super::parked_elsewhere_is_migrated::<$ty>();
            }
            #[test]
            fn dropped_task_stops_blocking() {
                super::dropped_task_stops_blocking::<$ty>();
            }
            #[test]
            fn dropped_parked_task_frees_its_slot() {
                super::dropped_parked_task_frees_its_slot::<$ty>();
            }
            #[test]
            fn patcher_dropped_mid_transition() {
                super::patcher_dropped_mid_transition::<$ty>();
            }
        }
    )*};
}

dispatch::for_each_strategy!(per_strategy);

/// A reader that panics in the middle of a critical section fails the stress run fast: its task
/// is dropped while unwinding, so the writer is never left waiting for it.
#[test]
fn a_reader_panicking_mid_section_fails_fast() {
    let start = Instant::now();
    let cfg =
        Config { transitions: 1_000_000, panic_at: Some(50), time_limit: Duration::from_secs(60), ..Config::default() };
    let result = std::panic::catch_unwind(|| torture::run::<Klp>(&cfg, |_| {}));
    assert!(result.is_err(), "the panic must reach the caller");
    // Far less than the time limit: the other readers and the writer stopped on their own.
    assert!(start.elapsed() < Duration::from_secs(30), "took {:?}", start.elapsed());
}
