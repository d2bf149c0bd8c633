//! AdamW with decoupled weight decay that skips biases, norms and tokens (MAE's
//! recipe), global-norm gradient clipping, and a state that can be saved for
//! `--resume`. candle's own AdamW decays every tensor and keeps its moments private.

use crate::model::fused::{contiguous_f32, contiguous_f32_mut};
use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, InplaceOp2, InplaceOp3, Layout, Result, Tensor, Var};
use rayon::prelude::*;
use std::collections::HashMap;

/// One trainable tensor with its moments.
struct Slot {
    name: String,
    var: Var,
    decay: bool,
    /// This tensor's share of the learning rate (layer-wise decay; 1 without).
    lr_scale: f64,
    m: Tensor,
    v: Tensor,
}

/// AdamW over named variables.
pub struct AdamW {
    slots: Vec<Slot>,
    /// Steps taken so far.
    pub step: usize,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
}

/// Whether a variable gets weight decay: only matrices and convolution kernels (not biases, LayerNorm
/// weights, or the CLS/mask tokens).
pub fn decays(name: &str, var: &Var) -> bool {
    var.rank() >= 2 && name.ends_with(".weight") && !name.contains("norm")
}

/// MAE's layer-wise learning-rate decay (from BEiT): for a ViT of `depth` blocks
/// the head and the final norm learn at the full rate, block i (from 0) at
/// `decay^(depth - i)`, the patch embedding and the tokens at `decay^(depth + 1)`,
/// so fine-tuning moves the pretrained early layers least.
pub fn layer_lr_scale(name: &str, depth: usize, decay: f64) -> f64 {
    let layer = match name.strip_prefix("encoder.") {
        Some(rest) if rest.starts_with("patch_embed.") || rest.ends_with("_token") => 0,
        Some(rest) => match rest.strip_prefix("blocks.").and_then(|b| b.split('.').next()?.parse::<usize>().ok()) {
            Some(block) => (block + 1).min(depth + 1),
            None => depth + 1,
        },
        None => depth + 1,
    };
    decay.powi((depth + 1 - layer) as i32)
}

impl AdamW {
    /// An optimiser over `vars` (name, variable), sorted by name so the state
    /// layout is stable.
    pub fn new(mut vars: Vec<(String, Var)>, beta1: f64, beta2: f64, weight_decay: f64) -> Result<AdamW> {
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let slots = vars
            .into_iter()
            .map(|(name, var)| {
                // Two buffers: the moments are updated in place.
                let (m, v) = (var.zeros_like()?, var.zeros_like()?);
                Ok(Slot { decay: decays(&name, &var), lr_scale: 1.0, name, m, v, var })
            })
            .collect::<Result<_>>()?;
        Ok(AdamW { slots, step: 0, beta1, beta2, eps: 1e-8, weight_decay })
    }

    /// Gives each variable `lr_scale(name)` times the learning rate (and of the
    /// weight decay, which AdamW applies per unit of learning rate).
    pub fn scale_learning_rates(&mut self, lr_scale: impl Fn(&str) -> f64) {
        for s in &mut self.slots {
            s.lr_scale = lr_scale(&s.name);
        }
    }

    /// Global L2 norm of the gradients of the optimised variables.
    /// The per-tensor sums stay on the device and are read back once (on a GPU
    /// each read is a synchronisation).
    pub fn grad_norm(&self, grads: &GradStore) -> Result<f64> {
        let sums = self
            .slots
            .iter()
            .filter_map(|s| grads.get(s.var.as_tensor()))
            .map(|g| g.sqr()?.sum_all())
            .collect::<Result<Vec<_>>>()?;
        if sums.is_empty() {
            return Ok(0.0);
        }
        let squares = Tensor::stack(&sums, 0)?.to_vec1::<f32>()?;
        Ok(squares.iter().map(|&v| v as f64).sum::<f64>().sqrt())
    }

    /// One update at learning rate `lr`; gradients are scaled down first when
    /// their global norm exceeds `clip` (with an infinite `clip` the norm is not computed).
    pub fn step(&mut self, grads: &GradStore, lr: f64, clip: f64) -> Result<()> {
        let scale = if clip.is_finite() {
            let norm = self.grad_norm(grads)?;
            if norm.is_finite() && norm > clip {
                clip / norm
            } else {
                1.0
            }
        } else {
            1.0
        };
        self.step += 1;
        let t = self.step as i32;
        let (c1, c2) = (1.0 - self.beta1.powi(t), 1.0 - self.beta2.powi(t));
        let update = |decay: bool, lr: f64| Update {
            scale: scale as f32,
            beta1: self.beta1 as f32,
            one_minus_beta1: (1.0 - self.beta1) as f32,
            beta2: self.beta2 as f32,
            one_minus_beta2: (1.0 - self.beta2) as f32,
            inv_c1: (1.0 / c1) as f32,
            inv_c2: (1.0 / c2) as f32,
            eps: self.eps as f32,
            keep: (decay && self.weight_decay > 0.0).then_some((1.0 - lr * self.weight_decay) as f32),
            lr: lr as f32,
        };
        for s in &mut self.slots {
            let Some(g) = grads.get(s.var.as_tensor()) else { continue };
            let lr = lr * s.lr_scale;
            if in_place_applies(&[s.var.as_tensor(), g, &s.m, &s.v]) {
                let u = update(s.decay, lr);
                s.m.inplace_op2(g, &Moment { first: true, update: &u })?;
                s.v.inplace_op2(g, &Moment { first: false, update: &u })?;
                s.var.as_tensor().inplace_op3(&s.m, &s.v, &u)?;
                continue;
            }
            let g = (g * scale)?;
            s.m = ((&s.m * self.beta1)? + (&g * (1.0 - self.beta1))?)?;
            s.v = ((&s.v * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?;
            let update = ((&s.m / c1)? / ((&s.v / c2)?.sqrt()? + self.eps)?)?;
            let mut w = s.var.as_tensor().clone();
            if s.decay && self.weight_decay > 0.0 {
                w = (&w * (1.0 - lr * self.weight_decay))?;
            }
            s.var.set(&(w - (update * lr)?)?)?;
        }
        Ok(())
    }

    /// The moments, keyed `m.<name>` / `v.<name>`, for saving: copies, since
    /// later steps update the optimiser's own in place.
    pub fn state(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for s in &self.slots {
            for (key, moment) in [("m", &s.m), ("v", &s.v)] {
                out.insert(format!("{key}.{}", s.name), moment.copy().expect("a tensor copies on its own device"));
            }
        }
        out
    }

    /// Restore moments saved by [`Self::state`] and the step count.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>, step: usize) -> Result<()> {
        for s in &mut self.slots {
            match (state.get(&format!("m.{}", s.name)), state.get(&format!("v.{}", s.name))) {
                (Some(m), Some(v)) => {
                    // Copies: the moments are updated in place.
                    s.m = m.copy()?;
                    s.v = v.copy()?;
                }
                _ => candle_core::bail!("the saved optimiser state has no moments for `{}`", s.name),
            }
        }
        self.step = step;
        Ok(())
    }
}

/// One tensor's AdamW update in place, in three passes (first moment, second
/// moment, weights), for contiguous f32 tensors on the CPU with the fused
/// kernels on.
///
/// Why: composed, the update is 13 candle ops per tensor, each a pass over
/// memory into a freshly allocated tensor (~25 ms of a batch-64 MAE step for
/// the paper's 3.1 M parameters). The arithmetic is the composed path's,
/// operation for operation: candle's `affine` is `v * mul + add` with both cast
/// to f32, and its `+ 0.0`s are kept so that even the signs of zeros agree. The
/// results are the same bits, which the tests check.
struct Update {
    scale: f32,
    beta1: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    inv_c1: f32,
    inv_c2: f32,
    eps: f32,
    /// `1 - lr * weight_decay` for decayed tensors.
    keep: Option<f32>,
    lr: f32,
}

/// The first (`m`) or second (`v`) moment's update from the gradient.
struct Moment<'a> {
    first: bool,
    update: &'a Update,
}

/// Values per parallel task of the in-place update.
const UPDATE_CHUNK: usize = 1 << 14;

fn in_place_applies(tensors: &[&Tensor]) -> bool {
    let n = tensors[0].elem_count();
    tensors.iter().all(|t| crate::model::fused::applies_to(t) && t.is_contiguous() && t.elem_count() == n)
}

impl InplaceOp2 for Moment<'_> {
    fn name(&self) -> &'static str {
        "adamw-moment"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<()> {
        let (moment, g) = (contiguous_f32_mut(s1, l1, "adamw")?, contiguous_f32(s2, l2, "adamw")?);
        let k = self.update;
        let first = self.first;
        moment.par_chunks_mut(UPDATE_CHUNK).zip(g.par_chunks(UPDATE_CHUNK)).for_each(|(moment, g)| {
            for (m, &g) in moment.iter_mut().zip(g) {
                let g = g * k.scale + 0.0;
                *m = if first {
                    (*m * k.beta1 + 0.0) + (g * k.one_minus_beta1 + 0.0)
                } else {
                    (*m * k.beta2 + 0.0) + (g * g * k.one_minus_beta2 + 0.0)
                };
            }
        });
        Ok(())
    }
}

impl InplaceOp3 for Update {
    fn name(&self) -> &'static str {
        "adamw-update"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<()> {
        let (w, m, v) =
            (contiguous_f32_mut(s1, l1, "adamw")?, contiguous_f32(s2, l2, "adamw")?, contiguous_f32(s3, l3, "adamw")?);
        let chunks = w.par_chunks_mut(UPDATE_CHUNK).zip(m.par_chunks(UPDATE_CHUNK));
        chunks.zip(v.par_chunks(UPDATE_CHUNK)).for_each(|((w, m), v)| {
            for ((w, &m), &v) in w.iter_mut().zip(m).zip(v) {
                let step = (m * self.inv_c1 + 0.0) / ((v * self.inv_c2 + 0.0).sqrt() * 1.0 + self.eps);
                if let Some(keep) = self.keep {
                    *w = *w * keep + 0.0;
                }
                *w -= step * self.lr + 0.0;
            }
        });
        Ok(())
    }
}

/// Linear warm-up to `base` over `warmup` steps, then half-cycle cosine to `min`.
pub fn warmup_cosine(step: usize, total: usize, warmup: usize, base: f64, min: f64) -> f64 {
    if step < warmup {
        return base * (step + 1) as f64 / warmup as f64;
    }
    let progress = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
    min + (base - min) * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn the_schedule_warms_up_then_decays_to_the_floor() {
        assert!((warmup_cosine(0, 100, 10, 1.0, 0.0) - 0.1).abs() < 1e-12);
        assert!((warmup_cosine(9, 100, 10, 1.0, 0.0) - 1.0).abs() < 1e-12);
        assert!((warmup_cosine(55, 100, 10, 1.0, 0.0) - 0.5).abs() < 1e-12);
        assert!((warmup_cosine(100, 100, 10, 1.0, 0.1) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn the_in_place_update_gives_the_composed_update_bit_for_bit() {
        use crate::model::fused::{with_kernels, Kernels};
        let dev = Device::Cpu;
        let start = [Tensor::randn(0f32, 1.0, (70, 300), &dev).unwrap(), Tensor::randn(0f32, 1.0, 300, &dev).unwrap()];
        let run = |kernels: Kernels| {
            let vars: Vec<Var> = start.iter().map(|t| Var::from_tensor(t).unwrap()).collect();
            let named = vec![("l.weight".to_string(), vars[0].clone()), ("l.bias".to_string(), vars[1].clone())];
            let mut opt = AdamW::new(named, 0.9, 0.999, 0.05).unwrap();
            let mut saved = vec![];
            for step in 0..4 {
                let w = vars[0].as_tensor();
                let loss = ((w.sqr().unwrap().sum_all().unwrap() * 0.5).unwrap()
                    + w.broadcast_mul(vars[1].as_tensor()).unwrap().sin().unwrap().sum_all().unwrap())
                .unwrap();
                // A clipping step (scale below 1) and unclipped ones.
                let clip = if step == 1 { 1.0 } else { f64::INFINITY };
                with_kernels(kernels, || opt.step(&loss.backward().unwrap(), 1e-2, clip)).unwrap();
                if step == 1 {
                    saved = sorted_values(opt.state());
                }
            }
            let mut out: Vec<Vec<f32>> = vars.iter().map(|v| v.flatten_all().unwrap().to_vec1().unwrap()).collect();
            out.extend(sorted_values(opt.state()));
            // The state taken after step 2 is a snapshot, not moved by steps 3 and 4.
            out.extend(saved);
            out
        };
        let (fused, composed) = (run(Kernels::Fused), run(Kernels::Composed));
        let bits = |v: &Vec<Vec<f32>>| v.iter().flatten().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&fused), bits(&composed));
        assert_ne!(fused[0], start[0].flatten_all().unwrap().to_vec1::<f32>().unwrap(), "the weights moved");
    }

    #[test]
    fn layer_decay_scales_each_layer_and_adam_moves_it_by_its_share() {
        let scale = |name: &str| layer_lr_scale(name, 2, 0.5);
        assert_eq!(scale("head.weight"), 1.0);
        assert_eq!(scale("encoder.norm.bias"), 1.0);
        assert_eq!(scale("encoder.blocks.1.mlp.fc1.weight"), 0.5);
        assert_eq!(scale("encoder.blocks.0.attn.qkv.bias"), 0.25);
        assert_eq!(scale("encoder.patch_embed.weight"), 0.125);
        assert_eq!(scale("encoder.cls_token"), 0.125);
        assert_eq!(layer_lr_scale("encoder.blocks.0.norm1.weight", 2, 1.0), 1.0);
        // Adam's first step moves every weight by the learning rate (the sign of its
        // gradient), so each tensor moves by its own share of it, in place and composed.
        for kernels in [crate::model::fused::Kernels::Fused, crate::model::fused::Kernels::Composed] {
            let names = ["head.weight", "encoder.blocks.0.mlp.fc1.weight", "encoder.patch_embed.weight"];
            let vars: Vec<Var> = names.iter().map(|_| Var::ones((4, 8), DType::F32, &Device::Cpu).unwrap()).collect();
            let named = names.iter().map(|n| n.to_string()).zip(vars.iter().cloned()).collect();
            let mut opt = AdamW::new(named, 0.9, 0.999, 0.0).unwrap();
            opt.scale_learning_rates(scale);
            let loss = vars.iter().map(|v| v.as_tensor().sum_all().unwrap()).reduce(|a, b| (a + b).unwrap()).unwrap();
            crate::model::fused::with_kernels(kernels, || opt.step(&loss.backward().unwrap(), 0.1, f64::INFINITY))
                .unwrap();
            for (name, var) in names.iter().zip(&vars) {
                let moved = 1.0 - var.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap()[0] as f64;
                assert!((moved - 0.1 * scale(name)).abs() < 1e-6, "{name}: moved {moved}");
            }
        }
    }

    fn sorted_values(state: HashMap<String, Tensor>) -> Vec<Vec<f32>> {
        let mut state: Vec<_> = state.into_iter().collect();
        state.sort_by(|a, b| a.0.cmp(&b.0));
        state.iter().map(|(_, t)| t.flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect()
    }

    #[test]
    fn adamw_minimises_a_quadratic_and_decays_only_matrices() {
        let w = Var::from_tensor(&Tensor::new(&[[3.0f32, -2.0]], &Device::Cpu).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::new(&[1.5f32], &Device::Cpu).unwrap()).unwrap();
        let mut opt =
            AdamW::new(vec![("l.weight".into(), w.clone()), ("l.bias".into(), b.clone())], 0.9, 0.999, 0.0).unwrap();
        for _ in 0..500 {
            let loss = (w.as_tensor().sqr().unwrap().sum_all().unwrap()
                + b.as_tensor().sqr().unwrap().sum_all().unwrap())
            .unwrap();
            opt.step(&loss.backward().unwrap(), 0.05, f64::INFINITY).unwrap();
        }
        let v: Vec<f32> = w.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        assert!(v.iter().all(|x| x.abs() < 0.05), "{v:?}");
        assert!(decays("encoder.blocks.0.attn.qkv.weight", &w));
        assert!(!decays("encoder.norm.weight", &w) && !decays("l.bias", &b));
    }
}
