//! What a classifier could read once the smooth lens is fitted: for every lens of a
//! `survey` dataset (the rows `lensmae simulate --preset survey --n-per-class N
//! --seed SEED` writes, the same noisy pixels), fit the smooth lens (SIE + shear)
//! and the Sersic source to the *noisy* cutout with [`refit_smooth_lens`] and write
//! the noise-normalised residual (data - fit) / sigma as the row's image, a dataset
//! `lensmae finetune` / `evaluate` read like any other. Beside it, `fits.csv`: each
//! row's chi^2 of the fit.
//!
//! The fit starts at the drawn smooth lens and keeps the deflector's light and the
//! PSF as drawn, so this is an upper bound: what a lens modeller who always found
//! the best smooth lens near the truth would leave for a classifier. It tells
//! whether conditioning on a per-cutout smooth-lens fit is worth building (a fit
//! from a blind start, with the light fitted too, is the real thing).
//!
//! With JITTER > 0 the fit starts instead from the drawn smooth lens displaced at
//! random by JITTER times a modeller's rough first guess (10% in theta_E, 0.1 in
//! ellipticities, 0.05" in the centre, 0.03 in shear, 30% in the source's amplitude,
//! size and index, 0.1" in its position): whether the fit still finds the same
//! minimum from where a real modeller would start.
//!
//! With `blind` nothing of the truth is used but what a survey knows (PSF, exposure
//! time, the instrument's noise): [`fit_smooth_lens_blind`], the deflector's light
//! fitted too.
//!
//! With `--input DATASET.parquet` (and `blind`) the cutouts are another simulator's
//! (the first 3 N_PER_CLASS rows; their `psf_fwhm`, `exposure_time` and `sub_snr`
//! columns are read, the survey instrument's noise assumed); the written rows then
//! carry the fit's parameters, not a truth, and SEED is unused.
//!
//! `cargo run --release --example residual_probe -- [--input DATASET.parquet] N_PER_CLASS SEED OUT_DIR [JITTER|blind]`
use lensmae::data::parquet::ParquetDatasetWriter;
use lensmae::data::simulate::{dataset_metadata, SimulateOptions};
use lensmae::data::{DatasetInfo, DatasetWriter, Record, Task};
use lensmae::sim::detectability::refit_smooth_lens;
use lensmae::sim::fit::{
    residual_from, smooth_lens_residual, BlindGrid, Observation, SmoothLensResiduals, SMOOTH_LENS_RESIDUALS_KEY,
};
use lensmae::sim::grid::Image;
use lensmae::sim::noise::Noise;
use lensmae::sim::{presets::preset, ImageParams, Simulator};
use rand::SeedableRng;
use rayon::prelude::*;
use std::io::Write;

struct Row {
    record: Record,
    chi2_truth: f64,
    chi2_fit: f64,
    /// With ARC_MASK: the fraction of the substructure's signal left after the fit,
    /// sum((noise-free image - fit)^2 / sigma^2), that falls on the kept pixels.
    signal_kept: f64,
    renders: usize,
}

/// The drawn smooth lens and source displaced by `jitter` times a rough first guess.
fn displaced_start(params: &ImageParams, jitter: f64, rng: &mut impl rand::Rng) -> ImageParams {
    let mut g = |sigma: f64| -> f64 { jitter * sigma * rng.sample::<f64, _>(rand_distr::StandardNormal) };
    let mut p = params.clone();
    p.lens_theta_e *= g(0.1).exp();
    p.lens_e1 += g(0.1);
    p.lens_e2 += g(0.1);
    p.lens_center_x += g(0.05);
    p.lens_center_y += g(0.05);
    p.shear_gamma1 += g(0.03);
    p.shear_gamma2 += g(0.03);
    p.source_amp *= g(0.3).exp();
    p.source_r_sersic *= g(0.3).exp();
    p.source_n_sersic *= g(0.3).exp();
    p.source_e1 += g(0.1);
    p.source_e2 += g(0.1);
    p.source_x += g(0.1);
    p.source_y += g(0.1);
    p
}

/// How a fit starts.
#[derive(Clone, Copy)]
enum Start {
    /// The drawn smooth lens displaced by this many rough first guesses (0: the truth).
    Jitter(f64),
    /// From the cutout alone, the deflector's light fitted too.
    Blind,
}

/// One cutout to fit: its pixels and what a survey knows of it, with the truth
/// when it was simulated here.
struct Lens {
    id: u64,
    class_idx: usize,
    data: Image,
    noise: Noise,
    observed: Observation,
    truth: Option<ImageParams>,
    sub_snr: Option<f64>,
}

/// Row `id` of the `survey` dataset of `seed`, as `simulate` renders it.
fn simulated_lens(sim: &Simulator, seed: u64, id: u64) -> Lens {
    let class_idx = id as usize % sim.class_names().len();
    let drawn = sim.simulate(class_idx, seed, id);
    let params = drawn.params;
    let observed = Observation::of_drawn(&params);
    Lens {
        id,
        class_idx,
        data: drawn.image,
        noise: sim.noise(&params),
        observed,
        truth: Some(params),
        sub_snr: drawn.sub_snr,
    }
}

fn residual_row(sim: &Simulator, seed: u64, lens: Lens, how: Start) -> Row {
    let Lens { id, class_idx, data: noisy, noise, observed, truth, sub_snr } = lens;
    let (best, renders, chi) = match how {
        Start::Jitter(jitter) => {
            let params = truth.as_ref().expect("a start from the truth needs a simulated lens");
            let start = if jitter > 0.0 {
                // Its own random stream: the lens and its noise stay the dataset's.
                let mut start_rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x05ee_df17);
                start_rng.set_stream(id);
                displaced_start(params, jitter, &mut start_rng)
            } else {
                params.clone()
            };
            let refit = refit_smooth_lens(sim, class_idx, &start, &noisy, &noise).expect("survey lenses have noise");
            let chi = residual_from(sim, &refit.params, &noisy, &noise, None).expect("noise");
            (refit.params, refit.renders, chi)
        }
        // What inference does with a cutout for a classifier of residuals.
        Start::Blind => {
            let residual = smooth_lens_residual(sim, &observed, &noisy, None, &BlindGrid::default())
                .expect("survey lenses have noise");
            (residual.fit.params, residual.fit.renders, residual.chi)
        }
    };
    // The fit's image and the noise variance the residual is weighted by.
    let fitted = sim.scene(class_idx, &best).render_with(&sim.camera(&best), None);
    let variance = noise.variance(&fitted, sim.config().image.pixel_scale).expect("noise");
    // chi^2 of the drawn smooth lens, weighted as the residual is.
    let chi2_truth = truth.as_ref().map_or(f64::NAN, |params| {
        let mut smooth = params.clone();
        smooth.subhalos.clear();
        smooth.vortex = None;
        let drawn_smooth = sim.scene(class_idx, &smooth).render_with(&sim.camera(&smooth), None);
        noisy.pixels.iter().zip(&drawn_smooth.pixels).zip(&variance).map(|((d, m), v)| (d - m) * (d - m) / v).sum()
    });
    let (chi, signal_kept) =
        match std::env::var("ARC_MASK").ok().map(|f| f.parse::<f64>().expect("ARC_MASK is a fraction")) {
            Some(fraction) => {
                let kept = arc_pixels(sim, class_idx, &best, fraction);
                // What the fit leaves of the substructure, on the kept pixels.
                let signal_kept = truth.as_ref().map_or(f64::NAN, |params| {
                    let truth_image = sim.render_noise_free(class_idx, params);
                    let signal = (truth_image.pixels.iter().zip(&fitted.pixels).zip(&variance))
                        .map(|((t, f), v)| (t - f) * (t - f) / v);
                    let (on_arcs, all) =
                        signal.zip(&kept).fold((0.0, 0.0), |(on, all), (s, k)| (if *k { on + s } else { on }, all + s));
                    on_arcs / all
                });
                (masked_off_arcs(&chi, &kept, noisy.size), signal_kept)
            }
            None => (chi, f64::NAN),
        };
    // Another simulator's lens has no parameters here: its row carries the fit's.
    let params = truth.unwrap_or(best);
    Row {
        signal_kept,
        chi2_truth,
        chi2_fit: chi.iter().map(|c| c * c).sum(),
        renders,
        record: Record {
            id: id as i64,
            class_idx,
            images: vec![Image { size: noisy.size, pixels: chi }],
            n_subhalos: params.n_subhalos(sim.vortex_points(class_idx)) as i32,
            params,
            sub_snr,
            sub_snr_refit: None,
            fit_lens_found: None,
        },
    }
}

/// With ARC_MASK=F, only the pixels where the fitted lensed source (without the
/// deflector's light) is brighter than F times its peak keep their residual: does a
/// classifier gain from knowing where the arcs are? These are those pixels.
fn arc_pixels(sim: &Simulator, class_idx: usize, fit: &ImageParams, fraction: f64) -> Vec<bool> {
    let mut arcs_only = fit.clone();
    arcs_only.lens_light = None;
    let arcs = sim.scene(class_idx, &arcs_only).render_with(&sim.camera(&arcs_only), None);
    let peak = arcs.pixels.iter().copied().fold(0.0, f64::max);
    arcs.pixels.iter().map(|a| *a > fraction * peak).collect()
}

/// `chi` on the `kept` pixels of a `size` x `size` image, the others 0 or, with
/// ARC_FILL=checker, +-a in a checkerboard. Zeros make `noise-asinh`'s estimate of
/// sigma (the MAD of neighbouring differences) collapse, squashing the kept
/// residuals to their signs; a = sqrt(2) / (2 * 1.4826) gives that estimate 1, as
/// unit noise does, while still marking where the arcs are not.
fn masked_off_arcs(chi: &[f64], kept: &[bool], size: usize) -> Vec<f64> {
    let checker = std::env::var("ARC_FILL").is_ok_and(|f| f == "checker");
    let a = std::f64::consts::SQRT_2 / (2.0 * 1.4826);
    let fill = |i: usize| match (checker, (i / size + i % size) % 2) {
        (false, _) => 0.0,
        (true, 0) => a,
        (true, _) => -a,
    };
    chi.iter().zip(kept).enumerate().map(|(i, (c, k))| if *k { *c } else { fill(i) }).collect()
}

/// The first `n` rows of a labelled survey-like dataset from elsewhere (another
/// simulator's, e.g. `bench/lenstronomy_survey.py`'s), with the `psf_fwhm`,
/// `exposure_time` and `sub_snr` columns it writes; the noise is the survey's
/// instrument at that exposure.
fn lenses_from(sim: &Simulator, path: &std::path::Path, n: usize) -> lensmae::Result<Vec<Lens>> {
    use arrow_array::{cast::AsArray, types::Float64Type};
    let images = lensmae::data::images::read_parquet_images(path, "image")?;
    assert_eq!(images.class_names, sim.class_names(), "{}: the survey's classes", path.display());
    let mut columns: [Vec<f64>; 3] = Default::default();
    for batch in lensmae::data::parquet::open_parquet(path)?.build().expect("a readable file") {
        let batch = batch.expect("a readable batch");
        for (name, values) in ["psf_fwhm", "exposure_time", "sub_snr"].iter().zip(columns.iter_mut()) {
            let column = batch.column_by_name(name).unwrap_or_else(|| panic!("{}: no `{name}`", path.display()));
            values.extend(column.as_primitive::<Float64Type>().values().iter());
        }
    }
    let [psf, exposure, sub_snr] = columns;
    let pixels = images.size * images.size;
    Ok((0..n.min(images.labels.len()))
        .map(|i| Lens {
            id: images.ids[i] as u64,
            class_idx: images.labels[i],
            data: Image {
                size: images.size,
                pixels: images.pixels[i * pixels..(i + 1) * pixels].iter().map(|v| *v as f64).collect(),
            },
            noise: sim.noise_at(Some(exposure[i])),
            observed: Observation { psf_fwhm: psf[i], psf_kernel: None, exposure_time: Some(exposure[i]) },
            truth: None,
            sub_snr: Some(sub_snr[i]),
        })
        .collect())
}

fn main() -> lensmae::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let input = args.iter().position(|a| a == "--input").map(|i| {
        let path = std::path::PathBuf::from(args.get(i + 1).expect("--input DATASET.parquet"));
        args.drain(i..i + 2);
        path
    });
    let mut args = args.into_iter();
    let n_per_class: usize = args.next().expect("N_PER_CLASS").parse().expect("a count");
    let seed: u64 = args.next().expect("SEED").parse().expect("a seed");
    let out = std::path::PathBuf::from(args.next().expect("OUT_DIR"));
    let how = match args.next().as_deref() {
        None => Start::Jitter(0.0),
        Some("blind") => Start::Blind,
        Some(j) => Start::Jitter(j.parse().expect("JITTER is a number or `blind`")),
    };
    let how_name = match how {
        Start::Jitter(j) => format!("start: the drawn smooth lens, jitter {j}"),
        Start::Blind => "start: blind, the deflector's light fitted too".into(),
    };
    std::fs::create_dir_all(&out).map_err(|e| lensmae::Error::io(&out, e))?;
    let sim = Simulator::new(preset("survey")?)?;
    let opts = SimulateOptions::new(n_per_class, seed, &out);
    let mut metadata = dataset_metadata(&sim, &opts);
    metadata.insert("lensmae:residual_probe".into(), format!("(data - smooth-lens fit) / sigma, {how_name}"));
    if let Start::Blind = how {
        // Made as inference makes them: a classifier trained on these carries the recipe.
        let recipe = SmoothLensResiduals { simulator: sim.config().clone(), grid: BlindGrid::default() };
        metadata.insert(SMOOTH_LENS_RESIDUALS_KEY.into(), serde_json::to_string(&recipe).expect("serialises"));
    }
    if let Some(path) = &input {
        metadata.insert("lensmae:residual_probe_input".into(), path.display().to_string());
    }
    let info = DatasetInfo {
        class_names: sim.class_names().to_vec(),
        task: Task::Classify,
        image_size: sim.config().image.size,
        metadata,
    };
    let mut writer = Box::new(ParquetDatasetWriter::create(&out.join("dataset.parquet"), info, true)?);
    let csv_path = out.join("fits.csv");
    let mut csv = std::fs::File::create(&csv_path).map_err(|e| lensmae::Error::io(&csv_path, e))?;
    writeln!(csv, "id,class,sub_snr,chi2_truth,chi2_fit,renders,signal_kept").unwrap();
    let mut given = match &input {
        Some(path) => Some(lenses_from(&sim, path, n_per_class * sim.class_names().len())?),
        None => None,
    };
    let total = given.as_ref().map_or(n_per_class * sim.class_names().len(), Vec::len);
    let started = std::time::Instant::now();
    for start in (0..total).step_by(256) {
        let end = (start + 256).min(total);
        let lenses: Vec<Lens> = match given.as_mut() {
            Some(lenses) => lenses.drain(..end - start).collect(),
            None => (start..end).into_par_iter().map(|id| simulated_lens(&sim, seed, id as u64)).collect(),
        };
        let rows: Vec<Row> = lenses.into_par_iter().map(|lens| residual_row(&sim, seed, lens, how)).collect();
        for r in &rows {
            writeln!(
                csv,
                "{},{},{},{},{},{},{}",
                r.record.id,
                sim.class_names()[r.record.class_idx],
                r.record.sub_snr.unwrap_or(f64::NAN),
                r.chi2_truth,
                r.chi2_fit,
                r.renders,
                r.signal_kept
            )
            .unwrap();
        }
        let records: Vec<Record> = rows.into_iter().map(|r| r.record).collect();
        writer.write_batch(&records)?;
        eprintln!("{end} of {total} lenses, {:.0} s", started.elapsed().as_secs_f64());
    }
    writer.finish()?;
    Ok(())
}
