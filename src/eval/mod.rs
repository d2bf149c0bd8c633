//! Evaluation metrics, computed as scikit-learn computes them (golden values from
//! scikit-learn in `fixtures/oracle/` are checked by the tests).

pub mod classification;

pub use classification::{ClassificationMetrics, ClassificationReport};
