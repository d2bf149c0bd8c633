//! Classification metrics against scikit-learn goldens (tests/oracle/metrics_oracle.py),
//! super-resolution metrics against scikit-image and upsampling against PyTorch.

use crate::fixture;
use lensmae::eval::ClassificationMetrics;

#[test]
fn classification_metrics_equal_scikit_learn() {
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("oracle/classification_metrics.json")).unwrap()).unwrap();
    for case in golden["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let k = case["num_classes"].as_u64().unwrap() as usize;
        let labels: Vec<usize> =
            case["labels"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let probs: Vec<f32> = case["probs"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32))
            .collect();
        let m = ClassificationMetrics::compute(&probs, &labels, k);
        // The goldens were computed on the same float32 probabilities, ties included.
        let close = |a: f64, b: f64, what: &str| assert!((a - b).abs() < 1e-12, "{name} {what}: {a} vs {b}");
        close(m.macro_auc, case["macro_auc"].as_f64().unwrap(), "macro AUC");
        for (c, v) in case["per_class_auc"].as_array().unwrap().iter().enumerate() {
            close(m.per_class_auc[c].unwrap(), v.as_f64().unwrap(), "per-class AUC");
        }
        close(m.accuracy, case["accuracy"].as_f64().unwrap(), "accuracy");
        close(m.macro_f1, case["macro_f1"].as_f64().unwrap(), "macro F1");
        let confusion: Vec<Vec<u64>> = serde_json::from_value(case["confusion"].clone()).unwrap();
        assert_eq!(m.confusion, confusion, "{name} confusion");
    }
    for case in golden["weighted_binary"].as_array().unwrap() {
        let floats = |key: &str| -> Vec<f64> { serde_json::from_value(case[key].clone()).unwrap() };
        let positive: Vec<bool> = serde_json::from_value(case["positive"].clone()).unwrap();
        let auc = lensmae::eval::weighted_binary_auc(&floats("scores"), &positive, &floats("weights")).unwrap();
        let want = case["auc"].as_f64().unwrap();
        assert!((auc - want).abs() < 1e-12, "{}: {auc} vs {want}", case["name"]);
    }
}

/// SSIM, PSNR and MSE against scikit-image, and upsampling against PyTorch
/// (tests/oracle/superres_oracle.py).
#[test]
fn superres_metrics_equal_scikit_image_and_upsampling_equals_pytorch() {
    use lensmae::data::npy::read_npy;
    use lensmae::data::resample::{downsample_mean, upsample_bicubic, upsample_nearest};
    use lensmae::eval::superres::{mse, psnr, ssim};
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("oracle/superres_metrics.json")).unwrap()).unwrap();
    let pairs = read_npy(&fixture("oracle/superres_pairs.npy")).unwrap();
    let lrs = read_npy(&fixture("oracle/superres_lr.npy")).unwrap();
    let bicubics = read_npy(&fixture("oracle/superres_bicubic.npy")).unwrap();
    let (size, lr_size) = (pairs.shape[2], lrs.shape[1]);
    let factor = golden["factor"].as_u64().unwrap() as usize;
    let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    for (i, case) in golden["cases"].as_array().unwrap().iter().enumerate() {
        let per = size * size;
        let reference = f32s(&pairs.data[2 * i * per..(2 * i + 1) * per]);
        let test = f32s(&pairs.data[(2 * i + 1) * per..(2 * i + 2) * per]);
        let s = ssim(&reference, &test, size);
        assert!((s - case["ssim"].as_f64().unwrap()).abs() <= 1e-6, "case {i}: SSIM {s} vs {}", case["ssim"]);
        if let Some(want) = case["psnr"].as_f64() {
            let p = psnr(&reference, &test);
            assert!((p - want).abs() <= 1e-6, "case {i}: PSNR {p} vs {want}");
        }
        let m = mse(&reference, &test);
        assert!((m - case["mse"].as_f64().unwrap()).abs() <= 1e-12, "case {i}: MSE");

        let lr = f32s(&lrs.data[i * lr_size * lr_size..(i + 1) * lr_size * lr_size]);
        let ours_lr = downsample_mean(&reference, size, factor);
        let worst = lr.iter().zip(&ours_lr).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst <= 1e-6, "case {i}: block mean differs by {worst}");
        let bicubic = upsample_bicubic(&lr, lr_size, factor);
        let want = f32s(&bicubics.data[i * per..(i + 1) * per]);
        let worst = bicubic.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst <= 1e-5, "case {i}: bicubic differs from PyTorch by {worst}");
        assert!(case["nearest_equals_repeat"].as_bool().unwrap());
        let nearest = upsample_nearest(&lr, lr_size, factor);
        assert_eq!(nearest[(2 * factor + 1) * size + 3 * factor + 2], lr[2 * lr_size + 3]);
    }
}
