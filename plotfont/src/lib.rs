//! A system TrueType font for plotters, shared by the harness's plots and criterion's.
//!
//! The workspace's plotters has the `ab_glyph` feature (the harness's bitmap plots need real
//! glyphs), and with it plotters draws text only in fonts registered with
//! `plotters::style::register_font`: anything else fails with `FontUnavailable`. Cargo unifies
//! features across the members when it builds at the workspace root, so criterion's plots
//! (`cargo bench`) get the same plotters and need a registered font too; criterion registers none.
//! Both the harness and the criterion suite call [`register`] before they draw.
//!
//! Without a font, neither panics: the harness writes its run without PNGs and says why in
//! `report.md` and on stderr; the criterion suite runs without plots (and so without criterion's
//! HTML report) and says why once on stderr.

use std::path::PathBuf;

use plotters::style::FontStyle;

/// Where fonts are looked for unless [`DIRS_VAR`] names other directories.
const FONT_DIRS: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu",
    "/usr/share/fonts/dejavu",
    "/usr/share/fonts/TTF",
    "/usr/share/fonts/truetype/liberation",
];

/// The fonts looked for in each directory, in order of preference.
const FONT_FILES: [&str; 2] = ["DejaVuSans.ttf", "LiberationSans-Regular.ttf"];

/// Replaces the usual font directories: a list separated like `PATH` (`:` on Unix). Set it where
/// fonts live elsewhere, or to an empty directory (or nothing) to see what a machine without fonts
/// does.
pub const DIRS_VAR: &str = "DISPATCH_BENCH_FONT_DIRS";

/// Registers a system font as plotters' "sans-serif" (the family the harness and criterion both
/// draw with), once per process; `Err` says why plots cannot be drawn and how to fix it.
pub fn register() -> Result<(), String> {
    static FONT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    FONT.get_or_init(|| {
        let dirs: Vec<PathBuf> = match std::env::var_os(DIRS_VAR) {
            // An empty entry would mean the working directory; it is taken as no directory instead.
            Some(v) => std::env::split_paths(&v).filter(|d| !d.as_os_str().is_empty()).collect(),
            None => FONT_DIRS.iter().map(PathBuf::from).collect(),
        };
        let (path, bytes) = find(&dirs)?;
        // Leaked on purpose: plotters keeps fonts for the life of the process, and this runs once.
        plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(bytes.into_boxed_slice())).map_err(
            |_| format!("{} is not a font plotters can read; install fonts-dejavu-core to get plots", path.display()),
        )
    })
    .clone()
}

/// The first font of [`FONT_FILES`] found in `dirs` (directories in order), with its path; `Err`
/// names what was looked for, where, and the fix.
fn find(dirs: &[PathBuf]) -> Result<(PathBuf, Vec<u8>), String> {
    dirs.iter()
        .flat_map(|d| FONT_FILES.iter().map(move |f| d.join(f)))
        .find_map(|p| std::fs::read(&p).ok().map(|bytes| (p, bytes)))
        .ok_or_else(|| {
            let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
            format!(
                "no TrueType font found (looked for {} in {}); install fonts-dejavu-core, or set {DIRS_VAR} to a \
                 directory holding one of them, to get plots",
                FONT_FILES.join(" or "),
                if dirs.is_empty() { "no directory".to_owned() } else { dirs.join(", ") }
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_font_of_the_first_directory_holding_one_is_taken() {
        let root = std::env::temp_dir().join(format!("dispatch-bench-fonts-{}", std::process::id()));
        let (empty, liberation, both) = (root.join("empty"), root.join("liberation"), root.join("both"));
        for d in [&empty, &liberation, &both] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(liberation.join("LiberationSans-Regular.ttf"), b"L").unwrap();
        std::fs::write(both.join("LiberationSans-Regular.ttf"), b"L").unwrap();
        std::fs::write(both.join("DejaVuSans.ttf"), b"D").unwrap();

        let (path, bytes) = find(&[empty.clone(), both.clone(), liberation.clone()]).unwrap();
        assert_eq!((path, bytes), (both.join("DejaVuSans.ttf"), b"D".to_vec()));
        let (path, _) = find(&[liberation.clone(), both]).unwrap();
        assert_eq!(path, liberation.join("LiberationSans-Regular.ttf"));

        let why = find(std::slice::from_ref(&empty)).unwrap_err();
        assert!(why.contains(&empty.display().to_string()), "{why}");
        assert!(why.contains("install fonts-dejavu-core") && why.contains(DIRS_VAR), "{why}");
        assert!(find(&[]).unwrap_err().contains("in no directory"));
        let _ = std::fs::remove_dir_all(&root);
    }
}
