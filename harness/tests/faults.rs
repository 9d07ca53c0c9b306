//! A reader that panics aborts the run with its message, and nothing hangs on a barrier.

use std::time::{Duration, Instant};

use harness::config::{CallSites, CountersMode, Ops, Order, Rate, RunConfig, Scenario};

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
        scenarios: vec![Scenario {
            call_sites: CallSites::PerSite,
            readers,
            rate,
            sites: 8,
            order: Order::Seq,
            depth: 1,
            ops: Ops::Cycle,
            calls_per_safepoint: 256,
        }],
        duration,
        runs: 1,
        counters: CountersMode::Off,
        oversubscribe: true,
        seed: 1,
        cpus: harness::env::affinity_cpus(),
        out: Some(out.to_path_buf()),
        panic_after_batches,
    }
}

#[test]
fn a_panicking_reader_aborts_the_run_without_hanging() {
    let out = std::env::temp_dir().join(format!("dispatch-bench-panic-{}", std::process::id()));
    let cfg = config(Rate::Max, 2, Duration::from_secs(30), &out, Some(3));
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
    let cfg = config(Rate::Hz(1e9), 1, Duration::from_millis(50), &out, None);
    let outcome = harness::run(cfg, &mut |_| {}).unwrap();
    let row = &outcome.run.rows[0];
    assert_eq!(row.rate_target_hz, Some(1e9));
    assert_eq!(row.rate_kept, Some(false));
    assert!(outcome.table.contains("rate NOT kept"));
    let _ = std::fs::remove_dir_all(&out);
}
