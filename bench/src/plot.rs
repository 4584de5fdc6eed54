//! A line chart as SVG text: axes with ticks and labels, a legend, one polyline per series.
//! Written here so that the benchmark's plots need no plotting crate; it draws only what the
//! report shows, not charts in general.

use std::fmt::Write as _;

/// One axis of a chart, linear: equal differences at equal distances.
#[derive(Debug, Clone)]
pub struct Axis {
    /// What the axis measures, with its unit.
    pub label: String,
}

/// One line of a chart: its name in the legend and its points as (x, y), in drawing order.
#[derive(Debug, Clone)]
pub struct Series {
    /// Its name in the legend.
    pub name: String,
    /// Its points, joined in this order.
    pub points: Vec<(f64, f64)>,
}

/// A line chart.
#[derive(Debug, Clone)]
pub struct Chart {
    /// The title above it.
    pub title: String,
    /// The horizontal axis.
    pub x: Axis,
    /// The vertical axis.
    pub y: Axis,
    /// Its lines.
    pub series: Vec<Series>,
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 440.0;
/// Room for the y axis's tick labels and label.
const LEFT: f64 = 80.0;
/// Room for the legend.
const RIGHT: f64 = 170.0;
const TOP: f64 = 40.0;
/// Room for the x axis's tick labels and label.
const BOTTOM: f64 = 60.0;
/// Told apart in colour and, for readers who cannot, in dash.
const STYLES: [(&str, &str); 6] = [
    ("#1f77b4", ""),
    ("#d62728", "6 3"),
    ("#2ca02c", "2 3"),
    ("#ff7f0e", "8 3 2 3"),
    ("#9467bd", "12 4"),
    ("#8c564b", "4 4"),
];

/// Where an axis starts and ends, in the axis's values, and the distance between its ticks.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Span {
    low: f64,
    high: f64,
    step: f64,
}

impl Span {
    /// The span that holds every finite one of `values`, from zero where they allow (so that
    /// heights compare as ratios) and ending on a tick.
    fn of(values: impl Iterator<Item = f64>) -> Span {
        let (min, max) = values
            .filter(|v| v.is_finite())
            .fold((0.0f64, f64::NEG_INFINITY), |(min, max), v| {
                (min.min(v), max.max(v))
            });
        let max = if max.is_finite() { max } else { 1.0 };
        let step = nice_step(((max - min) / 5.0).max(f64::MIN_POSITIVE));
        let high = ((max / step).ceil() * step).max(min + step);
        Span {
            low: min,
            high,
            step,
        }
    }

    /// Where `value` falls between `from` (the span's low end) and `to` (its high end).
    fn place(&self, value: f64, from: f64, to: f64) -> f64 {
        from + (value - self.low) / (self.high - self.low) * (to - from)
    }

    /// The ticks, low to high.
    fn ticks(&self) -> impl Iterator<Item = f64> + '_ {
        let first = (self.low / self.step).ceil() as i64;
        let last = (self.high / self.step + 1e-9).floor() as i64;
        (first..=last).map(|k| k as f64 * self.step)
    }

    /// A tick's label, with as many decimals as the ticks' spacing needs.
    fn label(&self, value: f64) -> String {
        let decimals = (-self.step.log10().floor()).max(0.0) as usize;
        format!("{value:.decimals$}")
    }
}

/// 1, 2 or 5 times a power of ten, the smallest at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let magnitude = 10f64.powi(raw.log10().floor() as i32);
    let fraction = raw / magnitude;
    let nice = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .find(|n| fraction <= *n * (1.0 + 1e-9))
        .unwrap_or(10.0);
    nice * magnitude
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Chart {
    /// The chart as a standalone SVG document.
    pub fn svg(&self) -> String {
        let points = || self.series.iter().flat_map(|s| s.points.iter());
        let x_span = Span::of(points().map(|p| p.0));
        let y_span = Span::of(points().map(|p| p.1));
        let (left, right, top, bottom) = (LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM);
        let at = |(x, y): (f64, f64)| (x_span.place(x, left, right), y_span.place(y, bottom, top));
        let mut svg = String::new();
        let mut put = |line: String| {
            svg.push_str(&line);
            svg.push('\n');
        };
        put(format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
        ));
        put(format!(
            r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
        ));
        put(format!(
            r#"<text x="{:.1}" y="24" text-anchor="middle" font-size="15">{}</text>"#,
            (left + right) / 2.0,
            escape(&self.title)
        ));
        for tick in x_span.ticks() {
            let x = x_span.place(tick, left, right);
            put(format!(
                r##"<line x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{bottom:.1}" stroke="#e4e4e4"/>"##
            ));
            put(format!(
                r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                bottom + 18.0,
                x_span.label(tick)
            ));
        }
        for tick in y_span.ticks() {
            let y = y_span.place(tick, bottom, top);
            put(format!(
                r##"<line x1="{left:.1}" y1="{y:.1}" x2="{right:.1}" y2="{y:.1}" stroke="#e4e4e4"/>"##
            ));
            put(format!(
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                left - 6.0,
                y + 4.0,
                y_span.label(tick)
            ));
        }
        put(format!(
            r#"<rect x="{left:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="black"/>"#,
            right - left,
            bottom - top
        ));
        put(format!(
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            (left + right) / 2.0,
            HEIGHT - 16.0,
            escape(&self.x.label)
        ));
        put(format!(
            r#"<text transform="translate(20 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
            (top + bottom) / 2.0,
            escape(&self.y.label)
        ));
        for (i, series) in self.series.iter().enumerate() {
            let (colour, dash) = STYLES[i % STYLES.len()];
            let shown: Vec<(f64, f64)> = series
                .points
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .map(at)
                .collect();
            let mut path = String::new();
            for (x, y) in &shown {
                let _ = write!(
                    path,
                    "{}{x:.1},{y:.1}",
                    if path.is_empty() { "" } else { " " }
                );
            }
            put(format!(
                r#"<polyline fill="none" stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}" points="{path}"/>"#
            ));
            for (x, y) in &shown {
                put(format!(
                    r#"<circle cx="{x:.1}" cy="{y:.1}" r="3" fill="{colour}"/>"#
                ));
            }
            let legend_y = top + 14.0 + 20.0 * i as f64;
            put(format!(
                r#"<line x1="{:.1}" y1="{legend_y:.1}" x2="{:.1}" y2="{legend_y:.1}" stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}"/>"#,
                right + 14.0,
                right + 40.0
            ));
            put(format!(
                r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
                right + 46.0,
                legend_y + 4.0,
                escape(&series.name)
            ));
        }
        put("</svg>".into());
        svg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(series: Vec<Series>) -> Chart {
        Chart {
            title: "tasks/s <by> share".into(),
            x: Axis { label: "x".into() },
            y: Axis { label: "y".into() },
            series,
        }
    }

    fn series(name: &str, points: &[(f64, f64)]) -> Series {
        Series {
            name: name.into(),
            points: points.to_vec(),
        }
    }

    /// The `points` attribute of each polyline, in order.
    fn polylines(svg: &str) -> Vec<&str> {
        svg.lines()
            .filter(|line| line.starts_with("<polyline"))
            .map(|line| {
                let start = line.find("points=\"").expect("a points attribute") + 8;
                let end = start + line[start..].find('"').expect("a closing quote");
                &line[start..end]
            })
            .collect()
    }

    #[test]
    fn one_polyline_and_one_legend_entry_per_series() {
        let svg = chart(vec![
            series("10^5 values", &[(0.0, 30_000.0), (50.0, 9_000.0)]),
            series("10^6 values", &[(0.0, 28_000.0), (50.0, 40.0)]),
            series("a & b", &[(1.0, 1.0)]),
        ])
        .svg();
        assert_eq!(polylines(&svg).len(), 3);
        assert!(svg.contains(">10^5 values</text>") && svg.contains(">10^6 values</text>"));
        assert!(svg.contains(">a &amp; b</text>") && svg.contains("tasks/s &lt;by&gt; share"));
        assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn points_map_to_the_plot_area_corners_and_between() {
        // x spans 0..50 and y 0..100 (ticks every 10 and every 20): the points fall on the
        // plot area's bottom-left corner, its middle and its top-right corner.
        let svg = chart(vec![series(
            "s",
            &[(0.0, 0.0), (25.0, 50.0), (50.0, 100.0)],
        )])
        .svg();
        let (left, right, top, bottom) = (LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM);
        let expected = format!(
            "{left:.1},{bottom:.1} {:.1},{:.1} {right:.1},{top:.1}",
            (left + right) / 2.0,
            (top + bottom) / 2.0
        );
        assert_eq!(polylines(&svg), [expected.as_str()]);
        for tick in ["0", "10", "50"] {
            assert!(svg.contains(&format!(">{tick}</text>")), "no x tick {tick}");
        }
    }

    #[test]
    fn a_point_that_cannot_be_drawn_is_left_out_of_its_line() {
        let svg = chart(vec![series(
            "s",
            &[(0.0, 1.0), (1.0, f64::NAN), (2.0, 3.0)],
        )])
        .svg();
        assert_eq!(polylines(&svg)[0].split(' ').count(), 2);
        assert!(!svg.contains("NaN"));
    }

    #[test]
    fn steps_are_one_two_or_five_times_a_power_of_ten() {
        assert_eq!(nice_step(6_246.0), 10_000.0);
        assert_eq!(nice_step(10.0), 10.0);
        assert_eq!(nice_step(0.13), 0.2);
        assert_eq!(nice_step(3.0), 5.0);
    }
}
