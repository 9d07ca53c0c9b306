//! A reader that panics aborts the run with its message, and nothing hangs on a barrier.

use std::time::{Duration, Instant};

use harness::config::{CountersMode, Rate, RunConfig, Scenario};

/// One klp scenario on 8 hot sites, into `out`.
fn config(
    rate: Rate,
    readers: usize,
    duration: Duration,
    out: &std::path::Path,
    panic_after_batches: Option<u64>,
) -> RunConfig {
    RunConfig {
        strategies: vec!["klp".into()],
        scenarios: vec![Scenario { readers, rate, calls_per_safepoint: 256, ..Scenario::DEFAULT }],
        duration,
        warmup: Duration::ZERO,
        rounds: 1,
        counters: CountersMode::Off,
        oversubscribe: true,
        seed: 1,
        cpus: harness::env::affinity_cpus(),
        writer_cpu: None,
        out: Some(out.to_path_buf()),
        panic_after_batches,
        full_disk_after_files: None,
        before_commit: None,
    }
}

#[test]
fn a_panicking_reader_aborts_the_run_without_hanging() {
    let out = std::env::temp_dir().join(format!("dispatch-bench-panic-{}", std::process::id()));
    let cfg = config(Rate::Max, 2, Duration::from_secs(30), &out, Some(3));
    let start = Instant::now();
    let err = harness::run(cfg, Vec::new(), &mut |_| {}).expect_err("the run must fail");
    let msg = err.to_string();
    assert!(msg.contains("reader 0 panicked") && msg.contains("injected reader panic"), "{msg}");
    // Far less than the 30 s the readers would otherwise measure.
    assert!(start.elapsed() < Duration::from_secs(10), "took {:?}", start.elapsed());
    assert!(!out.exists(), "a failed run leaves no output directory");
}

#[test]
fn a_rate_the_writer_cannot_keep_is_reported_not_lowered() {
    let out = std::env::temp_dir().join(format!("dispatch-bench-rate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let cfg = config(Rate::Hz(1e9), 1, Duration::from_millis(50), &out, None);
    let outcome = harness::run(cfg, Vec::new(), &mut |_| {}).unwrap();
    let row = &outcome.run.rows[0];
    assert_eq!(row.rate_target_hz, Some(1e9));
    assert_eq!(row.rate_kept, Some(false));
    assert!(outcome.table.contains("rate NOT kept"));
    let _ = std::fs::remove_dir_all(&out);
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("dispatch-bench-faults-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// Another run commits the same directory while this one writes (the test hook runs between
/// writing the files and moving them into place).
fn occupy(dir: &std::path::Path) {
    std::fs::create_dir(dir).unwrap();
    std::fs::write(dir.join("run.json"), b"the other run").unwrap();
}

#[test]
fn a_target_that_appears_during_the_run_costs_no_measurement_and_is_said() {
    let root = scratch("late");
    let out = root.join("run");
    let mut cfg = config(Rate::Steady, 1, Duration::from_millis(20), &out, None);
    cfg.before_commit = Some(occupy);
    let outcome = harness::run(cfg, Vec::new(), &mut |_| {}).unwrap();
    assert!(!outcome.complete, "the run is not where it was asked to be");
    assert!(outcome.table.contains("klp"), "{}", outcome.table);
    let saved = &outcome.saved;
    assert_eq!(saved.dir.as_deref(), Some(root.join("run-2").as_path()));
    let moved = saved.moved.as_deref().unwrap();
    assert!(moved.contains("appeared while this run was measuring") && moved.contains("run-2"), "{moved}");
    // What the message says is true: the whole run is there, the other run untouched.
    let run = harness::record::load_run(&root.join("run-2")).unwrap();
    assert_eq!(run.rows.len(), 1);
    assert_eq!(std::fs::read(out.join("run.json")).unwrap(), b"the other run");
    assert_eq!(names(&root), ["run", "run-2"], "no staging directory left");
    let _ = std::fs::remove_dir_all(&root);
}

/// A short run into `<scratch>/run` whose disk is full after `files` files: the run completes
/// (not as asked) and its table is there. Returns the scratch directory, the target and the outcome.
fn run_on_a_full_disk(name: &str, files: usize) -> (std::path::PathBuf, std::path::PathBuf, harness::Outcome) {
    let root = scratch(name);
    let out = root.join("run");
    let mut cfg = config(Rate::Steady, 1, Duration::from_millis(20), &out, None);
    cfg.full_disk_after_files = Some(files);
    let outcome = harness::run(cfg, Vec::new(), &mut |_| {}).unwrap();
    assert!(!outcome.complete);
    assert!(outcome.table.contains("klp"), "the table is there: {}", outcome.table);
    (root, out, outcome)
}

#[test]
fn a_disk_full_after_run_json_keeps_it_and_names_what_is_missing() {
    let (root, out, outcome) = run_on_a_full_disk("full", 1);
    let saved = &outcome.saved;
    assert_eq!(saved.dir.as_deref(), Some(out.as_path()));
    assert!(saved.written.iter().any(|f| f == "run.json"), "{saved:?}");
    let (hgrm, unwritten): (Vec<&str>, Vec<&str>) =
        saved.unwritten.iter().map(|u| u.split(' ').next().unwrap()).partition(|f| f.starts_with("hgrm/"));
    let missing = ["report.md", "report.html", "bmf.json", "run.schema.json", "rows.csv"];
    assert_eq!(unwritten, missing);
    assert!(hgrm.len() == 1 && hgrm[0].ends_with(".klp.batch.hgrm"), "steady: one strategy's batch file: {hgrm:?}");
    assert!(saved.unwritten.iter().all(|u| u.contains("No space left on device")), "{saved:?}");
    assert_eq!(harness::record::load_run(&out).unwrap().rows.len(), 1);
    assert!(missing.iter().all(|f| !out.join(f).exists()));
    assert_eq!(names(&root), ["run"], "no staging directory left");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_disk_too_full_for_run_json_sends_the_run_to_a_rescue_directory() {
    let (root, _, outcome) = run_on_a_full_disk("full-0", 0);
    let saved = &outcome.saved;
    let rescue = saved.dir.clone().unwrap();
    assert!(rescue.starts_with(std::env::temp_dir()), "{}", rescue.display());
    let moved = saved.moved.as_deref().unwrap();
    assert!(
        moved.contains("run.json (") && moved.contains(&format!("saved in {} instead", rescue.display())),
        "{moved}"
    );
    assert!(saved.unwritten.is_empty(), "{saved:?}");
    assert_eq!(harness::record::load_run(&rescue).unwrap().rows.len(), 1);
    assert!(names(&root).is_empty(), "nothing half-written at the target: {:?}", names(&root));
    let _ = std::fs::remove_dir_all(&rescue);
    let _ = std::fs::remove_dir_all(&root);
}
