//! Reading a table of per-row class probabilities (a Parquet, Arrow IPC or FITS file):
//! what `lensmae predict` writes (`schemas/predictions.json`), or any model's output in the same columns, so
//! that `lensmae evaluate --predictions` scores it against labelled images.
//!
//! Needed: `id` (integer) and one `p_<class>` float column per class; a table that
//! `predict` wrote without an `id` (from FITS files, say) is keyed by its `row`
//! instead, which `inspect` reads and `evaluate` refuses. Optional:
//! `in_domain` (bool), `ood_score` (float) and `status` (string), read when
//! present, and the file's key-value metadata (`lensmae:model`, ...). A null
//! probability (a row `predict` could not score) stays `None`, for the caller to
//! report; it is never dropped or read as 0.

use super::fits::table_reader;
use super::fits::table_writer::FitsTableLayout;
use super::parquet::columns::arrow_cast_f64;
use crate::{Error, Result};
use arrow_array::cast::AsArray;
use arrow_array::Array;
use arrow_schema::DataType;
use std::path::Path;

/// The `status` of a row a classifier of smooth-lens residuals answered from a fit
/// that its refits did not find again, or whose refits it answered apart
/// (`predict --fit-refits`): the answer depends on how the cutout was stored.
pub const UNSTABLE_FIT: &str = "unstable_fit";

/// The metadata key recording how many refits checked each fit (`predict
/// --fit-refits`), written when a classifier of smooth-lens residuals fitted the rows.
pub const FIT_REFITS_KEY: &str = "lensmae:fit_refits";

/// How predictions are laid out in a FITS file (`--out x.fits`): the table
/// extension `PREDICTIONS`, the super-resolved cutouts as the primary HDU's cube,
/// and the header naming the version, models with their SHA-256, task, input,
/// command and time (FITS keywords have 8 characters).
pub const PREDICTIONS_FITS: FitsTableLayout = FitsTableLayout {
    table_name: "PREDICTIONS",
    cube: Some(("sr_image", "SR_IMAGE")),
    header_keys: &[
        ("lensmae:version", "LENSMAE"),
        ("lensmae:schema_version", "SCHEMAV"),
        ("lensmae:task", "TASK"),
        ("lensmae:model", "MODEL"),
        ("lensmae:model_sha256", "MODELSHA"),
        ("lensmae:sr_model", "SRMODEL"),
        ("lensmae:sr_model_sha256", "SRMODSHA"),
        ("lensmae:nan_policy", "NANPOLCY"),
        ("lensmae:tta", "TTA"),
        ("lensmae:class_names", "CLASSES"),
        ("lensmae:input", "INPUT"),
        ("lensmae:command", "COMMAND"),
        ("lensmae:created", "DATE"),
        ("lensmae:build", "BUILD"),
    ],
};

/// One table of predictions, row by row in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictionTable {
    /// The classes of the `p_<class>` columns, in column order.
    pub class_names: Vec<String>,
    /// The key of each row: its `id`, or its `row` in `predict`'s inputs when the
    /// table has no `id` ([`PredictionTable::keyed_by_id`]).
    pub ids: Vec<i64>,
    /// Whether `ids` are the table's `id` column rather than its `row` numbers.
    pub keyed_by_id: bool,
    /// Each row's probabilities in `class_names` order; `None` where any is null.
    pub probabilities: Vec<Option<Vec<f32>>>,
    /// `in_domain` of each row, when the table has the column.
    pub in_domain: Option<Vec<Option<bool>>>,
    /// `ood_score` of each row, when the table has the column.
    pub ood_scores: Option<Vec<Option<f64>>>,
    /// `status` of each row (`ok`, `out_of_domain`, `unstable_fit`, or why it failed), when the
    /// table has the column.
    pub statuses: Option<Vec<Option<String>>>,
    /// `geometry` of each row (how the cutout was brought to the model's grid and
    /// where its deflector was found), when the table has the column.
    pub geometries: Option<Vec<Option<String>>>,
    /// The file's key-value metadata.
    pub metadata: std::collections::HashMap<String, String>,
}

/// A predictions file in any format `predict` writes: Parquet, Arrow IPC, or FITS
/// laid out as [`PREDICTIONS_FITS`] says (known by its first bytes, once).
#[derive(Debug, Clone, Copy)]
pub struct PredictionsFile<'a> {
    path: &'a Path,
    fits: bool,
}

impl<'a> PredictionsFile<'a> {
    /// The file at `path`.
    pub fn at(path: &'a Path) -> PredictionsFile<'a> {
        PredictionsFile { path, fits: super::fits::is_fits_file(path) }
    }

    /// Whether it is a FITS file.
    pub fn is_fits(&self) -> bool {
        self.fits
    }

    /// Its columns (a FITS file's cube as `sr_image`) and metadata.
    pub fn schema(&self) -> Result<arrow_schema::SchemaRef> {
        match self.fits {
            true => table_reader::schema(self.path, &PREDICTIONS_FITS),
            false => super::table_schema(self.path),
        }
    }

    /// Every batch of its columns `names`, in order; a missing column is the error
    /// `missing` words.
    pub fn for_each_batch(
        &self,
        names: &[&str],
        missing: &dyn Fn(&str) -> String,
        each: impl FnMut(arrow_array::RecordBatch) -> Result<()>,
    ) -> Result<()> {
        match self.fits {
            true => table_reader::for_each_batch(self.path, &PREDICTIONS_FITS, names, missing, each),
            false => super::for_each_table_batch(self.path, names, missing, each),
        }
    }
}

/// Whether the Parquet, Arrow IPC or FITS file at `path` is a table of predictions
/// (an `id` or a `row`, and `p_<class>` columns) rather than images.
pub fn is_prediction_table(path: &Path) -> bool {
    PredictionsFile::at(path).schema().is_ok_and(|schema| {
        let keyed = ["id", "row"].iter().any(|key| schema.field_with_name(key).is_ok());
        keyed && schema.fields().iter().any(|f| f.name().starts_with("p_"))
    })
}

/// Read the predictions table at `path` (see the module doc).
pub fn read_predictions(path: &Path) -> Result<PredictionTable> {
    let err = |message: String| Error::Table { path: path.to_path_buf(), message };
    let file = PredictionsFile::at(path);
    let schema = file.schema()?;
    let key = ["id", "row"].into_iter().find(|key| schema.field_with_name(key).is_ok());
    let key = key.ok_or_else(|| err("no `id` column (nor the `row` of a table `predict` wrote)".into()))?;
    let key_field = schema.field_with_name(key).expect("found above");
    if !key_field.data_type().is_integer() {
        return Err(err(format!("column `{key}` is {}, not an integer", key_field.data_type())));
    }
    let class_names: Vec<String> =
        schema.fields().iter().filter_map(|f| f.name().strip_prefix("p_").map(str::to_string)).collect();
    if class_names.is_empty() {
        return Err(err("no `p_<class>` probability columns".into()));
    }
    let has = |name: &str| schema.field_with_name(name).is_ok();
    for (name, want) in [("in_domain", DataType::Boolean), ("status", DataType::Utf8), ("geometry", DataType::Utf8)] {
        if let Ok(f) = schema.field_with_name(name) {
            if f.data_type() != &want {
                return Err(err(format!("column `{name}` is {}, not {want}", f.data_type())));
            }
        }
    }
    let mut wanted = vec![key.to_string()];
    wanted.extend(class_names.iter().map(|c| format!("p_{c}")));
    wanted.extend(["in_domain", "ood_score", "status", "geometry"].iter().filter(|n| has(n)).map(|n| n.to_string()));

    let k = class_names.len();
    let mut table = PredictionTable {
        class_names,
        ids: Vec::new(),
        keyed_by_id: key == "id",
        probabilities: Vec::new(),
        in_domain: has("in_domain").then(Vec::new),
        ood_scores: has("ood_score").then(Vec::new),
        statuses: has("status").then(Vec::new),
        geometries: has("geometry").then(Vec::new),
        metadata: schema.metadata().clone().into(),
    };
    let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
    let missing = |name: &str| format!("no column `{name}`");
    let each = |batch: arrow_array::RecordBatch| -> Result<()> {
        let column = |name: &str| batch.column_by_name(name).expect("projected");
        let as_f64 = |name: &str| arrow_cast_f64(column(name)).map_err(|m| err(format!("column `{name}`: {m}")));
        let first_row = table.ids.len();
        let ids = as_f64(key)?;
        for (r, id) in ids.iter().enumerate() {
            let id = id.ok_or_else(|| err(format!("row {}: `{key}` is null", first_row + r)))?;
            table.ids.push(id as i64);
        }
        let probs: Vec<_> = table.class_names.iter().map(|c| as_f64(&format!("p_{c}"))).collect::<Result<Vec<_>>>()?;
        for r in 0..batch.num_rows() {
            let row: Option<Vec<f32>> = probs.iter().map(|p| p.is_valid(r).then(|| p.value(r) as f32)).collect();
            if let Some((c, v)) = row.iter().flatten().enumerate().find(|(_, v)| !v.is_finite()) {
                let (row, class) = (first_row + r, &table.class_names[c]);
                return Err(err(format!("row {row}: `p_{class}` is {v}")));
            }
            table.probabilities.push(row.filter(|v| v.len() == k));
        }
        if let Some(flags) = table.in_domain.as_mut() {
            flags.extend(column("in_domain").as_boolean().iter());
        }
        if let Some(scores) = table.ood_scores.as_mut() {
            scores.extend(as_f64("ood_score")?.iter());
        }
        for (name, values) in [("status", &mut table.statuses), ("geometry", &mut table.geometries)] {
            if let Some(values) = values.as_mut() {
                values.extend(column(name).as_string::<i32>().iter().map(|s| s.map(str::to_string)));
            }
        }
        Ok(())
    };
    file.for_each_batch(&wanted, &missing, each)?;
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{BooleanArray, Float32Array, Int64Array, RecordBatch, StringArray};
    use std::sync::Arc;

    fn write(path: &Path, columns: Vec<(&str, Arc<dyn Array>)>) {
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        let file = std::fs::File::create(path).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }

    #[test]
    fn reads_probabilities_flags_and_keeps_unscored_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.parquet");
        write(
            &path,
            vec![
                ("row", Arc::new(Int64Array::from(vec![0, 1, 2]))),
                ("id", Arc::new(Int64Array::from(vec![7, 8, 9]))),
                ("p_a", Arc::new(Float32Array::from(vec![Some(0.25), None, Some(1.0)]))),
                ("p_b", Arc::new(Float32Array::from(vec![Some(0.75), None, Some(0.0)]))),
                ("pred_class", Arc::new(StringArray::from(vec!["b", "", "a"]))),
                ("in_domain", Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)]))),
            ],
        );
        let t = read_predictions(&path).unwrap();
        assert_eq!(t.class_names, ["a", "b"]);
        assert_eq!(t.ids, [7, 8, 9]);
        assert_eq!(t.probabilities, [Some(vec![0.25, 0.75]), None, Some(vec![1.0, 0.0])]);
        assert_eq!(t.in_domain, Some(vec![Some(true), None, Some(false)]));
        assert_eq!(t.ood_scores, None);
        assert_eq!(t.statuses, None);
        assert_eq!(t.geometries, None);
        assert!(t.keyed_by_id);
        assert!(is_prediction_table(&path));
    }

    #[test]
    fn a_table_predict_wrote_without_ids_is_keyed_by_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.parquet");
        write(
            &path,
            vec![
                ("row", Arc::new(Int64Array::from(vec![0, 1]))),
                ("p_a", Arc::new(Float32Array::from(vec![0.25, 0.5]))),
                ("geometry", Arc::new(StringArray::from(vec!["as is", "cropped to 64x64"]))),
            ],
        );
        assert!(is_prediction_table(&path));
        let t = read_predictions(&path).unwrap();
        assert_eq!((t.ids, t.keyed_by_id), (vec![0, 1], false));
        assert_eq!(t.geometries, Some(vec![Some("as is".into()), Some("cropped to 64x64".into())]));
    }

    #[test]
    fn refuses_tables_it_cannot_score_naming_the_column_and_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.parquet");
        let id = || -> Arc<dyn Array> { Arc::new(Int64Array::from(vec![0, 1])) };
        write(&path, vec![("id", id()), ("score", Arc::new(Float32Array::from(vec![0.1, 0.2])))]);
        assert!(read_predictions(&path).unwrap_err().to_string().contains("no `p_<class>`"));
        write(&path, vec![("p_a", Arc::new(Float32Array::from(vec![0.1, 0.2])))]);
        assert!(read_predictions(&path).unwrap_err().to_string().contains("no `id` column"));
        write(&path, vec![("id", Arc::new(StringArray::from(vec!["x", "y"]))), ("p_a", id())]);
        assert!(read_predictions(&path).unwrap_err().to_string().contains("`id` is Utf8"));
        write(&path, vec![("id", id()), ("p_a", Arc::new(Float32Array::from(vec![0.5, f32::NAN])))]);
        let e = read_predictions(&path).unwrap_err().to_string();
        assert!(e.contains("row 1") && e.contains("`p_a` is NaN") && e.contains("p.parquet"), "{e}");
    }
}
