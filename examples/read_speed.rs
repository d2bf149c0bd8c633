//! How fast the stage's cutout readers decode a table, without a model: every
//! batch of `open_input` (256 rows, as `predict` asks) drained on this thread.
//! `cargo run --release --example read_speed -- [--repeat N] FILE...`: one JSON
//! line per file, the best of N passes (default 3).
use lensmae::stage::{open_input, InputOptions};
use std::path::PathBuf;
use std::time::Instant;

fn main() -> lensmae::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut repeat = 3;
    if args.first().is_some_and(|a| a == "--repeat") {
        repeat = args.get(1).and_then(|n| n.parse().ok()).expect("--repeat N");
        args.drain(..2);
    }
    for file in args {
        let path = PathBuf::from(&file);
        let mut best = f64::INFINITY;
        let (mut rows, mut pixels, mut format) = (0, 0, String::new());
        for _ in 0..repeat {
            let started = Instant::now();
            let mut reader = open_input(std::slice::from_ref(&path), &InputOptions::default())?;
            (rows, pixels) = (0, 0);
            while let Some(batch) = reader.next_batch(256)? {
                rows += batch.len();
                pixels += std::hint::black_box(&batch.pixels).len();
            }
            best = best.min(started.elapsed().as_secs_f64());
            format = reader.describe().format.clone();
        }
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        println!(
            "{}",
            serde_json::json!({
                "file": file,
                "format": format,
                "bytes": size,
                "rows": rows,
                "seconds": best,
                "rows_per_s": rows as f64 / best,
                "pixel_mb_per_s": pixels as f64 * 4.0 / 1e6 / best,
            })
        );
    }
    Ok(())
}
