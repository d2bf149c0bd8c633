//! Dataset readers and writers.
