//! Whole distributions, kept: the harness's hdrhistograms written into `run.json` in
//! HdrHistogram's V2 serialization, base64 (the format every HdrHistogram implementation reads:
//! `HistogramLogProcessor`, HdrHistogram.js, the Rust crate's `Deserializer`), and written beside
//! it as `.hgrm` percentile files (the Java library's `outputPercentileDistribution` layout, which
//! the usual plotters of HdrHistogram read), so that any percentile can be read and a
//! distribution drawn after the run.

use std::fmt::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};

/// A histogram as V2 serialization in base64.
pub fn encode(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    V2Serializer::new().serialize(h, &mut bytes).expect("a histogram serializes into memory");
    STANDARD.encode(bytes)
}

/// The histogram of [`encode`]'s text; an error says what is wrong with it.
pub fn decode(text: &str) -> Result<Histogram<u64>, String> {
    let bytes = STANDARD.decode(text).map_err(|e| format!("not base64: {e}"))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("not an HdrHistogram V2 serialization: {e:?}"))
}

/// The histograms of `texts` added together; `None` if there are none. Histograms of different
/// bounds are added within the first one's (a value beyond them saturates).
pub fn merged<'a>(texts: impl IntoIterator<Item = &'a str>) -> Result<Option<Histogram<u64>>, String> {
    let mut out: Option<Histogram<u64>> = None;
    for text in texts {
        let h = decode(text)?;
        match out.as_mut() {
            None => out = Some(h),
            Some(o) => {
                if o.add(&h).is_err() {
                    for v in h.iter_recorded() {
                        o.saturating_record_n(v.value_iterated_to(), v.count_at_value());
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The `.hgrm` percentile file of `h`, values divided by `unit` (1000 for ns shown in µs): the
/// layout of HdrHistogram's `outputPercentileDistribution` with 5 steps per halving of the tail.
pub fn hgrm(h: &Histogram<u64>, unit: f64) -> String {
    let mut out = String::new();
    writeln!(out, "{:>12} {:>14} {:>10} {:>14}\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)").unwrap();
    let mut total = 0u64;
    for v in h.iter_quantiles(5) {
        total += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        let value = h.highest_equivalent(v.value_iterated_to()) as f64 / unit;
        if q < 1.0 {
            writeln!(out, "{value:12.3} {q:2.12} {total:10} {:14.2}", 1.0 / (1.0 - q)).unwrap();
        } else {
            writeln!(out, "{value:12.3} {q:2.12} {total:10}").unwrap();
        }
    }
    writeln!(out, "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]", h.mean() / unit, h.stdev() / unit).unwrap();
    writeln!(out, "#[Max     = {:12.3}, Total count    = {:12}]", h.max() as f64 / unit, h.len()).unwrap();
    // The Java library's sub-bucket count: the power of two that covers 2 × 10^sigfig values.
    let sub_buckets = (2 * 10u64.pow(u32::from(h.sigfig()))).next_power_of_two();
    writeln!(out, "#[Buckets = {:12}, SubBuckets     = {:12}]", h.buckets(), sub_buckets).unwrap();
    out
}

/// The points of a percentile plot: (1/(1-q), value / unit) at each step of [`hgrm`], the last
/// (q = 1) left out (it has no finite x).
pub fn percentile_points(h: &Histogram<u64>, unit: f64) -> Vec<(f64, f64)> {
    h.iter_quantiles(5)
        .filter(|v| v.quantile_iterated_to() < 1.0)
        .map(|v| (1.0 / (1.0 - v.quantile_iterated_to()), h.highest_equivalent(v.value_iterated_to()) as f64 / unit))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Histogram<u64> {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).unwrap();
        // A body at a few µs and a tail of milliseconds, as a transition latency has.
        for i in 0..10_000u64 {
            h.record(2_000 + (i * 7919) % 5_000).unwrap();
        }
        for ms in [1u64, 3, 250, 3_000] {
            h.record(ms * 1_000_000).unwrap();
        }
        h
    }

    /// A histogram survives the write and the read exactly: every recorded value with its count,
    /// and the bounds it was made with.
    #[test]
    fn a_histogram_survives_encode_and_decode_exactly() {
        let h = sample();
        let back = decode(&encode(&h)).unwrap();
        assert_eq!(back, h);
        let pairs = |h: &Histogram<u64>| -> Vec<(u64, u64)> {
            h.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect()
        };
        assert_eq!(pairs(&back), pairs(&h));
        assert_eq!((back.low(), back.high(), back.sigfig(), back.len()), (1, 3_600_000_000_000, 3, 10_004));
        assert!(decode("not base64!").unwrap_err().starts_with("not base64"));
        assert!(decode(&STANDARD.encode(b"0123456789")).unwrap_err().starts_with("not an HdrHistogram"));
    }

    #[test]
    fn merged_adds_every_count() {
        let h = sample();
        let text = encode(&h);
        let both = merged([text.as_str(), text.as_str()]).unwrap().unwrap();
        assert_eq!(both.len(), 2 * h.len());
        assert_eq!(both.value_at_quantile(0.5), h.value_at_quantile(0.5));
        assert!(merged([]).unwrap().is_none());
    }

    /// The `.hgrm` layout: a header, one line per step with the cumulative count, the last at
    /// percentile 1 with every value counted, then the three summary lines.
    #[test]
    fn hgrm_has_the_percentile_layout() {
        let h = sample();
        let text = hgrm(&h, 1000.0);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].split_whitespace().eq(["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]));
        assert!(lines[1].is_empty());
        let last = lines[lines.len() - 4];
        let fields: Vec<&str> = last.split_whitespace().collect();
        assert_eq!(fields[1..], ["1.000000000000", "10004"], "{last}");
        assert!((fields[0].parse::<f64>().unwrap() - h.max() as f64 / 1000.0).abs() < 1e-3 * h.max() as f64, "{last}");
        assert!(lines[lines.len() - 2].starts_with("#[Max     =") && lines[lines.len() - 2].ends_with("10004]"));
        let points = percentile_points(&h, 1000.0);
        assert!(points.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1), "{points:?}");
    }
}
