//! The writer wakes when the work is done: a transition's last safe point (or its grace period's
//! last quiescent state) comes late on purpose, and the writer's recorded end follows it within
//! [`BOUND`], although the writer's own timer would have slept [`NAP`].
//!
//! The bound is generous on purpose, so that the verdict does not depend on the machine: the
//! writer is woken at the event, and then needs a CPU. On a loaded 2-vCPU VM (two compilers
//! beside the test) a woken thread can wait for one a scheduler slice or a few, which is
//! milliseconds; 50 ms is far above that and far below the 10 s the writer sleeps if nothing wakes
//! it (remove `self.doorbell.ring()` from `Tasks::safe_point` and both tests fail).

use std::sync::Barrier;
use std::time::{Duration, Instant};

use dispatch::check::code;
use dispatch::strategy::klp::Klp;
use dispatch::{FuncSpec, PatchSpec, Patcher, PatcherConfig, Progress, SiteId, Task, TransitionStats, Waiting};

/// How late the last event comes.
const LATE: Duration = Duration::from_millis(200);
/// How soon after it the writer must record the transition's end.
const BOUND: Duration = Duration::from_millis(50);
/// How long the writer sleeps when nothing wakes it.
const NAP: Duration = Duration::from_secs(10);

/// Enables a patch while one task runs; `reader` drives the task's safe points on its own thread
/// and returns when its late event began; the task then keeps passing safe points until the
/// transition is over. Returns the transition and that time.
fn late_transition(reader: impl FnOnce(&Patcher<Klp>, &Task<Klp>) -> Instant + Send) -> (TransitionStats, Instant) {
    let p = Patcher::<Klp>::new(&[code(0)], PatcherConfig::default());
    let patch = p.load(PatchSpec::new("p", [FuncSpec::new(SiteId(0), code(1))])).unwrap();
    // Twice: the task is registered (on its own thread, which owns it) before the transition
    // starts, so that it must migrate; and it waits for the start.
    let started = Barrier::new(2);
    std::thread::scope(|s| {
        let (p, started) = (&p, &started);
        let reader = s.spawn(move || {
            let task = p.register().unwrap();
            started.wait();
            started.wait();
            let event = reader(p, &task);
            // Keep running (and passing safe points) until the writer is done, as a reader
            // thread does: only the doorbell tells the writer about these safe points.
            while p.in_transition().is_some() {
                task.safe_point().unwrap();
                std::thread::yield_now();
            }
            event
        });
        started.wait();
        assert!(matches!(p.enable(patch).unwrap(), Progress::Migrating { pending: 1 }));
        started.wait();
        let waiting = Waiting { spin: Duration::from_micros(20), nap: NAP };
        let progress = p.wait_with(waiting, |waited| waited > 3 * NAP);
        let Progress::Done(stats) = progress else { panic!("not completed: {progress:?}") };
        (stats, reader.join().unwrap())
    })
}

fn check_end_follows(stats: &TransitionStats, event: Instant) {
    let ended = stats.ended.expect("completed");
    assert!(ended >= event, "the transition ended before the event it waited for");
    let after = ended - event;
    assert!(after <= BOUND, "the writer saw the end {after:?} after the event (bound {BOUND:?}): {stats:?}");
    // The phases account for the whole transition, and put the wait on the tasks, not on the writer.
    assert_eq!(stats.phases.total(), stats.duration().unwrap(), "{:?}", stats.phases);
    assert!(stats.phases.notice <= BOUND, "{:?}", stats.phases);
}

/// The task's migrating safe point comes late: the migration phase holds the wait.
#[test]
fn the_writer_wakes_at_a_late_last_safe_point() {
    let (stats, event) = late_transition(|_, task| {
        std::thread::sleep(LATE);
        let event = Instant::now();
        task.safe_point().unwrap();
        event
    });
    check_end_follows(&stats, event);
    assert!(stats.phases.migrate >= LATE, "{:?}", stats.phases);
}

/// The task migrates at once, but its quiescent state in the final grace period comes late: the
/// grace-period phase holds the wait.
#[test]
fn the_writer_wakes_at_a_late_quiescent_state() {
    let (stats, event) = late_transition(|p, task| {
        task.safe_point().unwrap();
        // The writer starts the final grace period once it sees the migration. Wait for that, so
        // that the late safe point below is the one that ends it.
        loop {
            match p.try_complete() {
                Progress::Settling => break,
                Progress::Migrating { .. } => std::thread::yield_now(),
                other => panic!("the grace period ended before the late safe point: {other:?}"),
            }
        }
        std::thread::sleep(LATE);
        let event = Instant::now();
        task.safe_point().unwrap();
        event
    });
    check_end_follows(&stats, event);
    assert!(stats.phases.grace >= LATE - BOUND, "{:?}", stats.phases);
}
