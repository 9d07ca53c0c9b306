//! Reading `run.json`: parsing, checking against the record types with messages that name the
//! row and field at fault, and reading older readable schemas as this one.

use std::fs;
use std::path::{Path, PathBuf};

use super::{OLDEST_READABLE, Row, RunFile, SCHEMA_VERSION};

/// The `run.json` of a run directory (or the file itself), parsed as JSON but not yet checked
/// against the schema, and its `schema_version`.
pub fn read_run_json(path: &Path) -> Result<(PathBuf, serde_json::Value, u64), String> {
    let file = if path.is_dir() { path.join("run.json") } else { path.to_path_buf() };
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
    // Rows first, one by one, so that a message names the row and its field.
    for (i, row) in value.get("rows").and_then(|r| r.as_array()).into_iter().flatten().enumerate() {
        let place = || {
            let name = |k: &str| row.get(k).and_then(|v| v.as_str()).unwrap_or("?").to_owned();
            format!("row {i} ({}/{})", name("scenario"), name("strategy"))
        };
        if let Err(e) = serde_json::from_value::<Row>(row.clone()) {
            let field = culprit::<Row>(row).map_or_else(String::new, |f| format!(", field {f}"));
            return Err(wrong(format!("{}{field}", place()), e));
        }
        if let Some((field, v)) = negative(row, String::new()) {
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
fn negative(v: &serde_json::Value, path: String) -> Option<(String, f64)> {
    let join = |k: &str| if path.is_empty() { k.to_owned() } else { format!("{path}.{k}") };
    match v {
        serde_json::Value::Number(n) => n.as_f64().filter(|x| *x < 0.0).map(|x| (path, x)),
        serde_json::Value::Object(o) => o.iter().find_map(|(k, v)| negative(v, join(k))),
        serde_json::Value::Array(a) => a.iter().enumerate().find_map(|(i, v)| negative(v, join(&i.to_string()))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run of schema 3 (from before `skipped`) reads as a run of this schema that skipped
    /// nothing, and a run of schema 3 or 4 (from before `env.cpu`) as one whose CPU was not
    /// recorded. Schema 2 (other fields) is still refused, saying which schemas are read.
    #[test]
    fn a_schema_3_run_reads_as_this_schema_without_skipped_strategies_or_cpu() {
        use crate::config::CallSites;
        use crate::record::test_support::{row, run};
        let mut value = serde_json::to_value(run(vec![row("klp", CallSites::PerSite, 0, 2.0)])).unwrap();
        value["schema_version"] = 4.into();
        value["env"].as_object_mut().unwrap().remove("cpu");
        let root = std::env::temp_dir().join(format!("dispatch-bench-load-{}", std::process::id()));
        fs::create_dir_all(&root).unwrap();
        let old = root.join("run.json");
        fs::write(&old, value.to_string()).unwrap();
        let read = load_run(&old).unwrap();
        assert_eq!((read.schema_version, read.env.cpu), (SCHEMA_VERSION, None));

        value["schema_version"] = 3.into();
        value.as_object_mut().unwrap().remove("skipped");
        fs::write(&old, value.to_string()).unwrap();
        let read = load_run(&old).unwrap();
        assert_eq!(read.schema_version, SCHEMA_VERSION);
        assert!(read.skipped.is_empty() && read.env.cpu.is_none());
        assert_eq!(read.rows.len(), 1);

        value["schema_version"] = 2.into();
        fs::write(&old, value.to_string()).unwrap();
        let e = load_run(&old).unwrap_err();
        assert!(e.contains(&format!("has schema_version 2, this harness reads 3 to {SCHEMA_VERSION}")), "{e}");
        let _ = fs::remove_dir_all(&root);
    }
}
