"""PyTorch twin of lensmae's ViT masked autoencoder and classifier.

The same architecture written independently in PyTorch (nn.LayerNorm, nn.GELU,
softmax, MAE's random masking and loss), with lensmae's checkpoint key names. It
makes a small model's weights (and a super-resolution model's), inputs and outputs and saves them under
fixtures/model/; tests/it/model_twin.rs loads the same weights into lensmae and
must reproduce the outputs (relative difference <= 1e-4).

Run from the repository root (needs torch, numpy, safetensors):
    python tests/oracle/mae_twin.py
"""
import json
import os

import torch
import torch.nn as nn
from safetensors.torch import save_file

from twin_model import SrTwin, Twin

CFG = {"image_size": 16, "in_channels": 1, "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2,
       "decoder_embed_dim": 16, "decoder_depth": 1, "decoder_num_heads": 2, "mlp_ratio": 2.0,
       "layer_norm_eps": 1e-6, "norm_pix_loss": False}
NUM_CLASSES, BATCH, MASK_RATIO = 3, 4, 0.75
OUT = os.path.join("fixtures", "model")


def init_params(model):
    """Tokens N(0, 0.02), norms near (not at) 1 / 0 so that a scale or shift in the
    wrong place shows, matrices xavier-uniform, convolutions PyTorch's default,
    biases N(0, 0.05)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("_token"):
                p.normal_(0, 0.02)
            elif "norm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn_like(p))
            elif name.endswith("weight") and p.dim() == 2:
                nn.init.xavier_uniform_(p)
            elif not name.endswith("weight"):
                p.normal_(0, 0.05)
    model.eval()


torch.manual_seed(20261126)
model = Twin(CFG, NUM_CLASSES)
init_params(model)
g = torch.Generator().manual_seed(7)
imgs = torch.rand(BATCH, CFG["in_channels"], CFG["image_size"], CFG["image_size"], generator=g)
noise = torch.rand(BATCH, (CFG["image_size"] // CFG["patch_size"]) ** 2, generator=g)
with torch.no_grad():
    loss, pred, mask = model.mae(imgs, noise, MASK_RATIO, False)
    loss_norm_pix, _, _ = model.mae(imgs, noise, MASK_RATIO, True)
    logits = model.classify(imgs)

os.makedirs(OUT, exist_ok=True)
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(OUT, "twin_weights.safetensors"))
save_file({"images": imgs, "noise": noise, "pred": pred.contiguous(), "mask": mask, "logits": logits,
           "loss": loss.reshape(1), "loss_norm_pix": loss_norm_pix.reshape(1)},
          os.path.join(OUT, "twin_io.safetensors"))
with open(os.path.join(OUT, "twin_config.json"), "w") as f:
    json.dump({"config": CFG, "num_classes": NUM_CLASSES, "mask_ratio": MASK_RATIO, "torch": torch.__version__}, f, indent=1)
print("loss", float(loss), "loss_norm_pix", float(loss_norm_pix), "logits[0]", logits[0].tolist())

# The super-resolution model on the same encoder sizes: x4, 8 channels.
SR_FACTOR, SR_CHANNELS = 4, 8
sr = SrTwin(CFG, SR_FACTOR, SR_CHANNELS)
init_params(sr)
lr = torch.rand(BATCH, CFG["in_channels"], CFG["image_size"] // SR_FACTOR, CFG["image_size"] // SR_FACTOR, generator=g)
with torch.no_grad():
    sr_out = sr(lr)
save_file({k: v.contiguous() for k, v in sr.state_dict().items()}, os.path.join(OUT, "sr_twin_weights.safetensors"))
save_file({"lr": lr, "sr": sr_out.contiguous()}, os.path.join(OUT, "sr_twin_io.safetensors"))
print("sr[0, 0, :2, :4]", sr_out[0, 0, :2, :4].tolist())
