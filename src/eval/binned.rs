//! A classifier's metrics per bin of a simulated parameter: what a survey team
//! plans with. Per bin of `sub_snr` (how far the noise lets the substructure be
//! seen) and of the largest subhalo mass, the sensitivity curve; per bin of the
//! Einstein radius or the source magnitude, where the model works.
//!
//! Parameters of the substructure (`sub_snr`, `sub_snr_refit`, `subhalo_mass_max`) describe only
//! images with substructure: each bin holds those images whose value falls in it
//! plus every image of the reference class (`no_sub`), so that its AUC asks "this
//! much substructure against none". Parameters of every image (`lens_theta_e`,
//! `source_magnitude`) bin all images.

use super::classification::{most_probable, weighted_binary_auc, ClassificationMetrics};
use serde::Serialize;

/// How a parameter is binned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Binning {
    /// Fixed edges (the last bin is open above).
    Edges(&'static [f64]),
    /// Equal-count bins over the values present.
    Quantiles(usize),
}

/// A parameter metrics are reported by.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Parameter {
    /// The dataset column.
    pub name: &'static str,
    /// Its bins.
    pub binning: Binning,
    /// Whether it describes only images with substructure.
    pub substructure_only: bool,
}

const SUB_SNR_EDGES: &[f64] = &[0.0, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0];

/// The parameters reported.
pub const BINNED_PARAMETERS: [Parameter; 5] = [
    Parameter { name: "sub_snr", binning: Binning::Edges(SUB_SNR_EDGES), substructure_only: true },
    // What a smooth lens cannot imitate: the detectability a classifier is to be
    // judged by (datasets simulated with `--refit-detectability`).
    Parameter { name: "sub_snr_refit", binning: Binning::Edges(SUB_SNR_EDGES), substructure_only: true },
    Parameter {
        name: "subhalo_mass_max",
        binning: Binning::Edges(&[1e6, 1e7, 1e8, 1e9, 1e10]),
        substructure_only: true,
    },
    Parameter { name: "lens_theta_e", binning: Binning::Quantiles(5), substructure_only: false },
    Parameter { name: "source_magnitude", binning: Binning::Quantiles(5), substructure_only: false },
];

/// The metrics of one bin.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BinMetrics {
    /// Lower edge (inclusive).
    pub low: f64,
    /// Upper edge (exclusive; infinite for the last bin).
    pub high: f64,
    /// Images in the bin (with the reference class for substructure parameters).
    pub n: usize,
    /// Images with substructure in the bin.
    pub n_substructure: usize,
    /// Metrics over the bin's images (macro AUC over the classes present).
    pub metrics: ClassificationMetrics,
    /// Fraction of the bin's substructure images whose most probable class is not
    /// the reference: the detection probability.
    pub detection: Option<f64>,
    /// AUC of "some substructure" (1 - p(reference)) between the bin's substructure
    /// images and every reference image (substructure parameters).
    pub detection_auc: Option<f64>,
    /// The same with the reference images weighted to the bin's distribution of
    /// source magnitudes (0.5-mag bins). Visible substructure sits on bright arcs,
    /// so a model that learned only "bright arc" scores well in high bins against
    /// all reference images; this AUC holds brightness equal. None without source
    /// magnitudes.
    pub detection_auc_matched: Option<f64>,
}

/// One parameter's bins.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BinnedMetrics {
    /// The parameter (a dataset column).
    pub parameter: String,
    /// Whether bins add every reference-class image (substructure parameters).
    pub with_reference_class: bool,
    /// The bins, low to high; empty bins are left out.
    pub bins: Vec<BinMetrics>,
    /// Fraction of reference-class images called anything else: the false alarms
    /// that the detection probabilities are to be read against.
    pub false_alarm: Option<f64>,
}

/// Metrics of `probs` (`n x k`) against `labels` per bin of `values` (one per
/// image, None where the parameter does not apply). `reference` is the index of
/// the class without substructure; `source_magnitudes` (per image), when known,
/// give the brightness-matched detection AUC.
pub fn binned_metrics(
    parameter: Parameter,
    values: &[Option<f64>],
    probs: &[f32],
    labels: &[usize],
    k: usize,
    reference: usize,
    source_magnitudes: Option<&[Option<f64>]>,
) -> BinnedMetrics {
    let Parameter { name, binning, substructure_only } = parameter;
    let is_sub = |i: usize| labels[i] != reference;
    let candidates: Vec<usize> = (0..labels.len())
        .filter(|&i| values[i].is_some_and(f64::is_finite) && (!substructure_only || is_sub(i)))
        .collect();
    let edges: Vec<f64> = match binning {
        Binning::Edges(e) => e.to_vec(),
        Binning::Quantiles(q) => {
            let mut v: Vec<f64> = candidates.iter().map(|&i| values[i].expect("filtered")).collect();
            v.sort_by(f64::total_cmp);
            let mut e: Vec<f64> = (0..q).filter_map(|b| v.get(b * v.len() / q).copied()).collect();
            e.dedup();
            e
        }
    };
    let reference_images: Vec<usize> = (0..labels.len()).filter(|&i| !is_sub(i)).collect();
    let argmax = |i: usize| most_probable(&probs[i * k..(i + 1) * k]);
    let false_alarm = (!reference_images.is_empty()).then(|| {
        reference_images.iter().filter(|&&i| argmax(i) != reference).count() as f64 / reference_images.len() as f64
    });
    let bins = edges
        .iter()
        .enumerate()
        .filter_map(|(b, &low)| {
            let high = edges.get(b + 1).copied().unwrap_or(f64::INFINITY);
            let inside: Vec<usize> = candidates
                .iter()
                .copied()
                .filter(|&i| {
                    let v = values[i].expect("filtered");
                    // The first bin takes everything below its edge too.
                    (b == 0 || v >= low) && v < high
                })
                .collect();
            let with_reference = substructure_only.then_some(reference_images.as_slice());
            bin_metrics(&inside, (low, high), probs, labels, k, reference, with_reference, source_magnitudes)
        })
        .collect();
    BinnedMetrics { parameter: name.to_string(), with_reference_class: substructure_only, bins, false_alarm }
}

/// The metrics of the images `inside` a bin, with `reference_images` added when
/// the parameter describes substructure only; None for an empty bin.
#[allow(clippy::too_many_arguments)]
fn bin_metrics(
    inside: &[usize],
    (low, high): (f64, f64),
    probs: &[f32],
    labels: &[usize],
    k: usize,
    reference: usize,
    reference_images: Option<&[usize]>,
    source_magnitudes: Option<&[Option<f64>]>,
) -> Option<BinMetrics> {
    if inside.is_empty() {
        return None;
    }
    let is_sub = |i: usize| labels[i] != reference;
    let argmax = |i: usize| most_probable(&probs[i * k..(i + 1) * k]);
    let mut images = inside.to_vec();
    images.extend(reference_images.unwrap_or_default());
    let p: Vec<f32> = images.iter().flat_map(|&i| probs[i * k..(i + 1) * k].iter().copied()).collect();
    let l: Vec<usize> = images.iter().map(|&i| labels[i]).collect();
    let subs: Vec<usize> = inside.iter().copied().filter(|&i| is_sub(i)).collect();
    let detection =
        (!subs.is_empty()).then(|| subs.iter().filter(|&&i| argmax(i) != reference).count() as f64 / subs.len() as f64);
    let (detection_auc, detection_auc_matched) = match reference_images {
        Some(reference_images) => {
            let some_substructure = |i: usize| 1.0 - probs[i * k + reference] as f64;
            let detection_auc_with = |reference_weights: &[f64]| {
                let scores: Vec<f64> = subs.iter().chain(reference_images).map(|&i| some_substructure(i)).collect();
                let positive: Vec<bool> = subs.iter().chain(reference_images).map(|&i| is_sub(i)).collect();
                let weights: Vec<f64> = subs.iter().map(|_| 1.0).chain(reference_weights.iter().copied()).collect();
                weighted_binary_auc(&scores, &positive, &weights)
            };
            let matched = source_magnitudes
                .and_then(|m| magnitude_matched_weights(m, &subs, reference_images))
                .and_then(|w| detection_auc_with(&w));
            (detection_auc_with(&vec![1.0; reference_images.len()]), matched)
        }
        None => (None, None),
    };
    Some(BinMetrics {
        low,
        high,
        n: images.len(),
        n_substructure: subs.len(),
        metrics: ClassificationMetrics::compute(&p, &l, k),
        detection,
        detection_auc,
        detection_auc_matched,
    })
}

/// Source-magnitude bins of the brightness matching, mag.
const MAGNITUDE_BIN: f64 = 0.5;

/// Weights that give the `reference` images the distribution of source magnitudes
/// of the `members` (in `MAGNITUDE_BIN` bins): a member bin's share over the
/// reference images' share. None when a member's magnitude is unknown.
fn magnitude_matched_weights(magnitudes: &[Option<f64>], members: &[usize], reference: &[usize]) -> Option<Vec<f64>> {
    let bin_of = |i: usize| magnitudes[i].filter(|m| m.is_finite()).map(|m| (m / MAGNITUDE_BIN).floor() as i64);
    let mut member_count = std::collections::HashMap::new();
    for &i in members {
        *member_count.entry(bin_of(i)?).or_insert(0.0) += 1.0;
    }
    let mut reference_count = std::collections::HashMap::new();
    for bin in reference.iter().filter_map(|&i| bin_of(i)) {
        *reference_count.entry(bin).or_insert(0.0) += 1.0;
    }
    let (n_members, n_reference) = (members.len() as f64, reference.len() as f64);
    Some(
        reference
            .iter()
            .map(|&i| match bin_of(i) {
                Some(bin) => member_count.get(&bin).unwrap_or(&0.0) / n_members / (reference_count[&bin] / n_reference),
                None => 0.0,
            })
            .collect(),
    )
}

/// The class without substructure, which substructure is told from.
const REFERENCE_CLASS: &str = "no_sub";

/// The column `name` of `columns`, when it holds a value for each of `n` images.
fn column_named<'a>(columns: &'a [(String, Vec<Option<f64>>)], name: &str, n: usize) -> Option<&'a [Option<f64>]> {
    columns.iter().find(|(c, v)| c == name && v.len() == n).map(|(_, values)| values.as_slice())
}

/// Every parameter of [`BINNED_PARAMETERS`] found among `columns` (name, value per
/// image) with a value for some image, binned; none without a reference class
/// named `no_sub`.
pub fn binned_by_parameters(
    columns: &[(String, Vec<Option<f64>>)],
    probs: &[f32],
    labels: &[usize],
    class_names: &[String],
) -> Vec<BinnedMetrics> {
    let Some(reference) = class_names.iter().position(|c| c == REFERENCE_CLASS) else {
        return Vec::new();
    };
    let column = |name: &str| column_named(columns, name, labels.len());
    let magnitudes = column("source_magnitude");
    BINNED_PARAMETERS
        .iter()
        .filter_map(|&parameter| {
            let values = column(parameter.name)?;
            let binned = binned_metrics(parameter, values, probs, labels, class_names.len(), reference, magnitudes);
            (!binned.bins.is_empty()).then_some(binned)
        })
        .collect()
}

/// The signal-to-noise from which substructure counts as detectable.
pub const DETECTABLE_SNR: f64 = 10.0;

/// The substructure parameters a detectable subset is taken by.
const DETECTABILITY_PARAMETERS: [&str; 2] = ["sub_snr", "sub_snr_refit"];

/// The metrics over the images whose substructure parameter is at least
/// `threshold`, together with every reference-class image: "how well does the
/// model do where the substructure can be seen".
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AtLeastMetrics {
    /// The parameter (a dataset column).
    pub parameter: String,
    /// The lowest value taken.
    pub threshold: f64,
    /// The subset's metrics (`low` = threshold, `high` infinite).
    #[serde(flatten)]
    pub subset: BinMetrics,
}

/// For `sub_snr` and `sub_snr_refit`, when `columns` hold them: the metrics of
/// the images at or above [`DETECTABLE_SNR`] with every `no_sub` image; none
/// without a reference class named `no_sub`.
pub fn detectable_subsets(
    columns: &[(String, Vec<Option<f64>>)],
    probs: &[f32],
    labels: &[usize],
    class_names: &[String],
) -> Vec<AtLeastMetrics> {
    let Some(reference) = class_names.iter().position(|c| c == REFERENCE_CLASS) else {
        return Vec::new();
    };
    let k = class_names.len();
    let column = |name: &str| column_named(columns, name, labels.len());
    let reference_images: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == reference).collect();
    let magnitudes = column("source_magnitude");
    DETECTABILITY_PARAMETERS
        .iter()
        .filter_map(|&name| {
            let values = column(name)?;
            let inside: Vec<usize> = (0..labels.len())
                .filter(|&i| labels[i] != reference && values[i].is_some_and(|v| v >= DETECTABLE_SNR))
                .collect();
            let range = (DETECTABLE_SNR, f64::INFINITY);
            bin_metrics(&inside, range, probs, labels, k, reference, Some(&reference_images), magnitudes)
                .map(|subset| AtLeastMetrics { parameter: name.to_string(), threshold: DETECTABLE_SNR, subset })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_detectable_subset_is_every_lens_at_or_above_ten_sigma_with_every_no_sub() {
        // Classes: axion, cdm, no_sub. Rows 0-5 with substructure, 6-8 without.
        let names: Vec<String> = ["axion", "cdm", "no_sub"].map(String::from).to_vec();
        let labels = [0, 0, 1, 1, 0, 1, 2, 2, 2];
        let snr =
            vec![Some(10.0), Some(9.99), Some(30.0), None, Some(f64::NAN), Some(12.0), Some(0.0), None, Some(0.0)];
        let refit =
            vec![Some(2.0), Some(2.0), Some(11.0), Some(50.0), Some(1.0), Some(0.5), Some(0.0), Some(0.0), None];
        let probs: Vec<f32> = (0..27).map(|i| ((i * 7919) % 97) as f32 / 97.0 + 0.01).collect();
        let columns = vec![("sub_snr".to_string(), snr), ("sub_snr_refit".to_string(), refit)];
        let subsets = detectable_subsets(&columns, &probs, &labels, &names);
        assert_eq!(subsets.len(), 2);
        // The metrics are those of the rows picked by hand.
        for (subset, rows) in subsets.iter().zip([vec![0, 2, 5, 6, 7, 8], vec![2, 3, 6, 7, 8]]) {
            let p: Vec<f32> = rows.iter().flat_map(|&i| probs[i * 3..i * 3 + 3].to_vec()).collect();
            let l: Vec<usize> = rows.iter().map(|&i| labels[i]).collect();
            assert_eq!(subset.subset.metrics, ClassificationMetrics::compute(&p, &l, 3), "{}", subset.parameter);
            assert_eq!(subset.subset.n, rows.len());
            assert_eq!(subset.subset.n_substructure, rows.len() - 3);
            assert_eq!(subset.threshold, DETECTABLE_SNR);
        }
        assert_eq!(subsets[0].parameter, "sub_snr");
        // Without a no_sub class there is no such subset.
        let other: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        assert!(detectable_subsets(&columns, &probs, &labels, &other).is_empty());
    }

    #[test]
    fn substructure_bins_hold_their_images_and_every_reference_image() {
        // Classes: 0 = sub, 1 = none (reference). The model detects substructure
        // only above sub_snr 10.
        let snr = [Some(0.5), Some(5.0), Some(20.0), Some(50.0), Some(0.0), Some(0.0)];
        let labels = [0, 0, 0, 0, 1, 1];
        let probs = [0.2, 0.8, 0.3, 0.7, 0.9, 0.1, 0.8, 0.2, 0.1, 0.9, 0.2, 0.8];
        let parameter =
            Parameter { name: "sub_snr", binning: Binning::Edges(&[0.0, 1.0, 10.0]), substructure_only: true };
        let b = binned_metrics(parameter, &snr, &probs, &labels, 2, 1, None);
        let n: Vec<(usize, usize)> = b.bins.iter().map(|x| (x.n, x.n_substructure)).collect();
        assert_eq!(n, [(3, 1), (3, 1), (4, 2)]);
        let detection: Vec<f64> = b.bins.iter().map(|x| x.detection.unwrap()).collect();
        assert_eq!(detection, [0.0, 0.0, 1.0]);
        assert_eq!(b.bins[2].metrics.macro_auc, 1.0);
        assert!(b.bins[2].high.is_infinite());
        assert_eq!(b.false_alarm, Some(0.0));
    }

    #[test]
    fn a_model_that_sees_only_brightness_has_a_matched_detection_auc_of_one_half() {
        // Reference images (class 1) at every magnitude, scored by brightness alone;
        // the substructure images (class 0) all bright, scored the same way.
        let mut magnitudes = Vec::new();
        let mut labels = Vec::new();
        for step in 0..8 {
            for _ in 0..10 {
                magnitudes.push(Some(21.25 + 0.5 * step as f64));
                labels.push(1);
            }
        }
        for _ in 0..20 {
            magnitudes.push(Some(21.25));
            labels.push(0);
        }
        let probs: Vec<f32> = magnitudes
            .iter()
            .flat_map(|m| {
                let p_sub = (25.0 - m.unwrap()) as f32 / 4.0;
                [p_sub, 1.0 - p_sub]
            })
            .collect();
        let snr: Vec<Option<f64>> = labels.iter().map(|&l| Some(if l == 0 { 20.0 } else { 0.0 })).collect();
        let parameter = Parameter { name: "sub_snr", binning: Binning::Edges(&[0.0, 10.0]), substructure_only: true };
        let b = binned_metrics(parameter, &snr, &probs, &labels, 2, 1, Some(&magnitudes));
        let bright = b.bins.last().unwrap();
        assert_eq!(bright.n_substructure, 20);
        // Against all reference images: 70 of 80 are fainter, 10 tie.
        assert!((bright.detection_auc.unwrap() - (70.0 + 5.0) / 80.0).abs() < 1e-12);
        assert!((bright.detection_auc_matched.unwrap() - 0.5).abs() < 1e-12);
        // Without magnitudes there is no matched AUC.
        let b = binned_metrics(parameter, &snr, &probs, &labels, 2, 1, None);
        assert_eq!(b.bins.last().unwrap().detection_auc_matched, None);
    }

    #[test]
    fn quantile_bins_split_all_images_evenly() {
        let values: Vec<Option<f64>> = (0..100).map(|i| Some(i as f64)).collect();
        let labels: Vec<usize> = (0..100).map(|i| i % 2).collect();
        let probs: Vec<f32> = (0..100).flat_map(|i| if i % 2 == 0 { [0.9, 0.1] } else { [0.1, 0.9] }).collect();
        let parameter = Parameter { name: "x", binning: Binning::Quantiles(4), substructure_only: false };
        let b = binned_metrics(parameter, &values, &probs, &labels, 2, 1, None);
        assert_eq!(b.bins.iter().map(|x| x.n).collect::<Vec<_>>(), [25, 25, 25, 25]);
        assert!(b.bins.iter().all(|x| x.metrics.accuracy == 1.0));
    }
}
