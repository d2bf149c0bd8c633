//! What the fit examples share.
use lensmae::sim::fit::Observation;
use lensmae::sim::grid::Image;
use lensmae::sim::noise::Noise;
use lensmae::sim::Simulator;

/// `data` stored as uint16 over its own range and read back as float32, what
/// `bench/ood_sets.py` writes for its 16-bit copies.
fn uint16_copy(data: &Image) -> Image {
    let lo = data.pixels.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = data.pixels.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let scale = (hi - lo) / 65535.0;
    Image {
        size: data.size,
        pixels: data.pixels.iter().map(|v| (lo + ((v - lo) / scale).round() * scale) as f32 as f64).collect(),
    }
}

/// Lens `id` of `seed` (class id % 3) stored two ways: the float32 cutout
/// `simulate` writes and its uint16 copy, with what a survey knows of it and its
/// instrument's noise.
pub struct StoredLens {
    pub class_idx: usize,
    pub observed: Observation,
    /// ("float32", cutout), ("uint16", its copy).
    pub copies: [(&'static str, Image); 2],
    pub noise: Noise,
}

impl StoredLens {
    pub fn new(sim: &Simulator, seed: u64, id: u64) -> Self {
        let class_idx = id as usize % 3;
        let drawn = sim.simulate(class_idx, seed, id);
        let observed = Observation::of_drawn(&drawn.params);
        let float = drawn.image.rounded_to_f32();
        let uint16 = uint16_copy(&float);
        StoredLens {
            class_idx,
            noise: sim.noise_at(observed.exposure_time),
            observed,
            copies: [("float32", float), ("uint16", uint16)],
        }
    }

    /// The noise variance of `data`'s pixels, which the blind fit weights them by.
    pub fn variance(&self, sim: &Simulator, data: &Image) -> Vec<f64> {
        self.noise.variance(data, sim.config().image.pixel_scale).expect("the survey recipe has noise")
    }
}

/// One line per lens, computed in parallel: each is shown on stderr as it is done,
/// and all are printed to stdout in the order of `ids` at the end.
pub fn print_per_lens(ids: &[u64], line: impl Fn(u64) -> String + Sync) {
    use rayon::prelude::*;
    let lines: Vec<String> = ids
        .par_iter()
        .map(|&id| {
            let text = line(id);
            eprintln!("{text}");
            text
        })
        .collect();
    for text in lines {
        println!("{text}");
    }
}
