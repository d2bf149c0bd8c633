//! Classification metrics against scikit-learn goldens (tests/oracle/metrics_oracle.py).

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
}
