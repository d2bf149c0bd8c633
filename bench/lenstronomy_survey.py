"""The `survey` preset's recipe rendered by lenstronomy 1.14 (SimAPI, Euclid VIS wide
survey): a second, independent simulator of the same lenses.

Every parameter is drawn from the distributions of `src/sim/presets/survey.toml`
with numpy (not lensmae's random streams), a SimAPI is built per image (each image
has its own lens list and PSF), and the same work lensmae's `simulate` does per
image is done: the noise-free image with the deflector's light, the smooth image
without substructure for sub_snr, and a noise realisation.

    python bench/lenstronomy_survey.py bench [images_per_class] [repeats]
        images/s per class, single process, one thread, best of repeats (JSON)
    python bench/lenstronomy_survey.py write N_PER_CLASS SEED OUT.parquet
        a labelled dataset in lensmae's layout (image tensor column, label,
        label_idx, sub_snr and the drawn parameters, the smooth lens's among them:
        lensmae's column names, lenstronomy's conventions, which are lensmae's), for
        evaluating models and their fits on images lensmae did not render (needs pyarrow)
    python bench/lenstronomy_survey.py write N_PER_CLASS SEED OUT.parquet moffat:BETA
        the same lenses (the same seed draws the same parameters and noise seeds)
        seen through a Moffat PSF of that beta and the drawn FWHM instead of the
        Gaussian (psf_type='PIXEL', 21x21 pixels, as lensmae's PsfKernel::moffat),
        its kernel written per row in a `psf` column: a PSF with wings, as Euclid
        VIS's has
"""
import json
import os
import sys
import time

import lenstronomy
import numpy as np
from astropy.cosmology import FlatLambdaCDM
from lenstronomy.Cosmo.lens_cosmo import LensCosmo
from lenstronomy.SimulationAPI.ObservationConfig.Euclid import Euclid
from lenstronomy.SimulationAPI.sim_api import SimAPI

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "oracle"))
from psf_kernels import moffat_kernel  # noqa: E402

CLASSES = ["axion", "cdm", "no_sub"]  # label_idx order of the preset
NUM_PIX = 64
KERNEL_SIDE = 21
BAND = Euclid(band="VIS", psf_type="GAUSSIAN", coadd_years=6).kwargs_single_band()
LENS_COSMO = LensCosmo(z_lens=0.5, z_source=1.5, cosmo=FlatLambdaCDM(H0=67.7, Om0=0.31))
POINT_MASS_THETA_E_PER_SQRT_MSUN = 1.0 / np.sqrt(np.pi * LENS_COSMO.sigma_crit_angle)


def truncated_normal(rng, mean, sigma, lo, hi):
    while True:
        v = rng.normal(mean, sigma)
        if lo <= v <= hi:
            return float(v)


def draw(cls, rng):
    """Parameters of one image of class `cls`, as the survey preset draws them."""
    p = {"theta_E": rng.uniform(0.8, 1.6),
         "e1": truncated_normal(rng, 0, 0.15, -0.4, 0.4), "e2": truncated_normal(rng, 0, 0.15, -0.4, 0.4),
         "center_x": rng.normal(0, 0.03), "center_y": rng.normal(0, 0.03)}
    shear = {"gamma1": truncated_normal(rng, 0, 0.04, -0.15, 0.15),
             "gamma2": truncated_normal(rng, 0, 0.04, -0.15, 0.15)}
    source = {"magnitude": rng.uniform(21.0, 24.5), "R_sersic": float(np.exp(rng.uniform(np.log(0.1), np.log(0.5)))),
              "n_sersic": rng.uniform(0.7, 3.0), "e1": truncated_normal(rng, 0, 0.2, -0.5, 0.5),
              "e2": truncated_normal(rng, 0, 0.2, -0.5, 0.5),
              "center_x": rng.uniform(-0.4, 0.4), "center_y": rng.uniform(-0.4, 0.4)}
    e1 = p["e1"] + truncated_normal(rng, 0, 0.05, -0.2, 0.2)
    e2 = p["e2"] + truncated_normal(rng, 0, 0.05, -0.2, 0.2)
    modulus = np.hypot(e1, e2)
    if modulus > 0.9:
        e1, e2 = e1 * 0.9 / modulus, e2 * 0.9 / modulus
    light = {"magnitude": rng.uniform(18.5, 21.0), "R_sersic": rng.uniform(0.4, 1.0), "n_sersic": rng.uniform(3.0, 5.0),
             "e1": e1, "e2": e2, "center_x": p["center_x"] + rng.normal(0, 0.02),
             "center_y": p["center_y"] + rng.normal(0, 0.02)}
    models, kwargs, masses = [], [], []
    if cls == "cdm":
        b1 = -0.9  # slope -1.9 + 1
        for _ in range(rng.poisson(25.0)):
            m = (1e7 ** b1 + (1e10 ** b1 - 1e7 ** b1) * rng.uniform()) ** (1 / b1)
            r, phi = np.sqrt(rng.uniform(0, 2.5 ** 2)), rng.uniform(0, 2 * np.pi)
            rs, alpha_rs = LENS_COSMO.nfw_physical2angle(M=m, c=truncated_normal(rng, 15, 4, 5, 30))
            models.append("TNFW")
            kwargs.append({"Rs": rs, "alpha_Rs": alpha_rs, "r_trunc": rs * rng.uniform(5, 20),
                           "center_x": p["center_x"] + r * np.sin(phi), "center_y": p["center_y"] + r * np.cos(phi)})
            masses.append(m)
    elif cls == "axion":
        total = float(np.exp(rng.uniform(np.log(1e10), np.log(5e10))))
        half = 3e-24 / 10 ** rng.uniform(-24, -22)
        angle = rng.uniform(0, 2 * np.pi)
        theta_e = POINT_MASS_THETA_E_PER_SQRT_MSUN * np.sqrt(total / 100)
        for t in np.linspace(-half, half, 100):
            models.append("POINT_MASS")
            kwargs.append({"theta_E": theta_e, "center_x": p["center_x"] + t * np.cos(angle),
                           "center_y": p["center_y"] + t * np.sin(angle)})
    return {"lens": p, "shear": shear, "source": source, "light": light, "sub_models": models, "sub_kwargs": kwargs,
            "sub_masses": masses, "psf_fwhm": rng.uniform(0.15, 0.19), "exposure_time": rng.uniform(1700, 2800)}


def render(cls, rng, moffat_beta=None):
    """(noisy image, sub_snr, drawn parameters) of one image of class `cls`; with
    `moffat_beta`, through a Moffat PSF of the drawn FWHM (its kernel in d["psf"])."""
    d = draw(cls, rng)
    band = dict(BAND, seeing=d["psf_fwhm"], truncation=4.0, exposure_time=d["exposure_time"] / 4, num_exposures=4)
    if moffat_beta is not None:
        d["psf"] = moffat_kernel(d["psf_fwhm"] / BAND["pixel_scale"], moffat_beta, KERNEL_SIDE)
        band.update(psf_type="PIXEL", kernel_point_source=d["psf"])
    kwargs_model = {"lens_model_list": ["SIE", "SHEAR"] + d["sub_models"],
                    "source_light_model_list": ["SERSIC_ELLIPSE"], "lens_light_model_list": ["SERSIC_ELLIPSE"]}
    sim = SimAPI(num_pix=NUM_PIX, kwargs_single_band=band, kwargs_model=kwargs_model)
    image_model = sim.image_model_class({"supersampling_factor": 2, "supersampling_convolution": False})
    kwargs_light, kwargs_source, _ = sim.magnitude2amplitude([dict(d["light"])], [dict(d["source"])])
    main = [d["lens"], d["shear"]]
    image = image_model.image(main + d["sub_kwargs"], kwargs_source, kwargs_light)
    variance = sim.estimate_noise(image) ** 2
    if d["sub_models"]:
        smooth = sim.image_model_class({"supersampling_factor": 2, "supersampling_convolution": False})
        no_sub = [dict(k, theta_E=0.0) if "theta_E" in k else dict(k, alpha_Rs=0.0) for k in d["sub_kwargs"]]
        smooth_image = smooth.image(main + no_sub, kwargs_source, kwargs_light)
        sub_snr = float(np.sqrt(np.sum((image - smooth_image) ** 2 / variance)))
    else:
        sub_snr = 0.0
    noisy = image + sim.noise_for_model(image, seed=int(rng.integers(2 ** 31)))
    return noisy, sub_snr, d


def bench(n, repeats):
    rng = np.random.default_rng(0)
    results = {}
    for cls in ["no_sub", "cdm", "axion"]:
        render(cls, rng)  # warm-up
        best = 0.0
        for _ in range(repeats):
            t = time.perf_counter()
            for _ in range(n):
                render(cls, rng)
            best = max(best, n / (time.perf_counter() - t))
        results[cls] = {"images_per_s": best}
    print(json.dumps({"tool": "lenstronomy", "version": lenstronomy.__version__, "recipe": "survey", "threads": 1,
                      "images": n, "repeats": repeats, "results": results}))


def write(n_per_class, seed, out, psf=None):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    moffat_beta = None
    if psf is not None:
        kind, _, beta = psf.partition(":")
        if kind != "moffat" or not beta:
            raise SystemExit(f"PSF `{psf}`: moffat:BETA")
        moffat_beta = float(beta)
    kernels = []
    rows = {k: [] for k in ["id", "label", "label_idx", "image", "sub_snr", "lens_theta_e", "source_magnitude",
                            "lens_light_magnitude", "subhalo_mass_max", "n_subhalos", "psf_fwhm", "exposure_time",
                            "lens_e1", "lens_e2", "lens_center_x", "lens_center_y", "shear_gamma1", "shear_gamma2"]}
    for i in range(n_per_class * len(CLASSES)):
        cls = CLASSES[i % len(CLASSES)]
        image, sub_snr, d = render(cls, rng, moffat_beta)
        if moffat_beta is not None:
            kernels.append(d["psf"].astype(np.float32).ravel())
        for k, v in [("id", i), ("label", cls), ("label_idx", CLASSES.index(cls)),
                     ("image", image.astype(np.float32).ravel()), ("sub_snr", sub_snr),
                     ("lens_theta_e", d["lens"]["theta_E"]), ("source_magnitude", d["source"]["magnitude"]),
                     ("lens_light_magnitude", d["light"]["magnitude"]),
                     ("subhalo_mass_max", max(d["sub_masses"]) if d["sub_masses"] else None),
                     ("n_subhalos", len(d["sub_models"])), ("psf_fwhm", d["psf_fwhm"]),
                     ("exposure_time", d["exposure_time"]), ("lens_e1", d["lens"]["e1"]), ("lens_e2", d["lens"]["e2"]),
                     ("lens_center_x", d["lens"]["center_x"]), ("lens_center_y", d["lens"]["center_y"]),
                     ("shear_gamma1", d["shear"]["gamma1"]), ("shear_gamma2", d["shear"]["gamma2"])]:
            rows[k].append(v)
    tensor = pa.field("image", pa.list_(pa.field("item", pa.float32()), NUM_PIX * NUM_PIX), nullable=False,
                      metadata={"ARROW:extension:name": "arrow.fixed_shape_tensor",
                                "ARROW:extension:metadata": json.dumps({"shape": [NUM_PIX, NUM_PIX]})})
    columns = {k: pa.array(v) for k, v in rows.items() if k != "image"}
    columns["label_idx"] = pa.array(rows["label_idx"], pa.int8())
    columns["image"] = pa.array(rows["image"], tensor.type)
    fields = [tensor if k == "image" else pa.field(k, columns[k].type) for k in rows]
    if moffat_beta is not None:
        columns["psf"] = pa.array(kernels, pa.list_(pa.float32()))
        fields.append(pa.field("psf", columns["psf"].type))
    schema = pa.schema(fields,
                       metadata={"lensmae:class_names": json.dumps(CLASSES),
                                 "lensmae:preset": "survey (lenstronomy %s)%s" % (
                                     lenstronomy.__version__,
                                     "" if moffat_beta is None else ", Moffat PSF beta %g" % moffat_beta),
                                 "lensmae:seed": str(seed), "lensmae:task": "classify"})
    pq.write_table(pa.table([columns[f.name] for f in fields], schema=schema), out)
    print(json.dumps({"wrote": out, "rows": n_per_class * len(CLASSES)}))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "write":
        write(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5] if len(sys.argv) > 5 else None)
    else:
        bench(int(sys.argv[2]) if len(sys.argv) > 2 else 50, int(sys.argv[3]) if len(sys.argv) > 3 else 3)
