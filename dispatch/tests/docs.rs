//! The repository's prose stays true to the code:
//!
//! - every rule a comment cites (`Invariant::…`, `Barrier::…`, `HandlerStep::…`) exists in
//!   `dispatch/src/docs.rs`, so that a rename there cannot leave a dangling citation in a plain
//!   `//` comment, which rustdoc does not check;
//! - nothing refers to a document outside the repository (a fresh clone must resolve everything);
//! - the README's strategy table is the registry's, word for word.

use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root").to_path_buf()
}

/// Every tracked-looking text file of the workspace: sources, manifests, docs and scripts.
fn texts() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        for entry in fs::read_dir(dir).expect("readable dir") {
            let path = entry.expect("dir entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() {
                // Build output, run output and the reference run's generated files hold no prose.
                if !matches!(name, "target" | ".git" | "runs") {
                    walk(&path, out);
                }
            } else if (name.ends_with(".rs") || name.ends_with(".md") || name.ends_with(".toml") || !name.contains('.'))
                && let Ok(text) = fs::read_to_string(&path)
            {
                out.push((path, text));
            }
        }
    }
    let mut out = Vec::new();
    walk(&root(), &mut out);
    assert!(out.len() > 40, "found only {} files under {}", out.len(), root().display());
    out
}

/// The variants of `pub enum NAME` in docs.rs.
fn variants(docs: &str, name: &str) -> Vec<String> {
    let start = docs.find(&format!("pub enum {name} {{")).unwrap_or_else(|| panic!("docs.rs has no enum {name}"));
    let body = &docs[start..docs[start..].find("\n}").map(|e| start + e).expect("enum end")];
    body.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("///") && !l.starts_with("pub enum") && l.ends_with(','))
        .map(|l| l.trim_end_matches(',').to_owned())
        .collect()
}

#[test]
fn every_cited_rule_exists() {
    let docs = fs::read_to_string(root().join("dispatch/src/docs.rs")).expect("docs.rs");
    let mut cited = 0;
    for kind in ["Invariant", "Barrier", "HandlerStep"] {
        let known = variants(&docs, kind);
        assert!(known.len() >= 6, "{kind}: only {known:?}");
        let pattern = format!("{kind}::");
        for (path, text) in texts() {
            if path.ends_with("dispatch/tests/docs.rs") {
                continue;
            }
            for (at, _) in text.match_indices(&pattern) {
                let rest = &text[at + pattern.len()..];
                let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                // A lower-case name is a function of another type of that name (`std::sync::Barrier::new`).
                if !name.starts_with(|c: char| c.is_ascii_uppercase()) {
                    continue;
                }
                assert!(
                    known.contains(&name),
                    "{}: cites {kind}::{name}, which docs.rs does not define (it has {known:?})",
                    path.display()
                );
                cited += 1;
            }
        }
    }
    assert!(cited > 30, "only {cited} citations found: is the scan looking in the right place?");
}

/// Every Markdown file a text names is a file of this repository (by its file name): a reference to
/// a document a fresh clone does not have cannot be followed. Section-sign numbers and
/// barrier numbers belong to such documents too; the rules are cited by name from `dispatch::docs`.
#[test]
fn nothing_refers_to_a_document_outside_the_repository() {
    let texts = texts();
    let ours: Vec<String> = texts
        .iter()
        .filter_map(|(p, _)| p.file_name()?.to_str().filter(|n| n.ends_with(".md")).map(str::to_owned))
        .collect();
    for (path, text) in &texts {
        for (at, _) in text.match_indices(".md") {
            let start =
                text[..at].rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-')).map_or(0, |i| i + 1);
            let name = format!("{}.md", &text[start..at]);
            if name.len() > 3 {
                assert!(
                    ours.contains(&name),
                    "{} refers to {name}, which is not in the repository; write what the code needs inside it",
                    path.display()
                );
            }
        }
        // Another project's issue, cited by number (`bustle#9`, `crossbeam-epoch #65`): the
        // reader of a fresh clone cannot follow it; say in our words what it stands for.
        if !path.ends_with("dispatch/tests/docs.rs") {
            for (n, line) in text.lines().enumerate() {
                let words: Vec<&str> = line.split(|c: char| c.is_whitespace() || "()[]:;,".contains(c)).collect();
                for (i, w) in words.iter().enumerate() {
                    let (name, number) = match w.split_once('#') {
                        Some((name, number)) if !name.is_empty() => (name, number),
                        Some(_) if i > 0 => (words[i - 1], &w[1..]),
                        _ => continue,
                    };
                    let cited = name.starts_with(|c: char| c.is_ascii_lowercase())
                        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                        && number.starts_with(|c: char| c.is_ascii_digit());
                    assert!(
                        !cited,
                        "{}:{}: cites {name}#{number}, an issue of another project; say in our words what it shows",
                        path.display(),
                        n + 1
                    );
                }
            }
        }
        // This file names the needles themselves.
        let needles: &[&str] = if path.ends_with("dispatch/tests/docs.rs") { &[] } else { &["\u{a7}", "rmb #"] };
        for needle in needles {
            assert!(!text.contains(needle), "{} cites {needle:?} of a document outside the repository", path.display());
        }
        for (n, line) in text.lines().enumerate() {
            let lower = line.to_lowercase();
            for cite in ["invariant ", "row "] {
                if let Some(i) = lower.find(cite) {
                    let after = &lower[i + cite.len()..];
                    assert!(
                        !after.starts_with(|c: char| c.is_ascii_digit()) || !line.trim_start().starts_with("//"),
                        "{}:{}: a numbered citation ({cite:?}); link the rule in dispatch::docs instead",
                        path.display(),
                        n + 1
                    );
                }
            }
        }
    }
}

#[test]
fn the_readme_strategy_table_is_the_registry() {
    let readme = fs::read_to_string(root().join("README.md")).expect("README.md");
    // The table of the "Strategies" section: name | consistency | trade-off. (Its figures are the
    // reference run's answer, generated below it: harness/tests/readme.rs.)
    let section = &readme[readme.find("\n## Strategies\n").expect("a Strategies section")..];
    let section = &section[..section[1..].find("\n#").map_or(section.len(), |i| i + 1)];
    let rows: Vec<Vec<&str>> = section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| l.trim_matches('|').split(" | ").map(str::trim).collect())
        .collect();
    assert!(rows.iter().all(|r| r.len() == 3), "name | consistency | trade-off: {rows:?}");
    let names: Vec<&str> = rows.iter().map(|r| r[0].trim_matches('`')).collect();
    let registry: Vec<&str> = dispatch::strategy::ALL.iter().map(|i| i.name).collect();
    assert_eq!(names, registry, "the README's strategy table must list the registry, in its order");
    for (row, info) in rows.iter().zip(dispatch::strategy::ALL) {
        assert_eq!(row[1], info.consistency.name(), "{}: consistency", info.name);
        assert_eq!(row[2], info.description, "{}: the README's trade-off must be Info::description", info.name);
    }
}
