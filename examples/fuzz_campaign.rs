//! The long fuzz campaign of every reader (the test suite runs a short one).
//!
//! `cargo run --release --example fuzz_campaign -- EXECS [SEED] [TARGET...]`;
//! `bench/fuzz_campaign.sh` runs it under a memory limit and records the figures
//! in RELIABILITY.md's terms. Each finding's input is written to
//! `target/fuzz-findings/<target>-<n>.bin` (and the slowest input to
//! `<target>-slowest.bin`); the exit code is 1 when there is one.

#[path = "../tests/it/fuzz_harness.rs"]
mod harness;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let execs: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let seed: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1);
    let only: Vec<&str> = args.iter().skip(2).map(String::as_str).collect();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let findings = root.join("target/fuzz-findings");
    std::fs::create_dir_all(&findings).expect("target/ is writable");
    let scratch = tempfile::tempdir().expect("a scratch folder");
    let targets = harness::targets(root, harness::tiny_checkpoints(scratch.path()));
    harness::quiet_panics();
    let mut found = 0;
    for target in targets.iter().filter(|t| only.is_empty() || only.contains(&t.name)) {
        let started = std::time::Instant::now();
        let report = harness::fuzz(target, execs, seed, scratch.path());
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "{:<11} {} execs in {seconds:.0} s ({:.0}/s), {} refused, {} panics, slowest input {:.1} ms",
            target.name,
            report.execs,
            report.execs as f64 / seconds,
            report.refused,
            report.panics.len(),
            report.slowest.as_secs_f64() * 1e3
        );
        let slowest = findings.join(format!("{}-slowest.bin", target.name));
        std::fs::write(&slowest, &report.slowest_input).expect("target/ is writable");
        println!("  slowest input -> {}", slowest.display());
        for (i, (message, input)) in report.panics.iter().enumerate() {
            let path = findings.join(format!("{}-{i}.bin", target.name));
            std::fs::write(&path, input).expect("target/ is writable");
            println!("  panic: {message} -> {}", path.display());
            found += 1;
        }
    }
    std::process::exit(i32::from(found > 0));
}
