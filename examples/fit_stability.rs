//! Does the blind smooth-lens fit give the same answer for the same cutout stored
//! two ways? For `survey` lenses (seed SEED, the first N rows), the blind fit of the
//! float32 cutout and of its uint16 copy over the cutout's range (what
//! `bench/ood_sets.py` writes), without its own polishing (`polish_fits` 0), then
//! POLISH more fits from each best fit, whatever their chi^2.
//!
//! `cargo run --release --example fit_stability -- N SEED POLISH`
use lensmae::sim::fit::{fit_smooth_lens, fit_smooth_lens_blind, BlindGrid, Fitted};
use lensmae::sim::{presets::preset, Simulator};

mod shared;
use shared::{print_per_lens, StoredLens};

fn main() -> lensmae::Result<()> {
    let usage = "fit_stability N SEED POLISH (three whole numbers)";
    let args: Vec<u64> = std::env::args().skip(1).map(|a| a.parse().expect(usage)).collect();
    let &[n, seed, polish] = args.as_slice() else { panic!("{usage}") };
    let sim = Simulator::new(preset("survey")?)?;
    let ids: Vec<u64> = (0..n).collect();
    print_per_lens(&ids, |id| {
        let lens = StoredLens::new(&sim, seed, id);
        let mut line = format!("{id},{}", lens.class_idx);
        for (_, data) in &lens.copies {
            let t = std::time::Instant::now();
            let variance = lens.variance(&sim, data);
            let mut fit = fit_smooth_lens_blind(
                &sim,
                &lens.observed,
                data,
                &variance,
                &BlindGrid { polish_fits: 0, ..BlindGrid::default() },
            );
            let mut chis = vec![fit.chi * fit.chi];
            for _ in 0..polish as usize {
                let again = fit_smooth_lens(&sim, 0, &fit.params, data, &variance, Fitted::LensSourceAndLight);
                fit.renders += again.renders;
                fit.params = again.params;
                fit.chi = again.chi;
                chis.push(fit.chi * fit.chi);
            }
            line += &format!(
                ",{},{},{:.2}",
                chis.iter().map(|c| format!("{c:.2}")).collect::<Vec<_>>().join(";"),
                fit.renders,
                t.elapsed().as_secs_f64()
            );
        }
        line
    });
    Ok(())
}
