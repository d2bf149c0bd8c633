"""Golden super-resolution metrics and upsampling for lensmae's eval module:
scikit-image's structural_similarity (7x7 uniform window, data_range 1) and
peak_signal_noise_ratio, and PyTorch's bicubic and nearest interpolation
(align_corners=False), on small lensing-like image pairs.

Writes fixtures/oracle/superres_pairs.npy (float32, [cases, 2, 48, 48]: the
reference and the test image), fixtures/oracle/superres_lr.npy (float32,
[cases, 12, 12]), fixtures/oracle/superres_bicubic.npy (PyTorch's bicubic x4 of
the LR images) and fixtures/oracle/superres_metrics.json.
Run from the repository root: python tests/oracle/superres_oracle.py
"""
import json
import os

import numpy as np
import skimage
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

rng = np.random.default_rng(11)
size, factor = 48, 4
yy, xx = np.mgrid[0:size, 0:size] / size - 0.5
pairs, lrs, bicubics, cases = [], [], [], []
for case, noise in enumerate([0.01, 0.05, 0.2, 0.0]):
    # A ring with a bright arc, min-max normalised, and a noisy copy of it.
    r = np.hypot(xx - 0.03 * case, yy)
    ref = np.exp(-((r - 0.25) ** 2) / 0.005) * (1 + 0.5 * np.cos(np.arctan2(yy, xx) + case))
    ref = (ref - ref.min()) / (ref.max() - ref.min())
    test = np.clip(ref + noise * rng.normal(size=ref.shape), 0, 1)
    if case == 3:
        test = ref * 0.9 + 0.05  # smooth change only
    ref, test = ref.astype(np.float32), test.astype(np.float32)
    lr = ref.reshape(size // factor, factor, size // factor, factor).mean(axis=(1, 3)).astype(np.float32)
    t = torch.from_numpy(lr)[None, None]
    bicubic = torch.nn.functional.interpolate(t, scale_factor=factor, mode="bicubic", align_corners=False)[0, 0]
    nearest = torch.nn.functional.interpolate(t, scale_factor=factor, mode="nearest")[0, 0]
    pairs.append(np.stack([ref, test]))
    lrs.append(lr)
    bicubics.append(bicubic.numpy())
    cases.append({
        "ssim": structural_similarity(ref.astype(np.float64), test.astype(np.float64), data_range=1.0),
        "psnr": peak_signal_noise_ratio(ref.astype(np.float64), test.astype(np.float64), data_range=1.0)
        if noise or case == 3 else None,
        "mse": float(np.mean((ref.astype(np.float64) - test.astype(np.float64)) ** 2)),
        "nearest_equals_repeat": bool(np.array_equal(nearest.numpy(), np.kron(lr, np.ones((factor, factor))))),
    })

out = os.path.join("fixtures", "oracle")
np.save(os.path.join(out, "superres_pairs.npy"), np.stack(pairs))
np.save(os.path.join(out, "superres_lr.npy"), np.stack(lrs))
np.save(os.path.join(out, "superres_bicubic.npy"), np.stack(bicubics).astype(np.float32))
with open(os.path.join(out, "superres_metrics.json"), "w") as f:
    json.dump({"skimage": skimage.__version__, "torch": torch.__version__, "factor": factor, "cases": cases}, f)
print("wrote", len(cases), "cases")
