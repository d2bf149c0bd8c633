//! A matched filter for axion vortices: how much a vortex through the lens centre
//! lowers chi^2 below the best smooth lens, per cutout. For every lens of a `survey`
//! dataset (the rows `lensmae simulate --preset survey --n-per-class N --seed SEED`
//! writes, stored as float32), the blind smooth-lens fit that `predict` runs for the
//! residual classifier ([`fit_smooth_lens_blind`] as `smooth_lens_residual` calls
//! it, its default grid), then [`fit_vortex`] from it. One CSV line per lens: the
//! likelihood-ratio statistic `delta_chi2` and what it cost.
//!
//! Whether this statistic tells `axion` lenses from the rest better than the residual
//! classifier does, alone or beside it, is what `bench/vortex_filter.py` scores.
//!
//! `cargo run --release --example vortex_probe -- N_PER_CLASS SEED OUT.csv [FIRST_ID]`
//! (rows from FIRST_ID on, appended to OUT.csv: a stopped run goes on where it was).
use lensmae::sim::fit::{fit_smooth_lens_blind, fit_vortex, fit_vortex_from, BlindGrid, Observation, VortexGrid};
use lensmae::sim::{presets::preset, Simulator};
use rayon::prelude::*;
use std::io::Write;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [n_per_class, seed, out, rest @ ..] = args.as_slice() else {
        eprintln!("usage: vortex_probe N_PER_CLASS SEED OUT.csv [FIRST_ID]");
        std::process::exit(2);
    };
    let n_per_class: u64 = n_per_class.parse().expect("N_PER_CLASS");
    let seed: u64 = seed.parse().expect("SEED");
    let first: u64 = rest.first().map_or(0, |s| s.parse().expect("FIRST_ID"));
    let sim = Simulator::new(preset("survey").expect("the survey preset")).expect("a valid preset");
    // The filter's vortex may be coarser than the recipe's (VORTEX_POINTS, default
    // the recipe's 100): a render costs about one ray per point mass.
    let mut filter_config = sim.config().clone();
    if let Ok(points) = std::env::var("VORTEX_POINTS") {
        match filter_config.classes.get_mut("axion") {
            Some(lensmae::sim::config::Substructure::Vortex { points: p, .. }) => {
                *p = points.parse().expect("VORTEX_POINTS")
            }
            _ => panic!("the survey preset's axion class is a vortex"),
        }
    }
    let filter = Simulator::new(filter_config).expect("a valid recipe");
    let vortex_grid = VortexGrid {
        max_fits: std::env::var("VORTEX_FITS")
            .map_or(VortexGrid::default().max_fits, |v| v.parse().expect("VORTEX_FITS")),
        ..VortexGrid::default()
    };
    let n_classes = sim.class_names().len() as u64;
    let axion = sim.class_names().iter().position(|c| c == "axion").expect("an axion class");
    let new_file = !std::path::Path::new(out).exists();
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(out).expect("OUT.csv");
    if new_file {
        writeln!(file, "id,class,sub_snr,chi2_smooth,chi2_vortex,delta_chi2,vortex_half_length,vortex_mass,renders,seconds,delta_chi2_truth_start")
            .unwrap();
    }
    let pixel_scale = sim.config().image.pixel_scale;
    // ONLY_CLASS: the lenses of one class; TRUTH_START=1: the drawn vortex (on the
    // smooth fit) is one more start, a diagnostic of the search, not a detector.
    let only_class = std::env::var("ONLY_CLASS")
        .ok()
        .map(|c| sim.class_names().iter().position(|n| *n == c).expect("ONLY_CLASS names a class") as u64);
    let truth_start = std::env::var("TRUTH_START").is_ok_and(|v| v == "1");
    let ids: Vec<u64> =
        (first..n_per_class * n_classes).filter(|id| only_class.is_none_or(|c| id % n_classes == c)).collect();
    // Chunks: each is written before the next starts, so a stopped run loses little.
    for chunk in ids.chunks(32) {
        let lines: Vec<String> = chunk
            .par_iter()
            .map(|&id| {
                let started = Instant::now();
                let class_idx = (id % n_classes) as usize;
                let drawn = sim.simulate(class_idx, seed, id);
                let data = drawn.image.rounded_to_f32();
                let observed = Observation::of_drawn(&drawn.params);
                let variance = sim
                    .noise_at(observed.exposure_time)
                    .variance(&data, pixel_scale)
                    .expect("survey lenses have noise");
                // What `smooth_lens_residual` fits, without the residual image it would render.
                let smooth = fit_smooth_lens_blind(&sim, &observed, &data, &variance, &BlindGrid::default());
                let vortex = fit_vortex(&filter, axion, &smooth, &data, &variance, &vortex_grid);
                let mut from_truth = None;
                if let (true, Some(drawn_vortex)) = (truth_start, &drawn.params.vortex) {
                    let mut start = smooth.params.clone();
                    start.vortex = Some(drawn_vortex.clone());
                    from_truth = Some(fit_vortex_from(&filter, axion, &smooth, start, &data, &variance));
                }
                let (half_length, mass) = vortex.params.vortex.as_ref().map_or((0.0, 0.0), |v| {
                    (sim.vortex_length_constant(axion).expect("vortex") / v.axion_mass, v.total_mass)
                });
                // The best of the search and the start at the drawn vortex.
                let truth_delta =
                    from_truth.map_or(String::new(), |t| format!("{:.3}", t.delta_chi2().max(vortex.delta_chi2())));
                format!(
                    "{id},{},{},{:.3},{:.3},{:.3},{half_length:.4},{mass:.4e},{},{:.3},{truth_delta}",
                    sim.class_names()[class_idx],
                    drawn.sub_snr.unwrap_or(0.0),
                    smooth.chi * smooth.chi,
                    vortex.chi * vortex.chi,
                    vortex.delta_chi2(),
                    smooth.renders + vortex.renders,
                    started.elapsed().as_secs_f64(),
                )
            })
            .collect();
        for line in lines {
            writeln!(file, "{line}").unwrap();
        }
        file.flush().unwrap();
    }
}
