//! The networks a classifier is built on, behind one type: the ViT encoder with
//! a linear head ([`VitClassifier`], the paper's, MAE-pretrainable) or a
//! convolutional network in ResNet-18 layout ([`ResNet`], trained from scratch).
//! Training, inference, calibration and export take a [`Classifier`] and never
//! ask which.

use candle_core::{Device, Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::mae::{MaeConfig, Pooling, VitClassifier};
use super::resnet::{ResNet, ResNetConfig};

/// A checkpoint's network and its sizes. Written as the sizes alone (the key
/// `model` of a checkpoint's description, or a `--model` JSON file): the two
/// kinds have no field name in common beyond the image's, so each reads back as
/// what it was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Network {
    /// A Vision Transformer (with, for an MAE, its decoder's sizes).
    Vit(MaeConfig),
    /// A convolutional network in ResNet-18 layout.
    ResNet(ResNetConfig),
}

impl Network {
    /// Side of the square images it takes.
    pub fn image_size(&self) -> usize {
        match self {
            Network::Vit(cfg) => cfg.image_size,
            Network::ResNet(cfg) => cfg.image_size,
        }
    }

    /// The sizes in a `--model` JSON file: a ResNet's when it names a `width` or
    /// `blocks`, else a ViT's (each with its own errors: the untagged form only
    /// says that neither fits).
    pub fn from_json(text: &str) -> serde_json::Result<Network> {
        let value: serde_json::Value = serde_json::from_str(text)?;
        let convolutional = ["width", "blocks"].iter().any(|key| value.get(key).is_some());
        Ok(if convolutional {
            Network::ResNet(serde_json::from_value(value)?)
        } else {
            Network::Vit(serde_json::from_value(value)?)
        })
    }

    /// The ViT's sizes, for what only a ViT does (MAE pretraining, super-resolution).
    pub fn vit(&self) -> Option<&MaeConfig> {
        match self {
            Network::Vit(cfg) => Some(cfg),
            Network::ResNet(_) => None,
        }
    }

    /// Refuses sizes no network can be built from.
    pub fn validate(&self) -> crate::Result<()> {
        match self {
            Network::Vit(cfg) => cfg.validate(),
            Network::ResNet(cfg) => cfg.validate(),
        }
    }

    /// One line for people: the kind and its sizes.
    pub fn describe(&self) -> String {
        match self {
            Network::Vit(c) => format!(
                "ViT {0}x{0}, patch {1}, width {2}, {3} blocks of {4} heads",
                c.image_size, c.patch_size, c.embed_dim, c.depth, c.num_heads
            ),
            Network::ResNet(c) => {
                format!("ResNet {0}x{0}, width {1}, blocks {2:?}", c.image_size, c.width, c.blocks)
            }
        }
    }
}

impl From<MaeConfig> for Network {
    fn from(cfg: MaeConfig) -> Network {
        Network::Vit(cfg)
    }
}

/// A classifier: images to class logits, and the features its domain model describes.
#[derive(Debug, Clone)]
pub enum Classifier {
    /// The ViT encoder with a linear head.
    Vit(VitClassifier),
    /// The convolutional network.
    ResNet(ResNet),
}

impl Classifier {
    /// Build (or load) a classifier of `network` with `num_classes` outputs;
    /// `pooling` and `dropout` are the ViT's (the ResNet pools globally, without dropout).
    pub fn new(
        network: &Network,
        num_classes: usize,
        pooling: Pooling,
        dropout: f32,
        vb: VarBuilder,
    ) -> Result<Classifier> {
        Ok(match network {
            Network::Vit(cfg) => Classifier::Vit(VitClassifier::new(cfg, num_classes, pooling, dropout, vb)?),
            Network::ResNet(cfg) => Classifier::ResNet(ResNet::new(cfg, num_classes, vb)?),
        })
    }

    /// The device its weights are on.
    pub fn device(&self) -> &Device {
        match self {
            Classifier::Vit(m) => m.encoder.device(),
            Classifier::ResNet(m) => m.device(),
        }
    }

    /// Pooled features `[B, F]`. `training_seed` marks a training step: the ViT
    /// draws its dropout from it, the ResNet normalises with the batch's
    /// statistics (moving its running ones); without it, inference.
    pub fn features(&self, imgs: &Tensor, training_seed: Option<u64>) -> Result<Tensor> {
        match self {
            Classifier::Vit(m) => m.features(imgs, training_seed),
            Classifier::ResNet(m) => m.features(imgs, training_seed.is_some()),
        }
    }

    /// Class logits from pooled features.
    pub fn head(&self, features: &Tensor) -> Result<Tensor> {
        match self {
            Classifier::Vit(m) => m.head(features),
            Classifier::ResNet(m) => m.head(features),
        }
    }

    /// Class logits `[B, num_classes]` and, from the same pass, the features its
    /// domain model describes, at inference: the ViT's CLS token beside its mean
    /// patch token, the ResNet's pooled features.
    pub fn logits_and_domain_features(&self, imgs: &Tensor) -> Result<(Tensor, Tensor)> {
        match self {
            Classifier::Vit(m) => m.logits_and_domain_features(imgs),
            Classifier::ResNet(m) => {
                let features = m.features(imgs, false)?;
                Ok((m.head(&features)?, features))
            }
        }
    }

    /// What [`Classifier::logits_and_domain_features`] gives, as a calibration records it.
    pub fn domain_features(&self) -> &'static str {
        match self {
            Classifier::Vit(_) => "cls+mean-tokens",
            Classifier::ResNet(_) => "pooled-maps",
        }
    }
}
