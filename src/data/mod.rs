//! Datasets on disk: the simulator's writers (Parquet, FITS, `.npy` trees) and the
//! readers the model and stage build on.

pub mod npy;
