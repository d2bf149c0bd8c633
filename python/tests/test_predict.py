"""Model.predict against the CLI, on every kind of Arrow input."""
import _thread
import pathlib
import pickle
import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import lensmae


def cli_predictions(lensmae_cli, tmp_path, source, *args):
    out = tmp_path / "cli.parquet"
    lensmae_cli("predict", "--input", source, "--out", out, "--overwrite", "--batch-size", "64", *args)
    return pq.read_table(out)


def test_predictions_equal_the_cli_bit_for_bit(lensmae_cli, fixtures, tmp_path):
    source = fixtures / "catalog" / "deeplense-model2-12.parquet"
    want = cli_predictions(lensmae_cli, tmp_path, source)
    model = lensmae.load_model()
    got = model.predict(pq.read_table(source))
    assert got.column_names == want.column_names
    assert got.num_rows == want.num_rows == 12
    # Same values bit for bit, column by column (metadata aside).
    for name in want.column_names:
        assert got.column(name).combine_chunks().equals(want.column(name).combine_chunks()), name
    assert model.class_names == ["axion", "cdm", "no_sub"]


def test_dihedral_tta_equals_the_cli_and_is_recorded(lensmae_cli, fixtures, tmp_path):
    source = fixtures / "catalog" / "deeplense-model2-12.parquet"
    survey = "bundled:survey-classifier"
    want = cli_predictions(lensmae_cli, tmp_path, source, "--model", survey, "--tta", "dihedral")
    got = lensmae.load_model(survey, tta="dihedral").predict(pq.read_table(source))
    for name in ["p_axion", "p_cdm", "p_no_sub", "ood_score", "status"]:
        assert got.column(name).combine_chunks().equals(want.column(name).combine_chunks()), name
    assert want.schema.metadata[b"lensmae:tta"] == b"dihedral"
    one_view = lensmae.load_model(survey).predict(pq.read_table(source))
    assert got.column("p_cdm").to_pylist() != one_view.column("p_cdm").to_pylist()
    # The out-of-domain score is of the cutout as given either way.
    assert got.column("ood_score").equals(one_view.column("ood_score"))
    with pytest.raises(lensmae.LensmaeError, match="tta `quarter`: one of none, dihedral"):
        lensmae.load_model(tta="quarter")
    # The bundled Model II classifier never saw a turned sky.
    with pytest.raises(lensmae.LensmaeError, match="trained without dihedral augmentation"):
        lensmae.load_model(tta="dihedral")


def test_table_batches_of_any_size_give_the_same_rows(fixtures):
    table = pq.read_table(fixtures / "catalog" / "deeplense-model2-12.parquet")
    model = lensmae.load_model(batch_size=5)
    whole = model.predict(table)
    # The same rows cut into uneven record batches: re-cut to batches of 5 inside.
    pieces = pa.Table.from_batches(table.to_batches(max_chunksize=3) + [], schema=table.schema)
    assert model.predict(pieces).equals(whole)
    reader = pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=7))
    assert model.predict(reader).equals(whole)


def test_polars_and_pandas_frames_go_in(fixtures):
    pl = pytest.importorskip("polars")
    pd = pytest.importorskip("pandas")
    source = fixtures / "catalog" / "deeplense-model2-12.parquet"
    table = pq.read_table(source, columns=["id", "image"])
    model = lensmae.load_model()
    want = model.predict(table)
    # Polars and pandas carry the tensor column as plain lists of 64x64 floats: square,
    # so no shape to give.
    frame = pl.read_parquet(source, columns=["id", "image"])
    from_polars = model.predict(frame)
    panda = table.to_pandas()
    from_pandas = model.predict(panda)
    for got in (from_polars, from_pandas):
        assert got.num_rows == 12
        for name in ["id", "p_axion", "p_cdm", "p_no_sub", "pred_class", "status"]:
            assert got.column(name).to_pylist() == want.column(name).to_pylist(), name


def test_polars_2d_arrays_string_ids_and_pandas_nan_pixels(fixtures):
    pl = pytest.importorskip("polars")
    pd = pytest.importorskip("pandas")
    np = pytest.importorskip("numpy")
    table = pq.read_table(fixtures / "catalog" / "deeplense-model2-12.parquet", columns=["id", "image"])
    images = table.column("image").combine_chunks().to_numpy_ndarray()
    model = lensmae.load_model()
    want = model.predict(table)
    names = [f"lens-{i}" for i in range(12)]
    # polars' own image type, a 2-D Array column (no shape to give), beside its
    # strings (exported as string_view).
    frame = pl.DataFrame({"name": names, "image": images})
    assert frame.schema["image"] == pl.Array(pl.Float32, (64, 64))
    got = model.predict(frame, id_col="name")
    assert got.column("name").to_pylist() == names
    for name in ["p_axion", "p_cdm", "p_no_sub", "status"]:
        assert got.column(name).to_pylist() == want.column(name).to_pylist(), name
    # A NaN pixel of a pandas frame arrives as a null: read as NaN, not as a zero.
    rows = [image.ravel().copy() for image in images]
    rows[3][100] = np.nan
    panda = pd.DataFrame({"id": range(12), "image": rows})
    with pytest.raises(lensmae.LensmaeError, match="row 3 .*1 non-finite pixels"):
        model.predict(panda)
    skipped = lensmae.load_model(nan_policy="skip-row").predict(panda)
    status = skipped.column("status").to_pylist()
    assert status[3].startswith("skipped") and status[:3] == want.column("status").to_pylist()[:3]


def test_empty_and_one_row_tables(fixtures):
    table = pq.read_table(fixtures / "catalog" / "deeplense-model2-12.parquet")
    model = lensmae.load_model()
    empty = model.predict(table.slice(0, 0))
    assert empty.num_rows == 0 and "p_cdm" in empty.column_names
    one = model.predict(table.slice(4, 1))
    assert one.num_rows == 1 and one.column("id").to_pylist() == table.column("id").to_pylist()[4:5]


def test_errors_are_python_exceptions_with_lensmaes_message(fixtures):
    table = pq.read_table(fixtures / "catalog" / "deeplense-model2-12.parquet")
    model = lensmae.load_model()
    with pytest.raises(lensmae.LensmaeError, match="no column `nope`"):
        model.predict(table, image_col="nope")
    with pytest.raises(lensmae.LensmaeError, match="No such file"):
        lensmae.load_model("missing.safetensors")
    with pytest.raises(lensmae.LensmaeError, match="nan_policy"):
        lensmae.load_model(nan_policy="ignore")


def test_models_are_independent_and_callable_from_threads(fixtures):
    from concurrent.futures import ThreadPoolExecutor

    table = pq.read_table(fixtures / "catalog" / "deeplense-model2-12.parquet")
    small = lensmae.load_model(threads=1, batch_size=4)
    other = lensmae.load_model(threads=2, batch_size=4)
    want = small.predict(table)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda m: m.predict(table), [small, other, small, other]))
    for got in results:
        assert got.column("p_axion").equals(want.column("p_axion"))


def test_help_explains_the_columns():
    assert "out_of_domain" in lensmae.Model.predict.__doc__ or "PREDICTION_COLUMNS" in lensmae.Model.predict.__doc__
    assert "ood_score" in lensmae.PREDICTION_COLUMNS


def test_cutouts_of_another_size_and_scale_are_regridded(fixtures):
    np = pytest.importorskip("numpy")
    table = pq.read_table(fixtures / "catalog" / "deeplense-model2-12.parquet", columns=["id", "image"])
    images = table.column("image").combine_chunks().to_numpy_ndarray()
    want = lensmae.load_model().predict(table)
    # Zero-padded to 80x80, no recorded scale: refused, then cropped back exactly.
    padded = np.zeros((12, 80, 80), dtype=np.float32)
    padded[:, 8:72, 8:72] = images
    frame = pa.table({"id": table.column("id"), "image": pa.array(list(padded.reshape(12, -1)))})
    with pytest.raises(lensmae.LensmaeError, match='give `pixel_scale=ARCSEC` to resample them, or `pixel_scale="model"`'):
        lensmae.load_model().predict(frame, shape=(80, 80))
    cropped = lensmae.load_model(pixel_scale="model").predict(frame, shape=(80, 80))
    assert cropped.column("p_cdm").equals(want.column("p_cdm"))
    assert set(cropped.column("geometry").to_pylist()) == {"cropped to 64x64"}
    # Quarter pixels at half the scale, given per row: summed back exactly, flagged 2x finer.
    finer = np.repeat(np.repeat(images, 2, axis=1), 2, axis=2) / 4
    frame = pa.table({"image": pa.array(list(finer.reshape(12, -1).astype(np.float32))),
                      "scale": pa.array([0.0505] * 12)})
    got = lensmae.load_model().predict(frame, shape=(128, 128), pixel_scale_col="scale")
    assert got.column("p_cdm").equals(want.column("p_cdm"))
    assert set(got.column("status").to_pylist()) == {"out_of_domain"}
    assert got.column("pixel_scale").to_pylist() == [0.0505] * 12


def test_the_residual_classifier_fits_each_cutout_as_the_cli_does(lensmae_cli, tmp_path):
    lenses = lensmae.simulate("survey", n_per_class=1, seed=5)
    source = tmp_path / "lenses.parquet"
    pq.write_table(lenses, source)
    residual = "bundled:survey-residual-classifier"
    want = cli_predictions(lensmae_cli, tmp_path, source, "--model", residual, "--keep", "id")
    got = lensmae.load_model(residual).predict(lenses, keep=["id"])
    # The observation columns it read are carried, and what the fit found is written.
    for name in ["psf_fwhm", "exposure_time", "fit_chi2", "fit_core_chi2", "fit_theta_e", "fit_axis_ratio", "fit_position_angle",
                 "fit_lens_x", "fit_lens_y", "fit_shear", "fit_shear_angle", "fit_lens_light_mag", "fit_source_mag",
                 "fit_theta_e_err", "fit_lens_light_mag_err", "fit_source_mag_err", "fit_lens_ra", "fit_lens_dec", "fit_position_angle_sky", "fit_shear_angle_sky",
                 "fit_refit_spread", "refit_answer_spread", "p_axion", "p_cdm", "p_no_sub", "status"]:
        assert got.column(name).combine_chunks().equals(want.column(name).combine_chunks()), name
    # One value for every cutout instead of the columns.
    fixed = lensmae.load_model(residual, psf_fwhm=0.17, exposure_time=2200.0)
    without = lenses.drop_columns(["psf_fwhm", "exposure_time"])
    assert fixed.predict(without).column("status").to_pylist() != [None] * 3
    # The error names the parameters, not the command line's options.
    with pytest.raises(lensmae.LensmaeError, match="give one value with psf_fwhm, or name the column with psf_fwhm_col"):
        lensmae.load_model(residual).predict(without)
    # Columns of other names.
    renamed = lenses.rename_columns(["seeing" if n == "psf_fwhm" else "exptime" if n == "exposure_time" else n
                                     for n in lenses.column_names])
    named = lensmae.load_model(residual, psf_fwhm_col="seeing", exposure_time_col="exptime").predict(renamed)
    for name in ["p_axion", "p_cdm", "p_no_sub", "status"]:
        assert named.column(name).combine_chunks().equals(want.column(name).combine_chunks()), name
    # The same cutouts in microjanskys (AB zero point 23.9, the recipe's 25.72): out of
    # the domain as they are, answered as the originals with their zero point, which
    # travels with the model to Dask, Spark and Ray workers (it pickles as its arguments).
    images = lenses.column("image").combine_chunks().to_numpy_ndarray() * 10 ** (-0.4 * (25.72 - 23.9))
    microjansky = lenses.set_column(lenses.column_names.index("image"), "image",
                                    pa.FixedShapeTensorArray.from_numpy_ndarray(images.astype("float32")))
    assert set(lensmae.load_model(residual).predict(microjansky).column("status").to_pylist()) == {"out_of_domain"}
    converted = pickle.loads(pickle.dumps(lensmae.load_model(residual, zero_point=23.9))).predict(microjansky)
    assert converted.column("status").to_pylist() == want.column("status").to_pylist()
    for name in ["p_axion", "p_cdm", "p_no_sub"]:
        assert np.allclose(converted.column(name).to_numpy(), want.column(name).to_numpy(), atol=1e-4), name
    with pytest.raises(lensmae.LensmaeError, match="zero_point.*or zero_point_col"):
        lensmae.load_model(residual, zero_point=23.9, zero_point_col="MAGZERO")
    # An image column that states its unit (`unit` in its field's metadata, as a FITS
    # BUNIT) needs no zero point: microjanskys fix theirs, and `fit_zero_point` says so.
    position = microjansky.column_names.index("image")
    stated_schema = microjansky.schema.set(position, microjansky.schema.field("image").with_metadata({"unit": "uJy"}))
    stated = pa.Table.from_arrays(microjansky.columns, schema=stated_schema)
    answered = lensmae.load_model(residual).predict(stated)
    assert answered.column("status").to_pylist() == want.column("status").to_pylist()
    assert answered.column("fit_zero_point").to_pylist() == [23.9] * 3
    assert want.column("fit_zero_point").to_pylist() == [None] * 3
    for name in ["p_axion", "p_cdm", "p_no_sub"]:
        assert np.allclose(answered.column(name).to_numpy(), want.column(name).to_numpy(), atol=1e-4), name
    # A column of noise maps (sigma per pixel, as the images) weights the fit as the CLI's
    # --noise-col does: here a sky twice the recipe's, which the maps say and the fit hears.
    exposure = np.asarray(lenses.column("exposure_time").to_pylist())
    sky = 10 ** (-0.4 * (22.3 - 25.72)) * 0.101 ** 2  # Euclid VIS wide: e-/s per pixel
    sigma = np.sqrt(2 * (sky / exposure + 4 * 4.2 ** 2 / exposure ** 2))
    noisier = lenses.column("image").combine_chunks().to_numpy_ndarray() + np.random.default_rng(3).normal(
        0.0, sigma[:, None, None] / np.sqrt(2), (3, 64, 64))
    maps = np.broadcast_to(sigma[:, None, None], (3, 64, 64)).astype("float32")
    brighter = lenses.set_column(position, "image", pa.FixedShapeTensorArray.from_numpy_ndarray(noisier.astype("float32")))
    brighter = brighter.append_column("rms", pa.FixedShapeTensorArray.from_numpy_ndarray(maps))
    source = tmp_path / "brighter.parquet"
    pq.write_table(brighter, source)
    want = cli_predictions(lensmae_cli, tmp_path, source, "--model", residual, "--keep", "id", "--noise-col", "rms")
    got = lensmae.load_model(residual).predict(brighter, keep=["id"], noise_col="rms")
    assert got.column("fit_noise_map").to_pylist() == [True] * 3
    for name in ["fit_chi2", "p_axion", "p_cdm", "p_no_sub", "status"]:
        assert got.column(name).combine_chunks().equals(want.column(name).combine_chunks()), name
    assert all(0.8 < c < 1.25 for c in got.column("fit_chi2").to_pylist())
    unmapped = lensmae.load_model(residual).predict(brighter)
    assert unmapped.column("fit_noise_map").to_pylist() == [False] * 3
    assert unmapped.column("status").to_pylist() == ["out_of_domain"] * 3


def test_cutouts_through_a_moffat_psf_are_fitted_with_it_as_the_cli_does(lensmae_cli, tmp_path):
    recipe = pathlib.Path(__file__).resolve().parents[2] / "pipelines" / "recipes" / "survey-moffat.toml"
    lenses = lensmae.simulate(config=str(recipe), n_per_class=1, seed=5, classes=["no_sub"])
    betas = lenses.column("psf_beta").to_pylist()
    assert all(2.5 <= b <= 4.0 for b in betas)
    source = tmp_path / "moffat.parquet"
    pq.write_table(lenses, source)
    residual = "bundled:survey-residual-classifier"
    want = cli_predictions(lensmae_cli, tmp_path, source, "--model", residual, "--keep", "id",
                           "--psf-moffat-beta-col", "psf_beta")
    model = pickle.loads(pickle.dumps(lensmae.load_model(residual, psf_moffat_beta_col="psf_beta")))
    got = model.predict(lenses, keep=["id"])
    for name in ["fit_chi2", "fit_core_chi2", "p_axion", "p_cdm", "p_no_sub", "status"]:
        assert got.column(name).combine_chunks().equals(want.column(name).combine_chunks()), name
    # Fitted as a Gaussian of the FWHM alone, the wings stay in the residual's core.
    gaussian = lensmae.load_model(residual).predict(lenses)
    assert gaussian.column("fit_core_chi2").to_pylist()[0] > got.column("fit_core_chi2").to_pylist()[0]
    with pytest.raises(lensmae.LensmaeError, match="psf_moffat_beta"):
        lensmae.load_model(residual, psf_moffat_beta=1.0)
    # The same Moffat as an image sampled three times finer than the cutouts, with its scale.
    fwhm, beta = lenses.column("psf_fwhm")[0].as_py() / 0.101 * 3, betas[0]
    alpha = fwhm / (2 * np.sqrt(2 ** (1 / beta) - 1))
    r2 = (np.arange(63) - 31)[:, None] ** 2 + (np.arange(63) - 31)[None, :] ** 2
    fine = (1 + r2 / alpha ** 2) ** -beta
    image = lensmae.load_model(residual, psf_image=fine, psf_image_scale=0.101 / 3).predict(lenses)
    assert abs(image.column("fit_chi2")[0].as_py() / got.column("fit_chi2")[0].as_py() - 1) < 0.01
    assert image.column("fit_core_chi2")[0].as_py() < gaussian.column("fit_core_chi2")[0].as_py()
    with pytest.raises(lensmae.LensmaeError, match="psf_image_scale"):
        lensmae.load_model(residual, psf_image_scale=0.05)


def test_a_keyboard_interrupt_stops_a_residual_classifiers_fits():
    # 90 survey cutouts: about a minute of smooth-lens fits on 2 cores, in one batch.
    lenses = lensmae.simulate("survey", n_per_class=30, seed=5)
    model = lensmae.load_model("bundled:survey-residual-classifier")
    interrupt = threading.Timer(1.0, _thread.interrupt_main)  # as Ctrl-C would, a second in
    started = time.monotonic()
    interrupt.start()
    with pytest.raises(KeyboardInterrupt):
        model.predict(lenses)
    # Answered once the fits in progress end, not after the other ~85.
    assert time.monotonic() - started < 20
    # The model still answers.
    assert model.predict(lenses.slice(0, 1)).column("status").to_pylist() != [None]


def test_a_partition_without_a_single_image_gives_each_row_its_reason():
    # Spark, Dask and Ray hand over empty partitions (to learn the output's schema)
    # and may hand over one of null images: no shape to take from a first image,
    # and still one row out per row in, not an error for the whole partition.
    model = lensmae.load_model()
    images = pa.array([None, None], pa.list_(pa.float32()))
    got = model.predict(pa.table({"id": [4, 5], "image": images}))
    assert got.column("id").to_pylist() == [4, 5]
    assert got.column("status").to_pylist() == ["skipped: null image"] * 2
    empty = model.predict(pa.table({"id": pa.array([], pa.int64()), "image": pa.array([], pa.list_(pa.float32()))}))
    assert empty.num_rows == 0 and empty.schema == got.schema
    # Where an image says the table's shape, it is the table's, not the model's.
    with pytest.raises(lensmae.LensmaeError, match="10 values per row is not square"):
        model.predict(pa.table({"image": pa.array([None, [0.5] * 10], pa.list_(pa.float32()))}))


def test_pyarrow_datasets_scanners_and_polars_lazy_frames_are_read(fixtures, tmp_path):
    import pyarrow.dataset as ds

    pl = pytest.importorskip("polars")
    source = fixtures / "catalog" / "deeplense-model2-12.parquet"
    table = pq.read_table(source, columns=["id", "label", "image"])
    model = lensmae.load_model()
    want = model.predict(table)
    pq.write_to_dataset(table, tmp_path / "by-label", partition_cols=["label"])
    dataset = ds.dataset(tmp_path / "by-label", format="parquet", partitioning="hive")
    for data in [dataset, dataset.scanner(columns=["id", "image"])]:
        got = model.predict(data).sort_by("id")
        for name in ["id", "p_axion", "p_cdm", "p_no_sub", "status"]:
            assert got.column(name).to_pylist() == want.column(name).to_pylist(), name
    lazy = pl.scan_parquet(source).select("id", "image")
    assert model.predict(lazy).column("p_cdm").to_pylist() == want.column("p_cdm").to_pylist()
