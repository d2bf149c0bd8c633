//! A short fuzz run of every reader (the long campaign: `bench/fuzz_campaign.sh`),
//! and the inputs earlier campaigns found, as regression tests.

#[path = "fuzz_harness.rs"]
pub mod harness;

#[test]
fn every_reader_survives_mutated_fixtures() {
    let scratch = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let targets = harness::targets(root, harness::tiny_checkpoints(scratch.path()));
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
fn the_band_cube_seed_reads_as_its_bands_with_its_mask_planes() {
    // The seed must reach the band and mask-plane code, or its mutants fuzz nothing new.
    use lensmae::stage::{open_input, InputOptions};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grz.fits");
    std::fs::write(&path, harness::band_cube_with_mask()).unwrap();
    let mut reader = open_input(std::slice::from_ref(&path), &InputOptions::default()).unwrap();
    assert!(reader.describe().layout.contains("cubes of bands (g, r, z)"), "{}", reader.describe().layout);
    let batch = reader.next_batch(8).unwrap().unwrap();
    assert_eq!(batch.len(), 3);
    // DETECTED (every fourth pixel from the second) is not a defect; CR and STREAK are.
    let masked = batch.pixels[..64].iter().filter(|v| v.is_nan()).count();
    assert_eq!(masked, 32);
    let only_cr = InputOptions { band: Some("r".into()), flag_planes: Some(vec!["CR".into()]), ..Default::default() };
    let batch = open_input(std::slice::from_ref(&path), &only_cr).unwrap().next_batch(8).unwrap().unwrap();
    assert_eq!((batch.len(), batch.pixels.iter().filter(|v| v.is_nan()).count()), (1, 16));
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
    // npyz's header parser backtracked for 1.8-2.5 s over its 13 unclosed braces.
    assert!(run("npy", "npy-nested-braces.npy").contains("nests brackets more than 3 deep"));
    assert!(run("fits-file", "fits-negative-gcount.fits").contains("GCOUNT = -1 is negative"));
    // A table header the file ends in, NAXIS2 = -32768 (the slowest input of the
    // 2026-12-07 campaign, seed 6: 6.9 s, 2.5 GB allocated by cfitsio).
    assert!(run("fits-file", "fits-table-header-cut-negative-rows.fits").contains("HDU 1: NAXIS2 = -32768 is negative"));
    // An extension header of pixel bytes (seed 10's slowest input: cfitsio's search by
    // name allocated 2.5 GB in it; a cost, which no assertion here can see, so
    // fixtures/fuzz/README.md gives the measurement): not predictions (its cube is
    // read as cutouts).
    let broken = root.join("fixtures/fuzz/fits-broken-extension-header.fits");
    assert!(!lensmae::data::predictions::is_prediction_table(&broken));
    let e = lensmae::data::predictions::read_predictions(&broken).unwrap_err().to_string();
    assert!(e.contains("no `PREDICTIONS` table extension"), "{e}");
    // A list-of-image-rows column whose first image holds no rows at the end of the
    // rows' list: the shape probe read the offset past it (a panic).
    let path = root.join("fixtures/fuzz/parquet-image-rows-empty-last.parquet");
    let e = lensmae::stage::inspect(std::slice::from_ref(&path), &Default::default()).unwrap_err().to_string();
    assert!(e.contains("no image: give --shape H,W"), "{e}");
    // With a shape given it is read (its rows fail as their problems say), in every way the campaign reads it.
    let parquet = targets.iter().find(|t| t.name == "parquet").unwrap();
    let _ = (parquet.run)(scratch.path(), &std::fs::read(&path).unwrap());
    // Headers declaring far more data than the file holds: the training reader
    // allocated what they said (4 TB: an abort, not an error).
    for (file, what) in [
        ("fits-cube-declared-4tb.fits", "image 0: truncated file: HDU 0 declares 60000 planes of 4096x4096"),
        ("fits-table-declared-8tb.fits", "the label table"),
    ] {
        let path = root.join("fixtures/fuzz").join(file);
        let e = lensmae::data::images::read_labelled_images(&path, "image").unwrap_err().to_string();
        assert!(e.contains(what) && e.contains(file), "{file}: {e}");
    }
    // A simulated cube whose PARAMS table declares 10^12 rows (the campaign's fits-file
    // target with a survey cube among its seeds): the stage read its `id` column into
    // a buffer of that size (an abort). The table is left unread, the planes are read.
    let path = root.join("fixtures/fuzz/fits-params-declared-260tb.fits");
    let report = lensmae::stage::inspect(std::slice::from_ref(&path), &Default::default()).unwrap();
    assert_eq!(report["input"]["rows"], 3);
    assert!(report["input"]["layout"].as_str().unwrap().contains("the PARAMS table declares 260000000000000 bytes"));
    // The same cube whose PARAMS table has a variable-length array column (legal FITS):
    // fitsio panicked describing it (campaign of 2026-12-07, seed 6). Its planes are
    // read, its table is said not to be, and training finds no table of labels in it.
    let path = root.join("fixtures/fuzz/fits-params-variable-length-column.fits");
    let report = lensmae::stage::inspect(std::slice::from_ref(&path), &Default::default()).unwrap();
    assert_eq!(report["input"]["rows"], 3);
    let layout = report["input"]["layout"].as_str().unwrap();
    assert!(layout.contains("`PARAMS` has a variable-length array column (TFORM5 = 'PD'), not read"), "{layout}");
    let e = lensmae::data::images::read_labelled_images(&path, "image").unwrap_err().to_string();
    assert!(e.contains("no binary table of labels"), "{e}");
    // A checkpoint whose metadata describes a 2^32-pixel image (found once the checkpoint
    // target's mutations reached the numbers of the metadata): the positional embedding
    // was allocated from it (8.6 GB: an abort under the campaign's memory limit). The
    // same campaign then found the numbers of its preprocessing: a side of 0 (zero-length
    // chunks: a panic) or 2^31 (a capacity overflow), and so would a patch of 0 pixels
    // (divided by zero). Each is now refused when the checkpoint is read.
    let path = root.join("fixtures/fuzz/checkpoint-image-size-2e32.safetensors");
    let e = lensmae::model::checkpoint::read_checkpoint_meta(&path).unwrap_err().to_string();
    assert!(e.contains("`image_size`: must be at most 4096"), "{e}");
    let bytes = std::fs::read(&path).unwrap();
    let cases: [(&str, &str, serde_json::Value, &str); 5] = [
        ("model", "image_size", 16.into(), ""),
        ("model", "patch_size", 0.into(), "`patch_size`: must be at least 1"),
        ("preprocessing", "image_size", 0.into(), "its preprocessing takes 0x0 images, its model 16x16"),
        ("preprocessing", "image_size", (1u64 << 31).into(), "takes 2147483648x2147483648 images"),
        ("calibration", "temperature", 0.0.into(), "its temperature 0 is not a finite number > 0"),
    ];
    for (part, key, value, refusal) in cases {
        let edited = with_lensmae_meta(&bytes, |meta| {
            meta["model"]["image_size"] = 16.into();
            meta[part][key] = value.clone();
        });
        let path = scratch.path().join("edited.safetensors");
        std::fs::write(&path, edited).unwrap();
        let loaded = lensmae::infer::LoadedClassifier::load(&path, &candle_core::Device::Cpu);
        match refusal {
            "" => assert!(loaded.is_ok(), "the file with a 16-pixel image loads: {:?}", loaded.err()),
            _ => {
                let e = loaded.err().unwrap().to_string();
                assert!(e.contains(refusal), "{part}.{key}: {e}");
            }
        }
    }
    // The stage read the same cube in batches of the rows asked for: 256 planes of
    // 4096x4096 (17 GB) for a 5.7 KB file. Then in batches of four zero-filled
    // planes (a minute of memset for 60,000 rows). Rows the file lacks hold no pixels.
    let path = root.join("fixtures/fuzz/fits-cube-declared-4tb.fits");
    let mut reader = lensmae::stage::open_input(&[path], &Default::default()).unwrap();
    let batch = reader.next_batch(256).unwrap().unwrap();
    assert_eq!((batch.len(), batch.pixels.len()), (256, 0));
    assert!(batch.problems.iter().all(|p| p.as_ref().is_some_and(|p| p.contains("truncated file"))));
    // Read as the HATS partitions they were mutated from: list columns of 16x16.
    // The third kept the parquet crate's Thrift skipper counting to 2^31 for 20-30 s
    // (a map of booleans in a page header): refused by the bounded walk at once.
    for (file, expected) in [
        ("parquet-varint-too-long.parquet", "malformed file (the decoder failed"),
        ("parquet-negative-column-start.parquet", "a negative offset or length"),
        ("parquet-map-of-booleans.parquet", "page header at byte"),
    ] {
        let opts = lensmae::stage::InputOptions { shape: Some([16, 16]), ..Default::default() };
        let read_all = || -> lensmae::Result<()> {
            let mut reader = lensmae::stage::open_input(&[root.join("fixtures/fuzz").join(file)], &opts)?;
            while reader.next_batch(16)?.is_some() {}
            Ok(())
        };
        let e = read_all().unwrap_err().to_string();
        assert!(e.contains(expected), "{file}: {e}");
    }
    // A footer declaring more rows than the pages hold: the reader reopened the file
    // at the same row for ever (a hang of the campaign's second run).
    let opts = lensmae::stage::InputOptions { shape: Some([16, 16]), ..Default::default() };
    let mut reader =
        lensmae::stage::open_input(&[root.join("fixtures/fuzz/parquet-rows-missing.parquet")], &opts).unwrap();
    let e = loop {
        match reader.next_batch(16) {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the missing rows are not reported"),
            Err(e) => break e.to_string(),
        }
    };
    assert!(e.contains("the footer declares") && e.contains("rows, the pages hold"), "{e}");
    // An Arrow IPC stream whose dictionary batch's compressed buffer declares 4 GB
    // once inflated (the arrow-ipc target's first campaign, seed 2): the crate
    // allocated the declared size before inflating (an abort). Inflated and counted
    // first now, and refused.
    let path = root.join("fixtures/fuzz/arrow-ipc-dictionary-inflating-4gb.arrows");
    let e = lensmae::data::images::read_labelled_images(&path, "image").unwrap_err().to_string();
    assert!(e.contains("a compressed buffer cannot be inflated"), "{e}");
    // A string column whose offsets buffer holds 17 bytes (4 of 300,000 inputs of the
    // campaign of seed 2): arrow-data's validation asserted on it (a panic the reader
    // contained). Refused before the crate sees it, by a walk of the columns' buffers.
    let path = root.join("fixtures/fuzz/arrow-ipc-offsets-17-bytes.arrow");
    let e = lensmae::data::images::read_labelled_images(&path, "image").unwrap_err().to_string();
    assert!(e.contains("an offsets buffer of 17 bytes, not a whole number of 4-byte values"), "{e}");
}

/// A Parquet file whose dictionary page declares more values than it holds (the
/// campaign's 4.6 GB allocation came from such a page): refused before decoding.
#[test]
fn a_dictionary_page_declaring_more_values_than_its_bytes_is_refused() {
    use arrow_array::{Int32Array, RecordBatch};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dict.parquet");
    let values = Int32Array::from_iter_values((0..1000).map(|i| i % 64));
    let batch = RecordBatch::try_from_iter([("label_idx", Arc::new(values) as arrow_array::ArrayRef)]).unwrap();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::UNCOMPRESSED)
        .build();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), Some(props))
            .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    // The dictionary page header's num_values (64, a zigzag varint 0x80 0x01 after
    // the field header 0x15, then the PLAIN encoding 0x15 0x00) becomes 8,191.
    let at = bytes.windows(5).position(|w| w == [0x15, 0x80, 0x01, 0x15, 0x00]).expect("a dictionary page header");
    bytes[at + 1..at + 3].copy_from_slice(&[0xFE, 0x7F]);
    std::fs::write(&path, &bytes).unwrap();
    let e = lensmae::data::parquet::open_parquet(&path).err().unwrap().to_string();
    assert!(e.contains("a dictionary page declares 8191 values in 256 bytes"), "{e}");
}

/// `bytes` (a lensmae checkpoint) with its `lensmae` metadata changed by `edit`, the
/// safetensors header re-framed around it.
fn with_lensmae_meta(bytes: &[u8], edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let length = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + length]).unwrap();
    let mut meta: serde_json::Value =
        serde_json::from_str(header["__metadata__"]["lensmae"].as_str().unwrap()).unwrap();
    edit(&mut meta);
    header["__metadata__"]["lensmae"] = meta.to_string().into();
    let header = header.to_string().into_bytes();
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header);
    out.extend_from_slice(&bytes[8 + length..]);
    out
}
