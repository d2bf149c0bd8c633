//! Arrow IPC files (Feather v2 `.arrow`/`.feather`, streams `.arrows`) as inputs
//! of `predict`, `evaluate` and training, and as `predict`'s and `merge`'s outputs:
//! the same table gives the same answers whichever of Parquet or Arrow IPC holds it.

use crate::stage::{classifier, predict_options, read, strings};
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_ipc::writer::{FileWriter, IpcWriteOptions, StreamWriter};
use arrow_ipc::CompressionType;
use lensmae::stage::chunks::merge;
use lensmae::stage::{open_input, predict, InputOptions};
use std::path::Path;
use std::sync::Arc;

const MODEL_II: &str = "catalog/deeplense-model2-12.parquet";

/// The Model II fixture (12 labelled lenses) written to `path` as Arrow IPC in
/// batches of `batch_rows`, its `label` column dictionary-encoded as pandas'
/// categoricals are.
fn write_ipc(path: &Path, stream: bool, compression: Option<CompressionType>, batch_rows: usize) {
    let batch = read(&crate::fixture(MODEL_II));
    // The file's metadata (its class names, pixel scale, recipe), which batches do not carry.
    let metadata = lensmae::data::table_schema(&crate::fixture(MODEL_II)).unwrap().metadata().clone();
    let label = batch.column_by_name("label").unwrap();
    let dictionary = arrow_cast::cast(
        label,
        &arrow_schema::DataType::Dictionary(
            Box::new(arrow_schema::DataType::Int8),
            Box::new(label.data_type().clone()),
        ),
    )
    .unwrap();
    let index = batch.schema().index_of("label").unwrap();
    let mut fields: Vec<arrow_schema::Field> = batch.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields[index] = fields[index].clone().with_data_type(dictionary.data_type().clone());
    let schema = Arc::new(arrow_schema::Schema::new_with_metadata(fields, metadata));
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    columns[index] = dictionary;
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let options = IpcWriteOptions::default().try_with_compression(compression).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let slices = (0..batch.num_rows()).step_by(batch_rows).map(|at| batch.slice(at, batch_rows.min(12 - at)));
    if stream {
        let mut w = StreamWriter::try_new_with_options(file, &schema, options).unwrap();
        slices.for_each(|b| w.write(&b).unwrap());
        w.finish().unwrap();
    } else {
        let mut w = FileWriter::try_new_with_options(file, &schema, options).unwrap();
        slices.for_each(|b| w.write(&b).unwrap());
        w.finish().unwrap();
    }
}

/// Every batch of an Arrow IPC file (either format) as one.
fn read_ipc(path: &Path) -> RecordBatch {
    let bytes = std::fs::read(path).unwrap();
    let batches: Vec<RecordBatch> = if bytes.starts_with(b"ARROW1") {
        arrow_ipc::reader::FileReader::try_new(std::io::Cursor::new(bytes), None).unwrap().map(Result::unwrap).collect()
    } else {
        arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    arrow_select::concat::concat_batches(&batches[0].schema(), &batches).unwrap()
}

fn assert_same_answers(a: &RecordBatch, b: &RecordBatch, what: &str) {
    for column in ["row", "id", "p_axion", "p_cdm", "p_no_sub", "ood_score"] {
        assert_eq!(a.column_by_name(column), b.column_by_name(column), "{what}: {column}");
    }
    assert_eq!(strings(a, "status"), strings(b, "status"), "{what}");
}

#[test]
fn predict_reads_arrow_files_and_streams_as_it_reads_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let model = Path::new("bundled:classifier");
    let from_parquet = dir.path().join("from-parquet.parquet");
    predict(&predict_options(&[crate::fixture(MODEL_II)], classifier(model, 5), &from_parquet)).unwrap();
    let expected = read(&from_parquet);
    for (name, stream, compression, batch_rows) in [
        ("plain.arrow", false, None, 12),
        // pyarrow's default for Feather: LZ4 frames.
        ("lz4.feather", false, Some(CompressionType::LZ4_FRAME), 5),
        ("zstd.arrows", true, Some(CompressionType::ZSTD), 3),
        // An IPC file under another name is known by its first bytes.
        ("named-wrongly.parquet", false, None, 7),
    ] {
        let input = dir.path().join(name);
        write_ipc(&input, stream, compression, batch_rows);
        let reader = open_input(std::slice::from_ref(&input), &InputOptions::default()).unwrap();
        assert_eq!((reader.describe().format.as_str(), reader.describe().rows), ("arrow", 12), "{name}");
        let out = dir.path().join(format!("{name}.parquet"));
        predict(&predict_options(std::slice::from_ref(&input), classifier(model, 5), &out)).unwrap();
        assert_same_answers(&read(&out), &expected, name);
    }
    // Chunks across the batches' boundaries, each shard passing over the others'
    // rows (whole batches without decoding them), then joined.
    let input = dir.path().join("lz4.feather");
    let folder = dir.path().join("chunks");
    for shard in ["0/2", "1/2"] {
        let mut options = predict_options(std::slice::from_ref(&input), classifier(model, 5), &folder);
        options.shard = Some(shard.parse().unwrap());
        options.chunk_rows = 4;
        predict(&options).unwrap();
    }
    let merged = dir.path().join("merged.parquet");
    merge(&folder, &merged, false).unwrap();
    assert_same_answers(&read(&merged), &expected, "two shards of a Feather file");
}

#[test]
fn predictions_and_merges_are_written_as_arrow_files_and_streams() {
    let dir = tempfile::tempdir().unwrap();
    let model = Path::new("bundled:classifier");
    let input = [crate::fixture(MODEL_II)];
    let parquet = dir.path().join("pred.parquet");
    predict(&predict_options(&input, classifier(model, 5), &parquet)).unwrap();
    let expected = read(&parquet);
    for name in ["pred.arrow", "pred.feather", "pred.arrows"] {
        let out = dir.path().join(name);
        predict(&predict_options(&input, classifier(model, 5), &out)).unwrap();
        let written = read_ipc(&out);
        assert_same_answers(&written, &expected, name);
        assert_eq!(written.schema().fields(), expected.schema().fields(), "{name}: columns, units and descriptions");
        let recorded = lensmae::data::table_schema(&parquet).unwrap();
        for key in ["lensmae:model", "lensmae:model_sha256", "lensmae:schema_version", "lensmae:class_names"] {
            assert!(recorded.metadata().contains_key(key), "{key}");
            assert_eq!(written.schema().metadata().get(key), recorded.metadata().get(key), "{name}: {key}");
        }
        // inspect and evaluate --predictions read it back as a table of predictions.
        assert!(lensmae::data::predictions::is_prediction_table(&out), "{name}");
        // (The same but for when each was written.)
        let without_time = |mut table: lensmae::data::predictions::PredictionTable| {
            table.metadata.remove("lensmae:created");
            table
        };
        let table = without_time(lensmae::data::predictions::read_predictions(&out).unwrap());
        assert_eq!(table, without_time(lensmae::data::predictions::read_predictions(&parquet).unwrap()), "{name}");
    }
    // No temporary is left beside them, and an existing output is not replaced.
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.iter().all(|n| !n.to_string_lossy().starts_with('.')), "{left:?}");
    let mut again = predict_options(&input, classifier(model, 5), &dir.path().join("pred.arrow"));
    again.overwrite = false;
    let why = predict(&again).unwrap_err().to_string();
    assert!(why.contains("exists"), "{why}");
    // merge writes the format its output's name says.
    let folder = dir.path().join("chunks");
    predict(&predict_options(&input, classifier(model, 5), &folder)).unwrap();
    let merged = dir.path().join("merged.arrows");
    assert_eq!(merge(&folder, &merged, false).unwrap(), 12);
    assert_same_answers(&read_ipc(&merged), &expected, "merged.arrows");
}

#[test]
fn evaluation_and_training_read_labelled_arrow_files() {
    use lensmae::data::images::{read_float_columns, read_labelled_images};
    let dir = tempfile::tempdir().unwrap();
    let feather = dir.path().join("lenses.feather");
    write_ipc(&feather, false, Some(CompressionType::LZ4_FRAME), 5);
    let parquet = crate::fixture(MODEL_II);
    let (a, b) = (read_labelled_images(&feather, "image").unwrap(), read_labelled_images(&parquet, "image").unwrap());
    assert_eq!((&a.class_names, &a.labels, &a.ids, a.size), (&b.class_names, &b.labels, &b.ids, b.size));
    assert_eq!(a.pixels, b.pixels);
    assert_eq!(a.recorded_pixel_scale(), b.recorded_pixel_scale());
    assert!(a.recorded_pixel_scale().is_some(), "the schema's metadata travels");
    let names = ["lens_theta_e", "source_r_sersic", "vortex_total_mass"];
    assert_eq!(read_float_columns(&feather, &names).unwrap(), read_float_columns(&parquet, &names).unwrap());
    assert!(lensmae::data::images::is_table(&feather).unwrap());
}

#[test]
fn broken_arrow_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.arrow");
    write_ipc(&good, false, Some(CompressionType::ZSTD), 4);
    let bytes = std::fs::read(&good).unwrap();
    let predict_on = |name: &str, bytes: &[u8]| -> String {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let out = dir.path().join(format!("{name}.parquet"));
        let e = predict(&predict_options(&[path], classifier(Path::new("bundled:classifier"), 5), &out)).unwrap_err();
        let text = e.to_string();
        assert!(text.contains(name), "{text}");
        assert!(!out.exists(), "{name}: no output from a file that cannot be read");
        text
    };
    // Cut short: the file format's trailer is gone.
    let why = predict_on("cut.arrow", &bytes[..bytes.len() - 100]);
    assert!(why.contains("does not end with `ARROW1`"), "{why}");
    // A batch's declared body beyond the file: the bodyLength field of the first
    // record batch's metadata, found by its value, made enormous.
    let declared = find_body_length(&bytes);
    let mut huge = bytes.clone();
    huge[declared..declared + 8].copy_from_slice(&(1i64 << 40).to_le_bytes());
    let why = predict_on("huge.arrow", &huge);
    assert!(why.contains("declares a body of 1099511627776 bytes"), "{why}");
    // A compressed buffer declaring petabytes once inflated.
    let inflated = find_first_compressed_prefix(&bytes);
    let mut bomb = bytes.clone();
    bomb[inflated..inflated + 8].copy_from_slice(&(1i64 << 50).to_le_bytes());
    let why = predict_on("bomb.arrow", &bomb);
    assert!(why.contains("more than the 4 GiB read at once"), "{why}");
    // Or two gigabytes, which a batch may hold, in a buffer of a few hundred bytes:
    // refused before anything of that size is allocated.
    bomb[inflated..inflated + 8].copy_from_slice(&(1i64 << 31).to_le_bytes());
    let why = predict_on("small-bomb.arrow", &bomb);
    assert!(why.contains("declares 2147483648 bytes, it inflates to"), "{why}");
}

/// Where the first record batch's `bodyLength` is stored in its message: found by
/// its value, which the file's footer lists with the batch's block.
fn find_body_length(bytes: &[u8]) -> usize {
    // The file's footer lists each record batch's block: offset, metadata length, body length.
    let footer_len = i32::from_le_bytes(bytes[bytes.len() - 10..bytes.len() - 6].try_into().unwrap()) as usize;
    let footer = &bytes[bytes.len() - 10 - footer_len..bytes.len() - 10];
    let footer = arrow_ipc::root_as_footer(footer).unwrap();
    let block = footer.recordBatches().unwrap().get(0);
    let (offset, meta) = (block.offset() as usize, block.metaDataLength() as usize);
    let body = block.bodyLength().to_le_bytes();
    let at = bytes[offset..offset + meta].windows(8).position(|w| w == body).unwrap();
    offset + at
}

/// Where the first compressed buffer of the first record batch stores its
/// uncompressed length (its first 8 bytes).
fn find_first_compressed_prefix(bytes: &[u8]) -> usize {
    let footer_len = i32::from_le_bytes(bytes[bytes.len() - 10..bytes.len() - 6].try_into().unwrap()) as usize;
    let footer = arrow_ipc::root_as_footer(&bytes[bytes.len() - 10 - footer_len..bytes.len() - 10]).unwrap();
    let block = footer.recordBatches().unwrap().get(0);
    let (offset, meta) = (block.offset() as usize, block.metaDataLength() as usize);
    // The metadata's 8-byte prefix (continuation marker and length) is counted in metaDataLength.
    let message = arrow_ipc::root_as_message(&bytes[offset + 8..offset + meta]).unwrap();
    let batch = message.header_as_record_batch().unwrap();
    // The first buffer the writer compressed (one that did not shrink is stored as
    // it is, its prefix -1).
    let body = offset + meta;
    let prefix = |b: &arrow_ipc::Buffer| {
        let at = body + b.offset() as usize;
        i64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
    };
    let first = batch.buffers().unwrap().iter().find(|b| b.length() >= 8 && prefix(b) > 0).unwrap();
    body + first.offset() as usize
}

/// `predict --input - --out -` in a pipe: an Arrow IPC stream in on standard
/// input, the predictions out on standard output as a stream, the summary and
/// messages on standard error; the same answers as from the file.
#[test]
fn predict_reads_standard_input_and_writes_standard_output_in_a_pipe() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let stream = dir.path().join("in.arrows");
    write_ipc(&stream, true, Some(CompressionType::LZ4_FRAME), 5);
    let expected = dir.path().join("expected.parquet");
    predict(&predict_options(&[crate::fixture(MODEL_II)], classifier(Path::new("bundled:classifier"), 5), &expected))
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lensmae"))
        .args(["predict", "--input", "-", "--out", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&std::fs::read(&stream).unwrap()).unwrap();
    let done = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(done.status.success(), "{stderr}");
    assert!(stderr.contains("to standard output") && stderr.contains("\"rows\": 12"), "{stderr}");
    let batches: Vec<RecordBatch> = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(done.stdout), None)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let written = arrow_select::concat::concat_batches(&batches[0].schema(), &batches).unwrap();
    assert_same_answers(&written, &read(&expected), "a pipe");
    // Nothing piped in: said, not waited for.
    let empty = Command::new(env!("CARGO_BIN_EXE_lensmae"))
        .args(["predict", "--input", "-", "--out", "-"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(empty.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&empty.stderr).contains("standard input held nothing"));
    assert!(empty.stdout.is_empty());
    // A device or pipe by its path (`/dev/stdin`) is not sniffed, which would
    // consume its first bytes: refused, pointing at `-`.
    let why = open_input(&[std::path::PathBuf::from("/dev/null")], &InputOptions::default()).err().unwrap().to_string();
    assert!(why.contains("neither a file nor a folder") && why.contains("give `-`"), "{why}");
}

/// A run that fails part-way with its predictions on standard output: the
/// batches before the failure went out, and the stream ends broken, so the next
/// program in the pipe cannot take it for a complete table (Arrow readers take a
/// stream without its end marker as complete).
#[test]
fn a_run_failing_part_way_leaves_a_broken_stream_on_standard_output() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let batch = read(&crate::fixture(MODEL_II));
    let images = batch.column_by_name("image").unwrap().as_fixed_size_list();
    let mut pixels = images.values().as_primitive::<arrow_array::types::Float32Type>().values().to_vec();
    pixels[8 * 4096 + 100] = f32::NAN; // row 8, in the second batch of 5
    let (field, size) = match images.data_type() {
        arrow_schema::DataType::FixedSizeList(field, size) => (field.clone(), *size),
        _ => unreachable!(),
    };
    let images =
        arrow_array::FixedSizeListArray::new(field, size, Arc::new(arrow_array::Float32Array::from(pixels)), None);
    let image_field = batch.schema().field_with_name("image").unwrap().clone();
    let schema =
        Arc::new(arrow_schema::Schema::new(vec![batch.schema().field_with_name("id").unwrap().clone(), image_field]));
    let input =
        RecordBatch::try_new(schema.clone(), vec![batch.column_by_name("id").unwrap().clone(), Arc::new(images)])
            .unwrap();
    let mut bytes = Vec::new();
    let mut w = StreamWriter::try_new(&mut bytes, &schema).unwrap();
    w.write(&input).unwrap();
    w.finish().unwrap();
    drop(w);
    let mut child = Command::new(env!("CARGO_BIN_EXE_lensmae"))
        .args(["predict", "--input", "-", "--out", "-", "--batch-size", "5", "--pixel-scale", "model"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    let done = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("non-finite pixels"), "{stderr}");
    let mut reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(done.stdout), None).unwrap();
    assert_eq!(reader.next().unwrap().unwrap().num_rows(), 5, "the batch before the failure");
    assert!(reader.next().is_some_and(|b| b.is_err()), "the stream is reported broken, not complete");
}

/// `simulate --format arrow`: the Parquet dataset's rows, columns and metadata in
/// an Arrow IPC file, which training and `evaluate` read as they read the Parquet one.
#[test]
fn simulate_writes_arrow_datasets_as_it_writes_parquet() {
    use lensmae::data::images::{read_float_columns, read_labelled_images};
    use lensmae::data::simulate::{simulate_dataset, SimulateOptions};
    use lensmae::data::Format;
    let dir = tempfile::tempdir().unwrap();
    let sim = lensmae::sim::Simulator::new(lensmae::sim::presets::preset("survey").unwrap()).unwrap();
    let written: Vec<_> = [Format::Parquet, Format::Arrow]
        .into_iter()
        .map(|format| {
            let mut options = SimulateOptions::new(2, 5, dir.path());
            options.format = format;
            options.chunk_size = 4; // two batches
            simulate_dataset(&sim, &options).unwrap()
        })
        .collect();
    let (parquet, arrow) = (&written[0].path, &written[1].path);
    assert_eq!(arrow.file_name().unwrap(), "dataset.arrow");
    assert_eq!((written[1].rows, read_ipc(arrow).num_rows()), (6, 6));
    let (a, b) = (read_labelled_images(arrow, "image").unwrap(), read_labelled_images(parquet, "image").unwrap());
    assert_eq!((&a.class_names, &a.labels, &a.ids, &a.pixels), (&b.class_names, &b.labels, &b.ids, &b.pixels));
    assert_eq!(a.recorded_pixel_scale(), b.recorded_pixel_scale());
    let names = ["sub_snr", "lens_theta_e", "source_magnitude", "psf_fwhm", "exposure_time"];
    assert_eq!(read_float_columns(arrow, &names).unwrap(), read_float_columns(parquet, &names).unwrap());
    let (schema_a, schema_b) =
        (lensmae::data::table_schema(arrow).unwrap(), lensmae::data::table_schema(parquet).unwrap());
    assert_eq!(schema_a.fields(), schema_b.fields());
    for key in ["lensmae:config", "lensmae:class_names", "lensmae:seed", "lensmae:pixel_scale"] {
        assert_eq!(schema_a.metadata().get(key), schema_b.metadata().get(key), "{key}");
    }
}

/// A carried column Parquet cannot store (a union, which an Arrow IPC file or an
/// in-memory table may hold): the parquet crate panicked (`not implemented: See
/// ARROW-8817`); refused before any work, naming it, and an Arrow output carries it.
#[test]
fn a_union_column_is_carried_into_arrow_and_refused_for_parquet_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let batch = read(&crate::fixture(MODEL_II));
    let type_ids = arrow_buffer::ScalarBuffer::from([0i8, 1].repeat(6));
    let fields = arrow_schema::UnionFields::try_new(
        [0, 1],
        [
            arrow_schema::Field::new("n", arrow_schema::DataType::Int64, false),
            arrow_schema::Field::new("s", arrow_schema::DataType::Utf8, false),
        ],
    )
    .unwrap();
    let children: Vec<ArrayRef> = vec![
        Arc::new(arrow_array::Int64Array::from_iter_values(0..12)),
        Arc::new(arrow_array::StringArray::from_iter_values((0..12).map(|i| format!("s{i}")))),
    ];
    let union = arrow_array::UnionArray::try_new(fields, type_ids, None, children).unwrap();
    let input = RecordBatch::try_from_iter([
        ("id", batch.column_by_name("id").unwrap().clone()),
        ("image", batch.column_by_name("image").unwrap().clone()),
        ("either", Arc::new(union) as ArrayRef),
    ])
    .unwrap();
    let path = dir.path().join("union.arrow");
    let mut w = FileWriter::try_new(std::fs::File::create(&path).unwrap(), &input.schema()).unwrap();
    w.write(&input).unwrap();
    w.finish().unwrap();
    let with_union = |out: &str| {
        let mut options = predict_options(
            std::slice::from_ref(&path),
            classifier(Path::new("bundled:classifier"), 5),
            &dir.path().join(out),
        );
        options.input.keep = vec!["either".into()];
        options.predictor.pixel_scale = lensmae::stage::geometry::PixelScale::Model;
        predict(&options)
    };
    let why = with_union("pred.parquet").unwrap_err().to_string();
    assert!(why.contains("column `either` holds a union") && why.contains("write an Arrow IPC file"), "{why}");
    with_union("pred.arrow").unwrap();
    assert_eq!(read_ipc(&dir.path().join("pred.arrow")).column_by_name("either").unwrap().len(), 12);
}
