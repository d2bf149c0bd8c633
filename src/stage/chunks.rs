//! Chunked output: how the rows of an input are cut into chunk files, which of
//! them a shard writes, which a resumed run still owes, and how `merge` joins
//! them.
//!
//! `--out FILE.parquet` is one chunk holding every row. `--out DIR` cuts the input
//! into chunks of `chunk_rows` consecutive rows, each written to
//! `DIR/part-NNNNNN.parquet` under a temporary name and renamed when complete: a
//! file under its final name is the chunk's done marker. Shard `i/N` writes the
//! chunks whose number is `i` modulo `N`. `DIR/_lensmae_predict.json` records what
//! the chunks were made from (a fingerprint of every input file, the models'
//! hashes, every option that changes a row), so a resumed run or another shard
//! with different inputs, models or options is refused instead of mixing results,
//! and `merge` checks every chunk against it. Batches never cross a chunk's
//! boundary, so a resumed run writes the same bytes an uninterrupted one would.

use super::output::PredictionSink;
use crate::data::atomic::{remove_stale_temporaries, write_atomically};
use crate::data::fingerprint::{describe_change, FileFingerprint};
use crate::{Error, Result};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
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
    /// Every file read, as it was when the first chunk was made.
    #[serde(default)]
    pub fingerprints: Vec<FileFingerprint>,
    /// The output file metadata of the run (task, models and their SHA-256).
    pub identity: BTreeMap<String, String>,
    /// Every other option that changes a row: the carried columns (`--keep`,
    /// `--id-col`), `--image-col`, `--shape`, `--hdu`, `--batch-size`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
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
    out == Path::new(crate::data::ipc::table_writer::STANDARD_STREAM)
        || crate::data::ipc::IpcFormat::for_name(out).is_some()
        || out.extension().is_some_and(|e| ["parquet", "fits", "fit"].iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// Writes the manifest, or checks that an existing one describes the same run;
/// removes chunk temporaries of killed runs. With `replace` (`--overwrite`
/// without `--resume`), another run's manifest, chunks and catalogue files are
/// removed instead of refused.
pub fn claim_folder(dir: &Path, manifest: &Manifest, replace: bool) -> Result<()> {
    let path = dir.join(MANIFEST);
    if path.exists() {
        let old = read_manifest(dir, "--out")?;
        if let (Some(_), true) = (old.difference(manifest), replace) {
            // `--overwrite` of another run's folder: its chunks and catalogue files go.
            let files = (0..old.chunks()).map(|k| old.chunk_path(dir, k));
            let catalogue = ["hats.properties", "partition_info.csv", "dataset/_common_metadata", "dataset/_metadata"];
            for file in files.chain(catalogue.iter().map(|f| dir.join(f))) {
                if file.exists() {
                    std::fs::remove_file(&file).map_err(|e| Error::io(&file, e))?;
                }
            }
            return write_atomically(&path, serde_json::to_string_pretty(manifest).expect("manifest serialises"));
        }
        if let Some(difference) = old.difference(manifest) {
            return Err(Error::config(
                "--out",
                format!(
                    "{} holds chunks of another run ({difference}); resume or shard with the same inputs and \
                     options, --overwrite to replace them, or use another folder",
                    dir.display()
                ),
            ));
        }
        remove_stale_temporaries(dir, None);
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    write_atomically(&path, serde_json::to_string_pretty(manifest).expect("manifest serialises"))
}

fn read_manifest(dir: &Path, key: &str) -> Result<Manifest> {
    let path = dir.join(MANIFEST);
    if !path.exists() && dir.is_dir() {
        return Err(Error::config(
            key,
            format!("{}: not the folder of a `predict --out DIR` run (it has no {MANIFEST})", dir.display()),
        ));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::config(key, format!("{}: {e}", path.display())))
}

/// Identity keys that may differ between runs of the same work: the version that
/// wrote a chunk, and where a model was found (its hash is compared).
fn compared_identity(identity: &BTreeMap<String, String>) -> BTreeMap<&String, &String> {
    identity
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "lensmae:version" | "lensmae:model" | "lensmae:sr_model"))
        .collect()
}

impl Manifest {
    /// What makes `now` another run than `self` (None when it continues it).
    pub fn difference(&self, now: &Manifest) -> Option<String> {
        if let Some(change) = describe_change(&self.fingerprints, &now.fingerprints) {
            return Some(format!("inputs: {change}"));
        }
        if self.inputs != now.inputs {
            return Some(format!("inputs: {:?} before, {:?} now", self.inputs, now.inputs));
        }
        if self.rows != now.rows || self.natural_chunks != now.natural_chunks {
            return Some(format!("inputs: {} rows before, {} now", self.rows, now.rows));
        }
        if self.chunk_rows != now.chunk_rows {
            return Some(format!("--chunk-rows: {} before, {} now", self.chunk_rows, now.chunk_rows));
        }
        let (before, after) = (compared_identity(&self.identity), compared_identity(&now.identity));
        let keys: std::collections::BTreeSet<&&String> = before.keys().chain(after.keys()).collect();
        for key in keys {
            let (a, b) = (before.get(*key), after.get(*key));
            if a != b {
                let name = key.trim_start_matches("lensmae:");
                let show = |v: Option<&&String>| v.map_or("not recorded".to_string(), |v| v.to_string());
                return Some(format!("{name}: {} before, {} now", show(a), show(b)));
            }
        }
        for key in self.options.keys().chain(now.options.keys()) {
            let (a, b) = (self.options.get(key), now.options.get(key));
            if a != b {
                let show = |v: Option<&String>| v.filter(|v| !v.is_empty()).map_or("none".to_string(), |v| v.clone());
                return Some(format!("{key}: {} before, {} now", show(a), show(b)));
            }
        }
        None
    }
}

/// A chunk belongs to the folder's run: its metadata names the manifest's models
/// and options, and its columns are those of the chunks before it.
fn check_chunk(
    part: &Path,
    schema: &arrow_schema::SchemaRef,
    manifest: &Manifest,
    first: Option<&arrow_schema::SchemaRef>,
) -> Result<()> {
    let foreign = |why: String| Error::Parquet {
        path: part.to_path_buf(),
        message: format!("{why}: not a chunk of this folder's run (remove it and run its shard again)"),
    };
    for (key, value) in compared_identity(&manifest.identity) {
        let found = schema.metadata().get(key);
        if found != Some(value) {
            return Err(foreign(format!(
                "{} is {}, the folder's run has {value}",
                key.trim_start_matches("lensmae:"),
                found.map_or("missing", |v| v.as_str())
            )));
        }
    }
    if let Some(first) = first {
        if first.fields() != schema.fields() {
            let names = |s: &arrow_schema::SchemaRef| -> Vec<String> {
                s.fields().iter().map(|f| format!("{}: {}", f.name(), f.data_type())).collect()
            };
            return Err(foreign(format!(
                "columns {:?} differ from the first chunk's {:?}",
                names(schema),
                names(first)
            )));
        }
    }
    Ok(())
}

/// Joins the chunks of `dir` (all of them must be there) into one file, written
/// as `predict` writes one by its name: Parquet, FITS or Arrow IPC.
pub fn merge(dir: &Path, out: &Path, overwrite: bool) -> Result<usize> {
    let manifest = read_manifest(dir, "merge")?;
    let chunk_files: Vec<PathBuf> = (0..manifest.chunks()).map(|k| manifest.chunk_path(dir, k)).collect();
    crate::data::atomic::refuse_output_over_inputs(&chunk_files, out, "--out")?;
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
    let mut writer: Option<(Box<dyn PredictionSink>, arrow_schema::SchemaRef)> = None;
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
        check_chunk(&part, builder.schema(), &manifest, writer.as_ref().map(|(_, first)| first))?;
        if writer.is_none() {
            // The first chunk's description, written now from this folder.
            let mut metadata = builder.schema().metadata().clone();
            metadata.extend(super::output::provenance(None));
            metadata.insert("lensmae:merged_from".to_string(), dir.display().to_string());
            let schema = std::sync::Arc::new(builder.schema().as_ref().clone().with_metadata(metadata));
            let sink = super::output::create_sink(out, schema, manifest.rows, overwrite)?;
            writer = Some((sink, builder.schema().clone()));
        }
        let (w, _) = writer.as_mut().expect("created");
        for batch in builder.build().map_err(perr)? {
            w.write(&batch.map_err(|e| Error::Parquet { path: part.clone(), message: e.to_string() })?)?;
        }
    }
    match writer {
        Some((w, _)) => w.finish(),
        None => Err(Error::config("merge", format!("{} has no chunks", dir.display()))),
    }
}
