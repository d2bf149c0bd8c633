"""Render the DeepLense Model II recipe with lenstronomy 1.9.3, as the public
DeepLenseSim scripts do (SimAPI, Euclid VIS, multi-plane with z_source_convention
2.5), and report images/s per class as JSON. Single process, single thread.

Usage: python bench/lenstronomy_sim.py [images_per_class] [repeats]   (best of repeats)

`render(cls)` is importable (bench/recipe_baseline.py uses it); it draws from the
module's `rng`, which a caller may reseed.
"""
import json
import sys
import time

import numpy as np
from astropy.cosmology import FlatLambdaCDM
from lenstronomy.SimulationAPI.ObservationConfig.Euclid import Euclid
from lenstronomy.SimulationAPI.sim_api import SimAPI
import lenstronomy

THETA_E = 1.2814905676172945
band = Euclid(band="VIS", psf_type="GAUSSIAN", coadd_years=6).kwargs_single_band()
cosmo = FlatLambdaCDM(H0=67.5, Om0=0.309)
rng = np.random.default_rng(0)


def lenses(cls):
    models = ["SIE", "SHEAR"]
    kwargs = [{"theta_E": THETA_E, "e1": 0.1, "e2": 0, "center_x": 0, "center_y": 0.0},
              {"gamma1": 0.05, "gamma2": 0}]
    if cls == "cdm":
        u = rng.uniform(0, 1, 25)
        lo, hi = 1e6 ** 0.1, 1e10 ** 0.1
        for m in (lo + (hi - lo) * u) ** 10:
            r, th = rng.uniform(0.25, 2.0), rng.uniform(0, 2 * np.pi)
            models.append("POINT_MASS")
            kwargs.append({"theta_E": THETA_E * np.sqrt(m / 1e12), "center_x": r * np.sin(th), "center_y": r * np.cos(th)})
    if cls == "axion":
        half = 3e-24 / 10 ** rng.uniform(-24, -22)
        ang = rng.uniform(0, 2 * np.pi)
        for t in np.linspace(-half, half, 100):
            models.append("POINT_MASS")
            kwargs.append({"theta_E": THETA_E * np.sqrt(3e8 / 1e12), "center_x": t * np.cos(ang),
                           "center_y": t * np.sin(ang)})
    return models, kwargs


def render(cls):
    models, kwargs = lenses(cls)
    sx, sy = rng.uniform(-0.35, 0.35, 2)
    source = [{"magnitude": 20, "R_sersic": 0.25, "n_sersic": 1, "e1": -0.1, "e2": 0.1, "center_x": sx, "center_y": sy}]
    kwargs_model = {"lens_model_list": models, "lens_redshift_list": [0.5] * len(models),
                    "source_light_model_list": ["SERSIC_ELLIPSE"], "source_redshift_list": [1.0],
                    "cosmo": cosmo, "z_source_convention": 2.5, "z_source": 1.0}
    # Built per image, as the recipe does: every image has its own lens list.
    sim = SimAPI(numpix=64, kwargs_single_band=band, kwargs_model=kwargs_model)
    image_model = sim.image_model_class({"point_source_supersampling_factor": 1})
    _, kwargs_source, _ = sim.magnitude2amplitude(None, source)
    return 2.0 * image_model.image(kwargs, kwargs_source, None)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    results = {}
    for cls in ["no_sub", "cdm", "axion"]:
        render(cls)  # warm-up
        best = 0.0
        for _ in range(repeats):
            t = time.perf_counter()
            for _ in range(n):
                render(cls)
            best = max(best, n / (time.perf_counter() - t))
        results[cls] = {"images_per_s": best}
    print(json.dumps({"tool": "lenstronomy", "version": lenstronomy.__version__, "threads": 1, "images": n,
                      "repeats": repeats, "results": results}))


if __name__ == "__main__":
    main()
