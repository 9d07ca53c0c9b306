//! Consistency stress, generic over every strategy in the registry (arc-swap's `tests/stress.rs`
//! pattern), on the engine in `dispatch::torture`: per-task-consistent strategies must show 0
//! violations, 0 uses after reclaim, no Idle-in-transition and every transition completed;
//! `fnptr` must show violations, which proves that the checker can fail.
//!
//! `_small` runs by default; `_large` (`cargo test --release -- --ignored`) runs 10x longer.

use dispatch::Strategy;
use dispatch::strategy::Consistency;
use dispatch::torture::{self, Config};

/// The stress tests run one at a time: on 2 CPUs, three of them at once starve each other's
/// readers, and transitions then complete while every reader sleeps (arc-swap serializes its
/// threaded tests the same way).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn check_strategy<S: Strategy>(transitions: u64) {
    if dispatch::strategy::skip_if_unavailable(&S::INFO) {
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let name = S::INFO.name;
    match S::INFO.consistency {
        Consistency::PerTask => {
            let r = torture::run::<S>(&Config { transitions, spawn_every: 64, ..Config::default() }, |_| {});
            eprintln!("{name}: {r:?}");
            assert_eq!(r.transitions, transitions, "{name}: not every transition completed");
            assert_eq!(r.violations, 0, "{name}: consistency violations");
            assert_eq!(r.poison_hits, 0, "{name}: use after reclaim");
            assert_eq!(r.idle_in_transition, 0, "{name}: transition seen while Idle");
            assert_eq!(r.inheritance_errors, 0, "{name}: a child did not inherit its parent's state");
            assert!(r.children > 0, "{name}: no child task was spawned");
            assert!(r.critical_sections > transitions, "{name}: readers barely ran");
            assert!(r.migrated_at_safe_point > 0, "{name}: no task migrated at a safe point");
        }
        Consistency::Immediate => {
            let r = torture::run::<S>(
                &Config { transitions: u64::MAX, until_violation: true, ..Config::default() },
                |_| {},
            );
            eprintln!("{name}: {r:?}");
            assert!(r.violations > 0, "{name}: the checker found no violation: it cannot fail");
        }
        // `direct` is not patchable: there is no universe to check.
        Consistency::NotPatchable => {}
    }
}

macro_rules! per_strategy {
    ($($name:ident : $ty:path),* $(,)?) => {$(
        mod $name {
            #[test]
            fn stress_small() {
                super::check_strategy::<$ty>(300);
            }
            #[test]
            #[ignore = "long: run with --release -- --ignored"]
            fn stress_large() {
                super::check_strategy::<$ty>(3000);
            }
        }
    )*};
}

dispatch::for_each_strategy!(per_strategy);
