"""Training and inference speed of the PyTorch twin (tests/oracle/twin_model.py)
with the paper's architecture, CPU, as images/s, with PyTorch's fused attention
(scaled_dot_product_attention) and with attention written out; plus the sgemm
rate of torch.mm on this machine. Prints JSON.

Usage: python bench/model_torch.py [threads] [batch] [steps] [only]
  only: run just this measure (e.g. classify_train, for a peak-memory run)
"""
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "oracle"))
from twin_model import Attention, SrTwin, Twin  # noqa: E402

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
batch = int(sys.argv[2]) if len(sys.argv) > 2 else 64
steps = int(sys.argv[3]) if len(sys.argv) > 3 else 5
only = sys.argv[4] if len(sys.argv) > 4 else None
torch.set_num_threads(threads)
PAPER = {"image_size": 64, "in_channels": 1, "patch_size": 4, "embed_dim": 192, "depth": 6, "num_heads": 3,
         "decoder_embed_dim": 128, "decoder_depth": 2, "decoder_num_heads": 4, "mlp_ratio": 4.0,
         "layer_norm_eps": 1e-6, "norm_pix_loss": False}
torch.manual_seed(0)
model = Twin(PAPER, 3)
imgs = torch.rand(batch, 1, 64, 64)
lr_imgs = torch.rand(batch, 1, 16, 16)
sr_model = SrTwin(PAPER)
sr_opt = torch.optim.AdamW(sr_model.parameters(), lr=1e-4)
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


def mae_train(ratio):
    def step():
        opt.zero_grad()
        loss, _, _ = model.mae(imgs, torch.rand(batch, 256), ratio, False)
        loss.backward()
        opt.step()
    return step


def infer():
    with torch.no_grad():
        model.classify(imgs)


def superres_train():
    sr_opt.zero_grad()
    (sr_model(lr_imgs) - imgs).abs().mean().backward()
    sr_opt.step()


def superres_infer():
    with torch.no_grad():
        sr_model(lr_imgs)


def sgemm_gflops(size=2048, repeats=5):
    a, b = torch.rand(size, size), torch.rand(size, size)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _timed(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


measures = {"classify_train": classify_train, "mae_train_075": mae_train(0.75), "mae_train_090": mae_train(0.9),
            "classify_infer": infer, "superres_train": superres_train, "superres_infer": superres_infer}
out = {"tool": "pytorch", "version": torch.__version__, "threads": threads, "batch": batch}
if only:
    Attention.fused = True
    out[only] = rate(measures[only])
else:
    for fused in (True, False):
        Attention.fused = fused
        suffix = "" if fused else "_unfused"
        for name, step in measures.items():
            out[name + suffix] = rate(step)
    out["sgemm_gflops"] = sgemm_gflops()
print(json.dumps(out))
