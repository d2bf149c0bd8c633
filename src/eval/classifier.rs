//! A classifier's evaluation on labelled images, as `lensmae evaluate` reports it:
//! metrics and ROC curves, calibration, the share of the inputs in the model's
//! domain, and metrics per bin of the simulated parameters the dataset carries.
//!
//! The probabilities come either from a lensmae checkpoint run here
//! ([`evaluate_classifier`]) or from a table of predictions another run or another
//! model wrote ([`evaluate_predictions`]): both go through the same report, so a
//! baseline is judged exactly as the ViT is.

use super::binned::{binned_by_parameters, detectable_subsets, AtLeastMetrics, BinnedMetrics, BINNED_PARAMETERS};
use super::classification::{DomainSummary, FitStabilitySummary, RELIABILITY_BINS};
use super::{ClassificationReport, Reliability};
use crate::data::images::{FloatColumns, LabelledImages};
use crate::data::predictions::{PredictionTable, FIT_REFITS_KEY, UNSTABLE_FIT};
use crate::data::record::FIT_LENS_FOUND;
use crate::infer::LoadedClassifier;
use crate::{Error, Result};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

/// The dataset columns a report bins by, as [`crate::data::images::read_float_columns`] reads them.
pub fn binned_parameter_names() -> Vec<&'static str> {
    BINNED_PARAMETERS.iter().map(|p| p.name).collect()
}

/// The columns of a labelled dataset `evaluate` reads besides its images: those
/// it bins by, and a residual dataset's [`FIT_LENS_FOUND`].
pub fn evaluated_column_names() -> Vec<&'static str> {
    let mut names = binned_parameter_names();
    names.push(FIT_LENS_FOUND);
    names
}

/// Everything `evaluate` reports about one classifier on one labelled set.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifierEvaluation {
    /// Metrics and ROC curves over the scored images.
    pub report: ClassificationReport,
    /// Reliability of the top-class probability.
    pub reliability: Reliability,
    /// The checkpoint's temperature, when it was calibrated.
    pub temperature: Option<f64>,
    /// How much of the input lies in the model's domain, and the metrics there.
    pub domain: Option<DomainSummary>,
    /// For predictions of a residual classifier whose fits were checked (`predict
    /// --fit-refits`): how many rest on a fit that did not come back, and the
    /// metrics on the rest.
    pub fit_stability: Option<FitStabilitySummary>,
    /// Metrics per bin of each simulated parameter present.
    pub binned: Vec<BinnedMetrics>,
    /// Metrics where the substructure is detectable (`sub_snr` and, when the
    /// dataset has it, `sub_snr_refit` at least 10, with every `no_sub` image).
    pub detectable: Vec<AtLeastMetrics>,
    /// Ids of rows a predictions table has without probabilities (rows its run
    /// failed on): left out of the metrics, counted here.
    pub unscored_ids: Vec<i64>,
    /// Labelled rows the predictions table has no row for.
    pub unpredicted: usize,
}

impl ClassifierEvaluation {
    /// The report of `probs` (`n x k`, in `class_names` order) against `labels`;
    /// `parameters` are dataset columns (name, value per image) to bin by.
    pub fn compute(
        probs: &[f32],
        labels: &[usize],
        class_names: &[String],
        parameters: &[(String, Vec<Option<f64>>)],
    ) -> ClassifierEvaluation {
        let k = class_names.len();
        ClassifierEvaluation {
            report: ClassificationReport::compute(probs, labels, class_names),
            reliability: Reliability::compute(probs, labels, k, RELIABILITY_BINS),
            temperature: None,
            domain: None,
            fit_stability: None,
            binned: binned_by_parameters(parameters, probs, labels, class_names),
            detectable: detectable_subsets(parameters, probs, labels, class_names),
            unscored_ids: Vec::new(),
            unpredicted: 0,
        }
    }

    /// The JSON report; `sources` names what was evaluated (`model` or
    /// `predictions`, and `input`) and leads it.
    pub fn to_json(&self, sources: &[(&str, &Path)]) -> serde_json::Value {
        let mut json = serde_json::Map::new();
        for (key, path) in sources {
            json.insert(key.to_string(), path.display().to_string().into());
        }
        json.insert("report".into(), serde_json::json!(self.report));
        json.insert(
            "calibration".into(),
            serde_json::json!({"ece": self.reliability.ece, "reliability": self.reliability.bins,
                "temperature": self.temperature}),
        );
        json.insert("domain".into(), serde_json::json!(self.domain));
        if let Some(f) = &self.fit_stability {
            json.insert("fit_stability".into(), serde_json::json!(f));
        }
        json.insert("binned".into(), serde_json::json!(self.binned));
        json.insert("detectable".into(), serde_json::json!(self.detectable));
        if !self.unscored_ids.is_empty() || self.unpredicted > 0 {
            json.insert("unscored_ids".into(), serde_json::json!(self.unscored_ids));
            json.insert("unpredicted".into(), self.unpredicted.into());
        }
        serde_json::Value::Object(json)
    }

    /// A few lines for a person: the headline metrics, the domain, and detection
    /// per bin of substructure signal.
    pub fn summary(&self) -> String {
        let (m, mut s) = (&self.report.metrics, String::new());
        let _ = writeln!(
            s,
            "macro AUC {:.4}, accuracy {:.4}, macro F1 {:.4}, ECE {:.4} on {} images",
            m.macro_auc, m.accuracy, m.macro_f1, self.reliability.ece, self.report.n
        );
        if let Some(d) = &self.domain {
            let _ = writeln!(s, "in the model's domain: {:.4} of them", d.in_domain_fraction);
        }
        if let Some(f) = &self.fit_stability {
            let rest = f.reproducible_metrics.as_ref().map_or("-".into(), |m| format!("{:.4}", m.macro_auc));
            let _ = writeln!(
                s,
                "unstable_fit (the answer depends on how the cutout was stored): {:.4} of them; macro AUC of the rest {rest}",
                f.unstable_fit_fraction
            );
        }
        if !self.unscored_ids.is_empty() {
            let _ = writeln!(s, "{} rows without probabilities left out", self.unscored_ids.len());
        }
        if self.unpredicted > 0 {
            let _ = writeln!(s, "{} labelled rows without a prediction left out", self.unpredicted);
        }
        for d in &self.detectable {
            let per_class: Vec<String> = (self.report.class_names.iter().zip(&d.subset.metrics.per_class_auc))
                .map(|(name, auc)| format!("{name} {}", auc.map_or("-".into(), |a| format!("{a:.4}"))))
                .collect();
            let _ = writeln!(
                s,
                "{} >= {} ({} with substructure) and every no_sub: macro AUC {:.4} ({})",
                d.parameter,
                d.threshold,
                d.subset.n_substructure,
                d.subset.metrics.macro_auc,
                per_class.join(", ")
            );
        }
        for b in self.binned.iter().filter(|b| b.parameter.starts_with("sub_snr")) {
            if b.parameter == "sub_snr" {
                let _ = writeln!(s, "no_sub called substructure: {:.3}", b.false_alarm.unwrap_or(f64::NAN));
            }
            for bin in &b.bins {
                let _ = writeln!(
                    s,
                    "{} [{}, {}): {} with substructure, detected {:.3}, macro AUC {:.4}, detection AUC {:.4} \
                     (against no_sub of the same source magnitudes {:.4})",
                    b.parameter,
                    bin.low,
                    bin.high,
                    bin.n_substructure,
                    bin.detection.unwrap_or(f64::NAN),
                    bin.metrics.macro_auc,
                    bin.detection_auc.unwrap_or(f64::NAN),
                    bin.detection_auc_matched.unwrap_or(f64::NAN)
                );
            }
        }
        s
    }
}

/// The labels of `data` in the order of `class_names` (a model's), matched by
/// name: a model's class order need not be the dataset's.
pub fn labels_in_class_order(data: &LabelledImages, class_names: &[String]) -> Result<Vec<usize>> {
    let position: Vec<Option<usize>> =
        data.class_names.iter().map(|name| class_names.iter().position(|c| c == name)).collect();
    data.labels
        .iter()
        .zip(&data.ids)
        .map(|(&l, id)| {
            position[l].ok_or_else(|| Error::Mismatch {
                path: data.source.clone(),
                message: format!(
                    "row id {id}: class `{}` is not one the model knows ({})",
                    data.class_names[l],
                    class_names.join(", ")
                ),
            })
        })
        .collect()
}

/// Run `classifier` on every image of `data` and evaluate it; `parameters` are
/// `data`'s columns to bin by (row order), and, for a dataset of smooth-lens
/// residuals, its [`FIT_LENS_FOUND`] column: a row whose fit found no galaxy-scale
/// lens is out of the domain, as `predict` flags it.
pub fn evaluate_classifier(
    classifier: &LoadedClassifier,
    data: &LabelledImages,
    parameters: &[(String, Vec<Option<f64>>)],
    batch: usize,
) -> Result<ClassifierEvaluation> {
    if data.size != classifier.image_size() {
        let (s, m) = (data.size, classifier.image_size());
        let message = format!("images are {s}x{s}, the model takes {m}x{m}");
        return Err(Error::Mismatch { path: data.source.clone(), message });
    }
    classifier.check_images(data)?;
    let meta = &classifier.meta;
    let labels = labels_in_class_order(data, &meta.class_names)?;
    let output = classifier.predict(&data.pixels, batch)?;
    let probs = &output.probabilities;
    let mut evaluation = ClassifierEvaluation::compute(probs, &labels, &meta.class_names, parameters);
    evaluation.temperature = meta.calibration.as_ref().map(|c| c.temperature);
    // For a calibrated model: how much of the input is in its domain, and the
    // metrics on that part alone (what a survey pipeline acts on).
    if let (Some(scores), Some(c), Some(flags)) =
        (&output.ood_scores, &meta.calibration, classifier.in_domain_flags(&output))
    {
        let mut flags = flags;
        if let Some((_, found)) = parameters.iter().find(|(name, _)| name == FIT_LENS_FOUND) {
            flags.iter_mut().zip(found).filter(|(_, found)| **found == Some(0.0)).for_each(|(flag, _)| *flag = false);
        }
        let k = meta.class_names.len();
        evaluation.domain = Some(DomainSummary::compute(probs, &labels, k, scores, c.ood_threshold, &flags));
    }
    Ok(evaluation)
}

/// Evaluate the probabilities of `table` (read from `table_path`) against the
/// labelled rows of `data` with the same `id`. Labelled rows without a prediction
/// and predictions without probabilities are counted, not scored; a prediction
/// whose id is not among the labelled rows, or an id given twice, is an error.
pub fn evaluate_predictions(
    table: &PredictionTable,
    table_path: &Path,
    data: &LabelledImages,
    parameters: &[(String, Vec<Option<f64>>)],
) -> Result<ClassifierEvaluation> {
    let err = |message: String| Error::Mismatch { path: table_path.to_path_buf(), message };
    if !table.keyed_by_id {
        // Row numbers are positions in predict's inputs: matching them to ids could
        // pair a prediction with another image's label.
        return Err(err("has no `id` column to match the labelled rows by (write it with `predict --keep id`)".into()));
    }
    let labels = labels_in_class_order(data, &table.class_names)?;
    let mut row_of: HashMap<i64, usize> = HashMap::with_capacity(data.ids.len());
    for (r, &id) in data.ids.iter().enumerate() {
        if row_of.insert(id, r).is_some() {
            return Err(Error::Mismatch { path: data.source.clone(), message: format!("id {id} is on two rows") });
        }
    }
    let mut seen = vec![false; data.ids.len()];
    let (mut rows, mut probs, mut unscored_ids) = (Vec::new(), Vec::new(), Vec::new());
    let (mut in_domain, mut ood_scores, mut reproducible) = (Vec::new(), Vec::new(), Vec::new());
    for (r, (&id, p)) in table.ids.iter().zip(&table.probabilities).enumerate() {
        let &row = row_of.get(&id).ok_or_else(|| {
            err(format!("row {r}: id {id} is not among the labelled rows of {}", data.source.display()))
        })?;
        if std::mem::replace(&mut seen[row], true) {
            return Err(err(format!("row {r}: id {id} is predicted twice")));
        }
        let Some(p) = p else {
            unscored_ids.push(id);
            continue;
        };
        rows.push(row);
        probs.extend_from_slice(p);
        in_domain.push(table.in_domain.as_ref().and_then(|flags| flags[r]));
        ood_scores.push(table.ood_scores.as_ref().and_then(|scores| scores[r]).map(|s| s as f32));
        let status = table.statuses.as_ref().and_then(|s| s[r].as_deref());
        reproducible.push(status != Some(UNSTABLE_FIT));
    }
    if rows.is_empty() {
        return Err(err("no row has both probabilities and a label".into()));
    }
    let labels: Vec<usize> = rows.iter().map(|&r| labels[r]).collect();
    let parameters: FloatColumns = parameters
        .iter()
        .filter(|(_, values)| values.len() == data.ids.len())
        .map(|(name, values)| (name.clone(), rows.iter().map(|&r| values[r]).collect()))
        .collect();
    let mut evaluation = ClassifierEvaluation::compute(&probs, &labels, &table.class_names, &parameters);
    // A calibrated model's `predict` flags every row; an uncalibrated one none.
    if let Some(flags) = in_domain.iter().copied().collect::<Option<Vec<bool>>>() {
        let mut summary = DomainSummary::from_flags(&probs, &labels, table.class_names.len(), &flags);
        let scores: Option<Vec<f32>> = ood_scores.into_iter().collect();
        summary.ood_score_median = scores.map(|s| crate::model::domain::quantile(&s, 0.5));
        evaluation.domain = Some(summary);
    }
    let fits_checked = table.metadata.get(FIT_REFITS_KEY).and_then(|n| n.parse::<usize>().ok()).is_some_and(|n| n > 0);
    if fits_checked {
        evaluation.fit_stability =
            Some(FitStabilitySummary::from_flags(&probs, &labels, table.class_names.len(), &reproducible));
    }
    evaluation.unpredicted = seen.iter().filter(|s| !**s).count();
    evaluation.unscored_ids = unscored_ids;
    Ok(evaluation)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labelled(class_names: &[&str], labels: &[usize], ids: &[i64]) -> LabelledImages {
        LabelledImages {
            class_names: class_names.iter().map(|s| s.to_string()).collect(),
            size: 1,
            pixels: vec![0.0; labels.len()],
            labels: labels.to_vec(),
            ids: ids.to_vec(),
            source: "data.parquet".into(),
            joined_from: Vec::new(),
        }
    }

    fn table(class_names: &[&str], ids: &[i64], probabilities: Vec<Option<Vec<f32>>>) -> PredictionTable {
        PredictionTable {
            class_names: class_names.iter().map(|s| s.to_string()).collect(),
            ids: ids.to_vec(),
            keyed_by_id: true,
            probabilities,
            in_domain: None,
            ood_scores: None,
            statuses: None,
            geometries: None,
            metadata: Default::default(),
        }
    }

    #[test]
    fn predictions_are_matched_by_id_and_class_name_whatever_the_order() {
        // Dataset classes [no_sub, axion]; the table's columns in the other order
        // and its rows shuffled: a perfect model must still score 1.
        let data = labelled(&["no_sub", "axion"], &[0, 1, 0, 1], &[10, 11, 12, 13]);
        let t = table(
            &["axion", "no_sub"],
            &[13, 10, 11, 12],
            vec![Some(vec![0.9, 0.1]), Some(vec![0.2, 0.8]), Some(vec![0.7, 0.3]), Some(vec![0.4, 0.6])],
        );
        let snr = vec![("sub_snr".to_string(), vec![Some(0.0), Some(50.0), Some(0.0), Some(5.0)])];
        let e = evaluate_predictions(&t, Path::new("p.parquet"), &data, &snr).unwrap();
        assert_eq!(e.report.n, 4);
        assert_eq!(e.report.metrics.macro_auc, 1.0);
        assert_eq!(e.report.metrics.accuracy, 1.0);
        assert_eq!((e.unscored_ids.len(), e.unpredicted), (0, 0));
        // The bins follow the rows: sub_snr 5 (id 13) lands in [3, 10), 50 in [30, 100).
        let bins: Vec<(f64, usize)> = e.binned[0].bins.iter().map(|b| (b.low, b.n_substructure)).collect();
        assert_eq!(bins, [(3.0, 1), (30.0, 1)]);
        // Same probabilities in dataset order through the direct path: same report.
        let direct = ClassifierEvaluation::compute(
            &[0.2, 0.8, 0.7, 0.3, 0.4, 0.6, 0.9, 0.1],
            &[1, 0, 1, 0],
            &t.class_names,
            &[("sub_snr".to_string(), vec![Some(0.0), Some(50.0), Some(0.0), Some(5.0)])],
        );
        assert_eq!(direct.report, e.report);
        assert_eq!(direct.binned, e.binned);
    }

    #[test]
    fn a_table_keyed_by_row_numbers_is_not_matched_to_labelled_ids() {
        let data = labelled(&["no_sub", "axion"], &[0, 1], &[0, 1]);
        let t = PredictionTable { keyed_by_id: false, ..table(&["no_sub", "axion"], &[0, 1], vec![None, None]) };
        let e = evaluate_predictions(&t, Path::new("p.parquet"), &data, &[]).unwrap_err().to_string();
        assert!(e.contains("no `id` column") && e.contains("--keep id") && e.contains("p.parquet"), "{e}");
    }

    #[test]
    fn failed_and_missing_rows_are_counted_and_foreign_or_repeated_ids_refused() {
        let data = labelled(&["no_sub", "cdm"], &[0, 1, 1], &[1, 2, 3]);
        let t = table(&["no_sub", "cdm"], &[1, 2], vec![Some(vec![0.6, 0.4]), None]);
        let e = evaluate_predictions(&t, Path::new("p.parquet"), &data, &[]).unwrap();
        assert_eq!((e.report.n, e.unscored_ids.clone(), e.unpredicted), (1, vec![2], 1));
        let json = e.to_json(&[("predictions", Path::new("p.parquet"))]);
        assert_eq!(json["unscored_ids"], serde_json::json!([2]));
        assert_eq!(json["unpredicted"], 1);
        assert!(e.summary().contains("1 rows without probabilities"), "{}", e.summary());

        let foreign = table(&["no_sub", "cdm"], &[1, 9], vec![Some(vec![0.6, 0.4]); 2]);
        let msg = evaluate_predictions(&foreign, Path::new("p.parquet"), &data, &[]).unwrap_err().to_string();
        assert!(msg.contains("p.parquet") && msg.contains("row 1: id 9 is not among"), "{msg}");
        let twice = table(&["no_sub", "cdm"], &[1, 1], vec![Some(vec![0.6, 0.4]); 2]);
        let msg = evaluate_predictions(&twice, Path::new("p.parquet"), &data, &[]).unwrap_err().to_string();
        assert!(msg.contains("id 1 is predicted twice"), "{msg}");
        let unknown = labelled(&["no_sub", "axion"], &[0, 1], &[1, 2]);
        let msg = evaluate_predictions(&t, Path::new("p.parquet"), &unknown, &[]).unwrap_err().to_string();
        assert!(msg.contains("row id 2: class `axion` is not one the model knows"), "{msg}");
    }

    #[test]
    fn in_domain_flags_of_a_table_give_the_domain_summary() {
        let data = labelled(&["no_sub", "cdm"], &[0, 1, 1, 0], &[1, 2, 3, 4]);
        let mut t = table(&["no_sub", "cdm"], &[1, 2, 3, 4], vec![Some(vec![0.9, 0.1]); 4]);
        t.in_domain = Some(vec![Some(true), Some(false), Some(true), Some(true)]);
        t.ood_scores = Some(vec![Some(1.0), Some(9.0), Some(2.0), Some(3.0)]);
        let e = evaluate_predictions(&t, Path::new("p.parquet"), &data, &[]).unwrap();
        let d = e.domain.unwrap();
        assert_eq!(d.in_domain_fraction, 0.75);
        assert_eq!(d.ood_threshold, None);
        assert_eq!(d.in_domain_metrics.unwrap().confusion, [[2, 0], [1, 0]]);
        assert!(d.ood_score_median.is_some());
        // An uncalibrated model's rows carry no flags: no summary.
        t.in_domain = Some(vec![None; 4]);
        assert!(evaluate_predictions(&t, Path::new("p.parquet"), &data, &[]).unwrap().domain.is_none());
    }

    #[test]
    fn answers_from_fits_that_did_not_come_back_are_counted_and_the_rest_scored_alone() {
        // One of four answers wrong, and that row's fit did not come back.
        let data = labelled(&["no_sub", "axion"], &[0, 1, 0, 1], &[10, 11, 12, 13]);
        let mut t = table(
            &["no_sub", "axion"],
            &[10, 11, 12, 13],
            vec![Some(vec![0.9, 0.1]), Some(vec![0.2, 0.8]), Some(vec![0.3, 0.7]), Some(vec![0.4, 0.6])],
        );
        t.statuses = Some(["ok", "ok", UNSTABLE_FIT, "out_of_domain"].iter().map(|s| Some(s.to_string())).collect());
        // Unchecked fits (no refits recorded): nothing said about them.
        let e = evaluate_predictions(&t, Path::new("p.parquet"), &data, &[]).unwrap();
        assert_eq!(e.fit_stability, None);
        assert!(e.to_json(&[]).get("fit_stability").is_none());
        t.metadata.insert(FIT_REFITS_KEY.into(), "2".into());
        let e = evaluate_predictions(&t, Path::new("p.parquet"), &data, &[]).unwrap();
        let f = e.fit_stability.as_ref().expect("checked fits are summarised");
        assert_eq!(f.unstable_fit_fraction, 0.25);
        assert_eq!(f.reproducible_metrics.as_ref().unwrap().accuracy, 1.0);
        assert!(e.report.metrics.accuracy < 1.0);
        assert!(e.summary().contains("unstable_fit"), "{}", e.summary());
        assert_eq!(e.to_json(&[])["fit_stability"]["unstable_fit_fraction"], 0.25);
    }
}
