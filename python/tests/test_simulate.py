"""lensmae.simulate against `lensmae simulate`."""
import numpy as np
import pytest
import pyarrow.parquet as pq

import lensmae


def test_simulate_equals_the_cli(lensmae_cli, tmp_path):
    lensmae_cli("simulate", "--preset", "deeplense-model2", "--n-per-class", "4", "--seed", "7", "--out", tmp_path, "-q")
    want = pq.read_table(tmp_path / "dataset.parquet")
    got = lensmae.simulate("deeplense-model2", n_per_class=4, seed=7)
    assert got.column_names == want.column_names
    for name in want.column_names:
        assert got.column(name).combine_chunks().equals(want.column(name).combine_chunks()), name
    images = got.column("image").combine_chunks().to_numpy_ndarray()
    assert images.shape == (12, 64, 64) and np.isfinite(images).all()
    assert got.schema.field("image").type.extension_name == "arrow.fixed_shape_tensor"


def test_superres_pairs_and_presets():
    pairs = lensmae.simulate("deeplense-model2", n_per_class=1, seed=3, task="superres", factor=4)
    lr = pairs.column("lr").combine_chunks().to_numpy_ndarray()
    hr = pairs.column("hr").combine_chunks().to_numpy_ndarray()
    assert lr.shape == (3, 16, 16) and hr.shape == (3, 64, 64)
    names = [name for name, _ in lensmae.presets()]
    assert "survey" in names and "deeplense-model2" in names


def test_refitted_detectability_matches_the_cli(lensmae_cli, tmp_path):
    lensmae_cli("simulate", "--preset", "survey", "--n-per-class", "2", "--seed", "5", "--refit-detectability",
                "--out", tmp_path, "-q")
    want = pq.read_table(tmp_path / "dataset.parquet").column("sub_snr_refit")
    got = lensmae.simulate("survey", n_per_class=2, seed=5, refit_detectability=True)
    assert got.column("sub_snr_refit").combine_chunks().equals(want.combine_chunks())
    refit = np.asarray(got.column("sub_snr_refit"))
    assert (refit <= np.asarray(got.column("sub_snr"))).all() and refit.max() > 0
    assert lensmae.simulate("survey", n_per_class=1, seed=5).column("sub_snr_refit").null_count == 3


def test_a_recipe_extending_a_preset_changes_only_what_it_names(tmp_path):
    recipe = tmp_path / "neighbours.toml"
    recipe.write_text('extends = "survey"\n[neighbour]\nprobability = 0.5\nmagnitude = 20.0\ndistance = 2.5\n'
                      'r_sersic = 0.3\nn_sersic = 1.0\n')
    got = lensmae.simulate(n_per_class=4, seed=5, config=str(recipe))
    plain = lensmae.simulate("survey", n_per_class=4, seed=5)
    star = got.column("neighbour_star").to_pylist()
    with_one = np.array([s is not None for s in star])
    assert 0 < with_one.sum() < len(star)
    # Every lens is the preset's lens of the same seed and index (its noise is drawn anew).
    for name in ("lens_theta_e", "source_magnitude", "exposure_time", "subhalo_mass_total"):
        assert got.column(name).equals(plain.column(name)), name
    assert np.array_equal(np.asarray(got.column("sub_snr"))[~with_one], np.asarray(plain.column("sub_snr"))[~with_one])
    images, plain_images = (t.column("image").combine_chunks().to_numpy_ndarray() for t in (got, plain))
    added = (images - plain_images).reshape(len(star), -1).sum(axis=1)
    # A magnitude-20 neighbour adds thousands of counts; a new noise realisation averages out.
    assert (added[with_one] > 10 * np.abs(added[~with_one]).max()).all(), added
    bad = tmp_path / "bad.toml"
    bad.write_text('extends = "surveys"\n')
    with pytest.raises(lensmae.LensmaeError, match="bad.toml"):
        lensmae.simulate(n_per_class=1, config=str(bad))


def test_a_table_larger_than_the_machines_memory_is_refused_before_rendering():
    with pytest.raises(lensmae.LensmaeError, match="more than this machine's"):
        lensmae.simulate(n_per_class=10**12)
