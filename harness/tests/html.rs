//! report.html in a real browser: headless Chromium opens the page of a short run and of a
//! cross-host report, and the test reads the DOM after the page's script ran (`--dump-dom`): no
//! error was raised, the summary and every plot are there, and sorting works (the page's own
//! `#selftest`, and the order it leaves the first table in). A screenshot is taken too.
//!
//! Chromium is required where `CI` is set (scripts/setup installs it; .ci/run runs setup before
//! the tests): a missing browser fails there, and is a printed skip only on a developer's machine.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dispatch-bench-html-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A short run into `out`: `strategies`, one reader, steady (and back-to-back transitions unless
/// `steady_only`), two rounds. `direct` and `fnptr` give the run its method check.
fn tiny_run(out: &Path, strategies: &str, steady_only: bool) {
    let o = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["run", "--readers=1", "--duration=0.02", "--rounds=2", "--regime-rows=false", "--counters=off"])
        .arg(format!("--strategies={strategies}"))
        .arg(format!("--rate={}", if steady_only { "0" } else { "0,max" }))
        .arg(format!("--out={}", out.display()))
        .output()
        .expect("run harness");
    assert!(o.status.success(), "{}", stderr(&o));
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Chromium as Debian names it (`chromium`) or as others do (`chromium-browser`); `None` (a
/// printed skip) only outside CI.
fn chromium(test: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = ["chromium", "chromium-browser"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            !in_ci(),
            "chromium (or chromium-browser) is not on PATH, and CI needs it to check report.html: run scripts/setup"
        );
        eprintln!("{test}: skipped: chromium is not on PATH (scripts/setup installs it; in CI this fails)");
    }
    found
}

/// What the browser gave: stdout (the DOM, with `--dump-dom`) and stderr (its log, where the
/// console's "Uncaught" errors appear).
struct Browsed {
    stdout: String,
    stderr: String,
}

/// Opens `url` in headless Chromium with `args`, its profile in `scratch`; a browser that hangs
/// is killed after two minutes and fails the test.
fn browse(chromium: &Path, scratch: &Path, args: &[&str], url: &str) -> Browsed {
    let mut child = Command::new(chromium)
        // As root (CI) Chromium runs only without its sandbox; no GPU in a VM.
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
        .args(["--enable-logging=stderr", "--v=0"])
        .arg(format!("--user-data-dir={}", scratch.join("profile").display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = pipe.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish {url} within 120 s: {}", err.join().unwrap());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let browsed = Browsed { stdout: out.join().unwrap(), stderr: err.join().unwrap() };
    assert!(status.success(), "chromium failed on {url} ({status}): {}", browsed.stderr);
    browsed
}

/// Opens `page` with `#selftest` and returns the DOM after the script ran, failing on any error
/// the page raised (recorded into `data-errors` by the page's hook, or logged as "Uncaught") and
/// on a self-test that did not pass.
fn selftest(chromium: &Path, scratch: &Path, page: &Path) -> String {
    let b = browse(chromium, scratch, &["--dump-dom"], &format!("file://{}#selftest", page.display()));
    let dom = b.stdout;
    assert!(dom.contains("</html>"), "no DOM dumped: {dom}\n{}", b.stderr);
    let errors = errors(&dom);
    assert!(errors.is_none(), "the page raised errors: {errors:?}");
    assert!(!b.stderr.contains("Uncaught"), "the console logged an error: {}", b.stderr);
    assert!(
        dom.contains("<p id=\"selftest\" data-result=\"pass\">"),
        "the page's self-test did not pass: {}",
        element_text(&dom, "<p id=\"selftest\"")
    );
    dom
}

/// The errors the page's hook recorded on `<html>` (its `data-errors`), if any. Only the tag is
/// read: the hook's own source names the attribute too.
fn errors(dom: &str) -> Option<String> {
    let start = dom.find("<html").expect("an <html> element");
    let tag = &dom[start..start + dom[start..].find('>').unwrap()];
    let at = tag.find("data-errors=\"")? + "data-errors=\"".len();
    Some(tag[at..].split('"').next().unwrap().to_owned())
}

fn element_text(dom: &str, open: &str) -> String {
    dom.find(open).map_or_else(|| format!("no {open} in the DOM"), |i| dom[i..].split("</").next().unwrap().to_owned())
}

/// The first cell of every row of the first table body: the strategies, in the order shown.
fn first_column(html: &str) -> Vec<String> {
    let start = html.find("<tbody>").expect("a table");
    let body = &html[start..start + html[start..].find("</tbody>").unwrap()];
    body.split("<tr")
        .skip(1)
        .map(|row| {
            let cell = &row[row.find("<td").unwrap()..];
            cell[cell.find('>').unwrap() + 1..cell.find("</td>").unwrap()].to_owned()
        })
        .collect()
}

/// How many SVG files a directory holds: the plots drawn, each of which the page must inline.
fn svg_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "svg"))
        .count()
}

#[test]
fn the_run_report_loads_in_a_browser_with_its_summary_every_plot_and_working_sorting() {
    let Some(chromium) = chromium("the_run_report_loads_in_a_browser") else { return };
    let root = scratch("run");
    let out = root.join("run");
    tiny_run(&out, "direct,fnptr,klp", false);
    let page = out.join("report.html");
    let html = std::fs::read_to_string(&page).expect("report.html written");

    let dom = selftest(&chromium, &root, &page);
    let summary = element_text(&dom, "<section id=\"summary\">");
    assert!(summary.contains("<h2>Summary"), "{summary}");
    // The answer first: the ranked matrix of ratios to fnptr, every strategy of the run in it.
    let start = dom.find("<section id=\"summary\">").unwrap();
    let section = &dom[start..start + dom[start..].find("</section>").unwrap()];
    assert!(section.contains("<caption>The answer: ns/call over fnptr"), "{section}");
    for strategy in ["direct", "fnptr", "klp"] {
        assert!(section.contains(&format!("<td>{strategy}</td>")), "{strategy}: {section}");
    }
    // The method check, whatever it found on this machine, and the interference verdict.
    assert!(dom.contains("fnptr / direct = ") && dom.contains("interference: "), "{dom}");
    let plots = svg_files(&out);
    if plotfont::register().is_ok() {
        assert!(plots >= 2, "a font is here, so ratio and latency are drawn: {plots} SVG files");
    }
    assert_eq!(dom.matches("<figure id=\"plot-").count(), plots, "every plot inlined, and only those");
    // Each scenario's own plots beside its tables: its ratio to fnptr and its latency percentiles.
    let sections = dom.matches("<section class=\"scenario\"").count();
    let beside = if plotfont::register().is_ok() { 2 * sections } else { 0 };
    assert_eq!(dom.matches("<figure class=\"scenario-plot\">").count(), beside, "{sections} scenario(s)");
    assert_eq!(dom.matches("<svg ").count(), plots + beside, "and no other SVG");
    // The self-test left the first table sorted by strategy, descending: not the order written.
    let (written, shown) = (first_column(&html), first_column(&dom));
    let mut want = written.clone();
    want.sort();
    want.reverse();
    assert_eq!(shown, want, "the first table, sorted by its first column descending");
    assert_ne!(shown, written, "the sort changed the order (registry order is not descending)");

    let shot = root.join("report.png");
    browse(
        &chromium,
        &root,
        &["--hide-scrollbars", "--window-size=1280,1000", &format!("--screenshot={}", shot.display())],
        &format!("file://{}", page.display()),
    );
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(png.len() > 1000 && png.starts_with(b"\x89PNG\r\n\x1a\n"), "screenshot of {} bytes", png.len());
    if let Some(keep) = std::env::var_os("DISPATCH_BENCH_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// The checks above would pass vacuously if an error went unseen: a page that throws is caught by
/// both the page's hook (`data-errors`) and the browser's log ("Uncaught").
#[test]
fn a_page_that_throws_is_caught_by_both_error_checks() {
    let Some(chromium) = chromium("a_page_that_throws_is_caught") else { return };
    let root = scratch("throws");
    std::fs::create_dir_all(&root).unwrap();
    let page = root.join("throws.html");
    let html = format!(
        "<!DOCTYPE html><html><head><script>{}</script></head><body><script>null.x;</script></body></html>",
        harness::html::ERROR_HOOK
    );
    std::fs::write(&page, html).unwrap();
    let b = browse(&chromium, &root, &["--dump-dom"], &format!("file://{}", page.display()));
    assert!(errors(&b.stdout).is_some_and(|e| e.contains("TypeError")), "{}", b.stdout);
    assert!(b.stderr.contains("Uncaught"), "{}", b.stderr);
    let _ = std::fs::remove_dir_all(&root);
}

/// `harness report` of two runs (the second's CPU edited to one no machine has) writes a
/// report.html that loads, names each host by its CPU, sorts, and inlines the merged plot; of one
/// run, that run's report.html.
#[test]
fn the_cross_host_report_loads_in_a_browser_with_each_host() {
    let Some(chromium) = chromium("the_cross_host_report_loads_in_a_browser") else { return };
    let root = scratch("hosts");
    let (a, b, merged) = (root.join("a"), root.join("b"), root.join("merged"));
    tiny_run(&a, "fnptr,klp", true);
    tiny_run(&b, "fnptr,klp", true);
    let run = common::as_another_cpu(&b, "Zen <99>");
    let o = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["report", a.to_str().unwrap(), b.to_str().unwrap(), "--out", merged.to_str().unwrap()])
        .output()
        .expect("run harness");
    assert!(o.status.success(), "{}", stderr(&o));
    let dom = selftest(&chromium, &root, &merged.join("report.html"));
    let host = harness::record::load_run(&a).unwrap().env.host_label();
    // The edited label is escaped in the file, so the browser shows it as text.
    let other = format!("AMD Zen &lt;99&gt; (99/1/0), {} CPUs", run["env"]["cpu"]["cpus"]);
    assert!(dom.contains(&format!("<th scope=\"col\" title=\"click to sort\">{host}</th>")), "{dom}");
    assert!(dom.contains(&format!("<h3>{other} (run of ")), "{dom}");
    assert!(
        dom.contains("<h2>Summary: the answer, host by host</h2>") && dom.contains("<caption>per site</caption>"),
        "{dom}"
    );
    assert_eq!(dom.matches("<figure id=\"plot-").count(), svg_files(&merged), "the merged plots inlined");

    // Given one run, `harness report` writes its report.html again, as a run does.
    let single = root.join("single");
    let o = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["report", a.to_str().unwrap(), "--out", single.to_str().unwrap()])
        .output()
        .expect("run harness");
    assert!(o.status.success(), "{}", stderr(&o));
    let page = std::fs::read_to_string(single.join("report.html")).expect("report.html of one run");
    assert!(page.contains("<section id=\"summary\">") && page.contains(&host), "{page}");
    assert_eq!(page.matches("<figure id=\"plot-").count(), svg_files(&single), "every plot inlined");
    let _ = std::fs::remove_dir_all(&root);
}
