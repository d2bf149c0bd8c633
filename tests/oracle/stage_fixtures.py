"""Cutout files as survey tools write them, for lensmae's stage tests
(fixtures/stage/), written by astropy and pyarrow, with the pixel values those
libraries read back (the values lensmae's readers must give), and a check of a
predictions file with pyarrow.

    python tests/oracle/stage_fixtures.py make            # -> fixtures/stage/
    python tests/oracle/stage_fixtures.py check PRED.parquet [GOLDEN.json]
    python tests/oracle/stage_fixtures.py check-fits PRED.fits [GOLDEN.json]   # astropy's view

Needs numpy, astropy, pyarrow (astropy 8.0.2 and pyarrow 26.0.1 were used).
"""
import gzip
import io
import json
import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from astropy.io import fits

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "stage")


def stamps(n, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:16, 0:16]
    out = []
    for _ in range(n):
        cx, cy = rng.uniform(4, 12, 2)
        out.append(np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 6.0) + 0.05 * rng.random((16, 16)))
    return np.array(out)


def make():
    os.makedirs(OUT, exist_ok=True)
    expected = {}
    # A cube of 3 cutouts, 16-bit integers with BSCALE/BZERO and one BLANK pixel.
    raw = np.round(stamps(3, 1) * 20000 - 5000).astype(np.int16)
    raw[1, 2, 3] = -32768
    hdu = fits.PrimaryHDU(data=raw, do_not_scale_image_data=True)
    hdu.header["BSCALE"], hdu.header["BZERO"], hdu.header["BLANK"] = 5e-5, 0.25, -32768
    hdu.writeto(os.path.join(OUT, "cube_int16.fits"), overwrite=True)
    with fits.open(os.path.join(OUT, "cube_int16.fits")) as f:
        expected["cube_int16.fits"] = f[0].data.astype(np.float32)  # scaled, BLANK as NaN
    # Multi-extension: empty primary, SCI as unsigned 16-bit (BZERO 32768), ERR float with a NaN.
    sci = np.round(stamps(1, 2)[0] * 60000).astype(np.uint16)
    err = np.full((16, 16), 0.1, dtype=np.float32)
    err[0, 0] = np.nan
    hdul = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(sci, name="SCI"), fits.ImageHDU(err, name="ERR")])
    hdul.writeto(os.path.join(OUT, "mef_uint16.fits"), overwrite=True)
    with fits.open(os.path.join(OUT, "mef_uint16.fits")) as f:
        expected["mef_uint16.fits[SCI]"] = f["SCI"].data.astype(np.float32)[None]
        expected["mef_uint16.fits[ERR]"] = f["ERR"].data.astype(np.float32)[None]
    # A table as pyarrow writes it: a tensor column, a list<double> column and gzipped
    # FITS stamps in bytes (as in alert streams), the same 4 images in each.
    imgs = stamps(4, 3).astype(np.float32)
    tensor = pa.FixedShapeTensorArray.from_numpy_ndarray(imgs)
    lists = pa.array([row.astype(np.float64).ravel().tolist() for row in imgs], type=pa.list_(pa.float64()))
    def stamp(img):
        buf = io.BytesIO()
        fits.PrimaryHDU(img).writeto(buf)
        return gzip.compress(buf.getvalue())
    blobs = [stamp(img) for img in imgs[:3]] + [b"not a FITS file"]
    table = pa.table({"objectId": pa.array([f"ZTF{i}" for i in range(4)]), "ra": pa.array([10.0, 11, 12, 13]),
                      "dec": pa.array([-5.0, -6, -7, -8]), "tensor": tensor, "stamp_list": lists,
                      "cutoutScience": pa.array(blobs, type=pa.binary())})
    pq.write_table(table, os.path.join(OUT, "stamps.parquet"))
    expected["stamps.parquet"] = imgs
    np.savez_compressed(os.path.join(OUT, "expected_pixels.npz"), **{k: v for k, v in expected.items()})
    for k, v in expected.items():
        np.save(os.path.join(OUT, "expected_" + k.replace(".", "_").replace("[", "_").replace("]", "") + ".npy"), v)
    os.remove(os.path.join(OUT, "expected_pixels.npz"))
    print("wrote", sorted(os.listdir(OUT)))


def check(pred, golden=None):
    t = pq.read_table(pred)
    field = t.schema.field("sr_image") if "sr_image" in t.schema.names else None
    report = {
        "rows": t.num_rows,
        "columns": t.schema.names,
        "sr_image_type": str(field.type) if field else None,
        # Rows without a prediction hold a null image: drop them before to_numpy_ndarray().
        "sr_image_numpy_shape":
            list(t.column("sr_image").combine_chunks().drop_null().to_numpy_ndarray().shape) if field else None,
        "status": t.column("status").to_pylist(),
        "metadata_keys": sorted(k.decode() for k in (t.schema.metadata or {}) if k.startswith(b"lensmae:")),
    }
    if golden:
        with open(golden, "w") as f:
            json.dump(report, f, indent=1, sort_keys=True)
            f.write("\n")
    print(json.dumps(report))


def check_fits(pred, golden=None):
    """What astropy sees in a `predict --out x.fits` file (Table.read, units, the cube)."""
    import warnings

    from astropy.table import Table

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = Table.read(pred, hdu="PREDICTIONS")
        with fits.open(pred) as hdul:
            names = [h.name for h in hdul]
            header = hdul[0].header
            cube = hdul[0].data
            keys = sorted(k for k in ("LENSMAE", "TASK", "MODEL", "MODELSHA", "SRMODEL", "COMMAND", "DATE", "BUILD")
                          if k in header)
            cube_shape = list(cube.shape) if cube is not None else None
            cube_nan_rows = [int(i) for i in range(cube.shape[0]) if np.isnan(cube[i]).all()] if cube is not None else []
    report = {
        "hdus": names,
        "rows": len(t),
        "columns": t.colnames,
        "units": {c: str(t[c].unit) for c in t.colnames if t[c].unit is not None},
        "status": [str(s) for s in t["status"]],
        "header_keys": keys,
        "cube_shape": cube_shape,
        "cube_nan_rows": cube_nan_rows,
        # Only warnings about the file itself (not astropy's own deprecations).
        "warnings": sorted({str(w.message).split(".")[0] for w in caught
                            if "Unit" in str(w.category.__name__) or "Verify" in str(w.category.__name__)}),
    }
    if golden:
        with open(golden, "w") as f:
            json.dump(report, f, indent=1, sort_keys=True)
            f.write("\n")
    print(json.dumps(report))


if __name__ == "__main__":
    commands = {"make": make, "check": check, "check-fits": check_fits}
    commands[sys.argv[1]](*sys.argv[2:])
