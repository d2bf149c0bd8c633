//! lensmae: strong-lensing simulation, masked-autoencoder training and streaming
//! inference for dark-matter substructure studies.
//!
//! Data flows one way through the modules:
//! [`sim`] (physics and presets) -> [`data`] (datasets, readers, writers) ->
//! [`model`] -> [`infer`] (checkpoint -> prepared model -> predictions) ->
//! [`train`] / [`eval`] / [`stage`] (streaming inference over survey cutouts) ->
//! [`cli`] (thin command-line layer).
#![deny(missing_docs)]

pub mod cancel;
pub mod cli;
pub mod data;
pub mod error;
pub mod eval;
pub mod fastmath;
pub mod infer;
pub mod machine;
pub mod model;
pub mod pipeline;
pub mod progress;
pub mod report;
pub mod sim;
pub mod stage;
pub mod train;

pub use error::{Error, Result};
