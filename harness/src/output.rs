//! Where results go, written atomically: every file of a run is written into a hidden staging
//! directory beside the target (`.NAME.tmp-PID`), which is renamed into place at the end, so a
//! killed run leaves no half-written `run.json` and an existing run is never overwritten.
//!
//! Once measured, a run is never lost without saying so: everything the final write needs is
//! checked before measuring ([`check_target`]); a target that appears during the run sends the
//! files to a free sibling name ([`Staging::commit`]); a file that cannot be written is named,
//! and the others are still written ([`Saved`]). Staging directories of dead processes are
//! removed by the next run into the same parent.

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `results/runs` of the workspace this binary was built in, if it exists, else `./results/runs`.
pub fn default_root() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(|p| p.join("results"));
    match workspace {
        Some(results) if results.is_dir() => results.join("runs"),
        _ => PathBuf::from("results/runs"),
    }
}

/// `<timestamp>-<host>` under the default root, or the first free `<timestamp>-<host>-N` when a
/// run of the same second took it: the user chose no name, so none may collide.
pub fn default_dir(host: &str) -> PathBuf {
    let stamp = utc_now().replace([':', '-'], "");
    let dir = default_root().join(format!("{stamp}-{host}"));
    free_name(&dir).unwrap_or(dir)
}

/// Whether anything, even a dangling symbolic link, is at `path`.
fn taken(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// `dir` if free, else the first free `dir-2` … `dir-999`. Every such name is shorter than the
/// staging name (`.NAME.tmp-PID`, 7 bytes or more longer than NAME), so [`check_target`]'s probe
/// has already shown that the file system takes it.
fn free_name(dir: &Path) -> Option<PathBuf> {
    let name = dir.file_name()?.to_string_lossy().into_owned();
    std::iter::once(dir.to_path_buf())
        .chain((2..1000).map(|n| dir.with_file_name(format!("{name}-{n}"))))
        .find(|p| !taken(p))
}

/// Marks a staging directory as this harness's, so that only those are ever cleaned up; removed
/// just before the rename.
const MARKER: &str = ".dispatch-bench-staging";

/// Longer than the name of any file a run writes (the longest: `transitions.png`, `run.schema.json`): the probe in
/// [`check_target`] writes a file of this length, so every real path is shorter than one tried.
const PROBE_NAME_LEN: usize = 32;

/// How long a dead process's staging directory must have been untouched before it is removed: a
/// process in another PID namespace (a container sharing the results directory) looks dead from
/// here, but a live one writes its files within seconds of creating the directory.
const STALE_AFTER: Duration = Duration::from_secs(60);

/// The staging directory of `dir` for this process.
fn staging_path(dir: &Path) -> Result<PathBuf, String> {
    let name = dir.file_name().ok_or_else(|| format!("{} has no directory name", dir.display()))?;
    Ok(parent_of(dir).join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id())))
}

/// Refuses a target the final write could not create, before anything is measured: one that
/// exists (a dangling symbolic link included), a last component `.` or `..`, a parent that cannot
/// be created or written, a name or path too long for the file system (tried with the staging
/// name, which is longer, and a file name longer than any a run writes). Creates missing parents.
/// Returns notes on stale staging directories it removed.
pub fn check_target(dir: &Path) -> Result<Vec<String>, String> {
    let text = dir.as_os_str().as_bytes();
    let trimmed = text.strip_suffix(b"/").unwrap_or(text);
    let last = trimmed.rsplit(|&b| b == b'/').next().unwrap_or(trimmed);
    if last == b"." || last == b".." || dir.file_name().is_none() {
        return Err(format!(
            "--out {} does not name a new directory (it ends in `{}`); end it with the run's own name, e.g. results/runs/run1",
            dir.display(),
            String::from_utf8_lossy(last)
        ));
    }
    if taken(dir) {
        let what = match fs::read_link(dir) {
            Ok(to) => format!("is a symbolic link (to {})", to.display()),
            Err(_) => "already exists".to_owned(),
        };
        return Err(format!(
            "output directory {} {what}; choose another --out (runs are never overwritten)",
            dir.display()
        ));
    }
    let parent = parent_of(dir);
    fs::create_dir_all(&parent)
        .map_err(|e| format!("cannot create {}: {e}; choose a writable --out", parent.display()))?;
    let notes = remove_stale(&parent);
    let tmp = staging_path(dir)?;
    let probe = |tmp: &Path| -> io::Result<()> {
        fs::create_dir(tmp)?;
        let written = fs::write(tmp.join("x".repeat(PROBE_NAME_LEN)), b"");
        let _ = fs::remove_dir_all(tmp);
        written
    };
    probe(&tmp).map_err(|e| {
        let why = match e.kind() {
            io::ErrorKind::InvalidFilename => format!(
                "its name or path is too long for the file system: the run is written first as {} ({} bytes), with files of up to {PROBE_NAME_LEN} bytes in it; choose a shorter --out",
                tmp.display(),
                tmp.file_name().map_or(0, |n| n.len())
            ),
            _ => format!("cannot write in {}: {e}; choose a writable --out", parent.display()),
        };
        format!("output directory {}: {why}", dir.display())
    })?;
    Ok(notes)
}

fn parent_of(dir: &Path) -> PathBuf {
    match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The PID of a staging directory's name (`.NAME.tmp-PID`).
fn staging_pid(name: &str) -> Option<u32> {
    let (head, pid) = name.rsplit_once(".tmp-")?;
    if !head.starts_with('.') || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Removes the staging directories in `parent` left by processes that are gone (killed while
/// writing): named `.NAME.tmp-PID`, marked as ours, PID not running, untouched for a minute.
fn remove_stale(parent: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(parent) else { return Vec::new() };
    let mut notes = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let Some(pid) = staging_pid(&entry.file_name().to_string_lossy()) else { continue };
        let stale = pid != std::process::id()
            && !Path::new(&format!("/proc/{pid}")).exists()
            && path.join(MARKER).is_file()
            && fs::symlink_metadata(&path)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > STALE_AFTER));
        if stale && fs::remove_dir_all(&path).is_ok() {
            notes.push(format!(
                "removed {}, the unfinished output of process {pid}, which is no longer running",
                path.display()
            ));
        }
    }
    notes
}

/// What became of a run's files after measuring.
#[derive(Debug, Default)]
pub struct Saved {
    /// The directory holding the files written; `None` when none could be.
    pub dir: Option<PathBuf>,
    pub written: Vec<String>,
    /// The files that could not be written, each with why.
    pub unwritten: Vec<String>,
    /// Why `dir` is not the directory asked for, when it is not.
    pub moved: Option<String>,
}

/// A run directory being written: files go into a hidden staging directory beside the target,
/// renamed into place by [`Staging::commit`]; dropped uncommitted, it is removed.
#[derive(Debug)]
pub struct Staging {
    tmp: PathBuf,
    dir: PathBuf,
    /// Committed, or kept where it is because it could not be moved: not removed on drop.
    keep: bool,
    written: Vec<String>,
    unwritten: Vec<String>,
    /// Test hook: writes after this many files fail as on a full disk.
    full_after: Option<usize>,
}

impl Staging {
    /// `full_after`: the test hook of `RunConfig::full_disk_after_files`.
    pub fn new(dir: &Path, full_after: Option<usize>) -> Result<Self, String> {
        let tmp = staging_path(dir)?;
        fs::create_dir(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
        let staging =
            Self { tmp, dir: dir.to_path_buf(), keep: false, written: Vec::new(), unwritten: Vec::new(), full_after };
        fs::write(staging.tmp.join(MARKER), b"")
            .map_err(|e| format!("cannot write in {}: {e}", staging.tmp.display()))?;
        Ok(staging)
    }

    /// Where files are written until the commit.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Writes one file. A failure (a full disk) is recorded, not returned, and the partial file
    /// removed: the other files are still tried, and [`Saved`] names what is missing.
    pub fn write(&mut self, name: &str, bytes: &[u8]) {
        let result = match self.full_after {
            // ENOSPC (Linux's 28), so that the message is the one a full disk gives.
            Some(n) if self.written.len() >= n => Err(io::Error::from_raw_os_error(28)),
            _ => fs::write(self.tmp.join(name), bytes),
        };
        self.record(name, result.map_err(|e| e.to_string()));
    }

    /// Records a file written by someone else into [`Self::path`] (a plot), or why it was not.
    pub fn record(&mut self, name: &str, result: Result<(), String>) {
        match result {
            Ok(()) => self.written.push(name.to_owned()),
            Err(why) => {
                let _ = fs::remove_file(self.tmp.join(name));
                self.unwritten.push(format!("{name} ({why})"));
            }
        }
    }

    /// The files that could not be written so far, each with why.
    pub fn unwritten(&self) -> &[String] {
        &self.unwritten
    }

    pub fn has(&self, name: &str) -> bool {
        self.written.iter().any(|n| n == name)
    }

    /// Moves the directory into place. If the target appeared meanwhile (another run committing
    /// the same name), the files go to the first free `NAME-N` beside it instead, and
    /// [`Saved::moved`] says so; if no name can be had, they stay in the staging directory, and
    /// it says that. The files are never removed here.
    pub fn commit(mut self) -> Saved {
        let _ = fs::remove_file(self.tmp.join(MARKER));
        self.keep = true;
        let mut saved = Saved {
            dir: None,
            written: std::mem::take(&mut self.written),
            unwritten: std::mem::take(&mut self.unwritten),
            moved: None,
        };
        let mut target = self.dir.clone();
        loop {
            match rename_new(&self.tmp, &target) {
                Ok(()) => {
                    saved.dir = Some(target);
                    return saved;
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let appeared = format!("{} appeared while this run was measuring", self.dir.display());
                    match free_name(&self.dir) {
                        Some(free) => {
                            saved.moved = Some(format!("{appeared}; this run is saved as {} instead", free.display()));
                            target = free;
                        }
                        None => {
                            saved.moved = Some(format!(
                                "{appeared}, and so had {0}-2 to {0}-999; the files stay in {1}",
                                self.dir.display(),
                                self.tmp.display()
                            ));
                            saved.dir = Some(self.tmp.clone());
                            return saved;
                        }
                    }
                }
                Err(e) => {
                    saved.moved = Some(format!(
                        "moving it into {} failed ({e}); the files stay in {}",
                        target.display(),
                        self.tmp.display()
                    ));
                    saved.dir = Some(self.tmp.clone());
                    return saved;
                }
            }
        }
    }
}

/// Renames `from` to `to` unless something is at `to` (`AlreadyExists`). `fs::rename` alone would
/// replace an empty directory; a non-empty one it refuses, which is mapped to `AlreadyExists`
/// too (another run committed between the check and the rename).
fn rename_new(from: &Path, to: &Path) -> io::Result<()> {
    if taken(to) {
        return Err(io::ErrorKind::AlreadyExists.into());
    }
    fs::rename(from, to).map_err(|e| match e.kind() {
        io::ErrorKind::DirectoryNotEmpty => io::ErrorKind::AlreadyExists.into(),
        _ => e,
    })
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

/// Where a run goes when its own directory cannot hold its `run.json` (a full disk): a fresh
/// directory under the system's temporary directory, often another file system.
pub fn rescue_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dispatch-bench-rescue-{}", std::process::id()));
    free_name(&dir).unwrap_or(dir)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dispatch-bench-output-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn a_target_that_appears_late_sends_the_files_to_a_free_sibling_and_says_so() {
        let root = scratch("late");
        let dir = root.join("run");
        let mut staging = Staging::new(&dir, None).unwrap();
        staging.write("run.json", b"{}");
        // Another run commits the same name, then one more takes the first free sibling.
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("run.json"), b"theirs").unwrap();
        fs::create_dir(root.join("run-2")).unwrap();
        let saved = staging.commit();
        assert_eq!(saved.dir, Some(root.join("run-3")));
        let moved = saved.moved.unwrap();
        assert!(moved.contains("appeared while this run was measuring") && moved.contains("run-3"), "{moved}");
        assert_eq!(fs::read(root.join("run-3/run.json")).unwrap(), b"{}");
        assert_eq!(fs::read(dir.join("run.json")).unwrap(), b"theirs", "the other run is untouched");
        // Nothing left behind: no staging directory, no marker in the run.
        assert_eq!(entries(&root), ["run", "run-2", "run-3"]);
        assert_eq!(entries(&root.join("run-3")), ["run.json"]);
        let _ = fs::remove_dir_all(&root);
    }

    /// An empty directory appearing late is not replaced either (`fs::rename` alone would).
    #[test]
    fn an_empty_directory_appearing_late_is_kept() {
        let root = scratch("late-empty");
        let dir = root.join("run");
        let mut staging = Staging::new(&dir, None).unwrap();
        staging.write("run.json", b"{}");
        fs::create_dir(&dir).unwrap();
        let saved = staging.commit();
        assert_eq!(saved.dir, Some(root.join("run-2")));
        assert!(entries(&dir).is_empty());
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn a_full_disk_is_recorded_file_by_file() {
        let root = scratch("full");
        let dir = root.join("run");
        let mut staging = Staging::new(&dir, Some(1)).unwrap();
        staging.write("run.json", b"{}");
        staging.write("report.md", b"# report");
        staging.record("plot.png", Err("No space left on device".into()));
        assert!(staging.has("run.json") && !staging.has("report.md"));
        let saved = staging.commit();
        assert_eq!(saved.dir, Some(dir.clone()));
        assert_eq!(saved.written, ["run.json"]);
        assert_eq!(saved.unwritten.len(), 2);
        assert!(saved.unwritten[0].starts_with("report.md (") && saved.unwritten[1].starts_with("plot.png ("));
        assert!(saved.moved.is_none());
        assert_eq!(entries(&dir), ["run.json"], "no partial file");
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn an_uncommitted_staging_directory_is_removed() {
        let root = scratch("drop");
        let staging = Staging::new(&root.join("run"), None).unwrap();
        assert!(staging.path().is_dir());
        drop(staging);
        assert!(entries(&root).is_empty());
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn free_names_count_up_past_taken_ones_and_dangling_links() {
        let root = scratch("free");
        let dir = root.join("20250101T000000Z-host");
        assert_eq!(free_name(&dir), Some(dir.clone()));
        fs::create_dir(&dir).unwrap();
        std::os::unix::fs::symlink("/nonexistent", root.join("20250101T000000Z-host-2")).unwrap();
        assert_eq!(free_name(&dir), Some(root.join("20250101T000000Z-host-3")));
        let _ = fs::remove_dir_all(&root);
    }

    /// A PID above the kernel's largest `pid_max` (2^22): never a running process.
    const DEAD_PID: u32 = 4_194_999;

    /// A staging directory named for `pid`, marked as ours or not, last modified `age` ago.
    fn staging_dir(root: &Path, name: &str, pid: u32, marked: bool, age: Duration) -> PathBuf {
        let dir = root.join(format!(".{name}.tmp-{pid}"));
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("run.json"), b"partial").unwrap();
        if marked {
            fs::write(dir.join(MARKER), b"").unwrap();
        }
        fs::File::open(&dir).unwrap().set_modified(SystemTime::now() - age).unwrap();
        dir
    }

    #[test]
    fn only_stale_staging_directories_of_dead_processes_are_removed() {
        let root = scratch("stale");
        let hour = Duration::from_secs(3600);
        let dead = staging_dir(&root, "a", DEAD_PID, true, hour);
        let ours = staging_dir(&root, "b", std::process::id(), true, hour);
        let unmarked = staging_dir(&root, "c", DEAD_PID + 1, false, hour);
        let fresh = staging_dir(&root, "d", DEAD_PID + 2, true, Duration::ZERO);
        let notes = check_target(&root.join("next")).unwrap();
        assert!(!dead.exists());
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains(&dead.display().to_string()) && notes[0].contains("no longer running"), "{notes:?}");
        for kept in [ours, unmarked, fresh] {
            assert!(kept.exists(), "{} removed", kept.display());
        }
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn staging_names_give_their_pid() {
        assert_eq!(staging_pid(".run.tmp-123"), Some(123));
        assert_eq!(staging_pid(".a.tmp-b.tmp-7"), Some(7));
        for name in ["run.tmp-123", ".run.tmp-", ".run.tmp-12x", ".run.tmp--1", ".run"] {
            assert_eq!(staging_pid(name), None, "{name}");
        }
    }

    #[test]
    fn targets_the_final_write_could_not_create_are_refused_before_measuring() {
        let root = scratch("targets");
        let long = |n: usize| root.join("a".repeat(n));
        let cases = [
            (root.join("new/.."), "does not name a new directory"),
            (root.join("new/."), "does not name a new directory"),
            (PathBuf::from(format!("{}/new/./", root.display())), "does not name a new directory"),
            (long(256), "too long"),
            // The name fits, the staging name (`.NAME.tmp-PID`) does not.
            (long(250), "too long"),
            (root.join("file/run"), "choose a writable --out"),
        ];
        fs::write(root.join("file"), b"").unwrap();
        for (dir, expected) in &cases {
            let err = check_target(dir).unwrap_err();
            assert!(err.contains(expected), "{}: {err}", dir.display());
        }
        // Near PATH_MAX (4096): the target's own path fits (4059 bytes), its staging path with a
        // file in it does not.
        let mut deep = root.join("d".repeat(200));
        while deep.as_os_str().len() < 4096 - 250 {
            deep = deep.join("d".repeat(200));
        }
        deep = deep.join("e".repeat(4096 - 42 - deep.as_os_str().len()));
        fs::create_dir_all(&deep).unwrap();
        let dir = deep.join("run");
        assert_eq!(dir.as_os_str().len(), 4059);
        let err = check_target(&dir).unwrap_err();
        assert!(err.contains("too long"), "{err}");
        // Nothing was created beside what existed: no `new`, no probe left over.
        assert_eq!(entries(&root), ["d".repeat(200), "file".to_owned()]);
        let _ = fs::remove_dir_all(&root);
    }
}
