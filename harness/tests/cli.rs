//! The harness's command line, end to end: bad input gets a message naming the problem and the
//! fix and exit code 2 before anything is measured; a short run writes its directory atomically;
//! `compare` exits 0 / 1 / 2.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn harness(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_harness")).args(args).output().expect("run harness")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dispatch-bench-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A fast run: two strategies, one reader, steady and back-to-back transitions; `overrides`
/// replace options by name.
fn tiny_run(out: &Path, overrides: &[(&str, &str)]) -> Output {
    tiny_command(out, overrides).output().expect("run harness")
}

/// [`tiny_run`]'s command, for a test that sets more on it (its environment).
fn tiny_command(out: &Path, overrides: &[(&str, &str)]) -> Command {
    let mut opts = vec![
        ("--strategies", "klp,fnptr"),
        ("--readers", "1"),
        ("--rate", "0,max"),
        ("--duration", "0.02"),
        ("--rounds", "2"),
        ("--regime-rows", "false"),
        ("--counters", "off"),
        ("--out", out.to_str().unwrap()),
    ];
    for (k, v) in overrides {
        match opts.iter_mut().find(|(name, _)| name == k) {
            Some(o) => o.1 = v,
            None => opts.push((k, v)),
        }
    }
    let mut args = vec!["run".to_owned()];
    for (k, v) in opts {
        args.push(format!("{k}={v}"));
    }
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_harness"));
    cmd.args(&args);
    cmd
}

#[test]
fn list_prints_every_strategy() {
    let o = harness(&["list"]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    for info in dispatch::strategy::ALL {
        assert!(text.lines().any(|l| l.starts_with(info.name)), "{} missing", info.name);
    }
}

/// What `DISPATCH_UNAVAILABLE=klp` makes `Info::availability` say of klp.
const KLP_REASON: &str = "named in DISPATCH_UNAVAILABLE; unset it (or drop the name) to run it";

/// `harness list` says of every strategy whether it runs here, and why not; `harness env` lists
/// the ones that do not, or says that all do.
#[test]
fn list_and_env_say_which_strategies_are_unavailable_and_why() {
    let with = |args: &[&str], unavailable: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_harness"));
        cmd.args(args).env_remove("DISPATCH_UNAVAILABLE");
        if let Some(names) = unavailable {
            cmd.env("DISPATCH_UNAVAILABLE", names);
        }
        let o = cmd.output().expect("run harness");
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let list = with(&["list"], Some("klp,tls"));
    for info in dispatch::strategy::ALL {
        let line = list.lines().find(|l| l.starts_with(&format!("{} ", info.name))).unwrap();
        let here = if ["klp", "tls"].contains(&info.name) { " unavailable " } else { " available " };
        assert!(line.contains(here), "{line}");
    }
    let reasons: Vec<&str> = list.lines().filter(|l| l.contains("unavailable here:")).collect();
    assert_eq!(reasons.len(), 2, "{list}");
    assert!(
        reasons.iter().all(|l| l.trim_start().starts_with("unavailable here: ") && l.ends_with(KLP_REASON)),
        "{list}"
    );
    // The reason follows its strategy's line.
    let klp = list.lines().position(|l| l.starts_with("klp ")).unwrap();
    assert!(list.lines().nth(klp + 1).unwrap().contains(KLP_REASON), "{list}");
    assert!(!with(&["list"], None).contains("unavailable"));

    let env = with(&["env", "--counters", "off"], Some("klp"));
    assert!(env.contains(&format!("klp is unavailable here: {KLP_REASON}")), "{env}");
    let all = with(&["env", "--counters", "off"], None);
    assert!(all.contains(&format!("all {} available here", dispatch::strategy::ALL.len())), "{all}");
}

/// A run with klp and fnptr in a per-site steady scenario of 8 sites records its fidelity check:
/// the C loops timed in every round, the figures and the verdict, in run.json, report.md and on
/// the terminal (pass or warning: which one depends on the host, so either is accepted); without
/// klp there is none.
#[test]
fn a_run_with_klp_and_fnptr_records_its_fidelity_check() {
    let out = scratch("fidelity");
    let o = tiny_command(&out, &[]).output().expect("run harness");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let run = harness::record::load_run(&out).unwrap();
    let check = run.fidelity_check.expect("a per-site steady scenario of 8 sites with klp and fnptr");
    assert_eq!(check.scenario, run.config.scenarios[0].name(), "the steady scenario, not the transitions'");
    assert_eq!(check.rounds.iter().map(|r| r.round).collect::<Vec<_>>(), (0..run.config.rounds).collect::<Vec<_>>());
    for r in &check.rounds {
        assert!(r.direct_ns > 0.0 && r.fnptr_ns > 0.0 && r.handler_ns > 0.0, "{r:?}");
    }
    assert_eq!(check.within, check.fidelity <= check.limit);
    let line = harness::fidelity::line(&check);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains(&line), "{stdout}");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains(&format!("- {line}")), "{report}");
    assert!(
        line.starts_with("fidelity check: ") || line.starts_with(&format!("warning: {}", harness::fidelity::WARNING))
    );

    let without = scratch("fidelity-without");
    let o = tiny_command(&without, &[("--strategies", "fnptr,kgraft")]).output().expect("run harness");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(harness::record::load_run(&without).unwrap().fidelity_check.is_none());
}

/// A strategy this machine cannot run is skipped with its reason: the run measures the rest and
/// exits 0, and run.json and report.md record the skip; `compare` against a run that measured it
/// names the skip and its reason instead of refusing missing rows. With nothing left to measure,
/// the run is refused (exit 2) naming each strategy and its reason.
#[test]
fn an_unavailable_strategy_is_skipped_with_its_reason_and_the_run_goes_on() {
    let (skipping, full) = (scratch("skip"), scratch("skip-base"));
    let o = tiny_command(&skipping, &[("--strategies", "fnptr,klp")])
        .env("DISPATCH_UNAVAILABLE", "klp")
        .output()
        .expect("run harness");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let skip_lines: Vec<String> = stderr(&o).lines().filter(|l| l.contains("skipped")).map(str::to_owned).collect();
    assert_eq!(skip_lines, [format!("harness: klp skipped: unavailable on this machine: {KLP_REASON}")]);
    let run = harness::record::load_run(&skipping).unwrap();
    assert_eq!(run.schema_version, harness::record::SCHEMA_VERSION);
    assert_eq!(run.skipped, [harness::config::Skipped { strategy: "klp".into(), reason: KLP_REASON.into() }]);
    assert_eq!(run.config.strategies, ["fnptr"]);
    assert!(!run.rows.is_empty() && run.rows.iter().all(|r| r.strategy == "fnptr"), "no klp rows");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(skipping.join("run.json")).unwrap()).unwrap();
    assert_eq!(json["skipped"][0]["strategy"], "klp");
    let report = std::fs::read_to_string(skipping.join("report.md")).unwrap();
    // The machine and the method: the section after the answer, up to the next one.
    let machine = &report[report.find("## The machine and the method").unwrap()..];
    let header = &machine[..machine[3..].find("## ").unwrap() + 3];
    assert!(
        header.contains(&format!(
            "- **Skipped**: unavailable on this machine, so not measured and in no table: `klp` ({KLP_REASON})"
        )),
        "{header}"
    );

    // Against a run that measured klp: named as skipped with the reason, both ways; two rounds a
    // side make the rest inconclusive (5), not unusable (2).
    let o = tiny_command(&full, &[]).env_remove("DISPATCH_UNAVAILABLE").output().expect("run harness");
    assert!(o.status.success(), "{}", stderr(&o));
    let host = run.env.host_label();
    for (base, new, side) in [(&full, &skipping, "NEW"), (&skipping, &full, "BASE")] {
        let o = harness(&["compare", base.to_str().unwrap(), new.to_str().unwrap()]);
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(5), "{}{stdout}", stderr(&o));
        let line = format!("SKIPPED klp: not compared: skipped in {side} (unavailable on {host}: {KLP_REASON})");
        assert!(stdout.starts_with(&line), "{stdout}");
        assert!(!stdout.contains("| klp |") && stdout.contains("| fnptr |"), "{stdout}");
    }

    let none = scratch("skip-all");
    let o = tiny_command(&none, &[("--strategies", "fnptr,klp")])
        .env("DISPATCH_UNAVAILABLE", "klp, fnptr")
        .output()
        .expect("run harness");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("nothing to measure: every strategy asked for is unavailable on this machine")
            && err.contains(&format!("fnptr: {KLP_REASON}"))
            && err.contains(&format!("klp: {KLP_REASON}"))
            && err.contains("harness list"),
        "{err}"
    );
    assert!(!err.contains("clock overhead") && !none.exists(), "measured: {err}");
    for dir in [skipping, full] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn bad_input_is_refused_with_code_2() {
    let cases: &[(&[&str], &str)] = &[
        (&["run", "--strategies", "klp,nope"], "valid names: direct, fnptr, klp"),
        (&["run", "--readers", "0"], "--readers 0 is out of range: give 1 to 4094 readers"),
        (&["run", "--readers", "x"], "is not a count"),
        (&["run", "--rate=-5"], "--rate -5 is out of range"),
        (&["run", "--rate", "0,fast"], "not a rate"),
        (&["run", "--duration", "0"], "'--duration <DURATION>': give 0.001 to 3600 seconds"),
        (&["run", "--duration=-1"], "'--duration <DURATION>': give 0.001 to 3600 seconds"),
        (&["run", "--rounds", "0"], "'--rounds <ROUNDS>': give 1 to 1000 rounds"),
        (&["run", "--readers", "4094"], "--oversubscribe"),
        (&["run", "--sites", "0"], "'--sites <SITES>': give 1 to 4096 sites"),
        (&["compare", "a", "b", "--threshold=-1"], "'--threshold <THRESHOLD>': give 0 to 1000 percent"),
    ];
    for (args, expected) in cases {
        let o = harness(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(expected), "{args:?}: {}", stderr(&o));
    }
    // Unknown flags and values: clap's own message, same exit code.
    for args in [&["run", "--bogus"][..], &["run", "--order", "sideways"], &["frobnicate"]] {
        assert_eq!(harness(args).status.code(), Some(2), "{args:?}");
    }
}

/// Every numeric option at 0, 1, tiny, huge, `u64::MAX`, NaN and infinities: a message naming the
/// option and its range with exit 2, or (in range) a start; never a panic, an allocation abort
/// or a run for ever. Values in range are given with `--rounds 1000 --duration 3600`, so that the
/// run would take days: refused before measuring (it needs --yes), which keeps this test fast.
#[test]
fn every_numeric_option_refuses_absurd_values_naming_its_range() {
    let options: &[(&str, &str)] = &[
        ("--duration", "0.001 to 3600 seconds"),
        ("--rounds", "1 to 1000 rounds"),
        ("--readers", "1 to 4094 readers"),
        ("--rate", "0.001 to 1000000000 Hz"),
        ("--sites", "1 to 4096 sites"),
        ("--calls-per-safepoint", "1 to 1048576 calls"),
        ("--depth", "0 to 64 patches"),
        ("--seed", "0 to 18446744073709551615 (any 64-bit number)"),
    ];
    let values =
        ["0", "1", "1e-10", "1e20", "18446744073709551615", "18446744073709551616", "nan", "inf", "-inf", "-1"];
    for (option, range) in options {
        for value in values {
            let mut args = vec!["run".to_owned(), "--oversubscribe".to_owned(), format!("{option}={value}")];
            for long in ["--rounds=1000", "--duration=3600"] {
                if !long.starts_with(option) {
                    args.push(long.to_owned());
                }
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let o = harness(&args);
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
            assert!(!err.contains("panicked") && !err.contains("clock overhead"), "{args:?}: {err}");
            let long_run = err.contains("pass --yes") || err.contains("more than a week");
            assert!(err.contains(range) || long_run, "{args:?}: {err}");
        }
    }
    let o = harness(&["compare", "a", "b", "--threshold=1e9"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("give 0 to 1000 percent"), "{}", stderr(&o));
}

#[test]
fn a_run_of_more_than_an_hour_says_so_and_needs_yes() {
    let o = harness(&["run", "--rounds", "100", "--duration", "10"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("hours") && stderr(&o).contains("pass --yes"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("clock overhead"));
    // With --yes the run is past the check (here refused by the next one, an existing --out).
    let out = scratch("yes");
    std::fs::create_dir_all(&out).unwrap();
    let o = harness(&["run", "--rounds", "100", "--duration", "10", "--yes", "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn duplicate_scenarios_are_measured_once_saying_so() {
    let out = scratch("dup");
    let o =
        tiny_run(&out, &[("--strategies", "fnptr"), ("--rate", "0,steady,0"), ("--readers", "1,1"), ("--rounds", "1")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let name = harness::config::Scenario::DEFAULT.name();
    let said = stderr(&o).matches(&format!("{name} was asked for more than once")).count();
    assert_eq!(said, 5, "{}", stderr(&o));
    assert!(stderr(&o).contains("it is measured once"), "{}", stderr(&o));
    let run = harness::record::load_run(&out).unwrap();
    assert_eq!(run.config.scenarios.len(), 1);
    assert_eq!(run.rows.len(), 1);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_run_option_without_run_gets_a_hint() {
    for (args, hint) in [
        (&["--quick"][..], "hint: --quick is an option of `harness run`: harness run --quick"),
        (&["--runs=2"], "harness run --runs=2"),
    ] {
        let o = harness(args);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains(hint), "{args:?}: {}", stderr(&o));
    }
    let o = harness(&["--bogus"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!stderr(&o).contains("hint:"), "{}", stderr(&o));
}

#[test]
fn an_existing_or_unwritable_output_directory_is_refused_before_measuring() {
    let out = scratch("exists");
    std::fs::create_dir_all(&out).unwrap();
    let o = tiny_run(&out, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    // Refused before measuring: nothing but the check ran.
    assert!(!stderr(&o).contains("clock overhead"));

    let file = scratch("file");
    std::fs::write(&file, b"not a directory").unwrap();
    let o = tiny_run(&file.join("run"), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("choose a writable --out"), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_file(&file);
}

/// Every target the final write could not create is refused with exit 2 before measuring, and
/// nothing is left behind (before, each of these measured everything, then failed with exit 3).
#[test]
fn an_output_directory_the_final_write_could_not_create_is_refused_before_measuring() {
    let root = scratch("targets");
    std::fs::create_dir_all(&root).unwrap();
    std::os::unix::fs::symlink(root.join("nowhere"), root.join("dangling")).unwrap();
    let cases = [
        (root.join("a".repeat(256)), "too long"),
        (root.join("a".repeat(250)), "too long"),
        (root.join("newparent/.."), "does not name a new directory"),
        (root.join("run/."), "does not name a new directory"),
        (root.join("dangling"), "is a symbolic link"),
    ];
    for (out, expected) in &cases {
        let o = tiny_run(out, &[]);
        assert_eq!(o.status.code(), Some(2), "{}: {}", out.display(), stderr(&o));
        assert!(stderr(&o).contains(expected), "{}: {}", out.display(), stderr(&o));
        assert!(!stderr(&o).contains("clock overhead"), "measured: {}", stderr(&o));
    }
    let left: Vec<_> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["dangling"], "left behind");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_short_run_writes_its_directory_and_compares_clean_against_itself() {
    let out = scratch("run");
    let o = tiny_run(&out, &[("--rounds", "3")]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The plan, before measuring: how long the measuring will take.
    assert!(stderr(&o).contains("x 3 rounds of 0.02 s after 0.05 s of warm-up: about "), "{}", stderr(&o));
    for f in ["run.json", "report.md", "bmf.json", "rows.csv"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    // Where this machine has a font (as `cargo run --release -p harness` expects), plots are drawn.
    if plotfont::register().is_ok() {
        for plot in ["ratio", "throughput", "latency", "slowdown", "transitions"] {
            for ext in ["png", "svg"] {
                assert!(out.join(format!("{plot}.{ext}")).is_file(), "{plot}.{ext} missing");
            }
        }
    }
    let run = harness::record::load_run(&out).unwrap();
    assert_eq!(run.rows.len(), 2 * 2 * 3, "strategies x scenarios x runs");
    assert!(run.rows.iter().all(|r| r.calls > 0 && r.ns_per_call > 0.0));
    assert!(run.rows.iter().filter(|r| r.strategy == "fnptr").all(|r| r.ratio_to_fnptr == Some(1.0)));
    assert!(run.rows.iter().any(|r| r.transitions > 0), "the writer ran");
    // No temporary directory is left beside the run.
    let leftovers: Vec<_> = std::fs::read_dir(out.parent().unwrap())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name().to_string_lossy().contains(&format!("{}.tmp", out.file_name().unwrap().to_string_lossy()))
        })
        .collect();
    assert!(leftovers.is_empty());

    let o = harness(&["compare", out.to_str().unwrap(), out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stdout));

    // Unusable inputs: missing, empty, corrupt, other schema, other scenarios, other regimes.
    let bad = scratch("bad");
    std::fs::create_dir_all(&bad).unwrap();
    let json = std::fs::read_to_string(out.join("run.json")).unwrap();
    // run.json names the CPU by what it is: every field of env.cpu is there (null where the
    // machine does not say, which is a probe's answer and holds anywhere).
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    for field in ["vendor", "family", "model", "stepping", "microcode", "microarchitecture", "l1i_kib", "l1d_kib"] {
        assert!(parsed["env"]["cpu"].get(field).is_some(), "env.cpu.{field} missing: {}", parsed["env"]);
    }
    for field in ["l2_kib", "l3_kib", "base_mhz", "max_mhz", "cpus", "threads_per_core", "numa_nodes"] {
        assert!(parsed["env"]["cpu"].get(field).is_some(), "env.cpu.{field} missing: {}", parsed["env"]);
    }
    let version = format!("\"schema_version\": {}", harness::record::SCHEMA_VERSION);
    let write = |name: &str, text: &str| {
        let p = bad.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let cases = [
        (bad.join("missing.json"), "cannot read"),
        (write("empty.json", ""), "is empty"),
        (write("corrupt.json", &format!("{{{version}, ")), "not valid JSON"),
        (write("schema.json", &json.replacen(&version, "\"schema_version\": 99", 1)), "schema_version 99"),
        (
            write("schema-type.json", &json.replacen(&version, "\"schema_version\": \"4\"", 1)),
            "schema_version of the wrong type (\"4\", a string)",
        ),
        (write("row-type.json", &with_row_field(&json, "ns_per_call", "\"fast\"")), "row 1 ("),
        (
            write("row-field.json", &with_row_field(&json, "ns_per_call", "\"fast\"")),
            ", field ns_per_call: invalid type",
        ),
        (write("negative.json", &with_row_field(&json, "ns_per_call", "-3.5")), "field ns_per_call: -3.5 is negative"),
        (write("infinite.json", &with_row_field(&json, "calls_per_sec", "1e999")), "not valid JSON"),
        (write("scenario.json", &with_every_row(&json, |r| r["scenario"]["depth"] = 7.into())), "different scenarios"),
        (
            write("regime.json", &json.replace("\"call_sites\": \"per-site\"", "\"call_sites\": \"shared\"")),
            "different call-site regimes",
        ),
    ];
    for (path, expected) in cases {
        let o = harness(&["compare", out.to_str().unwrap(), path.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{}: {}", path.display(), stderr(&o));
        assert!(stderr(&o).contains(expected), "{}: {}", path.display(), stderr(&o));
    }
    // A clear slowdown of every round is a regression (exit 1): the exit path, on figures made
    // steady (10 ns/call, a small jitter) and unflagged, as this machine's own may be neither (a
    // busy machine flags rows, and flagged measurements are reported, never judged); the
    // statistics themselves are tested in `compare`'s unit tests.
    let steady = |factor: f64| {
        let mut i = 0.0;
        with_every_row(&json, |r| {
            i += 1.0;
            r["ns_per_call"] = serde_json::json!(10.0 * factor + (i % 3.0) * 1e-2);
            r["interference"]["reasons"] = serde_json::json!([]);
        })
    };
    let clean_path = write("clean.json", &steady(1.0));
    let slow: serde_json::Value = serde_json::from_str(&steady(1.5)).unwrap();
    let slow_path = write("slow.json", &slow.to_string());
    let o = harness(&["compare", clean_path.to_str().unwrap(), slow_path.to_str().unwrap(), "--threshold", "10"]);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stdout));
    assert!(String::from_utf8_lossy(&o.stdout).contains("REGRESSION"));
    // The same slowdown in rounds flagged for interference is reported, not judged (exit 0).
    let flagged = with_every_row(&slow.to_string(), |r| r["interference"]["reasons"] = serde_json::json!(["planted"]));
    let flagged_path = write("flagged.json", &flagged);
    let o = harness(&["compare", clean_path.to_str().unwrap(), flagged_path.to_str().unwrap(), "--threshold", "10"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("NOT JUDGED") && !stdout.contains("REGRESSION"), "{stdout}");

    // Another machine or toolchain: refused with the fix named (exit 2), unless asked for; then
    // every difference comes first. Each value is made to differ from this machine's, whatever it
    // is: another CPU family, a model string and a kernel no machine has.
    let mut other: serde_json::Value = serde_json::from_str(&json).unwrap();
    let family = other["env"]["cpu"]["family"].as_u64().map_or(6, |f| f + 1);
    other["env"]["cpu"]["family"] = family.into();
    other["env"]["cpu_model"] = "Another CPU 9999".into();
    other["env"]["kernel"] = "0.0.1-other".into();
    let other_path = write("other.json", &other.to_string());
    let o = harness(&["compare", out.to_str().unwrap(), other_path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let family = format!(", NEW {family} (");
    for needle in [
        "CPU family: BASE",
        &family,
        "CPU model string: BASE",
        "\"Another CPU 9999\"",
        "kernel: BASE",
        "--allow-different-hosts",
    ] {
        assert!(stderr(&o).contains(needle), "{needle}: {}", stderr(&o));
    }
    let o = harness(&["compare", out.to_str().unwrap(), other_path.to_str().unwrap(), "--allow-different-hosts"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{stdout}");
    assert!(stdout.starts_with("WARNING: the runs differ") && stdout.contains("- kernel: BASE"), "{stdout}");

    // Fewer than 3 rounds a side: no verdict, exit 5, even against itself.
    let mut two: serde_json::Value = serde_json::from_str(&json).unwrap();
    two["rows"].as_array_mut().unwrap().retain(|r| r["round"].as_u64() < Some(2));
    two["config"]["rounds"] = 2.into();
    let two_path = write("two.json", &two.to_string());
    let o = harness(&["compare", two_path.to_str().unwrap(), two_path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(5), "{stdout}");
    assert!(stdout.contains("INCONCLUSIVE: BASE has 2 round(s), NEW 2") && !stdout.contains("| - |"), "{stdout}");
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&bad);
}

/// The A/A check on this machine: one run of 12 rounds split into two runs of 6 (even and odd
/// rounds, so that drift hits both alike) compares as no change in the headline, the ratio to
/// fnptr of the same round (ns/call itself moves with the load of a shared VM between rounds).
/// A planted 10% slowdown is the unit test
/// `compare::tests::same_figures_are_unchanged_and_a_planted_slowdown_is_a_regression`: on this
/// loaded VM a debug build's rounds spread by tens of percent, and no test on 6 rounds of them
/// can tell 10% apart, which is what `compare` then rightly says.
#[test]
fn a_a_runs_compare_as_no_change() {
    // The check is statistical: at its 5% significance, and with the other tests of this binary
    // loading the machine meanwhile, one split may differ for real. A second, independent run
    // must then agree; two false alarms in a row would be a broken `compare`.
    let mut last = String::new();
    for attempt in 0..2 {
        match a_a_split_compares_as_no_change(attempt) {
            Ok(()) => return,
            Err(stdout) => last = stdout,
        }
    }
    panic!("two A/A runs in a row compared as changed:\n{last}");
}

/// One run of 12 rounds, split into even and odd rounds and compared in the headline; the
/// compare's output when it does not say "no change".
fn a_a_split_compares_as_no_change(attempt: u32) -> Result<(), String> {
    let out = scratch(&format!("aa-{attempt}"));
    let o = tiny_run(&out, &[("--rounds", "12"), ("--rate", "0"), ("--duration", "0.05")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let run: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    let half = |parity: u64| {
        let mut h = run.clone();
        h["config"]["rounds"] = 6.into();
        let rows = h["rows"].as_array_mut().unwrap();
        // Unflagged: this is about the statistics, and flagged rounds are not judged at all.
        for r in rows.iter_mut() {
            r["interference"]["reasons"] = serde_json::json!([]);
        }
        rows.retain(|r| r["round"].as_u64().unwrap() % 2 == parity);
        for r in rows.iter_mut() {
            r["round"] = (r["round"].as_u64().unwrap() / 2).into();
        }
        let path = out.join(format!("half-{parity}.json"));
        std::fs::write(&path, h.to_string()).unwrap();
        path
    };
    let (a, b) = (half(0), half(1));
    let o = harness(&["compare", a.to_str().unwrap(), b.to_str().unwrap(), "--filter", "x fnptr"]);
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let _ = std::fs::remove_dir_all(&out);
    let unchanged = "1 measurement(s) matching \"x fnptr\": 0 regression(s), 0 improvement(s), 1 unchanged";
    if o.status.code() == Some(0) && stdout.starts_with(unchanged) { Ok(()) } else { Err(stdout) }
}

/// Readers beyond the CPUs share one: each loses about half its time, which the verdict flags
/// (in the table and run.json); with `--strict` that is exit 4.
#[test]
fn readers_sharing_a_cpu_are_flagged_and_strict_exits_4() {
    let cpus = harness::env::affinity_cpus().len();
    let readers = (cpus + 1).to_string();
    let out = scratch("shared-cpu");
    let opts = [("--strategies", "fnptr"), ("--readers", readers.as_str()), ("--rate", "0"), ("--duration", "0.1")];
    let o = tiny_command(&out, &opts).arg("--oversubscribe").output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout.contains("FLAGGED fnptr 2/2: off CPU") && stdout.contains("interference: 1 of 1 rows flagged"),
        "{stdout}"
    );
    let run = harness::record::load_run(&out).unwrap();
    assert!(run.rows.iter().all(|r| r.interference.flagged() && r.sched.len() == cpus + 1), "{:?}", run.rows);
    assert!(run.rows.iter().all(|r| r.sched.iter().any(|s| s.involuntary_switches > Some(0))), "preemptions counted");
    let strict = scratch("shared-cpu-strict");
    let o = tiny_command(&strict, &opts).args(["--oversubscribe", "--strict"]).output().unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("--strict: rows were flagged for interference"), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&strict);
}

/// `json` (a run.json) with `edit` applied to every row.
fn with_every_row(json: &str, edit: impl FnMut(&mut serde_json::Value)) -> String {
    let mut run: serde_json::Value = serde_json::from_str(json).unwrap();
    run["rows"].as_array_mut().unwrap().iter_mut().for_each(edit);
    run.to_string()
}

/// `json` (a run.json) with `field` of its second row set to `value` (JSON text).
fn with_row_field(json: &str, field: &str, value: &str) -> String {
    let mut run: serde_json::Value = serde_json::from_str(json).unwrap();
    run["rows"][1][field] = serde_json::from_str(value).unwrap_or(serde_json::Value::Null);
    let text = run.to_string();
    // serde_json writes no number it cannot read back (1e999): put it in as text.
    if value == "1e999" { text.replacen("\"calls_per_sec\":null", "\"calls_per_sec\":1e999", 1) } else { text }
}

#[test]
fn env_reports_the_machine() {
    let o = harness(&["env", "--counters", "auto"]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    for key in ["cpu", "cpu model string", "kernel", "governor", "perf_event_paranoid", "counters", "percpu cpu id"] {
        assert!(text.contains(key), "{key} missing: {text}");
    }
    // The CPU by what it is (a probe: this holds on every machine, known CPU or not): the label's
    // family/model/stepping where cpuid answers, the microcode, every cache and the clocks, each
    // with a value or "unknown".
    let cpu = text.lines().find(|l| l.starts_with("cpu ")).unwrap_or_default();
    let cpu_record = harness::cpu::CpuIdentity::capture();
    assert!(cpu.contains(&cpu_record.label()), "{cpu}");
    if let (Some(f), Some(m), Some(s)) = (cpu_record.family, cpu_record.model, cpu_record.stepping) {
        assert!(cpu.contains(&format!("({f}/{m}/{s})")), "{cpu}");
    }
    for part in ["; microcode ", "; L1i ", ", L1d ", ", L2 ", ", L3 ", "; clock nominal ", " thread(s) per core"] {
        assert!(cpu.contains(part), "{part} missing: {cpu}");
    }
}

#[test]
fn counters_fall_back_with_a_reason_unless_required() {
    let probe = harness::counters::probe(harness::config::CountersMode::Require);
    let out = scratch("require");
    let o = tiny_run(&out, &[("--counters", "require"), ("--strategies", "fnptr"), ("--rate", "0")]);
    match probe {
        Ok(_) => assert!(o.status.success(), "{}", stderr(&o)),
        Err(_) => {
            assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
            assert!(stderr(&o).contains("--counters auto"), "{}", stderr(&o));
            // `env` exits as `run` does.
            let env = harness(&["env", "--counters", "require"]);
            assert_eq!(env.status.code(), Some(3), "{}", stderr(&env));
            // auto: the reason is said once and the run goes on with software counters.
            let auto = scratch("auto");
            let o = tiny_run(&auto, &[("--counters", "auto"), ("--strategies", "fnptr"), ("--rate", "0")]);
            assert!(o.status.success(), "{}", stderr(&o));
            assert_eq!(stderr(&o).matches("counters:").count(), 1, "{}", stderr(&o));
            let run = harness::record::load_run(&auto).unwrap();
            let c = run.env.counters.unwrap();
            assert!(!c.available && c.reason.is_some());
            assert!(
                run.rows.iter().all(|r| r.counters.as_ref().is_some_and(|c| c.values.contains_key("task_clock_ns")))
            );
            let _ = std::fs::remove_dir_all(&auto);
        }
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// A machine without fonts: `DISPATCH_BENCH_FONT_DIRS` points at an empty directory, so no
/// font is found; the run still writes its files, draws no plot, and says why once.
#[test]
fn without_a_font_a_run_writes_everything_but_plots_and_says_why() {
    let fonts = scratch("no-fonts");
    std::fs::create_dir_all(&fonts).unwrap();
    let out = scratch("no-font-run");
    let o = tiny_command(&out, &[("--strategies", "fnptr"), ("--rate", "0")])
        .env(plotfont::DIRS_VAR, &fonts)
        .output()
        .expect("run harness");
    assert!(o.status.success(), "{}", stderr(&o));
    for f in ["run.json", "report.md", "bmf.json"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let pngs: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "png"))
        .collect();
    assert!(pngs.is_empty(), "no font, yet plots: {pngs:?}");
    let why = format!(
        "no TrueType font found (looked for DejaVuSans.ttf or LiberationSans-Regular.ttf in {}",
        fonts.display()
    );
    assert_eq!(stderr(&o).matches("plots:").count(), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains(&why) && stderr(&o).contains("install fonts-dejavu-core"), "{}", stderr(&o));
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains(&format!("Plots: {why}")), "{report}");
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&fonts);
}

fn soak(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_soak")).args(args).output().expect("run soak")
}

/// What `soak --list` prints: scripts/soak and scripts/memcheck loop over it, one name a line.
fn per_task_names() -> Vec<&'static str> {
    let per_task = dispatch::strategy::ALL.iter().filter(|i| i.consistency == dispatch::strategy::Consistency::PerTask);
    per_task.map(|i| i.name).collect()
}

#[test]
fn soak_refuses_bad_input_with_code_2() {
    let valid = format!("valid names: {}", per_task_names().join(", "));
    let cases: &[(&[&str], &str)] = &[
        (&[], "--strategy <NAME>"),
        (&["--strategy"], "a value is required for '--strategy <NAME>'"),
        (&["--strategy", "nope"], &valid),
        (&["--strategy", "fnptr"], "not per-task consistent"),
        (&["--strategy", "klp", "--transitions", "0"], "'--transitions <N>': give a positive count"),
        (&["--strategy", "klp", "--transitions", "many"], "'--transitions <N>': give a positive count"),
        (&["--strategy", "klp", "--transitions", "-5"], "'--transitions <N>': give a positive count"),
        (&["--strategy", "klp", "--transitions", "1000000001"], "at most 1000000000"),
        (&["--strategy", "klp", "--transitions"], "a value is required for '--transitions <N>'"),
        (&["--strategy", "klp", "--minutes", "-1"], "'--minutes <M>': give 0.01 to 1440 minutes"),
        (&["--strategy", "klp", "--minutes", "nan"], "'--minutes <M>': give 0.01 to 1440 minutes"),
        (&["--strategy", "klp", "--minutes", "1e9"], "give 0.01 to 1440 minutes"),
        (&["--strategy", "klp", "--minutes", "1e300"], "give 0.01 to 1440 minutes"),
        (&["--strategy", "klp", "--minutes", "1e-300"], "give 0.01 to 1440 minutes"),
        (&["--strategy", "klp", "--minutes=0"], "give 0.01 to 1440 minutes"),
        (&["--strategy", "klp", "--minutes", "inf"], "give 0.01 to 1440 minutes"),
        (&["--strategy", "klp", "--transitions", "18446744073709551615"], "at most 1000000000"),
        (&["--strategy", "klp", "--transitions=18446744073709551616"], "give a positive count"),
        (&["--strategy", "klp", "--transitions=1e9"], "give a positive count"),
        (&["--strategy", "klp", "--transitions", "5", "--minutes", "1"], "cannot be used with '--minutes <M>'"),
        (&["--strategy", "klp", "--bogus", "1"], "unexpected argument '--bogus'"),
        (&["--list", "--strategy", "klp"], "'--list' cannot be used with"),
    ];
    for (args, expected) in cases {
        let o = soak(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(expected), "{args:?}: {}", stderr(&o));
    }
    // A short clean soak passes.
    let ok = soak(&["--strategy", "klp", "--transitions", "50"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
}

/// A strategy this machine cannot run is skipped by soak: one line on stderr with the reason,
/// exit 0, nothing soaked.
#[test]
fn soak_skips_an_unavailable_strategy_saying_why() {
    let o = Command::new(env!("CARGO_BIN_EXE_soak"))
        .args(["--strategy", "klp", "--transitions", "1000000000"])
        .env("DISPATCH_UNAVAILABLE", "klp")
        .output()
        .expect("run soak");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stderr(&o), format!("soak: klp: skipped: {KLP_REASON}\n"));
    assert!(o.stdout.is_empty(), "soaked: {}", String::from_utf8_lossy(&o.stdout));
}

#[test]
fn soak_list_prints_the_per_task_strategies_one_a_line() {
    let o = soak(&["--list"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let expected: String = per_task_names().iter().map(|n| format!("{n}\n")).collect();
    assert_eq!(String::from_utf8_lossy(&o.stdout), expected);
    assert!(o.stderr.is_empty());
}

#[test]
fn soak_help_documents_every_flag_and_the_exit_codes() {
    for flag in ["--help", "-h"] {
        let o = soak(&[flag]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let text = String::from_utf8_lossy(&o.stdout);
        for needle in [
            "--list",
            "--strategy <NAME>",
            "--transitions <N>",
            "1 to 10^9",
            "--minutes <M>",
            "1440",
            "Exit codes: 0 pass; 1 a check failed",
            "2 bad input",
        ] {
            assert!(text.contains(needle), "{flag}: {needle} missing: {text}");
        }
    }
}

#[test]
fn a_killed_run_leaves_no_output_directory() {
    let out = scratch("killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args([
            "run",
            "--strategies",
            "fnptr",
            "--readers",
            "1",
            "--rate",
            "0",
            "--regime-rows",
            "false",
            "--counters",
            "off",
        ])
        .args(["--duration", "30", "--rounds", "1", "--out", out.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!out.exists(), "a killed run must not leave {}", out.display());
}

/// Two runs as if from two machines (the second's CPU edited in its run.json, to a CPU no
/// machine has, its host name left the same, as two VMs' are): one report with a column per host,
/// labelled by CPU, and each host's environment; runs of different schema versions are refused.
#[test]
fn report_merges_runs_of_two_hosts_and_refuses_mixed_schemas() {
    let (a, b, merged) = (scratch("host-a"), scratch("host-b"), scratch("merged"));
    for dir in [&a, &b] {
        let o = tiny_run(dir, &[("--rate", "0")]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let mut run = common::as_another_cpu(&b, "Zen 99");
    let o = harness(&["report", a.to_str().unwrap(), b.to_str().unwrap(), "--out", merged.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let md = std::fs::read_to_string(merged.join("report.md")).unwrap();
    let host = harness::record::load_run(&a).unwrap().env.host_label();
    let other = format!("AMD Zen 99 (99/1/0), {} CPUs", run["env"]["cpu"]["cpus"]);
    assert!(md.contains(&format!("| strategy | {host} | {other} |")), "{md}");
    assert!(md.contains(&format!("### {other}")) && md.contains(&format!("### {host}")), "{md}");
    // fnptr's ratio to itself on both hosts (a ` !` after either when a busy machine flagged it).
    let fnptr_ratio =
        |l: &&str| l.starts_with("| fnptr | 1.00 (1.00-1.00)") && l.matches("1.00 (1.00-1.00)").count() == 2;
    assert!(md.contains("| klp |") && md.lines().any(|l| fnptr_ratio(&l)), "{md}");
    if plotfont::register().is_ok() {
        assert!(merged.join("ratio.png").is_file() && merged.join("ratio.svg").is_file(), "plot missing");
        // Every other plot merged too: each host's panels in one figure.
        assert!(merged.join("latency.svg").is_file() && merged.join("throughput.svg").is_file(), "plots not merged");
    }
    // rows.csv and bmf.json of the merge: every host's rows under one header, each benchmark
    // under its host's label.
    let csv = std::fs::read_to_string(merged.join("rows.csv")).unwrap();
    let runs = [&a, &b].map(|d| harness::record::load_run(d).unwrap());
    let lines: usize = runs.iter().map(|r| r.rows.iter().map(|row| row.sched.len().max(1)).sum::<usize>()).sum();
    assert_eq!(csv.lines().count(), 1 + lines, "{csv}");
    assert_eq!(csv.lines().filter(|l| l.starts_with("host,")).count(), 1);
    assert!(csv.contains(&format!("\"{other}\"")), "{csv}");
    let bmf: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(merged.join("bmf.json")).unwrap()).unwrap();
    assert!(bmf.as_object().unwrap().keys().any(|k| k.starts_with(&format!("{other}/"))), "{bmf}");
    assert!(bmf.as_object().unwrap().keys().any(|k| k.starts_with(&format!("{host}/"))), "{bmf}");
    // The same report again would overwrite: refused.
    let again = harness(&["report", a.to_str().unwrap(), b.to_str().unwrap(), "--out", merged.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));

    run["schema_version"] = 2.into();
    std::fs::write(b.join("run.json"), run.to_string()).unwrap();
    let mixed = scratch("mixed");
    let o = harness(&["report", a.to_str().unwrap(), b.to_str().unwrap(), "--out", mixed.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("different schema versions") && stderr(&o).contains("has schema 2"), "{}", stderr(&o));
    assert!(!mixed.exists(), "nothing written");
    for dir in [a, b, merged] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// A run with a writer keeps its distributions and its transitions' phases: run.json holds each
/// row's histograms (which decode into the row's own percentiles) and phases, `hgrm/` holds the
/// percentile files, report.md the phases table and its words, and `harness report` on the run
/// writes the same `.hgrm` files again from run.json alone.
#[test]
fn a_run_keeps_its_histograms_and_phases_and_report_reads_them() {
    let (dir, again) = (scratch("hist"), scratch("hist-report"));
    let o = tiny_command(&dir, &[("--rate", "max")]).output().expect("run harness");
    assert!(o.status.success(), "{}", stderr(&o));
    let run = harness::record::load_run(&dir).unwrap();
    for row in &run.rows {
        let h = harness::hist::decode(row.histograms.transition_ns.as_deref().expect("a writer ran")).unwrap();
        assert_eq!(h.len(), row.transitions, "one value per transition");
        assert_eq!(h.value_at_quantile(0.99) as f64 / 1000.0, row.transition_us.unwrap().p99);
        let phases: Vec<&str> = row.phases_us.iter().map(|p| p.phase.as_str()).collect();
        assert_eq!(phases, dispatch::Phases::NAMES, "every phase, in the engine's order");
        assert!(row.histograms.batch_ps.is_some());
    }
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        report.contains("Transition phases, us (p50 / p99):") && report.contains("| strategy | total | late | start |")
    );
    assert!(report.contains("Where the transitions' time went") && report.contains("Back to back, with 1 reader(s)"));
    let hgrm = |d: &Path| {
        let mut files: Vec<(String, String)> = std::fs::read_dir(d.join("hgrm"))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name().to_string_lossy().into_owned(), std::fs::read_to_string(e.path()).unwrap())
            })
            .collect();
        files.sort();
        files
    };
    let written = hgrm(&dir);
    let name = format!("{}.klp.transition.hgrm", run.rows[0].scenario.name());
    assert!(written.iter().any(|(n, _)| *n == name), "{written:?}");
    assert_eq!(written.len(), 4, "transition and batch, per strategy: {written:?}");
    let o = harness(&["report", dir.to_str().unwrap(), "--out", again.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(hgrm(&again), written, "report reads the histograms back from run.json");
    for d in [dir, again] {
        let _ = std::fs::remove_dir_all(d);
    }
}
