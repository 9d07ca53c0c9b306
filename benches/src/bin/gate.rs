//! The comparison half of `scripts/gate` (which runs the gungraun suite and calls this):
//! `gate --measured FILE [--baseline FILE] [--skipped FILE] [--update] [--bmf FILE]`; `gate --help`
//! says more.
//! Exit codes: 0 pass, 1 regression, 2 unusable input or missing tool.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use benches::gate::{self, Count, Limits, Unusable, Versions};
use clap::Parser;

fn version(cmd: &str, args: &[&str]) -> Result<String, Unusable> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| Unusable(format!("cannot run {cmd} ({e}); install it with scripts/setup")))?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || text.is_empty() {
        return Err(Unusable(format!("`{cmd} {}` failed; install it with scripts/setup", args.join(" "))));
    }
    Ok(text)
}

/// The tool versions of this machine.
fn versions() -> Result<Versions, Unusable> {
    let runner = std::env::var("GUNGRAUN_RUNNER").unwrap_or_else(|_| "gungraun-runner".into());
    let gungraun = version(&runner, &["--version"])?;
    Ok(Versions {
        rustc: version("rustc", &["-V"])?,
        valgrind: version("valgrind", &["--version"])?,
        gungraun: gungraun.split_whitespace().last().unwrap_or(&gungraun).to_owned(),
    })
}

/// The committed baseline, found from the source tree so that the gate works from any directory.
const DEFAULT_BASELINE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../results/baseline/instructions.json");

#[derive(Parser, Debug)]
#[command(
    name = "gate",
    override_usage = "gate --measured FILE [--baseline FILE] [--skipped FILE] [--update] [--bmf FILE]",
    about = "The comparison half of scripts/gate (which runs the gungraun suite and calls this): compares\n\
every benchmark's instruction count and indirect-branch mispredictions with the baseline and prints\n\
a Markdown table.",
    after_help = "A benchmark regresses when its instructions grow by more than the baseline's limit (2% + 0.5\n\
instructions per call unless the baseline says otherwise), or when its simulated indirect-branch\n\
mispredictions (callgrind's Bim, from --branch-sim=yes) grow by more than bim_per_call per call\n\
(0.05 unless the baseline says otherwise): a call instruction per site is predicted (about 0 per\n\
call), one shared call instruction cycling over 8 sites is not (about 1 per call). The gate also\n\
fails when klp's steady per-site read path takes more than 1 instruction per call over the kernel's\n\
own handler written in C (read_path::c_steady::c_handler, the same loop shape): the fidelity\n\
check, printed under the table. The baseline\n\
records the rustc, valgrind and gungraun-runner versions ($GUNGRAUN_RUNNER, default gungraun-runner\n\
on PATH); counts from other versions are unusable.\n\n\
A strategy this machine cannot run is skipped by the suite, which records it with its reason in\n\
the --skipped file: its baseline benchmarks are reported as skipped, naming the reason, and fail\n\
nothing (--update leaves them out of the new baseline, saying so). A benchmark missing for any\n\
other reason makes the baseline unusable.\n\n\
Exit codes: 0 pass; 1 regression; 2 unusable input (a missing, empty or corrupt measurement or\n\
baseline, a measurement without Bim, a baseline of an older schema or made with other tool versions\n\
or listing benchmarks the suite no longer has or covering fewer than half of those measured, a\n\
negative or absurd limit in it, one file given as two of --measured, --baseline and --bmf, bad\n\
arguments) or a missing tool (scripts/setup installs valgrind and gungraun-runner)."
)]
struct Args {
    /// gungraun's JSON results (cargo bench -p benches --bench instructions -- --output-format=json)
    #[arg(long, value_name = "FILE", value_parser = file)]
    measured: PathBuf,
    /// The baseline to compare with, or to rewrite with --update
    #[arg(long, value_name = "FILE", value_parser = file, default_value = DEFAULT_BASELINE)]
    baseline: PathBuf,
    /// The suite's record of the strategies it skipped as unavailable here (scripts/gate passes it); no such file: none skipped
    #[arg(long, value_name = "FILE", value_parser = file)]
    skipped: Option<PathBuf>,
    /// Rewrite the baseline from --measured (keeping its limits; defaults for an older schema) instead of comparing; review and commit it
    #[arg(long)]
    update: bool,
    /// Also write the measured counts to FILE in Bencher Metric Format (JSON)
    #[arg(long, value_name = "FILE", value_parser = file)]
    bmf: Option<PathBuf>,
}

/// A file argument; an empty one (an unset shell variable, say) would only fail later, less clearly.
fn file(v: &str) -> Result<PathBuf, String> {
    if v.is_empty() { Err("give a file name, not an empty string".into()) } else { Ok(PathBuf::from(v)) }
}

fn write_atomically(path: &PathBuf, bytes: &[u8]) -> Result<(), Unusable> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path)).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Unusable(format!("writing {}: {e}", path.display()))
    })
}

/// Whether `a` and `b` name the same file: the same inode where both exist (links included),
/// else the same absolute path with its directory resolved.
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => (x.dev(), x.ino()) == (y.dev(), y.ino()),
        _ => {
            let resolve = |p: &Path| {
                let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
                std::fs::canonicalize(dir).ok().zip(p.file_name()).map(|(d, n)| d.join(n))
            };
            resolve(a).is_some_and(|x| Some(x) == resolve(b))
        }
    }
}

/// Refuses, before anything is written, a file given twice: an output over an input would
/// destroy the input (`--bmf` over the baseline, then read back as a corrupt baseline).
fn distinct(args: &Args) -> Result<(), Unusable> {
    let mut files = vec![("--measured", &args.measured), ("--baseline", &args.baseline)];
    files.extend(args.skipped.as_ref().map(|s| ("--skipped", s)));
    files.extend(args.bmf.as_ref().map(|b| ("--bmf", b)));
    for (i, (name_a, a)) in files.iter().enumerate() {
        for (name_b, b) in &files[i + 1..] {
            if same_file(a, b) {
                return Err(Unusable(format!(
                    "{name_a} and {name_b} are the same file ({}); give each its own",
                    b.display()
                )));
            }
        }
    }
    Ok(())
}

fn run(args: Args) -> Result<u8, Unusable> {
    distinct(&args)?;
    let text = std::fs::read_to_string(&args.measured)
        .map_err(|e| Unusable(format!("cannot read {} ({e})", args.measured.display())))?;
    let calls_of = |group: &str| if group == "read_path" { benches::GATE_CALLS as u64 } else { 1 };
    let measured: std::collections::BTreeMap<String, Count> = gate::parse_gungraun(&text, calls_of)?;
    // No file: the suite skipped nothing (it writes one only when it skips).
    let skipped = match &args.skipped {
        Some(path) if path.exists() => {
            let text =
                std::fs::read_to_string(path).map_err(|e| Unusable(format!("cannot read {} ({e})", path.display())))?;
            gate::parse_skipped(&text, &path.display().to_string())?
        }
        _ => Default::default(),
    };
    for (name, reason) in &skipped {
        eprintln!("gate: {name} skipped: unavailable on this machine: {reason}");
    }
    // The skipped strategies' benchmarks ran nothing: their counts go nowhere (bmf, baseline).
    let measured = gate::without_skipped(measured, &skipped);
    if let Some(bmf) = &args.bmf {
        write_atomically(bmf, serde_json::to_string_pretty(&gate::bmf(&measured)).expect("json").as_bytes())?;
    }
    if args.update {
        let versions = versions()?;
        // The old baseline's limits are kept; one that cannot be read (older schema, corrupt,
        // absurd limits) gets the defaults, saying why.
        let path = args.baseline.display().to_string();
        let limits = match std::fs::read_to_string(&args.baseline).map(|t| gate::parse_baseline(&t, &path)) {
            Ok(Ok(b)) => b.limits,
            Ok(Err(Unusable(why))) => {
                eprintln!("gate: the new baseline gets the default limits: {why}");
                Limits::default()
            }
            Err(_) => Limits::default(),
        };
        // Reported, not enforced, when updating: the comparison that follows enforces it.
        println!("{}", gate::fidelity_line(&gate::fidelity(&measured, &skipped)?));
        let n = measured.len();
        let b = gate::baseline(versions, limits, measured);
        write_atomically(&args.baseline, serde_json::to_string_pretty(&b).expect("json").as_bytes())?;
        println!("wrote {} ({n} benchmarks); review and commit it", args.baseline.display());
        if !skipped.is_empty() {
            let names: Vec<&str> = skipped.keys().map(String::as_str).collect();
            println!(
                "It has no benchmarks of {} (unavailable on this machine): a machine that runs them would gate them \
                 only once they are in; make the baseline where every strategy runs",
                names.join(", ")
            );
        }
        return Ok(0);
    }
    // The baseline is checked before the tools, so that its problems are reported first.
    let base_text = std::fs::read_to_string(&args.baseline).map_err(|e| {
        Unusable(format!(
            "cannot read the baseline {} ({e}); make one on purpose with scripts/gate --update",
            args.baseline.display()
        ))
    })?;
    let base = gate::parse_baseline(&base_text, &args.baseline.display().to_string())?;
    gate::coverage(&base, &measured)?;
    let versions = versions()?;
    let lines = gate::compare(&base, &versions, &measured, &skipped)?;
    let fidelity = gate::fidelity(&measured, &skipped)?;
    print!("{}", gate::markdown(&lines));
    println!("\n{}", gate::fidelity_line(&fidelity));
    let code = gate::exit_code_with(&lines, &fidelity);
    if code == 2 {
        println!(
            "\nThe baseline lists benchmarks the suite no longer has: update it on purpose with scripts/gate --update."
        );
    }
    Ok(code)
}

fn main() -> ExitCode {
    // Clap answers --help (exit 0) and bad arguments (exit 2, the code of unusable input) itself.
    match run(Args::parse()) {
        Ok(code) => ExitCode::from(code),
        Err(Unusable(msg)) => {
            eprintln!("gate: {msg}");
            ExitCode::from(2)
        }
    }
}
