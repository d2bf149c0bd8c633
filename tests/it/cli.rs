//! The `lensmae` binary end to end.

use arrow_array::cast::AsArray;
use arrow_array::types::Float32Type;
use arrow_array::{FixedSizeListArray, Float32Array};
use arrow_schema::{DataType, Field};
use lensmae::data::parquet::tensor_field;
use std::process::Command;
use std::sync::Arc;

fn lensmae(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lensmae")).args(args).output().unwrap()
}

/// Runs lensmae and asserts success.
fn ok(args: &[&str]) -> std::process::Output {
    let run = lensmae(args);
    assert!(run.status.success(), "{args:?}: {}", String::from_utf8_lossy(&run.stderr));
    run
}

/// Runs lensmae and asserts exit code 2 with `needle` in the message.
fn fails(args: &[&str], needle: &str) {
    let run = lensmae(args);
    assert_eq!(run.status.code(), Some(2), "{args:?} should fail");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains(needle), "{args:?}: {stderr}");
}

/// Writes a 16x16 version of the Model II recipe (for the tiny model) to `path`.
fn write_small_recipe(path: &str) {
    let recipe = lensmae::sim::presets::preset_toml("deeplense-model2")
        .unwrap()
        .replace("size = 64", "size = 16")
        .replace("pixel_scale = 0.101", "pixel_scale = 0.404");
    std::fs::write(path, recipe).unwrap();
}

#[test]
fn simulate_writes_a_dataset_and_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let run = lensmae(&[
        "simulate",
        "--preset",
        "deeplense-model3",
        "--n-per-class",
        "3",
        "--seed",
        "4",
        "--out",
        out,
        "--threads",
        "2",
    ]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("wrote 9 rows"), "{stderr}");
    assert!(dir.path().join("dataset.parquet").exists() && dir.path().join("config.toml").exists());
    // The recorded recipe remakes the same bytes.
    let dir2 = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let again = lensmae(&[
        "simulate",
        "--config",
        config.to_str().unwrap(),
        "--n-per-class",
        "3",
        "--seed",
        "4",
        "--out",
        dir2.path().to_str().unwrap(),
        "-q",
    ]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(
        std::fs::read(dir.path().join("dataset.parquet")).unwrap(),
        std::fs::read(dir2.path().join("dataset.parquet")).unwrap()
    );
}

#[test]
fn bad_input_exits_2_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "name = \"x\"\nfoo = 1\n").unwrap();
    let run = lensmae(&["simulate", "--config", bad.to_str().unwrap(), "--out", dir.path().to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("bad.toml") && stderr.contains("foo"), "{stderr}");
    let run = lensmae(&["simulate", "--preset", "model9", "--out", dir.path().to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("deeplense-model2"));
    let run = lensmae(&["simulate", "--classes", "wdm", "--out", dir.path().to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("unknown class `wdm`"));
    // A thread count no machine here runs: 20,000 rayon workers aborted the process,
    // 4,096 took 5 GB and minutes before any work.
    let run = lensmae(&["simulate", "--threads", "20000", "--out", dir.path().to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("--threads must be at most"));
    // A folder where a pipeline file or a chunk folder was meant ("Is a directory",
    // "No such file" of a file the user never named).
    let folder = dir.path().to_str().unwrap();
    let run = lensmae(&["report", folder]);
    assert!(String::from_utf8_lossy(&run.stderr).contains("give the pipeline's TOML file"));
    let run = lensmae(&["merge", "--out", dir.path().join("m.parquet").to_str().unwrap(), folder]);
    assert!(String::from_utf8_lossy(&run.stderr).contains("not the folder of a `predict --out DIR` run"));
    // Outputs over inputs: `evaluate --report` over the labelled images it scores, and
    // `model export` over the checkpoint it compacts, replaced them with --overwrite.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = dir.path().join("data.parquet");
    std::fs::copy(root.join("fixtures/catalog/deeplense-model2-12.parquet"), &data).unwrap();
    let model = dir.path().join("model.safetensors");
    std::fs::copy(root.join("models/classifier.safetensors"), &model).unwrap();
    let (d, m) = (data.to_str().unwrap(), model.to_str().unwrap());
    for argv in [
        vec!["evaluate", "--model", m, "--input", d, "--report", d, "--overwrite"],
        vec!["model", "export", "--model", m, "--out", m, "--overwrite"],
        vec!["model", "calibrate", "--model", m, "--data", d, "--out", d, "--overwrite"],
    ] {
        let run = lensmae(&argv);
        assert_eq!(run.status.code(), Some(2), "{argv:?}");
        assert!(String::from_utf8_lossy(&run.stderr).contains("which the run would replace"), "{argv:?}");
    }
    assert_eq!(
        std::fs::read(&data).unwrap(),
        std::fs::read(root.join("fixtures/catalog/deeplense-model2-12.parquet")).unwrap()
    );
    assert_eq!(std::fs::read(&model).unwrap(), std::fs::read(root.join("models/classifier.safetensors")).unwrap());
}

#[test]
fn a_device_this_build_cannot_use_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.safetensors");
    let train = |device: &str| {
        let args = ["pretrain", "--data", "nowhere.parquet", "--out", out.to_str().unwrap(), "--device", device];
        lensmae(&args)
    };
    let run = train("tpu:0");
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("`tpu:0` is not a device"));
    if !lensmae::model::device::CUDA_COMPILED {
        fails(&["evaluate", "--model", "m.safetensors", "--input", "x.parquet", "--device", "cuda:1"], "without CUDA");
        let run = train("cuda");
        assert_eq!(run.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&run.stderr).contains("built without CUDA"));
    }
}

#[test]
fn predict_runs_the_bundled_models_when_no_model_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let catalog = root.join("fixtures/catalog/deeplense-model2-12.parquet");
    ok(&["predict", "--input", catalog.to_str().unwrap(), "--keep", "label", "--out", &d("p.parquet")]);
    let batch = crate::stage::read(std::path::Path::new(&d("p.parquet")));
    let file = std::fs::File::open(d("p.parquet")).unwrap();
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let meta = builder.schema().metadata().clone();
    assert_eq!(meta["lensmae:model"], "bundled:classifier");
    assert_eq!(meta["lensmae:model_sha256"].len(), 64);
    assert_eq!(meta["lensmae:tta"], "none");
    assert_eq!(batch.num_rows(), 12);
    // Averaging over the 8 turns and mirrors: refused for this model, which was
    // trained on one orientation; recorded for one trained on all eight.
    let cat = catalog.to_str().unwrap();
    fails(&["predict", "--input", cat, "--tta", "dihedral", "--out", &d("x.parquet")], "--augment none");
    fails(&["predict", "--input", cat, "--tta", "quarter", "--out", &d("x.parquet")], "one of none, dihedral");
    let survey = ["--model", "bundled:survey-classifier", "--tta", "dihedral", "--out", &d("tta.parquet")];
    ok(&[&["predict", "--input", cat][..], &survey[..]].concat());
    let file = std::fs::File::open(d("tta.parquet")).unwrap();
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    assert_eq!(builder.schema().metadata()["lensmae:tta"], "dihedral");
    let strings = |name: &str| -> Vec<String> {
        crate::stage::strings(&batch, name).into_iter().map(Option::unwrap_or_default).collect()
    };
    assert!(strings("status").iter().all(|s| s == "ok"), "{:?}", strings("status"));
    // Unseen lenses (seed 99): the bundled classifier is far above chance (4 of 12).
    let correct = strings("pred_class").iter().zip(strings("label")).filter(|(p, l)| *p == l).count();
    assert!(correct >= 8, "{correct} of 12 right");

    // 16x16 cutouts of a HATS catalogue: super-resolved, then classified, by the bundled pair.
    let hats = root.join("fixtures/hats-cutouts");
    ok(&[
        "predict",
        "--input",
        hats.to_str().unwrap(),
        "--shape",
        "16,16",
        "--task",
        "all",
        "--out",
        &d("hats.parquet"),
    ]);
    // Uniform noise: super-resolved noise is nothing like a lens, and the bundled
    // classifier says so for every row.
    let mut statuses = Vec::new();
    let mut stack = vec![std::path::PathBuf::from(d("hats.parquet"))];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else if p.extension().is_some_and(|e| e == "parquet") && !p.to_string_lossy().contains("_metadata") {
            statuses.extend(crate::stage::strings(&crate::stage::read(&p), "status"));
        }
    }
    assert_eq!(statuses.len(), 40);
    assert!(statuses.iter().all(|s| s.as_deref() == Some("out_of_domain")), "{statuses:?}");
    // Survey lenses (noise, the lens galaxy's light, varied lenses): out of the domain too.
    let survey_args =
        ["simulate", "--preset", "survey", "--n-per-class", "4", "--seed", "3", "--out", &d("survey"), "-q"];
    ok(&[&survey_args[..], &["--refit-detectability"]].concat());
    let default = ok(&["predict", "--input", &d("survey/dataset.parquet"), "--out", &d("survey.parquet")]);
    let survey = crate::stage::strings(&crate::stage::read(std::path::Path::new(&d("survey.parquet"))), "status");
    assert!(survey.iter().all(|s| s.as_deref() == Some("out_of_domain")), "{survey:?}");
    // ... and the user is pointed to the model trained on such lenses, which takes them in.
    let note = String::from_utf8_lossy(&default.stderr);
    assert!(note.contains("try `--model bundled:survey-classifier`"), "{note}");
    let for_survey = d("survey-model.parquet");
    let centred = ok(&[
        "predict",
        "--input",
        &d("survey/dataset.parquet"),
        "--model",
        "bundled:survey-classifier",
        "--out",
        &for_survey,
    ]);
    // Cutouts centred on their lens draw no note on centring; the same lenses eight
    // columns off do.
    let off_centre_note = "more than 5 pixels from the centre";
    assert!(!String::from_utf8_lossy(&centred.stderr).contains(off_centre_note));
    let lenses = crate::stage::read(std::path::Path::new(&d("survey/dataset.parquet")));
    let pixels = lenses.column_by_name("image").unwrap().as_fixed_size_list().values().as_primitive::<Float32Type>();
    let side = 64;
    let moved: Vec<f32> =
        (0..pixels.len()).map(|i| pixels.value(i - i % side + (i % side + side - 8) % side)).collect();
    let item = Arc::new(Field::new("item", DataType::Float32, true));
    let images = FixedSizeListArray::new(item, (side * side) as i32, Arc::new(Float32Array::from(moved)), None);
    crate::stage::write_parquet(
        std::path::Path::new(&d("off-centre.parquet")),
        vec![(tensor_field("image", side, side), Arc::new(images))],
    );
    let off = ok(&[
        "predict",
        "--input",
        &d("off-centre.parquet"),
        "--model",
        "bundled:survey-classifier",
        "--out",
        &d("off-centre-predictions.parquet"),
    ]);
    let note = String::from_utf8_lossy(&off.stderr);
    assert!(note.contains("with the deflector beyond") && note.contains(off_centre_note), "{note}");
    let statuses = crate::stage::strings(&crate::stage::read(std::path::Path::new(&for_survey)), "status");
    let inside = statuses.iter().filter(|s| s.as_deref() == Some("ok")).count();
    assert!(inside >= 10, "{statuses:?}");
    // evaluate reports them per bin of sub_snr (with the false alarms on no_sub), the
    // in-domain fraction, and draws the reliability diagram and sensitivity curves.
    let report = d("survey-eval.json");
    ok(&["evaluate", "--model", "bundled:classifier", "--input", &d("survey/dataset.parquet"), "--report", &report]);
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["domain"]["in_domain_fraction"], 0.0);
    let binned = json["binned"].as_array().unwrap();
    let sub_snr = binned.iter().find(|b| b["parameter"] == "sub_snr").unwrap();
    let with_substructure: u64 =
        sub_snr["bins"].as_array().unwrap().iter().map(|b| b["n_substructure"].as_u64().unwrap()).sum();
    assert_eq!(with_substructure, 8, "{sub_snr}");
    assert!(sub_snr["false_alarm"].is_number());
    // ... and per bin of what a smooth-lens refit leaves of it.
    let refit = binned.iter().find(|b| b["parameter"] == "sub_snr_refit").unwrap();
    let refitted: u64 = refit["bins"].as_array().unwrap().iter().map(|b| b["n_substructure"].as_u64().unwrap()).sum();
    assert_eq!(refitted, 8, "{refit}");
    // with a detection AUC against all no_sub and, where some of the 4 no_sub lenses
    // share the bin's source magnitudes, against those.
    let bins = refit["bins"].as_array().unwrap();
    assert!(bins.iter().all(|b| b["detection_auc"].is_number()), "{refit}");
    assert!(bins.iter().any(|b| b["detection_auc_matched"].is_number()), "{refit}");
    // The same rows through `predict`'s table: `evaluate --predictions` puts any
    // model's per-row output through this report, and gives the same one.
    let survey_data = d("survey/dataset.parquet");
    let from_table = d("survey-table.json");
    ok(&["evaluate", "--predictions", &d("survey.parquet"), "--input", &survey_data, "--report", &from_table]);
    let table: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&from_table).unwrap()).unwrap();
    assert_eq!(table["predictions"], d("survey.parquet"));
    assert_eq!(table["report"]["n"], json["report"]["n"]);
    assert_eq!(table["report"]["class_names"], json["report"]["class_names"]);
    let auc = |j: &serde_json::Value| j["report"]["metrics"]["macro_auc"].as_f64().unwrap();
    assert!((auc(&table) - auc(&json)).abs() < 1e-6, "{} vs {}", auc(&table), auc(&json));
    assert_eq!(table["domain"]["in_domain_fraction"], 0.0);
    let detection = |j: &serde_json::Value| -> Vec<f64> {
        let refit = j["binned"].as_array().unwrap().iter().find(|b| b["parameter"] == "sub_snr_refit").unwrap();
        refit["bins"].as_array().unwrap().iter().map(|b| b["detection_auc"].as_f64().unwrap()).collect()
    };
    let (a, b) = (detection(&table), detection(&json));
    assert!(a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-6), "{a:?} vs {b:?}");
    assert!(std::fs::metadata(d("survey-table.sensitivity-sub_snr_refit.png")).unwrap().len() > 1000);
    // The issue's goal subset (sub_snr >= 10 with every no_sub), from both paths alike.
    let detectable = |j: &serde_json::Value| -> Vec<(String, u64, f64)> {
        let subsets = j["detectable"].as_array().unwrap().iter();
        subsets
            .map(|d| {
                let name = d["parameter"].as_str().unwrap().to_string();
                (name, d["n_substructure"].as_u64().unwrap(), d["metrics"]["macro_auc"].as_f64().unwrap())
            })
            .collect()
    };
    let (a, b) = (detectable(&table), detectable(&json));
    assert_eq!(a.iter().map(|d| d.0.as_str()).collect::<Vec<_>>(), ["sub_snr", "sub_snr_refit"]);
    let above_ten: u64 = sub_snr["bins"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["low"].as_f64().unwrap() >= 10.0)
        .map(|b| b["n_substructure"].as_u64().unwrap())
        .sum();
    assert_eq!(b[0].1, above_ten, "{}", json["detectable"]);
    assert!(a.iter().zip(&b).all(|(x, y)| x.1 == y.1 && (x.2 - y.2).abs() < 1e-6), "{a:?} vs {b:?}");
    // A row whose prediction failed (null probabilities) is counted in the report,
    // left out of its metrics, and the exit code says so.
    let batch = crate::stage::read(std::path::Path::new(&d("survey.parquet")));
    let columns: Vec<(String, arrow_array::ArrayRef)> = batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .filter(|(f, _)| f.name() == "id" || f.name().starts_with("p_"))
        .map(|(f, c)| {
            let c = if f.name().starts_with("p_") {
                let mut v: Vec<Option<f32>> =
                    c.as_any().downcast_ref::<arrow_array::Float32Array>().unwrap().iter().collect();
                v[0] = None;
                std::sync::Arc::new(arrow_array::Float32Array::from(v)) as arrow_array::ArrayRef
            } else {
                c.clone()
            };
            (f.name().clone(), c)
        })
        .collect();
    let failed = arrow_array::RecordBatch::try_from_iter(columns).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(d("failed.parquet")).unwrap(),
        failed.schema(),
        None,
    )
    .unwrap();
    w.write(&failed).unwrap();
    w.close().unwrap();
    let failed_report = d("failed.json");
    fails(
        &["evaluate", "--predictions", &d("failed.parquet"), "--input", &survey_data, "--report", &failed_report],
        "1 rows have no probabilities",
    );
    let failed: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&failed_report).unwrap()).unwrap();
    assert_eq!(failed["unscored_ids"].as_array().unwrap().len(), 1);
    assert_eq!(failed["report"]["n"].as_u64().unwrap() + 1, json["report"]["n"].as_u64().unwrap());
    // inspect reads a predictions table too: its model, rows by status, the share in
    // the model's domain (the survey lenses are all outside the Model II one).
    let summary = |path: &str| -> serde_json::Value {
        serde_json::from_slice(&ok(&["inspect", "--input", path]).stdout).unwrap()
    };
    let table_summary = summary(&d("survey.parquet"));
    assert_eq!(table_summary["rows"], 12);
    assert_eq!(table_summary["model"], "bundled:classifier");
    assert_eq!(table_summary["tta"], "none");
    assert_eq!(table_summary["status"], serde_json::json!({"out_of_domain": 12}));
    assert_eq!(table_summary["in_domain_fraction"], 0.0);
    let counted: u64 =
        table_summary["most_probable_class"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(counted, 12);
    assert_eq!(summary(&d("failed.parquet"))["rows_without_probabilities"], 1);
    // The same predictions as a FITS table (for TOPCAT and astropy) are read back alike.
    ok(&["predict", "--input", &survey_data, "--out", &d("survey.fits")]);
    let fits_summary = summary(&d("survey.fits"));
    for key in ["rows", "model", "tta", "status", "in_domain_fraction", "most_probable_class"] {
        assert_eq!(fits_summary[key], table_summary[key], "{key}");
    }
    let from_fits = d("survey-fits.json");
    ok(&["evaluate", "--predictions", &d("survey.fits"), "--input", &survey_data, "--report", &from_fits]);
    let fits: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&from_fits).unwrap()).unwrap();
    assert_eq!(fits["report"]["n"], table["report"]["n"]);
    assert!((auc(&fits) - auc(&table)).abs() < 1e-6, "{} vs {}", auc(&fits), auc(&table));
    assert_eq!(fits["domain"], table["domain"]);
    fails(&["evaluate", "--predictions", &survey_data, "--input", &survey_data], "no `p_<class>` probability columns");
    fails(&["evaluate", "--input", &survey_data], "--model");
    for png in [
        "survey-eval.reliability.png",
        "survey-eval.sensitivity-sub_snr.png",
        "survey-eval.sensitivity-sub_snr_refit.png",
        "survey-eval.roc.png",
    ] {
        assert!(std::fs::metadata(d(png)).unwrap().len() > 1000, "{png}");
    }

    // The survey SR model on noisy survey pairs it has not seen: ahead of bicubic.
    ok(&[
        "simulate",
        "--preset",
        "survey",
        "--task",
        "superres",
        "--factor",
        "4",
        "--n-per-class",
        "4",
        "--seed",
        "43",
        "--out",
        &d("survey-sr"),
        "-q",
    ]);
    let sr_report = d("survey-sr.json");
    ok(&[
        "evaluate",
        "--model",
        "bundled:survey-superres",
        "--input",
        &d("survey-sr/dataset.parquet"),
        "--report",
        &sr_report,
    ]);
    let sr: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&sr_report).unwrap()).unwrap();
    let psnr = |m: &str| sr["superres"][m]["psnr"].as_f64().unwrap();
    assert!(psnr("model") > psnr("bicubic") + 5.0, "{}", sr["superres"]);

    let info = String::from_utf8(ok(&["model", "info", "bundled:superres"]).stdout).unwrap();
    assert!(info.contains("\"task\": \"superres\"") && info.contains("\"weights_dtype\": \"f16\""), "{info}");
    fails(&["model", "info", "bundled:nothing"], "no such bundled model");

    // Export: f16 weights, half the bytes, the same predictions to ~1e-3.
    let full = d("full.safetensors");
    ok(&["simulate", "--preset", "deeplense-model2", "--n-per-class", "4", "--seed", "5", "--out", &d("data"), "-q"]);
    let data = d("data/dataset.parquet");
    // 4 images a class leave no validation images at the default 10%: said before any work.
    fails(&["finetune", "--scratch", "--data", &data, "--out", &full], "leaves no validation images");
    let small = root.join("pipelines/models/vit-w64-d2-p8.json");
    let small = small.to_str().unwrap();
    let common = ["--data", &data, "--model", small, "--epochs", "1", "--batch-size", "4", "--val-fraction", "0.25"];
    let common = [&common[..], &["--standardise-pixels"]].concat();
    ok(&[&["finetune", "--scratch", "--out", &full][..], &common[..]].concat());
    ok(&["model", "export", "--model", &full, "--out", &d("half.safetensors")]);
    let half = candle_core::safetensors::load(d("half.safetensors"), &candle_core::Device::Cpu).unwrap();
    assert_eq!(half["head.weight"].dtype(), candle_core::DType::F16);
    assert_eq!(half["preprocess.pixel_std"].dtype(), candle_core::DType::F32, "statistics stay f32");
    let size = |p: &str| std::fs::metadata(p).unwrap().len() as f64;
    assert!(size(&d("half.safetensors")) < 0.6 * size(&full));
    let probs = |model: &str, out: &str| {
        ok(&["predict", "--input", &data, "--model", model, "--out", &d(out)]);
        let batch = crate::stage::read(std::path::Path::new(&d(out)));
        let col = batch.column_by_name("p_cdm").unwrap();
        col.as_any().downcast_ref::<arrow_array::Float32Array>().unwrap().values().to_vec()
    };
    let (p32, p16) = (probs(&full, "p32.parquet"), probs(&d("half.safetensors"), "p16.parquet"));
    let worst = p32.iter().zip(&p16).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(worst < 5e-3, "f16 weights moved a probability by {worst}");

    // A ResNet through the same commands: trained, described, exported (its running
    // statistics stay f32) and predicting; the ViT's pooling is refused for it by name.
    let (resnet, resnet_out) = (root.join("pipelines/models/resnet18-w16.json"), d("resnet.safetensors"));
    let resnet_args = ["--data", &data, "--model", resnet.to_str().unwrap(), "--epochs", "1", "--batch-size", "4"];
    let resnet_args = [&resnet_args[..], &["--val-fraction", "0.25", "--out", &resnet_out]].concat();
    fails(&[&["finetune", "--scratch", "--pooling", "mean"][..], &resnet_args[..]].concat(), "--pooling: the ResNet");
    ok(&[&["finetune", "--scratch"][..], &resnet_args[..]].concat());
    let info = String::from_utf8(ok(&["model", "info", &d("resnet.safetensors")]).stdout).unwrap();
    assert!(info.contains("\"width\": 16") && info.contains("\"pooling\": null"), "{info}");
    ok(&["model", "export", "--model", &d("resnet.safetensors"), "--out", &d("resnet-half.safetensors")]);
    let half = candle_core::safetensors::load(d("resnet-half.safetensors"), &candle_core::Device::Cpu).unwrap();
    assert_eq!(half["layers.0.conv1.weight"].dtype(), candle_core::DType::F16);
    assert_eq!(half["layers.0.bn1.running_var"].dtype(), candle_core::DType::F32);
    let p = probs(&d("resnet-half.safetensors"), "resnet.parquet");
    assert!(p.len() == 12 && p.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)), "{p:?}");
}

#[test]
fn inspect_describes_an_input_and_predict_names_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    write_small_recipe(&d("small.toml"));
    let run = ok(&["simulate", "--config", &d("small.toml"), "--n-per-class", "2", "--out", &d("data")]);
    assert!(String::from_utf8_lossy(&run.stderr).contains("simulate: images 6 of 6 (100.0%)"));
    let data = d("data/dataset.parquet");
    let report: serde_json::Value = serde_json::from_slice(&ok(&["inspect", "--input", &data]).stdout).unwrap();
    assert_eq!(report["input"]["rows"], 6);
    assert_eq!(report["input"]["image_shape"], serde_json::json!([16, 16]));
    assert_eq!(report["first_rows_usable"], 6);
    // No --model: the bundled 64x64 classifier at 0.101"/px. The table records its
    // 0.404"/px: resampled, every row flagged (4x coarser than the model's).
    let run = ok(&["predict", "--input", &data, "--out", &d("p.parquet")]);
    let summary: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(summary["out_of_domain"], 6, "{summary}");
    // No terminal here: a progress line (at most every 30 s, and at the end).
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(log.contains("predict: rows 6 of 6 (100.0%)"), "{log}");
    std::fs::remove_file(d("p.parquet")).unwrap();
    // 16x16 cutouts that record no scale: refused, naming the ways on.
    std::fs::create_dir(d("npy")).unwrap();
    lensmae::data::npy::write_npy_f64(&dir.path().join("npy/a.npy"), &[16, 16], &[0.5; 256]).unwrap();
    fails(&["predict", "--input", &d("npy"), "--out", &d("p.parquet")], "--pixel-scale model` to crop or pad");
    fails(&["predict", "--input", &d("npy"), "--out", &d("p.parquet")], "(or `--task all`");
    fails(&["predict", "--input", &data, "--model", &data, "--out", &d("p.parquet")], "not a safetensors");
    fails(&["inspect", "--input", &d("missing.parquet")], "missing.parquet");
    fails(&["inspect", "--input", &data, "--image-col", "flux"], "no column `flux`");
    assert!(!dir.path().join("p.parquet").exists());
}

#[test]
fn print_config_round_trips_and_presets_are_listed() {
    let run = lensmae(&["simulate", "--preset", "survey", "--print-config"]);
    assert!(run.status.success());
    let text = String::from_utf8(run.stdout).unwrap();
    assert!(lensmae::sim::SimConfig::from_toml(&text).is_ok());
    let list = String::from_utf8(lensmae(&["presets"]).stdout).unwrap();
    for name in ["deeplense-model1", "deeplense-model2", "deeplense-model3", "survey"] {
        assert!(list.contains(name), "{list}");
    }
}

#[test]
fn pretrain_finetune_evaluate_and_model_info_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    write_small_recipe(&d("small.toml"));
    ok(&["simulate", "--config", &d("small.toml"), "--n-per-class", "20", "--out", &d("data"), "-q"]);
    let data = d("data/dataset.parquet");
    let common = ["--data", &data, "--model", "tiny", "--epochs", "1", "--batch-size", "16", "--threads", "1"];
    let run = ok(&[&["pretrain"], &common[..], &["--out", &d("mae.safetensors"), "--mask-ratio", "0.75"]].concat());
    // No terminal here: one line per epoch instead of a progress bar.
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(log.contains("epoch 1/") && log.contains("validation loss"), "{log}");
    ok(&[&["finetune", "--init", &d("mae.safetensors")], &common[..], &["--out", &d("clf.safetensors")]].concat());
    ok(&["evaluate", "--model", &d("clf.safetensors"), "--input", &data, "--report", &d("report.json")]);
    // Per-pixel standardisation is kept in the checkpoint and repeated by evaluate,
    // as is the pooling of the head (here a weight per token position).
    let std_args = ["finetune", "--scratch", "--standardise-pixels", "--pooling", "flatten"];
    ok(&[&std_args[..], &common[..], &["--out", &d("std.safetensors")]].concat());
    let std_info = String::from_utf8(ok(&["model", "info", &d("std.safetensors")]).stdout).unwrap();
    assert!(std_info.contains("minmax+pixel-standardise"), "{std_info}");
    assert!(std_info.contains("\"pooling\": \"flatten\""), "{std_info}");
    ok(&["evaluate", "--model", &d("std.safetensors"), "--input", &data, "--report", &d("std.json")]);
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(d("report.json")).unwrap()).unwrap();
    assert_eq!(report["report"]["n"], 60);
    assert!(report["report"]["metrics"]["macro_auc"].as_f64().unwrap() >= 0.0);
    let png = std::fs::read(d("report.roc.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "the ROC plot beside the report is a PNG");
    let info = String::from_utf8(ok(&["model", "info", &d("mae.safetensors")]).stdout).unwrap();
    assert!(info.contains("\"task\": \"mae\"") && info.contains("\"seed\": 42"), "{info}");

    fails(&["evaluate", "--model", &d("mae.safetensors"), "--input", &data], "needs a classifier");
    fails(&["pretrain", "--data", &data, "--epochs", "1", "--out", &d("big.safetensors")], "the model takes 64x64");
    fails(&["model", "info", &data], "not a safetensors file");
    fails(
        &[
            "finetune",
            "--init",
            &d("clf.safetensors"),
            "--data",
            &data,
            "--model",
            "tiny",
            "--out",
            &d("x.safetensors"),
        ],
        "MAE",
    );
}

#[test]
fn superres_finetune_and_evaluate_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    write_small_recipe(&d("small.toml"));
    let sim = ["simulate", "--config", &d("small.toml"), "--n-per-class", "12", "--task", "superres", "-q"];
    ok(&[&sim[..], &["--factor", "4", "--out", &d("x4")]].concat());
    ok(&[&sim[..], &["--factor", "2", "--out", &d("x2")]].concat());
    let pairs = d("x4/dataset.parquet");
    let common = ["--data", &pairs, "--model", "tiny", "--epochs", "1", "--batch-size", "8", "--threads", "1"];
    ok(&[
        &["finetune", "--task", "superres", "--scratch", "--residual"],
        &common[..],
        &["--out", &d("sr.safetensors")],
    ]
    .concat());
    ok(&["evaluate", "--model", &d("sr.safetensors"), "--input", &pairs, "--report", &d("sr.json")]);
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(d("sr.json")).unwrap()).unwrap();
    for method in ["model", "bicubic", "nearest"] {
        let m = &report["superres"][method];
        assert_eq!(m["n"], 36, "{method}");
        assert!(m["ssim"].as_f64().unwrap() > 0.0 && m["psnr"].as_f64().unwrap() > 0.0, "{method}: {m}");
    }
    assert_eq!(&std::fs::read(d("sr.grid.png")).unwrap()[..4], b"\x89PNG");
    let info = String::from_utf8(ok(&["model", "info", &d("sr.safetensors")]).stdout).unwrap();
    assert!(info.contains("\"task\": \"superres\"") && info.contains("\"residual\": true"), "{info}");

    // Joint fine-tuning: one encoder, two checkpoints that evaluate like any other.
    ok(&[
        &["finetune", "--task", "joint", "--scratch", "--standardise-pixels"],
        &common[..],
        &["--out", &d("joint-clf.safetensors"), "--superres-out", &d("joint-sr.safetensors")],
    ]
    .concat());
    ok(&["evaluate", "--model", &d("joint-sr.safetensors"), "--input", &pairs, "--report", &d("joint-sr.json")]);
    ok(&["evaluate", "--model", &d("joint-clf.safetensors"), "--input", &pairs, "--image-col", "hr"]);
    let cpu = candle_core::Device::Cpu;
    let clf = candle_core::safetensors::load(d("joint-clf.safetensors"), &cpu).unwrap();
    let sr = candle_core::safetensors::load(d("joint-sr.safetensors"), &cpu).unwrap();
    let encoder_keys: Vec<&String> = clf.keys().filter(|k| k.starts_with("encoder.")).collect();
    assert!(!encoder_keys.is_empty() && clf.contains_key("head.weight") && !clf.contains_key("out.weight"));
    assert!(sr.contains_key("out.weight") && !sr.contains_key("head.weight"));
    for key in encoder_keys {
        let diff = (&clf[key] - &sr[key]).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(diff, 0.0, "{key}: the two checkpoints share one encoder");
    }
    let info = String::from_utf8(ok(&["model", "info", &d("joint-clf.safetensors")]).stdout).unwrap();
    assert!(info.contains("\"superres_weight\": 10.0") && info.contains("minmax+pixel-standardise"), "{info}");
    fails(
        &[&["finetune", "--task", "joint", "--scratch"], &common[..], &["--out", &d("j.safetensors")]].concat(),
        "superres-out",
    );

    // A x4 model on x2 pairs, and pairs without an `lr` column.
    fails(&["evaluate", "--model", &d("sr.safetensors"), "--input", &d("x2/dataset.parquet")], "the model takes 4x4");
    let classify = d("x4/../c");
    ok(&["simulate", "--config", &d("small.toml"), "--n-per-class", "2", "--out", &classify, "-q"]);
    fails(
        &[
            &["finetune", "--task", "superres", "--scratch", "--data", &format!("{classify}/dataset.parquet")],
            &common[2..],
            &["--out", &d("y.safetensors")],
        ]
        .concat(),
        "lr",
    );
}

#[test]
fn a_pipeline_runs_its_steps_and_a_rerun_skips_what_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    write_small_recipe(&d("small.toml"));
    let pipeline = |finetune_epochs: usize, extra: &str| {
        format!(
            r#"[pipeline]
dir = "{run}"

[[step]]
name = "data"
command = "simulate"
args = {{ config = "{recipe}", n-per-class = 8, seed = 1, out = "{{dir}}/data", overwrite = true, quiet = true }}

[[step]]
name = "mae"
command = "pretrain"
args = {{ data = "{{dir}}/data/dataset.parquet", model = "tiny", epochs = 1, batch-size = 8, threads = 1, out = "{{dir}}/mae.safetensors", overwrite = true }}

[[step]]
name = "clf"
command = "finetune"
args = {{ task = "classify", data = "{{dir}}/data/dataset.parquet", init = "{{dir}}/mae.safetensors", epochs = {finetune_epochs}, batch-size = 8, out = "{{dir}}/clf.safetensors", overwrite = true{extra} }}

[[step]]
name = "eval"
command = "evaluate"
args = {{ model = "{{dir}}/clf.safetensors", input = "{{dir}}/data/dataset.parquet", report = "{{dir}}/eval.json", overwrite = true }}

[[step]]
name = "predict"
command = "predict"
args = {{ input = ["{{dir}}/data/dataset.parquet"], model = "{{dir}}/clf.safetensors", out = "{{dir}}/pred.parquet", overwrite = true }}
"#,
            run = d("run"),
            recipe = d("small.toml"),
        )
    };
    let file = d("pipeline.toml");
    std::fs::write(&file, pipeline(1, "")).unwrap();
    let first = ok(&["run", &file]);
    assert!(String::from_utf8_lossy(&first.stdout).contains("| eval | classifier | macro AUC |"));
    assert!(dir.path().join("run/pred.parquet").exists());
    let report = std::fs::read_to_string(dir.path().join("run/report.md")).unwrap();
    assert!(report.contains("| eval | ") && report.contains("eval.roc.png"), "{report}");
    assert!(dir.path().join("run/curves-classify.png").exists());
    let again = String::from_utf8(ok(&["run", &file]).stderr).unwrap();
    assert_eq!(again.matches("unchanged: skipped").count(), 5, "{again}");
    // Another fine-tuning budget reruns it and what reads its output, nothing before.
    std::fs::write(&file, pipeline(2, "")).unwrap();
    let changed = String::from_utf8(ok(&["run", &file]).stderr).unwrap();
    for (step, skipped) in [("data", true), ("mae", true), ("clf", false), ("eval", false), ("predict", false)] {
        assert_eq!(changed.contains(&format!("[{step}] done before, unchanged")), skipped, "{step}: {changed}");
    }
    // A bad key is refused before any step runs, naming the step.
    std::fs::write(&file, pipeline(3, ", epoks = 2")).unwrap();
    fails(&["run", &file], "step `clf`");
    assert!(std::fs::read_to_string(dir.path().join("run/.lensmae-run/clf.sha256")).is_ok());
    let unknown = d("unknown.toml");
    std::fs::write(&unknown, "[pipeline]\ndir = \"x\"\n[[step]]\nname = \"a\"\ncommand = \"simulate\"\nargz = {}\n")
        .unwrap();
    fails(&["run", &unknown], "argz");
}

#[test]
fn the_committed_pipelines_parse_and_their_knobs_are_checked() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let pipelines = [
        ("pipelines/quickstart.toml", 10),
        ("pipelines/paper.toml", 36),
        ("pipelines/bundled.toml", 15),
        ("pipelines/survey.toml", 18),
        ("pipelines/survey-residual.toml", 13),
        ("pipelines/survey-residual-recalibrate.toml", 6),
    ];
    let mut committed: Vec<String> = std::fs::read_dir(root.join("pipelines"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".toml"))
        .map(|name| format!("pipelines/{name}"))
        .collect();
    committed.sort();
    let mut checked: Vec<String> = pipelines.iter().map(|(file, _)| file.to_string()).collect();
    checked.sort();
    assert_eq!(committed, checked, "every committed pipeline is checked here");
    for (file, steps) in pipelines {
        let path = root.join(file);
        let run = ok(&["run", path.to_str().unwrap(), "--dry-run", "--force"]);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(stderr.lines().filter(|l| l.starts_with('[')).count(), steps, "{file}: {stderr}");
    }
    let paper = root.join("pipelines/paper.toml");
    let paper = paper.to_str().unwrap();
    let scaled = ok(&["run", paper, "--dry-run", "--force", "--set", "per_class=30000", "--set", "pretrain_epochs=10"]);
    let stderr = String::from_utf8_lossy(&scaled.stderr);
    assert!(stderr.contains("--n-per-class 30000 --out runs/paper-30000/data"), "{stderr}");
    fails(&["run", paper, "--dry-run", "--set", "per_klass=3"], "no var `per_klass`");
    fails(&["run", paper, "--dry-run", "--set", "per_class"], "NAME=VALUE");
    // The paper's GPU command line: the device and precision reach the steps that
    // compute, and only them (simulate takes neither).
    let on_gpu = ok(&["run", paper, "--dry-run", "--force", "--device", "cuda", "--precision", "bf16"]);
    let stderr = String::from_utf8_lossy(&on_gpu.stderr);
    for line in stderr.lines().filter(|l| l.starts_with('[')) {
        let computes =
            ["pretrain", "finetune", "evaluate", "predict"].iter().any(|c| line.contains(&format!("lensmae {c} ")));
        assert_eq!(line.contains("--device cuda") && line.contains("--precision bf16"), computes, "{line}");
    }
    fails(&["run", paper, "--dry-run", "--precision", "bf16"], "--device");
}

#[test]
fn a_run_where_rows_failed_writes_its_output_and_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let cube = dir.path().join("cut.fits");
    // 20 planes of 16x16, the file cut 2,880 bytes short: the 20th plane fails.
    let data: Vec<u8> = (0..20 * 256).flat_map(|i| ((i % 97) as f32 / 97.0).to_be_bytes()).collect();
    let cards = crate::stage::cube_cards("20");
    crate::stage::handmade_fits(&cube, &cards.iter().map(String::as_str).collect::<Vec<_>>(), &data, 2880);
    let out = dir.path().join("sr.parquet");
    let args = ["predict", "--input", cube.to_str().unwrap(), "--task", "superres", "--out", out.to_str().unwrap()];
    let run = lensmae(&args);
    assert_eq!(run.status.code(), Some(3), "{}", String::from_utf8_lossy(&run.stderr));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("1 of 20 rows failed") && stderr.contains("truncated file"), "{stderr}");
    let status = crate::stage::strings(&crate::stage::read(&out), "status");
    assert_eq!(status.iter().filter(|s| s.as_deref() == Some("ok")).count(), 19);
    // A caller that accepts a failed fraction gets 0; out-of-range fractions are refused.
    ok(&[&args[..], &["--overwrite", "--max-failed-fraction", "0.1"]].concat());
    fails(&[&args[..], &["--overwrite", "--max-failed-fraction", "2"]].concat(), "--max-failed-fraction");
}

#[test]
fn a_missing_file_is_named_once_with_its_cause_once() {
    let run = lensmae(&["evaluate", "--model", "/nonexistent/m.safetensors", "--input", "/nonexistent/x.parquet"]);
    assert_eq!(run.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("/nonexistent/m.safetensors"), "{stderr}");
    assert_eq!(stderr.matches("os error 2").count(), 1, "{stderr}");
    assert!(!stderr.contains("stack backtrace"), "{stderr}");
}

#[test]
fn outputs_of_formats_predict_does_not_write_are_refused_and_fits_tables_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/catalog/deeplense-model2-12.parquet");
    for out in ["m.csv", "p.fits.gz", "t.ecsv"] {
        let out = dir.path().join(out);
        fails(&["predict", "--input", catalog, "--out", out.to_str().unwrap()], "not `.");
        assert!(!out.exists());
    }
    // A FITS table is written, with its rows.
    let fits = dir.path().join("p.fits");
    ok(&["predict", "--input", catalog, "--out", fits.to_str().unwrap()]);
    let mut f = fitsio::FitsFile::open(&fits).unwrap();
    let table = f.hdu("PREDICTIONS").unwrap();
    assert!(matches!(table.info, fitsio::hdu::HduInfo::TableInfo { num_rows: 12, .. }));
}

#[test]
fn reports_and_exported_checkpoints_are_not_replaced_without_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let catalogue = crate::fixture("catalog/deeplense-model2-12.parquet");
    let (input, report, export) = (
        catalogue.to_str().unwrap().to_string(),
        dir.path().join("eval.json").to_str().unwrap().to_string(),
        dir.path().join("small.safetensors").to_str().unwrap().to_string(),
    );
    std::fs::write(&report, "an earlier report").unwrap();
    let evaluate = ["evaluate", "--model", "bundled:classifier", "--input", &input, "--report", &report];
    fails(&evaluate, "already exists (pass --overwrite to replace it)");
    assert_eq!(std::fs::read_to_string(&report).unwrap(), "an earlier report");
    ok(&[&evaluate[..], &["--overwrite"]].concat());
    assert!(std::fs::read_to_string(&report).unwrap().contains("macro_auc"));
    let export_args = ["model", "export", "--model", "bundled:classifier", "--out", &export];
    ok(&export_args);
    fails(&export_args, "already exists");
    ok(&[&export_args[..], &["--overwrite"]].concat());
}
