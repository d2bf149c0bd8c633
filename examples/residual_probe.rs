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
//! `cargo run --release --example residual_probe -- N_PER_CLASS SEED OUT_DIR [JITTER|blind]`
use lensmae::data::parquet::ParquetDatasetWriter;
use lensmae::data::simulate::{dataset_metadata, SimulateOptions};
use lensmae::data::{DatasetInfo, DatasetWriter, Record, Task};
use lensmae::sim::detectability::{fit_smooth_lens_blind, refit_smooth_lens, BlindGrid, Observation};
use lensmae::sim::grid::Image;
use lensmae::sim::{presets::preset, ImageParams, Simulator};
use rand::SeedableRng;
use rayon::prelude::*;
use std::io::Write;

struct Row {
    record: Record,
    chi2_truth: f64,
    chi2_fit: f64,
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

fn residual_row(sim: &Simulator, seed: u64, id: u64, how: Start) -> Row {
    let class_idx = id as usize % sim.class_names().len();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(id);
    let params = sim.sample_params(class_idx, &mut rng);
    let noise = sim.noise(&params);
    let camera = sim.camera(&params);
    let noise_free = sim.scene(class_idx, &params).render_with(&camera, None);
    let sub_snr = sim.sub_snr(class_idx, &params, &noise_free, &noise);
    let mut noisy = noise_free.clone();
    noise.apply(&mut noisy, sim.config().image.pixel_scale, &mut rng);
    if id < 3 {
        // The same pixels `simulate` writes for this seed and row.
        assert_eq!(sim.simulate(class_idx, seed, id).image.pixels, noisy.pixels, "row {id}");
    }
    let best = match how {
        Start::Jitter(jitter) => {
            let start = if jitter > 0.0 {
                // Its own random stream: the lens and its noise stay the dataset's.
                let mut start_rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x05ee_df17);
                start_rng.set_stream(id);
                displaced_start(&params, jitter, &mut start_rng)
            } else {
                params.clone()
            };
            let refit = refit_smooth_lens(sim, class_idx, &start, &noisy, &noise).expect("survey lenses have noise");
            (refit.params, refit.renders)
        }
        Start::Blind => {
            let variance = noise.variance(&noisy, sim.config().image.pixel_scale).expect("noise");
            let observed = Observation { psf_fwhm: params.psf_fwhm, exposure_time: params.exposure_time };
            let fit = fit_smooth_lens_blind(sim, observed, &noisy, &variance, &BlindGrid::default());
            (fit.params, fit.renders)
        }
    };
    let fitted = sim.scene(class_idx, &best.0).render_with(&camera, None);
    let mut truth = params.clone();
    truth.subhalos.clear();
    truth.vortex = None;
    let smooth_truth = sim.scene(class_idx, &truth).render_with(&camera, None);
    // Weighted by the fitted model's variance: what a modeller knows, never negative.
    let variance = noise.variance(&fitted, camera.grid.pixel_scale).expect("noise");
    let chi: Vec<f64> =
        noisy.pixels.iter().zip(&fitted.pixels).zip(&variance).map(|((d, m), v)| (d - m) / v.sqrt()).collect();
    let chi2 = |model: &Image| -> f64 {
        noisy.pixels.iter().zip(&model.pixels).zip(&variance).map(|((d, m), v)| (d - m) * (d - m) / v).sum()
    };
    Row {
        chi2_truth: chi2(&smooth_truth),
        chi2_fit: chi.iter().map(|c| c * c).sum(),
        renders: best.1,
        record: Record {
            id: id as i64,
            class_idx,
            images: vec![Image { size: noisy.size, pixels: chi }],
            n_subhalos: params.n_subhalos(sim.vortex_points(class_idx)) as i32,
            params,
            sub_snr,
            sub_snr_refit: None,
        },
    }
}

fn main() -> lensmae::Result<()> {
    let mut args = std::env::args().skip(1);
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
    let info = DatasetInfo {
        class_names: sim.class_names().to_vec(),
        task: Task::Classify,
        image_size: sim.config().image.size,
        metadata,
    };
    let mut writer = Box::new(ParquetDatasetWriter::create(&out.join("dataset.parquet"), info, true)?);
    let csv_path = out.join("fits.csv");
    let mut csv = std::fs::File::create(&csv_path).map_err(|e| lensmae::Error::io(&csv_path, e))?;
    writeln!(csv, "id,class,sub_snr,chi2_truth,chi2_fit,renders").unwrap();
    let total = n_per_class * sim.class_names().len();
    let started = std::time::Instant::now();
    for start in (0..total).step_by(256) {
        let end = (start + 256).min(total);
        let rows: Vec<Row> = (start..end).into_par_iter().map(|id| residual_row(&sim, seed, id as u64, how)).collect();
        for r in &rows {
            writeln!(
                csv,
                "{},{},{},{},{},{}",
                r.record.id,
                sim.class_names()[r.record.class_idx],
                r.record.sub_snr.unwrap_or(f64::NAN),
                r.chi2_truth,
                r.chi2_fit,
                r.renders
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
