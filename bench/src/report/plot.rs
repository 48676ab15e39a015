//! SVG plots: latency by percentile (HdrHistogram style, log-scale percentile axis) and
//! throughput and latency over time. SVG only, with plotters' built-in font metrics, so no
//! system fonts or image libraries are needed.

use std::path::Path;

use plotters::prelude::*;

use super::RunResult;
use crate::error::BenchError;
use crate::stats::latency::PercentilePoint;

const SIZE: (u32, u32) = (1000, 600);
/// The x axis ends at 99.999%: 5 "nines".
const NINES_MAX: f64 = 5.0;

fn plot_error(e: impl std::fmt::Display) -> BenchError {
    BenchError::Config(format!("plot: {e}"))
}

/// Percentile p (0..100) → number of nines: 90% → 1, 99% → 2, 99.9% → 3.
fn nines(percentile: f64) -> f64 {
    let tail = (1.0 - percentile / 100.0).max(10f64.powf(-NINES_MAX));
    -tail.log10()
}

fn nines_label(x: f64) -> String {
    let percentile = 100.0 - 100.0 * 10f64.powf(-x);
    let label = format!("{percentile:.5}");
    let label = label.trim_end_matches('0').trim_end_matches('.');
    format!("{label}%")
}

fn to_curve(points: &[PercentilePoint]) -> Vec<(f64, f64)> {
    points
        .iter()
        .map(|p| (nines(p.percentile), p.latency_us / 1000.0))
        .collect()
}

pub fn latency_percentiles(result: &RunResult, path: &Path) -> Result<(), BenchError> {
    let produce = to_curve(&result.produce_latency_percentiles);
    let e2e = to_curve(&result.end_to_end_latency_percentiles);
    let y_max = produce
        .iter()
        .chain(&e2e)
        .map(|p| p.1)
        .fold(0.0f64, f64::max)
        .max(0.001)
        * 1.1;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Latency by percentile: {}", result.target),
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..NINES_MAX, 0.0..y_max)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_labels(6)
        .x_label_formatter(&|x| nines_label(*x))
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .draw()
        .map_err(plot_error)?;
    for (name, curve, color) in [("produce-ack", produce, BLUE), ("end-to-end", e2e, RED)] {
        if curve.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(curve, color.stroke_width(2)))
            .map_err(plot_error)?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)
}

pub fn over_time(result: &RunResult, path: &Path) -> Result<(), BenchError> {
    let root = SVGBackend::new(path, (SIZE.0, SIZE.1 + 200)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let (top, bottom) = root.split_vertically((SIZE.1 + 200) / 2);
    let seconds = result.series.len().max(1) as f64;
    let mb = |bytes: u64| bytes as f64 / 1e6;
    let produced: Vec<(f64, f64)> = result
        .series
        .iter()
        .map(|s| (s.second as f64, mb(s.acked_bytes)))
        .collect();
    let consumed: Vec<(f64, f64)> = result
        .series
        .iter()
        .map(|s| (s.second as f64, mb(s.consumed_bytes)))
        .collect();
    let mb_max = produced
        .iter()
        .chain(&consumed)
        .map(|p| p.1)
        .fold(0.0f64, f64::max)
        .max(0.001)
        * 1.1;
    let mut chart = ChartBuilder::on(&top)
        .caption(
            format!(
                "Throughput over time (warm-up: first {} s)",
                result.workload.warmup_s
            ),
            ("sans-serif", 20),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..seconds, 0.0..mb_max)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("second")
        .y_desc("MB/s")
        .draw()
        .map_err(plot_error)?;
    draw_lines(
        &mut chart,
        [
            ("produced (acked)", produced, BLUE),
            ("consumed", consumed, RED),
        ],
    )?;

    let ms = |us: Option<f64>| us.map(|v| v / 1000.0);
    let pick = |f: fn(&crate::stats::series::SecondSample) -> Option<f64>| -> Vec<(f64, f64)> {
        result
            .series
            .iter()
            .filter_map(|s| ms(f(s)).map(|v| (s.second as f64, v)))
            .collect()
    };
    let lines = [
        ("produce p50", pick(|s| s.produce_p50_us), BLUE.mix(0.5)),
        ("produce p99", pick(|s| s.produce_p99_us), BLUE.to_rgba()),
        (
            "end-to-end p50",
            pick(|s| s.end_to_end_p50_us),
            RED.mix(0.5),
        ),
        (
            "end-to-end p99",
            pick(|s| s.end_to_end_p99_us),
            RED.to_rgba(),
        ),
    ];
    let ms_max = lines
        .iter()
        .flat_map(|l| l.1.iter().map(|p| p.1))
        .fold(0.0f64, f64::max)
        .max(0.001)
        * 1.1;
    let mut chart = ChartBuilder::on(&bottom)
        .caption(
            "Latency over time (by intended send second)",
            ("sans-serif", 20),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..seconds, 0.0..ms_max)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("second")
        .y_desc("latency (ms)")
        .draw()
        .map_err(plot_error)?;
    draw_lines(&mut chart, lines)?;
    root.present().map_err(plot_error)
}

type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// A named series and its colour.
type Line<C> = (&'static str, Vec<(f64, f64)>, C);

fn draw_lines<'a, 'b: 'a, C: Color + Copy + 'static, const N: usize>(
    chart: &mut Chart<'a, 'b>,
    lines: [Line<C>; N],
) -> Result<(), BenchError> {
    for (name, points, color) in lines {
        if points.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(plot_error)?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_axis() {
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        assert_eq!(nines(100.0), NINES_MAX);
        assert_eq!(nines_label(0.0), "0%");
        assert_eq!(nines_label(2.0), "99%");
        assert_eq!(nines_label(3.0), "99.9%");
    }
}
