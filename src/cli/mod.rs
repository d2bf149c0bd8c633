//! The command-line interface.

/// Parse the command line and run the chosen subcommand.
pub fn run() -> anyhow::Result<()> {
    Ok(())
}
