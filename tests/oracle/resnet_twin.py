"""PyTorch twin of lensmae's convolutional classifier (src/model/resnet.rs).

The twin is the network of the ResNet-18 baseline, `bench/resnet18_baseline.py`
(torchvision's layout written out in nn.Conv2d / nn.BatchNorm2d / nn.MaxPool2d),
whose state-dict keys lensmae's checkpoints share. A small one (width 4, 32x32
images: the last stage works on 1x1 maps) with non-trivial batch-norm parameters
and running statistics; written to fixtures/model/resnet_twin_*.safetensors:
  weights: the state dict;
  io:      images, labels, the logits in inference (running statistics) and in
           training (batch statistics), the training cross-entropy, the gradient of
           that loss for every parameter (`grad.<key>`) and the running statistics
           after that one training forward (`after.<key>`).
tests/it/model_twin.rs loads the weights into lensmae and must reproduce every
value (relative difference <= 1e-4).

Run from the repository root (needs torch, numpy, safetensors, pyarrow):
    python tests/oracle/resnet_twin.py
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
from resnet18_baseline import ResNet18  # noqa: E402

WIDTH, IMAGE, BATCH, CLASSES = 4, 32, 4, 3
OUT = os.path.join("fixtures", "model")

torch.manual_seed(20261206)
model = ResNet18(CLASSES, WIDTH)
with torch.no_grad():
    # Batch norms away from their initial 1 / 0 (and running statistics away from
    # 0 / 1) so that a scale, shift or statistic in the wrong place shows.
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.weight.copy_(1.0 + 0.2 * torch.randn_like(module.weight))
            module.bias.copy_(0.2 * torch.randn_like(module.bias))
            module.running_mean.copy_(0.3 * torch.randn_like(module.running_mean))
            module.running_var.copy_(0.5 + torch.rand_like(module.running_var))
    model.head.bias.normal_(0, 0.1)
weights = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}

g = torch.Generator().manual_seed(8)
images = torch.randn(BATCH, 1, IMAGE, IMAGE, generator=g)
labels = torch.tensor([0, 2, 1, 2])

model.eval()
with torch.no_grad():
    eval_logits = model(images)
model.train()
train_logits = model(images)
loss = torch.nn.functional.cross_entropy(train_logits, labels)
loss.backward()

io = {"images": images, "labels": labels, "eval_logits": eval_logits, "train_logits": train_logits.detach(),
      "loss": loss.detach().reshape(1)}
io.update({f"grad.{k}": p.grad.contiguous() for k, p in model.named_parameters()})
io.update({f"after.{k}": v.clone() for k, v in model.state_dict().items() if k.endswith(("running_mean", "running_var"))})

os.makedirs(OUT, exist_ok=True)
save_file(weights, os.path.join(OUT, "resnet_twin_weights.safetensors"),
          metadata={"config": json.dumps({"image_size": IMAGE, "in_channels": 1, "width": WIDTH, "blocks": [2, 2, 2, 2]}),
                    "num_classes": str(CLASSES), "torch": torch.__version__})
save_file(io, os.path.join(OUT, "resnet_twin_io.safetensors"))
print("loss", loss.item(), "eval_logits[0]", eval_logits[0].tolist(), "parameters",
      sum(p.numel() for p in model.parameters()))
