//! `lensmae simulate`.

use crate::data::simulate::{simulate_dataset, SimulateOptions};
use crate::data::{Format, Task};
use crate::sim::presets::{load_recipe, preset};
use crate::sim::{SimConfig, Simulator};
use anyhow::Context;
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `lensmae simulate`, as parsed.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Built-in recipe (see `lensmae presets`).
    #[arg(long, default_value = "deeplense-model2", conflicts_with = "config")]
    preset: String,
    /// A TOML recipe instead of a preset (`--print-config` shows the format).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Images per class.
    #[arg(long, default_value_t = 100)]
    n_per_class: usize,
    /// Random seed: the same seed gives the same bytes, whatever the thread count.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder (gets dataset.parquet / dataset.fits / dataset/ and config.toml).
    #[arg(long, required_unless_present = "print_config")]
    out: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = FormatArg::Parquet)]
    format: FormatArg,
    /// What each row holds: one image, or a low/high-resolution pair.
    #[arg(long, value_enum, default_value_t = TaskArg::Classify)]
    task: TaskArg,
    /// Downsampling factor of super-resolution pairs (2 or 4, ...).
    #[arg(long, default_value_t = 4)]
    factor: usize,
    /// Only these classes (comma-separated); label_idx keeps the full class order.
    #[arg(long, value_delimiter = ',')]
    classes: Option<Vec<String>>,
    /// Also write `sub_snr_refit`: what is left of `sub_snr` once the smooth lens and
    /// source are refitted to the image (~0.1-0.2 s of a core per image with
    /// substructure; classification datasets of recipes with noise).
    #[arg(long)]
    refit_detectability: bool,
    /// Write, instead of each noisy cutout, the residual of a blind smooth-lens fit
    /// to it, (data - fit) / sigma: what a classifier of smooth-lens residuals
    /// (`bundled:survey-residual-classifier`) is trained on (~0.4 s of a core per
    /// image; classification datasets of recipes with noise).
    #[arg(long)]
    smooth_lens_residuals: bool,
    /// With --smooth-lens-residuals: fits run from moved copies of a blind fit that
    /// stalls above the noise (lensmae::sim::fit::BlindGrid::basin_hops;
    /// the default 0 is the bundled residual classifier's recipe).
    #[arg(long, default_value_t = 0)]
    basin_hops: usize,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Replace existing outputs.
    #[arg(long)]
    overwrite: bool,
    /// Print the recipe as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// No progress bar or summary.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FormatArg {
    Parquet,
    Fits,
    Npy,
    Arrow,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TaskArg {
    Classify,
    Superres,
}

impl SimulateArgs {
    /// The recipe: `--config`'s file (which may extend a preset) or `--preset`.
    fn recipe(&self) -> anyhow::Result<SimConfig> {
        Ok(match &self.config {
            Some(path) => load_recipe(path)?,
            None => preset(&self.preset).context("--preset")?,
        })
    }
}

/// Validated inputs of a simulation run.
struct SimulateRun {
    simulator: Simulator,
    options: SimulateOptions,
    threads: Option<usize>,
    quiet: bool,
}

impl TryFrom<SimulateArgs> for SimulateRun {
    type Error = anyhow::Error;

    fn try_from(args: SimulateArgs) -> anyhow::Result<SimulateRun> {
        let config = args.recipe()?;
        if let Some(n) = args.threads {
            super::threads_option(n)?;
        }
        let task = match args.task {
            TaskArg::Classify => Task::Classify,
            TaskArg::Superres => Task::Superres { factor: args.factor },
        };
        let format = match args.format {
            FormatArg::Parquet => Format::Parquet,
            FormatArg::Fits => Format::Fits,
            FormatArg::Npy => Format::Npy,
            FormatArg::Arrow => Format::Arrow,
        };
        let mut options = SimulateOptions::new(args.n_per_class, args.seed, args.out.unwrap_or_default());
        options.task = task;
        options.format = format;
        options.classes = args.classes;
        options.overwrite = args.overwrite;
        options.refit_detectability = args.refit_detectability;
        options.smooth_lens_residuals = args.smooth_lens_residuals;
        options.basin_hops = args.basin_hops;
        options.cancel = crate::cli::interrupt();
        options.progress = crate::progress::ProgressMode::for_stderr(args.quiet);
        Ok(SimulateRun { simulator: Simulator::new(config)?, options, threads: args.threads, quiet: args.quiet })
    }
}

/// Run `lensmae simulate`.
pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    if args.print_config {
        crate::cli::out(format_args!("{}", args.recipe()?.to_toml().trim_end()))?;
        return Ok(());
    }
    let run = SimulateRun::try_from(args)?;
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(n) = run.threads {
        pool = pool.num_threads(n);
    }
    let pool = pool.build().context("starting worker threads")?;
    let started = Instant::now();
    let summary = pool.install(|| simulate_dataset(&run.simulator, &run.options))?;
    let seconds = started.elapsed().as_secs_f64();
    if !run.quiet {
        eprintln!(
            "wrote {} rows ({:.1} MB) to {} in {:.2} s ({:.0} images/s)",
            summary.rows,
            summary.bytes as f64 / 1e6,
            summary.path.display(),
            seconds,
            summary.rows as f64 / seconds
        );
    }
    Ok(())
}
