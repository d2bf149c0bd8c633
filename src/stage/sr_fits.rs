//! The super-resolved cutouts of a predictions table as FITS files of their own
//! (`lensmae sr-fits`), each placed on the sky by its `sr_wcs`: what DS9 and a
//! survey's visual-inspection tools open, where the table's `sr_image` column
//! (and the FITS output's cube, one WCS for all planes) cannot say where each
//! cutout lies. The folder appears whole or not at all.

use crate::data::atomic::AtomicPath;
use crate::data::fits::cutout_file::{wcs_cards, write_cutout_file, KeyValue};
use crate::data::predictions::PredictionsFile;
use crate::{Error, Result};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use serde::Serialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// What `sr-fits` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct SrFitsSummary {
    /// The folder of FITS files.
    pub out_dir: PathBuf,
    /// Rows of the table.
    pub rows: usize,
    /// Files written, one per row with a super-resolved cutout.
    pub written: usize,
    /// Of them, those with a celestial WCS (the others have pixel coordinates alone).
    pub placed_on_sky: usize,
    /// Rows without a super-resolved cutout (their `status` says why).
    pub without_sr_image: usize,
}

/// Writes every super-resolved cutout of the predictions table `input` (Parquet,
/// Arrow IPC or FITS, as `predict --task superres|all` writes it) to `out_dir` as
/// `<id>.fits` (an integer `id` column), else `row-<row>.fits`: the image in the
/// primary HDU with its WCS from `sr_wcs` and the keywords `ROW`, `ID` / `OBJECT`,
/// `STATUS`, `PRED_CLS`, `MAX_PROB`, `SRMODEL` where the table has them.
pub fn write_sr_fits(input: &Path, out_dir: &Path, overwrite: bool) -> Result<SrFitsSummary> {
    if input.is_dir() {
        return Err(Error::config(
            "input",
            format!(
                "{0} is a folder: sr-fits reads one predictions file; join the chunks of a `predict --out \
                 DIR` run first (`lensmae merge {0} --out all.parquet`), or give a HATS catalogue's \
                 partition files one by one",
                input.display()
            ),
        ));
    }
    let file = PredictionsFile::at(input);
    let table_error = |message: String| match file.is_fits() {
        true => Error::Fits { path: input.to_path_buf(), message },
        false => Error::Table { path: input.to_path_buf(), message },
    };
    let schema = file.schema()?;
    let side = match schema.field_with_name("sr_image").map(|f| f.data_type().clone()) {
        Ok(DataType::FixedSizeList(item, n)) if item.data_type() == &DataType::Float32 => {
            let side = (n.max(0) as f64).sqrt().round() as usize;
            if side * side != n as usize || side == 0 {
                return Err(table_error(format!("column `sr_image` holds {n} values a row, not a square image")));
            }
            side
        }
        Ok(other) => return Err(table_error(format!("column `sr_image` is {other}, not float32 images"))),
        Err(_) => {
            return Err(table_error(
                "no column `sr_image`: not the output of `lensmae predict --task superres` or `--task all`".into(),
            ))
        }
    };
    let mut names = vec!["row", "sr_image"];
    names.extend(
        ["id", "sr_wcs", "status", "pred_class", "max_prob"].into_iter().filter(|n| schema.field_with_name(n).is_ok()),
    );
    let sr_model = schema.metadata().get("lensmae:sr_model").cloned();
    let out = AtomicPath::new(out_dir, overwrite)?;
    std::fs::create_dir_all(out.temp_path()).map_err(|e| Error::io(out.temp_path(), e))?;
    let mut summary =
        SrFitsSummary { out_dir: out_dir.to_path_buf(), rows: 0, written: 0, placed_on_sky: 0, without_sr_image: 0 };
    let mut taken = HashSet::new();
    let missing = |name: &str| format!("no column `{name}`: not the output of `lensmae predict`");
    let each = |batch: RecordBatch| -> Result<()> {
        let columns = Columns::of(&batch).map_err(table_error)?;
        let images = batch.column_by_name("sr_image").expect("read").as_fixed_size_list();
        for r in 0..batch.num_rows() {
            summary.rows += 1;
            if images.is_null(r) {
                summary.without_sr_image += 1;
                continue;
            }
            let image = images.value(r);
            let pixels = image.as_primitive::<Float32Type>().values();
            let row = columns.row.value(r);
            let id = columns.id.as_ref().filter(|ids| ids.is_valid(r)).map(|ids| ids.value(r));
            let name = id.map_or_else(|| format!("row-{row}.fits"), |id| format!("{id}.fits"));
            if !taken.insert(name.clone()) {
                return Err(table_error(format!("two rows would both be written as {name}: the table repeats it")));
            }
            let wcs = columns.text("sr_wcs", r);
            let cards =
                wcs.map(wcs_cards).transpose().map_err(|why| table_error(format!("row {row}: sr_wcs: {why}")))?;
            let mut keys = vec![("ROW", KeyValue::Integer(row), "the row of lensmae predict's inputs")];
            if let Some(id) = id {
                keys.push(("ID", KeyValue::Integer(id), "the input's id"));
            } else if let Some(object) = columns.text("id", r) {
                keys.push(("OBJECT", KeyValue::Text(object.to_string()), "the input's id"));
            }
            for (key, column, comment) in [
                ("STATUS", "status", "lensmae predict's status of the row"),
                ("PRED_CLS", "pred_class", "the most probable class"),
            ] {
                if let Some(text) = columns.text(column, r) {
                    keys.push((key, KeyValue::Text(text.to_string()), comment));
                }
            }
            if let Some(p) = columns.max_prob.as_ref().filter(|p| p.is_valid(r)) {
                keys.push(("MAX_PROB", KeyValue::Real(f64::from(p.value(r))), "the probability of PRED_CLS"));
            }
            if let Some(model) = &sr_model {
                keys.push(("SRMODEL", KeyValue::Text(model.clone()), "the super-resolution model"));
            }
            keys.push(("LENSMAE", KeyValue::Text(env!("CARGO_PKG_VERSION").into()), "lensmae version"));
            let path = out.temp_path().join(&name);
            write_cutout_file(&path, [side, side], pixels, cards.as_deref().unwrap_or(&[]), &keys)?;
            summary.written += 1;
            summary.placed_on_sky += usize::from(cards.is_some());
        }
        Ok(())
    };
    file.for_each_batch(&names, &missing, each)?;
    out.commit()?;
    Ok(summary)
}

/// The columns of one batch beside the images, in the types they are read as.
struct Columns {
    row: arrow_array::Int64Array,
    /// An integer `id` (None for text ids, read by [`Columns::text`]).
    id: Option<arrow_array::Int64Array>,
    max_prob: Option<arrow_array::Float32Array>,
    /// The text columns the batch has (`sr_wcs`, `status`, `pred_class`, a text
    /// `id`), whatever string type they were written as.
    texts: Vec<(&'static str, arrow_array::StringArray)>,
}

impl Columns {
    fn of(batch: &RecordBatch) -> std::result::Result<Columns, String> {
        let cast = |name: &str, to: &DataType| -> std::result::Result<Option<arrow_array::ArrayRef>, String> {
            batch
                .column_by_name(name)
                .map(|c| arrow_cast::cast(c, to).map_err(|e| format!("column `{name}`: {e}")))
                .transpose()
        };
        let is =
            |name: &str, kind: fn(&DataType) -> bool| batch.column_by_name(name).is_some_and(|c| kind(c.data_type()));
        let int64 = |name: &str| -> std::result::Result<Option<arrow_array::Int64Array>, String> {
            if !is(name, DataType::is_integer) {
                return Ok(None);
            }
            Ok(cast(name, &DataType::Int64)?.map(|c| c.as_primitive::<Int64Type>().clone()))
        };
        let row = int64("row")?.ok_or("column `row` is not integers")?;
        let max_prob = match is("max_prob", DataType::is_floating) {
            true => cast("max_prob", &DataType::Float32)?.map(|c| c.as_primitive::<Float32Type>().clone()),
            false => None,
        };
        let text = |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
        let mut texts = Vec::new();
        for name in ["sr_wcs", "status", "pred_class", "id"] {
            if is(name, text) {
                let strings = cast(name, &DataType::Utf8)?.expect("the batch has it");
                texts.push((name, strings.as_string::<i32>().clone()));
            }
        }
        Ok(Columns { row, id: int64("id")?, max_prob, texts })
    }

    /// Row `r` of the text column `name`, where the batch has it and it is not null.
    fn text(&self, name: &str, r: usize) -> Option<&str> {
        let (_, strings) = self.texts.iter().find(|(n, _)| *n == name)?;
        strings.is_valid(r).then(|| strings.value(r))
    }
}
