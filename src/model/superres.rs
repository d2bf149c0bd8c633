//! Super-resolution with the MAE encoder (the paper's second task): the LR
//! image is upsampled by nearest neighbour to the encoder's input size,
//! patch-embedded and encoded; the grid of patch tokens is decoded to pixels by
//! PixelShuffle stages (3x3 convolution to r^2 C channels, shuffle by r, ReLU;
//! r = 2, 2 for the paper's 4x4 patches) until it is back at the input size, and
//! a final 3x3 convolution gives the image.
//!
//! Options: `residual` adds the bicubic upsampling of the LR image to the output
//! (the network then learns what bicubic misses); `flux_conserving` projects the
//! output so that each factor x factor block averages exactly to its LR pixel.
//! Both act on the normalised images the model sees; the caller scales them.

use super::layers::{pixel_shuffle, Conv2d};
use super::mae::{Encoder, MaeConfig};
use crate::data::resample::bicubic_matrix;
use crate::{Error, Result};
use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

/// The super-resolution head's settings (the encoder's are a [`MaeConfig`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuperresConfig {
    /// LR -> HR factor: the LR side is `image_size / factor`.
    pub factor: usize,
    /// Channels of the convolutional decoder.
    pub channels: usize,
    /// Add the bicubic upsampling of the input to the output.
    pub residual: bool,
    /// Make each factor x factor block of the output average to its LR pixel.
    pub flux_conserving: bool,
}

impl SuperresConfig {
    /// The paper's head: factor 4, 64 channels, no residual, no flux projection.
    pub fn paper(factor: usize) -> Self {
        SuperresConfig { factor, channels: 64, residual: false, flux_conserving: false }
    }

    /// Checks that the head fits `model`, naming the offending setting.
    pub fn validate(&self, model: &MaeConfig) -> Result<()> {
        let fail = |key: &str, message: String| Err(Error::config(key, message));
        if self.factor < 2 || model.image_size % self.factor != 0 {
            return fail("factor", format!("must be >= 2 and divide the image size {}", model.image_size));
        }
        if model.patch_size < 2 {
            return fail(
                "patch_size",
                "super-resolution decodes patch tokens to pixels: the patch must be >= 2".into(),
            );
        }
        if !(1..=4096).contains(&self.channels) {
            return fail("channels", "must be between 1 and 4096".into());
        }
        Ok(())
    }

    /// LR image side for `model`.
    pub fn lr_size(&self, model: &MaeConfig) -> usize {
        model.image_size / self.factor
    }
}

/// The PixelShuffle factors that take the token grid back to pixels: the prime
/// factors of the patch size, smallest first (patch 4: x2, x2 as in the paper;
/// patch 5 for 150x150 images: x5; patch 6: x2, x3).
pub fn shuffle_stages(patch_size: usize) -> Vec<usize> {
    let (mut n, mut f, mut out) = (patch_size, 2, Vec::new());
    while n > 1 {
        if n % f == 0 {
            out.push(f);
            n /= f;
        } else {
            f += 1;
        }
    }
    out
}

/// Encoder plus convolutional PixelShuffle decoder (keys `encoder.*`, `up.i.*`, `out.*`).
#[derive(Debug, Clone)]
pub struct SuperResolver {
    /// The encoder, loadable from an MAE checkpoint.
    pub encoder: Encoder,
    /// Convolution and shuffle factor of each upsampling stage.
    stages: Vec<(Conv2d, usize)>,
    out: Conv2d,
    model: MaeConfig,
    head: SuperresConfig,
    /// Bicubic matrix `[H, h]` (residual only).
    bicubic: Option<Tensor>,
}

impl SuperResolver {
    /// Build (or load) the model.
    pub fn new(model: &MaeConfig, head: &SuperresConfig, vb: VarBuilder) -> Result<Self> {
        head.validate(model)?;
        let c = head.channels;
        let stages = shuffle_stages(model.patch_size)
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let c_in = if i == 0 { model.embed_dim } else { c };
                Ok((Conv2d::new(c_in, r * r * c, 3, vb.pp("up").pp(i))?, r))
            })
            .collect::<candle_core::Result<_>>()?;
        let lr = head.lr_size(model);
        let bicubic = if head.residual {
            Some(Tensor::from_vec(bicubic_matrix(lr, head.factor), (model.image_size, lr), vb.device())?)
        } else {
            None
        };
        Ok(SuperResolver {
            encoder: Encoder::new(model, vb.pp("encoder"))?,
            stages,
            out: Conv2d::new(c, model.in_channels, 3, vb.pp("out"))?,
            model: model.clone(),
            head: head.clone(),
            bicubic,
        })
    }

    /// The encoder's sizes.
    pub fn config(&self) -> &MaeConfig {
        &self.model
    }

    /// The head's settings.
    pub fn head_config(&self) -> &SuperresConfig {
        &self.head
    }

    /// `[B, C, h, w]` normalised LR images -> `[B, C, H, W]` SR images.
    pub fn forward(&self, lr: &Tensor) -> Result<Tensor> {
        let (b, _, h, w) = lr.dims4()?;
        let want = self.head.lr_size(&self.model);
        if h != want || w != want {
            return Err(Error::Shape(format!("LR images are {h}x{w}, the model takes {want}x{want}")));
        }
        let size = self.model.image_size;
        let tokens = self.encoder.forward(&lr.upsample_nearest2d(size, size)?)?;
        let (g, d) = (self.model.grid(), self.model.embed_dim);
        let mut x = tokens.narrow(1, 1, g * g)?.transpose(1, 2)?.reshape((b, d, g, g))?;
        for (conv, r) in &self.stages {
            x = pixel_shuffle(&conv.forward(&x)?, *r)?.relu()?;
        }
        let mut y = self.out.forward(&x)?;
        if let Some(u) = &self.bicubic {
            // U X U^T for every image and channel.
            let c = self.model.in_channels;
            let up = u.broadcast_matmul(lr)?.broadcast_matmul(&u.t()?)?.reshape((b, c, size, size))?;
            y = (y + up)?;
        }
        if self.head.flux_conserving {
            let f = self.head.factor;
            let deficit = (lr - y.avg_pool2d(f)?)?;
            y = (y + deficit.upsample_nearest2d(size, size)?)?;
        }
        Ok(y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::mae::init_weights;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    fn build(head: &SuperresConfig) -> (VarMap, SuperResolver) {
        let varmap = VarMap::new();
        let cfg = MaeConfig::tiny_16();
        let m = SuperResolver::new(&cfg, head, VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu)).unwrap();
        init_weights(&varmap, 1).unwrap();
        (varmap, m)
    }

    fn lr_images() -> Tensor {
        Tensor::rand(0f32, 1.0, (2, 1, 4, 4), &Device::Cpu).unwrap()
    }

    #[test]
    fn every_trainable_tensor_of_the_sr_model_gets_a_gradient() {
        let (varmap, model) = build(&SuperresConfig { factor: 4, channels: 8, residual: true, flux_conserving: false });
        let y = model.forward(&lr_images()).unwrap();
        assert_eq!(y.dims(), &[2, 1, 16, 16]);
        let grads = y.sqr().unwrap().mean_all().unwrap().backward().unwrap();
        for (name, var) in varmap.data().lock().unwrap().iter() {
            let g = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("no gradient for {name}"));
            let norm: f32 = g.sqr().unwrap().sum_all().unwrap().to_scalar().unwrap();
            assert!(norm.is_finite() && norm > 0.0, "gradient of {name}: {norm}");
        }
    }

    #[test]
    fn flux_conserving_output_block_means_equal_the_input() {
        let (_, model) = build(&SuperresConfig { factor: 4, channels: 8, residual: false, flux_conserving: true });
        let lr = lr_images();
        let y = model.forward(&lr).unwrap();
        let diff: f32 =
            (y.avg_pool2d(4).unwrap() - &lr).unwrap().abs().unwrap().max_all().unwrap().to_scalar().unwrap();
        assert!(diff < 1e-5, "block means differ by {diff}");
    }

    #[test]
    fn the_residual_path_adds_the_bicubic_image() {
        let (varmap, model) = build(&SuperresConfig { factor: 4, channels: 8, residual: true, flux_conserving: false });
        // With the last convolution zeroed the output is the bicubic upsampling.
        for (name, var) in varmap.data().lock().unwrap().iter() {
            if name.starts_with("out.") {
                var.set(&var.zeros_like().unwrap()).unwrap();
            }
        }
        let lr = lr_images();
        let y = model.forward(&lr).unwrap();
        let lr0: Vec<f32> = lr.get(0).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let want = crate::data::resample::upsample_bicubic(&lr0, 4, 4);
        let got: Vec<f32> = y.get(0).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-5, "residual differs from bicubic by {worst}");
    }

    #[test]
    fn the_stages_undo_any_patch_size() {
        assert_eq!(shuffle_stages(4), vec![2, 2]);
        assert_eq!(shuffle_stages(5), vec![5]);
        assert_eq!(shuffle_stages(6), vec![2, 3]);
        // 150x150 HR from 75x75 LR (the DeepLense SR release) with 5x5 patches.
        let cfg =
            MaeConfig { image_size: 150, patch_size: 5, embed_dim: 16, depth: 1, num_heads: 2, ..MaeConfig::tiny_16() };
        let varmap = VarMap::new();
        let head = SuperresConfig { channels: 4, ..SuperresConfig::paper(2) };
        let m = SuperResolver::new(&cfg, &head, VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu)).unwrap();
        init_weights(&varmap, 2).unwrap();
        let y = m.forward(&Tensor::rand(0f32, 1.0, (1, 1, 75, 75), &Device::Cpu).unwrap()).unwrap();
        assert_eq!(y.dims(), &[1, 1, 150, 150]);
    }

    #[test]
    fn a_head_that_does_not_fit_is_refused() {
        let cfg = MaeConfig::tiny_16();
        assert!(SuperresConfig { factor: 3, ..SuperresConfig::paper(3) }.validate(&cfg).is_err());
        let (_, model) = build(&SuperresConfig::paper(4));
        let wrong = Tensor::zeros((1, 1, 8, 8), DType::F32, &Device::Cpu).unwrap();
        assert!(model.forward(&wrong).unwrap_err().to_string().contains("takes 4x4"));
    }
}
