//! Single-thread render speed of a preset per class, without any I/O:
//! `cargo run --release --example render_speed -- deeplense-model2 [class]`.
use lensmae::sim::{presets::preset, Simulator};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let sim = Simulator::new(preset(args.get(1).map_or("deeplense-model2", |s| s)).unwrap()).unwrap();
    for (class, name) in sim.class_names().iter().enumerate() {
        if args.get(2).is_some_and(|c| c != name) {
            continue;
        }
        let n = 2000;
        let started = Instant::now();
        let mut checksum = 0.0;
        for i in 0..n {
            checksum += sim.simulate(class, 1, i).image.pixels[2080];
        }
        let dt = started.elapsed().as_secs_f64();
        println!(
            "{name:<8} {:>8.1} us/image {:>8.0} images/s (checksum {checksum:.6})",
            dt / n as f64 * 1e6,
            n as f64 / dt
        );
    }
}
