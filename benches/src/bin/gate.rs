//! The comparison half of `scripts/gate` (which runs the gungraun suite and calls this):
//! `gate --measured FILE [--baseline FILE] [--update] [--bmf FILE]`.
//! Exit codes: 0 pass, 1 regression, 2 unusable input or missing tool.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use benches::gate::{self, Count, Limits, Unusable, Versions};

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

struct Args {
    measured: PathBuf,
    baseline: PathBuf,
    update: bool,
    bmf: Option<PathBuf>,
}

fn parse_args() -> Result<Args, Unusable> {
    let mut it = std::env::args().skip(1);
    let mut args = Args {
        measured: PathBuf::new(),
        baseline: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../results/baseline/instructions.json")),
        update: false,
        bmf: None,
    };
    while let Some(a) = it.next() {
        let mut value =
            |name: &str| it.next().map(PathBuf::from).ok_or_else(|| Unusable(format!("{name} needs a file")));
        match a.as_str() {
            "--measured" => args.measured = value("--measured")?,
            "--baseline" => args.baseline = value("--baseline")?,
            "--bmf" => args.bmf = Some(value("--bmf")?),
            "--update" => args.update = true,
            other => {
                return Err(Unusable(format!(
                    "unknown argument {other:?}; usage: gate --measured FILE [--baseline FILE] [--update] [--bmf FILE]"
                )));
            }
        }
    }
    if args.measured.as_os_str().is_empty() {
        return Err(Unusable("--measured FILE (gungraun's --output-format=json) is required".into()));
    }
    Ok(args)
}

fn write_atomically(path: &PathBuf, bytes: &[u8]) -> Result<(), Unusable> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path)).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Unusable(format!("writing {}: {e}", path.display()))
    })
}

fn run() -> Result<u8, Unusable> {
    let args = parse_args()?;
    let text = std::fs::read_to_string(&args.measured)
        .map_err(|e| Unusable(format!("cannot read {} ({e})", args.measured.display())))?;
    let calls_of = |group: &str| if group == "read_path" { benches::GATE_CALLS as u64 } else { 1 };
    let measured: std::collections::BTreeMap<String, Count> = gate::parse_gungraun(&text, calls_of)?;
    if let Some(bmf) = &args.bmf {
        write_atomically(bmf, serde_json::to_string_pretty(&gate::bmf(&measured)).expect("json").as_bytes())?;
    }
    if args.update {
        let versions = versions()?;
        let limits = std::fs::read_to_string(&args.baseline)
            .ok()
            .and_then(|t| gate::parse_baseline(&t, "").ok())
            .map_or_else(Limits::default, |b| b.limits);
        let n = measured.len();
        let b = gate::baseline(versions, limits, measured);
        write_atomically(&args.baseline, serde_json::to_string_pretty(&b).expect("json").as_bytes())?;
        println!("wrote {} ({n} benchmarks); review and commit it", args.baseline.display());
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
    let versions = versions()?;
    let lines = gate::compare(&base, &versions, &measured)?;
    print!("{}", gate::markdown(&lines));
    let code = gate::exit_code(&lines);
    if code == 2 {
        println!(
            "\nThe baseline lists benchmarks the suite no longer has: update it on purpose with scripts/gate --update."
        );
    }
    Ok(code)
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => ExitCode::from(code),
        Err(Unusable(msg)) => {
            eprintln!("gate: {msg}");
            ExitCode::from(2)
        }
    }
}
