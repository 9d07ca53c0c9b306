//! What several test binaries share.

use std::path::Path;

/// Rewrites the run.json in `dir` as if made on another machine: a CPU no machine has (AMD
/// family 99, model 1, stepping 0, microarchitecture `microarchitecture`), its host name left as
/// it was, as two VMs' are. Returns the run as written.
pub fn as_another_cpu(dir: &Path, microarchitecture: &str) -> serde_json::Value {
    let mut run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
    run["env"]["cpu"]["vendor"] = "AMD".into();
    run["env"]["cpu"]["family"] = 99.into();
    run["env"]["cpu"]["model"] = 1.into();
    run["env"]["cpu"]["stepping"] = 0.into();
    run["env"]["cpu"]["microarchitecture"] = microarchitecture.into();
    std::fs::write(dir.join("run.json"), run.to_string()).unwrap();
    run
}
