//! The DeepLense release layout: a folder of float64 `.npy` files.
//!
//! Classification: `<dir>/<class>/<class>_sim_<id>.npy`, each `(H, W)`.
//! Super-resolution: `<dir>/HR/sample<id>.npy` `(1, H, W)` and `<dir>/LR/sample<id>.npy`
//! `(1, h, w)`, as the DeepLense super-resolution release. Either way
//! `<dir>/params.csv` lists every file with its label and parameters. The folder is
//! built under a temporary name and renamed when complete.

use super::atomic::AtomicPath;
use super::npy::write_npy_f64;
use super::record::{DatasetInfo, Record, Task, PARAM_COLUMNS};
use super::{DatasetWriter, WriteSummary};
use crate::{Error, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Writes a DeepLense-style `.npy` folder tree.
pub struct NpyTreeWriter {
    info: DatasetInfo,
    atomic: AtomicPath,
    csv: BufWriter<File>,
    csv_path: PathBuf,
    rows: usize,
}

impl NpyTreeWriter {
    /// Start writing the folder `dir`.
    pub fn create(dir: &Path, info: DatasetInfo, overwrite: bool) -> Result<Self> {
        let atomic = AtomicPath::new(dir, overwrite)?;
        let root = atomic.temp_path().to_path_buf();
        let subdirs: Vec<String> = match info.task {
            Task::Classify => info.class_names.clone(),
            Task::Superres { .. } => vec!["HR".into(), "LR".into()],
        };
        for sub in subdirs {
            std::fs::create_dir_all(root.join(&sub)).map_err(|e| Error::io(root.join(&sub), e))?;
        }
        let csv_path = root.join("params.csv");
        let mut csv = BufWriter::new(File::create(&csv_path).map_err(|e| Error::io(&csv_path, e))?);
        let header: Vec<&str> = ["id", "label", "label_idx", "file", "n_subhalos"]
            .into_iter()
            .chain(PARAM_COLUMNS.iter().map(|c| c.name))
            .collect();
        writeln!(csv, "{}", header.join(",")).map_err(|e| Error::io(&csv_path, e))?;
        Ok(NpyTreeWriter { info, atomic, csv, csv_path, rows: 0 })
    }

    fn files(&self, r: &Record) -> Vec<(PathBuf, Vec<usize>)> {
        let columns = self.info.image_columns();
        match self.info.task {
            Task::Classify => {
                let class = &self.info.class_names[r.class_idx];
                let s = columns[0].1;
                vec![(PathBuf::from(class).join(format!("{class}_sim_{}.npy", r.id)), vec![s, s])]
            }
            Task::Superres { .. } => columns
                .iter()
                .map(|(name, s)| {
                    (PathBuf::from(name.to_uppercase()).join(format!("sample{}.npy", r.id)), vec![1, *s, *s])
                })
                .collect(),
        }
    }
}

impl DatasetWriter for NpyTreeWriter {
    fn write_batch(&mut self, records: &[Record]) -> Result<()> {
        let root = self.atomic.temp_path().to_path_buf();
        for r in records {
            let files = self.files(r);
            for ((rel, shape), img) in files.iter().zip(&r.images) {
                write_npy_f64(&root.join(rel), shape, &img.pixels)?;
            }
            let mut line = format!(
                "{},{},{},{},{}",
                r.id,
                self.info.class_names[r.class_idx],
                r.class_idx,
                files[0].0.display(),
                r.n_subhalos
            );
            for col in &PARAM_COLUMNS {
                line.push(',');
                if let Some(v) = (col.get)(r) {
                    line.push_str(&format!("{v:e}"));
                }
            }
            writeln!(self.csv, "{line}").map_err(|e| Error::io(&self.csv_path, e))?;
        }
        self.rows += records.len();
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<WriteSummary> {
        let root = self.atomic.temp_path().to_path_buf();
        self.csv.flush().map_err(|e| Error::io(&self.csv_path, e))?;
        let bytes = dir_size(&root);
        let path = self.atomic.target().to_path_buf();
        self.atomic.commit()?;
        Ok(WriteSummary { rows: self.rows, bytes, path })
    }
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        dir_size(&p)
                    } else {
                        e.metadata().map(|m| m.len()).unwrap_or(0)
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}
