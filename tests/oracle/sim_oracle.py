"""Golden values for lensmae's simulator, computed with lenstronomy.

Profiles: potential, deflection and Hessian of every mass profile, surface
brightness of the Sersic source, the Gaussian PSF filter, cosmology conversions.
Renders: full noise-free images of the DeepLense Model I/II/III recipes (built the
way the public DeepLenseSim scripts build them, multi-plane SimAPI included) and
one custom scene with NFW/TNFW subhalos and supersampling.

Run from the repository root: python tests/oracle/sim_oracle.py
"""
import json
import os

import numpy as np
from astropy import units as u
from astropy.constants import G, M_sun, c
from astropy.cosmology import FlatLambdaCDM
from scipy import ndimage

from lenstronomy.Cosmo.lens_cosmo import LensCosmo
from lenstronomy.Data.imaging_data import ImageData
from lenstronomy.Data.psf import PSF
from lenstronomy.ImSim.image_model import ImageModel
from lenstronomy.LensModel.lens_model import LensModel
from lenstronomy.LightModel.light_model import LightModel
from lenstronomy.SimulationAPI.ObservationConfig.Euclid import Euclid
from lenstronomy.SimulationAPI.ObservationConfig.HST import HST
from lenstronomy.SimulationAPI.sim_api import SimAPI
from lenstronomy.Util import util

OUT = os.path.join("fixtures", "oracle")
os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(20261126)

# --- profiles -------------------------------------------------------------
POINTS = [[0.3, 0.1], [1.2, -0.7], [-0.05, 0.02], [-1.9, 1.4], [0.0, 2.5],
          [0.81, 0.8], [2.2, 0.001], [-0.6, -1.1], [0.15, 0.0], [3.5, -2.0]]
pts = np.array(POINTS)

PROFILES = [
    ("SIS", {"theta_E": 1.1, "center_x": 0.05, "center_y": -0.1}),
    ("SIE", {"theta_E": 1.2815, "e1": 0.1, "e2": 0.0, "center_x": 0.0, "center_y": 0.0}),
    ("SIE", {"theta_E": 0.9, "e1": -0.15, "e2": 0.22, "center_x": 0.1, "center_y": 0.05}),
    ("SHEAR", {"gamma1": 0.05, "gamma2": -0.03}),
    ("POINT_MASS", {"theta_E": 0.02, "center_x": 0.4, "center_y": -0.3}),
    ("NFW", {"Rs": 0.35, "alpha_Rs": 0.03, "center_x": -0.2, "center_y": 0.3}),
    ("NFW", {"Rs": 2.0, "alpha_Rs": 0.5, "center_x": 0.0, "center_y": 0.0}),
    ("TNFW", {"Rs": 0.35, "alpha_Rs": 0.03, "r_trunc": 2.0, "center_x": -0.2, "center_y": 0.3}),
    ("TNFW", {"Rs": 0.2, "alpha_Rs": 0.01, "r_trunc": 0.5, "center_x": 0.5, "center_y": 0.5}),
]

RENAME = {"theta_E": "theta_e", "Rs": "rs", "alpha_Rs": "alpha_rs"}
TYPE = {"SIS": "sis", "SIE": "sie", "SHEAR": "shear", "POINT_MASS": "point_mass", "NFW": "nfw", "TNFW": "tnfw"}


def lensmae_model(name, kw):
    out = {"type": TYPE[name]}
    for k, v in kw.items():
        out[RENAME.get(k, k)] = v
    return out


profiles = []
for name, kw in PROFILES:
    lm = LensModel([name])
    ax, ay = lm.alpha(pts[:, 0], pts[:, 1], [kw])
    fxx, fxy, _, fyy = lm.hessian(pts[:, 0], pts[:, 1], [kw])
    pot = lm.potential(pts[:, 0], pts[:, 1], [kw])
    profiles.append({
        "model": lensmae_model(name, kw),
        # lenstronomy differentiates the NIE numerically with a 1e-10 step
        "hessian_is_numerical": name == "SIE",
        "alpha_x": ax.tolist(), "alpha_y": ay.tolist(), "potential": pot.tolist(),
        "hessian_xx": np.atleast_1d(fxx).tolist(), "hessian_xy": np.atleast_1d(fxy).tolist(),
        "hessian_yy": np.atleast_1d(fyy).tolist(),
    })

SERSICS = [
    {"amp": 20.0, "R_sersic": 0.25, "n_sersic": 1.0, "e1": -0.1, "e2": 0.1, "center_x": 0.1, "center_y": -0.2},
    {"amp": 3.0, "R_sersic": 0.4, "n_sersic": 2.5, "e1": 0.2, "e2": 0.05, "center_x": 0.0, "center_y": 0.0},
    {"amp": 1.0, "R_sersic": 0.15, "n_sersic": 4.0, "e1": 0.0, "e2": -0.3, "center_x": -0.3, "center_y": 0.1},
]
sersics = []
for kw in SERSICS:
    lm = LightModel(["SERSIC_ELLIPSE"])
    sb = lm.surface_brightness(pts[:, 0], pts[:, 1], [kw])
    total = lm.total_flux([kw], norm=True)[0]
    model = {"amp": kw["amp"], "r_sersic": kw["R_sersic"], "n_sersic": kw["n_sersic"], "e1": kw["e1"],
             "e2": kw["e2"], "center_x": kw["center_x"], "center_y": kw["center_y"]}
    sersics.append({"model": model, "surface_brightness": sb.tolist(), "total_flux_per_amp": float(total)})

psf_cases = []
base = rng.random((16, 16))
base[5, 9] = 20.0
for sigma in [0.16 / 2.354820045 / 0.101, 0.08 / 2.354820045 / 0.08, 1.7]:
    psf_cases.append({"sigma_pixels": sigma, "truncation": 4.0, "input": base.ravel().tolist(),
                      "output": ndimage.gaussian_filter(base, sigma, mode="nearest", truncate=4.0).ravel().tolist()})

# Cosmology: the DeepLense mass -> theta_E conversion (luminosity distances), the
# multi-plane factor, and lenstronomy's NFW conversion.
def deeplense_theta_e(mass):
    cosmo = FlatLambdaCDM(H0=70, Om0=0.3, Ob0=0.05)
    dl = cosmo.luminosity_distance(0.5).to(u.m)
    ds = cosmo.luminosity_distance(1.0).to(u.m)
    theta = np.sqrt(4 * G * mass * M_sun / c**2 * (ds - dl) / (dl * ds))
    return float(theta.value * 206265)


RT_COSMO = FlatLambdaCDM(H0=67.5, Om0=0.309)
lm_mp = LensModel(["POINT_MASS"], z_source=1.0, lens_redshift_list=[0.5], multi_plane=True, cosmo=RT_COSMO,
                  z_source_convention=2.5)
bx, _ = lm_mp.ray_shooting(1.0, 0.0, [{"theta_E": 1.0, "center_x": 0.0, "center_y": 0.0}])
multi_plane_factor = float(1.0 - bx)  # alpha = theta_E^2 / r = 1 at r = 1 before scaling

survey_cosmo = FlatLambdaCDM(H0=67.7, Om0=0.31)
lc = LensCosmo(z_lens=0.5, z_source=1.5, cosmo=survey_cosmo)
nfw_cases = []
for m, conc in [(1e9, 15.0), (3e7, 25.0), (1e12, 6.0)]:
    rs, alpha_rs = lc.nfw_physical2angle(M=m, c=conc)
    nfw_cases.append({"m200": m, "concentration": conc, "rs": float(rs), "alpha_rs": float(alpha_rs)})
cosmology = {
    "deeplense_theta_e_1e12": deeplense_theta_e(1e12),
    "deeplense_theta_e_1e8": deeplense_theta_e(1e8),
    "multi_plane_factor": multi_plane_factor,
    "survey_einstein_radius_1e11": float(lc.sis_mass2theta_E(1e11)) if hasattr(lc, "sis_mass2theta_E") else None,
    "survey_nfw": nfw_cases,
    "survey_z_lens": 0.5, "survey_z_source": 1.5, "survey_h0": 67.7, "survey_om0": 0.31,
}
# theta_E of a point mass with proper distances, independent of lenstronomy
dl = survey_cosmo.angular_diameter_distance(0.5).to(u.m)
ds = survey_cosmo.angular_diameter_distance(1.5).to(u.m)
dls = survey_cosmo.angular_diameter_distance_z1z2(0.5, 1.5).to(u.m)
cosmology["survey_point_mass_theta_e_1e11"] = float(
    (np.sqrt(4 * G * 1e11 * M_sun / c**2 * dls / (dl * ds)) * u.rad).to(u.arcsec).value)

with open(os.path.join(OUT, "sim_profiles.json"), "w") as f:
    json.dump({"points": POINTS, "mass_profiles": profiles, "sersic": sersics, "psf": psf_cases,
               "cosmology": cosmology}, f, indent=1)

# --- renders --------------------------------------------------------------
def recipe_lenses(cls, subhalos, axion_mass, angle):
    """Lens list the way DeepLenseSim builds it; returns (models, kwargs)."""
    models = ["SIE", "SHEAR"]
    kwargs = [{"theta_E": deeplense_theta_e(1e12), "e1": 0.1, "e2": 0, "center_x": 0, "center_y": 0.0},
              {"gamma1": 0.05, "gamma2": 0}]
    if cls == "cdm":
        for m, x, y in subhalos:
            models.append("POINT_MASS")
            kwargs.append({"theta_E": deeplense_theta_e(m), "center_x": x, "center_y": y})
    if cls == "axion":
        half = 0.06 * (2 * axion_mass) ** -1 * 1e-22
        coords = np.linspace(-half, half, 100)
        te = deeplense_theta_e(3e10 / 100)
        for t in coords:
            models.append("POINT_MASS")
            kwargs.append({"theta_E": te, "center_x": t * np.cos(angle), "center_y": t * np.sin(angle)})
    return models, kwargs


def draw_cdm():
    b = -0.9
    uu = rng.uniform(0, 1, 25)
    lo, hi = 1e6 ** (b + 1), 1e10 ** (b + 1)
    masses = (lo + (hi - lo) * uu) ** (1 / (b + 1))
    subs = []
    for m in masses:
        r, th = rng.uniform(0.25, 2.0), rng.uniform(0, 2 * np.pi)
        subs.append([float(m), float(r * np.sin(th)), float(r * np.cos(th))])
    return subs


def render_model1(models, kwargs, source):
    num_pix, dpix = 150, 0.05
    _, _, ra0, dec0, _, _, mpix2coord, _ = util.make_grid_with_coordtransform(
        numPix=num_pix, deltapix=dpix, center_ra=0, center_dec=0, subgrid_res=1, inverse=False)
    data = ImageData(background_rms=0.01, exposure_time=1000.0, ra_at_xy_0=ra0, dec_at_xy_0=dec0,
                     transform_pix2angle=mpix2coord, image_data=np.zeros((num_pix, num_pix)))
    psf = PSF(psf_type="GAUSSIAN", fwhm=0.087, pixel_size=dpix, truncation=3)
    im = ImageModel(data, psf, lens_model_class=LensModel(models), source_model_class=LightModel(["SERSIC_ELLIPSE"]),
                    kwargs_numerics={"supersampling_factor": 1, "supersampling_convolution": False})
    return im.image(kwargs, [source], kwargs_lens_light=None, kwargs_ps=None)


def render_sim_api(models, kwargs, source_mag, band):
    kwargs_model = {"lens_model_list": models, "lens_redshift_list": [0.5] * len(models),
                    "source_light_model_list": ["SERSIC_ELLIPSE"], "source_redshift_list": [1.0],
                    "cosmo": RT_COSMO, "z_source_convention": 2.5, "z_source": 1.0}
    sim = SimAPI(numpix=64, kwargs_single_band=band, kwargs_model=kwargs_model)
    im = sim.image_model_class({"point_source_supersampling_factor": 1})
    _, kwargs_source, _ = sim.magnitude2amplitude(None, [source_mag])
    return 2.0 * im.image(kwargs, kwargs_source, None), kwargs_source[0]["amp"]


renders = []
bands = {
    "deeplense-model2": Euclid(band="VIS", psf_type="GAUSSIAN", coadd_years=6).kwargs_single_band(),
    "deeplense-model3": HST(band="WFC3_F160W", psf_type="GAUSSIAN").kwargs_single_band(),
}
for preset in ["deeplense-model1", "deeplense-model2", "deeplense-model3"]:
    for cls in ["no_sub", "cdm", "axion"]:
        sx, sy = (float(v) for v in rng.uniform(-0.35, 0.35, 2))
        subhalos = draw_cdm() if cls == "cdm" else []
        axion_mass = float(10 ** rng.uniform(-24, -22)) if cls == "axion" else None
        angle = float(rng.uniform(0, 2 * np.pi)) if cls == "axion" else None
        models, kwargs = recipe_lenses(cls, subhalos, axion_mass, angle)
        shape = {"R_sersic": 0.25, "n_sersic": 1, "e1": -0.1, "e2": 0.1, "center_x": sx, "center_y": sy}
        if preset == "deeplense-model1":
            image = render_model1(models, kwargs, dict(amp=20, **shape))
            amp = 20.0
        else:
            image, amp = render_sim_api(models, kwargs, dict(magnitude=20, **shape), bands[preset])
        fname = f"render_{preset}_{cls}.npy"
        np.save(os.path.join(OUT, fname), image.astype(np.float32))
        renders.append({"preset": preset, "class": cls, "source_x": sx, "source_y": sy, "source_amp": float(amp),
                        "subhalos": subhalos, "axion_mass": axion_mass, "vortex_angle": angle, "file": fname,
                        "peak": float(image.max())})

# A custom scene: every profile at once, supersampled, single plane.
custom_lenses = [("SIE", {"theta_E": 1.0, "e1": 0.05, "e2": -0.12, "center_x": 0.03, "center_y": -0.02}),
                 ("SHEAR", {"gamma1": -0.02, "gamma2": 0.04}),
                 ("NFW", {"Rs": 0.3, "alpha_Rs": 0.04, "center_x": 0.9, "center_y": 0.4}),
                 ("TNFW", {"Rs": 0.25, "alpha_Rs": 0.03, "r_trunc": 1.5, "center_x": -0.7, "center_y": -0.6}),
                 ("POINT_MASS", {"theta_E": 0.05, "center_x": 0.2, "center_y": 1.0}),
                 ("SIS", {"theta_E": 0.08, "center_x": -1.0, "center_y": 0.5})]
custom_source = {"amp": 5.0, "R_sersic": 0.3, "n_sersic": 2.0, "e1": 0.1, "e2": 0.2, "center_x": 0.05, "center_y": 0.1}
num_pix, dpix = 48, 0.1
_, _, ra0, dec0, _, _, mpix2coord, _ = util.make_grid_with_coordtransform(
    numPix=num_pix, deltapix=dpix, center_ra=0, center_dec=0, subgrid_res=1, inverse=False)
data = ImageData(background_rms=0.01, exposure_time=1000.0, ra_at_xy_0=ra0, dec_at_xy_0=dec0,
                 transform_pix2angle=mpix2coord, image_data=np.zeros((num_pix, num_pix)))
im = ImageModel(data, PSF(psf_type="GAUSSIAN", fwhm=0.2, pixel_size=dpix),
                lens_model_class=LensModel([n for n, _ in custom_lenses]),
                source_model_class=LightModel(["SERSIC_ELLIPSE"]),
                kwargs_numerics={"supersampling_factor": 3, "supersampling_convolution": False})
custom_image = im.image([k for _, k in custom_lenses], [custom_source])
np.save(os.path.join(OUT, "render_custom.npy"), custom_image.astype(np.float32))
custom = {"lenses": [lensmae_model(n, k) for n, k in custom_lenses],
          "source": {"amp": 5.0, "r_sersic": 0.3, "n_sersic": 2.0, "e1": 0.1, "e2": 0.2, "center_x": 0.05,
                     "center_y": 0.1},
          "size": num_pix, "pixel_scale": dpix, "supersampling": 3, "psf_fwhm": 0.2, "file": "render_custom.npy",
          "peak": float(custom_image.max())}

with open(os.path.join(OUT, "sim_renders.json"), "w") as f:
    json.dump({"renders": renders, "custom": custom}, f, indent=1)
print("wrote", OUT)
