//! Reading `run.json`: parsing, checking against the record types with messages that name the
//! row and field at fault, and reading older readable schemas as this one.

use std::fs;
use std::path::{Path, PathBuf};

use super::{OLDEST_READABLE, Row, RunFile, SCHEMA_VERSION};
use crate::config::Scenario;

/// The `run.json` of a run directory (or the file itself), parsed as JSON but not yet checked
/// against the schema, and its `schema_version`.
pub fn read_run_json(path: &Path) -> Result<(PathBuf, serde_json::Value, u64), String> {
    let file = if path.is_dir() { path.join("run.json") } else { path.to_path_buf() };
    // Before opening it: a FIFO would block the open until a writer came, a device would be read
    // for ever. Neither is a run.
    if let Ok(meta) = fs::metadata(&file)
        && !meta.is_file()
    {
        return Err(format!(
            "{} is neither a run directory nor a regular file (a FIFO, socket or device?); give a run directory or \
             its run.json",
            file.display()
        ));
    }
    let text = fs::read_to_string(&file)
        .map_err(|e| format!("cannot read {}: {e}; give a run directory or its run.json", file.display()))?;
    if text.trim().is_empty() {
        return Err(format!("{} is empty; it is not a complete run", file.display()));
    }
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not valid JSON ({e}); it is corrupt or not a run.json", file.display()))?;
    match value.get("schema_version") {
        Some(v) if v.is_u64() => {
            let version = v.as_u64().expect("checked");
            Ok((file, value, version))
        }
        Some(v) => Err(format!(
            "{} has a schema_version of the wrong type ({v}, {}), where a run.json has the number {SCHEMA_VERSION}; \
             it is corrupt or not a run.json",
            file.display(),
            kind(v)
        )),
        None => Err(format!("{} has no schema_version; it is not a run.json", file.display())),
    }
}

/// Reads a run from a run directory or a `run.json`, with errors that say what to do.
pub fn load_run(path: &Path) -> Result<RunFile, String> {
    let (file, value, version) = read_run_json(path)?;
    if !readable(version) {
        return Err(format!(
            "{} has schema_version {version}, this harness reads {OLDEST_READABLE} to {SCHEMA_VERSION}; re-run it \
             with this harness",
            file.display()
        ));
    }
    let wrong = |place: String, e: serde_json::Error| {
        format!("{}: {place}: {e}; it does not match schema {version} (results/SCHEMA.md)", file.display())
    };
    let mut value = value;
    if version < 5 {
        to_schema_5(&mut value).map_err(|e| format!("{}: {e}; it is corrupt", file.display()))?;
    }
    // Rows first, one by one, so that a message names the row and its field.
    for (i, row) in value.get("rows").and_then(|r| r.as_array()).into_iter().flatten().enumerate() {
        let place = || {
            let scenario = row.get("scenario").and_then(|v| serde_json::from_value::<Scenario>(v.clone()).ok());
            let strategy = row.get("strategy").and_then(|v| v.as_str()).unwrap_or("?");
            format!("row {i} ({}/{strategy})", scenario.map_or_else(|| "?".to_owned(), |s| s.name()))
        };
        if let Err(e) = serde_json::from_value::<Row>(row.clone()) {
            let field = culprit::<Row>(row).map_or_else(String::new, |f| format!(", field {f}"));
            return Err(wrong(format!("{}{field}", place()), e));
        }
        for field in ["batch_ps", "transition_ns"] {
            if let Some(text) = row.pointer(&format!("/histograms/{field}")).and_then(|v| v.as_str())
                && let Err(e) = crate::hist::decode(text)
            {
                return Err(format!("{}: {}, field histograms.{field}: {e}; it is corrupt", file.display(), place()));
            }
        }
        if let Some((field, v)) = negative(row) {
            return Err(format!(
                "{}: {}, field {field}: {v} is negative; every count, time and rate of a run is 0 or more: it is corrupt",
                file.display(),
                place()
            ));
        }
    }
    let mut run = serde_json::from_value::<RunFile>(value.clone()).map_err(|e| {
        let field = culprit::<RunFile>(&value).map_or_else(|| "top level".to_owned(), |f| format!("field {f}"));
        wrong(field, e)
    })?;
    // An older readable schema lacks only fields that default to what its harness did (schema
    // 3: nothing skipped), so the run is this schema's: compare and report take it beside new ones.
    run.schema_version = SCHEMA_VERSION;
    Ok(run)
}

/// Reads a run of schema 4 or older as schema 5. Its env has `percpu_path` and `textpoke_text`
/// where schema 5 has `strategy_facts`; its rows name their scenario (`"scenario":
/// "per-site_r1_steady_…"`) beside its `call_sites` and `readers`, and their round `run`. Each
/// row's scenario becomes the one of `config.scenarios` that has that name, as those harnesses
/// named it ([`Scenario::schema_4_name`]: `rand` where names now say `random`; a run's names are
/// unique: the harness drops duplicate scenarios), and `run` becomes `round`. Names are matched,
/// never parsed.
fn to_schema_5(value: &mut serde_json::Value) -> Result<(), String> {
    let scenarios: Vec<Scenario> = value
        .pointer("/config/scenarios")
        .map(|v| serde_json::from_value(v.clone()))
        .transpose()
        .map_err(|e| format!("config.scenarios: {e}"))?
        .unwrap_or_default();
    if let Some(env) = value.get_mut("env").and_then(|e| e.as_object_mut()) {
        let mut facts = Vec::new();
        for (field, strategy, what) in [("percpu_path", "percpu", "cpu id"), ("textpoke_text", "textpoke", "text")] {
            if let Some(v) = env.remove(field).filter(|v| v.as_str().is_some_and(|v| !v.is_empty())) {
                facts.push(serde_json::json!({"strategy": strategy, "what": what, "value": v, "warning": null}));
            }
        }
        env.insert("strategy_facts".into(), facts.into());
    }
    let Some(rows) = value.get_mut("rows").and_then(|r| r.as_array_mut()) else { return Ok(()) };
    for (i, row) in rows.iter_mut().enumerate() {
        let Some(row) = row.as_object_mut() else { continue };
        if let Some(name) = row.get("scenario").and_then(|v| v.as_str()) {
            let scenario = scenarios
                .iter()
                .find(|s| s.schema_4_name() == name)
                .ok_or_else(|| format!("row {i}: its scenario {name:?} is none of config.scenarios"))?;
            row.insert("scenario".into(), serde_json::to_value(scenario).expect("a scenario serializes"));
        }
        for old in ["call_sites", "readers"] {
            row.remove(old);
        }
        if let Some(round) = row.remove("run") {
            row.insert("round".into(), round);
        }
    }
    Ok(())
}

/// Whether this harness reads a `run.json` of schema `version` ([`OLDEST_READABLE`] to
/// [`SCHEMA_VERSION`]).
pub fn readable(version: u64) -> bool {
    (u64::from(OLDEST_READABLE)..=u64::from(SCHEMA_VERSION)).contains(&version)
}

/// The JSON type of `v`, for messages.
fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number that is no whole number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The field of `object` that keeps it from being a `T`: the one whose removal makes it one, or
/// leaves only that field missing (serde's type errors name no field). `None` when no single
/// field is to blame.
fn culprit<T: serde::de::DeserializeOwned>(object: &serde_json::Value) -> Option<String> {
    let fields = object.as_object()?;
    fields
        .keys()
        .find(|k| {
            let mut without = fields.clone();
            without.remove(*k);
            match serde_json::from_value::<T>(without.into()) {
                Ok(_) => true,
                Err(e) => e.to_string() == format!("missing field `{k}`"),
            }
        })
        .cloned()
}

/// The first negative number in `v` and its path (e.g. `batch_ns.p99`).
fn negative(v: &serde_json::Value) -> Option<(String, f64)> {
    super::leaves(v).into_iter().find_map(|(path, leaf)| leaf.as_f64().filter(|x| *x < 0.0).map(|x| (path, x)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run read back is the run written, to the last bit of every figure: `harness report`
    /// writes run.json again from what it read (without serde_json's `float_roundtrip` the last
    /// digit of some figures moved).
    #[test]
    fn figures_survive_a_write_and_a_read_exactly() {
        use crate::config::CallSites;
        use crate::record::test_support::{row, run};
        let mut r = row("klp", CallSites::PerSite, 0, 1.0024433452940567);
        r.calls_per_sec = 942723506.8231075;
        r.ratio_to_fnptr = Some(0.9943091620190059);
        let written = serde_json::to_string_pretty(&run(vec![r])).unwrap();
        let root = std::env::temp_dir().join(format!("dispatch-bench-exact-{}", std::process::id()));
        fs::create_dir_all(&root).unwrap();
        fs::write(root.join("run.json"), &written).unwrap();
        let read = load_run(&root).unwrap();
        let _ = fs::remove_dir_all(&root);
        assert_eq!(serde_json::to_string_pretty(&read).unwrap(), written);
    }

    /// A FIFO as BASE once hung `compare` (the open waits for a writer); a device would be read
    /// for ever. Both are refused at once, before opening.
    #[test]
    fn a_fifo_or_a_device_is_refused_without_opening_it() {
        let fifo = std::env::temp_dir().join(format!("dispatch-bench-fifo-{}", std::process::id()));
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path; mkfifo only creates a file.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        let e = read_run_json(&fifo).unwrap_err();
        let _ = fs::remove_file(&fifo);
        assert!(e.contains("neither a run directory nor a regular file"), "{e}");
        let e = read_run_json(Path::new("/dev/zero")).unwrap_err();
        assert!(e.contains("neither a run directory nor a regular file"), "{e}");
    }

    /// A run of schema 3 (from before `skipped`) reads as a run of this schema that skipped
    /// nothing, and a run of schema 3 or 4 (from before `env.cpu` and the rows' scenario objects)
    /// as one whose CPU was not recorded, each row's scenario the config's of its name. Schema 2
    /// (other fields) is still refused, saying which schemas are read.
    #[test]
    fn schema_3_and_4_runs_read_as_this_schema() {
        use crate::config::CallSites;
        use crate::record::test_support::{row, run};
        let current = run(vec![row("klp", CallSites::PerSite, 0, 2.0), row("klp", CallSites::Shared, 1, 3.0)]);
        let mut value = serde_json::to_value(&current).unwrap();
        // Schema 4's form: no env.cpu, each row naming its scenario and round `run`.
        value["schema_version"] = 4.into();
        let env = value["env"].as_object_mut().unwrap();
        env.remove("cpu");
        env.remove("strategy_facts");
        env.insert("percpu_path".into(), "rseq".into());
        value["config"]["scenarios"] =
            serde_json::to_value([&current.rows[0].scenario, &current.rows[1].scenario]).unwrap();
        for (row, r) in value["rows"].as_array_mut().unwrap().iter_mut().zip(&current.rows) {
            let row = row.as_object_mut().unwrap();
            row.insert("scenario".into(), r.scenario.schema_4_name().into());
            row.insert("call_sites".into(), r.scenario.call_sites.name().into());
            row.insert("readers".into(), r.scenario.readers.into());
            let round = row.remove("round").unwrap();
            row.insert("run".into(), round);
        }
        let root = std::env::temp_dir().join(format!("dispatch-bench-load-{}", std::process::id()));
        fs::create_dir_all(&root).unwrap();
        let old = root.join("run.json");
        fs::write(&old, value.to_string()).unwrap();
        let read = load_run(&old).unwrap();
        assert_eq!((read.schema_version, read.env.cpu), (SCHEMA_VERSION, None));
        assert_eq!(read.rows, current.rows, "each row's scenario is config's of its name, its round its `run`");
        assert_eq!(read.env.strategy_facts, current.env.strategy_facts, "percpu_path became percpu's fact");

        // A row naming a scenario the config lacks is corrupt, said so with the row.
        let mut stray = value.clone();
        stray["rows"][1]["scenario"] = "per-site_r9_steady_s8seq_d1_cycle_c4096".into();
        fs::write(&old, stray.to_string()).unwrap();
        let e = load_run(&old).unwrap_err();
        assert!(e.contains("row 1: its scenario \"per-site_r9_steady_s8seq_d1_cycle_c4096\" is none of config"), "{e}");

        value["schema_version"] = 3.into();
        value.as_object_mut().unwrap().remove("skipped");
        fs::write(&old, value.to_string()).unwrap();
        let read = load_run(&old).unwrap();
        assert_eq!(read.schema_version, SCHEMA_VERSION);
        assert!(read.skipped.is_empty() && read.env.cpu.is_none());
        assert_eq!(read.rows.len(), 2);

        value["schema_version"] = 2.into();
        fs::write(&old, value.to_string()).unwrap();
        let e = load_run(&old).unwrap_err();
        assert!(e.contains(&format!("has schema_version 2, this harness reads 3 to {SCHEMA_VERSION}")), "{e}");
        let _ = fs::remove_dir_all(&root);
    }

    /// A random-order scenario was named `..._s2048rand_...` by the harnesses of schema 3 and 4
    /// and is `..._s2048random_...` now: their rows, which name their scenario, still find it in
    /// `config.scenarios`, and the run reads with this harness's names.
    #[test]
    fn schema_4_rows_find_their_random_order_scenarios_by_the_old_name() {
        use crate::config::{CallSites, Order};
        use crate::record::test_support::{row, run};
        let current = run(vec![row("klp", CallSites::Cold, 0, 2.0), row("klp", CallSites::PerSite, 0, 1.0)]);
        let cold = current.rows[0].scenario.clone();
        assert_eq!(cold.order, Order::Random);
        let mut value = serde_json::to_value(&current).unwrap();
        value["schema_version"] = 4.into();
        value["config"]["scenarios"] = serde_json::to_value([&cold, &current.rows[1].scenario]).unwrap();
        // As a schema-4 harness wrote them: literally, not derived, so that this test fails if
        // the old name is ever derived differently.
        for (row, name) in value["rows"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .zip(["cold_r1_steady_s2048rand_d1_cycle_c2048", "per-site_r1_steady_s8seq_d1_cycle_c4096"])
        {
            let row = row.as_object_mut().unwrap();
            row.insert("scenario".into(), name.into());
            let round = row.remove("round").unwrap();
            row.insert("run".into(), round);
        }
        let root = std::env::temp_dir().join(format!("dispatch-bench-load-rand-{}", std::process::id()));
        fs::create_dir_all(&root).unwrap();
        let old = root.join("run.json");
        fs::write(&old, value.to_string()).unwrap();
        let read = load_run(&old);
        let _ = fs::remove_dir_all(&root);
        let read = read.unwrap();
        assert_eq!(read.rows, current.rows, "each row's scenario is config's of its old name");
        assert_eq!(read.rows[0].scenario.name(), "cold_r1_steady_s2048random_d1_cycle_c2048");
    }

    /// A run of schema 5 (from before the fidelity check) reads as one without a check; a run of
    /// this schema keeps its check, every C round included.
    #[test]
    fn schema_5_runs_read_without_a_fidelity_check_and_this_schema_keeps_it() {
        use crate::config::CallSites;
        use crate::record::test_support::{row, run};
        use crate::record::{CRound, FidelityCheck};
        let mut current = run(vec![row("klp", CallSites::PerSite, 0, 2.0)]);
        current.fidelity_check = Some(FidelityCheck {
            scenario: current.rows[0].scenario.name(),
            klp_over_fnptr: 1.2,
            c_handler_over_c_fnptr: 1.15,
            c_fnptr_over_c_direct: 1.1,
            fidelity: 1.2 / 1.15,
            limit: 1.1,
            within: true,
            rounds: vec![CRound { round: 0, direct_ns: 0.8, fnptr_ns: 0.9, handler_ns: 1.03 }],
        });
        let root = std::env::temp_dir().join(format!("dispatch-bench-load-fidelity-{}", std::process::id()));
        fs::create_dir_all(&root).unwrap();
        let file = root.join("run.json");
        let mut value = serde_json::to_value(&current).unwrap();
        fs::write(&file, value.to_string()).unwrap();
        assert_eq!(load_run(&file).unwrap().fidelity_check, current.fidelity_check);
        value["schema_version"] = 5.into();
        value.as_object_mut().unwrap().remove("fidelity_check");
        fs::write(&file, value.to_string()).unwrap();
        let read = load_run(&file).unwrap();
        assert_eq!((read.schema_version, read.fidelity_check), (SCHEMA_VERSION, None));
        let _ = fs::remove_dir_all(&root);
    }

    /// A schema-5 run (from before phases and histograms) reads as a schema-6 run without them; a
    /// schema-6 run keeps them exactly; a histogram that does not decode is refused with its row
    /// and field.
    #[test]
    fn schema_5_runs_read_without_histograms_and_histograms_round_trip() {
        use crate::config::CallSites;
        use crate::record::test_support::{row, run};
        use crate::record::{Histograms, Percentiles, PhasePercentiles};
        let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).unwrap();
        for v in [1_500u64, 2_000, 2_000, 9_000, 4_000_000] {
            h.record(v).unwrap();
        }
        let mut r = row("klp", CallSites::PerSite, 0, 2.0);
        r.histograms = Histograms { batch_ps: None, transition_ns: Some(crate::hist::encode(&h)) };
        let us = Percentiles { p50: 1.0, p99: 2.0, p999: 3.0, max: 4.0 };
        r.phases_us = vec![PhasePercentiles { phase: "migrate".into(), us }];
        let current = run(vec![r]);
        let root = std::env::temp_dir().join(format!("dispatch-bench-load6-{}", std::process::id()));
        fs::create_dir_all(&root).unwrap();
        let file = root.join("run.json");
        fs::write(&file, serde_json::to_string(&current).unwrap()).unwrap();
        let read = load_run(&file).unwrap();
        assert_eq!(read.rows, current.rows);
        let back = crate::hist::decode(read.rows[0].histograms.transition_ns.as_deref().unwrap()).unwrap();
        assert_eq!(back, h, "the histogram survives run.json exactly");

        let mut old = serde_json::to_value(&current).unwrap();
        old["schema_version"] = 5.into();
        for field in ["phases_us", "histograms"] {
            old["rows"][0].as_object_mut().unwrap().remove(field);
        }
        fs::write(&file, old.to_string()).unwrap();
        let read = load_run(&file).unwrap();
        assert_eq!(read.schema_version, SCHEMA_VERSION);
        assert!(read.rows[0].phases_us.is_empty() && read.rows[0].histograms == Histograms::default());

        let mut corrupt = serde_json::to_value(&current).unwrap();
        corrupt["rows"][0]["histograms"]["transition_ns"] = "AAAA".into();
        fs::write(&file, corrupt.to_string()).unwrap();
        let e = load_run(&file).unwrap_err();
        assert!(e.contains("row 0 (") && e.contains("field histograms.transition_ns: not an HdrHistogram"), "{e}");
        let _ = fs::remove_dir_all(&root);
    }
}
