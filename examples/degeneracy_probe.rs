//! How much of `sub_snr` a smooth lens can absorb: for 40 lenses of the `survey`
//! preset (parameters from seeds 1000-1039), the noise-weighted distance between the
//! noise-free image with substructure and (a) the same lens without it (`sub_snr`)
//! and (b) the best smooth lens found by refitting the Einstein radius, ellipticity
//! and centre (three rounds of coordinate descent on a grid; shear and source kept,
//! so (b) is an upper bound of what a full refit leaves).
//!
//! `cargo run --release --example degeneracy_probe -- axion|cdm`
use lensmae::sim::{presets::preset, ImageParams, Simulator};
use rand::SeedableRng;

fn main() {
    let sim = Simulator::new(preset("survey").unwrap()).unwrap();
    let name = std::env::args().nth(1).unwrap_or_else(|| "axion".into());
    let class = sim.class_names().iter().position(|c| *c == name).expect("a class of the survey preset");
    let no_sub = sim.class_names().iter().position(|c| c == "no_sub").unwrap();
    let pixel_scale = sim.config().image.pixel_scale;
    let (mut before, mut after) = (Vec::new(), Vec::new());
    for i in 0..40u64 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1000 + i);
        let params = sim.sample_params(class, &mut rng);
        let image = sim.render_noise_free(class, &params);
        let variance = sim.noise(&params).variance(&image, pixel_scale).unwrap();
        let chi2 = |smooth: &ImageParams| {
            let mut smooth = smooth.clone();
            smooth.subhalos.clear();
            smooth.vortex = None;
            let s = sim.render_noise_free(no_sub, &smooth);
            image.pixels.iter().zip(&s.pixels).zip(&variance).map(|((a, b), v)| (a - b) * (a - b) / v).sum::<f64>()
        };
        let shift = |p: &mut ImageParams, which: usize, d: f64| match which {
            0 => p.lens_theta_e += d,
            1 => p.lens_e1 += d,
            2 => p.lens_e2 += d,
            3 => p.lens_center_x += 0.3 * d,
            _ => p.lens_center_y += 0.3 * d,
        };
        let sub_snr = chi2(&params);
        let (mut best, mut fitted) = (sub_snr, params.clone());
        for _round in 0..3 {
            for which in 0..5 {
                let mut best_step = 0.0;
                for k in -40..=40 {
                    let mut trial = fitted.clone();
                    shift(&mut trial, which, k as f64 * 0.0015);
                    let c = chi2(&trial);
                    if c < best {
                        (best, best_step) = (c, k as f64 * 0.0015);
                    }
                }
                shift(&mut fitted, which, best_step);
            }
        }
        println!("{i}: sub_snr {:.1}, after refitting the smooth lens {:.1}", sub_snr.sqrt(), best.sqrt());
        before.push(sub_snr.sqrt());
        after.push(best.sqrt());
    }
    for v in [&mut before, &mut after] {
        v.sort_by(f64::total_cmp);
    }
    let at_least_10 = |v: &[f64]| v.iter().filter(|s| **s >= 10.0).count();
    println!(
        "{name}: median sub_snr {:.1}, refitted {:.1}; >= 10: {} -> {} of 40",
        before[20],
        after[20],
        at_least_10(&before),
        at_least_10(&after)
    );
}
