//! The models: a Vision Transformer encoder trained as a masked autoencoder
//! ([`mae`]), the heads built on it, a convolutional classifier in ResNet-18
//! layout ([`resnet`]), the one classifier type both are used through
//! ([`classifier`]), and the differentiable building blocks ([`layers`]).
//!
//! candle's fused LayerNorm and softmax have no backward pass (gradients silently
//! stop there), so the layers use either our own fused CPU kernels with analytic
//! backward passes ([`fused`]) or, as the reference and off the CPU, compositions
//! of differentiable primitives, in which softmax, normalisation and GELU are
//! one-kernel ops of ours with one-kernel backward passes ([`ops`], CUDA kernels
//! in `ops.cu`); tests check that both paths agree and that every trainable
//! tensor receives a gradient.

pub mod checkpoint;
pub mod classifier;
pub mod device;
pub mod domain;
pub mod fused;
pub mod layers;
pub mod mae;
pub mod ops;
pub mod preprocess;
pub mod resnet;
pub mod superres;

pub use classifier::{Classifier, Network};
pub use mae::{Mae, MaeConfig, MaeOutput, VitClassifier};
