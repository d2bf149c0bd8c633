//! The `deeplense-model3` preset against a real released DeepLense image.
//!
//! Fitting only the source position (the rest of the recipe is fixed), the
//! peak-normalised no-substructure render must reach a summed squared residual
//! below 1 against `nosub.npy`; a wrong pixel scale, PSF or multi-plane factor
//! leaves it far above (41 for Model II settings, see fixtures/deeplense-samples).

use crate::fixture;
use lensmae::data::npy::read_npy;
use lensmae::sim::presets::preset;
use lensmae::sim::Simulator;
use rand::SeedableRng;

fn best_residual(preset_name: &str, target: &[f64]) -> (f64, f64, f64) {
    let sim = Simulator::new(preset(preset_name).unwrap()).unwrap();
    let no_sub = sim.class_names().iter().position(|c| c == "no_sub").unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut params = sim.sample_params(no_sub, &mut rng);
    let mut residual_at = |x: f64, y: f64| {
        params.source_x = x;
        params.source_y = y;
        let img = sim.render_noise_free(no_sub, &params);
        let peak = img.max();
        img.pixels.iter().zip(target).map(|(a, b)| (a / peak - b).powi(2)).sum::<f64>()
    };
    // Coarse grid over the recipe's source box, then a finer one around the best.
    let mut best = (f64::INFINITY, 0.0, 0.0);
    for step in [0.025, 0.005] {
        let (cx, cy) = (best.1, best.2);
        let half: f64 = if step == 0.025 { 0.35 } else { 0.025 };
        let n = (2.0 * half / step).round() as i32;
        for i in 0..=n {
            for j in 0..=n {
                let (x, y) = (cx - half + i as f64 * step, cy - half + j as f64 * step);
                let r = residual_at(x, y);
                if r < best.0 {
                    best = (r, x, y);
                }
            }
        }
    }
    best
}

#[test]
fn model3_fits_the_real_nosub_image() {
    let target = read_npy(&fixture("deeplense-samples/nosub.npy")).unwrap();
    assert_eq!(target.shape, vec![64, 64]);
    let (residual, x, y) = best_residual("deeplense-model3", &target.data);
    assert!(residual < 1.0, "best residual {residual} at ({x}, {y})");
    // And the Model II pixel grid cannot fit it: the check has teeth.
    let (residual2, _, _) = best_residual("deeplense-model2", &target.data);
    assert!(residual2 > 10.0, "model2 residual {residual2}");
}
