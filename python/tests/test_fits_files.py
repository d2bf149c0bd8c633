"""FITS files as astropy writes them beside cutouts: a table with variable-length
array columns (fitsio panicked describing it, so the whole file failed with a
crash) and a tile-compressed image (as fpack writes them, stored in such a table)."""
import json
import subprocess

import numpy as np
import pytest
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


def test_a_folder_of_stamps_and_a_band_cube_through_python_answer_as_the_cli(lensmae_cli, tmp_path):
    import lensmae

    rng = np.random.default_rng(4)
    stamps = tmp_path / "stamps"
    (stamps / "tile=3").mkdir(parents=True)
    for i, path in enumerate(["s-2.fits", "s-10.fits", "tile=3/s-1.fits"]):
        fits.PrimaryHDU(rng.random((64, 64)).astype(np.float32)).writeto(stamps / path)
    # A Legacy Surveys-style grz cube, with an HSC-style mask: DETECTED over the lens, one cosmic ray.
    header = fits.Header()
    header["BANDS"] = "grz"
    for i, band in enumerate("grz"):
        header[f"BAND{i}"] = band
    mask = np.zeros((3, 64, 64), dtype=np.int32)
    mask[:, 20:44, 20:44] = 1 << 5
    mask[1, 30, 30] |= 1 << 3
    mask_header = fits.Header()
    mask_header["MP_CR"], mask_header["HIERARCH MP_DETECTED"] = 3, 5  # as Rubin writes names over 8 letters
    cube = tmp_path / "legacy.fits"
    fits.HDUList([fits.PrimaryHDU(rng.random((3, 64, 64)).astype(np.float32), header),
                  fits.ImageHDU(mask, mask_header, name="MASK")]).writeto(cube)

    model = lensmae.load_model(nan_policy="zero")
    for paths, options, flags in [(stamps, {}, []), (cube, {"band": "r"}, ["--band", "r"])]:
        got = model.predict_files(paths, **options)
        out = tmp_path / f"{paths.stem}.parquet"
        lensmae_cli("predict", "--input", paths, "--out", out, "--nan-policy", "zero", *flags)
        want = pq.read_table(out)
        assert got.num_rows == want.num_rows
        for column in ["source", "p_axion", "p_cdm", "p_no_sub", "status"]:
            assert got.column(column).to_pylist() == want.column(column).to_pylist(), column
    assert [s.split("/")[-1] for s in model.predict_files(stamps).column("source").to_pylist()] == [
        "s-2.fits[0]", "s-10.fits[0]", "s-1.fits[0]"]
    r_band = model.predict_files(str(cube), band="r")
    assert r_band.column("band").to_pylist() == ["r"]
    # The cosmic ray alone is masked, not the detection footprint (its HIERARCH card read as
    # the keyword MP_DETECTED).
    assert r_band.column("nonfinite_pixels").to_pylist() == [1]
    detected = model.predict_files(cube, band="r", flag_planes=["DETECTED"])
    assert detected.column("nonfinite_pixels").to_pylist() == [24 * 24]
    with pytest.raises(lensmae.LensmaeError, match="--band i"):
        model.predict_files(cube, band="i")
