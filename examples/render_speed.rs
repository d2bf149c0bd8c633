//! In-memory render speed of a preset per class, no I/O — the figure to compare
//! with other simulators rendering into memory:
//! `cargo run --release --example render_speed -- [preset] [threads] [images_per_class]`.
//! Prints one JSON line per class.
use lensmae::sim::{presets::preset, Simulator};
use rayon::prelude::*;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let name = args.get(1).map_or("deeplense-model2", |s| s.as_str());
    let threads: usize = args.get(2).map_or(1, |s| s.parse().expect("threads"));
    let n: u64 = args.get(3).map_or(4000, |s| s.parse().expect("images per class"));
    let sim = Simulator::new(preset(name).unwrap()).unwrap();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    for (class, label) in sim.class_names().iter().enumerate() {
        pool.install(|| (0..64).into_par_iter().for_each(|i| drop(sim.simulate(class, 0, i)))); // warm-up
        let started = Instant::now();
        let checksum: f64 =
            pool.install(|| (0..n).into_par_iter().map(|i| sim.simulate(class, 1, i).image.pixels[2080]).sum());
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "{{\"preset\":\"{name}\",\"class\":\"{label}\",\"threads\":{threads},\"images\":{n},\"images_per_s\":{:.1},\"checksum\":{checksum:.6}}}",
            n as f64 / seconds
        );
    }
}
