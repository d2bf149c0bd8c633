//! The models: a Vision Transformer encoder trained as a masked autoencoder
//! ([`mae`]), the heads built on it, and the differentiable building blocks
//! ([`layers`]) they share.
//!
//! candle's fused LayerNorm and softmax have no backward pass (gradients silently
//! stop there), so every layer here is composed from differentiable primitives;
//! a test checks that every trainable tensor receives a gradient.

pub mod checkpoint;
pub mod layers;
pub mod mae;

pub use mae::{Mae, MaeConfig, MaeOutput, VitClassifier};
