//! `lensmae simulate`: render a dataset in parallel and stream it to a writer.
//!
//! Rows are interleaved by class (row r has class `classes[r % k]`), so any prefix
//! of a dataset is balanced. Row r's image comes from random stream r of the seed
//! (see [`Simulator::simulate`]), which makes the bytes independent of the thread
//! count. Work goes in chunks: rayon renders a chunk, the writer streams it, memory
//! stays bounded.

use super::fits::FitsDatasetWriter;
use super::ipc::table_writer::IpcDatasetWriter;
use super::npy_tree::NpyTreeWriter;
use super::parquet::ParquetDatasetWriter;
use super::record::{DatasetInfo, Record, Task};
use super::{DatasetWriter, Format, WriteSummary};
use crate::progress::{Progress, SharedProgress};
use crate::sim::fit::{
    lens_clear_of_envelope, smooth_lens_residual, BlindGrid, Observation, SmoothLensResiduals,
    SMOOTH_LENS_RESIDUALS_KEY,
};
use crate::sim::Simulator;
use crate::{Error, Result};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Version of the dataset layout written into every file.
pub const DATASET_SCHEMA_VERSION: &str = "1";

/// What to simulate and where to put it.
#[derive(Debug, Clone)]
pub struct SimulateOptions {
    /// Images per class.
    pub n_per_class: usize,
    /// Random seed of the dataset.
    pub seed: u64,
    /// Images per row.
    pub task: Task,
    /// Classes to make (all when `None`); `label_idx` keeps the full class order.
    pub classes: Option<Vec<String>>,
    /// Output format.
    pub format: Format,
    /// Output folder.
    pub out_dir: PathBuf,
    /// Replace existing outputs.
    pub overwrite: bool,
    /// Rows rendered per parallel chunk.
    pub chunk_size: usize,
    /// How progress is shown.
    pub progress: crate::progress::ProgressMode,
    /// Stops the run between chunks; the partial output is removed.
    pub cancel: crate::cancel::Cancel,
    /// Also write `sub_snr_refit` (a smooth-lens fit per image with substructure,
    /// ~0.1-0.2 s of a core each; classification datasets of noisy recipes).
    pub refit_detectability: bool,
    /// Write each image's smooth-lens residual in place of its pixels
    /// ([`crate::sim::fit::smooth_lens_residual`], from the drawn PSF
    /// and exposure; classification datasets of recipes with noise). The dataset
    /// records the recipe, and a classifier trained on it fits cutouts the same way.
    pub smooth_lens_residuals: bool,
    /// Basin hops of the residuals' blind fits ([`BlindGrid::basin_hops`]; 0, the
    /// default recipe, runs none).
    pub basin_hops: usize,
}

impl SimulateOptions {
    /// Defaults: Parquet, classification, every class, chunks of 512 rows.
    pub fn new(n_per_class: usize, seed: u64, out_dir: impl Into<PathBuf>) -> Self {
        SimulateOptions {
            n_per_class,
            seed,
            task: Task::Classify,
            classes: None,
            format: Format::Parquet,
            out_dir: out_dir.into(),
            overwrite: false,
            chunk_size: 512,
            progress: Default::default(),
            cancel: crate::cancel::Cancel::new(),
            refit_detectability: false,
            smooth_lens_residuals: false,
            basin_hops: 0,
        }
    }
}

/// The output path of a dataset in `format` under `out_dir`.
pub fn dataset_path(out_dir: &std::path::Path, format: Format) -> PathBuf {
    match format {
        Format::Parquet => out_dir.join("dataset.parquet"),
        Format::Fits => out_dir.join("dataset.fits"),
        Format::Npy => out_dir.join("dataset"),
        Format::Arrow => out_dir.join("dataset.arrow"),
    }
}

/// The metadata key of a dataset's pixel unit: `electron/s`, or `arbitrary`.
pub const FLUX_UNIT_KEY: &str = "lensmae:flux_unit";

/// The metadata every dataset file carries.
pub fn dataset_metadata(sim: &Simulator, opts: &SimulateOptions) -> BTreeMap<String, String> {
    let cfg = sim.config();
    let mut m = BTreeMap::new();
    m.insert("lensmae:version".into(), env!("CARGO_PKG_VERSION").into());
    m.insert("lensmae:schema_version".into(), DATASET_SCHEMA_VERSION.into());
    m.insert("lensmae:preset".into(), cfg.name.clone());
    m.insert("lensmae:seed".into(), opts.seed.to_string());
    m.insert("lensmae:task".into(), opts.task.name().into());
    m.insert("lensmae:n_per_class".into(), opts.n_per_class.to_string());
    m.insert("lensmae:class_names".into(), serde_json::to_string(sim.class_names()).expect("strings serialise"));
    m.insert(super::parquet::PIXEL_SCALE_KEY.into(), cfg.image.pixel_scale.to_string());
    // Magnitudes through an instrument's zero point give counts per second;
    // amplitudes are in the recipe's own flux scale.
    let flux_unit = if cfg.instrument.is_some() && cfg.source.magnitude.is_some() { "electron/s" } else { "arbitrary" };
    m.insert(FLUX_UNIT_KEY.into(), flux_unit.into());
    m.insert("lensmae:config".into(), cfg.to_toml());
    m.insert("lensmae:refit_detectability".into(), opts.refit_detectability.to_string());
    if let Task::Superres { factor } = opts.task {
        m.insert("lensmae:superres_factor".into(), factor.to_string());
    }
    if opts.smooth_lens_residuals {
        let recipe = residual_recipe(sim, opts);
        m.insert(SMOOTH_LENS_RESIDUALS_KEY.into(), serde_json::to_string(&recipe).expect("a recipe serialises"));
    }
    m
}

/// How `--smooth-lens-residuals` fits: the dataset's own recipe, the blind fit's default grid.
fn residual_recipe(sim: &Simulator, opts: &SimulateOptions) -> SmoothLensResiduals {
    SmoothLensResiduals { simulator: sim.config().clone(), grid: residual_grid(opts) }
}

/// Where `--smooth-lens-residuals`'s blind fits start, and how far they search.
fn residual_grid(opts: &SimulateOptions) -> BlindGrid {
    BlindGrid { basin_hops: opts.basin_hops, ..BlindGrid::default() }
}

/// The rows of a dataset: row r (its id) has class `class_idx[r % k]`. Not a list
/// of rows: `--n-per-class` is the user's number, and a list of 10^12 of them was a
/// 24 TB allocation.
#[derive(Debug, Clone)]
struct Rows {
    class_idx: Vec<usize>,
    total: usize,
}

impl Rows {
    fn class_of(&self, row: usize) -> usize {
        self.class_idx[row % self.class_idx.len()]
    }
}

/// Most rows a dataset may have: ids are int64, and within that any count is the user's to ask.
const MAX_ROWS: usize = i64::MAX as usize;

/// The rows a dataset holds and the table's description, after checking the options.
fn plan(sim: &Simulator, opts: &SimulateOptions) -> Result<(Rows, DatasetInfo)> {
    let size = sim.config().image.size;
    if let Task::Superres { factor } = opts.task {
        if factor < 2 || size % factor != 0 {
            return Err(Error::config("factor", format!("must be >= 2 and divide the image size {size}")));
        }
    }
    let class_idx: Vec<usize> = match &opts.classes {
        None => (0..sim.class_names().len()).collect(),
        Some(names) => names
            .iter()
            .map(|n| {
                sim.class_names().iter().position(|c| c == n).ok_or_else(|| {
                    Error::config("classes", format!("unknown class `{n}` (known: {})", sim.class_names().join(", ")))
                })
            })
            .collect::<Result<_>>()?,
    };
    if opts.n_per_class == 0 {
        return Err(Error::config("n_per_class", "must be at least 1"));
    }
    if opts.refit_detectability && (opts.task != Task::Classify || !sim.config().has_noise()) {
        return Err(Error::config(
            "refit_detectability",
            "applies to classification datasets of recipes with noise (sub_snr is measured against the noise)",
        ));
    }
    if opts.smooth_lens_residuals && (opts.task != Task::Classify || !sim.config().has_noise()) {
        return Err(Error::config(
            "smooth_lens_residuals",
            "applies to classification datasets of recipes with noise (the fit is weighted by the noise)",
        ));
    }
    if opts.basin_hops > 0 && !opts.smooth_lens_residuals {
        return Err(Error::config("basin_hops", "applies to the blind fits of --smooth-lens-residuals"));
    }
    residual_grid(opts).validate()?;
    let total = (opts.n_per_class.checked_mul(class_idx.len())).filter(|&t| t <= MAX_ROWS).ok_or_else(|| {
        let (n, k) = (opts.n_per_class, class_idx.len());
        Error::config("n_per_class", format!("{n} x {k} classes is more rows than a dataset's int64 ids can count"))
    })?;
    let info = DatasetInfo {
        class_names: sim.class_names().to_vec(),
        task: opts.task,
        image_size: size,
        metadata: dataset_metadata(sim, opts),
    };
    Ok((Rows { class_idx, total }, info))
}

/// Renders rows `rows` (ids) of the dataset in parallel, telling `row_done` of each;
/// None once `opts.cancel` stops it, the rows not yet started left undone: with
/// smooth-lens fits a row takes about a second, and a chunk of them minutes.
fn render_rows(
    sim: &Simulator,
    opts: &SimulateOptions,
    classes: &Rows,
    rows: std::ops::Range<usize>,
    row_done: &(dyn Fn() + Sync),
) -> Option<Vec<Record>> {
    // Collected by index, then checked: collected straight into an Option, rayon gathers
    // the rows through lists, and 60,000 Model II images took 5.1-6.2 s instead of 3.8-4.0.
    let records: Vec<Option<Record>> = rows
        .into_par_iter()
        .map(|row| {
            if opts.cancel.is_cancelled() {
                return None;
            }
            let record = make_record(sim, opts, classes.class_of(row), row as u64);
            row_done();
            Some(record)
        })
        .collect();
    records.into_iter().collect()
}

/// The dataset in memory, as record batches of `opts.chunk_size` rows: the rows,
/// columns and metadata `simulate_dataset` writes to Parquet for the same options.
pub fn simulate_batches(
    sim: &Simulator,
    opts: &SimulateOptions,
) -> Result<(arrow_schema::SchemaRef, Vec<arrow_array::RecordBatch>)> {
    let (classes, info) = plan(sim, opts)?;
    refuse_beyond_memory(&classes, &info, opts)?;
    let schema = super::parquet::dataset_schema(&info);
    let chunk = opts.chunk_size.max(1);
    let mut batches = Vec::new();
    for start in (0..classes.total).step_by(chunk) {
        let rows = start..(start + chunk).min(classes.total);
        let Some(records) = render_rows(sim, opts, &classes, rows, &|| {}) else {
            return Err(Error::Interrupted("nothing returned".into()));
        };
        batches.push(super::parquet::dataset_batch(&info, &schema, &records)?);
    }
    Ok((schema, batches))
}

/// A dataset held in memory ([`simulate_batches`]) whose images alone would not fit
/// in this machine's memory is refused before any is rendered: it would grow until
/// the system ended the process, losing the images made.
fn refuse_beyond_memory(rows: &Rows, info: &DatasetInfo, opts: &SimulateOptions) -> Result<()> {
    let pixels = info.image_size * info.image_size;
    let per_row = match opts.task {
        Task::Classify => pixels,
        Task::Superres { factor } => pixels + pixels / (factor * factor),
    } * std::mem::size_of::<f32>();
    let Some(memory) = crate::machine::physical_memory() else { return Ok(()) };
    let needed = rows.total as f64 * per_row as f64;
    if needed > memory as f64 {
        return Err(Error::config(
            "n_per_class",
            format!(
                "{} rows of {}x{} images take {:.3e} bytes in memory, more than this machine's {:.3e}: \
                 simulate them to files (`lensmae simulate --out DIR` writes them as it goes), or fewer",
                rows.total, info.image_size, info.image_size, needed, memory as f64
            ),
        ));
    }
    Ok(())
}

/// Render the dataset and write it; returns what the writer wrote.
pub fn simulate_dataset(sim: &Simulator, opts: &SimulateOptions) -> Result<WriteSummary> {
    let (classes, info) = plan(sim, opts)?;
    let total = classes.total;
    let path = dataset_path(&opts.out_dir, opts.format);
    // Fail before any rendering if the output exists (the writer checks again).
    super::atomic::refuse_existing(&path, opts.overwrite)?;
    // FITS handles are not Send: the writer lives on its own thread from the start.
    let open_writer = move || -> Result<Box<dyn DatasetWriter>> {
        Ok(match opts.format {
            Format::Parquet => Box::new(ParquetDatasetWriter::create(&path, info, opts.overwrite)?),
            Format::Fits => Box::new(FitsDatasetWriter::create(&path, info, total, opts.overwrite)?),
            Format::Npy => Box::new(NpyTreeWriter::create(&path, info, opts.overwrite)?),
            Format::Arrow => Box::new(IpcDatasetWriter::create(&path, info, opts.overwrite)?),
        })
    };
    // Moved by each image rendered, from the rendering threads.
    let progress = SharedProgress::new(Progress::new(opts.progress, total as u64, "simulate: images"));
    let one_more_rendered = || progress.add(1);
    let chunk = opts.chunk_size.max(1);
    // The writer works on chunk k while rayon renders chunk k + 1; the channel holds
    // one chunk, so at most three chunks are in memory.
    let (send, receive) = std::sync::mpsc::sync_channel::<Vec<Record>>(1);
    let written = std::thread::scope(|scope| {
        let writing = scope.spawn(move || -> Result<WriteSummary> {
            let mut writer = open_writer()?;
            for records in receive {
                writer.write_batch(&records)?;
            }
            // Dropped unfinished, the writer removes its temporary output.
            opts.cancel.check("nothing written (the partial output is removed)")?;
            writer.finish()
        });
        for start in (0..total).step_by(chunk) {
            let end = (start + chunk).min(total);
            let Some(records) = render_rows(sim, opts, &classes, start..end, &one_more_rendered) else {
                break; // cancelled: the writer removes its output
            };
            if send.send(records).is_err() {
                break; // the writer failed; its error is reported below
            }
        }
        drop(send);
        writing.join().expect("the writer thread does not panic")
    });
    progress.finish();
    let summary = written?;
    write_config(sim, opts)?;
    Ok(summary)
}

fn make_record(sim: &Simulator, opts: &SimulateOptions, class_idx: usize, id: u64) -> Record {
    let (images, params, sub_snr, sub_snr_refit, fit_lens_found) = match opts.task {
        Task::Classify => {
            let mut s = sim.simulate_with(class_idx, opts.seed, id, opts.refit_detectability);
            let mut fit_lens_found = None;
            if opts.smooth_lens_residuals {
                let observed = Observation::of_drawn(&s.params);
                // The cutout as it is stored (float32), which is what inference fits: the
                // float64 render can lead the fit to another local minimum.
                let residual =
                    smooth_lens_residual(sim, &observed, &s.image.rounded_to_f32(), None, &residual_grid(opts))
                        .expect("checked: the recipe has noise");
                s.image.pixels = residual.chi;
                let grid = &sim.config().image;
                fit_lens_found = Some(lens_clear_of_envelope(&residual.fit.params, grid.pixel_scale, grid.size));
            }
            (vec![s.image], s.params, s.sub_snr, s.sub_snr_refit, fit_lens_found)
        }
        Task::Superres { factor } => {
            let s = sim.simulate_pair(class_idx, opts.seed, id, factor);
            (vec![s.lr, s.hr], s.params, s.sub_snr, None, None)
        }
    };
    Record {
        id: id as i64,
        class_idx,
        images,
        n_subhalos: params.n_subhalos(sim.vortex_points(class_idx)) as i32,
        params,
        sub_snr,
        sub_snr_refit,
        fit_lens_found,
    }
}

/// The effective recipe beside the data, so a dataset can be remade exactly.
fn write_config(sim: &Simulator, opts: &SimulateOptions) -> Result<()> {
    let text = format!(
        "# Recipe of the dataset beside this file: lensmae {} simulate, seed {}, {} per class\n{}",
        env!("CARGO_PKG_VERSION"),
        opts.seed,
        opts.n_per_class,
        sim.config().to_toml()
    );
    super::atomic::write_atomically(&opts.out_dir.join("config.toml"), text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datasets_too_large_for_their_ids_or_for_memory_are_refused_before_any_row() {
        let sim = Simulator::new(crate::sim::presets::preset("deeplense-model2").unwrap()).unwrap();
        let ids = simulate_batches(&sim, &SimulateOptions::new(usize::MAX / 2, 1, PathBuf::new())).unwrap_err();
        assert!(ids.to_string().contains("3 classes is more rows than a dataset's int64 ids can count"), "{ids}");
        // 3 x 10^12 images of 64x64 float32: 49 PB, beyond any machine this runs on
        // (where the memory cannot be read, nothing is refused for it: not tried).
        if crate::machine::physical_memory().is_some() {
            let opts = SimulateOptions::new(1_000_000_000_000, 1, PathBuf::new());
            let memory = simulate_batches(&sim, &opts).unwrap_err();
            assert!(memory.to_string().contains("more than this machine's"), "{memory}");
        }
    }

    #[test]
    fn each_row_rendered_is_told_and_a_cancel_leaves_the_rest_of_the_chunk_undone() {
        let sim = Simulator::new(crate::sim::presets::preset("deeplense-model2").unwrap()).unwrap();
        let opts = SimulateOptions::new(2, 7, PathBuf::new());
        let (classes, _) = plan(&sim, &opts).unwrap();
        assert_eq!((classes.total, classes.class_of(4)), (6, 1));
        let told = std::sync::atomic::AtomicUsize::new(0);
        let one_more = || {
            told.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        };
        let records = render_rows(&sim, &opts, &classes, 0..6, &one_more).unwrap();
        assert_eq!((records.len(), told.into_inner()), (6, 6));

        // One thread, cancelled as the first row is done: the chunk's other rows are not rendered.
        let cancel_at_first = || opts.cancel.cancel();
        let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let rendered = std::sync::atomic::AtomicUsize::new(0);
        let counted_then_cancel = || {
            rendered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            cancel_at_first();
        };
        assert!(one_thread.install(|| render_rows(&sim, &opts, &classes, 0..6, &counted_then_cancel)).is_none());
        assert_eq!(rendered.into_inner(), 1);
    }
}
