//! A reader that panics aborts the run with its message, and nothing hangs on a barrier.

use std::time::{Duration, Instant};

use harness::config::{CountersMode, Ops, Order, Rate, RunConfig, Scenario};

#[test]
fn a_panicking_reader_aborts_the_run_without_hanging() {
    let out = std::env::temp_dir().join(format!("dispatch-bench-panic-{}", std::process::id()));
    let cfg = RunConfig {
        strategies: vec!["klp".into()],
        scenarios: vec![Scenario {
            readers: 2,
            rate: Rate::Max,
            sites: 8,
            order: Order::Seq,
            depth: 1,
            ops: Ops::Cycle,
            calls_per_safepoint: 256,
        }],
        duration: Duration::from_secs(30),
        runs: 1,
        counters: CountersMode::Off,
        oversubscribe: true,
        seed: 1,
        cpus: harness::env::affinity_cpus(),
        out: Some(out.clone()),
        panic_after_batches: Some(3),
    };
    let start = Instant::now();
    let err = harness::run(cfg, &mut |_| {}).expect_err("the run must fail");
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
    let cfg = RunConfig {
        strategies: vec!["klp".into()],
        scenarios: vec![Scenario {
            readers: 1,
            rate: Rate::Hz(1e9),
            sites: 8,
            order: Order::Seq,
            depth: 1,
            ops: Ops::Cycle,
            calls_per_safepoint: 256,
        }],
        duration: Duration::from_millis(50),
        runs: 1,
        counters: CountersMode::Off,
        oversubscribe: true,
        seed: 1,
        cpus: harness::env::affinity_cpus(),
        out: Some(out.clone()),
        panic_after_batches: None,
    };
    let outcome = harness::run(cfg, &mut |_| {}).unwrap();
    let row = &outcome.run.rows[0];
    assert_eq!(row.rate_target_hz, Some(1e9));
    assert_eq!(row.rate_kept, Some(false));
    assert!(outcome.table.contains("rate NOT kept"));
    let _ = std::fs::remove_dir_all(&out);
}
