//! Masked autoencoder with a Vision Transformer encoder (He et al. 2022, "Masked
//! Autoencoders Are Scalable Vision Learners"), as the lensing MAE paper
//! (arXiv 2512.06642) uses it: 64x64x1 images, 4x4 patches (256 tokens), width 192,
//! 6 pre-norm blocks of 3 heads, MLP ratio 4, exact GELU, LayerNorm eps 1e-6, a CLS
//! token and fixed 2-D sin-cos positional embeddings; a light decoder predicts the
//! pixels of every patch and the loss is the MSE on the masked patches.
//!
//! Conventions: images are `[B, C, H, W]`; patches are flattened `(p, p, C)`, so
//! [`patchify`] maps `[B, C, H, W]` to `[B, L, p*p*C]`; in a mask, 1 means the
//! patch was removed (hidden from the encoder) and 0 that it was kept.
//!
//! Every size comes from [`MaeConfig`]. The file reads top to bottom in the order
//! the algorithm runs: config, encoder, decoder, then `patchify`, `random_masking`,
//! `forward_encoder`, `forward_decoder`, `forward_loss`, `forward`.

use super::layers::{sincos_pos_embed, Block, LayerNorm, Linear};
use candle_core::{DType, Device, IndexOp, Module, Result, Tensor, D};
use candle_nn::{Init, VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

/// Sizes of the encoder and decoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaeConfig {
    /// Image side, pixels.
    pub image_size: usize,
    /// Bands per image.
    pub in_channels: usize,
    /// Patch side, pixels.
    pub patch_size: usize,
    /// Encoder width.
    pub embed_dim: usize,
    /// Encoder blocks.
    pub depth: usize,
    /// Encoder attention heads.
    pub num_heads: usize,
    /// Decoder width.
    pub decoder_embed_dim: usize,
    /// Decoder blocks.
    pub decoder_depth: usize,
    /// Decoder attention heads.
    pub decoder_num_heads: usize,
    /// MLP width over block width.
    pub mlp_ratio: f64,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Predict per-patch normalised pixels ("norm_pix" loss).
    pub norm_pix_loss: bool,
}

impl MaeConfig {
    /// The paper's model: 64x64x1, patch 4, 192 wide, 6 blocks of 3 heads; a
    /// 2-block decoder of width 128 with 4 heads.
    pub fn paper_64() -> Self {
        MaeConfig {
            image_size: 64,
            in_channels: 1,
            patch_size: 4,
            embed_dim: 192,
            depth: 6,
            num_heads: 3,
            decoder_embed_dim: 128,
            decoder_depth: 2,
            decoder_num_heads: 4,
            mlp_ratio: 4.0,
            layer_norm_eps: 1e-6,
            norm_pix_loss: false,
        }
    }

    /// A small model for tests: 16x16, patch 4, width 32, 2 blocks.
    pub fn tiny_16() -> Self {
        MaeConfig {
            image_size: 16,
            in_channels: 1,
            patch_size: 4,
            embed_dim: 32,
            depth: 2,
            num_heads: 2,
            decoder_embed_dim: 16,
            decoder_depth: 1,
            decoder_num_heads: 2,
            mlp_ratio: 2.0,
            layer_norm_eps: 1e-6,
            norm_pix_loss: false,
        }
    }

    /// Patches per side.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Patches per image (L).
    pub fn num_patches(&self) -> usize {
        self.grid() * self.grid()
    }

    /// Values per patch (p*p*C).
    pub fn patch_dim(&self) -> usize {
        self.patch_size * self.patch_size * self.in_channels
    }

    /// Check the sizes fit together; the error names the field.
    pub fn validate(&self) -> crate::Result<()> {
        let check = crate::Error::check;
        check(self.patch_size > 0, "patch_size", "must be at least 1")?;
        check(
            self.image_size >= self.patch_size && self.image_size % self.patch_size == 0,
            "image_size",
            "must be a multiple of patch_size",
        )?;
        check(self.in_channels > 0, "in_channels", "must be at least 1")?;
        check(self.embed_dim % 4 == 0, "embed_dim", "must be a multiple of 4 (sin-cos embedding)")?;
        check(self.decoder_embed_dim % 4 == 0, "decoder_embed_dim", "must be a multiple of 4")?;
        check(self.num_heads > 0 && self.embed_dim % self.num_heads == 0, "num_heads", "must divide embed_dim")?;
        check(
            self.decoder_num_heads > 0 && self.decoder_embed_dim % self.decoder_num_heads == 0,
            "decoder_num_heads",
            "must divide decoder_embed_dim",
        )?;
        check(self.depth > 0, "depth", "must be at least 1")?;
        check(self.mlp_ratio > 0.0 && self.mlp_ratio <= 64.0, "mlp_ratio", "must be in (0, 64]")?;
        // Sizes whose tensors no machine holds are refused before any is allocated.
        check(self.image_size <= 4096, "image_size", "must be at most 4096")?;
        check(self.num_patches() <= 4096, "patch_size", "must leave at most 4096 patches (64 x 64)")?;
        // In f64: sizes read from a file may overflow any product of integers.
        let layers = |width: f64, depth: usize| depth as f64 * (4.0 + 2.0 * self.mlp_ratio) * width * width;
        let (d, dd) = (self.embed_dim as f64, self.decoder_embed_dim as f64);
        let patch_dim = (self.patch_size as f64).powi(2) * self.in_channels as f64;
        let parameters = layers(d, self.depth)
            + layers(dd, self.decoder_depth)
            + (patch_dim + self.num_patches() as f64 + 1.0) * (d + dd)
            + d * dd;
        super::check_parameter_count(parameters, "embed_dim")
    }
}

/// The ViT encoder: patch embedding, CLS token, fixed positions, blocks, norm.
#[derive(Debug, Clone)]
pub struct Encoder {
    cfg: MaeConfig,
    patch_embed: Linear,
    cls_token: Tensor,
    pos_embed: Tensor,
    blocks: Vec<Block>,
    norm: LayerNorm,
}

impl Encoder {
    /// Build (or load) the encoder under `vb` (keys `patch_embed.*`, `cls_token`, `blocks.i.*`, `norm.*`).
    pub fn new(cfg: &MaeConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.embed_dim;
        let pos = sincos_pos_embed(d, cfg.grid());
        Ok(Encoder {
            patch_embed: Linear::new(cfg.patch_dim(), d, vb.pp("patch_embed"))?,
            cls_token: vb.get_with_hints((1, 1, d), "cls_token", TOKEN_INIT)?,
            pos_embed: Tensor::from_vec(pos, (1, cfg.num_patches() + 1, d), vb.device())?,
            blocks: (0..cfg.depth)
                .map(|i| Block::new(d, cfg.num_heads, cfg.mlp_ratio, cfg.layer_norm_eps, vb.pp("blocks").pp(i)))
                .collect::<Result<_>>()?,
            norm: LayerNorm::new(d, cfg.layer_norm_eps, vb.pp("norm"))?,
            cfg: cfg.clone(),
        })
    }

    /// Embed patches `[B, L, p*p*C]` and add their positions: `[B, L, D]`.
    fn embed(&self, patches: &Tensor) -> Result<Tensor> {
        let l = self.cfg.num_patches();
        self.patch_embed.forward(patches)?.broadcast_add(&self.pos_embed.narrow(1, 1, l)?)
    }

    /// Embed the patches `[B, K, p*p*C]` that sit at patch positions `ids: [B, K]`
    /// and add those positions: `[B, K, D]`, the rows of [`Self::embed`] at `ids`.
    fn embed_at(&self, patches: &Tensor, ids: &Tensor) -> Result<Tensor> {
        let (b, k) = ids.dims2()?;
        let (l, d) = (self.cfg.num_patches(), self.cfg.embed_dim);
        let table = self.pos_embed.narrow(1, 1, l)?.reshape((l, d))?;
        let positions = table.index_select(&ids.flatten_all()?, 0)?.reshape((b, k, d))?;
        self.patch_embed.forward(patches)? + positions
    }

    /// Prepend the CLS token and run the blocks: `[B, K, D]` -> `[B, 1 + K, D]`.
    fn run(&self, tokens: &Tensor) -> Result<Tensor> {
        let b = tokens.dim(0)?;
        let cls = self.cls_token.broadcast_add(&self.pos_embed.narrow(1, 0, 1)?)?;
        let mut x = Tensor::cat(&[&cls.broadcast_as((b, 1, self.cfg.embed_dim))?, tokens], 1)?;
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        self.norm.forward(&x)
    }

    /// The device the weights live on (inputs must be there too).
    pub fn device(&self) -> &Device {
        self.cls_token.device()
    }

    /// Encode whole images `[B, C, H, W]` (no masking): `[B, 1 + L, D]`.
    pub fn forward(&self, imgs: &Tensor) -> Result<Tensor> {
        self.run(&self.embed(&patchify(&self.cfg, imgs)?)?)
    }
}

/// The light decoder: embed, mask tokens, fixed positions, blocks, norm, pixels.
#[derive(Debug, Clone)]
struct Decoder {
    embed: Linear,
    mask_token: Tensor,
    pos_embed: Tensor,
    blocks: Vec<Block>,
    norm: LayerNorm,
    pred: Linear,
}

impl Decoder {
    fn new(cfg: &MaeConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.decoder_embed_dim;
        let pos = sincos_pos_embed(d, cfg.grid());
        Ok(Decoder {
            embed: Linear::new(cfg.embed_dim, d, vb.pp("embed"))?,
            mask_token: vb.get_with_hints((1, 1, d), "mask_token", TOKEN_INIT)?,
            pos_embed: Tensor::from_vec(pos, (1, cfg.num_patches() + 1, d), vb.device())?,
            blocks: (0..cfg.decoder_depth)
                .map(|i| Block::new(d, cfg.decoder_num_heads, cfg.mlp_ratio, cfg.layer_norm_eps, vb.pp("blocks").pp(i)))
                .collect::<Result<_>>()?,
            norm: LayerNorm::new(d, cfg.layer_norm_eps, vb.pp("norm"))?,
            pred: Linear::new(d, cfg.patch_dim(), vb.pp("pred"))?,
        })
    }
}

/// MAE's token initialisation: normal, std 0.02.
const TOKEN_INIT: Init = Init::Randn { mean: 0.0, stdev: 0.02 };

/// What [`Mae::forward`] returns.
#[derive(Debug, Clone)]
pub struct MaeOutput {
    /// Mean squared error on the masked patches (a scalar).
    pub loss: Tensor,
    /// Predicted patches `[B, L, p*p*C]`.
    pub pred: Tensor,
    /// `[B, L]`, 1 = removed, 0 = kept.
    pub mask: Tensor,
}

/// The masked autoencoder (checkpoint keys `encoder.*` and `decoder.*`).
#[derive(Debug, Clone)]
pub struct Mae {
    cfg: MaeConfig,
    /// The encoder, shared with the fine-tuned models.
    pub encoder: Encoder,
    decoder: Decoder,
}

/// `[B, C, H, W]` -> `[B, L, p*p*C]`, patches in row-major order, each flattened
/// as `(p, p, C)`.
pub fn patchify(cfg: &MaeConfig, imgs: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = imgs.dims4()?;
    if c != cfg.in_channels || h != cfg.image_size || w != cfg.image_size {
        candle_core::bail!(
            "images are [{b}, {c}, {h}, {w}], the model takes [B, {}, {}, {}]",
            cfg.in_channels,
            cfg.image_size,
            cfg.image_size
        );
    }
    let (p, g) = (cfg.patch_size, cfg.grid());
    imgs.reshape((b, c, g, p, g, p))?.permute((0, 2, 4, 3, 5, 1))?.reshape((b, g * g, p * p * c))
}

/// `[B, L, p*p*C]` -> `[B, C, H, W]`, the inverse of [`patchify`].
pub fn unpatchify(cfg: &MaeConfig, patches: &Tensor) -> Result<Tensor> {
    let (b, _, _) = patches.dims3()?;
    let (p, g, c) = (cfg.patch_size, cfg.grid(), cfg.in_channels);
    patches.reshape((b, g, g, p, p, c))?.permute((0, 5, 1, 3, 2, 4))?.reshape((b, c, g * p, g * p))
}

/// Rows `ids[b, i]` of each image's tokens: `[B, K, D]` from `x: [B, L, D]`
/// and `ids: [B, K]` (u32). One `index_select` of whole rows of the flattened
/// batch: `gather` with the index broadcast over `D` reads an index per element
/// and its backward scatters per element (the MAE decoder's unshuffle was 18 ms
/// of a batch-64 step on the CPU, more than one of its blocks' LayerNorms, GELU
/// and softmax together).
fn gather_rows(x: &Tensor, ids: &Tensor) -> Result<Tensor> {
    let (b, l, d) = x.dims3()?;
    let k = ids.dim(1)?;
    let first_rows = Tensor::arange_step(0u32, (b * l) as u32, l as u32, x.device())?.reshape((b, 1))?;
    let rows = first_rows.broadcast_add(ids)?.flatten_all()?;
    x.reshape((b * l, d))?.index_select(&rows, 0)?.reshape((b, k, d))
}

/// The decoder's tokens in patch order, `[B, 1 + L, D]`: each image's CLS row
/// of `x: [B, 1 + K, D]` (CLS, then the kept patches in kept order), then for
/// every patch its kept row or, where it was removed, `mask_token: [1, 1, D]`;
/// `ids_restore: [B, L]` gives each patch's place in the kept-first order.
///
/// One `index_select` from a table of the latent rows and the mask token, so
/// the backward pass is one `index_add` into that table (the mask token's
/// gradient summed there): built from a broadcast mask-token tensor, a `cat`
/// and a gather, the backward passes of those moved the whole `[B, L, D]`
/// gradient several times and were most of the 45 ms candle spent between the
/// decoder's blocks and the encoder's in a batch-64 step.
fn with_mask_tokens(x: &Tensor, mask_token: &Tensor, ids_restore: &Tensor) -> Result<Tensor> {
    let (b, k1, d) = x.dims3()?;
    let l = ids_restore.dim(1)?;
    let dev = x.device();
    let mask_row = (b * k1) as u32;
    let table = Tensor::cat(&[&x.reshape((b * k1, d))?, &mask_token.reshape((1, d))?], 0)?;
    let cls_rows = Tensor::arange_step(0u32, mask_row, k1 as u32, dev)?.reshape((b, 1))?;
    let first_kept_rows = Tensor::arange_step(1u32, mask_row + 1, k1 as u32, dev)?.reshape((b, 1))?;
    let kept_rows = first_kept_rows.broadcast_add(ids_restore)?;
    let mask_rows = Tensor::full(mask_row, (b, l), dev)?;
    let patch_rows = ids_restore.lt((k1 - 1) as u32)?.where_cond(&kept_rows, &mask_rows)?;
    let rows = Tensor::cat(&[&cls_rows, &patch_rows], 1)?.flatten_all()?;
    table.index_select(&rows, 0)?.reshape((b, 1 + l, d))
}

/// Per-sample random masking by sorting noise: the `len_keep` patches with the
/// smallest noise are kept. Returns `(kept [B, K, D], mask [B, L], ids_restore [B, L])`.
pub fn random_masking(x: &Tensor, noise: &Tensor, len_keep: usize) -> Result<(Tensor, Tensor, Tensor)> {
    let (ids_keep, mask, ids_restore) = masking_order(noise, len_keep)?;
    Ok((gather_rows(x, &ids_keep)?, mask, ids_restore))
}

/// The index side of [`random_masking`]: `(ids_keep [B, K], mask [B, L], ids_restore [B, L])`.
fn masking_order(noise: &Tensor, len_keep: usize) -> Result<(Tensor, Tensor, Tensor)> {
    let (b, l) = noise.dims2()?;
    let ids_shuffle = noise.arg_sort_last_dim(true)?;
    let ids_restore = ids_shuffle.arg_sort_last_dim(true)?;
    let ids_keep = ids_shuffle.narrow(1, 0, len_keep)?.contiguous()?;
    // 0 for the first len_keep (kept) positions of the shuffled order, then unshuffle.
    let shuffled = Tensor::cat(
        &[
            Tensor::zeros((b, len_keep), DType::F32, noise.device())?,
            Tensor::ones((b, l - len_keep), DType::F32, noise.device())?,
        ],
        1,
    )?;
    let mask = shuffled.gather(&ids_restore, 1)?;
    Ok((ids_keep, mask, ids_restore))
}

impl Mae {
    /// Build (or load) the model under `vb`.
    pub fn new(cfg: &MaeConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Mae {
            encoder: Encoder::new(cfg, vb.pp("encoder"))?,
            decoder: Decoder::new(cfg, vb.pp("decoder"))?,
            cfg: cfg.clone(),
        })
    }

    /// The model's config.
    pub fn config(&self) -> &MaeConfig {
        &self.cfg
    }

    /// Encode the visible patches. `noise` `[B, L]` decides the mask (see
    /// [`random_masking`]). Returns `(latent [B, 1 + K, D], mask, ids_restore)`.
    pub fn forward_encoder(&self, imgs: &Tensor, mask_ratio: f64, noise: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let l = self.cfg.num_patches();
        let len_keep = ((l as f64) * (1.0 - mask_ratio)) as usize;
        // Only the kept patches are embedded (the reference embeds all and then
        // drops most: at mask 0.9 that is ten times the rows, forward and back).
        let (ids_keep, mask, ids_restore) = masking_order(noise, len_keep.max(1))?;
        let kept = gather_rows(&patchify(&self.cfg, imgs)?, &ids_keep)?;
        Ok((self.encoder.run(&self.encoder.embed_at(&kept, &ids_keep)?)?, mask, ids_restore))
    }

    /// Predict every patch from the latent: `[B, 1 + K, D]` -> `[B, L, p*p*C]`.
    pub fn forward_decoder(&self, latent: &Tensor, ids_restore: &Tensor) -> Result<Tensor> {
        let dec = &self.decoder;
        let x = dec.embed.forward(latent)?;
        let mut x = with_mask_tokens(&x, &dec.mask_token, ids_restore)?.broadcast_add(&dec.pos_embed)?;
        for block in &dec.blocks {
            x = block.forward(&x)?;
        }
        let pred = dec.pred.forward(&dec.norm.forward(&x)?)?;
        pred.narrow(1, 1, self.cfg.num_patches())
    }

    /// Mean squared error over the removed patches only.
    pub fn forward_loss(&self, imgs: &Tensor, pred: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let mut target = patchify(&self.cfg, imgs)?;
        if self.cfg.norm_pix_loss {
            let mean = target.mean_keepdim(D::Minus1)?;
            let centered = target.broadcast_sub(&mean)?;
            let n = target.dim(D::Minus1)? as f64;
            // Unbiased variance, as torch.var in the reference implementation.
            let var = (centered.sqr()?.sum_keepdim(D::Minus1)? / (n - 1.0))?;
            target = centered.broadcast_div(&(var + 1e-6)?.sqrt()?)?;
        }
        let per_patch = (pred - target)?.sqr()?.mean(D::Minus1)?;
        (per_patch * mask)?.sum_all()? / mask.sum_all()?.to_scalar::<f32>()? as f64
    }

    /// The whole MAE step: encode visible patches, decode all, loss on removed ones.
    pub fn forward(&self, imgs: &Tensor, mask_ratio: f64, noise: &Tensor) -> Result<MaeOutput> {
        let (latent, mask, ids_restore) = self.forward_encoder(imgs, mask_ratio, noise)?;
        let pred = self.forward_decoder(&latent, &ids_restore)?;
        let loss = self.forward_loss(imgs, &pred, &mask)?;
        Ok(MaeOutput { loss, pred, mask })
    }
}

/// Uniform noise `[B, L]` for [`random_masking`] from a seeded generator
/// (candle's own CPU generator cannot be seeded).
pub fn masking_noise(rng: &mut impl Rng, batch: usize, num_patches: usize, device: &Device) -> Result<Tensor> {
    let values: Vec<f32> = (0..batch * num_patches).map(|_| rng.random::<f32>()).collect();
    Tensor::from_vec(values, (batch, num_patches), device)
}

/// How the classifier turns tokens into one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// The CLS token (the paper's choice).
    Cls,
    /// The mean of the patch tokens.
    Mean,
    /// All patch tokens side by side (`[B, L*D]`): the head then has weights of
    /// its own for every position. Recipes with a fixed lens put the ring in the
    /// same pixels of every image, and there what tells the classes apart is where
    /// a perturbation sits: a linear model on standardised pixels separates the
    /// DeepLense classes (RESULTS.md), which a CLS token or a mean can only
    /// approximate through attention.
    Flatten,
}

impl Pooling {
    /// Width of the pooled feature vector.
    pub fn feature_width(self, cfg: &MaeConfig) -> usize {
        match self {
            Pooling::Cls | Pooling::Mean => cfg.embed_dim,
            Pooling::Flatten => cfg.num_patches() * cfg.embed_dim,
        }
    }
}

/// Encoder plus a linear head (keys `encoder.*`, `head.*`).
#[derive(Debug, Clone)]
pub struct VitClassifier {
    /// The encoder, loadable from an MAE checkpoint.
    pub encoder: Encoder,
    head: Linear,
    pooling: Pooling,
    dropout: f32,
}

impl VitClassifier {
    /// Build (or load) a classifier with `num_classes` outputs.
    pub fn new(cfg: &MaeConfig, num_classes: usize, pooling: Pooling, dropout: f32, vb: VarBuilder) -> Result<Self> {
        Ok(VitClassifier {
            encoder: Encoder::new(cfg, vb.pp("encoder"))?,
            head: Linear::new(pooling.feature_width(cfg), num_classes, vb.pp("head"))?,
            pooling,
            dropout,
        })
    }

    /// Pooled encoder features `[B, D]`; with `dropout_seed` (training) the
    /// dropout mask is drawn from that seed, so a run repeats exactly (candle's own
    /// dropout draws from an unseeded generator).
    pub fn features(&self, imgs: &Tensor, dropout_seed: Option<u64>) -> Result<Tensor> {
        let tokens = self.encoder.forward(imgs)?;
        let pooled = match self.pooling {
            Pooling::Cls => tokens.i((.., 0))?,
            Pooling::Mean => tokens.narrow(1, 1, tokens.dim(1)? - 1)?.mean(1)?,
            Pooling::Flatten => tokens.narrow(1, 1, tokens.dim(1)? - 1)?.flatten_from(1)?,
        };
        match dropout_seed {
            Some(seed) if self.dropout > 0.0 => {
                let p = self.dropout;
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
                let keep = 1.0 / (1.0 - p);
                let mask: Vec<f32> =
                    (0..pooled.elem_count()).map(|_| if rng.random::<f32>() >= p { keep } else { 0.0 }).collect();
                pooled.mul(&Tensor::from_vec(mask, pooled.shape(), pooled.device())?)
            }
            _ => Ok(pooled),
        }
    }

    /// Class logits from pooled features.
    pub fn head(&self, features: &Tensor) -> Result<Tensor> {
        self.head.forward(features)
    }

    /// Class logits `[B, num_classes]`; `dropout_seed` (training) switches dropout
    /// on the pooled features.
    pub fn forward(&self, imgs: &Tensor, dropout_seed: Option<u64>) -> Result<Tensor> {
        self.head(&self.features(imgs, dropout_seed)?)
    }

    /// Class logits `[B, num_classes]` and, from the same encoder pass, the features
    /// its domain model describes (`[B, 2 D]`: the CLS token beside the mean of the
    /// patch tokens, whatever the head pools), at inference (no dropout).
    pub fn logits_and_domain_features(&self, imgs: &Tensor) -> Result<(Tensor, Tensor)> {
        let tokens = self.encoder.forward(imgs)?;
        let patches = tokens.narrow(1, 1, tokens.dim(1)? - 1)?;
        let pooled = match self.pooling {
            Pooling::Cls => tokens.i((.., 0))?,
            Pooling::Mean => patches.mean(1)?,
            Pooling::Flatten => patches.flatten_from(1)?,
        };
        let domain = Tensor::cat(&[tokens.i((.., 0))?, patches.mean(1)?], 1)?;
        Ok((self.head(&pooled)?, domain))
    }
}

/// Give every variable of `varmap` its initial value from a generator seeded with
/// `seed`, following each variable's role (named by its key): norm weights and
/// running variances 1, biases and running means 0, CLS/mask tokens N(0, 0.02),
/// linear weights xavier-uniform, convolution weights uniform within
/// 1/sqrt(fan_in). Variables are visited in sorted key order, so the result
/// depends only on the seed.
pub fn init_weights(varmap: &VarMap, seed: u64) -> Result<()> {
    let data = varmap.data().lock().expect("the VarMap lock is not poisoned");
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        let n: usize = dims.iter().product();
        let values: Vec<f32> = if name.ends_with("cls_token") || name.ends_with("mask_token") {
            (0..n).map(|_| 0.02 * rng.sample::<f32, _>(StandardNormal)).collect()
        } else if name.ends_with(".bias") || name.ends_with(".running_mean") {
            vec![0.0; n]
        } else if name.ends_with(".running_var") || (dims.len() == 1 && name.ends_with(".weight")) {
            // Norm scales (LayerNorm, batch normalisation) and a batch's variance start at one.
            vec![1.0; n]
        } else if name.ends_with(".weight") && dims.len() == 2 {
            let bound = (6.0 / (dims[0] + dims[1]) as f64).sqrt() as f32;
            (0..n).map(|_| rng.random_range(-bound..bound)).collect()
        } else if name.ends_with(".weight") && dims.len() == 4 {
            // Convolutions: PyTorch's default, uniform within 1/sqrt(fan_in).
            let bound = (1.0 / (dims[1] * dims[2] * dims[3]) as f64).sqrt() as f32;
            (0..n).map(|_| rng.random_range(-bound..bound)).collect()
        } else {
            candle_core::bail!("no initialisation rule for variable `{name}`")
        };
        var.set(&Tensor::from_vec(values, dims, var.device())?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fused::{with_kernels, Kernels};
    use candle_core::backprop::GradStore;
    use candle_nn::{AdamW, Optimizer, ParamsAdamW};

    fn build<T>(seed: u64, make: impl FnOnce(VarBuilder) -> Result<T>) -> (VarMap, T) {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let model = make(vb).unwrap();
        init_weights(&varmap, seed).unwrap();
        (varmap, model)
    }

    fn images(n: usize, size: usize, seed: u64) -> Tensor {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let v: Vec<f32> = (0..n * size * size).map(|_| rng.random::<f32>()).collect();
        Tensor::from_vec(v, (n, 1, size, size), &Device::Cpu).unwrap()
    }

    fn assert_every_var_has_a_gradient(varmap: &VarMap, grads: &GradStore) {
        let data = varmap.data().lock().unwrap();
        for (name, var) in data.iter() {
            let g = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("no gradient for {name}"));
            let v: Vec<f32> = g.flatten_all().unwrap().to_vec1().unwrap();
            assert!(v.iter().all(|x| x.is_finite()), "non-finite gradient for {name}");
            assert!(v.iter().any(|x| *x != 0.0), "zero gradient for {name}");
        }
    }

    #[test]
    fn patchify_and_unpatchify_are_inverse_and_patches_are_row_major() {
        let cfg = MaeConfig::tiny_16();
        let imgs = images(2, 16, 1);
        let p = patchify(&cfg, &imgs).unwrap();
        assert_eq!(p.dims(), &[2, 16, 16]);
        // Patch 1 is the second 4x4 block of the first block row.
        let want: Vec<f32> = imgs.i((0, 0, 0, 4..8)).unwrap().to_vec1().unwrap();
        let got: Vec<f32> = p.i((0, 1, 0..4)).unwrap().to_vec1().unwrap();
        assert_eq!(got, want);
        let back = unpatchify(&cfg, &p).unwrap();
        let diff: f32 = (back - &imgs).unwrap().abs().unwrap().sum_all().unwrap().to_scalar().unwrap();
        assert_eq!(diff, 0.0);
        assert!(patchify(&cfg, &images(1, 12, 0)).is_err());
    }

    #[test]
    fn mask_tokens_fill_the_removed_patches_as_the_gather_formulation_does() {
        // The reference is the MAE paper's code: the mask token broadcast over the
        // removed patches, appended to the kept ones, gathered back into patch order.
        let dev = Device::Cpu;
        let (b, l, kept, d) = (3, 10, 4, 5);
        let x = candle_core::Var::from_tensor(&Tensor::randn(0f32, 1.0, (b, 1 + kept, d), &dev).unwrap()).unwrap();
        let token = candle_core::Var::from_tensor(&Tensor::randn(0f32, 1.0, (1, 1, d), &dev).unwrap()).unwrap();
        let noise = masking_noise(&mut rand_chacha::ChaCha8Rng::seed_from_u64(7), b, l, &dev).unwrap();
        let ids_restore = noise.arg_sort_last_dim(true).unwrap().arg_sort_last_dim(true).unwrap();
        let fast = with_mask_tokens(&x, &token, &ids_restore).unwrap();
        let reference = {
            let shuffled =
                Tensor::cat(&[&x.narrow(1, 1, kept).unwrap(), &token.broadcast_as((b, l - kept, d)).unwrap()], 1)
                    .unwrap();
            let index = ids_restore.unsqueeze(2).unwrap().broadcast_as((b, l, d)).unwrap().contiguous().unwrap();
            Tensor::cat(&[&x.narrow(1, 0, 1).unwrap(), &shuffled.contiguous().unwrap().gather(&index, 1).unwrap()], 1)
                .unwrap()
        };
        assert_eq!(fast.to_vec3::<f32>().unwrap(), reference.to_vec3::<f32>().unwrap());
        // Gradients under a random weighting of the output.
        let weighting = Tensor::randn(0f32, 1.0, (b, 1 + l, d), &dev).unwrap();
        let grads = |t: &Tensor| (t * &weighting).unwrap().sum_all().unwrap().backward().unwrap();
        let (fast_grads, reference_grads) = (grads(&fast), grads(&reference));
        for var in [&x, &token] {
            let (a, r) = (fast_grads.get(var).unwrap(), reference_grads.get(var).unwrap());
            let diff: f32 = (a - r).unwrap().abs().unwrap().max_all().unwrap().to_scalar().unwrap();
            let scale: f32 = r.abs().unwrap().max_all().unwrap().to_scalar().unwrap();
            assert!(diff <= 1e-5 * scale, "gradients differ by {diff} (largest {scale})");
        }
    }

    #[test]
    fn embedding_the_kept_patches_gives_the_kept_rows_of_embedding_all() {
        let cfg = MaeConfig::tiny_16();
        let (_, encoder) = build(2, |vb| Encoder::new(&cfg, vb));
        let patches = patchify(&cfg, &images(3, 16, 8)).unwrap();
        let noise =
            masking_noise(&mut rand_chacha::ChaCha8Rng::seed_from_u64(9), 3, cfg.num_patches(), &Device::Cpu).unwrap();
        let (ids_keep, _, _) = masking_order(&noise, 5).unwrap();
        let all_then_kept = gather_rows(&encoder.embed(&patches).unwrap(), &ids_keep).unwrap();
        let kept_only = encoder.embed_at(&gather_rows(&patches, &ids_keep).unwrap(), &ids_keep).unwrap();
        let diff: f32 = (all_then_kept - kept_only).unwrap().abs().unwrap().max_all().unwrap().to_scalar().unwrap();
        assert!(diff <= 1e-6, "largest difference {diff}");
    }

    #[test]
    fn masking_keeps_the_lowest_noise_patches() {
        let x = Tensor::arange(0f32, 12.0, &Device::Cpu).unwrap().reshape((1, 6, 2)).unwrap();
        let noise = Tensor::new(&[[0.9f32, 0.1, 0.5, 0.3, 0.8, 0.2]], &Device::Cpu).unwrap();
        let (kept, mask, _) = random_masking(&x, &noise, 2).unwrap();
        assert_eq!(kept.to_vec3::<f32>().unwrap(), vec![vec![vec![2.0, 3.0], vec![10.0, 11.0]]]);
        assert_eq!(mask.to_vec2::<f32>().unwrap(), vec![vec![1.0, 0.0, 1.0, 1.0, 1.0, 0.0]]);
    }

    #[test]
    fn every_trainable_tensor_of_the_mae_gets_a_gradient() {
        let cfg = MaeConfig::tiny_16();
        let (varmap, mae) = build(3, |vb| Mae::new(&cfg, vb));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let noise = masking_noise(&mut rng, 3, cfg.num_patches(), &Device::Cpu).unwrap();
        for kernels in [Kernels::Fused, Kernels::Composed] {
            let out = with_kernels(kernels, || mae.forward(&images(3, 16, 5), 0.75, &noise)).unwrap();
            assert_eq!(out.mask.sum_all().unwrap().to_scalar::<f32>().unwrap(), 3.0 * 12.0);
            assert_every_var_has_a_gradient(&varmap, &out.loss.backward().unwrap());
        }
    }

    #[test]
    fn every_trainable_tensor_of_the_classifier_gets_a_gradient() {
        let cfg = MaeConfig::tiny_16();
        let labels = Tensor::new(&[0u32, 1, 2, 1], &Device::Cpu).unwrap();
        for pooling in [Pooling::Cls, Pooling::Mean, Pooling::Flatten] {
            let (varmap, model) = build(3, |vb| VitClassifier::new(&cfg, 3, pooling, 0.0, vb));
            let head = varmap.data().lock().unwrap()["head.weight"].dims().to_vec();
            let width = if pooling == Pooling::Flatten { cfg.num_patches() * cfg.embed_dim } else { cfg.embed_dim };
            assert_eq!(head, [3, width], "{pooling:?}");
            for kernels in [Kernels::Fused, Kernels::Composed] {
                let logits = with_kernels(kernels, || model.forward(&images(4, 16, 6), Some(1))).unwrap();
                let loss = candle_nn::loss::cross_entropy(&logits, &labels).unwrap();
                // The classifier's encoder has no decoder and no mask token.
                assert_every_var_has_a_gradient(&varmap, &loss.backward().unwrap());
            }
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_weights() {
        let cfg = MaeConfig::tiny_16();
        let (a, _) = build(7, |vb| Mae::new(&cfg, vb));
        let (b, _) = build(7, |vb| Mae::new(&cfg, vb));
        let (c, _) = build(8, |vb| Mae::new(&cfg, vb));
        let get = |m: &VarMap| -> Vec<f32> {
            m.data().lock().unwrap()["encoder.blocks.0.attn.qkv.weight"].flatten_all().unwrap().to_vec1().unwrap()
        };
        assert_eq!(get(&a), get(&b));
        assert_ne!(get(&a), get(&c));
    }

    #[test]
    fn a_small_classifier_overfits_a_small_batch() {
        let cfg = MaeConfig::tiny_16();
        let (varmap, model) = build(11, |vb| VitClassifier::new(&cfg, 2, Pooling::Cls, 0.0, vb));
        let imgs = images(8, 16, 12);
        let labels = Tensor::new(&[0u32, 1, 0, 1, 1, 0, 0, 1], &Device::Cpu).unwrap();
        let mut opt =
            AdamW::new(varmap.all_vars(), ParamsAdamW { lr: 3e-3, weight_decay: 0.0, ..Default::default() }).unwrap();
        let mut last = f32::INFINITY;
        for _ in 0..60 {
            let loss = candle_nn::loss::cross_entropy(&model.forward(&imgs, Some(1)).unwrap(), &labels).unwrap();
            last = loss.to_scalar::<f32>().unwrap();
            opt.backward_step(&loss).unwrap();
        }
        assert!(last < 0.05, "loss after 60 steps: {last}");
    }
}
