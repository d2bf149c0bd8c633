//! `.npy` cutouts: a folder of images, a DeepLense-style tree of class folders
//! (the folder name is carried as `label`), or `.npy` files named one by one.
//! A file that cannot be read, or is not a single image, becomes a row with that
//! reason.

use crate::data::cutouts::{rows_in_batch, CutoutBatch, CutoutReader, InputDescription};
use crate::data::images::sorted_entries;
use crate::data::npy::read_npy_image;
use crate::Result;
use arrow_array::{ArrayRef, StringArray};
use arrow_schema::{DataType, Field};
use std::path::PathBuf;
use std::sync::Arc;

/// `.npy` images read one file per row.
pub struct NpyCutouts {
    /// (file, class folder name if the layout has them)
    files: Vec<(PathBuf, Option<String>)>,
    next: usize,
    desc: InputDescription,
}

fn is_npy(p: &std::path::Path) -> bool {
    p.is_file() && p.extension().is_some_and(|e| e == "npy")
}

fn image_shape(shape: &[usize]) -> Option<[usize; 2]> {
    match shape {
        [h, w] | [1, h, w] => Some([*h, *w]),
        _ => None,
    }
}

impl NpyCutouts {
    /// Lists the files (sorted by name) and reads the first one's shape.
    pub fn open(inputs: &[PathBuf]) -> Result<NpyCutouts> {
        let mut files = Vec::new();
        let mut classes = false;
        for input in inputs {
            if !input.is_dir() {
                files.push((input.clone(), None));
                continue;
            }
            for entry in sorted_entries(input)? {
                if is_npy(&entry) {
                    files.push((entry, None));
                } else if entry.is_dir() {
                    let class = entry.file_name().unwrap_or_default().to_string_lossy().into_owned();
                    for file in sorted_entries(&entry)?.into_iter().filter(|p| is_npy(p)) {
                        classes = true;
                        files.push((file, Some(class.clone())));
                    }
                }
            }
        }
        let first = files.first().ok_or_else(|| crate::Error::Npy {
            path: inputs[0].clone(),
            message: "holds no cutouts: no Parquet, FITS or .npy files (nor class folders of .npy files)".into(),
        })?;
        let shape = files
            .iter()
            .find_map(|(f, _)| read_npy_image(f).ok().and_then(|(a, _)| image_shape(&a.shape)))
            .ok_or_else(|| crate::Error::Npy { path: first.0.clone(), message: "no readable single image".into() })?;
        let mut carried = vec!["source".to_string()];
        if classes {
            carried.push("label".into());
        }
        Ok(NpyCutouts {
            desc: InputDescription {
                format: "npy".into(),
                files: inputs.to_vec(),
                rows: files.len(),
                image_shape: shape,
                pixel_scale: None,
                layout: if classes { "class folders of .npy images" } else { ".npy images" }.into(),
                carried_columns: carried,
                natural_chunks: vec![],
                hats_properties: None,
            },
            files,
            next: 0,
        })
    }
}

impl CutoutReader for NpyCutouts {
    fn describe(&self) -> &InputDescription {
        &self.desc
    }

    fn carried_fields(&self) -> Vec<Field> {
        let mut fields = vec![Field::new("source", DataType::Utf8, false)];
        if self.desc.carried_columns.iter().any(|c| c == "label") {
            fields.push(Field::new("label", DataType::Utf8, true));
        }
        fields
    }

    fn next_batch(&mut self, max_rows: usize) -> Result<Option<CutoutBatch>> {
        let end = (self.next + rows_in_batch(max_rows, self.desc.image_shape)).min(self.files.len());
        if self.next >= end {
            return Ok(None);
        }
        let [h, w] = self.desc.image_shape;
        let n = h * w;
        let chunk = &self.files[self.next..end];
        let mut pixels = vec![0f32; chunk.len() * n];
        let mut problems = vec![None; chunk.len()];
        for (row, (file, _)) in chunk.iter().enumerate() {
            problems[row] = match read_npy_image(file) {
                Err(e) => Some(format!("unreadable: {e}")),
                Ok((a, _)) => match image_shape(&a.shape) {
                    Some(s) if s == [h, w] => {
                        pixels[row * n..(row + 1) * n].iter_mut().zip(&a.data).for_each(|(p, &v)| *p = v as f32);
                        None
                    }
                    _ => Some(format!("shape {:?}, expected {h}x{w}", a.shape)),
                },
            };
        }
        let source: ArrayRef =
            Arc::new(StringArray::from_iter_values(chunk.iter().map(|(f, _)| f.display().to_string())));
        let mut columns = vec![source];
        if self.desc.carried_columns.iter().any(|c| c == "label") {
            columns.push(Arc::new(StringArray::from_iter(chunk.iter().map(|(_, c)| c.clone()))));
        }
        let carried = self.carried_fields().into_iter().zip(columns).collect();
        self.next = end;
        // `.npy` files record no pixel scale, position or unit.
        let rows = chunk.len();
        let (pixel_scales, wcs, flux) = (vec![None; rows], vec![None; rows], vec![Default::default(); rows]);
        Ok(Some(CutoutBatch { pixels, problems, carried, pixel_scales, wcs, flux, noise: None }))
    }

    fn skip_rows(&mut self, n: usize) -> Result<()> {
        self.next = (self.next + n).min(self.files.len());
        Ok(())
    }
}
