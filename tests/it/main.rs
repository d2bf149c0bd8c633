//! Integration tests: one binary, one module per concern.

mod cli;
mod config;
mod fuzz;
mod io;
mod metrics;
mod model_twin;
mod profiles;
mod real_data;
mod remote;
mod sim_oracle;
mod stage;
mod train;

use std::path::PathBuf;

/// Path of a file under `fixtures/`.
pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(rel)
}
