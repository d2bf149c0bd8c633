//! Which basin does the blind smooth-lens fit end in, without basin hops (the
//! default recipe) and with six, for the float32 cutout and its uint16 copy?
//! `survey` lenses of seed SEED, the ids given; prints each fit's chi^2 per pixel,
//! its renders and its time.
//!
//! `cargo run --release --example hop_probe -- SEED ID...`
use lensmae::sim::fit::{fit_smooth_lens_blind, BlindGrid};
use lensmae::sim::{presets::preset, Simulator};

mod shared;
use shared::{print_per_lens, StoredLens};

fn main() -> lensmae::Result<()> {
    let usage = "hop_probe SEED ID... (whole numbers)";
    let args: Vec<u64> = std::env::args().skip(1).map(|a| a.parse().expect(usage)).collect();
    let (&seed, ids) = args.split_first().expect(usage);
    let sim = Simulator::new(preset("survey")?)?;
    print_per_lens(ids, |id| {
        let lens = StoredLens::new(&sim, seed, id);
        let mut line = format!("{id} class {}", lens.class_idx);
        for (name, data) in &lens.copies {
            let variance = lens.variance(&sim, data);
            let n = data.pixels.len() as f64;
            let hops = BlindGrid { basin_hops: 6, ..BlindGrid::default() };
            let clock = std::time::Instant::now();
            let before = fit_smooth_lens_blind(&sim, &lens.observed, data, &variance, &BlindGrid::default());
            let without = clock.elapsed().as_secs_f64();
            let after = fit_smooth_lens_blind(&sim, &lens.observed, data, &variance, &hops);
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
