//! `DISPATCH_UNAVAILABLE` makes the strategies it names unavailable, whatever their probes say:
//! how every skip path is tested on machines where every strategy runs.
//!
//! The variable is process-global and the other tests of a binary run on parallel threads, each
//! reading it through `Info::availability`; so this test never sets it in its own process. It runs
//! itself again in child processes (the test binary, filtered to this one test), with the variable
//! set and unset, and the child does the checking.

use std::process::Command;

use dispatch::strategy::{UNAVAILABLE_VAR, info, skip_if_unavailable};

/// Set in a child: what it is to find (`named` or `unset`).
const CHILD: &str = "DISPATCH_AVAILABILITY_TEST_CHILD";

const TEST: &str = "the_override_makes_named_strategies_unavailable_naming_the_variable";

#[test]
fn the_override_makes_named_strategies_unavailable_naming_the_variable() {
    match std::env::var(CHILD).as_deref() {
        Ok("named") => {
            // " klp " trimmed is klp; "fnptr2" is not fnptr.
            let klp = info("klp").unwrap();
            let why = klp.availability().unwrap_err();
            assert_eq!(why.0, format!("named in {UNAVAILABLE_VAR}; unset it (or drop the name) to run it"));
            assert!(skip_if_unavailable(&klp), "skip_if_unavailable must skip what availability refuses");
            assert!(info("tls").unwrap().availability().is_err());
            let fnptr = info("fnptr").unwrap();
            assert_eq!(fnptr.availability(), Ok(()));
            assert!(!skip_if_unavailable(&fnptr));
            return;
        }
        Ok("unset") => {
            for i in dispatch::strategy::ALL {
                // Only a real probe can refuse now: none may say it was named in the variable.
                if let Err(why) = i.availability() {
                    assert!(!why.0.contains(UNAVAILABLE_VAR), "{}: {why}", i.name);
                }
            }
            assert_eq!(info("klp").unwrap().availability(), Ok(()));
            return;
        }
        _ => {}
    }
    for (mode, value) in [("named", Some("fnptr2, klp ,tls")), ("unset", None)] {
        let mut child = Command::new(std::env::current_exe().unwrap());
        child.args(["--exact", TEST, "--nocapture", "--test-threads=1"]).env(CHILD, mode);
        match value {
            Some(v) => child.env(UNAVAILABLE_VAR, v),
            None => child.env_remove(UNAVAILABLE_VAR),
        };
        let o = child.output().expect("run the test binary again");
        let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert!(o.status.success(), "{mode}: {stdout}{stderr}");
        // The child ran this test, not nothing.
        assert!(stdout.contains("1 passed"), "{mode}: {stdout}");
        if mode == "named" {
            // What every per-strategy test prints when it skips.
            let line = format!("klp: skipped: named in {UNAVAILABLE_VAR}; unset it (or drop the name) to run it");
            assert!(stderr.lines().chain(stdout.lines()).any(|l| l == line), "{stdout}{stderr}");
        }
    }
}
