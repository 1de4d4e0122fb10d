//! The two text formats `/metrics` speaks. prometheus-client writes OpenMetrics; a scraper
//! that asks for it (`Accept: application/openmetrics-text`) gets that, and everything else
//! gets the Prometheus text format 0.0.4, which is what `promtool check metrics` and most
//! tools read: there a counter's HELP and TYPE name the `_total` series, and OpenMetrics' own
//! lines (`# EOF`, `# UNIT`, `_created` series) do not exist.

use std::collections::BTreeSet;

/// Content type of the OpenMetrics text.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the Prometheus text format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Rewrites OpenMetrics text as Prometheus text 0.0.4.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: BTreeSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            let counter = counters.contains(name) && !name.ends_with("_total");
            counter.then(|| format!("{p}{name}_total {tail}"))
        });
        if line
            .split(['{', ' '])
            .next()
            .is_some_and(|n| n.ends_with("_created"))
        {
            continue;
        }
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_by_their_total_series_and_openmetrics_lines_go() {
        let om = "# HELP berth_passes Passes run.\n# TYPE berth_passes counter\nberth_passes_total 3\nberth_passes_created 1.7e9\n# HELP berth_up Up.\n# TYPE berth_up gauge\nberth_up 1\n# EOF\n";
        let text = to_prometheus_text(om);
        assert_eq!(
            text,
            "# HELP berth_passes_total Passes run.\n# TYPE berth_passes_total counter\nberth_passes_total 3\n# HELP berth_up Up.\n# TYPE berth_up gauge\nberth_up 1\n"
        );
    }
}
