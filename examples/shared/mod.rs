//! What the fit examples share.
use lensmae::sim::grid::Image;

/// `data` stored as uint16 over its own range and read back as float32, what
/// `bench/ood_sets.py` writes for its 16-bit copies.
pub fn uint16_copy(data: &Image) -> Image {
    let lo = data.pixels.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = data.pixels.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let scale = (hi - lo) / 65535.0;
    Image {
        size: data.size,
        pixels: data.pixels.iter().map(|v| (lo + ((v - lo) / scale).round() * scale) as f32 as f64).collect(),
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
