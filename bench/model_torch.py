"""Training and inference speed of the PyTorch twin (tests/oracle/twin_model.py)
with the paper's architecture, CPU, as images/s, with PyTorch's fused attention
(scaled_dot_product_attention) and with attention written out; plus the sgemm
rate of torch.mm on this machine. Prints JSON.

Usage: python bench/model_torch.py [threads] [batch] [steps] [only|all|fused] [device] [f32|tf32|bf16]
  only: run just this measure (e.g. classify_train, for a peak-memory run);
        fused: every measure, fused attention only (all adds written-out attention)
  device: cpu (default) or cuda; tf32 lets f32 matrix products use TF32;
  bf16 runs each step under torch.autocast(bfloat16), PyTorch's mixed precision
"""
import contextlib
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
only = sys.argv[4] if len(sys.argv) > 4 and sys.argv[4] not in ("all", "fused") else None
fused_only = len(sys.argv) > 4 and sys.argv[4] == "fused"
device = torch.device(sys.argv[5] if len(sys.argv) > 5 else "cpu")
precision = sys.argv[6] if len(sys.argv) > 6 else "f32"
tf32 = precision == "tf32"
torch.backends.cuda.matmul.allow_tf32 = tf32
torch.backends.cudnn.allow_tf32 = tf32
torch.set_num_threads(threads)
PAPER = {"image_size": 64, "in_channels": 1, "patch_size": 4, "embed_dim": 192, "depth": 6, "num_heads": 3,
         "decoder_embed_dim": 128, "decoder_depth": 2, "decoder_num_heads": 4, "mlp_ratio": 4.0,
         "layer_norm_eps": 1e-6, "norm_pix_loss": False}
torch.manual_seed(0)
model = Twin(PAPER, 3).to(device)
imgs = torch.rand(batch, 1, 64, 64, device=device)
lr_imgs = torch.rand(batch, 1, 16, 16, device=device)
sr_model = SrTwin(PAPER).to(device)
sr_opt = torch.optim.AdamW(sr_model.parameters(), lr=1e-4)
labels = torch.randint(0, 3, (batch,), device=device)
opt = torch.optim.AdamW(model.parameters(), lr=1e-4)


def rate(step, n=steps):
    def run():
        with autocast():
            step()
    run()  # warm-up
    return batch / min(_timed(run) for _ in range(n))


def autocast():
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def classify_train():
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model.classify(imgs), labels).backward()
    opt.step()


def mae_train(ratio):
    def step():
        opt.zero_grad()
        loss, _, _ = model.mae(imgs, torch.rand(batch, 256, device=device), ratio, False)
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
    a, b = torch.rand(size, size, device=device), torch.rand(size, size, device=device)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _sync():
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(f):
    _sync()
    t = time.perf_counter()
    f()
    _sync()
    return time.perf_counter() - t


measures = {"classify_train": classify_train, "mae_train_075": mae_train(0.75), "mae_train_090": mae_train(0.9),
            "classify_infer": infer, "superres_train": superres_train, "superres_infer": superres_infer}
out = {"tool": "pytorch", "version": torch.__version__, "threads": threads, "batch": batch, "device": str(device),
       "precision": precision}
if only:
    Attention.fused = True
    out[only] = rate(measures[only])
else:
    for fused in (True,) if fused_only else (True, False):
        Attention.fused = fused
        suffix = "" if fused else "_unfused"
        for name, step in measures.items():
            out[name + suffix] = rate(step)
    out["sgemm_gflops"] = sgemm_gflops(8192 if device.type == "cuda" else 2048)
print(json.dumps(out))
