//! Evaluation metrics, computed as scikit-learn (classification) and
//! scikit-image (super-resolution) compute them; golden values from those
//! libraries in `fixtures/oracle/` are checked by the tests.

pub mod binned;
pub mod classification;
pub mod classifier;
pub mod superres;

pub use classification::{weighted_binary_auc, ClassificationMetrics, ClassificationReport, Reliability};
pub use superres::SuperresMetrics;
