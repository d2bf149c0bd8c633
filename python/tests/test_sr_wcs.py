"""Super-resolved cutouts placed on the sky: `sr_wcs` (FITS header cards) read by
astropy must put every super-resolved pixel where astropy puts the same spot of
the input cutout through the input's own header."""
import numpy as np
import pytest
import pyarrow as pa
import pyarrow.parquet as pq
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

import lensmae
from conftest import run_readme_example

LR_SCALE = 0.404  # arcsec/px of the bundled super-resolution model's 16x16 input
FACTOR = 4


def cutout(size, scale, ctype, extra=()):
    """A rotated survey-tile WCS, its reference pixel far outside the cutout."""
    header = fits.Header()
    header["CTYPE1"], header["CTYPE2"] = f"RA---{ctype}", f"DEC--{ctype}"
    header["CRVAL1"], header["CRVAL2"] = 150.1, 2.2
    header["CRPIX1"], header["CRPIX2"] = -1200.0, 3400.5
    turn = np.radians(33.0)
    cd = scale / 3600 * np.array([[-np.cos(turn), np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    for (i, j), value in np.ndenumerate(cd):
        header[f"CD{i + 1}_{j + 1}"] = value
    for key, value in extra:
        header[key] = value
    pixels = np.random.default_rng(size).normal(5.0, 1.0, (size, size)).astype(np.float32)
    return fits.PrimaryHDU(pixels, header=header)


CUTOUTS = {
    # At the model's scale: taken as it is.
    "tan-16": cutout(16, LR_SCALE, "TAN"),
    # Finer, in FK5: resampled to 0.404"/px, then cropped.
    "sin-40-fk5": cutout(40, 0.3, "SIN", [("RADESYS", "FK5"), ("EQUINOX", 2000.0)]),
    # An odd size with a SIP distortion.
    "sip-33": cutout(33, 0.35, "TAN-SIP", [("A_ORDER", 2), ("B_ORDER", 2), ("A_2_0", 2e-6), ("A_1_1", -1e-6),
                                          ("B_0_2", 1.5e-6)]),
}


def assert_placed_like_the_input(sr_wcs, header):
    """Every super-resolved pixel's sky position, by astropy from `sr_wcs`, against
    astropy's for the input position it came from (the grids share their centre)."""
    given, sr = WCS(header), WCS(sr_wcs)
    size = header["NAXIS1"]
    scale = np.sqrt(abs(np.linalg.det(given.pixel_scale_matrix))) * 3600
    ratio = LR_SCALE / scale / FACTOR  # input pixels per super-resolved pixel
    hr = np.stack(np.meshgrid(np.arange(64.0), np.arange(64.0)), -1).reshape(-1, 2)  # 0-based (x, y)
    on_input = (size - 1) / 2 + (hr - 31.5) * ratio
    ra, dec = sr.pixel_to_world_values(hr[:, 0], hr[:, 1])
    want_ra, want_dec = given.pixel_to_world_values(on_input[:, 0], on_input[:, 1])
    offset = np.hypot((ra - want_ra) * np.cos(np.radians(want_dec)), dec - want_dec) * 3600
    assert offset.max() < 1e-6, f"{offset.max()} arcsec"  # a micro-arcsecond
    assert sr.wcs.radesys == given.wcs.radesys
    assert np.allclose(np.sqrt(abs(np.linalg.det(sr.pixel_scale_matrix))) * 3600, LR_SCALE / FACTOR)


def test_the_cli_writes_each_super_resolved_cutout_with_its_wcs(lensmae_cli, tmp_path):
    for name, hdu in CUTOUTS.items():
        path = tmp_path / f"{name}.fits"
        hdu.writeto(path)
        for out in [tmp_path / f"{name}.parquet", tmp_path / f"{name}-pred.fits"]:
            lensmae_cli("predict", "--input", path, "--task", "superres", "--out", out)
            if out.suffix == ".parquet":
                row = pq.read_table(out).to_pylist()[0]
                # astropy's own Parquet reader sizes the column by table::len::sr_wcs.
                assert Table.read(out, include_names=["sr_wcs"])["sr_wcs"][0] == row["sr_wcs"]
            else:
                row = Table.read(out, hdu="PREDICTIONS")[0]
            assert row["status"] == "ok", name
            assert_placed_like_the_input(str(row["sr_wcs"]), hdu.header)


def test_stamps_in_a_table_carry_their_wcs_and_plain_images_none(tmp_path):
    stamps = []
    for name in ["tan-16", "tan-16"]:
        path = tmp_path / f"{name}.fits"
        CUTOUTS[name].writeto(path, overwrite=True)
        stamps.append(path.read_bytes())
    model = lensmae.load_model("bundled:superres")
    got = model.predict(pa.table({"id": [1, 2], "stamp": stamps}), image_col="stamp")
    for sr_wcs in got.column("sr_wcs").to_pylist():
        assert_placed_like_the_input(sr_wcs, CUTOUTS["tan-16"].header)
    # Pixels without a header: nowhere on the sky, so no WCS (the images still come).
    plain = pa.table({"image": [CUTOUTS["tan-16"].data.ravel().tolist()]})
    got = model.predict(plain)
    assert got.column("sr_wcs").to_pylist() == [None]
    assert got.column("sr_image").null_count == 0


def test_the_readme_example_writes_a_super_resolved_cutout_astropy_places_on_the_sky(lensmae_cli, tmp_path,
                                                                                     monkeypatch):
    hdu = CUTOUTS["sip-33"]
    hdu.writeto(tmp_path / "lr.fits")
    lensmae_cli("predict", "--input", tmp_path / "lr.fits", "--task", "superres", "--out", tmp_path / "pred.parquet")
    out = tmp_path / "sr.fits"
    run_readme_example("sr_wcs example", "sr.fits", out, monkeypatch, inputs={"pred.parquet": tmp_path / "pred.parquet"})
    with fits.open(out) as written:
        assert written[0].data.shape == (64, 64)
        assert written[0].header["CTYPE1"] == "RA---TAN-SIP"
        assert_placed_like_the_input(written[0].header, hdu.header)


def test_sr_fits_writes_files_astropy_places_where_the_inputs_were(lensmae_cli, tmp_path):
    for name in ["sin-40-fk5", "sip-33"]:
        CUTOUTS[name].writeto(tmp_path / f"{name}.fits")
        predictions = tmp_path / f"{name}.parquet"
        lensmae_cli("predict", "--input", tmp_path / f"{name}.fits", "--task", "superres", "--out", predictions)
        row = pq.read_table(predictions).to_pylist()[0]
        lensmae_cli("sr-fits", predictions, "--out", tmp_path / name)
        with fits.open(tmp_path / name / "row-0.fits") as written:
            assert np.array_equal(written[0].data.ravel(), np.asarray(row["sr_image"], dtype=np.float32))
            assert written[0].header["STATUS"] == row["status"] == "ok"
            assert_placed_like_the_input(written[0].header, CUTOUTS[name].header)
    # The same from Python, on predict's FITS output: the same file, byte for byte.
    predictions = tmp_path / "pred.fits"
    lensmae_cli("predict", "--input", tmp_path / "sip-33.fits", "--task", "superres", "--out", predictions)
    summary = lensmae.write_sr_fits(predictions, tmp_path / "from-python")
    assert summary == {"rows": 1, "written": 1, "placed_on_sky": 1, "without_sr_image": 0}
    assert (tmp_path / "from-python" / "row-0.fits").read_bytes() == (tmp_path / "sip-33" / "row-0.fits").read_bytes()
    with pytest.raises(lensmae.LensmaeError, match="already exists"):
        lensmae.write_sr_fits(predictions, tmp_path / "from-python")
