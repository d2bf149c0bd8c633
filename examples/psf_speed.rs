//! What a PSF costs a survey render: one 64x64 image convolved with the Gaussian PSF
//! (FWHM 0.17" at 0.101"/px) and with a 21x21 pixelated Moffat PSF of the same FWHM
//! (beta 2.5), and a whole noise-free `no_sub` render through each, microseconds of
//! one core (best of 5 rounds).
//!
//!     cargo run --release --example psf_speed [ROUNDS_OF_1000]

use lensmae::sim::presets::preset;
use lensmae::sim::psf::{Psf, PsfKernel};
use lensmae::sim::{Image, Simulator};
use rand::SeedableRng;
use std::sync::Arc;
use std::time::Instant;

fn best_us(rounds: usize, mut work: impl FnMut() -> f64) -> f64 {
    let mut best = f64::INFINITY;
    let mut sink = 0.0;
    for _ in 0..rounds {
        let started = Instant::now();
        for _ in 0..1000 {
            sink += work();
        }
        best = best.min(started.elapsed().as_secs_f64() * 1e3);
    }
    assert!(sink.is_finite());
    best
}

fn main() {
    let rounds: usize = std::env::args().nth(1).map_or(5, |s| s.parse().expect("rounds"));
    let image = Image { size: 64, pixels: (0..4096).map(|i| ((i * 7919) % 1000) as f64 / 1000.0).collect() };
    let gaussian = Psf::Gaussian { fwhm: 0.17, truncation: 4.0 };
    let kernel = Arc::new(PsfKernel::moffat(0.17 / 0.101, 2.5, 21).unwrap());
    let pixelated = Psf::Pixelated(kernel.clone());
    let convolve_gaussian = best_us(rounds, || gaussian.convolve(&image, 0.101).pixels[2080]);
    let convolve_pixelated = best_us(rounds, || pixelated.convolve(&image, 0.101).pixels[2080]);
    let sim = Simulator::new(preset("survey").unwrap()).unwrap();
    let no_sub = sim.class_names().iter().position(|c| c == "no_sub").unwrap();
    let mut params = sim.sample_params(no_sub, &mut rand_chacha::ChaCha8Rng::seed_from_u64(3));
    let render_gaussian = best_us(rounds, || sim.render_noise_free(no_sub, &params).pixels[2080]);
    params.psf_kernel = Some(kernel);
    let render_pixelated = best_us(rounds, || sim.render_noise_free(no_sub, &params).pixels[2080]);
    println!(
        "{{\"us_convolve_gaussian\":{convolve_gaussian:.1},\"us_convolve_moffat_21x21\":{convolve_pixelated:.1},\
         \"us_render_gaussian\":{render_gaussian:.1},\"us_render_moffat_21x21\":{render_pixelated:.1}}}"
    );
}
