"""FITS files as astropy writes them beside cutouts: a table with variable-length
array columns (fitsio panicked describing it, so the whole file failed with a
crash) and a tile-compressed image (as fpack writes them, stored in such a table)."""
import json
import subprocess

import numpy as np
import pyarrow.parquet as pq
from astropy.io import fits

from conftest import ROOT


def test_an_image_beside_a_variable_length_table_and_a_compressed_image_are_read(lensmae_cli, tmp_path):
    rng = np.random.default_rng(3)
    image = rng.random((64, 64)).astype(np.float32)
    plain = tmp_path / "plain.fits"
    fits.PrimaryHDU(image).writeto(plain)
    # An event list beside the cutout: a column of arrays of varying length (TFORM PJ(3)).
    events = fits.BinTableHDU.from_columns(
        [fits.Column(name="ENERGY", format="PJ()", array=np.array([[1, 2, 3], [4]], dtype=object))], name="EVENTS")
    beside = tmp_path / "beside.fits"
    fits.HDUList([fits.PrimaryHDU(image), events]).writeto(beside)
    with fits.open(beside) as written:
        assert written["EVENTS"].header["TFORM1"] == "PJ(3)"
    # The same image tile-compressed (as fpack writes .fits.fz: a table of compressed
    # tiles in a variable-length column), lossless: GZIP without quantisation.
    packed = tmp_path / "packed.fits"
    compressed = fits.CompImageHDU(image, compression_type="GZIP_1", quantize_level=0.0)
    fits.HDUList([fits.PrimaryHDU(), compressed]).writeto(packed)
    assert np.array_equal(fits.getdata(packed, 1), image)
    got = {}
    for path in [plain, beside, packed]:
        out = tmp_path / f"{path.stem}.parquet"
        lensmae_cli("predict", "--input", path, "--out", out)
        got[path.stem] = pq.read_table(out)
        assert got[path.stem].num_rows == 1, path.stem
    for name in ["beside", "packed"]:
        for column in ["p_axion", "p_cdm", "p_no_sub", "status"]:
            assert got[name].column(column).to_pylist() == got["plain"].column(column).to_pylist(), (name, column)
    # `inspect` of the file with the table: one cutout, no crash (exit 0).
    done = subprocess.run([str(ROOT / "target" / "release" / "lensmae"), "inspect", "--input", str(beside)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["input"]["rows"] == 1
