//! lensmae's model against its PyTorch twin (tests/oracle/mae_twin.py): the same
//! weights and inputs must give the same MAE loss, predictions, mask and logits.

use crate::fixture;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use lensmae::model::fused::{with_kernels, Kernels};
use lensmae::model::mae::Pooling;
use lensmae::model::{Mae, MaeConfig, VitClassifier};

fn relative_difference(a: &Tensor, b: &Tensor) -> f32 {
    let diff: f32 = (a - b).unwrap().sqr().unwrap().sum_all().unwrap().sqrt().unwrap().to_scalar().unwrap();
    let norm: f32 = b.sqr().unwrap().sum_all().unwrap().sqrt().unwrap().to_scalar().unwrap();
    diff / norm
}

#[test]
fn mae_and_classifier_match_the_pytorch_twin() {
    // Both kernel sets: the fused CPU kernels and the composed reference ops.
    for kernels in [Kernels::Fused, Kernels::Composed] {
        with_kernels(kernels, match_the_twin);
    }
}

fn match_the_twin() {
    let dev = Device::Cpu;
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("model/twin_config.json")).unwrap()).unwrap();
    let mut cfg: MaeConfig = serde_json::from_value(meta["config"].clone()).unwrap();
    let weights = candle_core::safetensors::load(fixture("model/twin_weights.safetensors"), &dev).unwrap();
    let io = candle_core::safetensors::load(fixture("model/twin_io.safetensors"), &dev).unwrap();
    let vb = VarBuilder::from_tensors(weights, DType::F32, &dev);
    let mask_ratio = meta["mask_ratio"].as_f64().unwrap();

    let mae = Mae::new(&cfg, vb.clone()).unwrap();
    let out = mae.forward(&io["images"], mask_ratio, &io["noise"]).unwrap();
    assert_eq!(out.mask.to_vec2::<f32>().unwrap(), io["mask"].to_vec2::<f32>().unwrap());
    let pred_diff = relative_difference(&out.pred, &io["pred"]);
    assert!(pred_diff <= 1e-4, "predictions differ by {pred_diff:e}");
    let loss_diff = relative_difference(&out.loss.reshape(1).unwrap(), &io["loss"]);
    assert!(loss_diff <= 1e-4, "loss differs by {loss_diff:e}");

    cfg.norm_pix_loss = true;
    let mae = Mae::new(&cfg, vb.clone()).unwrap();
    let out = mae.forward(&io["images"], mask_ratio, &io["noise"]).unwrap();
    let loss_diff = relative_difference(&out.loss.reshape(1).unwrap(), &io["loss_norm_pix"]);
    assert!(loss_diff <= 1e-4, "norm-pix loss differs by {loss_diff:e}");

    let num_classes = meta["num_classes"].as_u64().unwrap() as usize;
    let classifier = VitClassifier::new(&cfg, num_classes, Pooling::Cls, 0.0, vb).unwrap();
    let logits = classifier.forward(&io["images"], None).unwrap();
    let logit_diff = relative_difference(&logits, &io["logits"]);
    assert!(logit_diff <= 1e-4, "logits differ by {logit_diff:e}");
    eprintln!("relative differences: pred {pred_diff:e}, logits {logit_diff:e}");
}

#[test]
fn the_superres_model_matches_the_pytorch_twin() {
    use lensmae::model::superres::{SuperResolver, SuperresConfig};
    let dev = Device::Cpu;
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("model/twin_config.json")).unwrap()).unwrap();
    let cfg: MaeConfig = serde_json::from_value(meta["config"].clone()).unwrap();
    let weights = candle_core::safetensors::load(fixture("model/sr_twin_weights.safetensors"), &dev).unwrap();
    let io = candle_core::safetensors::load(fixture("model/sr_twin_io.safetensors"), &dev).unwrap();
    let head = SuperresConfig { factor: 4, channels: 8, residual: false, flux_conserving: false };
    let model = SuperResolver::new(&cfg, &head, VarBuilder::from_tensors(weights, DType::F32, &dev)).unwrap();
    for kernels in [Kernels::Fused, Kernels::Composed] {
        let sr = with_kernels(kernels, || model.forward(&io["lr"])).unwrap();
        let diff = relative_difference(&sr, &io["sr"]);
        assert!(diff <= 1e-4, "{kernels:?}: SR images differ by {diff:e}");
    }
}

#[test]
fn the_resnet_matches_the_pytorch_twin_in_training_and_inference() {
    use candle_nn::VarMap;
    use lensmae::model::resnet::{ResNet, ResNetConfig};
    let dev = Device::Cpu;
    let path = fixture("model/resnet_twin_weights.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let metadata = header.metadata().as_ref().unwrap();
    let cfg: ResNetConfig = serde_json::from_str(&metadata["config"]).unwrap();
    let num_classes: usize = metadata["num_classes"].parse().unwrap();
    let weights = candle_core::safetensors::load(&path, &dev).unwrap();
    let io = candle_core::safetensors::load(fixture("model/resnet_twin_io.safetensors"), &dev).unwrap();
    let labels = io["labels"].to_dtype(DType::U32).unwrap();
    let check = |what: &str, a: &Tensor, b: &Tensor| {
        let diff = relative_difference(a, b);
        assert!(diff <= 1e-4, "{what} differs by {diff:e}");
    };
    for kernels in [Kernels::Fused, Kernels::Composed] {
        // In a map, as in training: the running statistics are updated in place.
        let varmap = VarMap::new();
        let net = ResNet::new(&cfg, num_classes, VarBuilder::from_varmap(&varmap, DType::F32, &dev)).unwrap();
        {
            let vars = varmap.data().lock().unwrap();
            assert_eq!(vars.len(), weights.len(), "the twin's state dict and lensmae's variables");
            for (key, var) in vars.iter() {
                var.set(&weights[key]).unwrap_or_else(|e| panic!("{key}: {e}"));
            }
        }
        with_kernels(kernels, || {
            check("inference logits", &net.forward(&io["images"], false).unwrap(), &io["eval_logits"]);
            let logits = net.forward(&io["images"], true).unwrap();
            check("training logits", &logits, &io["train_logits"]);
            let loss = candle_nn::loss::cross_entropy(&logits, &labels).unwrap();
            check("loss", &loss.reshape(1).unwrap(), &io["loss"]);
            let grads = loss.backward().unwrap();
            for (key, var) in varmap.data().lock().unwrap().iter() {
                if let Some(after) = io.get(&format!("after.{key}")) {
                    check(&format!("{kernels:?}: running statistic {key}"), var.as_tensor(), after);
                } else {
                    let grad = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("{key}: no gradient"));
                    check(&format!("{kernels:?}: gradient of {key}"), grad, &io[&format!("grad.{key}")]);
                }
            }
        });
    }
}
