"""Training and inference speed of the PyTorch twin (tests/oracle/twin_model.py)
with the paper's architecture, CPU, as images/s. Prints JSON.

Usage: python bench/model_torch.py [threads] [batch] [steps]
"""
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "oracle"))
from twin_model import Twin  # noqa: E402

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
batch = int(sys.argv[2]) if len(sys.argv) > 2 else 64
steps = int(sys.argv[3]) if len(sys.argv) > 3 else 5
torch.set_num_threads(threads)
PAPER = {"image_size": 64, "in_channels": 1, "patch_size": 4, "embed_dim": 192, "depth": 6, "num_heads": 3,
         "decoder_embed_dim": 128, "decoder_depth": 2, "decoder_num_heads": 4, "mlp_ratio": 4.0,
         "layer_norm_eps": 1e-6, "norm_pix_loss": False}
torch.manual_seed(0)
model = Twin(PAPER, 3)
imgs = torch.rand(batch, 1, 64, 64)
labels = torch.randint(0, 3, (batch,))
opt = torch.optim.AdamW(model.parameters(), lr=1e-4)


def rate(step, n=steps):
    step()  # warm-up
    best = float("inf")
    for _ in range(n):
        t = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - t)
    return batch / best


def classify_train():
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model.classify(imgs), labels).backward()
    opt.step()


def mae_train():
    opt.zero_grad()
    loss, _, _ = model.mae(imgs, torch.rand(batch, 256), 0.9, False)
    loss.backward()
    opt.step()


def infer():
    with torch.no_grad():
        model.classify(imgs)


print(json.dumps({"tool": "pytorch", "version": torch.__version__, "threads": threads, "batch": batch,
                  "classify_train_images_per_s": rate(classify_train), "mae_train_images_per_s": rate(mae_train),
                  "inference_images_per_s": rate(infer)}))
