//! Classification metrics: one-vs-rest ROC AUC (macro and per class), accuracy,
//! macro F1, confusion matrix and ROC curves.
//!
//! The binary AUC is the Mann-Whitney statistic with tied scores counting one
//! half (optionally weighted per image), which equals the area under scikit-learn's trapezoidal ROC curve, ties
//! included; the macro AUC is the unweighted mean over classes, as
//! `roc_auc_score(average="macro", multi_class="ovr")`.

use serde::{Deserialize, Serialize};

/// Area under the ROC curve of `scores` for the binary labels `positive`.
/// `None` when one of the two groups is empty (the AUC is undefined).
pub fn binary_auc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    weighted_binary_auc(scores, positive, &vec![1.0; scores.len()])
}

/// [`binary_auc`] with a weight per image, as scikit-learn's `roc_auc_score(...,
/// sample_weight=weights)`: the weighted share of (positive, negative) pairs in
/// which the positive scores higher, ties counting one half. `None` when either
/// group has no weight.
pub fn weighted_binary_auc(scores: &[f64], positive: &[bool], weights: &[f64]) -> Option<f64> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut pairs, mut negative_below, mut positive_total) = (0.0, 0.0, 0.0);
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let (mut tied_positive, mut tied_negative) = (0.0, 0.0);
        for &k in &order[i..=j] {
            if positive[k] {
                tied_positive += weights[k];
            } else {
                tied_negative += weights[k];
            }
        }
        pairs += tied_positive * (negative_below + 0.5 * tied_negative);
        negative_below += tied_negative;
        positive_total += tied_positive;
        i = j + 1;
    }
    (positive_total > 0.0 && negative_below > 0.0).then(|| pairs / (positive_total * negative_below))
}

/// Points `(false positive rate, true positive rate)` of the ROC curve, one per
/// distinct score threshold, from (0, 0) to (1, 1).
pub fn roc_curve(scores: &[f64], positive: &[bool]) -> Vec<(f64, f64)> {
    let n_pos = positive.iter().filter(|p| **p).count().max(1) as f64;
    let n_neg = (positive.len() - positive.iter().filter(|p| **p).count()).max(1) as f64;
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut points = vec![(0.0, 0.0)];
    for (idx, &k) in order.iter().enumerate() {
        if positive[k] {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        let last_of_tie = idx + 1 == order.len() || scores[order[idx + 1]] != scores[k];
        if last_of_tie {
            points.push((fp / n_neg, tp / n_pos));
        }
    }
    points
}

/// The metrics of a classifier on a labelled set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassificationMetrics {
    /// Macro one-vs-rest ROC AUC (mean over the classes whose AUC is defined).
    pub macro_auc: f64,
    /// One-vs-rest AUC of each class (`None` when the class is absent or alone).
    pub per_class_auc: Vec<Option<f64>>,
    /// Fraction of correct arg-max predictions.
    pub accuracy: f64,
    /// Unweighted mean of the per-class F1 scores (0 for undefined ones).
    pub macro_f1: f64,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<u64>>,
}

/// Metrics plus the data for ROC plots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassificationReport {
    /// Class names in index order.
    pub class_names: Vec<String>,
    /// Number of examples.
    pub n: usize,
    /// The metrics.
    pub metrics: ClassificationMetrics,
    /// One-vs-rest ROC curve of each class.
    pub roc_curves: Vec<Vec<(f64, f64)>>,
}

impl ClassificationMetrics {
    /// Metrics of class probabilities `probs` (`n x k`, row-major) against `labels`.
    pub fn compute(probs: &[f32], labels: &[usize], num_classes: usize) -> ClassificationMetrics {
        let n = labels.len();
        assert_eq!(probs.len(), n * num_classes, "probabilities must be n x num_classes");
        let column = |c: usize| -> Vec<f64> { (0..n).map(|i| probs[i * num_classes + c] as f64).collect() };
        let per_class_auc: Vec<Option<f64>> = (0..num_classes)
            .map(|c| binary_auc(&column(c), &labels.iter().map(|&l| l == c).collect::<Vec<_>>()))
            .collect();
        let defined: Vec<f64> = per_class_auc.iter().flatten().copied().collect();
        let macro_auc = if defined.is_empty() { f64::NAN } else { defined.iter().sum::<f64>() / defined.len() as f64 };
        let mut confusion = vec![vec![0u64; num_classes]; num_classes];
        for (i, &label) in labels.iter().enumerate() {
            let pred = most_probable(&probs[i * num_classes..(i + 1) * num_classes]);
            confusion[label][pred] += 1;
        }
        let correct: u64 = (0..num_classes).map(|c| confusion[c][c]).sum();
        let f1: Vec<f64> = (0..num_classes)
            .map(|c| {
                let tp = confusion[c][c] as f64;
                let predicted: u64 = (0..num_classes).map(|r| confusion[r][c]).sum();
                let actual: u64 = confusion[c].iter().sum();
                if predicted + actual == 0 {
                    0.0
                } else {
                    2.0 * tp / (predicted + actual) as f64
                }
            })
            .collect();
        ClassificationMetrics {
            macro_auc,
            per_class_auc,
            accuracy: correct as f64 / n.max(1) as f64,
            macro_f1: f1.iter().sum::<f64>() / num_classes as f64,
            confusion,
        }
    }
}

impl ClassificationReport {
    /// Metrics and ROC curves of `probs` against `labels`.
    pub fn compute(probs: &[f32], labels: &[usize], class_names: &[String]) -> ClassificationReport {
        let k = class_names.len();
        let n = labels.len();
        let roc_curves = (0..k)
            .map(|c| {
                let scores: Vec<f64> = (0..n).map(|i| probs[i * k + c] as f64).collect();
                roc_curve(&scores, &labels.iter().map(|&l| l == c).collect::<Vec<_>>())
            })
            .collect();
        ClassificationReport {
            class_names: class_names.to_vec(),
            n,
            metrics: ClassificationMetrics::compute(probs, labels, k),
            roc_curves,
        }
    }
}

/// How much of an evaluated set lies in a calibrated classifier's domain, and its
/// metrics on that part alone (what a survey pipeline acts on).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DomainSummary {
    /// Fraction of images in the model's domain (`ood_score` at most the threshold,
    /// the deflector within the model's centring search).
    pub in_domain_fraction: f64,
    /// The checkpoint's threshold (unknown for a table of predictions).
    pub ood_threshold: Option<f64>,
    /// Median `ood_score` (when the scores are known).
    pub ood_score_median: Option<f64>,
    /// Metrics over the in-domain images (none when there are none).
    pub in_domain_metrics: Option<ClassificationMetrics>,
}

impl DomainSummary {
    /// The summary of `probs` (`n x k`) against `labels`, given each image's
    /// `ood_score` and whether it is in the domain (its score at most `threshold`,
    /// and anything else the model checks, such as where the deflector is).
    pub fn compute(
        probs: &[f32],
        labels: &[usize],
        k: usize,
        scores: &[f32],
        threshold: f64,
        in_domain: &[bool],
    ) -> DomainSummary {
        DomainSummary {
            ood_threshold: Some(threshold),
            ood_score_median: Some(crate::model::domain::quantile(scores, 0.5)),
            ..DomainSummary::from_flags(probs, labels, k, in_domain)
        }
    }

    /// The summary given each image's in-domain flag alone.
    pub fn from_flags(probs: &[f32], labels: &[usize], k: usize, in_domain: &[bool]) -> DomainSummary {
        let (in_domain_fraction, in_domain_metrics) = metrics_where(probs, labels, k, in_domain);
        DomainSummary { in_domain_fraction, ood_threshold: None, ood_score_median: None, in_domain_metrics }
    }
}

/// How many answers of a classifier of smooth-lens residuals rest on a fit that
/// refits of the cutout moved within its last bits did not find again (status
/// `unstable_fit` of `predict --fit-refits`), and the metrics on the others alone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FitStabilitySummary {
    /// Fraction of images answered `unstable_fit`.
    pub unstable_fit_fraction: f64,
    /// Metrics over the images whose fit came back (none when there are none).
    pub reproducible_metrics: Option<ClassificationMetrics>,
}

impl FitStabilitySummary {
    /// The summary of `probs` (`n x k`) against `labels`, given which fits came back.
    pub fn from_flags(probs: &[f32], labels: &[usize], k: usize, reproducible: &[bool]) -> FitStabilitySummary {
        let (fraction, reproducible_metrics) = metrics_where(probs, labels, k, reproducible);
        FitStabilitySummary { unstable_fit_fraction: 1.0 - fraction, reproducible_metrics }
    }
}

/// The fraction of images where `keep` holds, and the metrics over them.
fn metrics_where(probs: &[f32], labels: &[usize], k: usize, keep: &[bool]) -> (f64, Option<ClassificationMetrics>) {
    let kept: Vec<usize> = (0..keep.len()).filter(|&i| keep[i]).collect();
    let kept_probs: Vec<f32> = kept.iter().flat_map(|&i| probs[i * k..(i + 1) * k].iter().copied()).collect();
    let kept_labels: Vec<usize> = kept.iter().map(|&i| labels[i]).collect();
    let fraction = kept.len() as f64 / keep.len().max(1) as f64;
    (fraction, (!kept.is_empty()).then(|| ClassificationMetrics::compute(&kept_probs, &kept_labels, k)))
}

/// Bins of reliability diagrams and expected calibration errors.
pub const RELIABILITY_BINS: usize = 15;

/// Reliability of the top-class probability: images binned by their largest
/// probability into `bins` equal-width bins over [0, 1].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reliability {
    /// Expected calibration error: sum over bins of (count / n) |accuracy - confidence|.
    pub ece: f64,
    /// Per bin: (mean confidence, accuracy, count); empty bins have count 0.
    pub bins: Vec<(f64, f64, usize)>,
}

/// The index of the largest probability of a row: the first maximum on ties, as
/// numpy's argmax.
pub(crate) fn most_probable(row: &[f32]) -> usize {
    (0..row.len()).fold(0, |best, c| if row[c] > row[best] { c } else { best })
}

impl Reliability {
    /// The reliability of `probs` (`n x k`) against `labels`, with `bins` bins.
    pub fn compute(probs: &[f32], labels: &[usize], num_classes: usize, bins: usize) -> Reliability {
        let mut sums = vec![(0f64, 0f64, 0usize); bins];
        for (row, &label) in probs.chunks_exact(num_classes).zip(labels) {
            let pred = most_probable(row);
            let confidence = row[pred] as f64;
            let bin = ((confidence * bins as f64) as usize).min(bins - 1);
            sums[bin].0 += confidence;
            sums[bin].1 += (pred == label) as u8 as f64;
            sums[bin].2 += 1;
        }
        let n = labels.len().max(1) as f64;
        let bins: Vec<(f64, f64, usize)> = sums
            .into_iter()
            .map(|(c, a, m)| if m == 0 { (0.0, 0.0, 0) } else { (c / m as f64, a / m as f64, m) })
            .collect();
        let ece = bins.iter().map(|&(c, a, m)| m as f64 / n * (a - c).abs()).sum();
        Reliability { ece, bins }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_calibration_error_is_zero_when_confidence_matches_accuracy() {
        // Four images at confidence 0.75, three right: calibrated.
        let probs = [0.75, 0.25, 0.75, 0.25, 0.75, 0.25, 0.25, 0.75];
        let r = Reliability::compute(&probs, &[0, 0, 0, 0], 2, 10);
        assert!(r.ece.abs() < 1e-12, "{r:?}");
        // All at 0.95 and half right: 0.45.
        let r = Reliability::compute(&[0.95, 0.05, 0.95, 0.05], &[0, 1], 2, 10);
        assert!((r.ece - 0.45).abs() < 1e-6, "{r:?}");
        assert_eq!(r.bins[9].2, 2);
    }

    #[test]
    fn auc_of_simple_cases() {
        assert_eq!(binary_auc(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]), Some(1.0));
        assert_eq!(binary_auc(&[0.5, 0.5], &[false, true]), Some(0.5));
        assert_eq!(binary_auc(&[0.9, 0.1, 0.8, 0.2], &[false, true, true, false]), Some(0.25));
        assert_eq!(binary_auc(&[0.3, 0.4], &[true, true]), None);
    }

    #[test]
    fn the_roc_curve_runs_from_the_origin_to_one_and_its_area_is_the_auc() {
        let scores = [0.1, 0.4, 0.35, 0.8, 0.35];
        let positive = [false, true, false, true, true];
        let curve = roc_curve(&scores, &positive);
        assert_eq!(curve.first(), Some(&(0.0, 0.0)));
        assert_eq!(curve.last(), Some(&(1.0, 1.0)));
        let area: f64 = curve.windows(2).map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0).sum();
        assert!((area - binary_auc(&scores, &positive).unwrap()).abs() < 1e-12);
    }
}
