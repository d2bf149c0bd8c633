"""Render the DeepLense Model II recipe with caustics (PyTorch), batched with vmap.

The same physics as lensmae's `deeplense-model2` preset: SIE (theta_E scaled by the
multi-plane factor), external shear, point-mass subhalos (25 for cdm, a 100-point
vortex for axion), elliptical Sersic source, 64x64 pixels of 0.101", Gaussian PSF of
FWHM 0.16". Parameters that vary per image (source position, subhalos) are batched;
the simulator is vmapped over the batch. Prints images/s per class as JSON.

Usage: python bench/caustics_sim.py [threads] [batch] [repeats]
"""
import json
import math
import sys
import time

import numpy as np
import torch
import caustics

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
batch = int(sys.argv[2]) if len(sys.argv) > 2 else 256
repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 3
torch.set_num_threads(threads)
torch.set_grad_enabled(False)
dtype = torch.float32

F = 0.6334579710123897           # deflection rescaling of Models II/III
THETA_E = 1.2814905676172945     # 1e12 Msun with the recipe's luminosity distances
PIX, N, FWHM = 0.101, 64, 0.16


def e_to_q_phi(e1, e2):
    phi = math.atan2(e2, e1) / 2
    c = min(math.hypot(e1, e2), 0.9999)
    return (1 - c) / (1 + c), phi


def gaussian_psf(fwhm, pix):
    sigma = fwhm / 2.3548200450309493 / pix
    r = int(4 * sigma + 0.5)
    x = np.arange(-r, r + 1)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    k2 = np.outer(k, k)
    return torch.tensor(k2 / k2.sum(), dtype=dtype)


def build(n_points):
    cosmo = caustics.FlatLambdaCDM(name="cosmo")
    q_l, phi_l = e_to_q_phi(0.1, 0.0)
    q_s, phi_s = e_to_q_phi(-0.1, 0.1)
    sie = caustics.SIE(cosmology=cosmo, name="sie", z_l=0.5, z_s=1.0, x0=0.0, y0=0.0, q=q_l, phi=phi_l,
                       Rein=THETA_E * F)
    shear = caustics.ExternalShear(cosmology=cosmo, name="shear", z_l=0.5, z_s=1.0, x0=0.0, y0=0.0,
                                   gamma_1=0.05 * F, gamma_2=0.0)
    lenses = [sie, shear]
    if n_points:
        point = caustics.Point(cosmology=cosmo, name="point", z_l=0.5, z_s=1.0)
        lenses.append(caustics.BatchedPlane(cosmology=cosmo, lens=point, name="subs", z_l=0.5, z_s=1.0))
    plane = caustics.SinglePlane(cosmology=cosmo, lenses=lenses, name="plane", z_l=0.5, z_s=1.0)
    source = caustics.Sersic(name="src", q=q_s, phi=phi_s, n=1.0, Re=0.25, Ie=53.245, use_lenstronomy_k=True)
    sim = caustics.LensSource(lens=plane, source=source, pixelscale=PIX, pixels_x=N, psf=gaussian_psf(FWHM, PIX),
                              name="sim")
    sim.to(dtype=dtype)
    return sim


def params(rng, n_points, vortex):
    x0, y0 = rng.uniform(-0.35, 0.35, 2)
    out = [torch.tensor([x0, y0], dtype=dtype)]
    if n_points:
        if vortex:
            half = 3e-24 / 10 ** rng.uniform(-24, -22)
            t = np.linspace(-half, half, n_points)
            ang = rng.uniform(0, 2 * np.pi)
            xs, ys = t * np.cos(ang), t * np.sin(ang)
            te = np.full(n_points, THETA_E * math.sqrt(3e10 / 100 / 1e12))
        else:
            u = rng.uniform(0, 1, n_points)
            lo, hi = 1e6 ** 0.1, 1e10 ** 0.1
            m = (lo + (hi - lo) * u) ** 10
            r, th = rng.uniform(0.25, 2.0, n_points), rng.uniform(0, 2 * np.pi, n_points)
            xs, ys, te = r * np.sin(th), r * np.cos(th), THETA_E * np.sqrt(m / 1e12)
        out.append(torch.tensor(np.stack([xs, ys, te * math.sqrt(F)], 1), dtype=dtype))
    return out


def run(cls):
    n_points = {"no_sub": 0, "cdm": 25, "axion": 100}[cls]
    sim = build(n_points)
    # Source position dynamic; subhalo x0, y0, Rein dynamic with a batch of points.
    sim.source.x0.to_dynamic()
    sim.source.y0.to_dynamic()
    if n_points:
        p = sim.lens.lenses[2].lens
        for name in ("x0", "y0", "Rein"):
            getattr(p, name).to_dynamic()
    rng = np.random.default_rng(0)
    draws = [params(rng, n_points, cls == "axion") for _ in range(batch)]
    src = torch.stack([d[0] for d in draws])

    def one(s, sub=None):
        # caskade orders dynamic parameters as the module tree: lens, then source.
        values = [] if sub is None else [sub[:, 0], sub[:, 1], sub[:, 2]]
        return sim(values + [s[0], s[1]])

    if n_points:
        subs = torch.stack([d[1] for d in draws])
        f = torch.vmap(one)
        call = lambda: f(src, subs)
    else:
        f = torch.vmap(one)
        call = lambda: f(src)
    images = call()  # warm-up, and a shape check
    assert images.shape == (batch, N, N), images.shape
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - t)
    return batch / best, float(images[0].max())


results = {}
for cls in ["no_sub", "cdm", "axion"]:
    rate, peak = run(cls)
    results[cls] = {"images_per_s": rate, "peak": peak}
print(json.dumps({"tool": "caustics", "version": caustics.__version__, "torch": torch.__version__,
                  "threads": threads, "batch": batch, "results": results}))
