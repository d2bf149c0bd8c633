//! Training speed of a ResNet-18 layout of width W on the CPU, built either
//! from candle-nn's own convolutions and batch norms (`candle-nn`) or as
//! lensmae's convolutional classifier (`lensmae`: src/model/resnet.rs, whose
//! convolutions, batch norms and pooling are fused kernels of ours).
//! `cargo run --release --example conv_speed -- [width] [batch] [steps] [candle-nn|lensmae]`
//! prints JSON (images/s of the fastest step); bench/conv_speed.sh runs both
//! beside the same network in PyTorch (bench/resnet18_baseline.py's).
//!
//! In the candle-nn build the stem's 3x3 max pool of stride 2 is a 2x2 pool:
//! candle 0.11 has no backward pass for pooling windows that overlap.
use candle_core::{DType, Device, Module, ModuleT, Result, Tensor, D};
use candle_nn::{
    batch_norm, conv2d_no_bias, linear, BatchNorm, Conv2d, Conv2dConfig, Linear, Optimizer, VarBuilder, VarMap,
};
use std::time::Instant;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn conv_config(stride: usize, padding: usize) -> Conv2dConfig {
    Conv2dConfig { stride, padding, ..Default::default() }
}

struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    down: Option<(Conv2d, BatchNorm)>,
}

impl BasicBlock {
    fn new(cin: usize, cout: usize, stride: usize, vb: VarBuilder) -> Result<Self> {
        let down = if stride != 1 || cin != cout {
            Some((
                conv2d_no_bias(cin, cout, 1, conv_config(stride, 0), vb.pp("down"))?,
                batch_norm(cout, 1e-5, vb.pp("down_bn"))?,
            ))
        } else {
            None
        };
        Ok(Self {
            conv1: conv2d_no_bias(cin, cout, 3, conv_config(stride, 1), vb.pp("conv1"))?,
            bn1: batch_norm(cout, 1e-5, vb.pp("bn1"))?,
            conv2: conv2d_no_bias(cout, cout, 3, conv_config(1, 1), vb.pp("conv2"))?,
            bn2: batch_norm(cout, 1e-5, vb.pp("bn2"))?,
            down,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let out = self.bn1.forward_t(&self.conv1.forward(x)?, true)?.relu()?;
        let out = self.bn2.forward_t(&self.conv2.forward(&out)?, true)?;
        let skip = match &self.down {
            Some((conv, bn)) => bn.forward_t(&conv.forward(x)?, true)?,
            None => x.clone(),
        };
        (out + skip)?.relu()
    }
}

struct ResNet18 {
    stem: Conv2d,
    stem_bn: BatchNorm,
    blocks: Vec<BasicBlock>,
    head: Linear,
}

impl ResNet18 {
    fn new(width: usize, classes: usize, vb: VarBuilder) -> Result<Self> {
        let mut blocks = Vec::new();
        let mut cin = width;
        for (stage, (cout, stride)) in
            [(width, 1), (2 * width, 2), (4 * width, 2), (8 * width, 2)].into_iter().enumerate()
        {
            blocks.push(BasicBlock::new(cin, cout, stride, vb.pp(format!("stage{stage}.0")))?);
            blocks.push(BasicBlock::new(cout, cout, 1, vb.pp(format!("stage{stage}.1")))?);
            cin = cout;
        }
        Ok(Self {
            stem: conv2d_no_bias(1, width, 7, conv_config(2, 3), vb.pp("stem"))?,
            stem_bn: batch_norm(width, 1e-5, vb.pp("stem_bn"))?,
            blocks,
            head: linear(8 * width, classes, vb.pp("head"))?,
        })
    }

    fn forward(&self, images: &Tensor) -> Result<Tensor> {
        let mut x = self.stem_bn.forward_t(&self.stem.forward(images)?, true)?.relu()?.max_pool2d(2)?;
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        self.head.forward(&x.mean(D::Minus1)?.mean(D::Minus1)?)
    }
}

fn main() -> Result<()> {
    let arg = |k: usize, default: usize| std::env::args().nth(k).map_or(default, |s| s.parse().expect("a number"));
    let (width, batch, steps) = (arg(1, 16), arg(2, 64), arg(3, 8));
    let build = std::env::args().nth(4).unwrap_or_else(|| "candle-nn".into());
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let images = Tensor::randn(0f32, 1., (batch, 1, 64, 64), &dev)?;
    let labels = Tensor::new((0..batch as u32).map(|i| i % 3).collect::<Vec<_>>(), &dev)?;
    let mut step_once: Box<dyn FnMut() -> Result<()>> = match build.as_str() {
        "candle-nn" => {
            let model = ResNet18::new(width, 3, vb)?;
            let mut opt = candle_nn::AdamW::new_lr(varmap.all_vars(), 1e-3)?;
            Box::new(move || opt.backward_step(&candle_nn::loss::cross_entropy(&model.forward(&images)?, &labels)?))
        }
        "lensmae" => {
            use lensmae::model::resnet::{is_running_statistic, ResNet, ResNetConfig};
            let model = ResNet::new(&ResNetConfig::resnet18(64, width), 3, vb)?;
            lensmae::model::mae::init_weights(&varmap, 0)?;
            let vars = varmap.data().lock().expect("the VarMap lock is not poisoned").clone();
            let trainable = vars.into_iter().filter(|(name, _)| !is_running_statistic(name)).collect();
            let mut opt = lensmae::train::optim::AdamW::new(trainable, 0.9, 0.999, 0.05)?;
            Box::new(move || {
                let loss = candle_nn::loss::cross_entropy(&model.forward(&images, true)?, &labels)?;
                opt.step(&loss.backward()?, 1e-3, f64::INFINITY)
            })
        }
        other => panic!("build `{other}`: candle-nn or lensmae"),
    };
    let mut best = f64::INFINITY;
    for step in 0..=steps {
        let started = Instant::now();
        step_once()?;
        if step > 0 {
            best = best.min(started.elapsed().as_secs_f64()); // step 0 warms up
        }
    }
    let vars = varmap.data().lock().expect("the VarMap lock is not poisoned");
    let parameters: usize = (vars.iter())
        .filter(|(name, _)| !lensmae::model::resnet::is_running_statistic(name))
        .map(|(_, v)| v.elem_count())
        .sum();
    println!(
        "{{\"framework\": \"{build}\", \"width\": {width}, \"parameters\": {parameters}, \"batch\": {batch}, \"threads\": {}, \"train_images_per_s\": {:.1}}}",
        rayon::current_num_threads(),
        batch as f64 / best
    );
    Ok(())
}
