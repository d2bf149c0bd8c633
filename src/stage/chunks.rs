//! Chunked output: how the rows of an input are cut into chunk files, which of
//! them a shard writes, which a resumed run still owes, and how `merge` joins
//! them.
//!
//! `--out FILE.parquet` is one chunk holding every row. `--out DIR` cuts the input
//! into chunks of `chunk_rows` consecutive rows, each written to
//! `DIR/part-NNNNNN.parquet` under a temporary name and renamed when complete: a
//! file under its final name is the chunk's done marker. Shard `i/N` writes the
//! chunks whose number is `i` modulo `N`. `DIR/_lensmae_predict.json` records what
//! the chunks were made from, so a resumed run or another shard with different
//! inputs or models is refused instead of mixing results.

use super::output::PredictionWriter;
use crate::data::atomic::write_atomically;
use crate::{Error, Result};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// The manifest's file name inside an output folder.
pub const MANIFEST: &str = "_lensmae_predict.json";

/// Shard `index` of `count` (from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// This shard, `0..count`.
    pub index: usize,
    /// Shards in all.
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = Error;

    fn from_str(s: &str) -> Result<Shard> {
        let bad = || Error::config("--shard", format!("`{s}` is not i/N with 0 <= i < N"));
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// What every chunk of one output folder was made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Input rows in all.
    pub rows: usize,
    /// Rows per chunk (the last may hold fewer).
    pub chunk_rows: usize,
    /// The inputs, as given.
    pub inputs: Vec<String>,
    /// The output file metadata of the run (task, models and their SHA-256).
    pub identity: std::collections::BTreeMap<String, String>,
    /// Chunks the input itself defines (a HATS catalogue's partition files): the
    /// path under the output folder and the rows of each; empty for row chunks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub natural_chunks: Vec<(String, usize)>,
}

impl Manifest {
    /// Chunks in all.
    pub fn chunks(&self) -> usize {
        if self.natural_chunks.is_empty() {
            self.rows.div_ceil(self.chunk_rows.max(1))
        } else {
            self.natural_chunks.len()
        }
    }

    /// The rows of chunk `k`.
    pub fn range(&self, k: usize) -> Range<usize> {
        if self.natural_chunks.is_empty() {
            return k * self.chunk_rows..((k + 1) * self.chunk_rows).min(self.rows);
        }
        let start: usize = self.natural_chunks[..k].iter().map(|c| c.1).sum();
        start..start + self.natural_chunks[k].1
    }

    /// Where chunk `k` goes in the output folder `dir`.
    pub fn chunk_path(&self, dir: &Path, k: usize) -> PathBuf {
        match self.natural_chunks.get(k) {
            Some((relative, _)) => dir.join(relative),
            None => dir.join(format!("part-{k:06}.parquet")),
        }
    }
}

/// Whether `--out` names one file (rather than a folder of chunks).
pub fn is_single_file(out: &Path) -> bool {
    out.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
}

/// Writes the manifest, or checks that an existing one describes the same run.
pub fn claim_folder(dir: &Path, manifest: &Manifest) -> Result<()> {
    let path = dir.join(MANIFEST);
    if path.exists() {
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let old: Manifest =
            serde_json::from_str(&text).map_err(|e| Error::config("--out", format!("{}: {e}", path.display())))?;
        let differs = |what: &str| {
            Error::config("--out", format!("{} holds chunks made with other {what}; use another folder", dir.display()))
        };
        if old.rows != manifest.rows || old.inputs != manifest.inputs || old.natural_chunks != manifest.natural_chunks {
            return Err(differs("inputs"));
        }
        if old.chunk_rows != manifest.chunk_rows {
            return Err(differs(&format!("--chunk-rows ({})", old.chunk_rows)));
        }
        let models = |m: &Manifest| {
            m.identity
                .iter()
                .filter(|(k, _)| k.ends_with("sha256") || k.ends_with("task"))
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
        };
        if models(&old) != models(manifest) {
            return Err(differs("models or task"));
        }
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    write_atomically(&path, serde_json::to_string_pretty(manifest).expect("manifest serialises"))
}

/// Joins the chunks of `dir` (all of them must be there) into one Parquet file.
pub fn merge(dir: &Path, out: &Path, overwrite: bool) -> Result<usize> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let manifest: Manifest =
        serde_json::from_str(&text).map_err(|e| Error::config("merge", format!("{}: {e}", path.display())))?;
    let missing: Vec<usize> = (0..manifest.chunks()).filter(|&k| !manifest.chunk_path(dir, k).exists()).collect();
    if !missing.is_empty() {
        let shown: Vec<String> =
            missing.iter().take(10).map(|k| manifest.chunk_path(dir, *k).display().to_string()).collect();
        return Err(Error::config(
            "merge",
            format!(
                "{} of {} chunks are missing (run the shards that owe them): {}",
                missing.len(),
                manifest.chunks(),
                shown.join(", ")
            ),
        ));
    }
    let mut writer: Option<PredictionWriter> = None;
    for k in 0..manifest.chunks() {
        let part = manifest.chunk_path(dir, k);
        let file = std::fs::File::open(&part).map_err(|e| Error::io(&part, e))?;
        let perr = |e: parquet::errors::ParquetError| Error::Parquet { path: part.clone(), message: e.to_string() };
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(perr)?;
        let rows = builder.metadata().file_metadata().num_rows() as usize;
        if rows != manifest.range(k).len() {
            return Err(Error::Parquet {
                path: part.clone(),
                message: format!("{rows} rows, the chunk has {}", manifest.range(k).len()),
            });
        }
        if writer.is_none() {
            writer = Some(PredictionWriter::create(out, builder.schema().clone(), overwrite)?);
        }
        let w = writer.as_mut().expect("created");
        for batch in builder.build().map_err(perr)? {
            w.write(&batch.map_err(|e| Error::Parquet { path: part.clone(), message: e.to_string() })?)?;
        }
    }
    match writer {
        Some(w) => w.finish(),
        None => Err(Error::config("merge", format!("{} has no chunks", dir.display()))),
    }
}
