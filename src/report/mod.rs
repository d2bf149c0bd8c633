//! Figures for reports: line charts (ROC curves, loss curves) and image grids
//! rendered to PNG with plotters and a bundled font, so they look the same on
//! every machine and need no system fonts.

pub mod plot;
pub mod run_report;

use crate::data::images::value_range;
use crate::data::images::ImagePairs;
use crate::eval::classifier::ClassifierEvaluation;
use crate::infer::super_resolve;
use crate::model::superres::SuperResolver;
use crate::Result;
use plot::{image_grid_png, Panel, Shading};

/// A PNG grid with one row per pair at `indices`: the LR image (captioned with
/// its class), its bicubic upsampling and the model's SR image (each captioned
/// with its PSNR against the HR image, both scaled by the HR image's range as
/// `evaluate` does), the HR image (all shaded by the HR image's range) and the
/// residual SR - HR (blue negative, red positive, saturating at a tenth of the
/// HR range, with a colour bar giving that limit in the images' units).
pub fn superres_grid_png(model: &SuperResolver, pairs: &ImagePairs, indices: &[usize]) -> Result<Vec<u8>> {
    let sr = super_resolve(model, &pairs.lr_rows(indices), pairs.lr.size, 64)?;
    let (bicubic, _) = pairs.classical_upsamplings(indices);
    let (hs, ls) = (pairs.hr.size, pairs.lr.size);
    let per = hs * hs;
    let rows: Vec<Vec<Panel>> = indices
        .iter()
        .enumerate()
        .map(|(k, &i)| {
            let hr = pairs.hr.image(i);
            let (lo, hi) = value_range(hr);
            let grey = Shading::Grey { lo, hi };
            let sr_k = &sr[k * per..(k + 1) * per];
            let residual: Vec<f32> = sr_k.iter().zip(hr).map(|(s, h)| s - h).collect();
            let bicubic_k = &bicubic[k * per..(k + 1) * per];
            let scaled =
                |v: &[f32]| -> Vec<f32> { v.iter().map(|x| (x - lo) / (hi - lo).max(f32::MIN_POSITIVE)).collect() };
            let psnr = |v: &[f32]| format!("{:.1} dB", crate::eval::superres::psnr(&scaled(hr), &scaled(v)));
            let class = pairs.lr.class_names.get(pairs.lr.labels[i]).cloned();
            let panel =
                |pixels: &[f32], size, shading, caption| Panel { pixels: pixels.to_vec(), size, shading, caption };
            vec![
                panel(pairs.lr.image(i), ls, grey, class),
                panel(bicubic_k, hs, grey, Some(psnr(bicubic_k))),
                panel(sr_k, hs, grey, Some(psnr(sr_k))),
                panel(hr, hs, grey, None),
                panel(&residual, hs, Shading::Diverging { limit: 0.1 * (hi - lo) }, None),
            ]
        })
        .collect();
    image_grid_png(&rows, &["LR", "bicubic", "model", "HR", "model - HR"], 160)
}

/// The figures of a classifier's evaluation, each as (file suffix, PNG): ROC
/// curves, the reliability diagram, and the sensitivity per bin of every
/// substructure parameter binned.
pub fn classifier_figures(evaluation: &ClassifierEvaluation, title: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let mut figures = vec![
        ("roc.png".to_string(), plot::roc_png(&evaluation.report, title)?),
        ("reliability.png".to_string(), plot::reliability_png(&evaluation.reliability, title)?),
    ];
    for b in evaluation.binned.iter().filter(|b| b.with_reference_class) {
        figures.push((format!("sensitivity-{}.png", b.parameter), plot::sensitivity_png(b, title, true)?));
    }
    Ok(figures)
}

/// A figure drawn beside a JSON report: `<report stem>.<suffix>` in its folder.
pub fn beside(report: &std::path::Path, suffix: &str) -> std::path::PathBuf {
    report.with_file_name(format!("{}.{suffix}", report.file_stem().unwrap_or_default().to_string_lossy()))
}
