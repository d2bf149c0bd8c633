//! How much of `sub_snr` a smooth lens can absorb, and what the refit costs: for
//! N lenses of a class of the `survey` preset (parameters from seeds 1000...), the
//! noise-weighted distance between the noise-free image with substructure and
//! (a) the same lens without it (`sub_snr`) and (b) the best smooth lens and
//! source [`refit_smooth_lens`] finds (`sub_snr_refit`). For the vortex, also
//! against its half-length over the Einstein radius: a vortex inside the ring is
//! mostly central mass, which a larger Einstein radius imitates.
//!
//! `cargo run --release --example degeneracy_probe -- axion|cdm [N]`
use lensmae::sim::detectability::refit_smooth_lens;
use lensmae::sim::{presets::preset, Simulator};
use rand::SeedableRng;

/// The recipe's half-length of a vortex times the axion mass, arcsec eV.
const VORTEX_LENGTH_CONSTANT: f64 = 3e-24;

fn main() {
    let sim = Simulator::new(preset("survey").unwrap()).unwrap();
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "axion".into());
    let n: u64 = args.next().map_or(40, |s| s.parse().expect("N is a count"));
    let class = sim.class_names().iter().position(|c| *c == name).expect("a class of the survey preset");
    let (mut before, mut after, mut renders) = (Vec::new(), Vec::new(), 0);
    let started = std::time::Instant::now();
    for i in 0..n {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1000 + i);
        let params = sim.sample_params(class, &mut rng);
        let image = sim.scene(class, &params).render_with(&sim.camera(&params), None);
        let refit =
            refit_smooth_lens(&sim, class, &params, &image, &sim.noise(&params)).expect("survey lenses have noise");
        let vortex = params.vortex.as_ref().map_or(String::new(), |v| {
            format!(", vortex half-length / theta_E {:.2}", VORTEX_LENGTH_CONSTANT / v.axion_mass / params.lens_theta_e)
        });
        println!(
            "{i}: sub_snr {:.1}, after refitting the smooth lens and source {:.1} ({} renders){vortex}",
            refit.sub_snr, refit.sub_snr_refit, refit.renders
        );
        before.push(refit.sub_snr);
        after.push(refit.sub_snr_refit);
        renders += refit.renders;
    }
    let seconds = started.elapsed().as_secs_f64();
    for v in [&mut before, &mut after] {
        v.sort_by(f64::total_cmp);
    }
    let at_least_10 = |v: &[f64]| v.iter().filter(|s| **s >= 10.0).count();
    let median = |v: &[f64]| v[v.len() / 2];
    println!(
        "{name}: median sub_snr {:.1}, refitted {:.1}; >= 10: {} -> {} of {n}; {:.3} s and {:.0} renders a lens (one thread)",
        median(&before),
        median(&after),
        at_least_10(&before),
        at_least_10(&after),
        seconds / n as f64,
        renders as f64 / n as f64
    );
}
