//! The run's machine-readable exports: `bmf.json` (Bencher Metric Format) from the summaries,
//! `rows.csv` from the rows.

use serde_json::json;

use crate::counters::{CounterKind, CounterValues, counter_names};
use crate::record::{Histograms, Interference, Percentiles, PhasePercentiles, Row, RunFile, leaves};
use crate::sched::ReaderSched;
use crate::summary::{Spread, Summary};

/// The suffix that makes Bencher keep a benchmark's measurements but raise no alert on them:
/// what a measurement flagged for interference gets in `bmf.json`.
pub const BENCHER_IGNORE: &str = "_bencher_ignore";

/// Bencher Metric Format: `{"<scenario>/<strategy>": {"latency": {value, lower_value,
/// upper_value}, ...}}`, each the median over rounds with its range. Measures: `latency` (ns per
/// call) and `throughput` (calls/s), Bencher's own; `ratio-to-fnptr` (a ratio, unitless),
/// `batch-p99-ns` (per-batch p99, ns per call) and `transition-p99-us` (µs), whose names carry
/// their units (BMF has no unit field; Bencher creates a measure from its name). A benchmark with
/// rounds flagged for interference is named with [`BENCHER_IGNORE`] appended, so that its
/// figures, which include other tasks' time, are kept but raise no alert.
pub fn bmf(summaries: &[Summary]) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for s in summaries {
        let measure = |sp: Spread| json!({"value": sp.median, "lower_value": sp.min, "upper_value": sp.max});
        let mut m = serde_json::Map::new();
        m.insert("latency".into(), measure(s.ns_per_call));
        m.insert("throughput".into(), measure(s.calls_per_sec));
        for (name, value) in [
            ("ratio-to-fnptr", s.ratio_to_fnptr),
            ("batch-p99-ns", s.p99_rounds),
            ("transition-p99-us", s.transition_p99),
        ] {
            if let Some(v) = value {
                m.insert(name.into(), measure(v));
            }
        }
        let ignore = if s.flagged_rounds > 0 { BENCHER_IGNORE } else { "" };
        out.insert(format!("{}/{}{ignore}", s.scenario.name(), s.strategy), m.into());
    }
    out.into()
}

/// A row with every optional field present, one reader and every counter this harness opens:
/// rows.csv's columns are its leaves, so that the column set follows the types and never a run's
/// data (the CSVs of a 2-CPU run and a 64-reader run stack with one header).
fn template() -> Row {
    let p = Some(Percentiles::default());
    let counters = CounterValues { values: counter_names().map(|n| (n.to_owned(), 0.0)).collect(), multiplexed: false };
    Row {
        strategy: String::new(),
        consistency: String::new(),
        scenario: crate::config::Scenario::DEFAULT,
        round: 0,
        pinned: false,
        oversubscribed: false,
        calls: 0,
        ns_per_call: 0.0,
        ratio_to_fnptr: Some(0.0),
        calls_per_sec: 0.0,
        batch_ns: p,
        clamped: 0,
        transitions: 0,
        rate_target_hz: Some(0.0),
        rate_achieved_hz: Some(0.0),
        rate_kept: Some(false),
        transition_us: p,
        transition_service_us: p,
        writer_cpu: Some(0),
        writer_shares_cpu: Some(false),
        grace_period_us: p,
        critical_sections: 0,
        violations: 0,
        use_after_reclaim: 0,
        idle_in_transition: 0,
        stale_cache_refills: 0,
        counter_kind: CounterKind::None,
        counters: Some(counters),
        clock_overhead_ns: 0.0,
        sched: vec![ReaderSched {
            cpu_start: Some(0),
            cpu_end: Some(0),
            wall_ns: 0,
            on_cpu_ns: Some(0),
            runqueue_wait_ns: Some(0),
            voluntary_switches: Some(0),
            involuntary_switches: Some(0),
            migrations: Some(0),
        }],
        host_steal_share: Some(0.0),
        interference: Interference::default(),
        phases_us: dispatch::Phases::NAMES
            .iter()
            .map(|name| PhasePercentiles { phase: (*name).to_owned(), us: Percentiles::default() })
            .collect(),
        start_late_us: p,
        histograms: Histograms::default(),
    }
}

/// A row as rows.csv reads it: serialized, with the scenario's rate as one cell (`steady`,
/// `1000hz`, `max`) where JSON has a string or an object by rate.
fn csv_value(r: &Row) -> Result<serde_json::Value, serde_json::Error> {
    let mut value = serde_json::to_value(r)?;
    value["scenario"]["rate"] = r.scenario.rate.to_string().into();
    // Whole distributions are kilobytes of base64 each: run.json and the `.hgrm` files hold them,
    // a spreadsheet's cell is no place for them.
    if let Some(row) = value.as_object_mut() {
        row.remove("histograms");
    }
    Ok(value)
}

/// The columns that say where a line comes from, before the row's own.
const ORIGIN: [&str; 9] = ["host", "cpu", "commit", "started", "scenario", "strategy", "round", "reader", "flagged"];

/// rows.csv's columns: [`ORIGIN`], then every leaf of a row ([`template`]) except its per-reader
/// `sched.N.*`, which become `reader.*` (one line per reader).
fn columns() -> Vec<String> {
    let value = csv_value(&template()).expect("a row serializes");
    let mut out: Vec<String> = ORIGIN.iter().map(|c| c.to_string()).collect();
    for (path, _) in leaves(&value) {
        let column = match path.strip_prefix("sched.0.") {
            Some(field) => format!("reader.{field}"),
            None => path,
        };
        if !out.contains(&column) && !["strategy", "round"].contains(&column.as_str()) {
            out.push(column);
        }
    }
    out
}

/// `rows.csv`: long form, one line per strategy × scenario × round × reader of every run given
/// (several runs stack: a merged report writes them all), with where it comes from first (host,
/// CPU, commit, start time, the scenario's name, strategy, round, reader, whether its round was
/// flagged for interference), then every field of the row as a column, nested ones by their path
/// (`scenario.readers`, `batch_ns.p99`, `reader.migrations` for the line's reader), lists of text
/// joined with `; `. The columns follow the types ([`template`]), so a field added to [`Row`] or a
/// dimension added to the scenario is a column without a change here.
pub fn rows_csv(runs: &[&RunFile]) -> Result<String, serde_json::Error> {
    let columns = columns();
    // RFC 4180: quote a field holding a comma, quote or line break, doubling its quotes.
    let quote = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_owned() }
    };
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join("; "),
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut csv = columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(",") + "\n";
    for run in runs {
        for r in &run.rows {
            let value = csv_value(r)?;
            let cells: Vec<(String, String)> = leaves(&value).into_iter().map(|(p, v)| (p, text(v))).collect();
            for reader in 0..r.sched.len().max(1) {
                let origin = [
                    run.env.host.clone(),
                    run.env.host_label(),
                    run.env.git_commit.clone(),
                    run.started.clone(),
                    r.scenario.name(),
                    r.strategy.clone(),
                    r.round.to_string(),
                    reader.to_string(),
                    r.interference.flagged().to_string(),
                ];
                let own = format!("sched.{reader}.");
                let line: Vec<String> = columns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        if i < ORIGIN.len() {
                            return quote(&origin[i]);
                        }
                        let path = c.strip_prefix("reader.").map_or_else(|| c.clone(), |f| format!("{own}{f}"));
                        cells.iter().find(|(n, _)| *n == path).map_or(String::new(), |(_, v)| quote(v))
                    })
                    .collect();
                csv.push_str(&line.join(","));
                csv.push('\n');
            }
        }
    }
    Ok(csv)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::record::test_support::{method_rows as rows, transition_run};
    use crate::summary::summarize;

    #[test]
    fn bmf_has_tail_and_transition_measures() {
        let out = bmf(&summarize(&transition_run().rows));
        let name = crate::config::Scenario::DEFAULT.name();
        let klp = &out[format!("{name}/klp")];
        assert_eq!(klp["batch-p99-ns"], json!({"value": 3.0, "lower_value": 2.0, "upper_value": 4.0}));
        assert_eq!(klp["transition-p99-us"], json!({"value": 101.0, "lower_value": 100.0, "upper_value": 102.0}));
        assert_eq!(klp["ratio-to-fnptr"]["value"], 1.5);
        let steady = bmf(&summarize(&rows([1.0; 3])));
        let fnptr = &steady[format!("{name}/fnptr")];
        assert!(fnptr.get("transition-p99-us").is_none(), "no writer, no transition measure: {fnptr}");
    }

    /// A measurement with a flagged round is exported under a name Bencher keeps without
    /// alerting on it; its clean neighbours keep their names.
    #[test]
    fn bmf_marks_flagged_measurements_for_bencher_to_ignore() {
        let mut run = transition_run();
        run.rows[1].interference.reasons = vec!["a reader was off its CPU 60% of its time (limit 5%)".into()];
        let out = bmf(&summarize(&run.rows));
        let name = crate::config::Scenario::DEFAULT.name();
        assert_eq!(run.rows[1].strategy, "klp");
        assert!(out.get(format!("{name}/klp{BENCHER_IGNORE}")).is_some() && out.get(format!("{name}/klp")).is_none());
        assert!(out.get(format!("{name}/fnptr")).is_some(), "{out}");
    }

    /// The fields of one CSV line (RFC 4180 quoting).
    fn fields(line: &str) -> Vec<String> {
        let (mut out, mut field, mut quoted, mut chars) = (Vec::new(), String::new(), false, line.chars().peekable());
        while let Some(c) = chars.next() {
            match (c, quoted) {
                ('"', true) if chars.peek() == Some(&'"') => {
                    field.push('"');
                    chars.next();
                }
                ('"', _) => quoted = !quoted,
                (',', false) => out.push(std::mem::take(&mut field)),
                _ => field.push(c),
            }
        }
        out.push(field);
        out
    }

    #[test]
    fn rows_csv_is_long_form_with_its_origin_and_quotes_text() {
        let mut run = transition_run();
        run.rows[0].interference.reasons = vec!["a, b".into(), "say \"c\"".into()];
        run.rows[0].scenario.rate = crate::config::Rate::Hz(1000.0);
        let reader = template().sched[0].clone();
        run.rows[1].sched = vec![reader.clone(), ReaderSched { migrations: Some(7), ..reader }];
        let csv = rows_csv(&[&run]).unwrap();
        let lines: Vec<Vec<String>> = csv.lines().map(fields).collect();
        assert_eq!(lines.len(), 1 + run.rows.len() + 1, "one line per reader: {csv}");
        let header = &lines[0];
        assert_eq!(header[..ORIGIN.len()], ORIGIN, "where a line comes from, first");
        for column in ["scenario.readers", "scenario.rate", "batch_ns.p99", "reader.migrations"] {
            assert!(header.iter().any(|c| c == column), "{column}: {header:?}");
        }
        assert!(!header.iter().any(|c| c.starts_with("sched.")), "{header:?}");
        assert!(lines.iter().all(|l| l.len() == header.len()), "every line has the header's columns: {csv}");
        let cell = |line: usize, name: &str| lines[line][header.iter().position(|c| c == name).unwrap()].clone();
        assert_eq!(
            (cell(1, "host"), cell(1, "cpu"), cell(1, "commit")),
            ("test-host".into(), "AMD Zen 4 (25/17/1), 2 CPUs".into(), "0000000".into())
        );
        assert_eq!(cell(1, "interference.reasons"), "a, b; say \"c\"");
        assert_eq!((cell(1, "flagged"), cell(2, "flagged")), ("true".into(), "false".into()));
        assert_eq!(cell(1, "scenario.rate"), "1000hz");
        assert_eq!((cell(2, "reader"), cell(3, "reader")), ("0".into(), "1".into()));
        assert_eq!((cell(2, "reader.migrations"), cell(3, "reader.migrations")), ("0".into(), "7".into()));
        assert_eq!(cell(2, "batch_ns.p99"), "2.0", "klp's first round");
        assert!(csv.contains(",\"a, b; say \"\"c\"\"\","), "quoted as RFC 4180 says: {csv}");
    }

    /// The columns follow the types, never the data: a run with no writer and one reader has the
    /// header of a run with transitions and 64 readers, so their CSVs stack with `cat`; and no
    /// column is a bare optional object (always empty beside its own fields).
    #[test]
    fn the_columns_do_not_depend_on_the_run() {
        let mut many = transition_run();
        many.rows[0].sched = vec![template().sched[0].clone(); 64];
        let few = crate::record::test_support::run(rows([1.0; 3]));
        let header = |run: &RunFile| rows_csv(&[run]).unwrap().lines().next().unwrap().to_owned();
        assert_eq!(header(&many), header(&few));
        let stacked = rows_csv(&[&many, &few]).unwrap();
        assert_eq!(stacked.lines().count(), 1 + 64 + (many.rows.len() - 1) + few.rows.len());
        let columns = columns();
        for c in &columns[ORIGIN.len()..] {
            assert!(!columns.iter().any(|d| d.starts_with(&format!("{c}."))), "{c} is an object's bare column");
        }
    }
}
