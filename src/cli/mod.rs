//! The command-line interface: parse, validate into library options, call the
//! library. No physics or I/O logic lives here.
//!
//! Arguments go through two stages (as in ripgrep): clap parses them into plain
//! `*Args` structs without touching the filesystem, then `TryFrom` turns them into
//! validated library options (configs loaded, paths resolved), with errors that name
//! the flag.

mod predict;
mod run;
mod simulate;
mod train;

use clap::{Parser, Subcommand};

/// lensmae: strong-lensing simulation and dark-matter substructure inference.
#[derive(Debug, Parser)]
#[command(name = "lensmae", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Simulate a labelled dataset of lensed images (Parquet, FITS or .npy tree).
    Simulate(simulate::SimulateArgs),
    /// List the built-in simulation presets.
    Presets,
    /// Pretrain a ViT as a masked autoencoder on lensing images.
    Pretrain(train::PretrainArgs),
    /// Fine-tune a classifier (from an MAE encoder, from scratch, or as a frozen probe).
    Finetune(train::FinetuneArgs),
    /// Evaluate a classifier on labelled images: metrics and ROC curves as JSON.
    Evaluate(train::EvaluateArgs),
    /// Inspect model checkpoints.
    #[command(subcommand)]
    Model(train::ModelCommand),
    /// Classify and/or super-resolve survey cutouts (Parquet, Arrow IPC, FITS, .npy) into a table.
    Predict(Box<predict::PredictArgs>),
    /// Show what an input holds and what `predict` would do with it (a dry run).
    Inspect(predict::InspectArgs),
    /// Join the chunk files of a `predict --out DIR` run (every shard) into one file.
    Merge(predict::MergeArgs),
    /// Write each super-resolved cutout of a predictions table as a FITS file placed on the sky (DS9).
    SrFits(predict::SrFitsArgs),
    /// Run a pipeline (TOML): its steps in order, skipping those already done.
    Run(run::RunArgs),
    /// Write a pipeline run's report.md: tables beside the paper's, curves, figures.
    Report(run::ReportArgs),
}

/// A run that finished and wrote its output, but in which more rows failed than
/// the caller allowed: exit code 3 (other errors are 2).
#[derive(Debug)]
pub struct RowsFailed(pub String);

impl std::fmt::Display for RowsFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RowsFailed {}

/// The stop request Ctrl-C and SIGTERM make: the first asks the run to stop at
/// its next batch (finished files kept, the unfinished one removed), a second one
/// exits at once with code 130. Signals are the process's, so the handler is set
/// once and every command shares its token.
pub fn interrupt() -> crate::cancel::Cancel {
    static TOKEN: std::sync::OnceLock<crate::cancel::Cancel> = std::sync::OnceLock::new();
    TOKEN
        .get_or_init(|| {
            let token = crate::cancel::Cancel::new();
            let seen = token.clone();
            let _ = ctrlc::set_handler(move || {
                if seen.is_cancelled() {
                    std::process::exit(130);
                }
                eprintln!("interrupted: stopping after the batch, or the smooth-lens fits, in progress (again to stop at once)");
                seen.cancel();
            });
            token
        })
        .clone()
}

/// Parse the command line and run the chosen subcommand.
pub fn run() -> anyhow::Result<()> {
    dispatch(Cli::parse().command)
}

/// This process's command line, for a checkpoint's provenance.
pub fn command_line() -> String {
    let mut words: Vec<String> = std::env::args().collect();
    words[0] = "lensmae".into();
    words.join(" ")
}

/// Run one pipeline step's command, with its command line for provenance (the
/// step's, not `lensmae run ...`).
pub fn dispatch_step(mut command: Command, line: String) -> anyhow::Result<()> {
    match &mut command {
        Command::Pretrain(args) => args.set_command_line(line),
        Command::Finetune(args) => args.set_command_line(line),
        Command::Predict(args) => args.set_command_line(line),
        _ => {}
    }
    dispatch(command)
}

/// `--threads N` checked ([`crate::machine::checked_threads`]), the option named in the error.
fn threads_option(n: usize) -> anyhow::Result<usize> {
    crate::machine::checked_threads(n).map_err(|why| anyhow::anyhow!("--threads {why}"))
}

/// Prints a line on stdout; a closed pipe (`lensmae ... | head`) comes back as
/// an error the binary treats as a normal end, where `println!` would panic.
pub fn out(line: std::fmt::Arguments) -> std::io::Result<()> {
    use std::io::Write;
    writeln!(std::io::stdout().lock(), "{line}")
}

/// Run one parsed subcommand.
pub fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Simulate(args) => simulate::run(args),
        Command::Pretrain(args) => train::pretrain_cmd(args),
        Command::Finetune(args) => train::finetune_cmd(args),
        Command::Evaluate(args) => train::evaluate_cmd(args),
        Command::Model(cmd) => train::model_cmd(cmd),
        Command::Predict(args) => predict::predict_cmd(*args),
        Command::Inspect(args) => predict::inspect_cmd(args),
        Command::Merge(args) => predict::merge_cmd(args),
        Command::SrFits(args) => predict::sr_fits_cmd(args),
        Command::Run(args) => run::run_cmd(args),
        Command::Report(args) => run::report_cmd(args),
        Command::Presets => {
            for (name, _) in crate::sim::presets::PRESETS {
                let cfg = crate::sim::presets::preset(name)?;
                crate::cli::out(format_args!("{name:<18} {}", cfg.description))?;
            }
            Ok(())
        }
    }
}
