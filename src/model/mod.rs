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

/// The most parameters a network's sizes may describe: 2^31, 8 GiB of f32 weights
/// before the optimiser's two moments (the paper's ViT has 22 M).
pub const MAX_PARAMETERS: f64 = 2_147_483_648.0;

/// Refuses sizes describing more than [`MAX_PARAMETERS`] (the error names `key`):
/// such a network would be allocated until the process aborts.
fn check_parameter_count(parameters: f64, key: &str) -> crate::Result<()> {
    if parameters <= MAX_PARAMETERS {
        return Ok(());
    }
    Err(crate::Error::config(
        key,
        format!(
            "these sizes describe {parameters:.3e} parameters, more than the {MAX_PARAMETERS:.3e} a model may have"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::resnet::ResNetConfig;
    use super::*;

    #[test]
    fn sizes_no_network_or_no_machine_takes_are_refused_by_key() {
        let refused = |cfg: MaeConfig| cfg.validate().unwrap_err().to_string();
        assert!(refused(MaeConfig { patch_size: 0, ..MaeConfig::tiny_16() }).contains("`patch_size`"));
        assert!(refused(MaeConfig { image_size: 0, ..MaeConfig::tiny_16() }).contains("`image_size`"));
        assert!(refused(MaeConfig { embed_dim: 1 << 20, ..MaeConfig::tiny_16() }).contains("`embed_dim`"));
        // 2^32 squared wraps to 0 in integers: the count is taken in f64.
        let wraps = MaeConfig { embed_dim: 1 << 32, num_heads: 1, decoder_embed_dim: 1 << 32, ..MaeConfig::tiny_16() };
        assert!(refused(wraps).contains("`embed_dim`"));
        assert!(refused(MaeConfig { in_channels: usize::MAX, ..MaeConfig::tiny_16() }).contains("parameters"));
        assert!(refused(MaeConfig { image_size: 1 << 13, patch_size: 8, ..MaeConfig::tiny_16() }).contains("at most"));
        assert!(refused(MaeConfig { mlp_ratio: f64::NAN, ..MaeConfig::tiny_16() }).contains("`mlp_ratio`"));
        MaeConfig::paper_64().validate().unwrap();
        // A ResNet of 4,096 channels in its first stage: 65,536 in its last, 40 G parameters.
        let wide = ResNetConfig::resnet18(64, 4096).validate().unwrap_err().to_string();
        assert!(wide.contains("`width`") && wide.contains("parameters"), "{wide}");
        ResNetConfig::resnet18(64, 64).validate().unwrap();
    }
}
