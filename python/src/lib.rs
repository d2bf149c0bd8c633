//! `lensmae._lensmae`: the Python binding, thin. Arrow comes in through the Arrow
//! PyCapsule stream interface (pyarrow, polars, pandas and anything else that has
//! `__arrow_c_stream__`) and goes out as a `pyarrow.Table`; the work is the
//! library's, run with the GIL released; errors arrive as `LensmaeError` with
//! lensmae's message. Nothing here is process-wide: each `Model` holds its own
//! loaded models and may be called from several Python threads.

use arrow_pyarrow::{PyArrowType, Table};
use lensmae::cancel::Cancel;
use lensmae::data::cutouts::arrow::ArrowCutouts;
use lensmae::stage::{
    CutoutReader, FitNoise, InputOptions, NanPolicy, ObservationSource, Predictor, PredictorOptions, StageTask,
};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use std::path::PathBuf;

/// mimalloc for the extension's own (Rust) allocations, as in the CLI: Dask's
/// workers set `MALLOC_TRIM_THRESHOLD_=65536`, under which glibc hands every freed
/// batch buffer back to the OS and faults it in again, and one partition's
/// predictions took 3.0-3.4 s instead of 1.9 s. Python's own objects keep Python's
/// allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

create_exception!(_lensmae, LensmaeError, PyException, "An error lensmae reports (bad input, model, option).");

fn error(e: impl std::fmt::Display) -> PyErr {
    LensmaeError::new_err(in_python_words(&e.to_string()))
}

/// The library's messages name command-line options; here they are parameters.
/// Longer flags first, so that `--psf-fwhm-col` is not read as `--psf-fwhm`.
const PARAMETERS: [(&str, &str); 22] = [
    ("--psf-moffat-beta-col", "psf_moffat_beta_col"),
    ("--exposure-time-col", "exposure_time_col"),
    ("--psf-moffat-beta", "psf_moffat_beta"),
    ("--psf-image-scale", "psf_image_scale"),
    ("--psf-image-col", "psf_image_col"),
    ("--pixel-scale-col", "pixel_scale_col"),
    ("--noise-col", "noise_col"),
    ("--zero-point-col", "zero_point_col"),
    ("--psf-fwhm-col", "psf_fwhm_col"),
    ("--exposure-time", "exposure_time"),
    ("--batch-size", "batch_size"),
    ("--fit-refits", "fit_refits"),
    ("--nan-policy", "nan_policy"),
    ("--pixel-scale", "pixel_scale"),
    ("--zero-point", "zero_point"),
    ("--image-col", "image_col"),
    ("--psf-image", "psf_image"),
    ("--psf-fwhm", "psf_fwhm"),
    ("--sr-model", "sr_model"),
    ("--id-col", "id_col"),
    ("--threads", "threads"),
    ("--keep", "keep"),
];

/// A message with its option names as parameter names; an option quoted with its
/// value (`` `--pixel-scale model` ``) as the keyword argument a Python user writes
/// (`` `pixel_scale="model"` ``; `` `pixel_scale=ARCSEC` `` for a placeholder).
fn in_python_words(message: &str) -> String {
    let spans: Vec<String> = message
        .split('`')
        .enumerate()
        .map(|(i, span)| if i % 2 == 1 { as_keyword_argument(span) } else { span.to_string() })
        .collect();
    PARAMETERS.iter().fold(spans.join("`"), |text, (flag, parameter)| text.replace(flag, parameter))
}

/// `--flag value` (a whole quoted span) as `parameter=value`, the value quoted
/// unless it is a number or an upper-case placeholder; any other span as it is.
fn as_keyword_argument(span: &str) -> String {
    let Some((flag, value)) = span.split_once(' ') else { return span.to_string() };
    let Some((_, parameter)) = PARAMETERS.iter().find(|(f, _)| *f == flag) else { return span.to_string() };
    if value.is_empty() || value.contains(' ') {
        return span.to_string();
    }
    let literal = value.parse::<f64>().is_ok() || value.chars().all(|c| c.is_ascii_uppercase() || c == '_');
    match literal {
        true => format!("{parameter}={value}"),
        false => format!("{parameter}=\"{value}\""),
    }
}

#[cfg(test)]
mod tests {
    use super::in_python_words;

    #[test]
    fn options_read_as_keyword_arguments() {
        let message = "no scale: give `--pixel-scale ARCSEC` to resample them, or `--pixel-scale model` to crop \
                       them (use --nan-policy zero; `--psf-fwhm-col` names the column; `--batch-size 0`)";
        assert_eq!(
            in_python_words(message),
            "no scale: give `pixel_scale=ARCSEC` to resample them, or `pixel_scale=\"model\"` to crop them \
             (use nan_policy zero; `psf_fwhm_col` names the column; `batch_size=0`)"
        );
    }
}

fn device(name: &str) -> PyResult<candle_core::Device> {
    lensmae::model::device::open_device(name, lensmae::model::device::Precision::F32).map_err(error)
}

/// A thread pool of `threads` workers for one model's computations (its own, not
/// rayon's process-wide pool), or none for rayon's default.
fn pool(threads: Option<usize>) -> PyResult<Option<rayon::ThreadPool>> {
    match threads {
        None => Ok(None),
        Some(n) => {
            let n = lensmae::machine::checked_threads(n).map_err(|why| error(format!("threads {why}")))?;
            rayon::ThreadPoolBuilder::new().num_threads(n).build().map(Some).map_err(error)
        }
    }
}

fn in_pool<T: Send>(pool: &Option<rayon::ThreadPool>, work: impl FnOnce() -> T + Send) -> T {
    match pool {
        Some(p) => p.install(work),
        None => work(),
    }
}

/// Runs `work` with the GIL released and answers Ctrl-C while it runs: a classifier of
/// residuals fits every cutout (about a second each), so a table of a thousand took
/// minutes that a KeyboardInterrupt could not stop (as did a large `simulate`). The
/// work runs on its own thread; the calling thread wakes every 100 ms to let Python
/// check its signals, and on an exception (KeyboardInterrupt) cancels the work, waits
/// for the rows in progress to end and raises it. Off the main thread, where Python runs no signal handlers (a Dask
/// worker), the check finds nothing and the work runs to its end.
fn interruptible<T: Send>(py: Python<'_>, work: impl FnOnce(&Cancel) -> T + Send) -> PyResult<T> {
    let cancel = Cancel::new();
    std::thread::scope(|scope| {
        let (done, finished) = std::sync::mpsc::channel();
        // A receiver is not Sync, and the waits below run with the GIL released.
        let finished = std::sync::Mutex::new(finished);
        let wait = |timeout| finished.lock().expect("one waiter").recv_timeout(timeout);
        let cancel_for_work = cancel.clone();
        scope.spawn(move || {
            let _ = done.send(work(&cancel_for_work)); // fails only once the caller has given up
        });
        loop {
            match py.detach(|| wait(std::time::Duration::from_millis(100))) {
                Ok(result) => return Ok(result),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if let Err(signal) = py.check_signals() {
                        cancel.cancel();
                        // The scope waits for the work, which stops after the fits in progress.
                        py.detach(|| wait(std::time::Duration::MAX).ok());
                        return Err(signal);
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(error("the work's thread ended without an answer (a panic)"));
                }
            }
        }
    })
}

/// A loaded classifier (or super-resolution model, or both) ready to predict.
#[pyclass(module = "lensmae._lensmae", frozen)]
struct Model {
    predictor: Predictor,
    pool: Option<rayon::ThreadPool>,
    name: String,
}

#[pymethods]
impl Model {
    #[new]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (model=None, sr_model=None, task="classify", device="cpu", threads=None, batch_size=64, nan_policy="fail", pixel_scale=None, tta="none", psf_fwhm=None, exposure_time=None, fit_refits=lensmae::stage::DEFAULT_FIT_REFITS, psf_fwhm_col="psf_fwhm", exposure_time_col="exposure_time", zero_point=None, zero_point_col=None, psf_image=None, psf_image_col=None, psf_moffat_beta=None, psf_moffat_beta_col=None, psf_image_scale=None))]
    fn new(
        py: Python<'_>,
        model: Option<PathBuf>,
        sr_model: Option<PathBuf>,
        task: &str,
        device: &str,
        threads: Option<usize>,
        batch_size: usize,
        nan_policy: &str,
        pixel_scale: Option<String>,
        tta: &str,
        psf_fwhm: Option<f64>,
        exposure_time: Option<f64>,
        fit_refits: usize,
        psf_fwhm_col: &str,
        exposure_time_col: &str,
        zero_point: Option<f64>,
        zero_point_col: Option<String>,
        psf_image: Option<Vec<Vec<f64>>>,
        psf_image_col: Option<String>,
        psf_moffat_beta: Option<f64>,
        psf_moffat_beta_col: Option<String>,
        psf_image_scale: Option<f64>,
    ) -> PyResult<Model> {
        let task = match task {
            "classify" => StageTask::Classify,
            "superres" => StageTask::Superres,
            "all" => StageTask::All,
            other => return Err(error(format!("task `{other}`: one of classify, superres, all"))),
        };
        let nan_policy = match nan_policy {
            "fail" => NanPolicy::Fail,
            "zero" => NanPolicy::Zero,
            "skip-row" | "skip_row" => NanPolicy::SkipRow,
            other => return Err(error(format!("nan_policy `{other}`: one of fail, zero, skip-row"))),
        };
        let name = model.as_ref().or(sr_model.as_ref()).map(|p| p.display().to_string()).unwrap_or_default();
        let pixel_scale = pixel_scale.as_deref().map(str::parse).transpose().map_err(error)?.unwrap_or_default();
        let psf_image = match psf_image {
            Some(rows) => {
                let side = rows.len();
                if rows.iter().any(|row| row.len() != side) {
                    return Err(error("psf_image: a square 2-D array is needed".to_string()));
                }
                let values: Vec<f64> = rows.concat();
                let kernel =
                    lensmae::sim::psf::PsfKernel::new(side, &values).map_err(|e| error(format!("psf_image: {e}")))?;
                Some(std::sync::Arc::new(kernel))
            }
            None => None,
        };
        let options = PredictorOptions {
            model,
            sr_model,
            task,
            batch_size,
            device: self::device(device)?,
            nan_policy,
            pixel_scale,
            tta: tta.parse().map_err(|why| error(format!("tta {why}")))?,
            observation: ObservationSource {
                psf_fwhm,
                psf_column: psf_fwhm_col.to_string(),
                psf_image,
                psf_image_column: psf_image_col,
                psf_image_scale,
                psf_moffat_beta,
                psf_moffat_beta_column: psf_moffat_beta_col,
                exposure_time,
                exposure_column: exposure_time_col.to_string(),
                zero_point,
                zero_point_column: zero_point_col,
                // Arrow tables carry no noise maps (FITS files do, on the command line).
                noise: FitNoise::Map,
            },
            fit_refits,
        };
        let pool = pool(threads)?;
        let predictor = py.detach(|| in_pool(&pool, || Predictor::load(&options))).map_err(error)?;
        Ok(Model { predictor, pool, name })
    }

    /// Class names, in the order of the `p_<class>` columns.
    #[getter]
    fn class_names(&self) -> Vec<String> {
        self.predictor.class_names()
    }

    /// `(height, width)` of the cutouts the model takes.
    #[getter]
    fn input_shape(&self) -> (usize, usize) {
        let [h, w] = self.predictor.input_shape();
        (h, w)
    }

    /// Predicts every row of `table`; see `lensmae.Model.predict`.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (table, image_col=None, id_col=None, keep=Vec::new(), shape=None, pixel_scale_col=None, noise_col=None))]
    fn predict(
        &self,
        py: Python<'_>,
        table: PyArrowType<Table>,
        image_col: Option<String>,
        id_col: Option<String>,
        keep: Vec<String>,
        shape: Option<(usize, usize)>,
        pixel_scale_col: Option<String>,
        noise_col: Option<String>,
    ) -> PyResult<PyArrowType<Table>> {
        let (batches, schema) = table.0.into_inner();
        let opts = InputOptions {
            image_column: image_col,
            id_column: id_col,
            keep,
            shape: shape.map(|(h, w)| [h, w]),
            hdu: None,
            pixel_scale_column: pixel_scale_col,
            noise_column: noise_col,
            ..Default::default()
        };
        let input = self.predictor.input_options(&opts);
        self.predict_opened(py, &["table".to_string()], || {
            // Residuals made already would be fitted again: the CLI reads such files as they are.
            if self.predictor.reads_as_residuals(&schema, std::path::Path::new("table"))? {
                return Err(lensmae::Error::Mismatch {
                    path: "table".into(),
                    message: "holds smooth-lens residuals already: pass the cutouts (the model fits them), \
                              or read the residuals with `lensmae predict`"
                        .into(),
                });
            }
            // The observation columns the table lacks are named, all of them, by the first batch.
            // A partition without a single image (Spark and Dask hand over empty ones
            // to learn the output's schema) gives its rows' own failures.
            let model_shape = Some(self.predictor.input_shape());
            Ok(Box::new(ArrowCutouts::new(schema.clone(), batches, &input, "table", model_shape)?))
        })
    }

    /// Predicts every cutout of the files at `paths`; see `lensmae.Model.predict_files`.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (paths, image_col=None, id_col=None, keep=Vec::new(), shape=None, hdu=None, band=None, flag_planes=None, rms_hdu=None, weight_hdu=None, flag_hdu=None, pixel_scale_col=None, noise_col=None))]
    fn predict_files(
        &self,
        py: Python<'_>,
        paths: Vec<PathBuf>,
        image_col: Option<String>,
        id_col: Option<String>,
        keep: Vec<String>,
        shape: Option<(usize, usize)>,
        hdu: Option<String>,
        band: Option<String>,
        flag_planes: Option<Vec<String>>,
        rms_hdu: Option<String>,
        weight_hdu: Option<String>,
        flag_hdu: Option<String>,
        pixel_scale_col: Option<String>,
        noise_col: Option<String>,
    ) -> PyResult<PyArrowType<Table>> {
        let opts = InputOptions {
            image_column: image_col,
            id_column: id_col,
            keep,
            shape: shape.map(|(h, w)| [h, w]),
            hdu,
            band,
            flag_planes,
            rms_hdu,
            weight_hdu,
            flag_hdu,
            pixel_scale_column: pixel_scale_col,
            noise_column: noise_col,
            ..Default::default()
        };
        let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        self.predict_opened(py, &names, || {
            // As for tables: residuals made already would be fitted again.
            if self.predictor.inputs_hold_residuals(&paths)? {
                return Err(lensmae::Error::Mismatch {
                    path: paths[0].clone(),
                    message: "holds smooth-lens residuals already: read it with `lensmae predict`".into(),
                });
            }
            lensmae::stage::open_input(&paths, &self.predictor.input_options(&opts))
        })
    }

    fn __repr__(&self) -> String {
        let o = self.predictor.options();
        format!("lensmae.Model({:?}, task={:?}, batch_size={})", self.name, o.task, o.batch_size)
    }
}

impl Model {
    /// Every row of the reader `open` makes (in the model's pool, where Ctrl-C reaches
    /// it), predicted as `lensmae predict` predicts `inputs`.
    fn predict_opened(
        &self,
        py: Python<'_>,
        inputs: &[String],
        open: impl FnOnce() -> lensmae::Result<Box<dyn CutoutReader>> + Send,
    ) -> PyResult<PyArrowType<Table>> {
        let (schema, batches) = interruptible(py, |cancel| {
            in_pool(&self.pool, || -> lensmae::Result<_> {
                let mut reader = open()?;
                let (schema, batches, _) = self.predictor.predict_reader(&mut *reader, inputs, cancel)?;
                Ok((schema, batches))
            })
        })?
        .map_err(error)?;
        Table::try_new(batches, schema).map(PyArrowType).map_err(error)
    }
}

/// Simulated lenses as a table; see `lensmae.simulate`.
#[pyfunction]
#[pyo3(signature = (preset="deeplense-model2", n_per_class=100, seed=1, task="classify", factor=4, config=None, classes=None, threads=None, refit_detectability=false))]
#[allow(clippy::too_many_arguments)]
fn simulate(
    py: Python<'_>,
    preset: &str,
    n_per_class: usize,
    seed: u64,
    task: &str,
    factor: usize,
    config: Option<PathBuf>,
    classes: Option<Vec<String>>,
    threads: Option<usize>,
    refit_detectability: bool,
) -> PyResult<PyArrowType<Table>> {
    let recipe = match &config {
        Some(path) => lensmae::sim::presets::load_recipe(path).map_err(error)?,
        None => lensmae::sim::presets::preset(preset).map_err(error)?,
    };
    let mut opts = lensmae::data::simulate::SimulateOptions::new(n_per_class, seed, PathBuf::new());
    opts.task = match task {
        "classify" => lensmae::data::Task::Classify,
        "superres" => lensmae::data::Task::Superres { factor },
        other => return Err(error(format!("task `{other}`: one of classify, superres"))),
    };
    opts.classes = classes;
    opts.refit_detectability = refit_detectability;
    let pool = pool(threads)?;
    let (schema, batches) = interruptible(py, move |cancel| {
        opts.cancel = cancel.clone();
        in_pool(&pool, || {
            let simulator = lensmae::sim::Simulator::new(recipe)?;
            lensmae::data::simulate::simulate_batches(&simulator, &opts)
        })
    })?
    .map_err(error)?;
    Table::try_new(batches, schema).map(PyArrowType).map_err(error)
}

/// The presets `simulate` knows, with their descriptions.
#[pyfunction]
fn presets() -> PyResult<Vec<(String, String)>> {
    lensmae::sim::presets::PRESETS
        .iter()
        .map(|(name, _)| Ok((name.to_string(), lensmae::sim::presets::preset(name).map_err(error)?.description)))
        .collect()
}

/// `lensmae sr-fits`: each super-resolved cutout of a predictions file as a FITS
/// file in `out`; (rows, written, placed on the sky, without an SR image).
#[pyfunction]
#[pyo3(signature = (predictions, out, overwrite=false))]
fn write_sr_fits(
    py: Python<'_>,
    predictions: PathBuf,
    out: PathBuf,
    overwrite: bool,
) -> PyResult<(usize, usize, usize, usize)> {
    let summary = py.detach(|| lensmae::stage::sr_fits::write_sr_fits(&predictions, &out, overwrite)).map_err(error)?;
    Ok((summary.rows, summary.written, summary.placed_on_sky, summary.without_sr_image))
}

#[pymodule]
fn _lensmae(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Model>()?;
    m.add_function(wrap_pyfunction!(simulate, m)?)?;
    m.add_function(wrap_pyfunction!(presets, m)?)?;
    m.add_function(wrap_pyfunction!(write_sr_fits, m)?)?;
    m.add("LensmaeError", m.py().get_type::<LensmaeError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
