//! Where results go, written atomically: every file of a run is written into a hidden temporary
//! directory beside the target, which is renamed into place at the end, so a killed run leaves
//! no half-written `run.json` and an existing run is never overwritten.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::record::{RunFile, SCHEMA_VERSION};

/// `results/runs` of the workspace this binary was built in, if it exists, else `./results/runs`.
pub fn default_root() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(|p| p.join("results"));
    match workspace {
        Some(results) if results.is_dir() => results.join("runs"),
        _ => PathBuf::from("results/runs"),
    }
}

/// `<timestamp>-<host>` under the default root.
pub fn default_dir(host: &str) -> PathBuf {
    let stamp = utc_now().replace([':', '-'], "");
    default_root().join(format!("{stamp}-{host}"))
}

/// Refuses a target that exists or whose parent cannot be created or written. Called before
/// anything is measured.
pub fn check_target(dir: &Path) -> Result<(), String> {
    if dir.exists() {
        return Err(format!(
            "output directory {} already exists; choose another --out (runs are never overwritten)",
            dir.display()
        ));
    }
    let parent = parent_of(dir);
    fs::create_dir_all(&parent)
        .map_err(|e| format!("cannot create {}: {e}; choose a writable --out", parent.display()))?;
    static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    // Relaxed: only distinct numbers are needed.
    let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let probe = parent.join(format!(".dispatch-bench-probe-{}-{n}", std::process::id()));
    fs::create_dir(&probe)
        .and_then(|()| fs::remove_dir(&probe))
        .map_err(|e| format!("cannot write in {}: {e}; choose a writable --out", parent.display()))
}

fn parent_of(dir: &Path) -> PathBuf {
    match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A run directory being written: files go into a hidden temporary directory beside the target,
/// renamed into place by [`Staging::commit`]; dropped uncommitted, it is removed.
#[derive(Debug)]
pub struct Staging {
    tmp: PathBuf,
    dir: PathBuf,
    committed: bool,
}

impl Staging {
    pub fn new(dir: &Path) -> Result<Self, String> {
        check_target(dir)?;
        let name = dir.file_name().ok_or_else(|| format!("{} has no directory name", dir.display()))?;
        let tmp = parent_of(dir).join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
        fs::create_dir(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
        Ok(Self { tmp, dir: dir.to_path_buf(), committed: false })
    }

    /// Where files are written until the commit.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<(), String> {
        fs::write(self.tmp.join(name), bytes).map_err(|e| format!("writing {name}: {e}"))
    }

    /// Moves the directory into place; refuses if the target appeared meanwhile (rename would
    /// replace an empty directory).
    pub fn commit(mut self) -> Result<PathBuf, String> {
        if self.dir.exists() {
            return Err(format!(
                "{} appeared during the run; the results stay in {}",
                self.dir.display(),
                self.tmp.display()
            ));
        }
        fs::rename(&self.tmp, &self.dir).map_err(|e| format!("moving the run into {}: {e}", self.dir.display()))?;
        self.committed = true;
        Ok(self.dir.clone())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

/// Writes one file atomically (temporary file, then rename); refuses to replace an existing file
/// unless `replace` is set.
pub fn write_file(path: &Path, bytes: &[u8], replace: bool) -> Result<(), String> {
    if path.exists() && !replace {
        return Err(format!("{} exists; it is only replaced on purpose", path.display()));
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    fs::write(&tmp, bytes).and_then(|()| fs::rename(&tmp, path)).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        format!("writing {}: {e}", path.display())
    })
}

/// Reads a run from a run directory or a `run.json`, with errors that say what to do.
pub fn load_run(path: &Path) -> Result<RunFile, String> {
    let file = if path.is_dir() { path.join("run.json") } else { path.to_path_buf() };
    let text = fs::read_to_string(&file)
        .map_err(|e| format!("cannot read {}: {e}; give a run directory or its run.json", file.display()))?;
    if text.trim().is_empty() {
        return Err(format!("{} is empty; it is not a complete run", file.display()));
    }
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not valid JSON ({e}); it is corrupt or not a run.json", file.display()))?;
    match value.get("schema_version").and_then(|v| v.as_u64()) {
        Some(v) if v == SCHEMA_VERSION as u64 => {}
        Some(v) => {
            return Err(format!(
                "{} has schema_version {v}, this harness reads {SCHEMA_VERSION}; re-run it with this harness",
                file.display()
            ));
        }
        None => return Err(format!("{} has no schema_version; it is not a run.json", file.display())),
    }
    serde_json::from_value(value)
        .map_err(|e| format!("{} does not match schema {SCHEMA_VERSION} ({e})", file.display()))
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SSZ` (no date crate needed).
pub fn utc_now() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}
