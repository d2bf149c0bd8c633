//! Columns a FITS input carries into the output beside its cutouts: `--keep`, and
//! the PSF FWHM and exposure time that a classifier of smooth-lens residuals fits
//! each cutout with. A cutout's value is its row of a `PARAMS` table (lensmae's
//! simulated cubes), else a keyword of its image HDU's header, else of the primary
//! header: survey cutout files often keep the observation's keywords in the primary
//! HDU and the flux in an extension.

use super::{check_declared_bytes, fits_message};
use arrow_array::{ArrayRef, Float64Array, Int64Array, StringArray};
use arrow_schema::DataType;
use fitsio::hdu::{FitsHdu, HduInfo};
use fitsio::tables::ColumnDataType;
use fitsio::FitsFile;
use std::path::Path;
use std::sync::Arc;

/// One cutout's value of a carried column.
#[derive(Debug, Clone, PartialEq)]
pub enum KeptValue {
    Int(i64),
    Float(f64),
    Text(String),
}

/// The header keywords that may hold column `name`, in the order they are tried: the
/// name as a keyword (cfitsio matches it without regard to case, and as a HIERARCH
/// keyword beyond 8 characters), then the FITS standard's keyword for a column
/// lensmae names otherwise (`exposure_time`: EXPTIME).
pub fn keywords_for(name: &str) -> Vec<String> {
    let mut keys = vec![name.to_ascii_uppercase()];
    if name.eq_ignore_ascii_case("exposure_time") {
        keys.push("EXPTIME".to_string());
    }
    keys
}

/// The value of column `name` in `hdu`'s header: a number where the keyword's value
/// reads as one, else its text; None where no keyword of [`keywords_for`] is there.
pub(super) fn header_value(f: &mut FitsFile, hdu: &FitsHdu, name: &str) -> Option<KeptValue> {
    keywords_for(name).iter().find_map(|key| {
        if let Ok(v) = hdu.read_key::<f64>(f, key) {
            return v.is_finite().then_some(KeptValue::Float(v));
        }
        hdu.read_key::<String>(f, key).ok().map(|v| KeptValue::Text(v.trim().to_string()))
    })
}

/// A `PARAMS` binary table: lensmae's simulated cubes describe each plane in one
/// of its rows.
pub(super) struct ParamsTable {
    pub rows: usize,
    /// Its `id` column.
    pub ids: Option<Vec<i64>>,
    /// Per column asked for (in that order), its values; None where the table has no
    /// such column of single values.
    columns: Vec<Option<Vec<KeptValue>>>,
}

impl ParamsTable {
    /// The file's `PARAMS` table with its columns `names` (matched without regard to
    /// case): Ok(None) where there is none, Err where its header declares more data
    /// than the file holds (nothing of it is read then: a hostile NAXIS2 would
    /// otherwise size the columns' buffers).
    pub(super) fn read(f: &mut FitsFile, path: &Path, names: &[String]) -> Result<Option<ParamsTable>, String> {
        let Some(table) = super::hdu_named(f, "PARAMS")? else { return Ok(None) };
        let HduInfo::TableInfo { column_descriptions, num_rows } = &table.info else { return Ok(None) };
        let (rows, descriptions) = (*num_rows, column_descriptions.clone());
        let row_bytes: i64 = table.read_key(f, "NAXIS1").map_err(|e| fits_message(&e))?;
        let declared = u64::try_from(row_bytes).ok().and_then(|b| b.checked_mul(rows as u64));
        check_declared_bytes(f, path, "the PARAMS table", declared)?;
        let column = |f: &mut FitsFile, name: &str| -> Option<Vec<KeptValue>> {
            let found = descriptions.iter().find(|d| d.name.trim().eq_ignore_ascii_case(name))?;
            let exact = found.name.clone();
            use ColumnDataType::*;
            match found.data_type.typ {
                _ if found.data_type.repeat != 1 && found.data_type.typ != String && found.data_type.typ != Text => {
                    None
                }
                Byte | SignedByte | Short | UnsignedShort | Int | Long | LongLong => {
                    let values: Vec<i64> = table.read_col(f, &exact).ok()?;
                    Some(values.into_iter().map(KeptValue::Int).collect())
                }
                Float | Double | UnsignedLong | UnsignedLongLong => {
                    let values: Vec<f64> = table.read_col(f, &exact).ok()?;
                    Some(values.into_iter().map(KeptValue::Float).collect())
                }
                String | Text => {
                    let values: Vec<std::string::String> = table.read_col(f, &exact).ok()?;
                    Some(values.into_iter().map(|v| KeptValue::Text(v.trim().to_string())).collect())
                }
                Logical | Bit => None,
            }
        };
        let ids = column(f, "id").and_then(|values| {
            values.into_iter().map(|v| if let KeptValue::Int(id) = v { Some(id) } else { None }).collect()
        });
        let columns = names.iter().map(|name| column(f, name)).collect();
        Ok(Some(ParamsTable { rows, ids, columns }))
    }

    /// Row `row`'s value of the `k`-th column asked for.
    pub(super) fn value(&self, k: usize, row: usize) -> Option<KeptValue> {
        self.columns[k].as_ref().and_then(|values| values.get(row)).cloned()
    }
}

/// The Arrow type of a carried column holding `values`: Int64 when all are whole
/// numbers from a table's integer column, Float64 when all are numbers, else Utf8;
/// None when there are none.
pub(super) fn column_type<'a>(values: impl Iterator<Item = &'a KeptValue>) -> Option<DataType> {
    let mut kind = None;
    for v in values {
        let this = match v {
            KeptValue::Int(_) => DataType::Int64,
            KeptValue::Float(_) => DataType::Float64,
            KeptValue::Text(_) => DataType::Utf8,
        };
        kind = Some(match (kind, this) {
            (None, t) => t,
            (Some(DataType::Utf8), _) | (_, DataType::Utf8) => DataType::Utf8,
            (Some(DataType::Float64), _) | (_, DataType::Float64) => DataType::Float64,
            (Some(t), _) => t,
        });
    }
    kind
}

/// A column of `data_type` (from [`column_type`]) of `values`, null where a cutout has none.
pub(super) fn column_array<'a>(data_type: &DataType, values: impl Iterator<Item = Option<&'a KeptValue>>) -> ArrayRef {
    match data_type {
        DataType::Int64 => Arc::new(Int64Array::from_iter(values.map(|v| match v {
            Some(KeptValue::Int(i)) => Some(*i),
            _ => None,
        }))),
        DataType::Float64 => Arc::new(Float64Array::from_iter(values.map(|v| match v {
            Some(KeptValue::Int(i)) => Some(*i as f64),
            Some(KeptValue::Float(x)) => Some(*x),
            _ => None,
        }))),
        _ => Arc::new(StringArray::from_iter(values.map(|v| {
            v.map(|v| match v {
                KeptValue::Int(i) => i.to_string(),
                KeptValue::Float(x) => x.to_string(),
                KeptValue::Text(s) => s.clone(),
            })
        }))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;

    #[test]
    fn a_column_is_as_narrow_as_its_values_allow() {
        let (int, float, text) = (KeptValue::Int(3), KeptValue::Float(2.5), KeptValue::Text("cdm".into()));
        assert_eq!(column_type([&int, &int].into_iter()), Some(DataType::Int64));
        assert_eq!(column_type([&int, &float].into_iter()), Some(DataType::Float64));
        assert_eq!(column_type([&float, &text, &int].into_iter()), Some(DataType::Utf8));
        assert_eq!(column_type(std::iter::empty()), None);
        let array = column_array(&DataType::Float64, [Some(&int), None, Some(&float)].into_iter());
        let floats = array.as_any().downcast_ref::<Float64Array>().unwrap();
        assert_eq!((floats.value(0), floats.is_null(1), floats.value(2)), (3.0, true, 2.5));
        let array = column_array(&DataType::Utf8, [Some(&float), Some(&text)].into_iter());
        let strings = array.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!((strings.value(0), strings.value(1)), ("2.5", "cdm"));
    }

    #[test]
    fn the_exposure_time_is_also_the_standard_keyword() {
        assert_eq!(keywords_for("exposure_time"), ["EXPOSURE_TIME", "EXPTIME"]);
        assert_eq!(keywords_for("psf_fwhm"), ["PSF_FWHM"]);
    }
}
