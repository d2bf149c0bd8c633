//! AdamW with decoupled weight decay that skips biases, norms and tokens (MAE's
//! recipe), global-norm gradient clipping, and a state that can be saved for
//! `--resume`. candle's own AdamW decays every tensor and keeps its moments private.

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};
use std::collections::HashMap;

/// One trainable tensor with its moments.
struct Slot {
    name: String,
    var: Var,
    decay: bool,
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

impl AdamW {
    /// An optimiser over `vars` (name, variable), sorted by name so the state
    /// layout is stable.
    pub fn new(mut vars: Vec<(String, Var)>, beta1: f64, beta2: f64, weight_decay: f64) -> Result<AdamW> {
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let slots = vars
            .into_iter()
            .map(|(name, var)| {
                let zeros = var.zeros_like()?;
                Ok(Slot { decay: decays(&name, &var), name, m: zeros.clone(), v: zeros, var })
            })
            .collect::<Result<_>>()?;
        Ok(AdamW { slots, step: 0, beta1, beta2, eps: 1e-8, weight_decay })
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
        for s in &mut self.slots {
            let Some(g) = grads.get(s.var.as_tensor()) else { continue };
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

    /// The moments, keyed `m.<name>` / `v.<name>`, for saving.
    pub fn state(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for s in &self.slots {
            out.insert(format!("m.{}", s.name), s.m.clone());
            out.insert(format!("v.{}", s.name), s.v.clone());
        }
        out
    }

    /// Restore moments saved by [`Self::state`] and the step count.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>, step: usize) -> Result<()> {
        for s in &mut self.slots {
            match (state.get(&format!("m.{}", s.name)), state.get(&format!("v.{}", s.name))) {
                (Some(m), Some(v)) => {
                    s.m = m.clone();
                    s.v = v.clone();
                }
                _ => candle_core::bail!("the saved optimiser state has no moments for `{}`", s.name),
            }
        }
        self.step = step;
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
    use candle_core::Device;

    #[test]
    fn the_schedule_warms_up_then_decays_to_the_floor() {
        assert!((warmup_cosine(0, 100, 10, 1.0, 0.0) - 0.1).abs() < 1e-12);
        assert!((warmup_cosine(9, 100, 10, 1.0, 0.0) - 1.0).abs() < 1e-12);
        assert!((warmup_cosine(55, 100, 10, 1.0, 0.0) - 0.5).abs() < 1e-12);
        assert!((warmup_cosine(100, 100, 10, 1.0, 0.1) - 0.1).abs() < 1e-12);
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
