//! A short fuzz run of every reader (the long campaign: `bench/fuzz_campaign.sh`),
//! and the inputs earlier campaigns found, as regression tests.

#[path = "fuzz_harness.rs"]
pub mod harness;

#[test]
fn every_reader_survives_mutated_fixtures() {
    let scratch = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let targets = harness::targets(root, vec![harness::tiny_checkpoint(scratch.path())]);
    harness::quiet_panics();
    let mut findings = Vec::new();
    for target in &targets {
        // Few inputs each: the suite's share; the campaign runs a million.
        let execs = if target.name == "checkpoint" { 500 } else { 3000 };
        let report = harness::fuzz(target, execs, 7, scratch.path());
        assert_eq!(report.execs, execs);
        assert!(report.refused > 0, "{}: every mutant read: the mutations do not reach the reader", target.name);
        for (message, input) in report.panics {
            findings.push(format!("{}: {message} ({} bytes)", target.name, input.len()));
        }
    }
    let _ = std::panic::take_hook();
    assert!(findings.is_empty(), "{findings:#?}");
}

#[test]
fn inputs_earlier_campaigns_found_are_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let targets = harness::targets(root, vec![]);
    let run = |name: &str, file: &str| {
        let target = targets.iter().find(|t| t.name == name).unwrap();
        let bytes = std::fs::read(root.join("fixtures/fuzz").join(file)).unwrap();
        (target.run)(scratch.path(), &bytes).unwrap_err()
    };
    assert!(run("fits-stamp", "fits-negative-gcount.fits").contains("GCOUNT = -1 is negative"));
    assert!(run("fits-file", "fits-negative-gcount.fits").contains("GCOUNT = -1 is negative"));
    // Read as the HATS partitions they were mutated from: list columns of 16x16.
    for file in ["parquet-varint-too-long.parquet", "parquet-negative-column-start.parquet"] {
        let opts = lensmae::stage::InputOptions { shape: Some([16, 16]), ..Default::default() };
        let read_all = || -> lensmae::Result<()> {
            let mut reader = lensmae::stage::open_input(&[root.join("fixtures/fuzz").join(file)], &opts)?;
            while reader.next_batch(16)?.is_some() {}
            Ok(())
        };
        let e = read_all().unwrap_err().to_string();
        assert!(e.contains("malformed file (the decoder failed"), "{file}: {e}");
    }
}
