//! Every typed error of the model, and that each leaves every state as it was: the enabled
//! patches, the transition in progress, the task states and what every site resolves to.

use std::time::Duration;

use dispatch::check::{code, fingerprint};
use dispatch::model::Forbidden;
use dispatch::strategy::klp::Klp;
use dispatch::{
    Error, FuncSpec, PatchId, PatchSpec, PatchState, Patcher, PatcherConfig, Progress, SiteId, Stacking, Strategy,
};

const S0: SiteId = SiteId(0);
const S1: SiteId = SiteId(1);

/// Everything an error must leave unchanged.
#[derive(Debug, PartialEq)]
struct Snapshot {
    enabled: Vec<PatchId>,
    in_transition: Option<PatchId>,
    universes: [Vec<u64>; 3],
}

fn snapshot<S: Strategy>(p: &Patcher<S>) -> Snapshot {
    let view = |s| p.universe(s).iter().map(|c| c(0)).collect();
    Snapshot {
        enabled: p.enabled(),
        in_transition: p.in_transition(),
        universes: [view(PatchState::Idle), view(PatchState::Unpatched), view(PatchState::Patched)],
    }
}

fn patcher(stacking: Stacking, capacity: usize) -> Patcher<Klp> {
    Patcher::new(&[code(0), code(1)], PatcherConfig { capacity, stacking })
}

fn spec(name: &str, funcs: &[(SiteId, usize)]) -> PatchSpec {
    PatchSpec::new(name, funcs.iter().map(|&(s, c)| FuncSpec::new(s, code(c))))
}

/// Asserts that `f` fails with `expected` and changes nothing.
fn refused<S: Strategy, T: std::fmt::Debug>(p: &Patcher<S>, expected: Error, f: impl FnOnce() -> Result<T, Error>) {
    let before = snapshot(p);
    let err = f().expect_err("expected an error");
    assert_eq!(err, expected);
    // Every message names the problem and the fix.
    assert!(err.to_string().len() > 30, "terse message: {err}");
    assert_eq!(snapshot(p), before, "{err:?} changed the state");
}

#[test]
fn bad_patches_are_refused_at_load() {
    let p = patcher(Stacking::Free, 4);
    refused(&p, Error::UnknownSite { site: SiteId(7), sites: 2 }, || p.load(spec("x", &[(SiteId(7), 1)])));
    refused(&p, Error::EmptyPatch { name: "e".into() }, || p.load(spec("e", &[])));
    refused(&p, Error::DuplicateSite { name: "d".into(), site: S0 }, || p.load(spec("d", &[(S0, 1), (S0, 2)])));
    // Nothing was loaded by the refused calls: the first good patch gets id 0.
    assert_eq!(p.load(spec("ok", &[(S0, 1)])).unwrap(), PatchId(0));
}

#[test]
fn state_errors_change_nothing() {
    let p = patcher(Stacking::Free, 4);
    let a = p.load(spec("a", &[(S0, 10), (S1, 11)])).unwrap();
    let b = p.load(spec("b", &[(S0, 20)])).unwrap();
    refused(&p, Error::UnknownPatch(PatchId(9)), || p.enable(PatchId(9)));
    refused(&p, Error::NotEnabled(a), || p.disable(a));
    refused(&p, Error::NoTransition, || p.reverse());
    refused(&p, Error::NoTransition, || p.force());
    refused(&p, Error::NoTransition, || p.wait(Duration::ZERO));

    p.enable(a).unwrap();
    refused(&p, Error::AlreadyEnabled(a), || p.enable(a));
    refused(&p, Error::AlreadyEnabled(a), || p.replace(a));
    refused(&p, Error::Forbidden { patch: a, reason: Forbidden::StillEnabled }, || p.unload(a));

    // A running task that never reaches a safe point keeps a transition in progress.
    let task = p.register().unwrap();
    p.enable(b).unwrap();
    let in_progress = Error::TransitionInProgress { patch: b };
    refused(&p, in_progress.clone(), || p.enable(a));
    refused(&p, in_progress.clone(), || p.disable(a));
    refused(&p, in_progress.clone(), || p.replace(a));
    let before = snapshot(&p);
    match p.wait(Duration::from_millis(20)) {
        Err(Error::Timeout { patch, pending: 1, waited }) => {
            assert_eq!(patch, b);
            assert!(waited >= Duration::from_millis(20));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(snapshot(&p), before);
    assert_eq!((task.patch_state(), task.is_pending()), (PatchState::Unpatched, true));
    assert!(matches!(p.try_complete(), Progress::Migrating { pending: 1 }));

    // Once the task migrated, the transition settles and can no longer be reversed.
    task.safe_point().unwrap();
    assert!(matches!(p.try_complete(), Progress::Settling));
    refused(&p, Error::Forbidden { patch: b, reason: Forbidden::Settling }, || p.reverse());
    task.safe_point().unwrap();
    assert!(matches!(p.try_complete(), Progress::Done(_)));
}

/// Free stacking, but a patch with immediate funcs is disabled only from the top: a reversed
/// disable pushes its immediate funcs back on top of their stacks, and below a later patch's
/// func that would make the older patch win (seen before this rule: site 0 ran the older
/// patch's code after the reversal).
#[test]
fn a_patch_with_immediate_funcs_is_disabled_only_from_the_top() {
    let p = patcher(Stacking::Free, 4);
    let older =
        p.load(PatchSpec::new("older", [FuncSpec::immediate(S0, code(30)), FuncSpec::new(S1, code(31))])).unwrap();
    let newer = p.load(spec("newer", &[(S0, 40)])).unwrap();
    let task = p.register().unwrap();
    task.park().unwrap();
    for patch in [older, newer] {
        p.enable(patch).unwrap();
        p.wait(Duration::from_secs(10)).ok();
    }
    refused(&p, Error::Forbidden { patch: older, reason: Forbidden::ImmediateNotTopmost }, || p.disable(older));
    // From the top it is allowed, reversal included: the immediate func returns where it was.
    p.disable(newer).unwrap();
    p.wait(Duration::from_secs(10)).unwrap();
    task.unpark().unwrap();
    assert!(matches!(p.disable(older).unwrap(), Progress::Migrating { .. }));
    assert_eq!(task.call(S0, 0), fingerprint(0), "the immediate func left at once");
    p.reverse().unwrap();
    task.park().unwrap();
    p.wait(Duration::from_secs(10)).unwrap();
    task.unpark().unwrap();
    assert_eq!(p.enabled(), vec![older]);
    assert_eq!((task.call(S0, 0), task.call(S1, 0)), (fingerprint(30), fingerprint(31)));
}

#[test]
fn forbidden_operations() {
    let p = patcher(Stacking::Strict, 4);
    let a = p.load(spec("a", &[(S0, 10)])).unwrap();
    let b = p.load(spec("b", &[(S1, 20)])).unwrap();
    p.enable(a).unwrap();
    p.enable(b).unwrap();
    // Strict stacking: only the top patch can be disabled.
    refused(&p, Error::Forbidden { patch: a, reason: Forbidden::NotTopmost }, || p.disable(a));
    let i = p.load(PatchSpec::new("i", [FuncSpec::immediate(S0, code(30))])).unwrap();
    refused(&p, Error::Forbidden { patch: i, reason: Forbidden::ImmediateInReplace }, || p.replace(i));

    // A forced transition pins the patch's code for ever.
    let task = p.register().unwrap();
    p.disable(b).unwrap();
    assert!(matches!(p.try_complete(), Progress::Migrating { pending: 1 }));
    p.force().unwrap();
    assert_eq!(task.patch_state(), PatchState::Unpatched);
    task.safe_point().unwrap();
    let stats = p.wait(Duration::from_secs(10)).unwrap();
    assert!(stats.forced);
    assert_eq!(stats.migrated_by_force, 1);
    assert!(p.is_forced(b).unwrap());
    refused(&p, Error::Forbidden { patch: b, reason: Forbidden::Forced }, || p.unload(b));
    // A patch that was never forced can be unloaded once disabled.
    assert!(p.unload(i).is_ok());
    refused(&p, Error::UnknownPatch(i), || p.enable(i));
}

#[test]
fn task_errors() {
    let p = patcher(Stacking::Free, 2);
    let t1 = p.register().unwrap();
    let t2 = p.register().unwrap();
    assert_eq!(p.register().unwrap_err(), Error::TooManyTasks { capacity: 2 });
    drop(t2);
    let t2 = p.register().unwrap();

    assert_eq!(t1.unpark().unwrap_err(), Error::NotParked);
    t1.park().unwrap();
    assert_eq!(t1.park().unwrap_err(), Error::AlreadyParked);
    t1.unpark().unwrap();

    // A handle moved to another thread is refused there, and still works at home afterwards.
    let t2 = std::thread::spawn(move || {
        assert_eq!(t2.safe_point().unwrap_err(), Error::WrongThread);
        assert_eq!(t2.park().unwrap_err(), Error::WrongThread);
        assert_eq!(t2.spawn_child().unwrap_err(), Error::WrongThread);
        t2
    })
    .join()
    .unwrap();
    t2.safe_point().unwrap();
    assert!(Error::WrongThread.to_string().contains("register"));
}
