"""Golden values for the `survey` preset, computed with lenstronomy 1.14's SimAPI
and its Euclid VIS (wide survey) configuration.

One survey-like lens as lensmae's `survey` preset draws them: SIE + shear, four
truncated-NFW subhalos, an elliptical Sersic source given as a magnitude, and the
deflector's own light (an elliptical Sersic given as a magnitude), supersampled 2x,
Gaussian PSF. Written:

- the noise-free image (e-/s per pixel) and the Sersic amplitudes lenstronomy
  derives from the magnitudes with Euclid's zero point (25.72);
- the per-pixel noise variance `estimate_noise(image)**2` (sky + read noise +
  Poisson), the oracle of lensmae's noise model;
- sub_snr = sqrt(sum((I_sub - I_smooth)^2 / sigma^2)), with I_smooth the same lens
  rendered without its subhalos and sigma^2 the variance above;
- the same lens through a pixelated PSF (`psf_type='PIXEL'`: a Moffat profile of
  beta 2.5 and the same FWHM, each pixel the mean of 5x5 samples, 21x21 pixels, as
  `PsfKernel::moffat` builds it), and that kernel.

Run from the repository root:
    python3 -m venv .venv-survey && .venv-survey/bin/pip install -r tests/oracle/requirements-survey.txt
    .venv-survey/bin/python tests/oracle/survey_oracle.py
"""
import json
import os

import lenstronomy
import numpy as np
from astropy.cosmology import FlatLambdaCDM
from lenstronomy.Cosmo.lens_cosmo import LensCosmo
from lenstronomy.SimulationAPI.ObservationConfig.Euclid import Euclid
from lenstronomy.SimulationAPI.sim_api import SimAPI
from psf_kernels import moffat_kernel

OUT = os.path.join("fixtures", "oracle")
os.makedirs(OUT, exist_ok=True)

Z_LENS, Z_SOURCE = 0.5, 1.5
COSMO = FlatLambdaCDM(H0=67.7, Om0=0.31)
NUM_PIX, SUPERSAMPLING, PSF_FWHM, TRUNCATION = 64, 2, 0.17, 4.0

band = Euclid(band="VIS", psf_type="GAUSSIAN", coadd_years=6).kwargs_single_band()
band.update({"seeing": PSF_FWHM, "truncation": TRUNCATION, "data_count_unit": "e-"})

lens = {"theta_E": 1.23, "e1": 0.08, "e2": -0.11, "center_x": 0.02, "center_y": -0.015}
shear = {"gamma1": 0.03, "gamma2": -0.02}
# (M200 Msun, concentration, r_trunc / Rs, x, y relative to the lens centre): massive
# enough near the arcs that the substructure is seen through the noise.
subhalos = [(3e9, 12.0, 8.0, 0.95, 0.72), (1.2e9, 16.0, 12.0, -1.1, 0.35),
            (5e8, 18.0, 6.0, 0.2, -1.25), (2e8, 20.0, 15.0, -0.5, -0.9)]
lc = LensCosmo(z_lens=Z_LENS, z_source=Z_SOURCE, cosmo=COSMO)
kwargs_subhalos = []
for m, conc, tau, x, y in subhalos:
    rs, alpha_rs = lc.nfw_physical2angle(M=m, c=conc)
    kwargs_subhalos.append({"Rs": float(rs), "alpha_Rs": float(alpha_rs), "r_trunc": float(tau * rs),
                            "center_x": lens["center_x"] + x, "center_y": lens["center_y"] + y})

source = {"magnitude": 22.3, "R_sersic": 0.22, "n_sersic": 1.4, "e1": 0.15, "e2": -0.05,
          "center_x": 0.1, "center_y": -0.06}
lens_light = {"magnitude": 19.6, "R_sersic": 0.7, "n_sersic": 4.0, "e1": 0.1, "e2": -0.09,
              "center_x": 0.03, "center_y": -0.01}

kwargs_model = {"lens_model_list": ["SIE", "SHEAR"] + ["TNFW"] * len(subhalos),
                "source_light_model_list": ["SERSIC_ELLIPSE"],
                "lens_light_model_list": ["SERSIC_ELLIPSE"]}
sim = SimAPI(num_pix=NUM_PIX, kwargs_single_band=band, kwargs_model=kwargs_model)
image_model = sim.image_model_class({"supersampling_factor": SUPERSAMPLING, "supersampling_convolution": False})
kwargs_lens_light, kwargs_source, _ = sim.magnitude2amplitude([dict(lens_light)], [dict(source)])

kwargs_lens = [lens, shear] + kwargs_subhalos
image = image_model.image(kwargs_lens, kwargs_source, kwargs_lens_light)
smooth_lens = [lens, shear] + [dict(k, alpha_Rs=0.0) for k in kwargs_subhalos]
smooth = image_model.image(smooth_lens, kwargs_source, kwargs_lens_light)
variance = sim.estimate_noise(image) ** 2
sub_snr = float(np.sqrt(np.sum((image - smooth) ** 2 / variance)))

MOFFAT_BETA, KERNEL_SIDE = 2.5, 21
kernel = moffat_kernel(PSF_FWHM / band["pixel_scale"], MOFFAT_BETA, KERNEL_SIDE)
pixel_band = dict(band, psf_type="PIXEL", kernel_point_source=kernel)
pixel_sim = SimAPI(num_pix=NUM_PIX, kwargs_single_band=pixel_band, kwargs_model=kwargs_model)
pixel_model = pixel_sim.image_model_class({"supersampling_factor": SUPERSAMPLING, "supersampling_convolution": False})
pixel_image = pixel_model.image(kwargs_lens, kwargs_source, kwargs_lens_light)

np.save(os.path.join(OUT, "survey_render_pixel_psf.npy"), pixel_image.astype(np.float64))
np.save(os.path.join(OUT, "survey_psf_kernel.npy"), kernel.astype(np.float64))
np.save(os.path.join(OUT, "survey_render.npy"), image.astype(np.float64))
np.save(os.path.join(OUT, "survey_variance.npy"), variance.astype(np.float64))
golden = {
    "lenstronomy": lenstronomy.__version__,
    "size": NUM_PIX, "pixel_scale": band["pixel_scale"], "supersampling": SUPERSAMPLING,
    "psf_fwhm": PSF_FWHM, "psf_truncation": TRUNCATION,
    "exposure_time_total": band["exposure_time"] * band["num_exposures"],
    "lens": lens, "shear": shear,
    "subhalos": [{"mass": m, "concentration": c, "truncation": t, "x": x, "y": y, "rs": k["Rs"],
                  "alpha_rs": k["alpha_Rs"]} for (m, c, t, x, y), k in zip(subhalos, kwargs_subhalos)],
    "source": dict(source, amp=float(kwargs_source[0]["amp"])),
    "lens_light": dict(lens_light, amp=float(kwargs_lens_light[0]["amp"])),
    "background_sigma": float(sim.background_noise),
    "sub_snr": sub_snr,
    "peak": float(image.max()),
    "render": "survey_render.npy", "variance": "survey_variance.npy",
    "pixel_psf": {"kernel": "survey_psf_kernel.npy", "moffat_beta": MOFFAT_BETA, "side": KERNEL_SIDE,
                  "render": "survey_render_pixel_psf.npy", "peak": float(pixel_image.max())},
}
with open(os.path.join(OUT, "survey_oracle.json"), "w") as f:
    json.dump(golden, f, indent=1)
print(json.dumps({k: golden[k] for k in ["sub_snr", "peak", "background_sigma"]}))
