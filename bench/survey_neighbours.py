"""Survey lenses with a neighbour in the cutout: what the survey classifier makes of them.

Real survey cutouts hold other galaxies and stars beside the lens; the `survey` preset
renders none. This adds one neighbour to every cutout of a labelled `survey` dataset:
a galaxy (exponential disk, half-light radius 0.3", axis ratio 0.5-1) or a star (the
PSF), of magnitude MAG in the instrument's zero point, 2-3" from the centre in a random
direction, through the row's own Gaussian PSF, with the Poisson noise of its extra
electrons (Gaussian approximation, as lenstronomy's), and writes the same table again.
`galaxy-masked` / `star-masked` then flag (set to NaN) the pixels where the neighbour's
light is above the background noise (sigma from the MAD of the cutout's 4-pixel border),
as a segmentation map would, for `predict --nan-policy zero` (the survey cutouts are
background-subtracted, so zero is the sky). `mixed` is a training set's mixture: each
cutout has a neighbour with probability FRACTION (given in MAG's place), a galaxy
(70%) or a star, of magnitude uniform in 18-24.

    python bench/survey_neighbours.py IN.parquet OUT.parquet galaxy|star[-masked]|mixed MAG|FRACTION [SEED=0] [ZERO_POINT=25.72]
"""
import sys

import numpy as np
import pyarrow.parquet as pq
from lens_images import border_background, read_images, with_images
from scipy.ndimage import gaussian_filter

PAD = 16
SUB = 4


def neighbour(side, pixel_scale, kind, x0, y0, fwhm, rng):
    """Unit-flux image of the neighbour on a padded grid, cropped to `side`."""
    n = (side + 2 * PAD) * SUB
    step = pixel_scale / SUB
    coords = (np.arange(n) - (n - 1) / 2) * step
    xx, yy = np.meshgrid(coords, coords)
    dx, dy = xx - x0, yy - y0
    if kind == "galaxy":
        q = rng.uniform(0.5, 1.0)
        phi = rng.uniform(0, np.pi)
        u = np.cos(phi) * dx + np.sin(phi) * dy
        v = -np.sin(phi) * dx + np.cos(phi) * dy
        r = np.sqrt(q * u**2 + v**2 / q)
        fine = np.exp(-1.678 * r / 0.3)
    else:
        fine = np.zeros_like(xx)
        fine[np.unravel_index(np.argmin(dx**2 + dy**2), fine.shape)] = 1.0
    fine = gaussian_filter(fine, fwhm / 2.3548 / step, mode="constant", truncate=6.0)
    binned = fine.reshape(n // SUB, SUB, n // SUB, SUB).sum(axis=(1, 3))
    binned /= binned.sum()
    return binned[PAD:-PAD, PAD:-PAD]


def main():
    src, dst, kind, magnitude = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    seed = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    zero_point = float(sys.argv[6]) if len(sys.argv) > 6 else 25.72
    if kind not in ("galaxy", "star", "galaxy-masked", "star-masked", "mixed"):
        raise SystemExit(f"kind must be galaxy or star, with or without -masked, or mixed, not {kind}")
    masked = kind.endswith("-masked")
    kind = kind.removesuffix("-masked")
    table = pq.read_table(src)
    pixel_scale = float(table.schema.metadata[b"lensmae:pixel_scale"])
    images = read_images(table)
    side = images.shape[1]
    fwhm = table.column("psf_fwhm").to_numpy()
    exposure = table.column("exposure_time").to_numpy()
    rng = np.random.default_rng(seed)
    out = np.empty_like(images)
    for i in range(len(table)):
        row_kind, row_magnitude = kind, magnitude
        if kind == "mixed":
            if rng.uniform() >= magnitude:
                out[i] = images[i]
                continue
            row_kind = "galaxy" if rng.uniform() < 0.7 else "star"
            row_magnitude = rng.uniform(18.0, 24.0)
        flux = 10 ** (-0.4 * (row_magnitude - zero_point))  # electron/s
        radius, angle = rng.uniform(2.0, 3.0), rng.uniform(0, 2 * np.pi)
        added = flux * neighbour(side, pixel_scale, row_kind, radius * np.cos(angle), radius * np.sin(angle), fwhm[i], rng)
        noise = rng.standard_normal(added.shape) * np.sqrt(added * exposure[i]) / exposure[i]
        out[i] = (images[i] + added + noise).astype(np.float32)
        if masked:
            out[i][added > border_background(images[i])[1]] = np.nan
    pq.write_table(with_images(table, out), dst)


if __name__ == "__main__":
    main()
