//! The command-line interface: parse, validate into library options, call the
//! library. No physics or I/O logic lives here.
//!
//! Arguments go through two stages (as in ripgrep): clap parses them into plain
//! `*Args` structs without touching the filesystem, then `TryFrom` turns them into
//! validated library options (configs loaded, paths resolved), with errors that name
//! the flag.

mod simulate;

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
}

/// Parse the command line and run the chosen subcommand.
pub fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Simulate(args) => simulate::run(args),
        Command::Presets => {
            for (name, _) in crate::sim::presets::PRESETS {
                let cfg = crate::sim::presets::preset(name)?;
                println!("{name:<18} {}", cfg.description);
            }
            Ok(())
        }
    }
}
