//! FITS cutouts: single-image files, cubes whose NAXIS3 is a stack of cutouts,
//! and multi-extension files (one named extension, or every image extension).
//!
//! cfitsio applies BSCALE/BZERO and reads every BITPIX (and `.fits.gz`) as f32;
//! integer pixels equal to BLANK become NaN, so the NaN policy sees them. A file
//! that cannot be read becomes one output row with that reason, not a failed run.
//! Files are opened per batch (a `FitsFile` cannot cross threads), so the reader
//! holds only the plan of which image lies where.

use super::input::{CutoutBatch, CutoutReader, InputDescription, InputOptions};
use crate::{Error, Result};
use arrow_array::{ArrayRef, StringArray};
use arrow_schema::{DataType, Field};
use fitsio::hdu::HduInfo;
use fitsio::FitsFile;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where one cutout lies.
#[derive(Debug, Clone)]
struct Plane {
    file: usize,
    hdu: usize,
    /// Index in a cube (0 for a single image).
    plane: usize,
    /// Planes in its HDU (1 for a single image).
    planes: usize,
    shape: [usize; 2],
    /// Why the whole file or HDU cannot be read.
    problem: Option<String>,
}

/// FITS files read as one stream of cutouts.
pub struct FitsCutouts {
    files: Vec<PathBuf>,
    plan: Vec<Plane>,
    next: usize,
    desc: InputDescription,
}

fn fits_error(path: &Path, message: impl Into<String>) -> Error {
    Error::Fits { path: path.to_path_buf(), message: message.into() }
}

/// The image HDUs of an open file to read: `--hdu NAME`, else the primary if it
/// holds an image, else every image extension.
fn image_hdus(f: &mut FitsFile, hdu_name: Option<&str>) -> std::result::Result<Vec<(usize, Vec<usize>)>, String> {
    let count = f.num_hdus().map_err(|e| e.to_string())?;
    let mut found = Vec::new();
    for i in 0..count {
        let hdu = f.hdu(i).map_err(|e| e.to_string())?;
        let HduInfo::ImageInfo { shape, .. } = &hdu.info else { continue };
        if shape.len() < 2 {
            continue;
        }
        if let Some(name) = hdu_name {
            let extname: String = hdu.read_key(f, "EXTNAME").unwrap_or_default();
            if !extname.trim().eq_ignore_ascii_case(name) {
                continue;
            }
        } else if i > 0 && found.first().is_some_and(|(first, _)| *first == 0) {
            break; // the primary holds the image: extensions are something else
        }
        found.push((i, shape.clone()));
    }
    if found.is_empty() {
        return Err(match hdu_name {
            Some(name) => format!("no image extension named `{name}`"),
            None => "no image HDU".to_string(),
        });
    }
    Ok(found)
}

impl FitsCutouts {
    /// Reads every file's headers and plans the cutouts.
    pub fn open(files: &[PathBuf], opts: &InputOptions) -> Result<FitsCutouts> {
        let mut plan = Vec::new();
        let mut shape: Option<[usize; 2]> = None;
        for (file, path) in files.iter().enumerate() {
            let broken =
                |problem: String| Plane { file, hdu: 0, plane: 0, planes: 1, shape: [0, 0], problem: Some(problem) };
            let mut f = match FitsFile::open(path) {
                Ok(f) => f,
                Err(e) => {
                    plan.push(broken(format!("unreadable FITS file: {e}")));
                    continue;
                }
            };
            let hdus = match image_hdus(&mut f, opts.hdu.as_deref()) {
                Ok(h) => h,
                Err(e) => {
                    plan.push(broken(e));
                    continue;
                }
            };
            for (hdu, dims) in hdus {
                let (planes, hw) = match dims.as_slice() {
                    [h, w] => (1, [*h, *w]),
                    [n, h, w] => (*n, [*h, *w]),
                    [1, n, h, w] => (*n, [*h, *w]),
                    other => {
                        plan.push(Plane { hdu, ..broken(format!("HDU {hdu} is {other:?}, not an image or a cube")) });
                        continue;
                    }
                };
                shape.get_or_insert(hw);
                plan.extend((0..planes).map(|plane| Plane { file, hdu, plane, planes, shape: hw, problem: None }));
            }
        }
        let image_shape = shape.ok_or_else(|| fits_error(&files[0], "no readable image in any input file"))?;
        let cubes = plan.iter().any(|p| p.planes > 1);
        let layout = match (&opts.hdu, cubes) {
            (Some(name), _) => format!("extension `{name}` of each file"),
            (None, true) => "image cubes (NAXIS3 = cutouts)".to_string(),
            (None, false) => "one image per HDU".to_string(),
        };
        Ok(FitsCutouts {
            files: files.to_vec(),
            desc: InputDescription {
                format: "fits".into(),
                files: files.to_vec(),
                rows: plan.len(),
                image_shape,
                layout,
                carried_columns: vec!["source".into()],
                natural_chunks: vec![],
                hats_properties: None,
            },
            plan,
            next: 0,
        })
    }

    /// The pixels of planes `first..first + count` of one HDU, BLANK as NaN.
    fn read_planes(f: &mut FitsFile, p: &Plane, count: usize) -> std::result::Result<Vec<f32>, String> {
        let n = p.shape[0] * p.shape[1];
        read_pixels(f, p.hdu, p.plane * n..(p.plane + count) * n)
    }
}

/// Pixels `range` (flattened) of image HDU `hdu`, scaled by BSCALE/BZERO, BLANK as NaN.
fn read_pixels(f: &mut FitsFile, hdu: usize, range: std::ops::Range<usize>) -> std::result::Result<Vec<f32>, String> {
    let hdu = f.hdu(hdu).map_err(|e| e.to_string())?;
    let mut pixels: Vec<f32> = hdu.read_section(f, range.start, range.end).map_err(|e| e.to_string())?;
    // BITPIX itself: the image type cfitsio reports is the scaled one (float
    // for a fractional BSCALE), while BLANK applies to the stored integers.
    let integer = hdu.read_key::<i64>(f, "BITPIX").is_ok_and(|b| b > 0);
    if integer {
        if let Ok(blank) = hdu.read_key::<i64>(f, "BLANK") {
            let scale: f64 = hdu.read_key(f, "BSCALE").unwrap_or(1.0);
            let zero: f64 = hdu.read_key(f, "BZERO").unwrap_or(0.0);
            let blank = (blank as f64 * scale + zero) as f32;
            pixels.iter_mut().filter(|v| **v == blank).for_each(|v| *v = f32::NAN);
        }
    }
    Ok(pixels)
}

/// The first 2-D image of a FITS file held in memory (an alert stamp; gzipped or
/// not): its `[height, width]` and pixels. cfitsio reads files, so the bytes go
/// through a temporary file.
pub fn decode_fits_bytes(bytes: &[u8]) -> std::result::Result<([usize; 2], Vec<f32>), String> {
    let gzipped = bytes.starts_with(&[0x1f, 0x8b]);
    let file = tempfile::Builder::new()
        .suffix(if gzipped { ".fits.gz" } else { ".fits" })
        .tempfile()
        .map_err(|e| format!("temporary file: {e}"))?;
    std::fs::write(file.path(), bytes).map_err(|e| format!("temporary file: {e}"))?;
    let mut f = FitsFile::open(file.path()).map_err(|e| format!("not a FITS image: {e}"))?;
    let (hdu, dims) = image_hdus(&mut f, None)?.remove(0);
    let shape = match dims.as_slice() {
        [h, w] | [1, h, w] => [*h, *w],
        other => return Err(format!("a {other:?} image, not a single cutout")),
    };
    Ok((shape, read_pixels(&mut f, hdu, 0..shape[0] * shape[1])?))
}

impl CutoutReader for FitsCutouts {
    fn describe(&self) -> &InputDescription {
        &self.desc
    }

    fn carried_fields(&self) -> Vec<Field> {
        vec![Field::new("source", DataType::Utf8, false)]
    }

    fn next_batch(&mut self, max_rows: usize) -> Result<Option<CutoutBatch>> {
        let end = (self.next + max_rows.max(1)).min(self.plan.len());
        if self.next >= end {
            return Ok(None);
        }
        let [h, w] = self.desc.image_shape;
        let n = h * w;
        let rows = end - self.next;
        let mut pixels = vec![0f32; rows * n];
        let mut problems = vec![None; rows];
        let mut sources = Vec::with_capacity(rows);
        let mut open: Option<(usize, FitsFile)> = None;
        let mut i = self.next;
        while i < end {
            let p = self.plan[i].clone();
            let path = &self.files[p.file];
            // Planes of the same HDU in this batch are read in one call.
            let mut count = 1;
            while i + count < end && self.plan[i + count].file == p.file && self.plan[i + count].hdu == p.hdu {
                count += 1;
            }
            for k in 0..count {
                sources.push(match p.planes {
                    1 => format!("{}[{}]", path.display(), p.hdu),
                    _ => format!("{}[{}][{}]", path.display(), p.hdu, p.plane + k),
                });
            }
            let row = i - self.next;
            let result = if let Some(problem) = &p.problem {
                Err(problem.clone())
            } else if p.shape != [h, w] {
                Err(format!("image is {}x{}, expected {h}x{w}", p.shape[0], p.shape[1]))
            } else {
                if open.as_ref().map_or(true, |(file, _)| *file != p.file) {
                    let f = FitsFile::open(path).map_err(|e| fits_error(path, e.to_string()))?;
                    open = Some((p.file, f));
                }
                Self::read_planes(&mut open.as_mut().expect("opened").1, &p, count)
            };
            match result {
                Ok(values) => pixels[row * n..(row + count) * n].copy_from_slice(&values),
                Err(problem) => problems[row..row + count].iter_mut().for_each(|q| *q = Some(problem.clone())),
            }
            i += count;
        }
        self.next = end;
        let source: ArrayRef = Arc::new(StringArray::from(sources));
        Ok(Some(CutoutBatch { pixels, problems, carried: vec![(self.carried_fields().remove(0), source)] }))
    }

    fn skip_rows(&mut self, n: usize) -> Result<()> {
        self.next = (self.next + n).min(self.plan.len());
        Ok(())
    }
}
