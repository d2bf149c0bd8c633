//! A convolutional classifier in torchvision's ResNet-18 layout (the DeepLense
//! papers' baseline), top to bottom: a 7x7/2 stem with batch normalisation, ReLU
//! and a 3x3/2 max pool, stages of basic blocks (two 3x3 convolutions and a
//! shortcut) whose channels double as the maps halve, global average pooling and
//! a linear head.
//!
//! Why it is here: on survey residuals (issue 20, RESULTS.md) the same layout at
//! a quarter of ResNet-18's width separates the classes better than the ViT of
//! any size tried, with a fifteenth of ResNet-18's products: locality and
//! scales, not size, are what the ViT lacked there.
//!
//! Checkpoint keys are those of the PyTorch twin (`tests/oracle/resnet_twin.py`,
//! `bench/resnet18_baseline.py`): `stem.0.weight`, `stem.1.{weight, bias,
//! running_mean, running_var}`, `layers.{i}.{conv1, bn1, conv2, bn2}.*`,
//! `layers.{i}.down.{0, 1}.*` and `head.*`. The running statistics are variables
//! of the map, so checkpoints save and load them with the weights; training
//! must leave them out of the optimiser ([`is_running_statistic`]).

use candle_core::{Device, Module, Result, Tensor, Var, D};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use super::fused;
use super::layers::{Linear, ONE, ZERO};

/// PyTorch's batch normalisation defaults.
const BN_EPS: f32 = 1e-5;
const BN_MOMENTUM: f64 = 0.1;

/// The sizes of a [`ResNet`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResNetConfig {
    /// Side of the square input images.
    pub image_size: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Channels of the first stage; each later stage has twice its predecessor's.
    pub width: usize,
    /// Basic blocks per stage (ResNet-18: `[2, 2, 2, 2]`).
    pub blocks: Vec<usize>,
}

impl ResNetConfig {
    /// ResNet-18's layout at `width` channels in its first stage (torchvision: 64).
    pub fn resnet18(image_size: usize, width: usize) -> Self {
        ResNetConfig { image_size, in_channels: 1, width, blocks: vec![2, 2, 2, 2] }
    }

    /// Width of the pooled features the head reads.
    pub fn feature_width(&self) -> usize {
        self.width << self.blocks.len().saturating_sub(1)
    }

    /// Refuses sizes no network can be built from.
    pub fn validate(&self) -> crate::Result<()> {
        let check = crate::Error::check;
        check(self.width > 0, "width", "must be at least 1")?;
        check(self.in_channels > 0, "in_channels", "must be at least 1")?;
        check(!self.blocks.is_empty() && !self.blocks.contains(&0), "blocks", "every stage needs at least one block")?;
        check(
            self.width.checked_shl(self.blocks.len() as u32).is_some_and(|w| w <= 1 << 16),
            "width",
            "doubled over the stages, must stay within 65,536 channels",
        )?;
        // The stem's two halvings leave at least one pixel.
        check(self.image_size >= 4, "image_size", "must be at least 4 pixels")?;
        check(self.image_size <= 4096, "image_size", "must be at most 4096")?;
        // Two 3x3 convolutions a block (the first stage's halving and the shortcuts
        // are a small part); refused before any tensor is allocated.
        let parameters: f64 = self
            .blocks
            .iter()
            .enumerate()
            .map(|(stage, &n)| n as f64 * 18.0 * ((self.width << stage) as f64).powi(2))
            .sum::<f64>()
            + 49.0 * self.in_channels as f64 * self.width as f64;
        super::check_parameter_count(parameters, "width")
    }
}

/// Whether a checkpoint key names a batch normalisation's running statistic:
/// state estimated in training, never given to the optimiser.
pub fn is_running_statistic(name: &str) -> bool {
    name.ends_with(".running_mean") || name.ends_with(".running_var")
}

/// A convolution without bias (a batch normalisation follows each).
#[derive(Debug, Clone)]
struct Conv {
    weight: Tensor,
    stride: usize,
    padding: usize,
}

impl Conv {
    fn new(c_in: usize, c_out: usize, kernel: usize, stride: usize, vb: VarBuilder) -> Result<Self> {
        let bound = 1.0 / ((c_in * kernel * kernel) as f64).sqrt();
        let init = Init::Uniform { lo: -bound, up: bound };
        let weight = vb.get_with_hints((c_out, c_in, kernel, kernel), "weight", init)?;
        Ok(Conv { weight, stride, padding: kernel / 2 })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if fused::applies_to(x) {
            return fused::conv2d(x, &self.weight, self.stride, self.padding);
        }
        x.conv2d(&self.weight, self.padding, self.stride, 1, 1)
    }
}

/// Batch normalisation over the images and pixels of each channel.
#[derive(Debug, Clone)]
struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
}

impl BatchNorm {
    fn new(channels: usize, vb: VarBuilder) -> Result<Self> {
        // Variables of a VarMap come back as the map's own (updated in place);
        // tensors read from a checkpoint are copied once, never updated.
        let running = |name, init| Var::from_tensor(&vb.get_with_hints(channels, name, init)?);
        Ok(BatchNorm {
            weight: vb.get_with_hints(channels, "weight", ONE)?,
            bias: vb.get_with_hints(channels, "bias", ZERO)?,
            running_mean: running("running_mean", ZERO)?,
            running_var: running("running_var", ONE)?,
        })
    }

    /// Normalised `x` (then ReLU when `relu`): in training with the batch's own
    /// statistics, which move the running ones; otherwise with the running ones.
    fn forward(&self, x: &Tensor, train: bool, relu: bool) -> Result<Tensor> {
        let channels = self.weight.dim(0)?;
        if !train {
            let scale = (&self.weight / (self.running_var.as_tensor() + BN_EPS as f64)?.sqrt()?)?;
            let shift = (&self.bias - (self.running_mean.as_tensor() * &scale)?)?;
            let y = x.broadcast_mul(&scale.reshape((1, channels, 1, 1))?)?;
            let y = y.broadcast_add(&shift.reshape((1, channels, 1, 1))?)?;
            return if relu { y.relu() } else { Ok(y) };
        }
        let (y, mean, variance) = batch_norm_with_batch_statistics(x, &self.weight, &self.bias, relu)?;
        let count = x.elem_count() / channels;
        // PyTorch's update: the running variance takes the unbiased estimate.
        let unbiased = (variance * (count as f64 / (count.max(2) - 1) as f64))?;
        let blend = |running: &Var, batch: Tensor| -> Result<()> {
            running.set(&((running.as_tensor() * (1.0 - BN_MOMENTUM))? + (batch * BN_MOMENTUM)?)?)
        };
        blend(&self.running_mean, mean)?;
        blend(&self.running_var, unbiased)?;
        Ok(y)
    }
}

/// Training-mode batch normalisation through whichever kernels apply: the
/// normalised `x` (then ReLU when `relu`) and, outside the graph, the batch's
/// mean and biased variance per channel.
fn batch_norm_with_batch_statistics(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    relu: bool,
) -> Result<(Tensor, Tensor, Tensor)> {
    if fused::applies_to(x) {
        let (y, s) = fused::batch_norm_train(x, gamma, beta, BN_EPS, relu)?;
        let (channels, dev) = (gamma.dim(0)?, x.device());
        return Ok((y, Tensor::from_vec(s.mean, channels, dev)?, Tensor::from_vec(s.variance, channels, dev)?));
    }
    let (y, mean, variance) = batch_norm_composed(x, gamma, beta, relu)?;
    Ok((y, mean.detach(), variance.detach()))
}

/// Training-mode batch normalisation from candle's differentiable ops: the
/// reference for the fused kernel, and the path off the CPU. Also returns the
/// batch's mean and biased variance per channel.
fn batch_norm_composed(x: &Tensor, gamma: &Tensor, beta: &Tensor, relu: bool) -> Result<(Tensor, Tensor, Tensor)> {
    let channels = gamma.dim(0)?;
    let over_batch_and_pixels = |t: &Tensor| t.mean_keepdim(0)?.mean_keepdim(2)?.mean_keepdim(3);
    let mean = over_batch_and_pixels(x)?;
    let centred = x.broadcast_sub(&mean)?;
    let variance = over_batch_and_pixels(&centred.sqr()?)?;
    let y = centred.broadcast_div(&(&variance + BN_EPS as f64)?.sqrt()?)?;
    let y =
        y.broadcast_mul(&gamma.reshape((1, channels, 1, 1))?)?.broadcast_add(&beta.reshape((1, channels, 1, 1))?)?;
    let y = if relu { y.relu()? } else { y };
    Ok((y, mean.flatten_all()?, variance.flatten_all()?))
}

/// Max pooling from candle's differentiable ops (its own `max_pool2d` has no
/// backward pass for overlapping windows): the maximum over the window's taps,
/// each a strided view of the input padded with minus infinity.
fn max_pool_composed(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let (h_out, w_out) = ((h + 2 * padding - kernel) / stride + 1, (w + 2 * padding - kernel) / stride + 1);
    // Room for every tap's `out * stride` rows and columns.
    let (h_pad, w_pad) = (h_out * stride + kernel - 1, w_out * stride + kernel - 1);
    let fill = |dims: (usize, usize, usize, usize)| Tensor::full(f32::NEG_INFINITY, dims, x.device());
    let x = Tensor::cat(&[fill((b, c, padding, w))?, x.clone(), fill((b, c, h_pad - h - padding, w))?], 2)?;
    let x = Tensor::cat(&[fill((b, c, h_pad, padding))?, x, fill((b, c, h_pad, w_pad - w - padding))?], 3)?;
    let mut pooled: Option<Tensor> = None;
    for ky in 0..kernel {
        let rows = x.narrow(2, ky, h_out * stride)?.reshape((b, c, h_out, stride, w_pad))?.narrow(3, 0, 1)?;
        let rows = rows.reshape((b, c, h_out, w_pad))?;
        for kx in 0..kernel {
            let tap = rows.narrow(3, kx, w_out * stride)?.reshape((b, c, h_out, w_out, stride))?.narrow(4, 0, 1)?;
            let tap = tap.reshape((b, c, h_out, w_out))?;
            pooled = Some(match pooled {
                None => tap,
                Some(p) => p.maximum(&tap)?,
            });
        }
    }
    Ok(pooled.expect("a window has at least one tap"))
}

fn max_pool(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
    if fused::applies_to(x) {
        return fused::max_pool2d(x, kernel, stride, padding);
    }
    max_pool_composed(x, kernel, stride, padding)
}

/// Two 3x3 convolutions and a shortcut (a strided 1x1 convolution where the
/// block halves the map or changes its channels).
#[derive(Debug, Clone)]
struct BasicBlock {
    conv1: Conv,
    bn1: BatchNorm,
    conv2: Conv,
    bn2: BatchNorm,
    down: Option<(Conv, BatchNorm)>,
}

impl BasicBlock {
    fn new(c_in: usize, c_out: usize, stride: usize, vb: VarBuilder) -> Result<Self> {
        let down = if stride != 1 || c_in != c_out {
            Some((Conv::new(c_in, c_out, 1, stride, vb.pp("down.0"))?, BatchNorm::new(c_out, vb.pp("down.1"))?))
        } else {
            None
        };
        Ok(BasicBlock {
            conv1: Conv::new(c_in, c_out, 3, stride, vb.pp("conv1"))?,
            bn1: BatchNorm::new(c_out, vb.pp("bn1"))?,
            conv2: Conv::new(c_out, c_out, 3, 1, vb.pp("conv2"))?,
            bn2: BatchNorm::new(c_out, vb.pp("bn2"))?,
            down,
        })
    }

    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let y = self.bn1.forward(&self.conv1.forward(x)?, train, true)?;
        let y = self.bn2.forward(&self.conv2.forward(&y)?, train, false)?;
        let shortcut = match &self.down {
            Some((conv, bn)) => bn.forward(&conv.forward(x)?, train, false)?,
            None => x.clone(),
        };
        (y + shortcut)?.relu()
    }
}

/// The network: `[B, C, H, W]` images to `[B, classes]` logits.
#[derive(Debug, Clone)]
pub struct ResNet {
    stem_conv: Conv,
    stem_bn: BatchNorm,
    blocks: Vec<BasicBlock>,
    head: Linear,
}

impl ResNet {
    /// Build (or load) a network with `num_classes` outputs.
    pub fn new(cfg: &ResNetConfig, num_classes: usize, vb: VarBuilder) -> Result<Self> {
        let mut blocks = Vec::new();
        let mut c_in = cfg.width;
        for (stage, &count) in cfg.blocks.iter().enumerate() {
            let c_out = cfg.width << stage;
            for i in 0..count {
                let stride = if stage > 0 && i == 0 { 2 } else { 1 };
                blocks.push(BasicBlock::new(c_in, c_out, stride, vb.pp(format!("layers.{}", blocks.len())))?);
                c_in = c_out;
            }
        }
        Ok(ResNet {
            stem_conv: Conv::new(cfg.in_channels, cfg.width, 7, 2, vb.pp("stem.0"))?,
            stem_bn: BatchNorm::new(cfg.width, vb.pp("stem.1"))?,
            blocks,
            head: Linear::new(cfg.feature_width(), num_classes, vb.pp("head"))?,
        })
    }

    /// The device its weights are on.
    pub fn device(&self) -> &Device {
        self.stem_conv.weight.device()
    }

    /// Globally average-pooled features of the last stage, `[B, F]`; `train`
    /// normalises with the batch's statistics (and moves the running ones).
    pub fn features(&self, imgs: &Tensor, train: bool) -> Result<Tensor> {
        let x = self.stem_bn.forward(&self.stem_conv.forward(imgs)?, train, true)?;
        let mut x = max_pool(&x, 3, 2, 1)?;
        for block in &self.blocks {
            x = block.forward(&x, train)?;
        }
        x.flatten_from(2)?.mean(D::Minus1)
    }

    /// Class logits from pooled features.
    pub fn head(&self, features: &Tensor) -> Result<Tensor> {
        self.head.forward(features)
    }

    /// Class logits `[B, num_classes]`.
    pub fn forward(&self, imgs: &Tensor, train: bool) -> Result<Tensor> {
        self.head(&self.features(imgs, train)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fused::tests::{random, relative_difference};
    use crate::model::fused::{with_kernels, Kernels};
    use crate::model::mae::init_weights;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// The output of `f` on both kernel sets and the gradients of `sum(y * r)`
    /// with respect to `inputs`, compared within `tolerance`.
    fn fused_matches_composed(
        rng: &mut ChaCha8Rng,
        inputs: &[Var],
        f: impl Fn() -> Result<Tensor>,
        tolerance: f32,
        what: &str,
    ) {
        let (fused, composed) =
            (with_kernels(Kernels::Fused, &f).unwrap(), with_kernels(Kernels::Composed, &f).unwrap());
        assert_eq!(fused.dims(), composed.dims(), "{what}: shapes");
        let diff = relative_difference(&fused, &composed);
        assert!(diff <= tolerance, "{what}: outputs differ by {diff:e}");
        let r = random(rng, fused.dims(), 1.0);
        let grads = |y: &Tensor| (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let (gf, gc) = (grads(&fused), grads(&composed));
        for (i, v) in inputs.iter().enumerate() {
            let (a, b) = (gf.get(v.as_tensor()).unwrap(), gc.get(v.as_tensor()).unwrap());
            let diff = relative_difference(a, b);
            assert!(diff <= tolerance, "{what}: gradients of input {i} differ by {diff:e}");
        }
    }

    #[test]
    fn strided_padded_convolutions_match_candles() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        // ResNet's (7, 2, 3), (3, 2, 1), (1, 2, 0), (3, 1, 1), and odd sizes.
        for (k, stride, padding) in
            [(7, 2, 3), (3, 2, 1), (1, 2, 0), (3, 1, 1), (2, 3, 1), (5, 1, 0), (7, 2, 3), (5, 1, 2)]
        {
            let (b, c_in, c_out) = (rng.random_range(1..4), rng.random_range(1..6), rng.random_range(1..6));
            // Square maps: candle's convolution backward takes the transposed
            // convolution's output padding from the height alone.
            // Down to maps narrower than the kernel, where only padding surrounds them.
            let h = rng.random_range((k - 2 * padding).max(1)..14);
            let w = h;
            let x = Var::from_tensor(&random(&mut rng, &[b, c_in, h, w], 2.0)).unwrap();
            let weight = Var::from_tensor(&random(&mut rng, &[c_out, c_in, k, k], 0.5)).unwrap();
            let conv = Conv { weight: weight.as_tensor().clone(), stride, padding };
            let what = format!("{k}x{k}/{stride} padding {padding} on {h}x{w}");
            fused_matches_composed(&mut rng, &[x.clone(), weight], || conv.forward(x.as_tensor()), 1e-5, &what);
        }
    }

    #[test]
    fn convolutions_over_groups_of_images_match_candles_and_do_not_depend_on_the_threads() {
        let mut rng = ChaCha8Rng::seed_from_u64(13);
        // 16 output pixels an image: products of 4 images, the last of one (in
        // parallel over the groups, or one after another with 8 threads); then 4
        // pixels an image (ResNet's last stage at 64x64): all 9 in one product, which
        // gemm splits among the threads.
        for (h, stride) in [(4, 1), (4, 2)] {
            let (b, c_in, c_out) = (9, 3, 5);
            let x = Var::from_tensor(&random(&mut rng, &[b, c_in, h, h], 2.0)).unwrap();
            let weight = Var::from_tensor(&random(&mut rng, &[c_out, c_in, 3, 3], 0.5)).unwrap();
            let conv = Conv { weight: weight.as_tensor().clone(), stride, padding: 1 };
            let what = format!("3x3/{stride} on {b} images of {h}x{h}");
            fused_matches_composed(&mut rng, &[x.clone(), weight.clone()], || conv.forward(x.as_tensor()), 1e-5, &what);
            let r = random(&mut rng, &[b, c_out, h / stride, h / stride], 1.0);
            let bits = |t: &Tensor| -> Vec<u32> {
                t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect()
            };
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                pool.install(|| {
                    let y = conv.forward(x.as_tensor()).unwrap();
                    let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
                    [bits(&y), bits(grads.get(x.as_tensor()).unwrap()), bits(grads.get(weight.as_tensor()).unwrap())]
                })
            };
            let one = run(1);
            for threads in [2, 3, 8] {
                assert!(run(threads) == one, "{what}: {threads} threads differ from one");
            }
        }
        // An empty batch (a partition whose rows all failed) gives an empty answer.
        let x = Var::from_tensor(&Tensor::zeros((0, 3, 4, 4), DType::F32, &Device::Cpu).unwrap()).unwrap();
        let weight = Var::from_tensor(&random(&mut rng, &[5, 3, 3, 3], 0.5)).unwrap();
        let conv = Conv { weight: weight.as_tensor().clone(), stride: 1, padding: 1 };
        let y = conv.forward(x.as_tensor()).unwrap();
        assert_eq!(y.dims(), &[0, 5, 4, 4]);
        let grads = y.sum_all().unwrap().backward().unwrap();
        assert_eq!(grads.get(weight.as_tensor()).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap(), 0.0);
    }

    #[test]
    fn batch_norm_in_training_matches_the_composed_one_and_moves_the_running_statistics() {
        let mut rng = ChaCha8Rng::seed_from_u64(12);
        for relu in [false, true] {
            let (b, c, h, w) = (3, 5, 7, 6);
            let x = Var::from_tensor(&(random(&mut rng, &[b, c, h, w], 2.0) + 0.7).unwrap()).unwrap();
            let gamma = Var::from_tensor(&(random(&mut rng, &[c], 0.5) + 1.0).unwrap()).unwrap();
            let beta = Var::from_tensor(&random(&mut rng, &[c], 0.5)).unwrap();
            let normalise =
                || batch_norm_with_batch_statistics(x.as_tensor(), gamma.as_tensor(), beta.as_tensor(), relu);
            let f = || Ok(normalise()?.0);
            fused_matches_composed(&mut rng, &[x.clone(), gamma.clone(), beta.clone()], f, 1e-5, "batch norm");
            let (_, mean, variance) = with_kernels(Kernels::Fused, normalise).unwrap();
            let (_, mean_c, variance_c) = with_kernels(Kernels::Composed, normalise).unwrap();
            assert!(relative_difference(&mean, &mean_c) < 1e-6 && relative_difference(&variance, &variance_c) < 1e-5);
        }
        // The running statistics follow PyTorch's update: momentum 0.1, unbiased variance.
        let varmap = VarMap::new();
        let bn = BatchNorm::new(2, VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu).pp("bn")).unwrap();
        init_weights(&varmap, 1).unwrap();
        let x = Tensor::from_vec(vec![1f32, 3.0, 0.0, 0.0, 5.0, 7.0, 4.0, 4.0], (2, 2, 1, 2), &Device::Cpu).unwrap();
        for kernels in [Kernels::Fused, Kernels::Composed] {
            bn.running_mean.set(&Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap()).unwrap();
            bn.running_var.set(&Tensor::ones(2, DType::F32, &Device::Cpu).unwrap()).unwrap();
            with_kernels(kernels, || bn.forward(&x, true, false)).unwrap();
            // Channel 0 holds 1, 3, 5, 7: mean 4, unbiased variance 20/3; channel 1 holds 0, 0, 4, 4.
            let mean = bn.running_mean.as_tensor().to_vec1::<f32>().unwrap();
            let var = bn.running_var.as_tensor().to_vec1::<f32>().unwrap();
            let expected_var = [0.9 + 0.1 * 20.0 / 3.0, 0.9 + 0.1 * 16.0 / 3.0];
            assert!((mean[0] - 0.4).abs() < 1e-6 && (mean[1] - 0.2).abs() < 1e-6, "{kernels:?}: {mean:?}");
            assert!(var.iter().zip(expected_var).all(|(v, e)| (v - e as f32).abs() < 1e-5), "{kernels:?}: {var:?}");
        }
        // In the map: a later lookup of the same key sees the update.
        let key = varmap.data().lock().unwrap()["bn.running_mean"].as_tensor().to_vec1::<f32>().unwrap();
        assert_eq!(key, bn.running_mean.as_tensor().to_vec1::<f32>().unwrap());
    }

    #[test]
    fn overlapping_max_pooling_matches_the_composed_one() {
        let mut rng = ChaCha8Rng::seed_from_u64(13);
        for (k, stride, padding, h, w) in
            [(3, 2, 1, 16, 16), (3, 2, 1, 7, 5), (2, 2, 0, 6, 8), (3, 1, 1, 4, 3), (3, 3, 0, 9, 10)]
        {
            let x = Var::from_tensor(&random(&mut rng, &[2, 3, h, w], 1.0)).unwrap();
            let what = format!("{k}x{k}/{stride} padding {padding} on {h}x{w}");
            fused_matches_composed(
                &mut rng,
                std::slice::from_ref(&x),
                || max_pool(x.as_tensor(), k, stride, padding),
                0.0,
                &what,
            );
        }
        // Padding never wins, even over negative maps.
        let x = Tensor::full(-3f32, (1, 1, 4, 4), &Device::Cpu).unwrap();
        let pooled = fused::max_pool2d(&x, 3, 2, 1).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(pooled, vec![-3.0; 4]);
    }

    #[test]
    fn the_network_is_the_same_on_both_kernel_sets_in_training_and_inference() {
        let mut rng = ChaCha8Rng::seed_from_u64(14);
        let cfg = ResNetConfig { image_size: 24, in_channels: 1, width: 3, blocks: vec![1, 2, 1] };
        cfg.validate().unwrap();
        let varmap = VarMap::new();
        let net = ResNet::new(&cfg, 3, VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu)).unwrap();
        init_weights(&varmap, 3).unwrap();
        let images = random(&mut rng, &[4, 1, 24, 24], 1.0);
        let x = Var::from_tensor(&images).unwrap();
        let mut vars: Vec<(String, Var)> =
            varmap.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let trainable: Vec<Var> =
            vars.iter().filter(|(k, _)| !is_running_statistic(k)).map(|(_, v)| v.clone()).collect();
        // Batch norms: the stem's, two per block, one per downsampling shortcut (2).
        assert_eq!(vars.len() - trainable.len(), 2 * (1 + 2 * 4 + 2), "two running statistics per batch norm");
        let mut inputs = vec![x.clone()];
        inputs.extend(trainable);
        fused_matches_composed(&mut rng, &inputs, || net.forward(x.as_tensor(), true), 1e-4, "training");
        let eval = |k| with_kernels(k, || net.forward(&images, false)).unwrap();
        let diff = relative_difference(&eval(Kernels::Fused), &eval(Kernels::Composed));
        assert!(diff <= 1e-5, "inference outputs differ by {diff:e}");
        assert_eq!(net.features(&images, false).unwrap().dims(), &[4, cfg.feature_width()]);
        // An empty batch answers with no rows in inference.
        let empty = Tensor::zeros((0, 1, 24, 24), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(net.forward(&empty, false).unwrap().dims(), &[0, 3]);
    }
}
