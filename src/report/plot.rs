//! Line charts as PNG bytes. Rendered into memory (plotters' bitmap backend),
//! encoded with `png`, so callers write the bytes atomically like any output.

use crate::eval::{ClassificationReport, Reliability};
use crate::{Error, Result};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use std::sync::Once;

const FONT: &[u8] = include_bytes!("../../assets/DejaVuSans-subset.ttf");
const FONT_NAME: &str = "lensmae-sans";

fn ensure_font() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // The bundled font is a valid TrueType file; a failure here is a build defect.
        register_font(FONT_NAME, FontStyle::Normal, FONT).unwrap_or_else(|_| panic!("the bundled font does not load"));
    });
}

/// One named line.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// Points in drawing order.
    pub points: Vec<(f64, f64)>,
}

/// A line chart's frame.
#[derive(Debug, Clone)]
pub struct Chart {
    /// Title above the plot.
    pub title: String,
    /// x-axis label.
    pub x_label: String,
    /// y-axis label.
    pub y_label: String,
    /// x range.
    pub x_range: (f64, f64),
    /// y range.
    pub y_range: (f64, f64),
    /// Draw the y = x diagonal (chance line of a ROC plot).
    pub diagonal: bool,
    /// Size in pixels.
    pub size: (u32, u32),
}

/// Colour-blind-safe line colours (Okabe-Ito).
const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
];

fn plot_error(e: impl std::fmt::Display) -> Error {
    Error::Shape(format!("drawing a chart: {e}"))
}

/// Renders `series` in `chart` and returns PNG bytes.
pub fn line_chart_png(chart: &Chart, series: &[Series]) -> Result<Vec<u8>> {
    ensure_font();
    let (w, h) = chart.size;
    let mut rgb = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut c = ChartBuilder::on(&root)
            .caption(&chart.title, (FONT_NAME, 22))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(chart.x_range.0..chart.x_range.1, chart.y_range.0..chart.y_range.1)
            .map_err(plot_error)?;
        c.configure_mesh()
            .x_desc(&chart.x_label)
            .y_desc(&chart.y_label)
            .label_style((FONT_NAME, 14))
            .axis_desc_style((FONT_NAME, 16))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(plot_error)?;
        if chart.diagonal {
            let (lo, hi) = (chart.x_range.0.max(chart.y_range.0), chart.x_range.1.min(chart.y_range.1));
            c.draw_series(LineSeries::new([(lo, lo), (hi, hi)], RGBColor(160, 160, 160).stroke_width(1)))
                .map_err(plot_error)?;
        }
        for (i, s) in series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            c.draw_series(LineSeries::new(s.points.iter().copied(), color.stroke_width(2)))
                .map_err(plot_error)?
                .label(&s.name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        c.configure_series_labels()
            .label_font((FONT_NAME, 15))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    encode_png(&rgb, w, h)
}

/// 8-bit RGB pixels (row-major) as PNG bytes.
pub fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    // Figures are committed beside reports: the smallest files are worth the
    // milliseconds.
    encoder.set_compression(png::Compression::Best);
    encoder.set_adaptive_filter(png::AdaptiveFilterType::Adaptive);
    let mut writer = encoder.write_header().map_err(plot_error)?;
    writer.write_image_data(rgb).map_err(plot_error)?;
    writer.finish().map_err(plot_error)?;
    Ok(out)
}

/// The one-vs-rest ROC curves of a classification report, one line per class
/// with its AUC in the legend.
pub fn roc_png(report: &ClassificationReport, title: &str) -> Result<Vec<u8>> {
    let series: Vec<Series> = report
        .class_names
        .iter()
        .zip(&report.roc_curves)
        .zip(&report.metrics.per_class_auc)
        .map(|((name, curve), auc)| Series {
            name: match auc {
                Some(a) => format!("{name} (AUC {a:.4})"),
                None => format!("{name} (no positives)"),
            },
            points: curve.clone(),
        })
        .collect();
    let chart = Chart {
        title: title.to_string(),
        x_label: "false positive rate".into(),
        y_label: "true positive rate".into(),
        x_range: (0.0, 1.0),
        y_range: (0.0, 1.0),
        diagonal: true,
        size: (640, 560),
    };
    line_chart_png(&chart, &series)
}

/// Reliability diagram: accuracy against mean confidence per bin of the top-class
/// probability (the diagonal is perfect calibration), with the ECE in the legend.
pub fn reliability_png(reliability: &Reliability, title: &str) -> Result<Vec<u8>> {
    let points: Vec<(f64, f64)> = reliability.bins.iter().filter(|b| b.2 > 0).map(|&(c, a, _)| (c, a)).collect();
    let series = [Series { name: format!("model (ECE {:.4})", reliability.ece), points }];
    let chart = Chart {
        title: title.to_string(),
        x_label: "confidence (largest probability)".into(),
        y_label: "accuracy".into(),
        x_range: (0.0, 1.0),
        y_range: (0.0, 1.0),
        diagonal: true,
        size: (640, 560),
    };
    line_chart_png(&chart, &series)
}

/// Sensitivity curve: detection probability (substructure images called anything
/// but the reference class) per bin of a parameter, at each bin's lower edge (on a
/// log axis a lower edge of 0 is drawn at 0.3), with the brightness-matched
/// detection AUC where the data have source magnitudes.
pub fn sensitivity_png(binned: &crate::eval::binned::BinnedMetrics, title: &str, log_x: bool) -> Result<Vec<u8>> {
    let at = |low: f64| if log_x { low.max(0.3).log10() } else { low };
    let points: Vec<(f64, f64)> = binned.bins.iter().filter_map(|b| b.detection.map(|d| (at(b.low), d))).collect();
    let (lo, hi) = points.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (lo, hi) = if lo < hi { (lo, hi) } else { (lo - 1.0, lo + 1.0) };
    let mut series = vec![Series { name: "detection probability".into(), points }];
    if let Some(f) = binned.false_alarm {
        series.push(Series { name: format!("false alarms on no_sub ({f:.3})"), points: vec![(lo, f), (hi, f)] });
    }
    // What separates substructure from none once brightness is held equal (0.5: nothing).
    let matched: Vec<(f64, f64)> =
        binned.bins.iter().filter_map(|b| b.detection_auc_matched.map(|a| (at(b.low), a))).collect();
    if !matched.is_empty() {
        series.push(Series { name: "detection AUC, no_sub of the same source magnitudes".into(), points: matched });
    }
    let chart = Chart {
        title: title.to_string(),
        x_label: if log_x { format!("log10 {} (bin lower edge)", binned.parameter) } else { binned.parameter.clone() },
        y_label: "detected / AUC".into(),
        x_range: (lo, hi),
        y_range: (0.0, 1.0),
        diagonal: false,
        size: (640, 560),
    };
    line_chart_png(&chart, &series)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reliability_diagram_is_a_png() {
        let probs = [0.9f32, 0.1, 0.8, 0.2, 0.3, 0.7, 0.6, 0.4];
        let r = Reliability::compute(&probs, &[0, 1, 1, 0], 2, 10);
        let bytes = reliability_png(&r, "test").unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
    }

    #[test]
    fn a_roc_plot_is_a_png_with_the_curves_drawn() {
        let probs = [0.8f32, 0.1, 0.1, 0.2, 0.7, 0.1, 0.3, 0.3, 0.4, 0.6, 0.2, 0.2];
        let report = ClassificationReport::compute(&probs, &[0, 1, 2, 1], &["a".into(), "b".into(), "c".into()]);
        let bytes = roc_png(&report, "test").unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(&bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (640, 560));
        // Class b's curve (second palette colour, not hidden under another) is drawn.
        let orange = buf.chunks_exact(3).filter(|p| p == &[213, 94, 0]).count();
        assert!(orange > 500, "{orange} pixels of class b's curve");
    }
}

/// How one panel of an image grid maps values to colours.
#[derive(Debug, Clone, Copy)]
pub enum Shading {
    /// Grey levels from `lo` (black) to `hi` (white), clamped.
    Grey {
        /// Value shown black.
        lo: f32,
        /// Value shown white.
        hi: f32,
    },
    /// Blue (negative) - white (0) - red (positive), saturating at `+-limit`.
    Diverging {
        /// Magnitude shown fully saturated.
        limit: f32,
    },
}

/// One panel: a square image, its shading, and a line written under it.
#[derive(Debug, Clone)]
pub struct Panel {
    /// Pixels, row-major.
    pub pixels: Vec<f32>,
    /// Side, pixels.
    pub size: usize,
    /// Colour mapping.
    pub shading: Shading,
    /// Written under the panel (a label, a metric).
    pub caption: Option<String>,
}

fn shade(v: f32, shading: Shading) -> [u8; 3] {
    match shading {
        Shading::Grey { lo, hi } => {
            let g = (((v - lo) / (hi - lo).max(f32::MIN_POSITIVE)).clamp(0.0, 1.0) * 255.0).round() as u8;
            [g, g, g]
        }
        Shading::Diverging { limit } => {
            let t = (v / limit.max(f32::MIN_POSITIVE)).clamp(-1.0, 1.0);
            let fade = (255.0 * (1.0 - t.abs())).round() as u8;
            if t >= 0.0 {
                [255, fade, fade]
            } else {
                [fade, fade, 255]
            }
        }
    }
}

/// A grid of image panels (`rows[r][c]`), each drawn `cell` pixels wide by
/// nearest-neighbour scaling, with a title over each column, each panel's caption
/// under it, and a colour bar with its limits beside every diverging panel of
/// the last column; PNG bytes.
pub fn image_grid_png(rows: &[Vec<Panel>], column_titles: &[&str], cell: u32) -> Result<Vec<u8>> {
    ensure_font();
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0) as u32;
    let (pad, header) = (6u32, 28u32);
    let caption = if rows.iter().flatten().any(|p| p.caption.is_some()) { 20u32 } else { 0 };
    let diverging_last = rows.iter().any(|r| r.last().is_some_and(|p| matches!(p.shading, Shading::Diverging { .. })));
    let (bar_w, bar_room) = (12u32, if diverging_last { 90u32 } else { 0 });
    let row_h = cell + caption + pad;
    let (w, h) = (cols * (cell + pad) + pad + bar_room, header + rows.len() as u32 * row_h + pad);
    let mut rgb = vec![255u8; (w * h * 3) as usize];
    let mut put = |x: u32, y: u32, color: [u8; 3]| {
        let at = ((y * w + x) * 3) as usize;
        rgb[at..at + 3].copy_from_slice(&color);
    };
    for (r, row) in rows.iter().enumerate() {
        for (c, panel) in row.iter().enumerate() {
            let (x0, y0) = (pad + c as u32 * (cell + pad), header + r as u32 * row_h);
            for y in 0..cell {
                for x in 0..cell {
                    let (py, px) =
                        ((y as usize * panel.size) / cell as usize, (x as usize * panel.size) / cell as usize);
                    put(x0 + x, y0 + y, shade(panel.pixels[py * panel.size + px], panel.shading));
                }
            }
            // The colour bar: +limit at the top, -limit at the bottom.
            if let (true, Shading::Diverging { limit }) = (c + 1 == row.len(), panel.shading) {
                let bx = x0 + cell + pad;
                for y in 0..cell {
                    let v = limit * (1.0 - 2.0 * (y as f32 + 0.5) / cell as f32);
                    for x in 0..bar_w {
                        put(bx + x, y0 + y, shade(v, panel.shading));
                    }
                }
            }
        }
    }
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        let style = TextStyle::from((FONT_NAME, 16).into_font()).color(&BLACK);
        let small = TextStyle::from((FONT_NAME, 13).into_font()).color(&BLACK);
        for (c, title) in column_titles.iter().enumerate() {
            root.draw_text(title, &style, ((pad + c as u32 * (cell + pad)) as i32 + 4, 6)).map_err(plot_error)?;
        }
        for (r, row) in rows.iter().enumerate() {
            let y0 = (header + r as u32 * row_h) as i32;
            for (c, panel) in row.iter().enumerate() {
                let x0 = (pad + c as u32 * (cell + pad)) as i32;
                if let Some(text) = &panel.caption {
                    root.draw_text(text, &small, (x0 + 2, y0 + cell as i32 + 3)).map_err(plot_error)?;
                }
                if let (true, Shading::Diverging { limit }) = (c + 1 == row.len(), panel.shading) {
                    let tx = x0 + (cell + pad + bar_w) as i32 + 4;
                    root.draw_text(&format!("{:+.3}", limit), &small, (tx, y0)).map_err(plot_error)?;
                    root.draw_text("0", &small, (tx, y0 + cell as i32 / 2 - 7)).map_err(plot_error)?;
                    root.draw_text(&format!("{:+.3}", -limit), &small, (tx, y0 + cell as i32 - 14))
                        .map_err(plot_error)?;
                }
            }
        }
        root.present().map_err(plot_error)?;
    }
    encode_png(&rgb, w, h)
}
