//! Mutation fuzzing of every reader, on the stable toolchain.
//!
//! Each target feeds bytes to one reader the way a user's file would reach it
//! (written to a scratch file when the reader takes paths) and must answer with
//! `Ok` or an error: a panic is a finding, kept with its input. Inputs are the
//! committed fixtures, mutated byte-wise (flips, interesting values, cuts,
//! splices, repeats) and by structure where it finds more: FITS header values
//! (NAXISn, BITPIX, PCOUNT, ...) and numbers in TOML text set to extreme values.
//! Aborts (a stack overflow, an allocation the memory limit refuses) end the
//! process: the input being tried is in `<scratch>/current-<target>.bin`, which is
//! what `bench/fuzz_campaign.sh` reports.
//!
//! Used by the short run in the test suite (`fuzz::every_reader_survives_mutated_fixtures`)
//! and by `examples/fuzz_campaign.rs` for the long campaign.

use lensmae::stage::{open_input, InputOptions};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One reader under test.
pub struct Target {
    /// Its name in reports.
    pub name: &'static str,
    /// Valid inputs to start from.
    pub seeds: Vec<Vec<u8>>,
    /// Text formats get number-aware mutations.
    pub text: bool,
    /// Runs the reader on one input; `Err` is a handled refusal.
    pub run: fn(&Path, &[u8]) -> Result<(), String>,
}

/// What a campaign over one target found.
#[derive(Debug, Default)]
pub struct Report {
    /// Inputs tried.
    pub execs: u64,
    /// Of which the reader refused (an error, not a crash).
    pub refused: u64,
    /// Panics: the message and the input.
    pub panics: Vec<(String, Vec<u8>)>,
    /// The slowest input's time.
    pub slowest: Duration,
    /// The slowest input, to look into where a reader spends its time.
    pub slowest_input: Vec<u8>,
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

fn write_scratch(scratch: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = scratch.join(name);
    std::fs::write(&path, bytes).expect("scratch is writable");
    path
}

/// Reads at most 64 batches of 16 rows (every row of the fixtures).
fn drain(paths: &[PathBuf], opts: &InputOptions) -> Result<(), String> {
    let mut reader = open_input(paths, opts).map_err(|e| e.to_string())?;
    for _ in 0..64 {
        match reader.next_batch(16).map_err(|e| e.to_string())? {
            Some(batch) => {
                assert_eq!(batch.problems.len(), batch.len(), "one status per row");
                assert_eq!(batch.wcs.len(), batch.len(), "one WCS (or none) per row");
                // What predict does with a cutout's WCS: regrid it, super-resolve it, write it.
                for wcs in batch.wcs.iter().flatten() {
                    if let Some(cards) = wcs.regridded([1.5, -2.0], 0.37).upsampled(4.0).header_cards() {
                        assert!(cards.len() % 80 == 0 && cards.is_ascii(), "header cards of 80 characters");
                    }
                }
            }
            None => break,
        }
    }
    Ok(())
}

fn fits_file(scratch: &Path, bytes: &[u8]) -> Result<(), String> {
    let path = write_scratch(scratch, "input.fits", bytes);
    // Both ways a user reads a file: the default HDUs, and one extension by name.
    let by_default = drain(std::slice::from_ref(&path), &InputOptions::default());
    let by_name = drain(std::slice::from_ref(&path), &InputOptions { hdu: Some("SCI".into()), ..Default::default() });
    // With columns carried from a PARAMS table or the headers, as a residual classifier reads its observations.
    let keep = ["psf_fwhm", "exposure_time", "label"].map(String::from).to_vec();
    let kept = drain(std::slice::from_ref(&path), &InputOptions { keep, ..Default::default() });
    // One band of a band cube, with the flags' planes named.
    let band = InputOptions { band: Some("r".into()), flag_planes: Some(vec!["CR".into()]), ..Default::default() };
    let one_band = drain(std::slice::from_ref(&path), &band);
    // And as training and evaluation read a labelled cube.
    let training = lensmae::data::images::read_labelled_images(&path, "image").map(|_| ()).map_err(|e| e.to_string());
    // And as predictions written as FITS: by `inspect`, `evaluate --predictions` and `sr-fits`.
    let _ = lensmae::data::predictions::is_prediction_table(&path);
    let predictions = lensmae::data::predictions::read_predictions(&path).map(|_| ()).map_err(|e| e.to_string());
    let sr_fits =
        lensmae::stage::sr_fits::write_sr_fits(&path, &scratch.join("sr"), true).map(|_| ()).map_err(|e| e.to_string());
    by_default.or(by_name).or(kept).or(one_band).or(training).or(predictions).or(sr_fits)
}

fn fits_stamp(_: &Path, bytes: &[u8]) -> Result<(), String> {
    let stamp = lensmae::data::fits::cutouts::decode_fits_bytes(bytes)?;
    if let Some(cards) = stamp.wcs.and_then(|wcs| wcs.upsampled(4.0).header_cards()) {
        assert!(cards.len() % 80 == 0 && cards.is_ascii(), "header cards of 80 characters");
    }
    Ok(())
}

/// A 16x16 float cutout whose header has a rotated TAN-SIP WCS of order 3 in FK5,
/// its reference pixel far outside (as a survey tile's cutout has it): a seed that
/// reaches the WCS reader and the SIP terms.
fn sip_cutout() -> Vec<u8> {
    let cards = [
        "SIMPLE  =                    T",
        "BITPIX  =                  -32",
        "NAXIS   =                    2",
        "NAXIS1  =                   16",
        "NAXIS2  =                   16",
        "CTYPE1  = 'RA---TAN-SIP'",
        "CTYPE2  = 'DEC--TAN-SIP'",
        "CRVAL1  =                150.1",
        "CRVAL2  =                  2.2",
        "CRPIX1  =              -1200.0",
        "CRPIX2  =               3400.5",
        "CD1_1   =   -2.3548685010E-05",
        "CD1_2   =    1.5269321483E-05",
        "CD2_1   =    1.5291962436E-05",
        "CD2_2   =    2.3507183000E-05",
        "RADESYS = 'FK5     '",
        "EQUINOX =               2000.0",
        "A_ORDER =                    3",
        "A_2_0   =               2.0E-6",
        "A_1_2   =              -3.0E-9",
        "B_ORDER =                    3",
        "B_0_2   =               1.5E-6",
        "B_3_0   =               4.0E-9",
        "PSF_FWHM=                 0.17",
        "EXPTIME =               2264.0",
        "END",
    ];
    let mut bytes: Vec<u8> = cards.iter().flat_map(|c| format!("{c:<80}").into_bytes()).collect();
    bytes.resize(2880, b' ');
    let pixels: Vec<u8> = (0..256).flat_map(|i| (i as f32 * 0.01).to_be_bytes()).collect();
    bytes.extend(pixels);
    bytes.resize(2 * 2880, 0);
    bytes
}

/// A Legacy Surveys-style band cube (3 x 8 x 8, `BANDS = 'grz'`, `BAND0..2`, a TAN WCS)
/// with a Rubin-style `MASK` extension of int32 bit planes named by `MP_*` keywords.
pub fn band_cube_with_mask() -> Vec<u8> {
    let header = |cards: &[&str]| -> Vec<u8> {
        let mut bytes: Vec<u8> = cards.iter().flat_map(|c| format!("{c:<80}").into_bytes()).collect();
        bytes.resize(2880, b' ');
        bytes
    };
    let mut bytes = header(&[
        "SIMPLE  =                    T",
        "BITPIX  =                  -32",
        "NAXIS   =                    3",
        "NAXIS1  =                    8",
        "NAXIS2  =                    8",
        "NAXIS3  =                    3",
        "EXTEND  =                    T",
        "BANDS   = 'grz     '",
        "BAND0   = 'g       '",
        "BAND1   = 'r       '",
        "BAND2   = 'z       '",
        "CTYPE1  = 'RA---TAN'",
        "CTYPE2  = 'DEC--TAN'",
        "CRVAL1  =                150.0",
        "CRVAL2  =                  2.0",
        "CRPIX1  =                  4.5",
        "CRPIX2  =                  4.5",
        "CD1_1   =   -7.2777777778E-05",
        "CD2_2   =    7.2777777778E-05",
        "BUNIT   = 'nanomaggy'",
        "END",
    ]);
    let image: Vec<u8> = (0..192).flat_map(|i| (i as f32 * 0.01).to_be_bytes()).collect();
    bytes.extend(image);
    bytes.resize(2 * 2880, 0);
    bytes.extend(header(&[
        "XTENSION= 'IMAGE   '",
        "BITPIX  =                   32",
        "NAXIS   =                    3",
        "NAXIS1  =                    8",
        "NAXIS2  =                    8",
        "NAXIS3  =                    3",
        "PCOUNT  =                    0",
        "GCOUNT  =                    1",
        "EXTNAME = 'MASK    '",
        "MP_BAD  =                    0",
        "MP_CR   =                    3",
        "MP_DETECTED=                 5",
        "MP_STREAK=                  30",
        "END",
    ]));
    let mask: Vec<u8> = (0..192i32).flat_map(|i| [0i32, 32, 8, 1 << 30][i as usize % 4].to_be_bytes()).collect();
    bytes.extend(mask);
    bytes.resize(4 * 2880, 0);
    bytes
}

fn parquet(scratch: &Path, bytes: &[u8]) -> Result<(), String> {
    let path = write_scratch(scratch, "input.parquet", bytes);
    let paths = [path.clone()];
    // The ways the fixtures are read: by default, a named tensor column, list columns of a given shape.
    let tensor = InputOptions { image_column: Some("tensor".into()), ..Default::default() };
    let lists = InputOptions { shape: Some([16, 16]), ..Default::default() };
    let stage = [drain(&paths, &InputOptions::default()), drain(&paths, &tensor), drain(&paths, &lists)];
    let training = lensmae::data::images::read_labelled_images(&path, "image").map(|_| ()).map_err(|e| e.to_string());
    let predictions = lensmae::data::predictions::read_predictions(&path).map(|_| ()).map_err(|e| e.to_string());
    stage.into_iter().chain([training, predictions]).reduce(|a, b| a.or(b)).expect("five ways")
}

fn arrow_ipc(scratch: &Path, bytes: &[u8]) -> Result<(), String> {
    let path = write_scratch(scratch, "input.arrow", bytes);
    let paths = [path.clone()];
    let lists = InputOptions { image_column: Some("stamp".into()), shape: Some([16, 16]), ..Default::default() };
    let stage = [drain(&paths, &InputOptions::default()), drain(&paths, &lists)];
    let training = lensmae::data::images::read_labelled_images(&path, "image").map(|_| ()).map_err(|e| e.to_string());
    let predictions = lensmae::data::predictions::read_predictions(&path).map(|_| ()).map_err(|e| e.to_string());
    stage.into_iter().chain([training, predictions]).reduce(|a, b| a.or(b)).expect("four ways")
}

fn npy(scratch: &Path, bytes: &[u8]) -> Result<(), String> {
    let path = write_scratch(scratch, "input.npy", bytes);
    lensmae::data::npy::read_npy_image(&path).map(|_| ()).map_err(|e| e.to_string())
}

fn pickle(_: &Path, bytes: &[u8]) -> Result<(), String> {
    let value = lensmae::data::pickle::unpickle(bytes)?;
    lensmae::data::pickle::arrays_and_floats(&value).map(|_| ())
}

fn checkpoint(scratch: &Path, bytes: &[u8]) -> Result<(), String> {
    let path = write_scratch(scratch, "model.safetensors", bytes);
    let text = |e: lensmae::Error| e.to_string();
    lensmae::model::checkpoint::read_checkpoint_meta(&path).map_err(text)?;
    lensmae::model::checkpoint::load_checkpoint(&path, &candle_core::Device::Cpu).map_err(text)?;
    let model = lensmae::infer::LoadedClassifier::load(&path, &candle_core::Device::Cpu).map_err(text)?;
    // A model that loads must answer (or refuse) a batch of its own size.
    let n = model.image_size() * model.image_size();
    model.predict(&vec![0.5; 2 * n], 2).map(|_| ()).map_err(text)
}

fn sim_config(_: &Path, bytes: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    let config = lensmae::sim::SimConfig::from_toml(text).map_err(|e| e.to_string())?;
    lensmae::sim::Simulator::new(config).map(|_| ()).map_err(|e| e.to_string())
}

fn pipeline(scratch: &Path, bytes: &[u8]) -> Result<(), String> {
    let path = write_scratch(scratch, "pipeline.toml", bytes);
    let p = lensmae::pipeline::Pipeline::load(&path, &[]).map_err(|e| e.to_string())?;
    for step in &p.steps {
        step.argv(p.dir()).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The checkpoint target's seeds: a tiny classifier of each network lensmae trains,
/// the ViT and the ResNet (batch-norm running statistics, another `model` layout).
pub fn tiny_checkpoints(dir: &Path) -> Vec<Vec<u8>> {
    let resnet = lensmae::model::resnet::ResNetConfig { image_size: 16, in_channels: 1, width: 2, blocks: vec![1, 1] };
    vec![
        tiny_checkpoint(dir, lensmae::model::MaeConfig::tiny_16().into(), "vit"),
        tiny_checkpoint(dir, lensmae::model::Network::ResNet(resnet), "resnet"),
    ]
}

/// A calibrated classifier checkpoint of a tiny `model` (one epoch on noise with
/// a bright left or right half), written under `dir`: with every part a real one
/// has (weights, metadata, preprocessing, training domain).
fn tiny_checkpoint(dir: &Path, model: lensmae::model::Network, name: &str) -> Vec<u8> {
    use lensmae::train::{finetune_classify, EncoderInit, FinetuneOptions, TrainOptions};
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let n = 240;
    let labels: Vec<usize> = (0..n).map(|i| i % 2).collect();
    let pixels: Vec<f32> = labels
        .iter()
        .flat_map(|&l| (0..256).map(move |p| (l, p)))
        .map(|(l, p)| rng.random::<f32>() + if (p % 16 < 8) == (l == 0) { 1.0 } else { 0.0 })
        .collect();
    let data = lensmae::data::images::LabelledImages {
        class_names: vec!["left".into(), "right".into()],
        size: 16,
        pixels,
        labels,
        ids: (0..n as i64).collect(),
        source: dir.join("memory"),
        joined_from: Vec::new(),
    };
    let out = dir.join(format!("tiny-{name}.safetensors"));
    let train = TrainOptions {
        epochs: 1,
        batch_size: 32,
        lr: 1e-3,
        min_lr: 1e-5,
        weight_decay: 0.05,
        warmup_epochs: 0.0,
        clip_grad: 1.0,
        seed: 1,
        augment: lensmae::data::augment::Augment::None,
        layer_decay: 1.0,
        scaling: lensmae::model::preprocess::Scaling::MinMax,
        val_fraction: 0.15,
        test_fraction: 0.15,
        out: out.clone(),
        resume: false,
        overwrite: true,
        stop_after: None,
        command: "fuzz seed".into(),
        progress: false,
        device: candle_core::Device::Cpu,
    };
    let opts = FinetuneOptions {
        train,
        model,
        init: EncoderInit::Scratch,
        freeze_encoder: false,
        pooling: lensmae::model::mae::Pooling::Cls,
        dropout: 0.0,
        standardise_pixels: true,
    };
    finetune_classify(&data, &opts).expect("the tiny classifier trains");
    read(&out)
}

/// Small stamp tables in the codecs the parquet crate inflates without a limit
/// of its own (gzip in version-2 pages, brotli, Hadoop LZ4), so that mutations
/// reach `data::parquet_bounds`' inflation checks.
fn compressed_tables() -> Vec<Vec<u8>> {
    use arrow_array::{ArrayRef, FixedSizeListArray, Float32Array, RecordBatch};
    use parquet::basic::Compression;
    use parquet::file::properties::{WriterProperties, WriterVersion};
    use std::sync::Arc;
    let field = lensmae::data::parquet::tensor_field("image", 16, 16);
    let arrow_schema::DataType::FixedSizeList(item, _) = field.data_type().clone() else { unreachable!() };
    let pixels = Float32Array::from_iter_values((0..6 * 256).map(|i| ((i % 97) as f32).sqrt()));
    let images = FixedSizeListArray::new(item, 256, Arc::new(pixels), None);
    let schema = Arc::new(arrow_schema::Schema::new(vec![field]));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(images) as ArrayRef]).expect("a stamp batch");
    let codecs = [
        (Compression::GZIP(Default::default()), WriterVersion::PARQUET_2_0),
        (Compression::BROTLI(Default::default()), WriterVersion::PARQUET_1_0),
        (Compression::LZ4, WriterVersion::PARQUET_1_0),
    ];
    codecs
        .into_iter()
        .map(|(codec, version)| {
            let props = WriterProperties::builder().set_compression(codec).set_writer_version(version).build();
            let mut bytes = Vec::new();
            let mut writer = parquet::arrow::ArrowWriter::try_new(&mut bytes, schema.clone(), Some(props))
                .expect("an in-memory writer");
            writer.write(&batch).expect("the stamps are written");
            writer.close().expect("the footer is written");
            bytes
        })
        .collect()
}

/// Image columns as other producers write them: polars' 2-D Array of uint16 and
/// pandas-style lists of float64 image rows, with a null pixel, a null image row
/// and a null image among them (since 2026-12-06 the reader takes both).
fn image_row_tables() -> Vec<Vec<u8>> {
    use arrow_array::builder::{Float64Builder, ListBuilder};
    use arrow_array::{Array, ArrayRef, FixedSizeListArray, RecordBatch, UInt16Array};
    use arrow_schema::{DataType, Field};
    use std::sync::Arc;
    let pixels = UInt16Array::from_iter((0..4 * 64).map(|i| (i != 70).then_some((i * 37 % 1000) as u16)));
    let rows = FixedSizeListArray::new(Arc::new(Field::new("item", DataType::UInt16, true)), 8, Arc::new(pixels), None);
    let polars =
        FixedSizeListArray::new(Arc::new(Field::new("item", rows.data_type().clone(), true)), 8, Arc::new(rows), None);
    let mut pandas = ListBuilder::new(ListBuilder::new(Float64Builder::new()));
    for image in 0..4 {
        if image == 2 {
            pandas.append(false);
            continue;
        }
        for row in 0..8 {
            if image == 3 && row == 5 {
                pandas.values().append(false);
                continue;
            }
            pandas.values().values().append_slice(&[row as f64 + 0.5; 8]);
            pandas.values().append(true);
        }
        pandas.append(true);
    }
    [Arc::new(polars) as ArrayRef, Arc::new(pandas.finish()) as ArrayRef]
        .into_iter()
        .map(|images| {
            let batch = RecordBatch::try_from_iter([("image", images)]).expect("an image batch");
            let mut bytes = Vec::new();
            let mut writer = parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), None).expect("a writer");
            writer.write(&batch).expect("the images are written");
            writer.close().expect("the footer is written");
            bytes
        })
        .collect()
}

/// Arrow IPC tables as pyarrow, polars and arrow-rs write them: a 16x16 tensor
/// column, the same images as plain lists, an id, a dictionary-encoded label and a
/// class probability; as a file (uncompressed, in batches of 3), a Feather file
/// (LZ4 frames, pyarrow's default) and a zstd stream.
fn ipc_tables() -> Vec<Vec<u8>> {
    use arrow_array::types::Int8Type;
    use arrow_array::{
        ArrayRef, DictionaryArray, FixedSizeListArray, Float32Array, Int64Array, ListArray, RecordBatch,
    };
    use arrow_ipc::writer::{FileWriter, IpcWriteOptions, StreamWriter};
    use arrow_ipc::CompressionType;
    use std::sync::Arc;
    let field = lensmae::data::parquet::tensor_field("image", 16, 16);
    let arrow_schema::DataType::FixedSizeList(item, _) = field.data_type().clone() else { unreachable!() };
    let pixels = Float32Array::from_iter_values((0..6 * 256).map(|i| ((i % 89) as f32).sqrt()));
    let images = FixedSizeListArray::new(item.clone(), 256, Arc::new(pixels.clone()), None);
    let offsets = arrow_buffer::OffsetBuffer::from_lengths([256; 6]);
    let stamps = ListArray::new(item, offsets, Arc::new(pixels), None);
    let labels: DictionaryArray<Int8Type> = ["cdm", "axion", "no_sub", "cdm", "cdm", "axion"].into_iter().collect();
    let batch = RecordBatch::try_from_iter([
        ("id", Arc::new(Int64Array::from_iter_values(0..6)) as ArrayRef),
        ("label", Arc::new(labels) as ArrayRef),
        ("p_cdm", Arc::new(Float32Array::from_iter_values((0..6).map(|i| i as f32 / 8.0))) as ArrayRef),
        ("stamp", Arc::new(stamps) as ArrayRef),
    ])
    .expect("an IPC batch");
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(images));
    let mut fields: Vec<arrow_schema::Field> = batch.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(field);
    let batch = RecordBatch::try_new(Arc::new(arrow_schema::Schema::new(fields)), columns).expect("with the tensor");
    let options = |codec| IpcWriteOptions::default().try_with_compression(codec).expect("a codec");
    let file = |codec, rows: usize| {
        let mut w = FileWriter::try_new_with_options(Vec::new(), &batch.schema(), options(codec)).expect("a writer");
        (0..6).step_by(rows).for_each(|at| w.write(&batch.slice(at, rows.min(6 - at))).expect("written"));
        w.finish().expect("finished");
        w.into_inner().expect("the bytes")
    };
    let mut stream =
        StreamWriter::try_new_with_options(Vec::new(), &batch.schema(), options(Some(CompressionType::ZSTD)))
            .expect("a writer");
    stream.write(&batch).expect("written");
    stream.finish().expect("finished");
    vec![file(None, 3), file(Some(CompressionType::LZ4_FRAME), 6), stream.into_inner().expect("the bytes")]
}

/// A table of per-row probabilities as `predict` writes them (id, p_<class>,
/// in_domain, ood_score), for `evaluate --predictions`.
fn prediction_table() -> Vec<u8> {
    use arrow_array::{ArrayRef, BooleanArray, Float32Array, Int64Array, RecordBatch};
    use std::sync::Arc;
    let p =
        |offset: f32| Arc::new(Float32Array::from_iter_values((0..8).map(|i| offset + i as f32 / 32.0))) as ArrayRef;
    let batch = RecordBatch::try_from_iter([
        ("id", Arc::new(Int64Array::from_iter_values(0..8)) as ArrayRef),
        ("p_axion", p(0.1)),
        ("p_cdm", p(0.2)),
        ("p_no_sub", p(0.3)),
        ("in_domain", Arc::new(BooleanArray::from(vec![true, false, true, true, false, true, true, true])) as ArrayRef),
        ("ood_score", p(1.0)),
    ])
    .expect("a predictions batch");
    let mut bytes = Vec::new();
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), None).expect("a writer");
    writer.write(&batch).expect("the rows are written");
    writer.close().expect("the footer is written");
    bytes
}

/// Predictions as `predict --task all --out x.fits` writes them: the table (with
/// `sr_wcs` header cards and statuses) and the super-resolved cutouts' cube.
fn fits_predictions(scratch: &Path) -> Vec<u8> {
    use arrow_array::{ArrayRef, FixedSizeListArray, Float32Array, Int64Array, RecordBatch, StringArray};
    use lensmae::data::fits::table_writer::FitsTableWriter;
    use std::sync::Arc;
    let parquet = prediction_table();
    let table = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(parquet))
        .expect("a table")
        .build()
        .expect("a reader")
        .next()
        .expect("a batch")
        .expect("rows");
    let stamp = lensmae::data::fits::cutouts::decode_fits_bytes(&sip_cutout()).expect("the seed decodes");
    let wcs = stamp.wcs.expect("a WCS").upsampled(4.0).header_cards().expect("cards");
    let item = Arc::new(arrow_schema::Field::new("item", arrow_schema::DataType::Float32, true));
    let pixels = Arc::new(Float32Array::from_iter_values((0..8 * 16).map(|v| v as f32)));
    let valid = Some(vec![true, true, false, true, true, true, true, true].into());
    let mut columns: Vec<(String, ArrayRef)> = vec![("row".into(), Arc::new(Int64Array::from_iter_values(0..8)))];
    columns.extend(table.schema().fields().iter().map(|f| f.name().clone()).zip(table.columns().iter().cloned()));
    columns.push(("status".into(), Arc::new(StringArray::from(vec!["ok"; 8]))));
    columns.push(("sr_image".into(), Arc::new(FixedSizeListArray::new(item, 16, pixels, valid))));
    columns.push(("sr_wcs".into(), Arc::new(StringArray::from(vec![Some(wcs.as_str()); 8]))));
    let batch = RecordBatch::try_from_iter(columns).expect("a predictions batch");
    let path = scratch.join("predictions-seed.fits");
    let layout = lensmae::data::predictions::PREDICTIONS_FITS;
    let mut writer = FitsTableWriter::create(&path, batch.schema(), layout, 8, true).expect("a writer");
    writer.write(&batch).expect("written");
    writer.finish().expect("finished");
    read(&path)
}

/// The payload of a pickled `.npy` object array (after its header).
fn pickle_of_npy(bytes: &[u8]) -> Vec<u8> {
    // Version 1 has a 2-byte header length, versions 2 and 3 a 4-byte one.
    if bytes[6] == 1 {
        let header = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        bytes[10 + header..].to_vec()
    } else {
        let header = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
        bytes[12 + header..].to_vec()
    }
}

/// Every reader with its seeds. `checkpoints` are small classifier checkpoints
/// (made by the caller: the fixtures hold none with lensmae metadata).
pub fn targets(root: &Path, checkpoints: Vec<Vec<u8>>) -> Vec<Target> {
    let f = |rel: &str| read(&root.join("fixtures").join(rel));
    let object_npy = [f("npy-tree/axion/axion_sim_1000.npy"), f("npy-tree/axion/axion_sim_1001.npy")];
    // (survey16_cube.fits: `lensmae simulate --format fits` of the survey recipe at
    // 16x16, seed 1, one lens a class: a cube and its PARAMS table.)
    let scratch = tempfile::tempdir().expect("a scratch folder");
    let fits = [
        f("stage/cube_int16.fits"),
        f("stage/mef_uint16.fits"),
        f("stage/survey16_cube.fits"),
        sip_cutout(),
        fits_predictions(scratch.path()),
        band_cube_with_mask(),
    ];
    let toml_of =
        |dir: &str, names: &[&str]| -> Vec<Vec<u8>> { names.iter().map(|n| read(&root.join(dir).join(n))).collect() };
    vec![
        Target { name: "fits-file", seeds: fits.to_vec(), text: false, run: fits_file },
        Target { name: "fits-stamp", seeds: vec![fits[1].clone(), fits[3].clone()], text: false, run: fits_stamp },
        Target {
            name: "parquet",
            seeds: [f("stage/stamps.parquet"), f("hats-cutouts/dataset/Norder=0/Dir=0/Npix=1.parquet")]
                .into_iter()
                .chain(compressed_tables())
                .chain(image_row_tables())
                .chain([prediction_table()])
                .collect(),
            text: false,
            run: parquet,
        },
        Target { name: "arrow-ipc", seeds: ipc_tables(), text: false, run: arrow_ipc },
        Target {
            name: "npy",
            seeds: vec![f("deeplense-samples/cdm.npy"), f("stage/expected_cube_int16_fits.npy"), object_npy[0].clone()],
            text: false,
            run: npy,
        },
        Target {
            name: "pickle",
            seeds: object_npy.iter().map(|b| pickle_of_npy(b)).collect(),
            text: false,
            run: pickle,
        },
        Target { name: "checkpoint", seeds: checkpoints, text: false, run: checkpoint },
        Target {
            name: "sim-config",
            seeds: toml_of("src/sim/presets", &["deeplense-model2.toml", "survey.toml"]),
            text: true,
            run: sim_config,
        },
        Target {
            name: "pipeline",
            seeds: toml_of("pipelines", &["quickstart.toml", "survey.toml"]),
            text: true,
            run: pipeline,
        },
    ]
}

/// (10^12: a count whose buffer no machine holds, yet no product of it with a small
/// size overflows: an allocation that aborts rather than a check that fails.)
const INTERESTING: [i64; 15] =
    [0, 1, -1, 2, 7, 8, 16, 255, 32767, -32768, 65536, 2147483647, 2147483648, 1_000_000_000_000, 9223372036854775807];
const INTERESTING_TEXT: [&str; 12] =
    ["0", "-1", "1e308", "-1e308", "nan", "inf", "4294967296", "2147483648", "1e-320", "\"\"", "[]", "{}"];

/// FITS header keywords whose values decide sizes and decoding.
const FITS_KEYS: [&[u8]; 10] = [
    b"NAXIS   ",
    b"NAXIS1  ",
    b"NAXIS2  ",
    b"NAXIS3  ",
    b"BITPIX  ",
    b"PCOUNT  ",
    b"GCOUNT  ",
    b"BSCALE  ",
    b"BZERO   ",
    b"BLANK   ",
];

/// One mutation of `input` (from `seeds` when splicing).
pub fn mutate(rng: &mut ChaCha8Rng, input: &[u8], seeds: &[Vec<u8>], text: bool) -> Vec<u8> {
    let mut out = input.to_vec();
    let rounds = 1 + rng.random_range(0..4);
    for _ in 0..rounds {
        if out.is_empty() {
            out.push(rng.random());
            continue;
        }
        let at = rng.random_range(0..out.len());
        match rng.random_range(0..10) {
            0 => out[at] ^= 1 << rng.random_range(0..8),
            1 => out[at] = rng.random(),
            2 => {
                // A little-endian or big-endian integer of an interesting value.
                let v = INTERESTING[rng.random_range(0..INTERESTING.len())];
                let width = [1usize, 2, 4, 8][rng.random_range(0..4)];
                let bytes = if rng.random() { v.to_le_bytes() } else { v.to_be_bytes() };
                let bytes = if bytes[0] == 0 && width < 8 { &bytes[8 - width..] } else { &bytes[..width] };
                for (i, b) in bytes.iter().enumerate() {
                    if at + i < out.len() {
                        out[at + i] = *b;
                    }
                }
            }
            3 => out.truncate(at),
            4 => {
                let end = (at + rng.random_range(1..64)).min(out.len());
                out.drain(at..end);
            }
            5 => {
                let end = (at + rng.random_range(1..256)).min(out.len());
                let copy = out[at..end].to_vec();
                let to = rng.random_range(0..out.len());
                out.splice(to..to, copy);
            }
            6 => {
                // Splice: the head of this input, the tail of another seed.
                let other = &seeds[rng.random_range(0..seeds.len())];
                if !other.is_empty() {
                    let from = rng.random_range(0..other.len());
                    out.truncate(at);
                    out.extend_from_slice(&other[from..]);
                }
            }
            7 if text => set_a_number(rng, &mut out),
            8 if safetensors_header(&out).is_some() => set_a_safetensors_number(rng, &mut out),
            7 | 8 => set_a_fits_value(rng, &mut out),
            _ => {
                let v: u8 = rng.random();
                let n = rng.random_range(1..16);
                out.splice(at..at, std::iter::repeat_n(v, n));
            }
        }
    }
    out
}

/// Replaces one number of a TOML text by an extreme value.
fn set_a_number(rng: &mut ChaCha8Rng, out: &mut Vec<u8>) {
    let starts: Vec<usize> = (0..out.len())
        .filter(|&i| out[i].is_ascii_digit() && (i == 0 || !out[i - 1].is_ascii_alphanumeric()))
        .collect();
    if starts.is_empty() {
        return;
    }
    let start = starts[rng.random_range(0..starts.len())];
    let end = (start..out.len()).find(|&i| !matches!(out[i], b'0'..=b'9' | b'.' | b'e' | b'-')).unwrap_or(out.len());
    let value = INTERESTING_TEXT[rng.random_range(0..INTERESTING_TEXT.len())];
    out.splice(start..end, value.bytes());
}

/// The JSON header of a safetensors file: after its 8-byte little-endian length.
fn safetensors_header(bytes: &[u8]) -> Option<std::ops::Range<usize>> {
    let length = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?) as usize;
    (length > 1 && bytes.get(8) == Some(&b'{') && 8 + length <= bytes.len()).then_some(8..8 + length)
}

/// Replaces one number of a safetensors header (a tensor's shape or offsets, a size
/// in lensmae's metadata) by an extreme value, the header's length kept true: the
/// file stays framed, and the number reaches whatever reads it.
fn set_a_safetensors_number(rng: &mut ChaCha8Rng, out: &mut Vec<u8>) {
    let Some(range) = safetensors_header(out) else { return };
    let mut header = out[range.clone()].to_vec();
    set_a_number(rng, &mut header);
    out.splice(0..range.end, (header.len() as u64).to_le_bytes().into_iter().chain(header));
}

/// Sets the value of one size-deciding FITS header card to an extreme number.
fn set_a_fits_value(rng: &mut ChaCha8Rng, out: &mut [u8]) {
    let cards: Vec<usize> =
        (0..out.len() / 80).map(|c| c * 80).filter(|&at| FITS_KEYS.iter().any(|k| out[at..].starts_with(k))).collect();
    if cards.is_empty() {
        return;
    }
    let at = cards[rng.random_range(0..cards.len())];
    let value = INTERESTING[rng.random_range(0..INTERESTING.len())];
    let field = format!("= {value:>20}");
    out[at + 8..at + 30].copy_from_slice(field.as_bytes());
}

/// How long one input may take before it counts as a finding.
pub const SLOW_INPUT: Duration = Duration::from_secs(10);

/// Silences the default panic message while fuzzing (panics are collected).
pub fn quiet_panics() {
    std::panic::set_hook(Box::new(|_| {}));
}

/// Tries `execs` mutated inputs on `target` (seeded: a campaign repeats).
pub fn fuzz(target: &Target, execs: u64, seed: u64, scratch: &Path) -> Report {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut report = Report::default();
    let current = scratch.join(format!("current-{}.bin", target.name));
    let count_contained = std::env::var("LENSMAE_FUZZ_CONTAINED").is_ok_and(|v| v == "1");
    // Seeds first, unchanged: they must read.
    for (i, s) in target.seeds.iter().enumerate() {
        if let Err(e) = (target.run)(scratch, s) {
            report.panics.push((format!("seed {i} is refused: {e}"), s.clone()));
        }
    }
    // Mutants that still read join the pool (one in eight, up to 256): mutations compound.
    let mut pool = target.seeds.clone();
    while report.execs < execs {
        let parent = &pool[rng.random_range(0..pool.len())];
        let input = mutate(&mut rng, parent, &target.seeds, target.text);
        std::fs::write(&current, &input).expect("scratch is writable");
        let started = Instant::now();
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| (target.run)(scratch, &input)));
        let took = started.elapsed();
        if took > report.slowest {
            report.slowest = took;
            report.slowest_input.clone_from(&input);
        }
        report.execs += 1;
        // An input that takes this long is a finding too (a hang, or work out of proportion).
        if took > SLOW_INPUT {
            report.panics.push((format!("took {:.1} s", took.as_secs_f64()), input.clone()));
        }
        match outcome {
            Ok(Ok(())) => {
                if pool.len() < 256 && rng.random_range(0..8) == 0 {
                    pool.push(input);
                }
            }
            // A decoder's panic that a reader contained is an error to the user, and a
            // finding when the campaign asks (`LENSMAE_FUZZ_CONTAINED=1`).
            Ok(Err(e)) if count_contained && e.contains("the decoder failed") => {
                report.panics.push((format!("contained: {e}"), input.clone()))
            }
            Ok(Err(_)) => report.refused += 1,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                report.panics.push((message, input));
            }
        }
    }
    report
}
