//! The run's machine-readable exports: `bmf.json` (Bencher Metric Format) from the summaries,
//! `rows.csv` from the rows.

use serde_json::json;

use crate::record::{Row, leaves};
use crate::summary::{Spread, Summary};

/// Bencher Metric Format: `{"<scenario>/<strategy>": {"latency": {value, lower_value, upper_value}, ...}}`:
/// ns/call, calls a second, the ratio to `fnptr`, the per-batch p99 (ns/call) and the transition
/// latency p99 (µs), each the median over rounds with its range.
pub fn bmf(summaries: &[Summary]) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for s in summaries {
        let measure = |sp: Spread| json!({"value": sp.median, "lower_value": sp.min, "upper_value": sp.max});
        let mut m = serde_json::Map::new();
        m.insert("latency".into(), measure(s.ns_per_call));
        m.insert("throughput".into(), measure(s.calls_per_sec));
        for (name, value) in [
            ("ratio-to-fnptr", s.ratio_to_fnptr),
            ("p99-latency", s.p99_rounds),
            ("transition-p99-us", s.transition_p99),
        ] {
            if let Some(v) = value {
                m.insert(name.into(), measure(v));
            }
        }
        out.insert(format!("{}/{}", s.scenario.name(), s.strategy), m.into());
    }
    out.into()
}

/// `rows.csv`: one line per row of `run.json`, the scenario's name first, then every field a
/// column, nested ones named by their path (`scenario.readers`, `batch_ns.p99`,
/// `sched.0.migrations`), lists of text joined with `; `. Generated from the serialized rows, so a
/// field added to [`Row`] or a dimension added to the scenario is a column without a change here.
pub fn rows_csv(rows: &[Row]) -> Result<String, serde_json::Error> {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join("; "),
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let flat: Vec<Vec<(String, String)>> = rows
        .iter()
        .map(|r| {
            let mut cells = vec![("scenario".to_owned(), r.scenario.name())];
            let value = serde_json::to_value(r)?;
            cells.extend(leaves(&value).into_iter().map(|(path, leaf)| (path, text(leaf))));
            Ok(cells)
        })
        .collect::<Result<_, serde_json::Error>>()?;
    // What identifies a row first, then columns in the order they first appear (serde_json sorts
    // fields by name): rows with more readers add `sched.N` columns.
    let mut columns: Vec<&str> = vec!["scenario", "strategy", "round"];
    for (name, _) in flat.iter().flatten() {
        if !columns.contains(&name.as_str()) {
            columns.push(name);
        }
    }
    // RFC 4180: quote a field holding a comma, quote or line break, doubling its quotes.
    let quote = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_owned() }
    };
    let mut csv = columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(",") + "\n";
    for cells in &flat {
        let line: Vec<String> = columns
            .iter()
            .map(|c| cells.iter().find(|(n, _)| n == c).map_or(String::new(), |(_, v)| quote(v)))
            .collect();
        csv.push_str(&line.join(","));
        csv.push('\n');
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
        assert_eq!(klp["p99-latency"], json!({"value": 3.0, "lower_value": 2.0, "upper_value": 4.0}));
        assert_eq!(klp["transition-p99-us"], json!({"value": 101.0, "lower_value": 100.0, "upper_value": 102.0}));
        assert_eq!(klp["ratio-to-fnptr"]["value"], 1.5);
        let steady = bmf(&summarize(&rows([1.0; 3])));
        let fnptr = &steady[format!("{name}/fnptr")];
        assert!(fnptr.get("transition-p99-us").is_none(), "no writer, no transition measure: {fnptr}");
    }

    #[test]
    fn rows_csv_has_a_column_per_field_and_quotes_text() {
        let mut run = transition_run();
        run.rows[0].interference.reasons = vec!["a, b".into(), "say \"c\"".into()];
        let csv = rows_csv(&run.rows).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 1 + run.rows.len());
        assert!(
            lines[0].starts_with("scenario,strategy,round,") && lines[0].contains(",batch_ns.p99,"),
            "{}",
            lines[0]
        );
        assert!(lines[1].contains(",\"a, b; say \"\"c\"\"\","), "{}", lines[1]);
        // Every line has the header's columns (the quoted comma is one field).
        let fields = |l: &str| l.split(',').count() - l.matches("a, b").count();
        assert!(lines.iter().all(|l| fields(l) == fields(lines[0])), "{csv}");
        let p99 = lines[0].split(',').position(|c| c == "batch_ns.p99").unwrap();
        assert_eq!(lines[2].split(',').nth(p99), Some("2.0"), "klp's first round: {}", lines[2]);
    }
}
