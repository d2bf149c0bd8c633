"""Resample every cutout of a lensmae dataset into the lens's own frame.

Each image is zoomed about the lens centre by theta_E / REFERENCE (every ring the
same radius in pixels) and/or turned so the lens's major axis lies along x. For a
singular isothermal lens the deflection scales with theta_E, so in these units lenses
that differ only by theta_E differ only by the source's size and position. The frame
comes from the simulator's truth (`truth`, `truth-rotate`, `rotate`; `jitter:REL:DEG`
adds Gaussian errors of REL to theta_E and DEG degrees to the angle) or from the
cutout alone (`blind`, `blind-rotate`: `blind_frame` below). `leak` writes nothing and
prints how well the cutout's ring radius over the truth's theta_E tells `axion` from
`no_sub`: a vortex adds mass the smooth lens's theta_E does not count.

    python bench/theta_e_rescale.py IN.parquet OUT.parquet REFERENCE_ARCSEC MODE
    python bench/theta_e_rescale.py IN.parquet - 1.2 leak
"""
import sys

import numpy as np
import pyarrow.parquet as pq
from lens_images import border_background, read_images, with_images
from scipy.ndimage import map_coordinates


def rescale(image, scale, centre_col, centre_row, angle=0.0):
    n = image.shape[0]
    rows, cols = np.mgrid[0:n, 0:n].astype(np.float64)
    c = (n - 1) / 2
    u, v = (cols - c) * scale, (rows - c) * scale
    cos, sin = np.cos(angle), np.sin(angle)
    src_cols = centre_col + cos * u - sin * v
    src_rows = centre_row + sin * u + cos * v
    return map_coordinates(image, [src_rows, src_cols], order=3, mode="mirror").astype(np.float32)


def blind_frame(image):
    """The lens frame from the cutout alone: the orientation of the deflector's light
    (second moments within 5 pixels of the centre) and the ring's radius (noise-weighted
    mean elliptical radius of light above each elliptical annulus's median)."""
    im = image.astype(np.float64)
    bkg, sigma = border_background(im)
    d = im - bkg
    n = im.shape[0]
    rows, cols = np.mgrid[0:n, 0:n].astype(np.float64)
    x, y = cols - (n - 1) / 2, rows - (n - 1) / 2
    w = np.where(np.hypot(x, y) < 5, np.clip(d, 0, None), 0)
    total = max(w.sum(), 1e-30)
    qxx, qyy, qxy = (w * x * x).sum() / total, (w * y * y).sum() / total, (w * x * y).sum() / total
    angle = 0.5 * np.arctan2(2 * qxy, qxx - qyy)
    lam = np.linalg.eigvalsh([[qxx, qxy], [qxy, qyy]])
    q = np.sqrt(max(lam[0], 1e-9) / max(lam[1], 1e-9))
    ca, sa = np.cos(angle), np.sin(angle)
    xr, yr = ca * x + sa * y, -sa * x + ca * y
    rell = np.sqrt(q * xr**2 + yr**2 / q)
    edges = np.arange(3, 31, 1.0)
    idx = np.digitize(rell, edges)
    med = np.full(len(edges) + 1, np.nan)
    for k in range(1, len(edges)):
        sel = idx == k
        if sel.sum() > 5:
            med[k] = np.median(d[sel])
    res = d - med[idx]
    arc = np.isfinite(res) & (res > 2 * sigma)
    radius = np.sum(res[arc] * rell[arc]) / res[arc].sum() if arc.sum() >= 3 else np.nan
    return angle, radius


def main():
    src, dst = sys.argv[1], sys.argv[2]
    reference = float(sys.argv[3]) if len(sys.argv) > 3 else 1.2
    mode = sys.argv[4] if len(sys.argv) > 4 else "truth"
    table = pq.read_table(src)
    pixel_scale = float(table.schema.metadata[b"lensmae:pixel_scale"])
    images = read_images(table)
    theta = table.column("lens_theta_e").to_numpy()
    cx = table.column("lens_center_x").to_numpy()
    cy = table.column("lens_center_y").to_numpy()
    angle = 0.5 * np.arctan2(table.column("lens_e2").to_numpy(), table.column("lens_e1").to_numpy())
    c = (images.shape[1] - 1) / 2
    if mode == "leak":
        from sklearn.metrics import roc_auc_score

        frames = np.array([blind_frame(im) for im in images])
        radius = frames[:, 1] * pixel_scale
        angle_error = np.degrees((frames[:, 0] - angle + np.pi / 2) % np.pi - np.pi / 2)
        elongated = np.hypot(table.column("lens_e1").to_numpy(), table.column("lens_e2").to_numpy()) > 0.1
        print(f"blind_frame against the truth: angle error median {np.median(np.abs(angle_error)):.1f} deg "
              f"({np.median(np.abs(angle_error[elongated])):.1f} where |e| > 0.1), ring radius / theta_E - 1 "
              f"median {np.nanmedian(radius / theta - 1):+.3f}, median abs {np.nanmedian(np.abs(radius / theta - 1)):.3f}")
        label = table.column("label").to_numpy(zero_copy_only=False)
        pair = np.isfinite(radius) & np.isin(label, ["axion", "no_sub"])
        is_axion = label[pair] == "axion"
        for name, value in [("ring radius / truth theta_E", radius / theta), ("ring radius alone", radius)]:
            print(f"{name}: median axion {np.median(value[pair][is_axion]):.4f}, "
                  f"no_sub {np.median(value[pair][~is_axion]):.4f}, "
                  f"AUC axion vs no_sub {roc_auc_score(is_axion, value[pair]):.4f}")
        return
    out = np.empty_like(images)
    for i in range(len(table)):
        if mode == "truth":
            out[i] = rescale(images[i], theta[i] / reference, c + cx[i] / pixel_scale, c + cy[i] / pixel_scale)
        elif mode == "truth-rotate":
            out[i] = rescale(images[i], theta[i] / reference, c + cx[i] / pixel_scale, c + cy[i] / pixel_scale, angle[i])
        elif mode.startswith("jitter"):
            _, rel, deg = mode.split(":")
            rng = np.random.default_rng(i)
            t = theta[i] * (1 + float(rel) * rng.standard_normal())
            a = angle[i] + np.radians(float(deg)) * rng.standard_normal()
            out[i] = rescale(images[i], t / reference, c + cx[i] / pixel_scale, c + cy[i] / pixel_scale, a)
        elif mode in ("blind", "blind-rotate"):
            a, radius_px = blind_frame(images[i])
            scale = 1.0
            if mode == "blind" and np.isfinite(radius_px):
                scale = np.clip(radius_px * pixel_scale / reference, 0.5, 2.0)
            out[i] = rescale(images[i], scale, c, c, a)
        elif mode == "rotate":
            out[i] = rescale(images[i], 1.0, c + cx[i] / pixel_scale, c + cy[i] / pixel_scale, angle[i])
        else:
            raise SystemExit(f"unknown mode {mode}")
    pq.write_table(with_images(table, out), dst)


if __name__ == "__main__":
    main()
