"""Training speed of bench/resnet18_baseline.py's ResNet-18 layout of width W in
PyTorch on the CPU, the reference for examples/conv_speed.rs (same batch, random
64x64 images, AdamW, images/s of the fastest step, as JSON), and the multiply-adds
of one image's forward pass through the convolutions and the head.

    python bench/conv_speed.py [WIDTH] [BATCH] [STEPS]
"""
import json
import sys
import time

import torch
from resnet18_baseline import ResNet18


def forward_macs(model):
    """Multiply-adds of one 64x64 image's forward pass (convolutions and the head)."""
    total = [0]

    def count(module, _inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            total[0] += output.numel() * module.in_channels * module.kernel_size[0] * module.kernel_size[1]
        elif isinstance(module, torch.nn.Linear):
            total[0] += module.in_features * module.out_features

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    with torch.no_grad():
        model(torch.zeros(1, 1, 64, 64))
    for hook in hooks:
        hook.remove()
    return total[0]


def main():
    defaults = [16, 64, 8]
    width, batch, steps = [int(a) for a in sys.argv[1:4]] + defaults[len(sys.argv[1:4]):]
    torch.manual_seed(0)
    model = ResNet18(3, width)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images = torch.randn(batch, 1, 64, 64)
    labels = torch.arange(batch) % 3
    best = float("inf")
    for step in range(steps + 1):
        started = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step > 0:  # step 0 warms up
            best = min(best, time.perf_counter() - started)
    print(json.dumps({"framework": "torch " + torch.__version__, "width": width,
                      "parameters": sum(p.numel() for p in model.parameters()),
                      "forward_macs_per_image": forward_macs(model), "batch": batch,
                      "threads": torch.get_num_threads(), "train_images_per_s": round(batch / best, 1)}))


if __name__ == "__main__":
    main()
