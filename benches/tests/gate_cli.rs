//! The gate's inputs, given garbage: a message naming the problem and the fix, and exit code 2
//! (unusable) — never a pass.

use std::path::PathBuf;
use std::process::{Command, Output};

fn gate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gate")).args(args).output().expect("run gate")
}

fn scratch(name: &str, text: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("dispatch-bench-gate-{}-{name}", std::process::id()));
    std::fs::write(&p, text).unwrap();
    p
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const MEASURED: &str = r#"{"group":"read_path","function_name":"steady","id":"klp","profiles":[{"data":{"total":{"metrics":{"Ir":{"values":{"new":35110}},"Bim":{"values":{"new":8}}}}}}]}"#;

/// What the suite printed before it ran callgrind with --branch-sim=yes.
const MEASURED_WITHOUT_BIM: &str = r#"{"group":"read_path","function_name":"steady","id":"klp","profiles":[{"data":{"total":{"metrics":{"Ir":{"values":{"new":35110}}}}}}]}"#;

/// A baseline from before indirect mispredictions were recorded.
const SCHEMA_1_BASELINE: &str = r#"{"schema":1,"versions":{"rustc":"r","valgrind":"v","gungraun":"g"},"limits":{"relative_pct":2.0,"absolute_per_call":0.5},"benchmarks":{"read_path::steady::klp":{"instructions":35110,"calls":1000}}}"#;

#[test]
fn unusable_inputs_exit_2() {
    let measured = scratch("measured.json", MEASURED);
    let m = measured.to_str().unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![], "required arguments were not provided:\n  --measured <FILE>"),
        (vec!["--bogus".into()], "unexpected argument '--bogus'"),
        (vec!["--measured".into()], "a value is required for '--measured <FILE>'"),
        (vec!["--measured".into(), "".into()], "'--measured <FILE>': give a file name"),
        (vec!["--measured".into(), m.into(), "--baseline".into()], "a value is required for '--baseline <FILE>'"),
        (vec!["--measured".into(), m.into(), "--bmf".into(), "".into()], "'--bmf <FILE>': give a file name"),
        (vec!["--measured".into(), "/nonexistent/measured.json".into()], "cannot read"),
        (vec!["--measured".into(), scratch("garbage.json", "garbage").to_str().unwrap().into()], "not JSON"),
        (vec!["--measured".into(), scratch("empty.json", "").to_str().unwrap().into()], "no benchmark results"),
        (
            vec!["--measured".into(), scratch("no-bim.json", MEASURED_WITHOUT_BIM).to_str().unwrap().into()],
            "no Bim count: the suite must run callgrind with --branch-sim=yes",
        ),
        (
            vec!["--measured".into(), m.into(), "--baseline".into(), "/nonexistent/base.json".into()],
            "scripts/gate --update",
        ),
        (
            vec![
                "--measured".into(),
                m.into(),
                "--baseline".into(),
                scratch("corrupt.json", "{\"schema\":").to_str().unwrap().into(),
            ],
            "corrupt",
        ),
        (
            vec![
                "--measured".into(),
                m.into(),
                "--baseline".into(),
                scratch("blank.json", " ").to_str().unwrap().into(),
            ],
            "empty",
        ),
        (
            vec![
                "--measured".into(),
                m.into(),
                "--baseline".into(),
                scratch("schema1.json", SCHEMA_1_BASELINE).to_str().unwrap().into(),
            ],
            "unusable: regenerate it with scripts/gate --update",
        ),
    ];
    for (args, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = gate(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(expected), "{args:?}: {}", stderr(&o));
    }
}

/// The suite's record of skipped strategies, garbled: unusable, naming the file and the fix,
/// before any tool is needed; the same run without the record gets past it.
#[test]
fn a_garbled_record_of_skipped_strategies_is_unusable() {
    let measured = scratch("skip-measured.json", MEASURED);
    let record = scratch("skipped.tsv", "klp without a tab\n");
    let o = gate(&["--measured", measured.to_str().unwrap(), "--skipped", record.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("skipped.tsv line 1") && stderr(&o).contains("delete it"), "{}", stderr(&o));
    let well_formed = scratch("skipped-ok.tsv", "klp\tno klp here\n");
    let o = gate(&["--measured", measured.to_str().unwrap(), "--skipped", well_formed.to_str().unwrap()]);
    assert!(stderr(&o).contains("gate: klp skipped: unavailable on this machine: no klp here"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("line 1"), "{}", stderr(&o));
}

#[test]
fn help_documents_every_flag_and_the_exit_codes() {
    let o = gate(&["--help"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    let documented = [
        "--measured <FILE>",
        "--baseline <FILE>",
        "results/baseline/instructions.json",
        "--update",
        "--bmf <FILE>",
        "--skipped <FILE>",
        "skipped by the suite",
        "Exit codes: 0 pass; 1 regression; 2 unusable input",
        "missing tool",
        "--branch-sim=yes",
        "more than 1 instruction per call over the kernel's",
    ];
    let missing: Vec<_> = documented.iter().filter(|d| !text.contains(*d)).collect();
    assert!(missing.is_empty(), "--help lacks {missing:?}: {text}");
    // Every doc comment is one line, so -h is the same help.
    assert_eq!(gate(&["-h"]).stdout, o.stdout);
}

#[test]
fn the_gate_script_refuses_unknown_arguments() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/gate");
    for args in [&["--bogus"][..], &["--baseline"]] {
        let o = Command::new("bash").arg(script).args(args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("gate:"), "{}", stderr(&o));
    }
}

/// A schema-2 baseline of the one benchmark in `MEASURED`, with `benchmarks` and `limits` as given.
fn baseline(benchmarks: &str, limits: &str) -> String {
    format!(
        r#"{{"schema":2,"versions":{{"rustc":"r","valgrind":"v","gungraun":"g"}},"limits":{limits},"benchmarks":{benchmarks}}}"#
    )
}

const LIMITS: &str = r#"{"relative_pct":2.0,"absolute_per_call":0.5,"bim_per_call":0.05,"bim_absolute":2.0}"#;
const KLP: &str = r#"{"read_path::steady::klp":{"instructions":35110,"indirect_mispredictions":8,"calls":1000}}"#;

/// Baselines that would gate nothing, or with nonsense limits: unusable (2), reported before the
/// tools are asked for their versions.
#[test]
fn empty_foreign_and_nonsense_baselines_exit_2() {
    let m = scratch("measured-cov.json", MEASURED);
    let other = r#"{"read_path::steady::other":{"instructions":1,"indirect_mispredictions":0,"calls":1000}}"#;
    let cases = [
        ("empty", baseline("{}", LIMITS), "covers 0 of the 1 measured benchmarks"),
        ("foreign", baseline(other, LIMITS), "covers 0 of the 1 measured benchmarks"),
        ("negative", baseline(KLP, &LIMITS.replace("2.0,", "-2.0,")), "limits.relative_pct is -2, give 0 to 100"),
        ("huge", baseline(KLP, &LIMITS.replace("2.0,", "1e9,")), "limits.relative_pct is 1000000000"),
    ];
    for (name, text, expected) in cases {
        let b = scratch(&format!("base-{name}.json"), &text);
        let o = gate(&["--measured", m.to_str().unwrap(), "--baseline", b.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{name}: {}", stderr(&o));
        assert!(stderr(&o).contains(expected), "{name}: {}", stderr(&o));
    }
}

/// An output path equal to an input path is refused before anything is written; the input is
/// untouched.
#[test]
fn an_output_over_an_input_is_refused_before_writing() {
    let m = scratch("measured-same.json", MEASURED);
    let text = baseline(KLP, LIMITS);
    let b = scratch("base-same.json", &text);
    let link = b.with_file_name(format!("dispatch-bench-gate-{}-link.json", std::process::id()));
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&b, &link).unwrap();
    let dotted = b.parent().unwrap().join(".").join(b.file_name().unwrap());
    let (ms, bs) = (m.to_str().unwrap(), b.to_str().unwrap());
    let cases: [(Vec<&str>, &str); 5] = [
        (vec!["--measured", ms, "--baseline", bs, "--bmf", bs], "--baseline and --bmf are the same file"),
        (vec!["--measured", ms, "--baseline", bs, "--bmf", link.to_str().unwrap()], "--baseline and --bmf"),
        (vec!["--measured", ms, "--baseline", bs, "--bmf", dotted.to_str().unwrap()], "--baseline and --bmf"),
        (vec!["--measured", ms, "--baseline", bs, "--bmf", ms], "--measured and --bmf are the same file"),
        (vec!["--measured", ms, "--baseline", ms, "--update"], "--measured and --baseline are the same file"),
    ];
    for (args, expected) in cases {
        let o = gate(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(expected), "{args:?}: {}", stderr(&o));
        assert_eq!(std::fs::read_to_string(&b).unwrap(), text, "{args:?}: the baseline was overwritten");
        assert_eq!(std::fs::read_to_string(&m).unwrap(), MEASURED, "{args:?}: the measurement was overwritten");
    }
    // A --bmf that does not exist yet, in another directory, is no input.
    let bmf = std::env::temp_dir().join(format!("dispatch-bench-gate-{}-out.json", std::process::id()));
    let _ = std::fs::remove_file(&bmf);
    let o = gate(&["--measured", ms, "--baseline", bs, "--bmf", bmf.to_str().unwrap()]);
    assert!(!stderr(&o).contains("same file"), "{}", stderr(&o));
    let _ = std::fs::remove_file(&bmf);
    let _ = std::fs::remove_file(&link);
}

#[test]
fn gate_takes_flag_equals_value() {
    let m = scratch("measured-eq.json", MEASURED);
    let b = scratch("base-eq.json", &baseline("{}", LIMITS));
    let o = gate(&[&format!("--measured={}", m.display()), &format!("--baseline={}", b.display())]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("covers 0 of the 1"), "{}", stderr(&o));
}
