//! SVG plots of one workload: the latency percentile distribution of each column
//! (its runs' histograms merged) and the median throughput of each column.
//!
//! Text is drawn as SVG `<text>` elements in the viewer's `sans-serif`: plotters is built
//! without its font features, so no system font library is needed to write the files.

use hdrhistogram::Histogram;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

/// Plot width, in pixels.
pub const WIDTH: u32 = 900;
/// Plot height, in pixels.
pub const HEIGHT: u32 = 540;
/// Highest percentile on the latency plot, as `1/(1-p)`: 10 000 is 99.99 %.
pub const MAX_INVERSE_TAIL: f64 = 10_000.0;
/// Points per curve of the latency plot.
const CURVE_POINTS: u32 = 240;

/// The percentile at `x = 1/(1-p)`, for the latency plot's axis: `1` → `0%`, `2` → `50%`,
/// `1000` → `99.9%`.
pub fn percentile_label(x: f64) -> String {
    let p = format!("{:.4}", 100.0 * (1.0 - 1.0 / x));
    let p = p.trim_end_matches('0').trim_end_matches('.');
    format!("{p}%")
}

/// The curve of `h` (µs): `(1/(1-p), latency µs)` from p = 0 to 99.99 %, evenly spaced on
/// the log axis. Empty when `h` is.
pub fn percentile_curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    (0..=CURVE_POINTS)
        .map(|k| {
            let x = MAX_INVERSE_TAIL.powf(f64::from(k) / f64::from(CURVE_POINTS));
            let q = (1.0 - 1.0 / x).clamp(0.0, 1.0);
            (x, h.value_at_quantile(q).max(1) as f64)
        })
        .collect()
}

fn draw_err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// An SVG of the latency percentile distribution, one curve per `(column, merged histogram in
/// µs)`: x is `1/(1-p)` on a log scale labelled `0%` to `99.99%`, y the latency in µs on a log
/// scale.
///
/// # Errors
/// What plotters says when it cannot draw.
pub fn latency_svg(title: &str, curves: &[(String, Histogram<u64>)]) -> Result<String, String> {
    let points: Vec<Vec<(f64, f64)>> = curves.iter().map(|(_, h)| percentile_curve(h)).collect();
    let ys = points.iter().flatten().map(|&(_, y)| y);
    let (lo, hi) = ys.fold((f64::MAX, 0.0f64), |(lo, hi), y| (lo.min(y), hi.max(y)));
    let (lo, hi) = if hi == 0.0 {
        (1.0, 1000.0)
    } else {
        ((lo / 1.5).max(0.5), (hi * 1.5).max(lo * 10.0))
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let x_keys = vec![1.0, 2.0, 10.0, 100.0, 1_000.0, MAX_INVERSE_TAIL];
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(16)
            .margin_right(40)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(
                (1.0..MAX_INVERSE_TAIL).log_scale().with_key_points(x_keys),
                (lo..hi).log_scale(),
            )
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("latency (µs)")
            .max_light_lines(4)
            .x_label_formatter(&|x| percentile_label(*x))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(draw_err)?;
        for (i, ((label, _), pts)) in curves.iter().zip(points).enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                .map_err(draw_err)?
                .label(label.as_str())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(draw_err)?;
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

/// An SVG bar chart of `(column, median requests per second)`, each bar labelled with its value.
///
/// # Errors
/// What plotters says when it cannot draw.
pub fn throughput_svg(title: &str, bars: &[(String, f64)]) -> Result<String, String> {
    let top = bars.iter().map(|(_, v)| *v).fold(0.0f64, f64::max).max(1.0) * 1.15;
    // A segmented `0..=last` has one segment per bar.
    let last = bars.len().saturating_sub(1) as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(88)
            .build_cartesian_2d((0u32..last).into_segmented(), 0.0..top)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .max_light_lines(2)
            .x_desc("column")
            .y_desc("median requests/s")
            .x_labels(bars.len().max(1))
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => bars.get(*i as usize).map_or(String::new(), |b| b.0.clone()),
                _ => String::new(),
            })
            .y_label_formatter(&|y| format!("{y:.0}"))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(draw_err)?;
        for (i, (_, rps)) in bars.iter().enumerate() {
            let i = i as u32;
            let color = Palette99::pick(i as usize).to_rgba();
            let mut bar = Rectangle::new(
                [(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), *rps)],
                color.filled(),
            );
            bar.set_margin(0, 0, 12, 12);
            chart.draw_series([bar]).map_err(draw_err)?;
            let style = TextStyle::from(("sans-serif", 14)).pos(plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Bottom,
            ));
            chart
                .draw_series([Text::new(
                    format!("{rps:.0}"),
                    (SegmentValue::CenterOf(i), *rps),
                    style,
                )])
                .map_err(draw_err)?;
        }
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::new_histogram;

    fn texts(svg: &str) -> Vec<String> {
        let doc = roxmltree::Document::parse(svg).expect("well-formed XML");
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        doc.descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text().map(|t| t.trim().to_string()))
            .collect()
    }

    #[test]
    fn percentile_axis_labels() {
        let labels: Vec<String> = [1.0, 2.0, 10.0, 100.0, 1000.0, 10_000.0]
            .into_iter()
            .map(percentile_label)
            .collect();
        assert_eq!(labels, ["0%", "50%", "90%", "99%", "99.9%", "99.99%"]);
    }

    #[test]
    fn curves_are_monotone_and_span_to_99_99() {
        let mut h = new_histogram();
        for v in 1..=100_000 {
            h.record(v).unwrap();
        }
        let c = percentile_curve(&h);
        assert_eq!(c.first().unwrap().0, 1.0);
        assert!((c.last().unwrap().0 - MAX_INVERSE_TAIL).abs() < 1e-6);
        assert!(c.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
        assert!(percentile_curve(&new_histogram()).is_empty());
    }

    #[test]
    fn svgs_are_xml_with_their_labels_as_text() {
        let mut a = new_histogram();
        a.record_n(40, 99).unwrap();
        a.record(900).unwrap();
        let mut b = new_histogram();
        b.record_n(15, 10).unwrap();
        let svg = latency_svg(
            "64 B: latency",
            &[("epoll transport".into(), a), ("raw-tokio".into(), b)],
        )
        .unwrap();
        let t = texts(&svg);
        for needle in [
            "64 B: latency",
            "epoll transport",
            "raw-tokio",
            "50%",
            "99.99%",
            "latency (µs)",
        ] {
            assert!(t.iter().any(|s| s == needle), "{needle:?} not in {t:?}");
        }
        let svg = throughput_svg(
            "64 B: throughput",
            &[("epoll rpc".into(), 1234.4), ("raw-tokio".into(), 99.0)],
        )
        .unwrap();
        let t = texts(&svg);
        for needle in ["epoll rpc", "raw-tokio", "1234", "median requests/s"] {
            assert!(t.iter().any(|s| s == needle), "{needle:?} not in {t:?}");
        }
        assert!(texts(&latency_svg("empty", &[]).unwrap()).contains(&"empty".to_string()));
        let one = texts(&throughput_svg("one", &[("epoll rpc".into(), 10.0)]).unwrap());
        assert!(one.contains(&"epoll rpc".to_string()), "{one:?}");
    }
}
