//! Figures for reports: line charts (ROC curves, loss curves) rendered to PNG
//! with plotters and a bundled font, so they look the same on every machine
//! and need no system fonts.

pub mod plot;
