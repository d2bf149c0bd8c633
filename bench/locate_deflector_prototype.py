"""The numpy prototype of lensmae's deflector search (`model::preprocess::locate_deflector`),
run on survey lenses moved by whole pixels: how often the climb ends on the lens where it
was put, and how often the deflector comes out beyond the search.

    python bench/locate_deflector_prototype.py DATASET.parquet [N]

The search: the brightest 3x3 box within 3 pixels of the centre (nearest the centre on
ties), then up to 4 steps to the brightest brighter neighbouring box, then the
light-weighted centroid of the 5x5 pixels there, rounded; beyond the search when the
climb is still rising or the centroid is more than 5 pixels out. "Found" compares the
moved lens's result with the unmoved lens's result plus the move. N: lenses (1000).
Needs numpy and pyarrow.
"""
import sys

import numpy as np
import pyarrow.parquet as pq

SEARCH, REACH, STEPS, HALF = 3, 5, 4, 2


def box(img, r, c):
    return img[r - 1:r + 2, c - 1:c + 2].sum()


def centroid(img, centre, r, c):
    w = np.clip(img[r - HALF:r + HALF + 1, c - HALF:c + HALF + 1], 0, None).astype(np.float64)
    ys, xs = np.mgrid[r - HALF:r + HALF + 1, c - HALF:c + HALF + 1]
    return np.round((ys * w).sum() / w.sum() - centre), np.round((xs * w).sum() / w.sum() - centre)


def locate(img):
    side = img.shape[0]
    centre = (side - 1) / 2
    first, last = int(np.ceil(centre - SEARCH)), int(np.floor(centre + SEARCH))
    cands = sorted(((r, c) for r in range(first, last + 1) for c in range(first, last + 1)),
                   key=lambda p: (p[0] - centre) ** 2 + (p[1] - centre) ** 2)
    best, top = -np.inf, cands[0]
    for p in cands:
        if box(img, *p) > best:
            best, top = box(img, *p), p
    rising = True
    for _ in range(STEPS):
        here = box(img, *top)
        steps = [(top[0] + a, top[1] + b) for a in (-1, 0, 1) for b in (-1, 0, 1) if (a, b) != (0, 0)]
        brighter = [(box(img, *p), p) for p in steps if box(img, *p) > here]
        if not brighter:
            rising = False
            break
        top = max(brighter, key=lambda t: t[0])[1]
    r, c = centroid(img, centre, *top)
    return (r, c), rising or abs(r) > REACH or abs(c) > REACH


def main(path, n=1000):
    col = pq.read_table(path, columns=["image"]).column(0).combine_chunks()
    side = col.type.shape[0]
    imgs = col.storage.flatten().to_numpy().reshape(-1, side, side)[: int(n)]
    base = [locate(img)[0] for img in imgs]
    for dx, dy in [(0, 0), (3, 0), (3, 3), (4, 0), (5, 0), (6, 0), (7, 0), (8, 0), (10, 0), (12, 0)]:
        found = beyond = 0
        for img, (r0, c0) in zip(imgs, base):
            (r, c), out = locate(np.roll(img, (dy, dx), axis=(0, 1)))
            beyond += out
            found += (not out) and r == r0 + dy and c == c0 + dx
        print(f"moved by ({dx}, {dy}): found where put {found / len(imgs):.3f}, beyond the search {beyond / len(imgs):.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
