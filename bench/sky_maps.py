"""Survey lenses under a brighter sky than their recipe's, as FITS cutouts with noise maps.

    python bench/sky_maps.py DATASET.parquet OUT_DIR [FACTOR]

Writes one file a lens of a `lensmae simulate --preset survey` table, `OUT_DIR/lens-NNNNN.fits`,
as a survey's cutout service does: `ID` and `EXPTIME` in the primary header, the flux in a
`VIS_FLUX` extension (with `PSF_FWHM`), its noise map in `VIS_RMS`. The flux gets extra
Gaussian noise so that the background's variance (sky and read noise) is FACTOR (default 2)
times the recipe's, and the map holds that background sigma, sqrt(FACTOR) times the
recipe's: the Euclid VIS wide survey as lenstronomy 1.14 configures it (the `survey`
preset's `euclid-vis-wide`: sky 22.3 mag/arcsec^2, zero point 25.72, read noise 4.2 e-
over 4 exposures, 0.101" pixels), at each row's `exposure_time`. Needs numpy, pyarrow and
astropy.
"""
import os
import sys

import numpy as np
import pyarrow.parquet as pq
from astropy.io import fits

SKY_MAG, ZERO_POINT, READ_NOISE, EXPOSURES, PIXEL = 22.3, 25.72, 4.2, 4, 0.101


def background_sigma(exposure_time):
    sky = 10 ** (-0.4 * (SKY_MAG - ZERO_POINT)) * PIXEL**2
    return np.sqrt(sky / exposure_time + READ_NOISE**2 * EXPOSURES / exposure_time**2)


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    dataset, out = sys.argv[1], sys.argv[2]
    factor = float(sys.argv[3]) if len(sys.argv) == 4 else 2.0
    table = pq.read_table(dataset)
    column = table.column("image").combine_chunks()
    storage = column.storage if hasattr(column, "storage") else column
    side = int(round(np.sqrt(storage.type.list_size)))
    images = storage.flatten().to_numpy(zero_copy_only=False).reshape(-1, side, side)
    rows = table.select(["id", "psf_fwhm", "exposure_time"]).to_pydict()
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(7)
    for image, id_, psf, exposure in zip(images, rows["id"], rows["psf_fwhm"], rows["exposure_time"]):
        sigma = background_sigma(exposure)
        noisier = image + rng.normal(0.0, sigma * np.sqrt(factor - 1.0), image.shape)
        primary = fits.PrimaryHDU()
        primary.header["ID"] = id_
        primary.header["EXPTIME"] = exposure
        flux = fits.ImageHDU(noisier.astype(np.float32), name="VIS_FLUX")
        flux.header["PSF_FWHM"] = psf
        rms = fits.ImageHDU(np.full(image.shape, sigma * np.sqrt(factor), np.float32), name="VIS_RMS")
        fits.HDUList([primary, flux, rms]).writeto(os.path.join(out, f"lens-{id_:05d}.fits"), overwrite=True)
    print(f"{len(images)} cutouts, background variance x{factor}, in {out}")


if __name__ == "__main__":
    main()
