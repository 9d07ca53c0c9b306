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

const MEASURED: &str = r#"{"group":"read_path","function_name":"steady","id":"klp","profiles":[{"data":{"total":{"metrics":{"Ir":{"values":{"new":35110}}}}}}]}"#;

#[test]
fn unusable_inputs_exit_2() {
    let measured = scratch("measured.json", MEASURED);
    let m = measured.to_str().unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![], "--measured FILE"),
        (vec!["--bogus".into()], "unknown argument"),
        (vec!["--measured".into()], "needs a file"),
        (vec!["--measured".into(), "/nonexistent/measured.json".into()], "cannot read"),
        (vec!["--measured".into(), scratch("garbage.json", "garbage").to_str().unwrap().into()], "not JSON"),
        (vec!["--measured".into(), scratch("empty.json", "").to_str().unwrap().into()], "no benchmark results"),
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
    ];
    for (args, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = gate(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(expected), "{args:?}: {}", stderr(&o));
    }
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
