//! `textpoke` with a task inside the old code when its call instruction is re-pointed: the
//! transition starts (every call of the site now goes to the slow path) while the task is still
//! running the original it called a moment before. Returning from it must land where the call
//! left off, and the rest of that critical section must still see the old universe, because the
//! task migrates only at its next safe point.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use dispatch::check::{code, fingerprint};
use dispatch::strategy::textpoke::Textpoke;
use dispatch::{FuncSpec, PatchSpec, PatchState, Patcher, PatcherConfig, Progress, SiteId, Strategy};

/// Where the task is in `site0_original`: 0 not yet inside, 1 inside, 2 told to return.
static INSIDE: AtomicU8 = AtomicU8::new(0);

/// What the original of site 0 returns.
const OLD0: u64 = 0x01d0;

/// Site 0's original: the first call waits inside it until the test says to return.
extern "C" fn site0_original(_arg: u64) -> u64 {
    // Release/Acquire: the test's thread and this one hand the turn back and forth.
    if INSIDE.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire).is_ok() {
        let t0 = Instant::now();
        while INSIDE.load(Ordering::Acquire) != 2 {
            assert!(t0.elapsed() < Duration::from_secs(60), "the test never let the task return");
            std::thread::yield_now();
        }
    }
    OLD0
}

#[test]
fn a_task_inside_the_old_code_stays_in_the_old_universe() {
    if let Err(why) = Textpoke::INFO.availability() {
        eprintln!("textpoke: skipped: {why}");
        return;
    }
    let p = Patcher::<Textpoke>::new(&[site0_original, code(1)], PatcherConfig::default());
    let patch =
        p.load(PatchSpec::new("p", [FuncSpec::new(SiteId(0), code(10)), FuncSpec::new(SiteId(1), code(11))])).unwrap();
    let seen = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut task = p.register().unwrap();
            let (first, rest) = {
                let section = task.enter();
                // Enters the original and waits there while the writer starts the transition.
                let first = section.call_at::<0>(0);
                (first, [section.call_at::<1>(0), section.call_at::<0>(0), section.call(SiteId(1), 0)])
            };
            let state_in_section = task.patch_state();
            task.safe_point().unwrap();
            let after = [task.call_at::<0>(0), task.call_at::<1>(0)];
            (first, rest, state_in_section, after, task.patch_state())
        });
        while INSIDE.load(Ordering::Acquire) != 1 {
            std::thread::yield_now();
        }
        // Every call of sites 0 and 1 is re-pointed at the slow path and every core serialized
        // while the task runs inside site 0's original; then the task is told to migrate.
        assert!(matches!(p.enable(patch).unwrap(), Progress::Migrating { pending: 1 }));
        INSIDE.store(2, Ordering::Release);
        reader.join().unwrap()
    });
    let (first, rest, state_in_section, after, state_after) = seen;
    assert_eq!(first, OLD0, "the call returned to its call site with the old code's result");
    assert_eq!(rest, [fingerprint(1), OLD0, fingerprint(1)], "the section stayed in the old universe");
    assert_eq!(state_in_section, PatchState::Unpatched);
    assert_eq!(after, [fingerprint(10), fingerprint(11)], "after its safe point the task runs the patch");
    assert_eq!(state_after, PatchState::Patched);
    assert!(p.wait(Duration::from_secs(10)).is_ok(), "the transition completes");
}
