//! `lensmae predict` as a library: every reader, the NaN policies, per-row
//! statuses, the output's columns and metadata, and refusals before any work.

use crate::train::{blobs, options};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int64Type};
use arrow_array::{Array, ArrayRef, FixedSizeListArray, Float64Array, Int64Array, ListArray, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use fitsio::images::{ImageDescription, ImageType};
use lensmae::data::images::{ImagePairs, LabelledImages};
use lensmae::data::parquet::tensor_field;
use lensmae::data::resample::downsample_mean;
use lensmae::infer::TestTimeAugmentation;
use lensmae::model::mae::Pooling;
use lensmae::model::superres::SuperresConfig;
use lensmae::model::MaeConfig;
use lensmae::stage::{
    inspect, predict, FitNoise, InputOptions, NanPolicy, PredictOptions, PredictorOptions, StageTask,
};
use lensmae::train::superres::{finetune_superres, PixelLoss, SuperresOptions};
use lensmae::train::{finetune_classify, EncoderInit, FinetuneOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// A tiny left/right blob classifier and a x4 SR model on the same blobs,
/// trained once for all the tests of this file.
pub(crate) fn models() -> &'static (PathBuf, PathBuf) {
    static MODELS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    MODELS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let clf = dir.join("clf.safetensors");
        let opts = FinetuneOptions {
            train: options(&clf, 6),
            model: MaeConfig::tiny_16().into(),
            init: EncoderInit::Scratch,
            freeze_encoder: false,
            pooling: Pooling::Cls,
            dropout: 0.0,
            standardise_pixels: false,
        };
        let outcome = finetune_classify(&blobs(160, 1), &opts).unwrap();
        assert!(outcome.test.unwrap().accuracy > 0.9);
        let sr = dir.join("sr.safetensors");
        let hr = blobs(64, 2);
        let lr = LabelledImages { size: 4, pixels: shrink(&hr.pixels), ..hr.clone() };
        let opts = SuperresOptions {
            train: options(&sr, 1),
            model: MaeConfig::tiny_16(),
            head: SuperresConfig { factor: 4, channels: 8, residual: false, flux_conserving: false },
            init: EncoderInit::Scratch,
            loss: PixelLoss::L1,
        };
        finetune_superres(&ImagePairs { lr, hr }, &opts).unwrap();
        (clf, sr)
    })
}

/// Each 16x16 image of `pixels` averaged down to 4x4.
fn shrink(pixels: &[f32]) -> Vec<f32> {
    pixels.chunks(256).flat_map(|img| downsample_mean(img, 16, 4)).collect()
}

fn run(inputs: &[PathBuf], input: InputOptions, task: StageTask, nan: NanPolicy, out: &Path) -> lensmae::Result<()> {
    let (clf, sr) = models();
    let predictor = PredictorOptions {
        model: Some(clf.clone()),
        sr_model: Some(sr.clone()),
        task,
        batch_size: 5,
        device: candle_core::Device::Cpu,
        nan_policy: nan,
        pixel_scale: Default::default(),
        tta: Default::default(),
        observation: Default::default(),
        fit_refits: 0,
    };
    predict(&PredictOptions { input, ..predict_options(inputs, predictor, out) }).map(|_| ())
}

#[test]
fn a_folder_of_fits_cutouts_is_read_as_its_files_in_natural_order() {
    let dir = tempfile::tempdir().unwrap();
    let stamps = dir.path().join("stamps");
    let data = blobs(4, 9);
    // As a cutout service delivers them: one file a stamp, numbered without leading
    // zeros, in tile folders; hidden files and a README beside them.
    let write = |path: &Path, i: usize| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut f = fitsio::FitsFile::create(path).open().unwrap();
        let desc = ImageDescription { data_type: ImageType::Float, dimensions: &[16, 16] };
        let hdu = f.create_image("SCI", &desc).unwrap();
        hdu.write_image(&mut f, data.image(i)).unwrap();
    };
    let files = [stamps.join("stamp-2.fits"), stamps.join("stamp-10.fits"), stamps.join("tile=7/stamp-3.fits.gz")];
    write(&files[0], 0);
    write(&files[1], 1);
    write(&stamps.join("tile=7/stamp-3.fits"), 2);
    let plain = std::fs::read(stamps.join("tile=7/stamp-3.fits")).unwrap();
    std::fs::remove_file(stamps.join("tile=7/stamp-3.fits")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &plain).unwrap();
    std::fs::write(&files[2], gz.finish().unwrap()).unwrap();
    write(&stamps.join(".stamp-1.fits"), 3);
    write(&stamps.join("_tmp/stamp-1.fits"), 3);
    std::fs::write(stamps.join("README.txt"), "VIS stamps").unwrap();

    // The folder reads as its files given one by one, in natural order (2, 10, then
    // the tile's), hidden and bookkeeping files passed over.
    let classify = |inputs: &[PathBuf], out: &Path| {
        run(inputs, InputOptions::default(), StageTask::Classify, NanPolicy::Fail, out)
    };
    let (from_folder, from_files) = (dir.path().join("folder.parquet"), dir.path().join("files.parquet"));
    classify(std::slice::from_ref(&stamps), &from_folder).unwrap();
    classify(&files, &from_files).unwrap();
    let (got, want) = (read(&from_folder), read(&from_files));
    assert_eq!(got.num_rows(), 3);
    let sources: Vec<String> = strings(&got, "source").into_iter().map(Option::unwrap).collect();
    let expected: Vec<String> = files.iter().map(|f| format!("{}[1]", f.display())).collect();
    assert_eq!(sources, expected);
    for column in ["p_left", "p_right", "status"] {
        assert_eq!(got.column_by_name(column).unwrap(), want.column_by_name(column).unwrap(), "{column}");
    }

    // Predictions written into the folder would be read as cutouts next time.
    let err = classify(std::slice::from_ref(&stamps), &stamps.join("predictions.parquet")).unwrap_err().to_string();
    assert!(err.contains("inside the input folder"), "{err}");
    // A stamp added to the folder between a run and its resume is another input.
    let chunks = dir.path().join("chunks");
    let mut opts = predict_options(std::slice::from_ref(&stamps), classifier(&models().0, 2), &chunks);
    predict(&opts).unwrap();
    write(&stamps.join("stamp-11.fits"), 3);
    (opts.resume, opts.overwrite) = (true, false);
    let err = predict(&opts).unwrap_err().to_string();
    assert!(err.contains("stamp-11.fits was not an input before"), "{err}");
    // A folder holding a table beside its FITS files: which to read would be a guess.
    std::fs::copy(&from_folder, stamps.join("tile=7/old.parquet")).unwrap();
    let err = classify(std::slice::from_ref(&stamps), &from_folder).unwrap_err().to_string();
    assert!(err.contains("both FITS files") && err.contains("old.parquet"), "{err}");
    // `inspect` names the first 20 files of a large folder and counts them all.
    let many = dir.path().join("many");
    (0..22).for_each(|i| write(&many.join(format!("s{i}.fits")), 0));
    let inspected = lensmae::stage::inspect(std::slice::from_ref(&many), &InputOptions::default()).unwrap();
    assert_eq!(inspected["input"]["files"].as_array().unwrap().len(), 20);
    assert_eq!(inspected["input"]["files_total"], 22);
    assert_eq!(inspected["input"]["rows"], 22);
    // A folder of no cutouts says so.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let err = classify(std::slice::from_ref(&empty), &from_folder).unwrap_err().to_string();
    assert!(err.contains("no Parquet, FITS or .npy files"), "{err}");
}

/// A FITS file at `path` whose primary HDU holds float `pixels` of `dimensions`
/// (slowest axis first), open for more header keywords.
fn primary_image(path: &Path, dimensions: &[usize], pixels: &[f32]) -> (fitsio::FitsFile, fitsio::hdu::FitsHdu) {
    let desc = ImageDescription { data_type: ImageType::Float, dimensions };
    let mut f = fitsio::FitsFile::create(path).with_custom_primary(&desc).open().unwrap();
    let hdu = f.primary_hdu().unwrap();
    hdu.write_image(&mut f, pixels).unwrap();
    (f, hdu)
}

#[test]
fn band_cubes_give_a_row_per_band_and_band_picks_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = blobs(3, 11);
    // As the Legacy Surveys' cutout service writes a grz cutout: a cube of the three
    // bands of one object, the bands named by BANDS and BAND0..2, one celestial WCS.
    let cube = dir.path().join("legacy.fits");
    {
        let (mut f, hdu) = primary_image(&cube, &[3, 16, 16], &data.pixels);
        hdu.write_key(&mut f, "BANDS", "grz").unwrap();
        for (i, band) in ["g", "r", "z"].iter().enumerate() {
            hdu.write_key(&mut f, &format!("BAND{i}"), *band).unwrap();
        }
        for (key, value) in [("CTYPE1", "RA---TAN"), ("CTYPE2", "DEC--TAN")] {
            hdu.write_key(&mut f, key, value).unwrap();
        }
        for (key, value) in [("CRVAL1", 150.0), ("CRVAL2", 2.0), ("CRPIX1", 8.5), ("CRPIX2", 8.5)] {
            hdu.write_key(&mut f, key, value).unwrap();
        }
        for (key, value) in [("CD1_1", -0.262 / 3600.0), ("CD1_2", 0.0), ("CD2_1", 0.0), ("CD2_2", 0.262 / 3600.0)] {
            hdu.write_key(&mut f, key, value).unwrap();
        }
    }
    // A stamp of one filter (its FILTER keyword), and one that names none.
    let stamp = |name: &str, filter: Option<&str>| {
        let path = dir.path().join(name);
        let (mut f, hdu) = primary_image(&path, &[16, 16], data.image(1));
        if let Some(filter) = filter {
            hdu.write_key(&mut f, "FILTER", filter).unwrap();
        }
        path
    };
    let (r_stamp, plain) = (stamp("r.fits", Some("r")), stamp("plain.fits", None));
    let out = dir.path().join("out.parquet");
    let with_band = |band: Option<&str>| InputOptions { band: band.map(str::to_string), ..Default::default() };
    let classify = |inputs: &[PathBuf], input: InputOptions| {
        run(inputs, input, StageTask::Classify, NanPolicy::Fail, &out).map(|_| read(&out))
    };

    // Every band is a row of the same object, named: not three cutouts of unknown objects.
    let all = classify(std::slice::from_ref(&cube), with_band(None)).unwrap();
    assert_eq!(strings(&all, "band"), [Some("g"), Some("r"), Some("z")].map(|b| b.map(str::to_string)));
    let ra = all.column_by_name("ra").unwrap().as_primitive::<arrow_array::types::Float64Type>();
    assert!(ra.iter().all(|v| (v.unwrap() - 150.0).abs() < 1e-9), "{ra:?}");
    // The band's own pixels: the r row is the cube's second plane, as a stamp of it answers.
    let r_only = classify(std::slice::from_ref(&cube), with_band(Some("r"))).unwrap();
    let alone = classify(std::slice::from_ref(&r_stamp), with_band(None)).unwrap();
    assert_eq!(r_only.num_rows(), 1);
    assert_eq!(r_only.column_by_name("p_left").unwrap(), alone.column_by_name("p_left").unwrap());
    assert_eq!(strings(&alone, "band"), [Some("r".to_string())]);
    // Beside them, a file naming no band is a row saying why it was not read as `r`.
    let inputs = [cube.clone(), r_stamp.clone(), plain.clone()];
    let mixed = run(&inputs, with_band(Some("r")), StageTask::Classify, NanPolicy::Fail, &out);
    assert!(mixed.is_ok(), "{mixed:?}");
    let status = strings(&read(&out), "status");
    assert_eq!(status.len(), 3);
    assert!(status[2].as_deref().unwrap().starts_with("skipped: no band named"), "{status:?}");
    // A band no file holds, and --band on a table, are refused by name.
    let err = classify(&inputs, with_band(Some("i"))).unwrap_err().to_string();
    assert!(err.contains("--band i") && err.contains("g, r, z"), "{err}");
    let table = dir.path().join("t.parquet");
    tensor_table(&table, &data);
    let err = classify(std::slice::from_ref(&table), with_band(Some("r"))).unwrap_err().to_string();
    assert!(err.contains("--band") && err.contains("FITS"), "{err}");
}

#[test]
fn rubin_and_hsc_masks_mask_their_defect_planes_not_the_detections() {
    let dir = tempfile::tempdir().unwrap();
    let data = blobs(1, 13);
    // As Rubin's and HSC's cutouts come: IMAGE, MASK (int32 bit planes named by MP_*
    // keywords) and VARIANCE. The detection footprint covers the lens; one cosmic ray,
    // and one pixel of a streak, whose plane is a high bit.
    let path = dir.path().join("calexp-cutout.fits");
    {
        let mut f = fitsio::FitsFile::create(&path).open().unwrap();
        let desc = ImageDescription { data_type: ImageType::Float, dimensions: &[16, 16] };
        let image = f.create_image("IMAGE", &desc).unwrap();
        image.write_image(&mut f, data.image(0)).unwrap();
        let mut mask = vec![0i32; 256];
        (64..192).for_each(|i| mask[i] = 1 << 5); // DETECTED
        mask[100] |= 1 << 3; // CR, inside the footprint
        mask[7] = 1 << 30; // STREAK
        let mask_desc = ImageDescription { data_type: ImageType::Long, dimensions: &[16, 16] };
        let hdu = f.create_image("MASK", &mask_desc).unwrap();
        hdu.write_image(&mut f, &mask).unwrap();
        for (plane, bit) in [("BAD", 0i64), ("SAT", 1), ("INTRP", 2), ("CR", 3), ("EDGE", 4), ("DETECTED", 5)] {
            hdu.write_key(&mut f, &format!("MP_{plane}"), bit).unwrap();
        }
        hdu.write_key(&mut f, "MP_DETECTED_NEGATIVE", 6i64).unwrap();
        hdu.write_key(&mut f, "MP_STREAK", 30i64).unwrap();
        let variance = f.create_image("VARIANCE", &desc).unwrap();
        variance.write_image(&mut f, &vec![1e-4f32; 256]).unwrap();
    }
    let out = dir.path().join("out.parquet");
    let status_with = |planes: Option<&[&str]>| {
        let input = InputOptions {
            flag_planes: planes.map(|p| p.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        };
        run(std::slice::from_ref(&path), input, StageTask::Classify, NanPolicy::Zero, &out)
            .map(|_| strings(&read(&out), "status").remove(0).unwrap())
    };
    // The cosmic ray and the streak are masked; the 128 detected pixels are the lens.
    assert_eq!(status_with(None).unwrap(), "ok: 2 non-finite pixels set to 0");
    // Planes named by the user, from those the mask declares; one it does not is refused.
    assert_eq!(status_with(Some(&["DETECTED"])).unwrap(), "ok: 128 non-finite pixels set to 0");
    assert_eq!(status_with(Some(&["CR", "EDGE"])).unwrap(), "ok: 1 non-finite pixels set to 0");
    let unknown = status_with(Some(&["SPIKE"])).unwrap_err().to_string();
    assert!(unknown.contains("--flag-planes SPIKE") && unknown.contains("calexp-cutout.fits"), "{unknown}");
    // Planes asked of files without flags would mask nothing, unsaid.
    let plain = dir.path().join("plain.fits");
    drop(primary_image(&plain, &[16, 16], data.image(0)));
    let input = InputOptions { flag_planes: Some(vec!["CR".into()]), ..Default::default() };
    let err = run(&[plain], input, StageTask::Classify, NanPolicy::Zero, &out).unwrap_err().to_string();
    assert!(err.contains("--flag-planes CR: no input has a flags extension"), "{err}");
}

/// A single run into `out` (replaced), chunks of 4 rows, no shard or resume.
pub(crate) fn predict_options(inputs: &[PathBuf], predictor: PredictorOptions, out: &Path) -> PredictOptions {
    PredictOptions {
        inputs: inputs.to_vec(),
        input: InputOptions::default(),
        predictor,
        out: out.to_path_buf(),
        overwrite: true,
        chunk_rows: 4,
        shard: None,
        resume: false,
        cancel: Default::default(),
        command: None,
        progress: Default::default(),
    }
}

/// Classification with the checkpoint at `model`, in batches of `batch_size`.
pub(crate) fn classifier(model: &Path, batch_size: usize) -> PredictorOptions {
    PredictorOptions {
        model: Some(model.to_path_buf()),
        sr_model: None,
        task: StageTask::Classify,
        batch_size,
        device: candle_core::Device::Cpu,
        nan_policy: NanPolicy::Fail,
        pixel_scale: Default::default(),
        tta: Default::default(),
        observation: Default::default(),
        fit_refits: 0,
    }
}

/// The bundled models, batches of 3, as `task`.
fn bundled(task: StageTask, pixel_scale: lensmae::stage::geometry::PixelScale) -> PredictorOptions {
    PredictorOptions {
        model: None,
        sr_model: None,
        task,
        batch_size: 3,
        device: candle_core::Device::Cpu,
        nan_policy: NanPolicy::Fail,
        pixel_scale,
        tta: Default::default(),
        observation: Default::default(),
        fit_refits: 0,
    }
}

pub(crate) fn read(path: &Path) -> RecordBatch {
    let file = std::fs::File::open(path).unwrap();
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let mut reader = builder.with_batch_size(1 << 20).build().unwrap();
    reader.next().unwrap().unwrap()
}

pub(crate) fn strings(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
    batch.column_by_name(name).unwrap().as_string::<i32>().iter().map(|s| s.map(str::to_string)).collect()
}

pub(crate) fn write_parquet(path: &Path, columns: Vec<(Field, ArrayRef)>) {
    let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) = columns.into_iter().unzip();
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

#[test]
fn a_tensor_table_gets_one_row_per_input_with_probabilities_and_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let data = blobs(12, 7);
    let mut pixels = data.pixels.clone();
    pixels[3 * 256 + 17] = f32::NAN; // row 3
    let item = Arc::new(Field::new("item", DataType::Float32, true));
    let images = FixedSizeListArray::new(item, 256, Arc::new(arrow_array::Float32Array::from(pixels)), None);
    let ids: Vec<i64> = (100..112).collect();
    let input = dir.path().join("cutouts.parquet");
    write_parquet(
        &input,
        vec![
            (Field::new("id", DataType::Int64, false), Arc::new(Int64Array::from(ids))),
            (Field::new("ra", DataType::Float64, false), Arc::new(Float64Array::from(vec![150.0; 12]))),
            (tensor_field("image", 16, 16), Arc::new(images)),
        ],
    );
    let out = dir.path().join("pred.parquet");
    let inputs = [input.clone()];
    let err = run(&inputs, InputOptions::default(), StageTask::Classify, NanPolicy::Fail, &out).unwrap_err();
    assert!(err.to_string().contains("row 3 (id 103)") && err.to_string().contains("1 non-finite"), "{err}");
    assert!(!out.exists(), "a failed run leaves no output");

    run(&inputs, InputOptions::default(), StageTask::Classify, NanPolicy::SkipRow, &out).unwrap();
    let b = read(&out);
    assert_eq!(b.num_rows(), 12);
    let names: Vec<String> = b.schema().fields().iter().map(|f| f.name().clone()).collect();
    let expected =
        ["row", "id", "ra", "p_left", "p_right", "pred_class", "max_prob", "entropy", "ood_score", "in_domain"];
    assert_eq!(names[..10], expected);
    assert_eq!(names[10..], ["pixel_scale", "geometry", "nonfinite_pixels", "status"]);
    let status = strings(&b, "status");
    assert_eq!(status[3].as_deref(), Some("skipped: 1 non-finite pixels"));
    // The count stays whatever the status says.
    let nonfinite: Vec<Option<i32>> =
        b.column_by_name("nonfinite_pixels").unwrap().as_primitive::<arrow_array::types::Int32Type>().iter().collect();
    assert!(nonfinite.iter().enumerate().all(|(i, n)| *n == Some(i32::from(i == 3))), "{nonfinite:?}");
    assert!(status.iter().enumerate().all(|(i, s)| i == 3 || s.as_deref() == Some("ok")));
    let pred = strings(&b, "pred_class");
    assert_eq!(pred[3], None);
    let right = ["left", "right"];
    let correct = (0..12).filter(|&i| i != 3 && pred[i].as_deref() == Some(right[data.labels[i]])).count();
    assert!(correct >= 10, "{correct} of 11 right: {pred:?}");
    let p = b.column_by_name("p_left").unwrap().as_primitive::<Float32Type>();
    let q = b.column_by_name("p_right").unwrap().as_primitive::<Float32Type>();
    assert!(p.is_null(3) && (0..12).filter(|&i| i != 3).all(|i| (p.value(i) + q.value(i) - 1.0).abs() < 1e-5));
    assert_eq!(b.column_by_name("id").unwrap().as_primitive::<Int64Type>().value(11), 111);
    let file = std::fs::File::open(&out).unwrap();
    let meta = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .schema()
        .metadata()
        .clone();
    assert_eq!(meta["lensmae:schema_version"], "1");
    assert_eq!(meta["lensmae:model_sha256"].len(), 64);

    run(&inputs, InputOptions::default(), StageTask::Classify, NanPolicy::Zero, &out).unwrap();
    assert_eq!(strings(&read(&out), "status")[3].as_deref(), Some("ok: 1 non-finite pixels set to 0"));
}

#[test]
fn list_columns_with_a_shape_keep_bad_rows_with_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    let data = blobs(4, 3);
    // Rows: good, 10 values, null, good; float64 values.
    let mut values: Vec<f64> = data.image(0).iter().map(|&v| v as f64).collect();
    values.extend(vec![0.5; 10]);
    values.extend(data.image(3).iter().map(|&v| v as f64));
    let offsets = arrow_buffer::OffsetBuffer::new(vec![0i32, 256, 266, 266, 522].into());
    let nulls = arrow_buffer::NullBuffer::from(vec![true, true, false, true]);
    let item = Arc::new(Field::new("item", DataType::Float64, true));
    let list = ListArray::new(item.clone(), offsets, Arc::new(Float64Array::from(values)), Some(nulls));
    let input = dir.path().join("lists.parquet");
    write_parquet(&input, vec![(Field::new("stamp", DataType::List(item.clone()), true), Arc::new(list))]);
    let inputs = [input];
    let opts = |shape| InputOptions { shape, ..Default::default() };
    // Without --shape, the first image's 256 values say 16x16 (pandas writes no shape).
    let report = inspect(&inputs, &opts(Some([16, 16]))).unwrap();
    assert_eq!(inspect(&inputs, &opts(None)).unwrap(), report);
    // A first image that is not square needs one.
    let odd = dir.path().join("odd.parquet");
    let list = ListArray::new(
        item.clone(),
        arrow_buffer::OffsetBuffer::new(vec![0i32, 10].into()),
        Arc::new(Float64Array::from(vec![0.5; 10])),
        None,
    );
    write_parquet(&odd, vec![(Field::new("stamp", DataType::List(item.clone()), true), Arc::new(list))]);
    let err = inspect(&[odd], &opts(None)).unwrap_err().to_string();
    assert!(err.contains("10 values per row is not square: give --shape H,W") && err.contains("stamp"), "{err}");
    assert_eq!(report["input"]["rows"], 4);
    assert_eq!(report["first_rows_problems"].as_array().unwrap().len(), 2);
    let out = dir.path().join("pred.parquet");
    run(&inputs, opts(Some([16, 16])), StageTask::Classify, NanPolicy::Fail, &out).unwrap();
    let status = strings(&read(&out), "status");
    assert_eq!(
        status.iter().map(|s| s.as_deref().unwrap()).collect::<Vec<_>>(),
        ["ok", "skipped: 10 pixels, expected 16x16", "skipped: null image", "ok"]
    );
}

#[test]
fn an_output_that_is_or_holds_an_input_is_refused_and_the_input_kept() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let folder = dir.path().join("run");
    std::fs::create_dir(&folder).unwrap();
    let input = folder.join("cutouts.parquet");
    std::fs::copy(root.join("fixtures/catalog/deeplense-model2-12.parquet"), &input).unwrap();
    let before = std::fs::read(&input).unwrap();
    // The same file (by another spelling of its path), and a folder output holding it:
    // with --overwrite both replaced the cutouts with their predictions.
    let same = folder.join("../run/cutouts.parquet");
    for out in [input.clone(), same, folder.clone()] {
        let mut opts =
            predict_options(std::slice::from_ref(&input), classifier(Path::new("bundled:classifier"), 4), &out);
        opts.overwrite = true;
        let e = predict(&opts).unwrap_err().to_string();
        assert!(e.contains("the output, which the run would replace"), "{}: {e}", out.display());
    }
    assert_eq!(std::fs::read(&input).unwrap(), before);
    // Predictions inside an input HATS catalogue's tree: its readers would find them there.
    let catalogue = dir.path().join("catalogue");
    for entry in walk(&root.join("fixtures/hats-cutouts")) {
        let to = catalogue.join(entry.strip_prefix(root.join("fixtures/hats-cutouts")).unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&entry, to).unwrap();
    }
    let out = catalogue.join("dataset/predictions");
    let mut opts =
        predict_options(std::slice::from_ref(&catalogue), classifier(Path::new("bundled:classifier"), 4), &out);
    opts.input.shape = Some([16, 16]);
    let e = predict(&opts).unwrap_err().to_string();
    assert!(e.contains("inside the input catalogue"), "{e}");
    assert!(!out.exists());
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flat_map(|entry| {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

#[test]
fn fits_inputs_carry_params_columns_and_header_keywords_by_name() {
    use fitsio::tables::{ColumnDataType, ColumnDescription};
    let dir = tempfile::tempdir().unwrap();
    let data = blobs(3, 5);
    // A cube with a PARAMS table, as lensmae's simulated cubes have; the cube's own
    // header says EXPTIME, which the table's column of the same name outranks.
    let cube = dir.path().join("cube.fits");
    {
        let desc = ImageDescription { data_type: ImageType::Float, dimensions: &[3, 16, 16] };
        let mut f = fitsio::FitsFile::create(&cube).with_custom_primary(&desc).open().unwrap();
        let primary = f.primary_hdu().unwrap();
        primary.write_image(&mut f, &data.pixels).unwrap();
        primary.write_key(&mut f, "EXPTIME", 999.0f64).unwrap();
        let column = |name: &str, kind: ColumnDataType| ColumnDescription::new(name).with_type(kind).create().unwrap();
        let label = ColumnDescription::new("label").with_type(ColumnDataType::String).that_repeats(6).create().unwrap();
        let columns = [column("id", ColumnDataType::LongLong), label, column("psf_fwhm", ColumnDataType::Double)];
        let table = f.create_table("PARAMS", &columns).unwrap();
        table.write_col(&mut f, "id", &[7i64, 8, 9]).unwrap();
        table.write_col(&mut f, "label", &["cdm".to_string(), "axion".into(), "no_sub".into()]).unwrap();
        table.write_col(&mut f, "psf_fwhm", &[0.15f64, 0.16, 0.17]).unwrap();
    }
    // Survey cutout files: the observation's keywords in an empty primary HDU, the
    // flux in an extension with keywords of its own; the second file lacks one.
    let cutout = |name: &str, psf: Option<f64>| {
        let path = dir.path().join(name);
        let mut f = fitsio::FitsFile::create(&path).open().unwrap();
        f.primary_hdu().unwrap().write_key(&mut f, "EXPTIME", 2264i64).unwrap();
        let desc = ImageDescription { data_type: ImageType::Float, dimensions: &[16, 16] };
        let flux = f.create_image("VIS_FLUX", &desc).unwrap();
        flux.write_image(&mut f, data.image(0)).unwrap();
        flux.write_key(&mut f, "LABEL", "no_sub").unwrap();
        if let Some(psf) = psf {
            flux.write_key(&mut f, "PSF_FWHM", psf).unwrap();
        }
        path
    };
    let files = [cube.clone(), cutout("a.fits", Some(0.18)), cutout("b.fits", None)];
    let keep =
        |names: &[&str]| InputOptions { keep: names.iter().map(|n| n.to_string()).collect(), ..Default::default() };
    let opts = keep(&["label", "psf_fwhm", "exposure_time"]);
    let mut reader = lensmae::stage::open_input(&files, &opts).unwrap();
    let batch = reader.next_batch(8).unwrap().unwrap();
    let column = |name: &str| &batch.carried.iter().find(|(f, _)| f.name() == name).unwrap().1;
    let labels: Vec<_> = column("label").as_string::<i32>().iter().map(|s| s.map(str::to_string)).collect();
    let expected_labels = ["cdm", "axion", "no_sub", "no_sub", "no_sub"];
    assert_eq!(labels, expected_labels.map(|l| Some(l.to_string())));
    let floats = |name: &str| column(name).as_primitive::<arrow_array::types::Float64Type>().iter().collect::<Vec<_>>();
    assert_eq!(floats("psf_fwhm"), [Some(0.15), Some(0.16), Some(0.17), Some(0.18), None]);
    assert_eq!(floats("exposure_time"), [Some(999.0), Some(999.0), Some(999.0), Some(2264.0), Some(2264.0)]);
    let ids = column("id").as_primitive::<Int64Type>().iter().collect::<Vec<_>>();
    assert_eq!(ids, [Some(7), Some(8), Some(9), None, None]);
    // A name no file holds is refused by name, as a Parquet input's missing column is.
    let error = lensmae::stage::open_input(&files, &keep(&["seeing"])).err().unwrap().to_string();
    assert!(error.contains("`seeing` (--keep)") && error.contains("SEEING"), "{error}");
    // A PARAMS table whose header declares far more rows than the file holds is not
    // read (its columns' buffers would be sized by the header: an abort before), and
    // the cube's planes still are.
    let hostile = dir.path().join("hostile.fits");
    let mut bytes = std::fs::read(&cube).unwrap();
    let table_header = 2880 + bytes[2880..].windows(8).position(|w| w == b"XTENSION").unwrap();
    let at = table_header + bytes[table_header..].windows(9).position(|w| w == b"NAXIS2  =").unwrap();
    bytes[at..at + 30].copy_from_slice(format!("NAXIS2  = {:>20}", 10u64.pow(15)).as_bytes());
    std::fs::write(&hostile, bytes).unwrap();
    let report = inspect(std::slice::from_ref(&hostile), &keep(&["exposure_time"])).unwrap();
    assert_eq!(report["input"]["rows"], 3);
    let layout = report["input"]["layout"].as_str().unwrap();
    assert!(layout.contains("the PARAMS table declares 22000000000000000 bytes"), "{layout}");
    let mut reader = lensmae::stage::open_input(std::slice::from_ref(&hostile), &keep(&["exposure_time"])).unwrap();
    let batch = reader.next_batch(8).unwrap().unwrap();
    assert!(batch.problems.iter().all(Option::is_none));
    let exposure = &batch.carried.iter().find(|(f, _)| f.name() == "exposure_time").unwrap().1;
    assert_eq!(exposure.as_primitive::<arrow_array::types::Float64Type>().values().to_vec(), [999.0; 3]);
}

#[test]
fn fits_cubes_extensions_scaling_blank_and_broken_files() {
    let dir = tempfile::tempdir().unwrap();
    let data = blobs(3, 5);
    // A 16-bit cube with BSCALE/BZERO and a BLANK pixel in plane 1.
    let cube = dir.path().join("cube.fits");
    let raw: Vec<i16> = data
        .pixels
        .iter()
        .enumerate()
        .map(|(i, &v)| if i == 256 + 5 { -32768 } else { (v * 1000.0) as i16 - 100 })
        .collect();
    {
        let mut f = crate::scaled_i16_cube(&cube, &raw, &[3, 16, 16]);
        // A PARAMS table naming each plane, as lensmae's simulated cubes have.
        let id = fitsio::tables::ColumnDescription::new("id")
            .with_type(fitsio::tables::ColumnDataType::LongLong)
            .create()
            .unwrap();
        let table = f.create_table("PARAMS", &[id]).unwrap();
        table.write_col(&mut f, "id", &[100i64, 101, 102]).unwrap();
    }
    // A multi-extension file: an empty primary, a SCI and a WHT image.
    let mef = dir.path().join("mef.fits");
    {
        let mut f = fitsio::FitsFile::create(&mef).open().unwrap();
        f.primary_hdu().unwrap().write_key(&mut f, "ID", 7i64).unwrap();
        let desc = ImageDescription { data_type: ImageType::Float, dimensions: &[16, 16] };
        let sci = f.create_image("SCI", &desc).unwrap();
        sci.write_image(&mut f, data.image(2)).unwrap();
        sci.write_key(&mut f, "RA", 150.125f64).unwrap();
        sci.write_key(&mut f, "DEC", 2.5f64).unwrap();
        sci.write_key(&mut f, "OBJ_ID", "EUC_J100030+023000").unwrap();
        let wht = f.create_image("WHT", &desc).unwrap();
        let mut weights = vec![4f32; 256];
        weights[40] = 0.0; // no data: masked as a flag masks
        wht.write_image(&mut f, &weights).unwrap();
        let mut flags = vec![0f32; 256];
        flags[17] = 4.0;
        let flag = f.create_image("FLAG", &desc).unwrap();
        flag.write_image(&mut f, &flags).unwrap();
    }
    let broken = dir.path().join("broken.fits");
    std::fs::write(&broken, b"SIMPLE  =                    T / truncated").unwrap();
    let out = dir.path().join("pred.parquet");
    run(&[cube.clone(), broken.clone()], InputOptions::default(), StageTask::Classify, NanPolicy::SkipRow, &out)
        .unwrap();
    let b = read(&out);
    let status = strings(&b, "status");
    let sources = strings(&b, "source");
    assert_eq!(b.num_rows(), 4);
    assert_eq!(status[0].as_deref(), Some("ok"));
    assert_eq!(status[1].as_deref(), Some("skipped: 1 non-finite pixels"), "BLANK becomes NaN");
    assert!(status[3].as_deref().unwrap().starts_with("skipped: unreadable FITS file"), "{status:?}");
    assert!(sources[2].as_deref().unwrap().ends_with("cube.fits[0][2]"), "{sources:?}");
    // The PARAMS table's ids travel with their planes; the broken file has none.
    let ids = b.column_by_name("id").unwrap().as_primitive::<Int64Type>();
    assert_eq!(ids.iter().collect::<Vec<_>>(), vec![Some(100), Some(101), Some(102), None]);
    // A multi-extension file: every image extension, or the one named.
    // The weight map and flags are the flux's companions, not cutouts: one row.
    let report = inspect(std::slice::from_ref(&mef), &InputOptions::default()).unwrap();
    assert_eq!(report["input"]["rows"], 1);
    let layout = report["input"]["layout"].as_str().unwrap();
    assert!(layout.contains("`WHT` as Weight") && layout.contains("`FLAG` as Flags"), "{layout}");
    let mut reader = lensmae::stage::open_input(std::slice::from_ref(&mef), &InputOptions::default()).unwrap();
    let batch = reader.next_batch(4).unwrap().unwrap();
    // Inverse variance 4: sigma 0.5 everywhere it is known; the flagged pixel and the
    // one of weight 0 masked (NaN).
    let noise = batch.noise.as_ref().unwrap();
    assert!(noise[40].is_nan() && noise.iter().enumerate().all(|(i, &s)| i == 40 || s == 0.5));
    assert!(batch.pixels[17].is_nan() && batch.pixels[40].is_nan());
    assert_eq!(batch.pixels.iter().filter(|v| v.is_nan()).count(), 2);
    let sci = InputOptions { hdu: Some("sci".into()), ..Default::default() };
    let mef_out = dir.path().join("mef.parquet");
    // The flagged pixel follows the NaN policy.
    let e = run(std::slice::from_ref(&mef), sci.clone(), StageTask::Classify, NanPolicy::Fail, &mef_out);
    assert!(e.unwrap_err().to_string().contains("2 non-finite pixels"));
    run(std::slice::from_ref(&mef), sci.clone(), StageTask::Classify, NanPolicy::Zero, &mef_out).unwrap();
    let m = read(&mef_out);
    assert_eq!(m.num_rows(), 1);
    assert_eq!(strings(&m, "status")[0].as_deref(), Some("ok: 2 non-finite pixels set to 0"));
    assert!(strings(&m, "source")[0].as_deref().unwrap().ends_with("mef.fits[1]"));
    // A cutout's own RA, DEC and OBJ_ID keywords are carried.
    assert_eq!(strings(&m, "object_id")[0].as_deref(), Some("EUC_J100030+023000"));
    let ra = m.column_by_name("ra").unwrap().as_primitive::<arrow_array::types::Float64Type>().value(0);
    let dec = m.column_by_name("dec").unwrap().as_primitive::<arrow_array::types::Float64Type>().value(0);
    assert_eq!((ra, dec), (150.125, 2.5));
    // Its `ID` keyword (here the primary header's) is the `id` column when asked for.
    assert!(m.column_by_name("id").is_none());
    let with_id = InputOptions { keep: vec!["id".into()], ..sci.clone() };
    run(std::slice::from_ref(&mef), with_id, StageTask::Classify, NanPolicy::Zero, &mef_out).unwrap();
    let ids = read(&mef_out).column_by_name("id").unwrap().as_primitive::<Int64Type>().clone();
    assert_eq!(ids.iter().collect::<Vec<_>>(), [Some(7)]);
    let missing = InputOptions { hdu: Some("VAR".into()), ..Default::default() };
    let err = inspect(&[mef.clone(), cube.clone()], &missing).unwrap_err().to_string();
    assert!(err.contains("no readable image"), "{err}");
    // The scaled pixels are what the model sees: the same prediction as from floats.
    let pred = strings(&b, "pred_class");
    let right = ["left", "right"];
    assert_eq!(pred[0].as_deref(), Some(right[data.labels[0]]));
    assert_eq!(pred[2].as_deref(), Some(right[data.labels[2]]));
    assert_eq!(strings(&m, "pred_class")[0].as_deref(), Some(right[data.labels[2]]));
}

/// A FITS file of one BITPIX -32 image whose header holds `cards` (80-character
/// images, as astropy writes them).
fn fits_with_cards(path: &Path, rows: usize, columns: usize, cards: &[String]) {
    let mut header = vec![
        "SIMPLE  =                    T".to_string(),
        "BITPIX  =                  -32".to_string(),
        "NAXIS   =                    2".to_string(),
        format!("NAXIS1  = {columns:>20}"),
        format!("NAXIS2  = {rows:>20}"),
    ];
    header.extend(cards.iter().cloned());
    header.push("END".to_string());
    let mut bytes: Vec<u8> = header.iter().flat_map(|c| format!("{c:<80}").into_bytes()).collect();
    bytes.resize(bytes.len().div_ceil(2880) * 2880, b' ');
    let data = rows * columns * 4;
    bytes.resize(bytes.len() + data.div_ceil(2880) * 2880, 0);
    std::fs::write(path, bytes).unwrap();
}

/// The zero points astropy gives the units and photometry keywords of survey and
/// space-telescope headers (`tests/oracle/zero_point_oracle.py`,
/// `fixtures/oracle/zero_points.json`), read from FITS files by the cutout reader.
#[test]
fn fits_headers_state_the_zero_points_astropy_gives_them() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/oracle/zero_points.json");
    let golden: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = golden["cases"].as_array().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = cases
        .iter()
        .enumerate()
        .map(|(i, case)| {
            let path = dir.path().join(format!("{i:02}.fits"));
            let cards: Vec<String> =
                case["cards"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
            fits_with_cards(&path, 8, 8, &cards);
            path
        })
        .collect();
    let mut reader = lensmae::stage::open_input(&files, &InputOptions::default()).unwrap();
    let batch = reader.next_batch(64).unwrap().unwrap();
    assert_eq!(batch.len(), cases.len());
    let mut with_zero_point = 0;
    for (flux, case) in batch.flux.iter().zip(cases) {
        let name = case["name"].as_str().unwrap();
        match (flux.ab_zero_point(), case["zero_point"].as_f64()) {
            (Some(got), Some(want)) => {
                assert!((got - want).abs() < 1e-9, "{name}: {got} vs astropy's {want}");
                with_zero_point += 1;
            }
            (None, None) => {}
            (got, want) => panic!("{name}: {got:?} vs astropy's {want:?}"),
        }
    }
    assert!(with_zero_point >= 25, "{with_zero_point} cases with a zero point");
}

/// The headers of `tests/oracle/wcs_oracle.py` with where astropy places their
/// centres (`fixtures/oracle/wcs_centres.json`).
fn wcs_oracle_cases() -> Vec<serde_json::Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/oracle/wcs_centres.json");
    let golden: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    golden["cases"].as_array().unwrap().clone()
}

#[test]
fn a_fits_cutout_without_object_keywords_is_placed_at_its_centre_as_astropy_places_it() {
    // tests/oracle/wcs_oracle.py: astropy's pixel_to_world at each header's centre
    // pixel (TAN with CD, PC, CROTA2, SIP; SIN, ZEA, ARC, STG), and headers whose
    // position must stay unknown (galactic, FK4, TPV, LONPOLE, swapped axes).
    let cases: Vec<serde_json::Value> =
        wcs_oracle_cases().into_iter().filter(|c| c["rows"] == 64 && c["columns"] == 64).collect();
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = cases
        .iter()
        .enumerate()
        .map(|(i, case)| {
            let path = dir.path().join(format!("{i:02}-{}.fits", case["name"].as_str().unwrap()));
            let cards: Vec<String> =
                case["cards"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
            let size = |k: &str| case[k].as_u64().unwrap() as usize;
            fits_with_cards(&path, size("rows"), size("columns"), &cards);
            path
        })
        .collect();
    let mut reader = lensmae::stage::open_input(&files, &InputOptions::default()).unwrap();
    let batch = reader.next_batch(64).unwrap().unwrap();
    assert_eq!(batch.len(), cases.len());
    let column = |name: &str| {
        let (_, array) = batch.carried.iter().find(|(f, _)| f.name() == name).unwrap();
        array.as_primitive::<arrow_array::types::Float64Type>().clone()
    };
    let (ra, dec) = (column("ra"), column("dec"));
    for (field, _) in batch.carried.iter().filter(|(f, _)| ["ra", "dec"].contains(&f.name().as_str())) {
        assert_eq!(field.metadata().get("unit").map(String::as_str), Some("deg"), "a FITS table's TUNIT");
    }
    for (row, case) in cases.iter().enumerate() {
        let name = case["name"].as_str().unwrap();
        match (case["ra"].as_f64(), case["dec"].as_f64()) {
            (Some(want_ra), Some(want_dec)) => {
                assert!(ra.is_valid(row) && dec.is_valid(row), "{name}: no position");
                // 1e-9 degrees is 3.6 micro-arcseconds.
                let d_ra = (ra.value(row) - want_ra + 180.0).rem_euclid(360.0) - 180.0;
                assert!(d_ra.abs() < 1e-9 && (dec.value(row) - want_dec).abs() < 1e-9, "{name}: {ra:?} {dec:?}");
                assert!((0.0..360.0).contains(&ra.value(row)), "{name}");
            }
            _ => assert!(ra.is_null(row) && dec.is_null(row), "{name}: a position where none is known"),
        }
    }
}

#[test]
fn super_resolved_cutouts_are_placed_on_the_sky_where_their_inputs_were() {
    // The headers of tests/oracle/wcs_oracle.py (TAN with CD, PC, CROTA2 and SIP;
    // SIN, ZEA, ARC, STG; FK5), super-resolved by the bundled model: each cutout is
    // first resampled to its 0.404"/px 16x16 grid, so `sr_wcs` carries the
    // regridding and the 4x finer sampling. Its centre must be where astropy put the
    // input's, and every pixel where the input's WCS puts that spot of the input.
    let dir = tempfile::tempdir().unwrap();
    let wcs_of = |path: &Path| {
        let mut reader = lensmae::stage::open_input(&[path.to_path_buf()], &InputOptions::default()).unwrap();
        let batch = reader.next_batch(1).unwrap().unwrap();
        (batch.wcs[0].clone(), batch.pixel_scales[0])
    };
    for case in &wcs_oracle_cases() {
        let name = case["name"].as_str().unwrap();
        let cards: Vec<String> = case["cards"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().into()).collect();
        let size = |k: &str| case[k].as_u64().unwrap() as usize;
        let (rows, columns) = (size("rows"), size("columns"));
        let input = dir.path().join(format!("{name}.fits"));
        fits_with_cards(&input, rows, columns, &cards);
        let out = dir.path().join(format!("{name}.parquet"));
        predict(&predict_options(std::slice::from_ref(&input), bundled(StageTask::Superres, Default::default()), &out))
            .unwrap();
        let sr_wcs = strings(&read(&out), "sr_wcs").remove(0);
        // `inspect` says which inputs super-resolution can place on the sky.
        let seen = lensmae::stage::inspect(std::slice::from_ref(&input), &InputOptions::default()).unwrap();
        let says = seen["input"]["layout"].as_str().unwrap().contains("a celestial WCS on 1 of 1 cutouts");
        assert_eq!(says, case["ra"].is_number(), "{name}: {seen}");
        let (Some(want_ra), Some(want_dec)) = (case["ra"].as_f64(), case["dec"].as_f64()) else {
            assert!(sr_wcs.is_none(), "{name}: a WCS where the input has none lensmae reads");
            continue;
        };
        let sr_wcs = sr_wcs.unwrap_or_else(|| panic!("{name}: no sr_wcs"));
        assert_eq!(sr_wcs.len() % 80, 0, "{name}");
        let sr_file = dir.path().join(format!("{name}-sr.fits"));
        let sr_cards: Vec<String> =
            sr_wcs.as_bytes().chunks(80).map(|c| String::from_utf8(c.to_vec()).unwrap()).collect();
        fits_with_cards(&sr_file, 64, 64, &sr_cards);
        let (sr, _) = wcs_of(&sr_file);
        let sr = sr.unwrap_or_else(|| panic!("{name}: lensmae cannot read its own sr_wcs"));
        let (input_wcs, input_scale) = wcs_of(&input);
        let input_wcs = input_wcs.unwrap();
        // Input pixels per super-resolved pixel: the 16x16 grid's 0.404"/px over 4.
        let ratio = 0.404 / input_scale.unwrap() / 4.0;
        let close = |(ra, dec): (f64, f64), (want_ra, want_dec): (f64, f64), what: &str| {
            let d_ra = ((ra - want_ra + 180.0).rem_euclid(360.0) - 180.0) * want_dec.to_radians().cos();
            // 1e-9 degrees is 3.6 micro-arcseconds.
            assert!(
                d_ra.abs() < 1e-9 && (dec - want_dec).abs() < 1e-9,
                "{name} {what}: ({ra}, {dec}) for ({want_ra}, {want_dec})"
            );
        };
        close(sr.sky_position(32.5, 32.5).unwrap(), (want_ra, want_dec), "centre against astropy");
        for (x, y) in [(1.0, 1.0), (64.0, 1.0), (1.0, 64.0), (64.0, 64.0), (20.0, 45.0)] {
            let on_input = |p: f64, len: usize| (len as f64 + 1.0) / 2.0 + (p - 32.5) * ratio;
            let want = input_wcs.sky_position(on_input(x, columns), on_input(y, rows)).unwrap();
            close(sr.sky_position(x, y).unwrap(), want, &format!("pixel ({x}, {y})"));
        }
    }
}

#[test]
fn super_resolved_cutouts_become_fits_files_placed_on_the_sky() {
    use lensmae::stage::sr_fits::write_sr_fits;
    // Three of the oracle's 64x64 headers lensmae reads and one it does not (its row
    // has pixels but no place on the sky), super-resolved in one run.
    let cases: Vec<serde_json::Value> =
        wcs_oracle_cases().into_iter().filter(|c| c["rows"] == 64 && c["columns"] == 64).collect();
    let placed = cases.iter().filter(|c| c["ra"].is_number()).take(3);
    let dir = tempfile::tempdir().unwrap();
    let inputs: Vec<PathBuf> = placed
        .chain(cases.iter().find(|c| !c["ra"].is_number()))
        .enumerate()
        .map(|(i, case)| {
            let cards: Vec<String> =
                case["cards"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().into()).collect();
            let size = |k: &str| case[k].as_u64().unwrap() as usize;
            let input = dir.path().join(format!("{i}.fits"));
            fits_with_cards(&input, size("rows"), size("columns"), &cards);
            input
        })
        .collect();
    let predictions = dir.path().join("sr.parquet");
    predict(&predict_options(&inputs, bundled(StageTask::Superres, Default::default()), &predictions)).unwrap();
    let table = read(&predictions);
    let sr_wcs = strings(&table, "sr_wcs");
    assert_eq!(sr_wcs.iter().filter(|w| w.is_some()).count(), 3, "{sr_wcs:?}");
    let out = dir.path().join("sr-fits");
    let summary = write_sr_fits(&predictions, &out, false).unwrap();
    assert_eq!((summary.rows, summary.written, summary.placed_on_sky, summary.without_sr_image), (4, 4, 3, 0));
    let images = table.column_by_name("sr_image").unwrap().as_fixed_size_list();
    for (r, wcs) in sr_wcs.iter().enumerate() {
        let file = out.join(format!("row-{r}.fits"));
        // The pixels of the table, and the WCS it says, to the last bit.
        let mut f = fitsio::FitsFile::open(&file).unwrap();
        let hdu = f.primary_hdu().unwrap();
        let pixels: Vec<f32> = hdu.read_image(&mut f).unwrap();
        assert_eq!(pixels, images.value(r).as_primitive::<Float32Type>().values().to_vec(), "row {r}");
        assert_eq!(hdu.read_key::<i64>(&mut f, "ROW").unwrap(), r as i64);
        let mut reader = lensmae::stage::open_input(std::slice::from_ref(&file), &InputOptions::default()).unwrap();
        let read_back = reader.next_batch(1).unwrap().unwrap().wcs.remove(0);
        assert_eq!(read_back.and_then(|w| w.header_cards()), *wcs, "row {r}");
    }
    // The same predictions written as FITS (`--out x.fits`: the table, the cube) give
    // the same files, byte for byte.
    let as_fits = dir.path().join("sr.fits");
    predict(&predict_options(&inputs, bundled(StageTask::Superres, Default::default()), &as_fits)).unwrap();
    let from_fits = dir.path().join("sr-fits-from-fits");
    assert_eq!(write_sr_fits(&as_fits, &from_fits, false).unwrap().placed_on_sky, 3);
    for r in 0..4 {
        let name = format!("row-{r}.fits");
        assert!(std::fs::read(out.join(&name)).unwrap() == std::fs::read(from_fits.join(&name)).unwrap(), "{name}");
    }
    // An existing folder is kept unless told otherwise.
    let again = write_sr_fits(&predictions, &out, false).unwrap_err().to_string();
    assert!(again.contains("already exists"), "{again}");
    // A table of other origin: integer ids name the files; a WCS text that would
    // put other keywords in the header is refused, naming its row, and leaves no folder.
    let ids: ArrayRef = Arc::new(Int64Array::from(vec![7, 9, 11, 13]));
    // (polars writes its strings as large ones)
    let wcs_column = |texts: Vec<Option<String>>| -> ArrayRef { Arc::new(arrow_array::LargeStringArray::from(texts)) };
    let column = |name: &str| {
        (table.schema().field_with_name(name).unwrap().clone(), table.column_by_name(name).unwrap().clone())
    };
    let statuses: ArrayRef = Arc::new(arrow_array::StringArray::from(vec!["ok", "failed: café/ü.fits", "ok", "ok"]));
    let mut hostile = sr_wcs.clone();
    hostile[1] = Some(format!("{}{:<80}", hostile[0].clone().unwrap(), "NAXIS1  =                    5"));
    for (texts, name) in [(sr_wcs.clone(), "ids.parquet"), (hostile, "hostile.parquet")] {
        write_parquet(
            &dir.path().join(name),
            vec![
                column("row"),
                (Field::new("id", DataType::Int64, false), ids.clone()),
                column("sr_image"),
                (Field::new("sr_wcs", DataType::LargeUtf8, true), wcs_column(texts)),
                // A status naming a path FITS header text cannot hold.
                (Field::new("status", DataType::Utf8, true), statuses.clone()),
            ],
        );
    }
    let by_id = dir.path().join("by-id");
    let summary = write_sr_fits(&dir.path().join("ids.parquet"), &by_id, false).unwrap();
    assert_eq!((summary.written, summary.placed_on_sky), (4, 3));
    let mut names: Vec<String> =
        std::fs::read_dir(&by_id).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["11.fits", "13.fits", "7.fits", "9.fits"]);
    let mut f = fitsio::FitsFile::open(by_id.join("9.fits")).unwrap();
    let hdu = f.primary_hdu().unwrap();
    assert_eq!(hdu.read_key::<String>(&mut f, "STATUS").unwrap(), "failed: caf?/?.fits");
    assert_eq!(hdu.read_key::<i64>(&mut f, "ID").unwrap(), 9);
    let refused = dir.path().join("refused");
    let e = write_sr_fits(&dir.path().join("hostile.parquet"), &refused, false).unwrap_err().to_string();
    assert!(e.contains("row 1: sr_wcs: card `NAXIS1") && e.contains("not a celestial WCS keyword"), "{e}");
    assert!(!refused.exists());
    assert_eq!(
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with(".refused"))
            .count(),
        0
    );
}

#[test]
fn npy_class_folders_and_superresolution_then_classification() {
    let dir = tempfile::tempdir().unwrap();
    let data = blobs(6, 9);
    let lr = shrink(&data.pixels);
    for (i, img) in lr.chunks(16).enumerate() {
        let class = ["left", "right"][data.labels[i]];
        std::fs::create_dir_all(dir.path().join("lr").join(class)).unwrap();
        let v: Vec<f64> = img.iter().map(|&x| x as f64).collect();
        lensmae::data::npy::write_npy_f64(&dir.path().join(format!("lr/{class}/img_{i}.npy")), &[4, 4], &v).unwrap();
    }
    std::fs::write(dir.path().join("lr/left/broken.npy"), b"not numpy").unwrap();
    let out = dir.path().join("pred.parquet");
    let inputs = [dir.path().join("lr")];
    run(&inputs, InputOptions::default(), StageTask::All, NanPolicy::Fail, &out).unwrap();
    let b = read(&out);
    assert_eq!(b.num_rows(), 7);
    let field = b.schema().field_with_name("sr_image").unwrap().clone();
    assert_eq!(field.metadata()["ARROW:extension:name"], "arrow.fixed_shape_tensor");
    assert_eq!(field.metadata()["ARROW:extension:metadata"], "{\"shape\":[16,16]}");
    let sr = b.column_by_name("sr_image").unwrap().as_fixed_size_list();
    let status = strings(&b, "status");
    let broken = status.iter().position(|s| s.as_deref().unwrap().starts_with("skipped: unreadable")).unwrap();
    assert!(sr.is_null(broken) && strings(&b, "label")[broken].as_deref() == Some("left"));
    assert_eq!(sr.null_count(), 1);
    // SR images come out in the input's units: each block's mean is near its LR pixel.
    let row = (0..7).find(|&r| r != broken).unwrap();
    let img = sr.value(row);
    let img = img.as_primitive::<Float32Type>().values();
    assert!(img.iter().all(|v| v.is_finite()) && img.len() == 256);
    // A classifier on 16x16 cannot take the 4x4 cutouts directly.
    let err = run(&inputs, InputOptions::default(), StageTask::Classify, NanPolicy::Fail, &out).unwrap_err();
    assert!(err.to_string().contains("cutouts are 4x4") && err.to_string().contains("takes 16x16"), "{err}");
}

fn tensor_table(path: &Path, data: &LabelledImages) {
    let item = Arc::new(Field::new("item", DataType::Float32, true));
    let images =
        FixedSizeListArray::new(item, 256, Arc::new(arrow_array::Float32Array::from(data.pixels.clone())), None);
    write_parquet(
        path,
        vec![
            (Field::new("id", DataType::Int64, false), Arc::new(Int64Array::from(data.ids.clone()))),
            (tensor_field("image", 16, 16), Arc::new(images)),
            (
                Field::new("label_idx", DataType::Int64, false),
                Arc::new(Int64Array::from_iter_values(data.labels.iter().map(|&l| l as i64))),
            ),
        ],
    );
}

#[test]
fn the_geometry_column_says_when_a_classifier_centred_the_deflector_or_could_not() {
    use lensmae::sim::{presets::preset, Simulator};
    let sim = Simulator::new(preset("survey").unwrap()).unwrap();
    let side = 64;
    // Six survey lenses two columns right of the cutout's centre, six more eight columns right.
    let pixels: Vec<f32> = (0..12)
        .flat_map(|i| {
            let img: Vec<f32> = sim.simulate(i % 3, 4, i as u64).image.pixels.into_iter().map(|v| v as f32).collect();
            let shift = if i < 6 { 2 } else { 8 };
            (0..side * side).map(move |k| img[(k / side) * side + ((k % side) + side - shift) % side])
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("off-centre.parquet");
    let item = Arc::new(Field::new("item", DataType::Float32, true));
    let images = FixedSizeListArray::new(item, 64 * 64, Arc::new(arrow_array::Float32Array::from(pixels)), None);
    let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..12));
    write_parquet(
        &input,
        vec![(tensor_field("image", 64, 64), Arc::new(images)), (Field::new("id", DataType::Int64, false), ids)],
    );
    let out = dir.path().join("out.parquet");
    let survey = classifier(Path::new("bundled:survey-classifier"), 3);
    let summary = predict(&predict_options(std::slice::from_ref(&input), survey, &out)).unwrap();
    let table = read(&out);
    let notes = strings(&table, "geometry");
    let moved_back = notes[..6]
        .iter()
        .filter(|n| n.as_deref().is_some_and(|n| n.starts_with("deflector centred from column +2")))
        .count();
    assert!(moved_back >= 5, "{notes:?}");
    // Beyond the classifier's reach: answered, flagged, and the note says why.
    let status = strings(&table, "status");
    let in_domain = table.column_by_name("in_domain").unwrap().as_boolean();
    let mut flagged = 0;
    for r in 6..12 {
        let note = notes[r].as_deref().unwrap();
        if note.starts_with("deflector more than 5 pixels off the centre (moved column +5, row ") {
            assert_eq!(status[r].as_deref(), Some("out_of_domain"), "row {r}");
            assert!(!in_domain.value(r), "row {r}");
            flagged += 1;
        }
    }
    assert!(flagged >= 5, "{notes:?}");
    assert_eq!(summary.off_centre, flagged);
    // `inspect` counts the rows by what was done to them.
    let seen = inspect(std::slice::from_ref(&out), &InputOptions::default()).unwrap();
    let count = |prefix: &str| notes.iter().flatten().filter(|n| n.starts_with(prefix)).count();
    let kind = |k: &str| seen["geometry"][k].as_u64().unwrap_or(0) as usize;
    assert_eq!(kind("deflector beyond the centring search"), flagged, "{seen}");
    assert_eq!(kind("deflector centred"), count("deflector centred from"), "{seen}");
    assert_eq!(kind("as is"), count("as is"), "{seen}");
    assert!(notes[..6].iter().all(|n| !n.as_deref().unwrap().contains("more than")), "{notes:?}");
    // A classifier that does not centre leaves the note alone.
    let model2 = classifier(Path::new("bundled:classifier"), 3);
    predict(&predict_options(std::slice::from_ref(&input), model2, &out)).unwrap();
    assert!(strings(&read(&out), "geometry").iter().all(|n| n.as_deref() == Some("as is")));
}

/// `opts` with its model options changed by `change`.
fn with_predictor(mut opts: PredictOptions, change: impl FnOnce(&mut PredictorOptions)) -> PredictOptions {
    change(&mut opts.predictor);
    opts
}

#[test]
fn shards_and_resumed_runs_merge_into_the_single_run() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.parquet"), dir.path().join("b.parquet"));
    tensor_table(&a, &blobs(10, 11));
    let mut second = blobs(7, 12);
    second.ids = (1000..1007).collect();
    tensor_table(&b, &second);
    let (clf, sr) = models();
    let opts = |out: &str, shard: Option<&str>, resume: bool| PredictOptions {
        inputs: vec![a.clone(), b.clone()],
        input: InputOptions::default(),
        predictor: PredictorOptions {
            model: Some(clf.clone()),
            sr_model: Some(sr.clone()),
            task: StageTask::Classify,
            batch_size: 3,
            device: candle_core::Device::Cpu,
            nan_policy: NanPolicy::Fail,
            pixel_scale: Default::default(),
            tta: Default::default(),
            observation: Default::default(),
            fit_refits: 0,
        },
        out: dir.path().join(out),
        overwrite: false,
        chunk_rows: 4,
        shard: shard.map(|s| s.parse().unwrap()),
        resume,
        cancel: Default::default(),
        command: None,
        progress: Default::default(),
    };
    let single = predict(&opts("single.parquet", None, false)).unwrap();
    assert_eq!((single.rows, single.chunks_written, single.catalogue_finished), (17, 1, None));
    let want = read(&dir.path().join("single.parquet"));
    let merged = |folder: &str| {
        let out = dir.path().join(format!("{folder}.parquet"));
        lensmae::stage::chunks::merge(&dir.path().join(folder), &out, true).unwrap();
        read(&out)
    };

    // Three shards (chunks of 4 rows cross the file boundary at row 10).
    let mut written = 0;
    for s in ["2/3", "0/3", "1/3"] {
        let part = predict(&opts("sharded", Some(s), false)).unwrap();
        written += part.chunks_written;
    }
    assert_eq!(written, 5);
    assert_eq!(merged("sharded"), want);
    // Merged over one of its own chunks (or into the folder): refused, the chunk kept.
    let first = dir.path().join("sharded/part-000000.parquet");
    let before = std::fs::read(&first).unwrap();
    for out in [first.clone(), dir.path().join("sharded")] {
        let e = lensmae::stage::chunks::merge(&dir.path().join("sharded"), &out, true).unwrap_err().to_string();
        assert!(e.contains("which the run would replace"), "{e}");
    }
    assert_eq!(std::fs::read(&first).unwrap(), before);

    // An interrupted run: one shard of two done and a half-written chunk left
    // under its temporary name (as a killed process leaves it), then resumed.
    predict(&opts("resumed", Some("1/2"), false)).unwrap();
    std::fs::write(dir.path().join("resumed/.part-000002.parquet.tmp-999999"), b"PAR1 half").unwrap();
    let err = lensmae::stage::chunks::merge(&dir.path().join("resumed"), &dir.path().join("x.parquet"), true);
    assert!(err.unwrap_err().to_string().contains("3 of 5 chunks are missing"));
    let rest = predict(&opts("resumed", None, true)).unwrap();
    assert_eq!((rest.chunks_written, rest.chunks_skipped, rest.rows), (3, 2, 9));
    assert!(!dir.path().join("resumed/.part-000002.parquet.tmp-999999").exists(), "a killed run's temporary");
    assert_eq!(merged("resumed"), want);
    // A chunk lost later is the only one redone.
    std::fs::remove_file(dir.path().join("resumed/part-000002.parquet")).unwrap();
    assert_eq!(predict(&opts("resumed", None, true)).unwrap().chunks_written, 1);
    assert_eq!(merged("resumed"), want);

    // Refusals: chunks without --resume, other chunk sizes, --resume into one file.
    let e = predict(&opts("resumed", None, false)).unwrap_err().to_string();
    assert!(e.contains("--resume to keep finished chunks"), "{e}");
    let refusal = |o: PredictOptions| predict(&o).unwrap_err().to_string();
    let e = refusal(PredictOptions { chunk_rows: 5, ..opts("resumed", None, true) });
    assert!(e.contains("--chunk-rows: 4 before, 5 now"), "{e}");
    let e = refusal(with_predictor(opts("resumed", None, true), |p| p.nan_policy = NanPolicy::SkipRow));
    assert!(e.contains("nan_policy: fail before, skip-row now"), "{e}");
    let e = refusal(with_predictor(opts("resumed", None, true), |p| p.batch_size = 4));
    assert!(e.contains("--batch-size: 3 before, 4 now"), "{e}");
    // What a smooth-lens fit is given for every cutout (other models ignore it).
    let e = refusal(with_predictor(opts("resumed", None, true), |p| p.observation.zero_point = Some(23.9)));
    assert!(e.contains("before, --zero-point 23.9 now"), "{e}");
    let e = refusal(with_predictor(opts("resumed", None, true), |p| p.observation.noise = FitNoise::Recipe));
    assert!(e.contains("--fit-noise: map before, recipe now"), "{e}");
    let rms = InputOptions { rms_hdu: Some("ERR".into()), ..InputOptions::default() };
    let e = refusal(PredictOptions { input: rms, ..opts("resumed", None, true) });
    assert!(e.contains("--rms-hdu: none before, ERR now"), "{e}");
    // (The identity names `tta` as it names nan_policy; this left/right classifier
    // is refused the turned views before that: mirrors would swap its classes.)
    let e = refusal(with_predictor(opts("resumed", None, true), |p| p.tta = TestTimeAugmentation::Dihedral));
    assert!(e.contains("trained without dihedral augmentation"), "{e}");
    let keep = InputOptions { keep: vec!["label_idx".into()], ..InputOptions::default() };
    let e = refusal(PredictOptions { input: keep, ..opts("resumed", None, true) });
    assert!(e.contains("carried columns"), "{e}");
    // The second input replaced by another with as many rows: refused, not mixed.
    let mut other = blobs(7, 13);
    other.ids = (1000..1007).collect();
    tensor_table(&b, &other);
    let e = refusal(opts("resumed", None, true));
    assert!(e.contains("b.parquet changed") && e.contains("holds chunks of another run"), "{e}");
    tensor_table(&b, &second);
    assert_eq!(predict(&opts("resumed", None, true)).unwrap().chunks_written, 0);
    // A chunk from another run copied in is refused by merge.
    std::fs::copy(dir.path().join("sharded/part-000001.parquet"), dir.path().join("resumed/part-000001.parquet"))
        .unwrap();
    assert_eq!(merged("resumed"), want, "the same run's chunk is welcome");
    predict(&with_predictor(opts("other-policy", None, false), |p| p.nan_policy = NanPolicy::Zero)).unwrap();
    std::fs::copy(dir.path().join("other-policy/part-000001.parquet"), dir.path().join("resumed/part-000001.parquet"))
        .unwrap();
    let e = lensmae::stage::chunks::merge(&dir.path().join("resumed"), &dir.path().join("x.parquet"), true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("part-000001.parquet") && e.contains("nan_policy is zero"), "{e}");
    // --overwrite (without --resume) of another run's folder replaces it whole.
    let replaced = with_predictor(opts("other-policy", None, false), |p| p.batch_size = 5);
    let e = predict(&replaced).unwrap_err().to_string();
    assert!(e.contains("holds chunks of another run") && e.contains("--overwrite to replace them"), "{e}");
    let run = predict(&PredictOptions { overwrite: true, ..replaced }).unwrap();
    assert_eq!(run.chunks_written, 5);
    assert_eq!(merged("other-policy").num_rows(), 17);

    // Cancelled (Ctrl-C): an error saying so, no temporary left, finished chunks kept.
    let cancel = lensmae::cancel::Cancel::new();
    cancel.cancel();
    let e = predict(&PredictOptions { cancel, ..opts("cancelled", None, false) }).unwrap_err();
    assert!(matches!(e, lensmae::Error::Interrupted(_)), "{e}");
    let left: Vec<String> = std::fs::read_dir(dir.path().join("cancelled"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, [lensmae::stage::chunks::MANIFEST]);
    let e = predict(&opts("one.parquet", None, true)).unwrap_err().to_string();
    assert!(e.contains("give --out a folder"), "{e}");
}

#[test]
fn a_hats_catalogue_gives_a_sibling_catalogue_with_the_same_partitions() {
    let input = crate::fixture("hats-cutouts"); // written by LSDB (tests/oracle/hats_fixture.py)
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("predictions");
    let (clf, _) = models();
    let opts = |shard: &str| PredictOptions {
        inputs: vec![input.clone()],
        input: InputOptions { shape: Some([16, 16]), ..Default::default() },
        predictor: classifier(clf, 8),
        out: out.clone(),
        overwrite: false,
        chunk_rows: 4,
        shard: Some(shard.parse().unwrap()),
        resume: false,
        cancel: Default::default(),
        command: None,
        progress: Default::default(),
    };
    let first = predict(&opts("0/2")).unwrap();
    assert!(first.catalogue_finished == Some(false) && !out.join("hats.properties").exists());
    let second = predict(&opts("1/2")).unwrap();
    assert_eq!(second.catalogue_finished, Some(true));
    assert_eq!(first.rows + second.rows, 40);
    // Every partition file mirrored, with its rows, ids and HEALPix index.
    let partitions = lensmae::data::hats::partition_files(&input).unwrap();
    assert_eq!(partitions.len(), 11);
    for relative in &partitions {
        let (a, b) = (read(&input.join(relative)), read(&out.join(relative)));
        assert_eq!(a.num_rows(), b.num_rows(), "{}", relative.display());
        for column in ["id", "_healpix_29"] {
            assert_eq!(a.column_by_name(column), b.column_by_name(column), "{column} of {}", relative.display());
        }
    }
    let csv = |root: &Path| {
        let mut lines: Vec<String> =
            std::fs::read_to_string(root.join("partition_info.csv")).unwrap().lines().map(String::from).collect();
        lines.sort();
        lines
    };
    assert_eq!(csv(&out), csv(&input));
    let props = lensmae::data::hats::read_properties(&out).unwrap();
    assert_eq!(props["hats_nrows"], "40");
    assert_eq!(props["hats_col_healpix"], "_healpix_29");
    assert!(out.join("dataset/_common_metadata").exists());
}

/// All pixels of an input, through the stage's own readers.
pub(crate) fn read_pixels(path: &Path, input: InputOptions) -> (Vec<f32>, Vec<Option<String>>) {
    let mut reader = lensmae::stage::open_input(&[path.to_path_buf()], &input).unwrap();
    let (mut pixels, mut problems) = (Vec::new(), Vec::new());
    while let Some(b) = reader.next_batch(3).unwrap() {
        pixels.extend(b.pixels);
        problems.extend(b.problems);
    }
    (pixels, problems)
}

fn expected(name: &str) -> Vec<f32> {
    let path = crate::fixture(&format!("stage/expected_{name}.npy"));
    lensmae::data::npy::read_npy(&path).unwrap().data.iter().map(|&v| v as f32).collect()
}

fn assert_same_pixels(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.is_nan() == w.is_nan() && (w.is_nan() || (g - w).abs() <= 1e-6 * w.abs().max(1.0)),
            "{what}[{i}]: {g} vs {w}"
        );
    }
}

#[test]
fn files_written_by_astropy_and_pyarrow_read_as_those_libraries_read_them() {
    // tests/oracle/stage_fixtures.py: astropy's scaled values (BSCALE/BZERO, BLANK as NaN, uint16).
    let (cube, _) = read_pixels(&crate::fixture("stage/cube_int16.fits"), InputOptions::default());
    assert_same_pixels(&cube, &expected("cube_int16_fits"), "int16 cube");
    assert_eq!(cube.iter().filter(|v| v.is_nan()).count(), 1);
    for ext in ["SCI", "ERR"] {
        let opts = InputOptions { hdu: Some(ext.into()), ..Default::default() };
        let (mef, _) = read_pixels(&crate::fixture("stage/mef_uint16.fits"), opts);
        assert_same_pixels(&mef, &expected(&format!("mef_uint16_fits_{ext}")), ext);
    }
    // One table, the same images as a tensor, a list<double> and gzipped FITS bytes.
    let table = crate::fixture("stage/stamps.parquet");
    let column =
        |name: &str| InputOptions { image_column: Some(name.into()), shape: Some([16, 16]), ..Default::default() };
    let want = expected("stamps_parquet");
    assert_same_pixels(&read_pixels(&table, column("tensor")).0, &want, "tensor");
    assert_same_pixels(&read_pixels(&table, column("stamp_list")).0, &want, "list<double>");
    let (stamps, problems) =
        read_pixels(&table, InputOptions { image_column: Some("cutoutScience".into()), ..Default::default() });
    assert_same_pixels(&stamps[..3 * 256], &want[..3 * 256], "FITS bytes");
    assert!(problems[3].as_deref().unwrap().starts_with("FITS stamp: not a FITS image"), "{problems:?}");
    let err = inspect(std::slice::from_ref(&table), &InputOptions::default()).unwrap_err().to_string();
    assert!(err.contains("several image columns") && err.contains("--image-col"), "{err}");
    let wrong = InputOptions { image_column: Some("ra".into()), ..Default::default() };
    let err = inspect(std::slice::from_ref(&table), &wrong).unwrap_err().to_string();
    assert!(err.contains("stamps.parquet") && err.contains("column `ra`") && err.contains("lists of numbers"), "{err}");

    // Through predict: the alert ids are carried, the broken stamp keeps its row.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pred.parquet");
    let opts = InputOptions { image_column: Some("cutoutScience".into()), ..Default::default() };
    run(&[table], opts, StageTask::Classify, NanPolicy::Fail, &out).unwrap();
    let b = read(&out);
    assert_eq!(strings(&b, "objectId")[3].as_deref(), Some("ZTF3"));
    assert!(strings(&b, "status")[3].as_deref().unwrap().starts_with("skipped: FITS stamp"));
}

#[test]
fn pyarrow_read_our_columns_and_tensor_as_the_golden_records() {
    // fixtures/stage/pyarrow_read.json: what pyarrow 26 saw in a `predict --task all`
    // output on stamps.parquet (tests/oracle/stage_fixtures.py check).
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(crate::fixture("stage/pyarrow_read.json")).unwrap()).unwrap();
    assert_eq!(golden["sr_image_type"], "extension<arrow.fixed_shape_tensor[value_type=float, shape=[64,64]]>");
    assert_eq!(golden["sr_image_numpy_shape"], serde_json::json!([3, 64, 64]));
    let carried = [
        Field::new("ra", DataType::Float64, true),
        Field::new("dec", DataType::Float64, true),
        Field::new("objectId", DataType::Utf8, true),
    ];
    let classes = ["axion", "cdm", "no_sub"].map(String::from);
    let schema =
        lensmae::stage::output::predictions_schema(&carried, &classes, false, Some([64, 64]), Default::default());
    let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(serde_json::json!(names), golden["columns"]);
    let sr = schema.field_with_name("sr_image").unwrap();
    assert_eq!(sr.metadata()["ARROW:extension:metadata"], "{\"shape\":[64,64]}");
    assert!(sr.is_nullable());
}

/// The blob images as a Parquet table with an `image` tensor column.
fn image_table(path: &Path, pixels: &[f32]) {
    let n = pixels.len() / 256;
    let values = arrow_array::Float32Array::from(pixels.to_vec());
    let item = Arc::new(Field::new("item", DataType::Float32, true));
    let images = FixedSizeListArray::new(item, 256, Arc::new(values), None);
    write_parquet(
        path,
        vec![
            (Field::new("id", DataType::Int64, false), Arc::new(Int64Array::from_iter_values(0..n as i64))),
            (tensor_field("image", 16, 16), Arc::new(images)),
        ],
    );
}

fn predict_with(model: &Path, input: &Path, out: &Path) -> RecordBatch {
    predict(&PredictOptions {
        inputs: vec![input.to_path_buf()],
        input: InputOptions::default(),
        predictor: classifier(model, 8),
        out: out.to_path_buf(),
        overwrite: true,
        chunk_rows: 1000,
        shard: None,
        resume: false,
        cancel: Default::default(),
        command: None,
        progress: Default::default(),
    })
    .unwrap();
    read(out)
}

#[test]
fn a_calibrated_classifier_flags_inputs_unlike_its_training_data() {
    use lensmae::train::calibrate::calibrate_checkpoint;
    let dir = tempfile::tempdir().unwrap();
    let (clf, _) = models();
    let calibrated = dir.path().join("calibrated.safetensors");
    let summary =
        calibrate_checkpoint(clf, &blobs(200, 21), &calibrated, 0.99, 32, false, &candle_core::Device::Cpu).unwrap();
    assert!(summary.temperature > 0.0 && summary.ood_threshold > 0.0, "{summary:?}");
    let recorded = lensmae::model::checkpoint::read_checkpoint_meta(&calibrated).unwrap().calibration.unwrap();
    assert_eq!(recorded.ood_threshold_from, lensmae::model::domain::THRESHOLD_FROM_OUT_OF_FOLD_WITH_BOUNDS);
    // A min-max model: how finely its inputs must be stored is recorded (blobs are noisy floats).
    let floor = recorded.distinct_pixels_floor.expect("a floor for a min-max model");
    assert!(floor > 0.85, "{floor}");

    // Its own domain: blobs it has not seen; about 1% flagged.
    let own = dir.path().join("own.parquet");
    image_table(&own, &blobs(200, 22).pixels);
    let b = predict_with(&calibrated, &own, &dir.path().join("own-pred.parquet"));
    let flagged = strings(&b, "status").iter().filter(|s| s.as_deref() == Some("out_of_domain")).count();
    assert!(flagged <= 10, "{flagged} of 200 in-domain images flagged");
    let scores: Vec<f32> = b.column_by_name("ood_score").unwrap().as_primitive::<Float32Type>().values().to_vec();

    // The same images stored on 24 levels each: flagged, though their features alone
    // would let some through.
    let coarse: Vec<f32> = blobs(200, 22)
        .pixels
        .chunks(256)
        .flat_map(|image| {
            let (lo, hi) = image.iter().fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
            image.iter().map(move |&v| lo + ((v - lo) / (hi - lo) * 23.0).round() * (hi - lo) / 23.0)
        })
        .collect();
    let input = dir.path().join("coarse.parquet");
    image_table(&input, &coarse);
    let b = predict_with(&calibrated, &input, &dir.path().join("coarse-pred.parquet"));
    assert!(strings(&b, "status").iter().all(|s| s.as_deref() == Some("out_of_domain")));
    let theirs = b.column_by_name("ood_score").unwrap().as_primitive::<Float32Type>();
    let passing = theirs.values().iter().filter(|&&s| s as f64 <= recorded.ood_threshold).count();
    assert!(passing > 0, "every coarse copy's score is above the threshold: the levels were not what flagged them");

    // Uniform noise and constant images: all flagged, their scores above every own one.
    let noise: Vec<f32> = (0..200 * 256).map(|i| ((i as u64 * 2654435761) % 1000) as f32 / 1000.0).collect();
    let constant: Vec<f32> = (0..200 * 256).map(|i| (i / 256) as f32 * 0.1).collect();
    for (name, pixels) in [("noise", noise), ("constant", constant)] {
        let input = dir.path().join(format!("{name}.parquet"));
        image_table(&input, &pixels);
        let b = predict_with(&calibrated, &input, &dir.path().join(format!("{name}-pred.parquet")));
        let status = strings(&b, "status");
        assert!(status.iter().all(|s| s.as_deref() == Some("out_of_domain")), "{name}: {status:?}");
        let in_domain = b.column_by_name("in_domain").unwrap().as_boolean();
        assert!((0..in_domain.len()).all(|i| !in_domain.value(i)), "{name}");
        let theirs = b.column_by_name("ood_score").unwrap().as_primitive::<Float32Type>();
        let lowest = theirs.values().iter().fold(f32::INFINITY, |a, &b| a.min(b));
        let own_max = scores.iter().fold(0.0f32, |a, &b| a.max(b));
        assert!(lowest > own_max, "{name}: lowest score {lowest}, own images up to {own_max}");
    }
}

#[test]
fn a_model_whose_output_is_not_finite_answers_nothing() {
    use lensmae::model::checkpoint::{load_checkpoint, save_checkpoint};
    let dir = tempfile::tempdir().unwrap();
    let (clf, _) = models();
    let (mut tensors, meta) = load_checkpoint(clf, &candle_core::Device::Cpu).unwrap();
    let head = tensors["head.weight"].clone();
    tensors.insert("head.weight".into(), (head * f64::NAN).unwrap());
    let broken = dir.path().join("nan.safetensors");
    save_checkpoint(&broken, &tensors, &meta).unwrap();
    let input = dir.path().join("blobs.parquet");
    image_table(&input, &blobs(20, 23).pixels);
    let b = predict_with(&broken, &input, &dir.path().join("pred.parquet"));
    let status = strings(&b, "status");
    assert!(status.iter().all(|s| s.as_deref() == Some("failed: the model's output is not finite")), "{status:?}");
    assert_eq!(b.column_by_name("p_left").unwrap().null_count(), 20);
    assert_eq!(b.column_by_name("pred_class").unwrap().null_count(), 20);
}

/// A FITS file written card by card: `cards` (without END) and `data`, each padded
/// to 2,880-byte blocks; `cut` bytes removed from the end.
pub(crate) fn handmade_fits(path: &Path, cards: &[&str], data: &[u8], cut: usize) {
    let mut bytes: Vec<u8> = Vec::new();
    for card in cards.iter().copied().chain(["END"]) {
        bytes.extend(format!("{card:<80}").as_bytes());
    }
    bytes.resize(bytes.len().div_ceil(2880) * 2880, b' ');
    bytes.extend(data);
    bytes.resize(bytes.len().div_ceil(2880) * 2880, 0);
    bytes.truncate(bytes.len() - cut);
    std::fs::write(path, bytes).unwrap();
}

pub(crate) fn cube_cards(naxis3: &str) -> Vec<String> {
    ["SIMPLE  =                    T", "BITPIX  =                  -32", "NAXIS   =                    3"]
        .iter()
        .map(|s| s.to_string())
        .chain([
            "NAXIS1  =                   16".to_string(),
            "NAXIS2  =                   16".to_string(),
            format!("NAXIS3  = {naxis3:>20}"),
        ])
        .collect()
}

#[test]
fn hostile_and_truncated_fits_headers_are_checked_against_the_bytes_there() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pred.parquet");
    // 5.7 KB declaring 2^31 planes of 16x16: one row saying so, no allocation of it.
    let header_only = dir.path().join("header-only.fits");
    let cards = cube_cards("2147483648");
    handmade_fits(&header_only, &cards.iter().map(String::as_str).collect::<Vec<_>>(), &[], 0);
    let report = inspect(std::slice::from_ref(&header_only), &InputOptions::default()).unwrap();
    assert_eq!(report["input"]["rows"], 1, "{report}");
    run(&[header_only], InputOptions::default(), StageTask::Classify, NanPolicy::Fail, &out).unwrap();
    let status = strings(&read(&out), "status");
    assert_eq!(status.len(), 1);
    assert!(status[0].as_deref().unwrap().contains("declares 2147483648 planes"), "{status:?}");

    // 20 planes, the file cut 2,880 bytes short: 19 complete planes predicted.
    let cut = dir.path().join("cut.fits");
    let data: Vec<u8> = (0..20 * 256).flat_map(|i| ((i % 97) as f32 / 97.0).to_be_bytes()).collect();
    let cards = cube_cards("20");
    handmade_fits(&cut, &cards.iter().map(String::as_str).collect::<Vec<_>>(), &data, 2880);
    run(&[cut], InputOptions::default(), StageTask::Classify, NanPolicy::Fail, &out).unwrap();
    let status = strings(&read(&out), "status");
    assert_eq!(status.len(), 20);
    assert!(status[..19].iter().all(|s| s.as_deref().is_some_and(|s| s == "ok" || s == "out_of_domain")), "{status:?}");
    assert!(status[19].as_deref().unwrap().starts_with("skipped: truncated file"), "{status:?}");

    // Cut 5,760 bytes short (planes 16-19 gone: a batch of only missing rows, which
    // carries no pixels), then a whole file: each row keeps its own status.
    let (cut4, whole) = (dir.path().join("cut4.fits"), dir.path().join("whole.fits"));
    handmade_fits(&cut4, &cards.iter().map(String::as_str).collect::<Vec<_>>(), &data, 5760);
    handmade_fits(&whole, &cards.iter().map(String::as_str).collect::<Vec<_>>(), &data, 0);
    run(&[cut4, whole], InputOptions::default(), StageTask::Classify, NanPolicy::Fail, &out).unwrap();
    let status = strings(&read(&out), "status");
    let skipped: Vec<usize> =
        (0..status.len()).filter(|&r| status[r].as_deref().unwrap().starts_with("skipped: truncated")).collect();
    assert_eq!((status.len(), skipped), (40, vec![16, 17, 18, 19]), "{status:?}");

    // An image of 2^31 x 2^31 pixels: refused with its size, nothing allocated.
    let huge = dir.path().join("huge.fits");
    let cards = [
        "SIMPLE  =                    T",
        "BITPIX  =                  -32",
        "NAXIS   =                    2",
        "NAXIS1  =           2147483648",
        "NAXIS2  =           2147483648",
    ];
    handmade_fits(&huge, &cards, &[], 0);
    let err = inspect(&[huge], &InputOptions::default()).unwrap_err().to_string();
    assert!(err.contains("beyond 2^64 bytes, larger than any file"), "{err}");
}

#[test]
fn label_strings_name_the_classes_when_a_file_has_no_class_list() {
    // `label_idx` in an order of its own, no lensmae metadata: the strings decide.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("labelled.parquet");
    let values = arrow_array::Float32Array::from(vec![0.5f32; 3 * 256]);
    let item = Arc::new(Field::new("item", DataType::Float32, true));
    let images = FixedSizeListArray::new(item, 256, Arc::new(values), None);
    write_parquet(
        &path,
        vec![
            (tensor_field("image", 16, 16), Arc::new(images)),
            (
                Field::new("label", DataType::Utf8, false),
                Arc::new(arrow_array::StringArray::from(vec!["no_sub", "axion", "cdm"])),
            ),
            (Field::new("label_idx", DataType::Int64, false), Arc::new(Int64Array::from(vec![0, 1, 2]))),
        ],
    );
    let data = lensmae::data::images::read_labelled_images(&path, "image").unwrap();
    assert_eq!(data.class_names, ["axion", "cdm", "no_sub"]);
    assert_eq!(data.labels, [2, 0, 1]);
}

#[test]
fn super_resolution_pairs_need_no_labels() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pairs.parquet");
    let item = || Arc::new(Field::new("item", DataType::Float32, true));
    let lr = FixedSizeListArray::new(item(), 16, Arc::new(arrow_array::Float32Array::from(vec![0.5f32; 2 * 16])), None);
    let hr =
        FixedSizeListArray::new(item(), 256, Arc::new(arrow_array::Float32Array::from(vec![0.5f32; 2 * 256])), None);
    write_parquet(&path, vec![(tensor_field("lr", 4, 4), Arc::new(lr)), (tensor_field("hr", 16, 16), Arc::new(hr))]);
    let pairs = lensmae::data::images::read_image_pairs(&path).unwrap();
    assert_eq!((pairs.factor(), pairs.hr.len()), (4, 2));
    assert_eq!(pairs.hr.class_names, [lensmae::data::images::UNLABELLED]);
    // Classification still needs labels.
    let err = lensmae::data::images::read_labelled_images(&path, "hr").unwrap_err().to_string();
    assert!(err.contains("no `label_idx` or `label` column"), "{err}");
}

/// Files as other writers make them: every codec pandas, pyarrow, Spark or DuckDB
/// may choose, version-2 data pages, page indexes, small pages, several row groups.
/// Each is read back pixel for pixel (the bounded walk of `data::parquet_bounds`
/// must accept all of them).
#[test]
fn parquet_files_with_every_codec_and_page_layout_are_read() {
    use parquet::basic::{BrotliLevel, Compression, GzipLevel, ZstdLevel};
    use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
    let dir = tempfile::tempdir().unwrap();
    let pixels: Vec<f32> = (0..40 * 64).map(|i| (i as f32 * 0.37).sin()).collect();
    let values = arrow_array::Float32Array::from(pixels.clone());
    let images =
        FixedSizeListArray::new(Arc::new(Field::new("item", DataType::Float32, true)), 64, Arc::new(values), None);
    let schema = Arc::new(Schema::new(vec![tensor_field("image", 8, 8)]));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(images) as ArrayRef]).unwrap();
    let codecs = [
        Compression::UNCOMPRESSED,
        Compression::SNAPPY,
        Compression::GZIP(GzipLevel::default()),
        Compression::LZ4,
        Compression::LZ4_RAW,
        Compression::BROTLI(BrotliLevel::default()),
        Compression::ZSTD(ZstdLevel::default()),
    ];
    for (i, codec) in codecs.into_iter().enumerate() {
        let props = WriterProperties::builder()
            .set_compression(codec)
            .set_writer_version(if i % 2 == 0 { WriterVersion::PARQUET_2_0 } else { WriterVersion::PARQUET_1_0 })
            .set_statistics_enabled(if i % 3 == 0 { EnabledStatistics::Page } else { EnabledStatistics::Chunk })
            .set_data_page_size_limit(if i % 2 == 0 { 256 } else { 1 << 20 })
            .set_max_row_group_row_count(Some(if i % 2 == 0 { 7 } else { 1000 }))
            .build();
        let path = dir.path().join(format!("codec-{i}.parquet"));
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema.clone(), Some(props))
                .unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let (read, problems) = read_pixels(&path, InputOptions::default());
        assert_eq!(read, pixels, "{codec:?}");
        assert!(problems.iter().all(Option::is_none), "{codec:?}: {problems:?}");
    }
}

/// Cutouts of another size and pixel scale than the bundled classifier's (64x64 at
/// 0.101"/px) are brought to its grid: the three DeepLense samples zero-padded to
/// 96x96 (no WCS: refused until `--pixel-scale model`, then cropped back exactly),
/// and split into 128x128 quarter pixels at 0.0505"/px with a WCS (resampled back
/// exactly, flagged out of the model's domain as 2x finer). Both give the
/// 64x64 run's probabilities bit for bit.
#[test]
fn cutouts_of_other_sizes_and_pixel_scales_are_brought_to_the_model_grid() {
    use lensmae::stage::geometry::PixelScale;
    let dir = tempfile::tempdir().unwrap();
    let samples: Vec<Vec<f32>> = ["axion", "cdm", "nosub"]
        .iter()
        .map(|n| {
            let a = lensmae::data::npy::read_npy(&crate::fixture(&format!("deeplense-samples/{n}.npy"))).unwrap();
            a.data.iter().map(|&v| v as f32).collect()
        })
        .collect();
    let cube = |name: &str, side: usize, scale: Option<f64>, image: &dyn Fn(&[f32]) -> Vec<f32>| -> PathBuf {
        let path = dir.path().join(name);
        let pixels: Vec<f32> = samples.iter().flat_map(|s| image(s)).collect();
        let desc = ImageDescription { data_type: ImageType::Float, dimensions: &[3, side, side] };
        let mut f = fitsio::FitsFile::create(&path).with_custom_primary(&desc).open().unwrap();
        let hdu = f.primary_hdu().unwrap();
        hdu.write_image(&mut f, &pixels).unwrap();
        if let Some(scale) = scale {
            hdu.write_key(&mut f, "CTYPE1", "RA---TAN").unwrap();
            hdu.write_key(&mut f, "CTYPE2", "DEC--TAN").unwrap();
            hdu.write_key(&mut f, "CD1_1", -scale / 3600.0).unwrap();
            hdu.write_key(&mut f, "CD2_2", scale / 3600.0).unwrap();
        }
        path
    };
    let same = cube("same.fits", 64, Some(0.101), &|s| s.to_vec());
    let padded = cube("padded.fits", 96, None, &|s| {
        let mut out = vec![0f32; 96 * 96];
        for y in 0..64 {
            out[(y + 16) * 96 + 16..(y + 16) * 96 + 80].copy_from_slice(&s[y * 64..(y + 1) * 64]);
        }
        out
    });
    let finer = cube("finer.fits", 128, Some(0.0505), &|s| {
        (0..128 * 128).map(|i| s[(i / 128 / 2) * 64 + (i % 128) / 2] / 4.0).collect()
    });
    let run = |input: &Path, pixel_scale: PixelScale| -> lensmae::Result<RecordBatch> {
        let out = dir.path().join("pred.parquet");
        predict(&predict_options(&[input.to_path_buf()], bundled(StageTask::Classify, pixel_scale), &out))?;
        Ok(read(&out))
    };
    let probabilities = |b: &RecordBatch| -> Vec<f32> {
        ["p_axion", "p_cdm", "p_no_sub"]
            .iter()
            .flat_map(|c| b.column_by_name(c).unwrap().as_primitive::<Float32Type>().values().to_vec())
            .collect()
    };
    let reference = run(&same, PixelScale::Recorded).unwrap();
    assert!(strings(&reference, "geometry").iter().all(|g| g.as_deref() == Some("as is")));
    let scales = reference.column_by_name("pixel_scale").unwrap().as_primitive::<arrow_array::types::Float64Type>();
    assert!((scales.value(0) - 0.101).abs() < 1e-12, "the WCS's scale is reported");

    let e = run(&padded, PixelScale::Recorded).unwrap_err().to_string();
    assert!(e.contains("cutouts are 96x96") && e.contains("--pixel-scale model"), "{e}");
    let cropped = run(&padded, PixelScale::Model).unwrap();
    assert_eq!(probabilities(&cropped), probabilities(&reference));
    assert_eq!(strings(&cropped, "geometry")[0].as_deref(), Some("cropped to 64x64"));
    assert_eq!(strings(&cropped, "status"), strings(&reference, "status"));

    let resampled = run(&finer, PixelScale::Recorded).unwrap();
    assert_eq!(probabilities(&resampled), probabilities(&reference));
    let note = strings(&resampled, "geometry")[0].clone().unwrap();
    assert!(
        note.starts_with("resampled 128x128 at 0.0505 to 0.101 arcsec/px") && note.contains("out of its domain"),
        "{note}"
    );
    assert!(strings(&resampled, "status").iter().all(|s| s.as_deref() == Some("out_of_domain")));
    let in_domain = resampled.column_by_name("in_domain").unwrap().as_boolean();
    assert!((0..3).all(|r| !in_domain.value(r)));
    // The same cutouts declared at the model's scale by hand: used as they are.
    let given = run(&same, PixelScale::Arcsec(0.101)).unwrap();
    assert_eq!(probabilities(&given), probabilities(&reference));
}

/// `--out x.fits`: a FITS table of the same rows and values as the Parquet output,
/// the super-resolved cutouts as the primary cube, and what astropy saw in such
/// a file (`tests/oracle/stage_fixtures.py check-fits`, `fixtures/stage/astropy_read_fits.json`).
#[test]
fn predictions_written_as_fits_hold_the_parquet_rows_and_read_in_astropy() {
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(crate::fixture("stage/astropy_read_fits.json")).unwrap())
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = |out: &Path| {
        let stamps = [crate::fixture("stage/stamps.parquet")];
        predict(&PredictOptions {
            input: InputOptions { image_column: Some("cutoutScience".into()), ..Default::default() },
            overwrite: false,
            command: Some("lensmae predict ...".into()),
            ..predict_options(&stamps, bundled(StageTask::All, Default::default()), out)
        })
    };
    let (fits_out, parquet_out) = (dir.path().join("pred.fits"), dir.path().join("pred.parquet"));
    run(&fits_out).unwrap();
    run(&parquet_out).unwrap();
    let parquet = read(&parquet_out);
    let mut f = fitsio::FitsFile::open(&fits_out).unwrap();
    let table = f.hdu("PREDICTIONS").unwrap();
    let golden_columns: Vec<String> =
        golden["columns"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
    let fitsio::hdu::HduInfo::TableInfo { column_descriptions, num_rows } = &table.info else { panic!("a table") };
    let names: Vec<String> = column_descriptions.iter().map(|c| c.name.clone()).collect();
    assert_eq!(names, golden_columns);
    assert_eq!(*num_rows, golden["rows"].as_u64().unwrap() as usize);
    let k = 1 + names.iter().position(|n| n == "pixel_scale").unwrap();
    assert_eq!(table.read_key::<String>(&mut f, &format!("TUNIT{k}")).unwrap(), "arcsec/pixel");
    let status: Vec<String> = table.read_col(&mut f, "status").unwrap();
    assert_eq!(status, strings(&parquet, "status").into_iter().map(Option::unwrap).collect::<Vec<_>>());
    assert_eq!(serde_json::json!(status), golden["status"]);
    let p_cdm: Vec<f32> = table.read_col(&mut f, "p_cdm").unwrap();
    let want = parquet.column_by_name("p_cdm").unwrap().as_primitive::<Float32Type>();
    for (r, &p) in p_cdm.iter().enumerate() {
        if want.is_null(r) {
            assert!(p.is_nan(), "a null probability is NaN in FITS");
        } else {
            assert_eq!(p, want.value(r));
        }
    }
    // The cube: one plane per row, NaN where the row has no image.
    let primary = f.primary_hdu().unwrap();
    let cube: Vec<f32> = primary.read_image(&mut f).unwrap();
    let sr = parquet.column_by_name("sr_image").unwrap().as_fixed_size_list();
    for r in 0..4 {
        let plane = &cube[r * 4096..(r + 1) * 4096];
        if sr.is_null(r) {
            assert!(plane.iter().all(|v| v.is_nan()));
            assert!(golden["cube_nan_rows"].as_array().unwrap().contains(&serde_json::json!(r)));
        } else {
            assert_eq!(plane, sr.value(r).as_primitive::<Float32Type>().values().as_ref());
        }
    }
    assert_eq!(primary.read_key::<String>(&mut f, "COMMAND").unwrap(), "lensmae predict ...");
    assert!(golden["warnings"].as_array().unwrap().is_empty(), "astropy warned: {}", golden["warnings"]);
    // Existing outputs stay unless --overwrite, as for Parquet.
    assert!(run(&fits_out).unwrap_err().to_string().contains("exists"));
}
