//! Dataset writers: schemas, round trips through the readers of each format,
//! determinism, atomic output.

use crate::fixture;
use arrow_array::{Array, FixedSizeListArray, Float32Array, Int8Array, StringArray};
use lensmae::data::npy::read_npy;
use lensmae::data::parquet::dataset_schema;
use lensmae::data::schema::schema_to_json;
use lensmae::data::simulate::{simulate_dataset, SimulateOptions};
use lensmae::data::{DatasetInfo, Format, Task};
use lensmae::sim::presets::preset;
use lensmae::sim::Simulator;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::path::Path;

fn simulator(name: &str) -> Simulator {
    Simulator::new(preset(name).unwrap()).unwrap()
}

fn read_parquet(path: &Path) -> Vec<arrow_array::RecordBatch> {
    let file = std::fs::File::open(path).unwrap();
    ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap().map(|b| b.unwrap()).collect()
}

fn parquet_metadata(path: &Path) -> std::collections::HashMap<String, String> {
    let file = std::fs::File::open(path).unwrap();
    ParquetRecordBatchReaderBuilder::try_new(file).unwrap().schema().metadata().clone().into_iter().collect()
}

fn info(task: Task) -> DatasetInfo {
    let sim = simulator("deeplense-model2");
    let opts = SimulateOptions { task, ..SimulateOptions::new(1, 0, "unused") };
    DatasetInfo {
        class_names: sim.class_names().to_vec(),
        task,
        image_size: 64,
        metadata: lensmae::data::simulate::dataset_metadata(&sim, &opts),
    }
}

#[test]
fn written_schemas_match_the_committed_ones() {
    for (task, file) in
        [(Task::Classify, "dataset-classify.json"), (Task::Superres { factor: 4 }, "dataset-superres.json")]
    {
        check_committed_schema(schema_to_json(&dataset_schema(&info(task))), file);
    }
    // `lensmae predict --task all` on a simulated dataset (carried `id`).
    let classes = ["axion", "cdm", "no_sub"].map(String::from);
    let id = arrow_schema::Field::new("id", arrow_schema::DataType::Int64, false);
    let predictions =
        lensmae::stage::output::predictions_schema(&[id], &classes, false, Some([64, 64]), Default::default());
    check_committed_schema(schema_to_json(&predictions), "predictions.json");
    // A classifier of smooth-lens residuals (`bundled:survey-residual-classifier`) on
    // the same: the observation columns it read carried, the fit's columns added.
    let float = |name: &str| arrow_schema::Field::new(name, arrow_schema::DataType::Float64, true);
    let id = arrow_schema::Field::new("id", arrow_schema::DataType::Int64, false);
    let carried = [id, float("psf_fwhm"), float("exposure_time")];
    let predictions = lensmae::stage::output::predictions_schema(&carried, &classes, true, None, Default::default());
    check_committed_schema(schema_to_json(&predictions), "predictions-residuals.json");
}

fn check_committed_schema(written: serde_json::Value, file: &str) {
    {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas").join(file);
        if std::env::var_os("LENSMAE_BLESS").is_some() {
            std::fs::write(&path, serde_json::to_string_pretty(&written).unwrap() + "\n").unwrap();
        }
        let committed: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(written, committed, "{file} differs from the writer's schema (LENSMAE_BLESS=1 rewrites it)");
    }
}

#[test]
fn parquet_round_trip_keeps_images_labels_and_tensor_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let sim = simulator("deeplense-model2");
    let summary = simulate_dataset(&sim, &SimulateOptions::new(4, 7, dir.path())).unwrap();
    assert_eq!(summary.rows, 12);
    let batches = read_parquet(&summary.path);
    let schema = batches[0].schema();
    let field = schema.field_with_name("image").unwrap();
    // What pyarrow needs to see a tensor column: the extension metadata without
    // `dim_names: null`, and a nullable child called `item`.
    assert_eq!(field.metadata()["ARROW:extension:name"], "arrow.fixed_shape_tensor");
    assert_eq!(field.metadata()["ARROW:extension:metadata"], r#"{"shape":[64,64]}"#);
    match field.data_type() {
        arrow_schema::DataType::FixedSizeList(item, 4096) => assert!(item.is_nullable() && item.name() == "item"),
        other => panic!("image column is {other:?}"),
    }
    let meta = parquet_metadata(&summary.path);
    assert_eq!(meta["lensmae:seed"], "7");
    assert_eq!(meta["lensmae:class_names"], r#"["axion","cdm","no_sub"]"#);
    assert!(meta["lensmae:config"].contains("deeplense-model2"));
    let b = &batches[0];
    let labels = b.column_by_name("label").unwrap().as_any().downcast_ref::<StringArray>().unwrap();
    let idx = b.column_by_name("label_idx").unwrap().as_any().downcast_ref::<Int8Array>().unwrap();
    assert_eq!(labels.value(0), "axion");
    assert_eq!(labels.value(1), "cdm");
    assert_eq!(labels.value(2), "no_sub");
    assert_eq!((idx.value(0), idx.value(2)), (0, 2));
    let images = b.column_by_name("image").unwrap().as_any().downcast_ref::<FixedSizeListArray>().unwrap();
    let row5 = images.value(5);
    let pixels = row5.as_any().downcast_ref::<Float32Array>().unwrap();
    let expected = sim.simulate(2, 7, 5).image;
    for (a, b) in pixels.values().iter().zip(&expected.pixels) {
        assert_eq!(*a, *b as f32);
    }
    // Nullable parameters are null exactly where they do not apply.
    let axion_mass = b.column_by_name("axion_mass").unwrap();
    assert!(axion_mass.is_valid(0) && axion_mass.is_null(1) && axion_mass.is_null(2));
    assert!(dir.path().join("config.toml").exists());
}

#[test]
fn same_seed_same_bytes_whatever_the_thread_count() {
    let sim = simulator("survey");
    let mut outputs = Vec::new();
    for threads in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = SimulateOptions::new(5, 11, dir.path());
        opts.chunk_size = 4;
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let summary = pool.install(|| simulate_dataset(&sim, &opts)).unwrap();
        outputs.push(std::fs::read(summary.path).unwrap());
    }
    assert_eq!(outputs[0], outputs[1]);
    let dir = tempfile::tempdir().unwrap();
    let other = simulate_dataset(&sim, &SimulateOptions::new(5, 12, dir.path())).unwrap();
    assert_ne!(std::fs::read(other.path).unwrap(), outputs[0]);
}

#[test]
fn superres_pairs_are_area_averages() {
    let dir = tempfile::tempdir().unwrap();
    let sim = simulator("deeplense-model2");
    let mut opts = SimulateOptions::new(2, 3, dir.path());
    opts.task = Task::Superres { factor: 4 };
    opts.classes = Some(vec!["no_sub".into()]);
    let summary = simulate_dataset(&sim, &opts).unwrap();
    let b = &read_parquet(&summary.path)[0];
    assert_eq!(b.num_rows(), 2);
    let get = |name: &str| {
        let col = b.column_by_name(name).unwrap().as_any().downcast_ref::<FixedSizeListArray>().unwrap();
        col.value(1).as_any().downcast_ref::<Float32Array>().unwrap().values().to_vec()
    };
    let (lr, hr) = (get("lr"), get("hr"));
    assert_eq!((lr.len(), hr.len()), (256, 4096));
    let mut block = 0.0f64;
    for r in 0..4 {
        for c in 0..4 {
            block += hr[(4 + r) * 64 + 8 + c] as f64;
        }
    }
    assert!((lr[16 + 2] as f64 - block / 16.0).abs() < 1e-5);
    let labels = b.column_by_name("label").unwrap().as_any().downcast_ref::<StringArray>().unwrap();
    assert!(labels.iter().all(|l| l == Some("no_sub")));
    opts.task = Task::Superres { factor: 5 };
    opts.overwrite = true;
    let err = simulate_dataset(&sim, &opts).unwrap_err().to_string();
    assert!(err.contains("factor"), "{err}");
}

#[test]
fn fits_output_holds_a_cube_and_a_parameter_table() {
    let dir = tempfile::tempdir().unwrap();
    let sim = simulator("deeplense-model2");
    let mut opts = SimulateOptions::new(2, 5, dir.path());
    opts.format = Format::Fits;
    opts.chunk_size = 4; // two batches
    let summary = simulate_dataset(&sim, &opts).unwrap();
    let mut f = fitsio::FitsFile::open(&summary.path).unwrap();
    let primary = f.primary_hdu().unwrap();
    match &primary.info {
        fitsio::hdu::HduInfo::ImageInfo { shape, .. } => assert_eq!(shape, &vec![6, 64, 64]),
        other => panic!("{other:?}"),
    }
    let cube: Vec<f32> = primary.read_image(&mut f).unwrap();
    let expected = sim.simulate(1, 5, 4).image;
    assert_eq!(cube[4 * 4096 + 1000], expected.pixels[1000] as f32);
    let seed: String = primary.read_key(&mut f, "SEED").unwrap();
    assert_eq!(seed, "5");
    let table = f.hdu("PARAMS").unwrap();
    let ids: Vec<i64> = table.read_col(&mut f, "id").unwrap();
    assert_eq!(ids, vec![0, 1, 2, 3, 4, 5]);
    let labels: Vec<String> = table.read_col(&mut f, "label").unwrap();
    assert_eq!(labels[4], "cdm");
    let n_sub: Vec<i32> = table.read_col(&mut f, "n_subhalos").unwrap();
    assert_eq!(n_sub, vec![100, 25, 0, 100, 25, 0]);
    let axion: Vec<f64> = table.read_col(&mut f, "axion_mass").unwrap();
    assert!(axion[0] > 1e-25 && axion[1].is_nan());
}

#[test]
fn npy_tree_follows_the_deeplense_release_layout() {
    let dir = tempfile::tempdir().unwrap();
    let sim = simulator("deeplense-model2");
    let mut opts = SimulateOptions::new(2, 9, dir.path());
    opts.format = Format::Npy;
    let summary = simulate_dataset(&sim, &opts).unwrap();
    let root = dir.path().join("dataset");
    assert_eq!(summary.path, root);
    for class in ["axion", "cdm", "no_sub"] {
        assert_eq!(std::fs::read_dir(root.join(class)).unwrap().count(), 2, "{class}");
    }
    let a = read_npy(&root.join("cdm/cdm_sim_4.npy")).unwrap();
    assert_eq!(a.shape, vec![64, 64]);
    assert_eq!(a.data, sim.simulate(1, 9, 4).image.pixels);
    let csv = std::fs::read_to_string(root.join("params.csv")).unwrap();
    assert_eq!(csv.lines().count(), 7);
    assert!(csv.lines().nth(5).unwrap().starts_with("4,cdm,1,cdm/cdm_sim_4.npy,25,"));
    // Leftover temporaries would show up as hidden entries.
    let names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
}

#[test]
fn an_existing_dataset_is_never_clobbered_without_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let sim = simulator("deeplense-model2");
    let summary = simulate_dataset(&sim, &SimulateOptions::new(1, 1, dir.path())).unwrap();
    let before = std::fs::read(&summary.path).unwrap();
    let err = simulate_dataset(&sim, &SimulateOptions::new(2, 2, dir.path())).unwrap_err().to_string();
    assert!(err.contains("dataset.parquet") && err.contains("--overwrite"), "{err}");
    assert_eq!(std::fs::read(&summary.path).unwrap(), before);
    let mut opts = SimulateOptions::new(2, 2, dir.path());
    opts.overwrite = true;
    assert_eq!(simulate_dataset(&sim, &opts).unwrap().rows, 6);
}

#[test]
fn the_real_released_samples_read_as_64x64_float_images() {
    for name in ["axion", "cdm", "nosub"] {
        let a = read_npy(&fixture(&format!("deeplense-samples/{name}.npy"))).unwrap();
        assert_eq!(a.shape, vec![64, 64]);
        let peak = a.data.iter().copied().fold(f64::MIN, f64::max);
        assert!((peak - 1.0).abs() < 1e-9);
    }
}

#[test]
fn a_simulated_dataset_reads_back_as_labelled_images() {
    let dir = tempfile::tempdir().unwrap();
    let sim = simulator("deeplense-model2");
    let summary = simulate_dataset(&sim, &SimulateOptions::new(3, 2, dir.path())).unwrap();
    let set = lensmae::data::images::read_parquet_images(&summary.path, "image").unwrap();
    assert_eq!(set.len(), 9);
    assert_eq!(set.size, 64);
    assert_eq!(set.class_names, vec!["axion", "cdm", "no_sub"]);
    assert_eq!(set.labels[..3], [0, 1, 2]);
    assert_eq!(set.image(4)[100], sim.simulate(1, 2, 4).image.pixels[100] as f32);
    // Labels alone (to score a table of predictions): the same rows, no pixels.
    let labels = lensmae::data::images::read_parquet_labels(&summary.path).unwrap();
    assert_eq!(
        (labels.labels.clone(), labels.ids.clone(), labels.class_names.clone()),
        (set.labels, set.ids, set.class_names)
    );
    assert!(labels.pixels.is_empty() && labels.size == 0);
    assert!(lensmae::data::images::read_parquet_images(&summary.path, "pixels")
        .unwrap_err()
        .to_string()
        .contains("pixels"));
}

#[test]
fn bad_image_tables_are_refused_naming_the_row() {
    use arrow_array::{FixedSizeListArray, Float32Array, Int64Array, RecordBatch, StringArray};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, pixels: Vec<f32>| {
        let item = Arc::new(arrow_schema::Field::new("item", arrow_schema::DataType::Float32, true));
        let images = FixedSizeListArray::try_new(item, 4, Arc::new(Float32Array::from(pixels)), None).unwrap();
        let batch = RecordBatch::try_from_iter(vec![
            ("id", Arc::new(Int64Array::from(vec![10, 11])) as arrow_array::ArrayRef),
            ("label", Arc::new(StringArray::from(vec!["cdm", "no_sub"])) as arrow_array::ArrayRef),
            ("image", Arc::new(images) as arrow_array::ArrayRef),
        ])
        .unwrap();
        write_parquet(&dir.path().join(name), &batch)
    };
    let good = write("good.parquet", vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]);
    let set = lensmae::data::images::read_parquet_images(&good, "image").unwrap();
    assert_eq!(
        (set.size, set.labels.clone(), set.class_names.clone()),
        (2, vec![0, 1], vec!["cdm".to_string(), "no_sub".to_string()])
    );
    let nan = write("nan.parquet", vec![0.0, 1.0, 2.0, 3.0, 4.0, f32::NAN, 6.0, 7.0]);
    let e = lensmae::data::images::read_parquet_images(&nan, "image").unwrap_err().to_string();
    assert!(e.contains("nan.parquet") && e.contains("row id 11") && e.contains("non-finite"), "{e}");
    let e = lensmae::data::images::read_parquet_images(&good, "label").unwrap_err().to_string();
    assert!(e.contains("`label`") && e.contains("lists of numbers"), "{e}");
}

#[test]
fn a_simulated_fits_dataset_reads_back_as_the_same_labelled_images() {
    let dir = tempfile::tempdir().unwrap();
    let sim = simulator("deeplense-model2");
    let mut opts = SimulateOptions::new(2, 8, dir.path());
    let parquet = simulate_dataset(&sim, &opts).unwrap();
    opts.format = Format::Fits;
    let fits = simulate_dataset(&sim, &opts).unwrap();
    let a = lensmae::data::images::read_labelled_images(&parquet.path, "image").unwrap();
    let b = lensmae::data::images::read_labelled_images(&fits.path, "image").unwrap();
    assert_eq!((a.size, &a.labels, &a.class_names, &a.ids), (b.size, &b.labels, &b.class_names, &b.ids));
    assert_eq!(a.pixels, b.pixels);
}

#[test]
fn fits_training_sets_are_read_as_the_stage_reads_cutouts() {
    // A 16-bit cube with BSCALE/BZERO, its labels in a table; plane 1 holds a BLANK
    // pixel: the training reader read it as the number -32.668 (cfitsio checks BLANK
    // only when asked), the stage's reader (which training now shares) as missing,
    // so training refuses the image.
    use fitsio::tables::{ColumnDataType, ColumnDescription};
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, blank_at: Option<usize>| {
        let path = dir.path().join(name);
        let raw: Vec<i16> =
            (0..3 * 8 * 8).map(|i| if Some(i) == blank_at { -32768 } else { (i % 50) as i16 - 20 }).collect();
        let mut f = crate::scaled_i16_cube(&path, &raw, &[3, 8, 8]);
        let label = ColumnDescription::new("label_idx").with_type(ColumnDataType::Short).create().unwrap();
        let table = f.create_table("LABELS", &[label]).unwrap();
        table.write_col(&mut f, "label_idx", &[0i16, 1, 1]).unwrap();
        path
    };
    let clean = lensmae::data::images::read_labelled_images(&write("clean.fits", None), "image").unwrap();
    assert_eq!((clean.size, clean.labels.clone(), clean.ids.clone()), (8, vec![0, 1, 1], vec![0, 1, 2]));
    assert!((clean.pixels[1] - (0.1 + 0.001 * -19.0)).abs() < 1e-6, "{}", clean.pixels[1]);
    let blank = write("blank.fits", Some(64 + 5));
    let e = lensmae::data::images::read_labelled_images(&blank, "image").unwrap_err().to_string();
    assert!(e.contains("blank.fits") && e.contains("image 1: non-finite pixel at index 5"), "{e}");
}

#[test]
fn parquet_training_sets_are_read_as_the_stage_reads_cutouts() {
    // Alert-style FITS stamps in bytes were a layout the stage read and training
    // refused ("images must be lists of float32/float64"): training now reads
    // Parquet through the stage's reader, with the same per-row problems.
    use arrow_array::{ArrayRef, BinaryArray, Int64Array};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let images: Vec<Vec<f32>> = (0..3).map(|k| (0..64).map(|i| (i * (k + 1)) as f32 * 0.25 - 3.0).collect()).collect();
    let stamp = |k: usize| {
        let path = dir.path().join(format!("stamp{k}.fits"));
        let desc =
            fitsio::images::ImageDescription { data_type: fitsio::images::ImageType::Float, dimensions: &[8, 8] };
        let mut f = fitsio::FitsFile::create(&path).with_custom_primary(&desc).open().unwrap();
        f.primary_hdu().unwrap().write_image(&mut f, &images[k]).unwrap();
        drop(f);
        std::fs::read(&path).unwrap()
    };
    let stamps: Vec<Vec<u8>> = (0..3).map(stamp).collect();
    let write = |name: &str, stamps: Vec<&[u8]>| {
        let item = Arc::new(arrow_schema::Field::new("item", arrow_schema::DataType::Float32, true));
        let flat = Float32Array::from(images.concat());
        let batch = arrow_array::RecordBatch::try_from_iter(vec![
            ("id", Arc::new(Int64Array::from(vec![5, 6, 7])) as ArrayRef),
            ("label", Arc::new(StringArray::from(vec!["cdm", "no_sub", "cdm"])) as ArrayRef),
            ("image", Arc::new(FixedSizeListArray::try_new(item, 64, Arc::new(flat), None).unwrap()) as ArrayRef),
            ("stamp", Arc::new(BinaryArray::from(stamps)) as ArrayRef),
        ])
        .unwrap();
        write_parquet(&dir.path().join(name), &batch)
    };
    let good = write("stamps.parquet", stamps.iter().map(|s| s.as_slice()).collect());
    let floats = lensmae::data::images::read_parquet_images(&good, "image").unwrap();
    let from_stamps = lensmae::data::images::read_parquet_images(&good, "stamp").unwrap();
    assert_eq!((floats.size, &floats.labels, &floats.ids), (8, &vec![0, 1, 0], &vec![5, 6, 7]));
    assert_eq!((&from_stamps.labels, &from_stamps.ids, from_stamps.size), (&floats.labels, &floats.ids, 8));
    assert_eq!(from_stamps.pixels, floats.pixels);
    let broken = write("broken.parquet", vec![&stamps[0], b"not a FITS file", &stamps[2]]);
    let e = lensmae::data::images::read_parquet_images(&broken, "stamp").unwrap_err().to_string();
    assert!(e.contains("broken.parquet") && e.contains("row id 6") && e.contains("FITS stamp"), "{e}");
}

#[test]
fn a_deeplense_npy_tree_with_pickled_axion_files_reads_as_labelled_images() {
    let set = lensmae::data::images::read_labelled_images(&fixture("npy-tree"), "image").unwrap();
    assert_eq!(set.class_names, vec!["axion", "cdm", "no_sub"]);
    assert_eq!(set.labels, vec![0, 0, 0, 1, 1, 2, 2]);
    assert_eq!(set.ids, vec![1000, 1001, 1002, 1000, 1001, 1000, 1001]);
    assert_eq!(set.size, 8);
    // numpy wrote the same pixels as text beside each file.
    // 1002 is pickled with protocol 2 and a numpy-scalar m_a, as numpy 1.x wrote the release.
    for (k, (class, id)) in [("axion", 1000), ("axion", 1002), ("cdm", 1000), ("no_sub", 1001)].iter().enumerate() {
        let txt = std::fs::read_to_string(fixture(&format!("npy-tree/{class}/{class}_sim_{id}.txt"))).unwrap();
        let want: Vec<f32> = txt.split_whitespace().map(|v| v.parse::<f64>().unwrap() as f32).collect();
        let index = [0, 2, 3, 6][k];
        assert_eq!(set.image(index), &want[..], "{class} {id}");
    }
    let (_, m_a) = lensmae::data::npy::read_npy_image(&fixture("npy-tree/axion/axion_sim_1000.npy")).unwrap();
    assert!(m_a.is_some_and(|m| (1e-24..=1e-22).contains(&m)), "{m_a:?}");
    let (_, m_a) = lensmae::data::npy::read_npy_image(&fixture("npy-tree/axion/axion_sim_1002.npy")).unwrap();
    assert_eq!(m_a, Some(3.3e-23));
}

#[test]
fn npy_lr_hr_folders_read_as_image_pairs() {
    use lensmae::data::images::read_image_pairs;
    use lensmae::data::npy::write_npy_f64;
    let dir = tempfile::tempdir().unwrap();
    for sub in ["LR", "HR"] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
    }
    for (k, name) in ["lens_1.npy", "lens_2.npy"].iter().enumerate() {
        let lr: Vec<f64> = (0..16).map(|v| (v + k) as f64).collect();
        let hr: Vec<f64> = (0..256).map(|v| (v * (k + 1)) as f64).collect();
        write_npy_f64(&dir.path().join("LR").join(name), &[4, 4], &lr).unwrap();
        write_npy_f64(&dir.path().join("HR").join(name), &[16, 16], &hr).unwrap();
    }
    let pairs = read_image_pairs(dir.path()).unwrap();
    assert_eq!((pairs.lr.size, pairs.hr.size, pairs.factor(), pairs.hr.len()), (4, 16, 4, 2));
    assert_eq!(pairs.lr.ids, vec![1, 2]);
    assert_eq!(pairs.hr.image(1)[3], 6.0);
    std::fs::remove_file(dir.path().join("HR").join("lens_2.npy")).unwrap();
    let e = read_image_pairs(dir.path()).unwrap_err().to_string();
    assert!(e.contains("lens_2.npy has no partner"), "{e}");
}

#[test]
fn bad_lr_hr_pairs_are_refused_naming_the_row_or_the_sizes() {
    use arrow_array::{ArrayRef, FixedSizeListArray, Float32Array, Int64Array, RecordBatch, StringArray};
    use lensmae::data::images::read_image_pairs;
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let column = |side: i32, values: Vec<f32>| -> ArrayRef {
        let item = Arc::new(arrow_schema::Field::new("item", arrow_schema::DataType::Float32, true));
        Arc::new(FixedSizeListArray::try_new(item, side * side, Arc::new(Float32Array::from(values)), None).unwrap())
    };
    let write = |name: &str, hr_side: i32, hr: Vec<f32>| {
        let batch = RecordBatch::try_from_iter(vec![
            ("id", Arc::new(Int64Array::from(vec![5, 6])) as ArrayRef),
            ("label", Arc::new(StringArray::from(vec!["cdm", "cdm"])) as ArrayRef),
            ("lr", column(2, (0..8).map(|v| v as f32).collect())),
            ("hr", column(hr_side, hr)),
        ])
        .unwrap();
        write_parquet(&dir.path().join(name), &batch)
    };
    let good = read_image_pairs(&write("good.parquet", 4, vec![1.0; 32])).unwrap();
    assert_eq!((good.factor(), good.hr.len()), (2, 2));
    let mut with_nan = vec![1.0; 32];
    with_nan[20] = f32::NAN;
    let e = read_image_pairs(&write("nan.parquet", 4, with_nan)).unwrap_err().to_string();
    assert!(e.contains("nan.parquet") && e.contains("row id 6") && e.contains("non-finite"), "{e}");
    let e = read_image_pairs(&write("odd.parquet", 3, vec![1.0; 18])).unwrap_err().to_string();
    assert!(e.contains("odd.parquet") && e.contains("not an integer upsampling"), "{e}");
}

/// Writes one record batch to a Parquet file at `path` and returns the path.
fn write_parquet(path: &std::path::Path, batch: &arrow_array::RecordBatch) -> std::path::PathBuf {
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
    path.to_path_buf()
}

#[test]
fn a_cancelled_simulation_leaves_no_file_behind() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::new(lensmae::sim::presets::preset("deeplense-model2").unwrap()).unwrap();
    use lensmae::data::Format;
    for format in [Format::Parquet, Format::Fits, Format::Npy, Format::Arrow] {
        let mut opts = SimulateOptions::new(4, 7, dir.path());
        opts.format = format;
        opts.chunk_size = 2;
        opts.cancel.cancel(); // as Ctrl-C does
        let e = simulate_dataset(&sim, &opts).unwrap_err();
        assert!(matches!(e, lensmae::Error::Interrupted(_)), "{format:?}: {e}");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "{format:?} left {left:?}");
    }
}

/// Flux-conserving regridding against reproject's `reproject_exact` on the same
/// grids (`tests/oracle/regrid_oracle.py`): other pixel scales, padding, non-square
/// inputs.
#[test]
fn regridding_matches_reproject_exact() {
    let input = lensmae::data::npy::read_npy(&crate::fixture("oracle/regrid_input.npy")).unwrap();
    let expected = lensmae::data::npy::read_npy(&crate::fixture("oracle/regrid_expected.npy")).unwrap();
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(crate::fixture("oracle/regrid_cases.json")).unwrap()).unwrap();
    let size = cases["output_size"].as_u64().unwrap() as usize;
    let model_scale = cases["model_pixel_scale"].as_f64().unwrap();
    let full = input.shape[1];
    for (k, case) in cases["cases"].as_array().unwrap().iter().enumerate() {
        let (h, w) = (case["rows"].as_u64().unwrap() as usize, case["columns"].as_u64().unwrap() as usize);
        let scale = case["pixel_scale"].as_f64().unwrap();
        let pixels = &input.data;
        let cut: Vec<f32> = (0..h).flat_map(|y| (0..w).map(move |x| pixels[y * full + x] as f32)).collect();
        let mut out = vec![0f32; size * size];
        lensmae::data::regrid::Regrid::centred([h, w], size, model_scale / scale).apply(&cut, &mut out);
        let golden = &expected.data[k * size * size..(k + 1) * size * size];
        let peak = golden.iter().fold(0f64, |m, v| m.max(v.abs()));
        let worst = out.iter().zip(golden).map(|(&a, &b)| (f64::from(a) - b).abs()).fold(0f64, f64::max);
        assert!(worst < 1e-6 * peak, "case {k} ({h}x{w} at {scale}\"/px): max |diff| {worst} of peak {peak}");
    }
}

#[test]
fn refitted_detectability_is_written_when_asked_and_never_above_sub_snr() {
    let dir = tempfile::tempdir().unwrap();
    let sim = simulator("survey");
    let column = |batch: &arrow_array::RecordBatch, name: &str| -> Vec<Option<f64>> {
        let values = batch.column_by_name(name).unwrap();
        let values = values.as_any().downcast_ref::<arrow_array::Float64Array>().unwrap();
        values.iter().collect()
    };
    let refitted = SimulateOptions { refit_detectability: true, ..SimulateOptions::new(2, 3, dir.path().join("a")) };
    let summary = simulate_dataset(&sim, &refitted).unwrap();
    let batch = &read_parquet(&summary.path)[0];
    let labels = batch.column_by_name("label").unwrap().as_any().downcast_ref::<StringArray>().unwrap();
    let (sub_snr, refit) = (column(batch, "sub_snr"), column(batch, "sub_snr_refit"));
    for row in 0..batch.num_rows() {
        let (before, after) = (sub_snr[row].unwrap(), refit[row].unwrap());
        assert!((0.0..=before).contains(&after), "row {row}: {after} after a refit of {before}");
        assert_eq!(after == 0.0, labels.value(row) == "no_sub", "row {row}");
    }
    assert_eq!(parquet_metadata(&summary.path)["lensmae:refit_detectability"], "true");
    // The same rows without the refit: the same images, the column null.
    let plain = simulate_dataset(&sim, &SimulateOptions::new(2, 3, dir.path().join("b"))).unwrap();
    let plain_batch = &read_parquet(&plain.path)[0];
    assert!(column(plain_batch, "sub_snr_refit").iter().all(Option::is_none));
    assert_eq!(plain_batch.column_by_name("image"), batch.column_by_name("image"));
    // Noise-free recipes have no sub_snr to refit; super-resolution pairs are not refitted.
    let noise_free = SimulateOptions { refit_detectability: true, ..SimulateOptions::new(1, 3, dir.path().join("c")) };
    let err = simulate_dataset(&simulator("deeplense-model2"), &noise_free).unwrap_err().to_string();
    assert!(err.contains("refit_detectability"), "{err}");
    let pairs = SimulateOptions { task: Task::Superres { factor: 4 }, ..refitted.clone() };
    assert!(simulate_dataset(&sim, &pairs).unwrap_err().to_string().contains("refit_detectability"));
}
