//! In-memory render speed of a preset per class, no I/O — the figure to compare
//! with other simulators rendering into memory:
//! `cargo run --release --example render_speed -- [preset] [threads] [images_per_class] [stages]`
//! (a recipe file, `pipelines/recipes/survey-moffat.toml`, in place of a preset's name).
//! Prints one JSON line per class. With `stages`, each line also holds one
//! thread's microseconds per image for drawing the parameters, the noise-free
//! render alone (no `sub_snr`) and the noise realisation alone, so a speed goal
//! can be set against the part it cannot skip.
use lensmae::sim::presets::{load_recipe, preset};
use lensmae::sim::Simulator;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::time::Instant;

/// Microseconds per call of `f` over `n` calls on this thread.
fn micros_each(n: u64, mut f: impl FnMut(u64)) -> f64 {
    let started = Instant::now();
    (0..n).for_each(&mut f);
    started.elapsed().as_secs_f64() * 1e6 / n as f64
}

/// One thread's cost of each part of an image of `class`, in microseconds.
fn stages(sim: &Simulator, class: usize, n: u64) -> [f64; 3] {
    let rng_for = |i: u64| {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        rng.set_stream(i);
        rng
    };
    let draw = micros_each(n, |i| drop(std::hint::black_box(sim.sample_params(class, &mut rng_for(i)))));
    let params: Vec<_> = (0..n).map(|i| sim.sample_params(class, &mut rng_for(i))).collect();
    let started = Instant::now();
    let mut images: Vec<_> = params.iter().map(|p| sim.render_noise_free(class, p)).collect();
    let render = started.elapsed().as_secs_f64() * 1e6 / n as f64;
    let pixel_scale = sim.config().image.pixel_scale;
    let noise = micros_each(n, |i| {
        let k = i as usize;
        sim.noise(&params[k]).apply(&mut images[k], pixel_scale, &mut rng_for(i));
    });
    [draw, render, noise]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let name = args.get(1).map_or("deeplense-model2", |s| s.as_str());
    let threads: usize = args.get(2).map_or(1, |s| s.parse().expect("threads"));
    let n: u64 = args.get(3).map_or(4000, |s| s.parse().expect("images per class"));
    let with_stages = args.get(4).is_some_and(|s| s == "stages");
    let recipe = match name.ends_with(".toml") {
        true => load_recipe(std::path::Path::new(name)),
        false => preset(name),
    };
    let sim = Simulator::new(recipe.unwrap()).unwrap();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    for (class, label) in sim.class_names().iter().enumerate() {
        pool.install(|| (0..64).into_par_iter().for_each(|i| drop(sim.simulate(class, 0, i)))); // warm-up
        let started = Instant::now();
        let checksum: f64 =
            pool.install(|| (0..n).into_par_iter().map(|i| sim.simulate(class, 1, i).image.pixels[2080]).sum());
        let seconds = started.elapsed().as_secs_f64();
        let parts = match with_stages {
            true => {
                let [draw, render, noise] = stages(&sim, class, n.min(500));
                format!(",\"us_draw\":{draw:.1},\"us_render_noise_free\":{render:.1},\"us_noise\":{noise:.1}")
            }
            false => String::new(),
        };
        println!(
            "{{\"preset\":\"{name}\",\"class\":\"{label}\",\"threads\":{threads},\"images\":{n},\"images_per_s\":{:.1},\"checksum\":{checksum:.6}{parts}}}",
            n as f64 / seconds
        );
    }
}
