//! The selection table (`dispatch::docs::Invariant::Selection`) for every strategy in the
//! registry: steady state, in transition as Patched and as Unpatched, Unpatched with and without
//! an older patch below, nop, immediate; plus fork inheritance and one deterministic interleaving that per-task
//! consistency must survive and `fnptr` must not.

use dispatch::check::{code, fingerprint};
use dispatch::strategy::Consistency;
use dispatch::{
    FuncSpec, PatchSpec, PatchState, Patcher, PatcherConfig, Progress, SiteId, Strategy, Task, TransitionStats,
};

const S0: SiteId = SiteId(0);
const S1: SiteId = SiteId(1);
const S2: SiteId = SiteId(2);

fn fp(n: u64) -> u64 {
    fingerprint(n)
}

/// Drives the transition in progress to completion from this one thread: every task passes a
/// safe point between polls, as running tasks would.
fn complete<S: Strategy>(p: &Patcher<S>, tasks: &[&Task<S>]) -> TransitionStats {
    for _ in 0..10 {
        if let Progress::Done(stats) = p.try_complete() {
            return stats;
        }
        for t in tasks {
            t.safe_point().unwrap();
        }
    }
    panic!("transition did not complete: {:?}", p.try_complete());
}

fn patcher<S: Strategy>() -> Patcher<S> {
    Patcher::new(&[code(0), code(1), code(2)], PatcherConfig::default())
}

fn selection_table<S: Strategy>() {
    if dispatch::strategy::skip_if_unavailable(&S::INFO) {
        return;
    }
    let p = patcher::<S>();
    let a = p.register().unwrap();
    let b = p.register().unwrap();
    if S::INFO.consistency == Consistency::NotPatchable {
        // `direct` ignores patches: every site calls its own original.
        let p1 = p.load(PatchSpec::new("p1", [FuncSpec::new(S0, code(10))])).unwrap();
        p.enable(p1).unwrap();
        complete(&p, &[&a, &b]);
        assert_eq!((a.call(S0, 0), a.call(S1, 0)), (fp(0), fp(1)));
        return;
    }
    let per_task = S::INFO.consistency == Consistency::PerTask;
    // What an Unpatched task sees: its own universe with per-task consistency, else the head.
    let unpatched = |own: u64, head: u64| if per_task { own } else { head };
    // Every expectation is also checked against the engine's own view of the stacks.
    let engine = |state: PatchState, site: SiteId| p.universe(state)[site.index()](0);

    // Steady state, no patch: the original.
    assert_eq!((a.call(S0, 0), a.call(S1, 0)), (fp(0), fp(1)));

    // Enable P1 while both tasks run: they start Unpatched and pending.
    let p1 = p.load(PatchSpec::new("p1", [FuncSpec::new(S0, code(10)), FuncSpec::new(S1, code(11))])).unwrap();
    assert!(matches!(p.enable(p1).unwrap(), Progress::Migrating { pending: 2 }));
    assert_eq!((a.patch_state(), a.is_pending()), (PatchState::Unpatched, true));
    // In transition as Unpatched, no older patch below: the original.
    assert_eq!(a.call(S0, 0), unpatched(fp(0), fp(10)));
    assert_eq!(engine(PatchState::Unpatched, S0), fp(0));
    a.safe_point().unwrap();
    // In transition as Patched: the new func.
    assert_eq!((a.patch_state(), a.is_pending()), (PatchState::Patched, false));
    assert_eq!(a.call(S0, 0), fp(10));
    assert_eq!(engine(PatchState::Patched, S0), fp(10));
    assert_eq!(b.call(S0, 0), unpatched(fp(0), fp(10)));
    b.safe_point().unwrap();
    let stats = complete(&p, &[&a, &b]);
    assert_eq!((stats.migrated_at_safe_point, stats.target), (2, PatchState::Patched));
    // Steady state with a patch: Idle tasks run the head.
    assert_eq!((a.patch_state(), b.patch_state()), (PatchState::Idle, PatchState::Idle));
    assert_eq!((a.call(S0, 0), a.call(S1, 0)), (fp(10), fp(11)));

    // Stack P2 on P1 at S0: Unpatched with an older patch below runs P1's func.
    let p2 = p.load(PatchSpec::new("p2", [FuncSpec::new(S0, code(20))])).unwrap();
    p.enable(p2).unwrap();
    assert_eq!(a.call(S0, 0), unpatched(fp(10), fp(20)));
    assert_eq!(engine(PatchState::Unpatched, S0), fp(10));
    a.safe_point().unwrap();
    assert_eq!(a.call(S0, 0), fp(20));
    complete(&p, &[&a, &b]);
    assert_eq!(p.enabled(), vec![p1, p2]);

    // Replace everything with R, which covers only S1: S0 gets a nop (runs the original).
    let r = p.load(PatchSpec::new("r", [FuncSpec::new(S1, code(30))])).unwrap();
    p.replace(r).unwrap();
    a.safe_point().unwrap();
    // As Patched: the nop runs the original at S0, R's func at S1.
    assert_eq!((a.call(S0, 0), a.call(S1, 0)), (fp(0), fp(30)));
    assert_eq!(engine(PatchState::Patched, S0), fp(0));
    // As Unpatched: the stacked universe before the replace.
    assert_eq!((b.call(S0, 0), b.call(S1, 0)), (unpatched(fp(20), fp(0)), unpatched(fp(11), fp(30))));
    complete(&p, &[&a, &b]);
    // The replaced patches and the nop are gone.
    assert_eq!(p.enabled(), vec![r]);
    assert_eq!((a.call(S0, 0), a.call(S1, 0)), (fp(0), fp(30)));

    // Disable R: tasks start Patched; one migrated to Unpatched sees the original.
    p.disable(r).unwrap();
    assert_eq!(a.patch_state(), PatchState::Patched);
    a.safe_point().unwrap();
    assert_eq!(a.patch_state(), PatchState::Unpatched);
    assert_eq!(a.call(S1, 0), unpatched(fp(1), fp(30)));
    assert_eq!(b.call(S1, 0), fp(30));
    complete(&p, &[&a, &b]);
    assert!(p.enabled().is_empty());
    assert_eq!((a.call(S0, 0), a.call(S1, 0)), (fp(0), fp(1)));

    // Immediate: S2's func reaches every task at once, even an Unpatched one, while S0's
    // (not immediate) follows the per-task rule.
    let i = p.load(PatchSpec::new("i", [FuncSpec::immediate(S2, code(40)), FuncSpec::new(S0, code(41))])).unwrap();
    p.enable(i).unwrap();
    assert_eq!(a.patch_state(), PatchState::Unpatched);
    assert_eq!((a.call(S2, 0), a.call(S0, 0)), (fp(40), unpatched(fp(0), fp(41))));
    complete(&p, &[&a, &b]);
    // A patch of immediate funcs only completes at once, with no task migrating.
    p.disable(i).unwrap();
    complete(&p, &[&a, &b]);
    let j = p.load(PatchSpec::new("j", [FuncSpec::immediate(S2, code(50))])).unwrap();
    assert!(!matches!(p.enable(j).unwrap(), Progress::Migrating { .. }));
    assert_eq!(a.patch_state(), PatchState::Idle);
    assert_eq!(a.call(S2, 0), fp(50));
    assert_eq!(a.idle_in_transition() + b.idle_in_transition(), 0);
}

/// A child task starts in its parent's state with its parent's pending flag
/// (`dispatch::docs::Invariant::Inheritance`).
fn inheritance<S: Strategy>() {
    if dispatch::strategy::skip_if_unavailable(&S::INFO) {
        return;
    }
    let p = patcher::<S>();
    let parent = p.register().unwrap();
    let p1 = p.load(PatchSpec::new("p1", [FuncSpec::new(S0, code(10))])).unwrap();
    p.enable(p1).unwrap();
    let child = parent.spawn_child().unwrap();
    assert_eq!((child.patch_state(), child.is_pending()), (PatchState::Unpatched, true));
    parent.safe_point().unwrap();
    let child2 = parent.spawn_child().unwrap();
    assert_eq!((child2.patch_state(), child2.is_pending()), (PatchState::Patched, false));
    // The child is handed to its own thread, which becomes its owner.
    std::thread::scope(|s| {
        s.spawn(move || {
            child.safe_point().unwrap();
            assert_eq!(child.patch_state(), PatchState::Patched);
        });
    });
    drop(child2);
    complete(&p, &[&parent]);
}

/// One task calls S0, a patch of S0 and S1 is applied, then the same task calls S1 before its
/// next safe point. Per-task consistency keeps it in the old universe; `fnptr` mixes versions.
fn interleaving<S: Strategy>() {
    if dispatch::strategy::skip_if_unavailable(&S::INFO) {
        return;
    }
    let p = patcher::<S>();
    let t = p.register().unwrap();
    let old = t.call(S0, 0).wrapping_add(t.call(S1, 0));
    let patch = p.load(PatchSpec::new("p", [FuncSpec::new(S0, code(10)), FuncSpec::new(S1, code(11))])).unwrap();
    let first = t.call(S0, 0);
    p.enable(patch).unwrap();
    let seen = first.wrapping_add(t.call(S1, 0));
    let new = fp(10).wrapping_add(fp(11));
    match S::INFO.consistency {
        Consistency::PerTask => assert_eq!(seen, old, "{}: mixed universes", S::INFO.name),
        Consistency::Immediate => assert!(seen != old && seen != new, "{}: expected a mixed universe", S::INFO.name),
        Consistency::NotPatchable => assert_eq!(seen, old),
    }
    complete(&p, &[&t]);
}

macro_rules! per_strategy {
    ($($name:ident : $ty:path),* $(,)?) => {$(
        mod $name {
            #[test]
            fn selection_table() {
                super::selection_table::<$ty>();
            }
            #[test]
            fn inheritance() {
                super::inheritance::<$ty>();
            }
            #[test]
            fn interleaving() {
                super::interleaving::<$ty>();
            }
        }
    )*};
}

dispatch::for_each_strategy!(per_strategy);
