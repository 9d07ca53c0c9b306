//! `textpoke` with a task inside the old code when its call instruction is re-pointed: the
//! transition starts (every call of the site now goes to the slow path) while the task is still
//! running the original it called a moment before. Returning from it must land where the call
//! left off, and the rest of that critical section must still see the old universe, because the
//! task migrates only at its next safe point. And the probe, in child processes: both ways of
//! making text writable, and what `PR_SET_MDWE` leaves of them.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use dispatch::check::{code, fingerprint};
use dispatch::strategy::textpoke::{self, Textpoke};
use dispatch::{FuncSpec, PatchSpec, PatchState, Patcher, PatcherConfig, Progress, SiteId, Strategy};

/// Where the task is in `site0_original`: 0 not yet inside, 1 inside, 2 told to return.
static INSIDE: AtomicU8 = AtomicU8::new(0);

/// What the original of site 0 returns.
const OLD0: u64 = 0x01d0;

/// Site 0's original: the first call waits inside it until the test says to return.
extern "C" fn site0_original(_arg: u64) -> u64 {
    // Release/Acquire: the test's thread and this one hand the turn back and forth.
    if INSIDE.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire).is_ok() {
        // No panic here: it could not unwind out of an `extern "C"` function and would abort the
        // whole test binary. Give up after a minute instead; the test's assertions then fail.
        let t0 = Instant::now();
        while INSIDE.load(Ordering::Acquire) != 2 && t0.elapsed() < Duration::from_secs(60) {
            std::thread::yield_now();
        }
    }
    OLD0
}

#[test]
fn a_task_inside_the_old_code_stays_in_the_old_universe() {
    if dispatch::strategy::skip_if_unavailable(&Textpoke::INFO) {
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

/// The child of `the_probe_follows_the_os_policy`: in a fresh process (the probe runs once per
/// process), optionally under `PR_SET_MDWE`, prints what the probe found. Does nothing as an
/// ordinary test.
#[test]
fn probe_child() {
    const PR_SET_MDWE: libc::c_int = 65;
    const PR_MDWE_REFUSE_EXEC_GAIN: libc::c_ulong = 1;
    let Ok(mode) = std::env::var("TEXTPOKE_PROBE_CHILD") else { return };
    // SAFETY: a prctl with no pointers; it only restricts this (child) process.
    if mode == "mdwe" && unsafe { libc::prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) } != 0 {
        println!("PROBE-RESULT no MDWE: {}", std::io::Error::last_os_error());
        return;
    }
    match textpoke::probe() {
        Ok(()) => println!("PROBE-RESULT available: {}", textpoke::describe()),
        Err(why) => println!("PROBE-RESULT unavailable: {why}"),
    }
}

/// Runs `probe_child` in a child process, under MDWE if `mode` is "mdwe", with `writable` as
/// `DISPATCH_TEXTPOKE_TEXT`; returns its result line.
fn probe_in_child(mode: &str, writable: Option<&str>) -> String {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "probe_child", "--nocapture", "--test-threads=1"]).env("TEXTPOKE_PROBE_CHILD", mode);
    match writable {
        Some(w) => cmd.env("DISPATCH_TEXTPOKE_TEXT", w),
        None => cmd.env_remove("DISPATCH_TEXTPOKE_TEXT"),
    };
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the child failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    let line = stdout.lines().find_map(|l| l.split_once("PROBE-RESULT ").map(|(_, r)| r)).expect("a result line");
    eprintln!("{mode}, {writable:?}: {line}");
    line.to_owned()
}

#[test]
fn the_probe_follows_the_os_policy() {
    if dispatch::strategy::skip_if_unavailable(&Textpoke::INFO) {
        return;
    }
    let plain = probe_in_child("plain", None);
    assert!(plain.starts_with("available") && plain.contains("made writable by a memfd double mapping"), "{plain}");
    let fallback = probe_in_child("plain", Some("mprotect"));
    assert!(fallback.starts_with("available") && fallback.contains("made writable by mprotect"), "{fallback}");
    let bogus = probe_in_child("plain", Some("bogus"));
    assert!(bogus.starts_with("unavailable") && bogus.contains("use memfd or mprotect"), "{bogus}");
    let mdwe = probe_in_child("mdwe", None);
    if mdwe.starts_with("no MDWE") {
        eprintln!("PR_SET_MDWE is not offered by this kernel (Linux 6.3 or later): its cases are skipped");
        return;
    }
    // MDWE refuses mappings that gain execute permission by mprotect, not a memfd mapped
    // read+execute: the double mapping still works, and only it.
    assert!(mdwe.starts_with("available") && mdwe.contains("made writable by a memfd double mapping"), "{mdwe}");
    assert!(mdwe.contains("PR_SET_MDWE is on"), "{mdwe}");
    let refused = probe_in_child("mdwe", Some("mprotect"));
    assert!(refused.starts_with("unavailable") && refused.contains("mprotect: "), "{refused}");
    assert!(refused.contains("PR_SET_MDWE is on"), "the reason names the policy: {refused}");
}
