//! The harness library: what the `harness` binary does, testable.

use std::fmt::Write;

/// The `list` table: one line per strategy of the registry.
pub fn list() -> String {
    let mut out = String::new();
    for info in dispatch::strategy::ALL {
        writeln!(out, "{:<10} {:<10} {}", info.name, info.consistency.name(), info.description).unwrap();
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn list_names_every_strategy_once() {
        let out = super::list();
        for info in dispatch::strategy::ALL {
            assert_eq!(out.lines().filter(|l| l.split_whitespace().next() == Some(info.name)).count(), 1);
        }
    }
}
