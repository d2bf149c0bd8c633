"""What a smooth-lens refit leaves of the substructure signal, in the numbers RESULTS.md
quotes: per class, `sub_snr` against `sub_snr_refit`; for the vortex, by its
half-length over the Einstein radius; the goal's subset (`sub_snr` >= 10) and how much
of it a smooth lens imitates; and the best AUC an observer who knows the smooth-lens
family could reach there, Phi(`sub_snr_refit` / sqrt 2) averaged over the lenses (the
AUC of telling one lens from its best smooth twin under Gaussian noise), and the macro
AUC over the three classes that observer would reach on the goal subset if it also told
every `axion` from every `cdm` lens (an optimistic bound: the goal's own figure).

    python bench/refit_summary.py DATASET.parquet

DATASET: a `lensmae simulate --refit-detectability` Parquet file of the `survey`
preset (e.g. runs/survey/heldout/dataset.parquet of `pipelines/survey.toml`).
Needs numpy, pyarrow and pandas (the table is read into a pandas DataFrame).
"""
import math
import sys

import numpy as np
import pyarrow.parquet as pq

# The recipe's vortex half-length times the axion mass, arcsec eV.
VORTEX_LENGTH_CONSTANT = 3e-24


def phi(x):
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def main(path):
    columns = ["label", "sub_snr", "sub_snr_refit", "axion_mass", "lens_theta_e", "source_magnitude"]
    t = pq.read_table(path, columns=columns).to_pandas()
    if t.sub_snr_refit.isna().all():
        sys.exit(f"{path}: no sub_snr_refit (simulate with --refit-detectability)")
    print(f"{path}: {len(t)} lenses")
    for name in ["axion", "cdm"]:
        g = t[t.label == name]
        p10, p90 = np.percentile(g.sub_snr_refit, [10, 90])
        print(f"{name}: median sub_snr {g.sub_snr.median():.2f} -> sub_snr_refit {g.sub_snr_refit.median():.2f} "
              f"(10th-90th {p10:.2f}-{p90:.2f}); >= 10: {(g.sub_snr >= 10).mean():.1%} -> "
              f"{(g.sub_snr_refit >= 10).mean():.1%}")
    axion = t[t.label == "axion"]
    ratio = VORTEX_LENGTH_CONSTANT / axion.axion_mass / axion.lens_theta_e
    for low, high in [(0.0, 0.3), (0.3, 1.0), (1.0, np.inf)]:
        inside = axion[(ratio >= low) & (ratio < high)]
        print(f"vortex half-length / theta_E in [{low}, {high}): {len(inside)} lenses, median sub_snr_refit "
              f"{inside.sub_snr_refit.median():.2f}, >= 10: {(inside.sub_snr_refit >= 10).mean():.1%}")
    detectable = axion[axion.sub_snr_refit >= 10]
    print(f"source magnitude median: axion with sub_snr_refit >= 10 {detectable.source_magnitude.median():.2f}, "
          f"all axion {axion.source_magnitude.median():.2f}")
    for name in ["axion", "cdm"]:
        g = t[t.label == name]
        subset = g[g.sub_snr >= 10]
        ideal = np.mean([phi(r / math.sqrt(2.0)) for r in subset.sub_snr_refit])
        ideal_all = np.mean([phi(r / math.sqrt(2.0)) for r in g.sub_snr_refit])
        print(f"goal subset (sub_snr >= 10), {name}: {len(subset)} lenses; sub_snr_refit < 1: "
              f"{(subset.sub_snr_refit < 1).mean():.1%}, < 3: {(subset.sub_snr_refit < 3).mean():.1%}, "
              f"< 10: {(subset.sub_snr_refit < 10).mean():.1%}; ideal-observer AUC {ideal:.3f} "
              f"(all lenses of the class {ideal_all:.3f})")


    # One-vs-rest over the goal subset: a lens with substructure outranks a `no_sub` lens with
    # its twin probability; `axion` against `cdm` pairs are counted as always told apart.
    sub = t[(t.label != "no_sub") & (t.sub_snr >= 10)]
    twin = {name: np.array([phi(r / math.sqrt(2.0)) for r in sub[sub.label == name].sub_snr_refit])
            for name in ["axion", "cdm"]}
    n_none = int((t.label == "no_sub").sum())
    n_axion, n_cdm = len(twin["axion"]), len(twin["cdm"])
    per_class = {
        "axion": (n_none * twin["axion"].mean() + n_cdm) / (n_none + n_cdm),
        "cdm": (n_none * twin["cdm"].mean() + n_axion) / (n_none + n_axion),
        "no_sub": np.concatenate([twin["axion"], twin["cdm"]]).mean(),
    }
    print(f"goal subset ({n_axion} axion, {n_cdm} cdm, {n_none} no_sub): that observer's macro AUC at most "
          f"{np.mean(list(per_class.values())):.3f} ("
          + ", ".join(f"{c} {a:.3f}" for c, a in per_class.items()) + ")")


if __name__ == "__main__":
    main(*sys.argv[1:])
