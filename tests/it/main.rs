//! Integration tests: one binary, one module per concern.

mod arrow_ipc;
mod cli;
mod config;
mod cuda_kernels;
mod datasets;
mod fuzz;
mod image_columns;
mod io;
mod metrics;
mod model_twin;
mod profiles;
mod real_data;
mod remote;
mod residuals;
mod sim_oracle;
mod stage;
mod train;

use std::path::PathBuf;

/// Path of a file under `fixtures/`.
pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(rel)
}

/// A FITS file at `path` whose primary HDU is a 16-bit cube of `dimensions` holding
/// `raw`, stored as survey products often are: BSCALE 0.001, BZERO 0.1 and BLANK
/// -32768. Left open for the caller's tables.
pub fn scaled_i16_cube(path: &std::path::Path, raw: &[i16], dimensions: &[usize]) -> fitsio::FitsFile {
    use fitsio::images::{ImageDescription, ImageType};
    let desc = ImageDescription { data_type: ImageType::Short, dimensions };
    let mut f = fitsio::FitsFile::create(path).with_custom_primary(&desc).open().unwrap();
    let hdu = f.primary_hdu().unwrap();
    hdu.write_image(&mut f, raw).unwrap();
    hdu.write_key(&mut f, "BSCALE", 0.001f64).unwrap();
    hdu.write_key(&mut f, "BZERO", 0.1f64).unwrap();
    hdu.write_key(&mut f, "BLANK", -32768i64).unwrap();
    f
}
