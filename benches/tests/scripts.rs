//! Every script in scripts/ answers `--help` and `-h` with its header (usage and exit codes) and
//! exit 0 without building or installing anything, and refuses an unknown argument in one line
//! with exit 2. The scripts are found by listing the directory, so a new one without `--help`
//! fails here.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};

/// Scripts that pass their arguments on to a test binary, which judges them after the build.
const FORWARDING: &[&str] = &["loom"];

/// The tools a script could build or install with: stubs of them record their calls and fail.
const TOOLS: &[&str] = &["cargo", "valgrind", "gungraun-runner", "apt-get", "sudo"];

/// Every file in scripts/ that starts with a shebang (README.md does not).
fn scripts() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| std::fs::read_to_string(p).is_ok_and(|t| t.starts_with("#!")))
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 5, "scripts/ lists only {names:?}");
    names
}

/// A directory of failing stubs of `TOOLS`, which append their calls to `calls`.
struct Stubs {
    bin: PathBuf,
    calls: PathBuf,
}

impl Stubs {
    fn new(name: &str) -> Self {
        let root = std::env::temp_dir().join(format!("dispatch-bench-scripts-{}-{name}", std::process::id()));
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let calls = root.join("calls");
        for tool in TOOLS {
            let stub = bin.join(tool);
            std::fs::write(&stub, format!("#!/bin/sh\necho \"{tool} $*\" >> '{}'\nexit 97\n", calls.display()))
                .unwrap();
            std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Self { bin, calls }
    }

    /// Runs `scripts/<name>` by a path relative to benches/, as from another directory than the
    /// repository root, with the stubs first on PATH; returns its output and the tools it called.
    fn run(&self, name: &str, args: &[&str]) -> (Output, String) {
        self.run_in(env!("CARGO_MANIFEST_DIR"), &[], &format!("../scripts/{name}"), args)
    }

    /// Runs `script` from `dir` with `env` set. The stubs' directory is also `GUNGRAUN_PREFIX`'s
    /// `bin`, which `gate` puts first on PATH.
    fn run_in(&self, dir: &str, env: &[(&str, &str)], script: &str, args: &[&str]) -> (Output, String) {
        let _ = std::fs::remove_file(&self.calls);
        let path = format!("{}:{}", self.bin.display(), std::env::var("PATH").unwrap_or_default());
        let o = Command::new("bash")
            .arg(script)
            .args(args)
            .current_dir(dir)
            .env("PATH", path)
            .env("GUNGRAUN_PREFIX", self.bin.parent().unwrap())
            .envs(env.iter().copied())
            .output()
            .expect("run bash");
        (o, std::fs::read_to_string(&self.calls).unwrap_or_default())
    }
}

impl Drop for Stubs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.bin.parent().unwrap());
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn every_script_answers_help_with_its_usage_and_exit_codes_without_building() {
    let stubs = Stubs::new("help");
    for name in scripts() {
        for flag in ["--help", "-h"] {
            let (o, calls) = stubs.run(&name, &[flag]);
            let (out, err) = (text(&o.stdout), text(&o.stderr));
            assert_eq!(o.status.code(), Some(0), "{name} {flag}: {err}");
            assert!(calls.is_empty(), "{name} {flag} ran {calls}");
            assert!(out.contains(&format!("scripts/{name}")), "{name} {flag}: no usage line: {out}");
            assert!(out.to_lowercase().contains("exit 0"), "{name} {flag}: no exit codes: {out}");
            // The header alone: no comment markers, no code.
            assert!(out.lines().all(|l| !l.starts_with('#') && !l.starts_with("set -")), "{name} {flag}: {out}");
            assert!(err.is_empty(), "{name} {flag}: {err}");
        }
    }
}

#[test]
fn every_script_refuses_an_unknown_argument_in_one_line() {
    let stubs = Stubs::new("bogus");
    for name in scripts() {
        let (o, calls) = stubs.run(&name, &["--bogus"]);
        let err = text(&o.stderr);
        if FORWARDING.contains(&name.as_str()) {
            // Passed on whole, after `--`, for the test binary to judge.
            assert!(calls.starts_with("cargo test ") && calls.contains(" -- --bogus"), "{name}: {calls}");
            continue;
        }
        assert_eq!(o.status.code(), Some(2), "{name}: {err}");
        assert!(calls.is_empty(), "{name} --bogus ran {calls}");
        assert_eq!(err.lines().count(), 1, "{name}: {err}");
        assert!(err.contains("'--bogus'") && err.contains(&format!("usage: scripts/{name}")), "{name}: {err}");
    }
}

const GATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/gate");

/// `scripts/gate --baseline FILE` reads FILE from the caller's directory, not from the repository
/// root it changes to: an existing file there is found (the run goes on to the suite, a failing
/// stub here), a missing one is named by its full path in the caller's directory.
#[test]
fn the_gate_script_resolves_its_baseline_in_the_callers_directory() {
    let stubs = Stubs::new("gate-cwd");
    let caller = stubs.bin.parent().unwrap().join("caller");
    std::fs::create_dir_all(&caller).unwrap();
    std::fs::write(caller.join("relative.json"), "{}").unwrap();
    let dir = caller.to_str().unwrap();
    for args in [&["--baseline", "relative.json"][..], &["--baseline=relative.json"]] {
        let (o, calls) = stubs.run_in(dir, &[], GATE, args);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("the gungraun suite failed to run") && !err.contains("no baseline"), "{args:?}: {err}");
        assert!(calls.starts_with("cargo bench "), "{args:?}: {calls}");
    }
    let (o, calls) = stubs.run_in(dir, &[], GATE, &["--baseline", "missing.json"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("no baseline at {}/missing.json", caller.display())), "{err}");
    assert!(calls.is_empty(), "{calls}");
}

/// `MEMCHECK_TRANSITIONS` is held to the soak binary's range before anything is built.
#[test]
fn memcheck_refuses_an_absurd_transition_count_before_building() {
    let stubs = Stubs::new("memcheck-env");
    let dir = env!("CARGO_MANIFEST_DIR");
    for value in ["0", "-1", "1e9", "1000000001", "18446744073709551615", "nan", "inf", "1.5", " 5"] {
        let (o, calls) = stubs.run_in(dir, &[("MEMCHECK_TRANSITIONS", value)], "../scripts/memcheck", &[]);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{value:?}: {err}");
        assert!(err.contains("give 1 to 1000000000 transitions"), "{value:?}: {err}");
        assert!(calls.is_empty(), "{value:?}: ran {calls}");
    }
}
