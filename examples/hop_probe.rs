//! Which basin does the blind smooth-lens fit end in, without basin hops (the
//! default recipe) and with six, for the float32 cutout and its uint16 copy?
//! `survey` lenses of seed SEED, the ids given; prints each fit's chi^2 per pixel,
//! its renders and its time.
//!
//! `cargo run --release --example hop_probe -- SEED ID...`
use lensmae::sim::detectability::{fit_smooth_lens_blind, BlindGrid, Observation};
use lensmae::sim::{presets::preset, Simulator};

mod shared;
use shared::{print_per_lens, uint16_copy};

fn main() -> lensmae::Result<()> {
    let usage = "hop_probe SEED ID... (whole numbers)";
    let args: Vec<u64> = std::env::args().skip(1).map(|a| a.parse().expect(usage)).collect();
    let (&seed, ids) = args.split_first().expect(usage);
    let sim = Simulator::new(preset("survey")?)?;
    print_per_lens(ids, |id| {
        let class_idx = id as usize % 3;
        let drawn = sim.simulate(class_idx, seed, id);
        let observed = Observation { psf_fwhm: drawn.params.psf_fwhm, exposure_time: drawn.params.exposure_time };
        let float = drawn.image.rounded_to_f32();
        let uint16 = uint16_copy(&float);
        let noise = sim.noise_at(observed.exposure_time);
        let mut line = format!("{id} class {class_idx}");
        for (name, data) in [("float32", &float), ("uint16", &uint16)] {
            let variance = noise.variance(data, sim.config().image.pixel_scale).expect("survey has noise");
            let n = data.pixels.len() as f64;
            let hops = BlindGrid { basin_hops: 6, ..BlindGrid::default() };
            let clock = std::time::Instant::now();
            let before = fit_smooth_lens_blind(&sim, observed, data, &variance, &BlindGrid::default());
            let without = clock.elapsed().as_secs_f64();
            let after = fit_smooth_lens_blind(&sim, observed, data, &variance, &hops);
            let with = clock.elapsed().as_secs_f64() - without;
            line += &format!(
                " | {name} {:.3} -> {:.3} (renders {} -> {}, {without:.2} -> {with:.2} s)",
                before.chi.powi(2) / n,
                after.chi.powi(2) / n,
                before.renders,
                after.renders,
            );
        }
        line
    });
    Ok(())
}
