//! The fleet page's graph, rendered on the server as SVG: messages per second per
//! connector over the last hour, one line each, from the node's per-minute counts. No
//! chart library and no script: the page is complete without JavaScript, and the SVG
//! uses presentation attributes only (no inline `style`), which the
//! Content-Security-Policy allows.

use std::fmt::Write;

/// One line of the graph.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    /// Counts per minute, oldest first.
    pub per_minute: Vec<u64>,
}

/// Line colours, picked for contrast on white and for telling neighbours apart.
pub const PALETTE: [&str; 8] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];

/// The colour of series `index`.
pub fn colour(index: usize) -> &'static str {
    PALETTE[index % PALETTE.len()]
}

/// `text` escaped for an XML/HTML text node or a quoted attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Geometry of the plot area inside the SVG.
const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 240.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 8.0;
const BOTTOM: f64 = 24.0;

/// A "nice" upper bound for the y axis: 1, 2 or 5 times a power of ten, at least `max`.
pub fn nice_ceiling(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    for step in [1.0, 2.0, 5.0, 10.0] {
        if step * magnitude >= max {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

/// Messages per second from a count per minute.
fn per_second(count: u64) -> f64 {
    count as f64 / 60.0
}

/// Formats a rate for an axis label: at most two decimals, none when whole.
pub fn rate_label(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The points of one series in plot coordinates, for a `polyline`.
fn points(values: &[u64], minutes: usize, ceiling: f64) -> String {
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let step = if minutes > 1 { plot_w / (minutes - 1) as f64 } else { 0.0 };
    let mut out = String::new();
    for (i, count) in values.iter().enumerate() {
        let x = LEFT + step * i as f64;
        let y = TOP + plot_h - plot_h * (per_second(*count) / ceiling).min(1.0);
        if !out.is_empty() {
            out.push(' ');
        }
        let _ = write!(out, "{x:.1},{y:.1}");
    }
    out
}

/// The graph as an `<svg>` element: one line per series (messages per second), a y
/// axis with its ceiling and the middle, an x axis from "-60 min" to "now". Each line
/// carries a `<title>` with the connector's name and its latest rate (a tooltip, and
/// what screen readers say). A graph of no series says so.
pub fn render(series: &[Series]) -> String {
    let minutes = series.iter().map(|s| s.per_minute.len()).max().unwrap_or(0);
    let max = series.iter().flat_map(|s| s.per_minute.iter()).map(|c| per_second(*c)).fold(0.0, f64::max);
    let ceiling = nice_ceiling(max);
    let plot_h = HEIGHT - TOP - BOTTOM;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="messages per second per connector over the last hour" xmlns="http://www.w3.org/2000/svg">"#
    );
    // Grid: ceiling, half, zero.
    for (fraction, label) in [(1.0, ceiling), (0.5, ceiling / 2.0), (0.0, 0.0)] {
        let y = TOP + plot_h - plot_h * fraction;
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ccc" stroke-width="1"/><text x="{}" y="{:.1}" text-anchor="end" font-size="11" fill="#555">{}</text>"##,
            WIDTH - RIGHT,
            LEFT - 4.0,
            y + 4.0,
            rate_label(label)
        );
    }
    let _ = write!(
        out,
        r##"<text x="{LEFT}" y="{}" font-size="11" fill="#555">-60 min</text><text x="{}" y="{}" text-anchor="end" font-size="11" fill="#555">now</text>"##,
        HEIGHT - 6.0,
        WIDTH - RIGHT,
        HEIGHT - 6.0
    );
    if series.is_empty() || minutes == 0 {
        let _ = write!(
            out,
            r##"<text x="{}" y="{}" text-anchor="middle" font-size="13" fill="#555">no connectors</text>"##,
            WIDTH / 2.0,
            HEIGHT / 2.0
        );
    }
    for (index, s) in series.iter().enumerate() {
        let latest = s.per_minute.last().copied().unwrap_or(0);
        let _ = write!(
            out,
            r#"<polyline class="series" data-name="{}" fill="none" stroke="{}" stroke-width="2" points="{}"><title>{}: {} msg/s</title></polyline>"#,
            escape(&s.name),
            colour(index),
            points(&s.per_minute, minutes, ceiling),
            escape(&s.name),
            rate_label(per_second(latest))
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_y_axis_ends_at_a_nice_number() {
        let cases =
            [(0.0, 1.0), (-3.0, 1.0), (0.3, 0.5), (1.0, 1.0), (1.2, 2.0), (3.0, 5.0), (7.5, 10.0), (120.0, 200.0)];
        for (max, expected) in cases {
            assert!((nice_ceiling(max) - expected).abs() < 1e-9, "{max} -> {}", nice_ceiling(max));
        }
    }

    #[test]
    fn rates_are_labelled_without_trailing_zeros() {
        let cases = [(0.0, "0"), (1.0, "1"), (0.5, "0.5"), (1.0 / 60.0, "0.02"), (2.25, "2.25")];
        for (value, expected) in cases {
            assert_eq!(rate_label(value), expected);
        }
    }

    #[test]
    fn points_span_the_plot_and_scale_to_the_ceiling() {
        // 60 per minute is 1/s: with a ceiling of 1 it touches the top of the plot.
        let cases: &[(&[u64], f64, &str)] = &[
            (&[0, 60], 1.0, "48.0,216.0 712.0,8.0"),
            (&[30, 0], 1.0, "48.0,112.0 712.0,216.0"),
            // Above the ceiling is drawn at the ceiling.
            (&[600], 1.0, "48.0,8.0"),
        ];
        for (values, ceiling, expected) in cases {
            assert_eq!(points(values, values.len(), *ceiling), *expected, "{values:?}");
        }
    }

    #[test]
    fn a_graph_has_a_line_per_series_with_escaped_names() {
        let svg = render(&[
            Series { name: "irc <b>\"x\"</b>".into(), per_minute: vec![0, 60, 120] },
            Series { name: "rss".into(), per_minute: vec![0, 0, 6] },
        ]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("irc &lt;b&gt;&quot;x&quot;&lt;/b&gt;: 2 msg/s"), "{svg}");
        assert!(svg.contains("rss: 0.1 msg/s"), "{svg}");
        assert!(!svg.contains("<b>"));
        assert!(!svg.contains("style="), "no inline style: the CSP forbids it");
        assert!(render(&[]).contains("no connectors"));
    }

    #[test]
    fn escaping_covers_markup_and_quotes() {
        let cases = [
            ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
            ("a & b", "a &amp; b"),
            ("\"'", "&quot;&#39;"),
            ("plain", "plain"),
        ];
        for (text, expected) in cases {
            assert_eq!(escape(text), expected);
        }
    }
}
