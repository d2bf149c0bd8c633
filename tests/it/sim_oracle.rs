//! The simulator against lenstronomy goldens (written by tests/oracle/sim_oracle.py).

use crate::fixture;
use lensmae::data::npy::read_npy;
use lensmae::sim::cosmology::FlatLcdm;
use lensmae::sim::light::{LightProfile, Sersic};
use lensmae::sim::mass::{MassModel, MassProfile};
use lensmae::sim::presets::preset;
use lensmae::sim::psf::{Psf, FWHM_PER_SIGMA};
use lensmae::sim::scene::{Camera, Scene};
use lensmae::sim::simulator::{SubhaloDraw, VortexDraw};
use lensmae::sim::{Image, PixelGrid, Simulator};
use rand::SeedableRng;
use serde::Deserialize;
use serde_json::Value;

fn json(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(&format!("oracle/{name}"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn points() -> Vec<(f64, f64)> {
    json("sim_profiles.json")["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_f64().unwrap(), p[1].as_f64().unwrap()))
        .collect()
}

#[test]
fn mass_profiles_match_lenstronomy() {
    let golden = json("sim_profiles.json");
    let pts = points();
    for case in golden["mass_profiles"].as_array().unwrap() {
        let model = MassModel::deserialize(&case["model"]).unwrap();
        let (ax, ay, pot) = (floats(&case["alpha_x"]), floats(&case["alpha_y"]), floats(&case["potential"]));
        let (hxx, hxy, hyy) = (floats(&case["hessian_xx"]), floats(&case["hessian_xy"]), floats(&case["hessian_yy"]));
        let numerical = case["hessian_is_numerical"].as_bool().unwrap();
        let scale = ax.iter().chain(&ay).fold(0.0f64, |m, v| m.max(v.abs()));
        for (i, &(x, y)) in pts.iter().enumerate() {
            let (a, b) = model.deflection(x, y);
            assert!(
                (a - ax[i]).abs() <= 1e-9 * scale && (b - ay[i]).abs() <= 1e-9 * scale,
                "{model:?} alpha at {x},{y}: {a},{b} vs {},{}",
                ax[i],
                ay[i]
            );
            let p = model.potential(x, y);
            assert!(
                (p - pot[i]).abs() <= 1e-9 * pot[i].abs().max(scale),
                "{model:?} potential at {x},{y}: {p} vs {}",
                pot[i]
            );
            let h = model.hessian(x, y);
            let tol = if numerical { 1e-4 } else { 1e-9 };
            let hs = hxx[i].abs().max(hyy[i].abs()).max(hxy[i].abs()).max(1e-3);
            for (mine, theirs) in [(h.xx, hxx[i]), (h.xy, hxy[i]), (h.yy, hyy[i])] {
                assert!((mine - theirs).abs() <= tol * hs, "{model:?} hessian at {x},{y}: {mine} vs {theirs}");
            }
        }
    }
}

#[test]
fn sersic_matches_lenstronomy() {
    let golden = json("sim_profiles.json");
    let pts = points();
    for case in golden["sersic"].as_array().unwrap() {
        let s = Sersic::deserialize(&case["model"]).unwrap();
        let sb = floats(&case["surface_brightness"]);
        for (i, &(x, y)) in pts.iter().enumerate() {
            let mine = s.surface_brightness(x, y);
            assert!((mine - sb[i]).abs() <= 1e-10 * sb[i].abs().max(1e-12), "{s:?} at {x},{y}: {mine} vs {}", sb[i]);
        }
        let total = case["total_flux_per_amp"].as_f64().unwrap();
        assert!((s.total_flux_per_amp() - total).abs() < 1e-10 * total);
    }
}

#[test]
fn gaussian_psf_matches_scipy() {
    let golden = json("sim_profiles.json");
    for case in golden["psf"].as_array().unwrap() {
        let sigma = case["sigma_pixels"].as_f64().unwrap();
        let image = Image { size: 16, pixels: floats(&case["input"]) };
        // sigma in pixels with a pixel scale of 1.
        let psf = Psf::Gaussian { fwhm: sigma * FWHM_PER_SIGMA, truncation: case["truncation"].as_f64().unwrap() };
        let out = psf.convolve(&image, 1.0);
        for (mine, theirs) in out.pixels.iter().zip(floats(&case["output"])) {
            assert!((mine - theirs).abs() < 1e-12, "sigma {sigma}: {mine} vs {theirs}");
        }
    }
}

#[test]
fn cosmology_matches_astropy_and_lenstronomy() {
    let c = &json("sim_profiles.json")["cosmology"];
    let dl = FlatLcdm { h0: 70.0, om0: 0.3 };
    let t = dl.einstein_radius_deeplense(1e12, 0.5, 1.0);
    assert!((t - c["deeplense_theta_e_1e12"].as_f64().unwrap()).abs() < 1e-9, "{t}");
    let f = FlatLcdm { h0: 67.5, om0: 0.309 }.deflection_rescaling(0.5, 1.0, 2.5);
    assert!((f - c["multi_plane_factor"].as_f64().unwrap()).abs() < 1e-9, "{f}");
    let survey = FlatLcdm { h0: 67.7, om0: 0.31 }.lens_plane(0.5, 1.5);
    let te = survey.einstein_radius(1e11);
    assert!((te / c["survey_point_mass_theta_e_1e11"].as_f64().unwrap() - 1.0).abs() < 1e-8, "{te}");
    for case in c["survey_nfw"].as_array().unwrap() {
        let (rs, alpha) = survey.nfw_angles(case["m200"].as_f64().unwrap(), case["concentration"].as_f64().unwrap());
        assert!((rs / case["rs"].as_f64().unwrap() - 1.0).abs() < 1e-6, "rs {rs}");
        // lenstronomy uses G = 6.67384e-11 and M_sun = 1.9891e30; lensmae uses astropy's
        // CODATA 2018 / IAU 2015 values. alpha_rs scales with G M_sun, whose ratio is
        // 1.000276, so that is the expected difference.
        let ratio = alpha / case["alpha_rs"].as_f64().unwrap();
        assert!((ratio - 1.0 / 1.000276).abs() < 1e-5, "alpha_rs {alpha}, ratio {ratio}");
    }
}

fn assert_image_close(mine: &Image, golden: &str, peak: f64, what: &str) {
    let g = read_npy(&fixture(&format!("oracle/{golden}"))).unwrap();
    assert_eq!(g.shape, vec![mine.size, mine.size], "{what}");
    let worst = mine.pixels.iter().zip(&g.data).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(worst <= 1e-5 * peak, "{what}: max |diff| {worst:.3e} > 1e-5 x peak {peak}");
}

#[test]
fn deeplense_preset_renders_match_lenstronomy() {
    let golden = json("sim_renders.json");
    for case in golden["renders"].as_array().unwrap() {
        let name = case["preset"].as_str().unwrap();
        let class = case["class"].as_str().unwrap();
        let sim = Simulator::new(preset(name).unwrap()).unwrap();
        let class_idx = sim.class_names().iter().position(|c| c == class).unwrap();
        // Everything but the source position and the substructure is fixed by the
        // recipe; draw a template, then put in the oracle's random values.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let mut params = sim.sample_params(class_idx, &mut rng);
        params.source_x = case["source_x"].as_f64().unwrap();
        params.source_y = case["source_y"].as_f64().unwrap();
        let amp = case["source_amp"].as_f64().unwrap();
        assert!((params.source_amp / amp - 1.0).abs() < 1e-9, "{name}: amp {} vs {amp}", params.source_amp);
        params.subhalos = case["subhalos"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| SubhaloDraw {
                mass: s[0].as_f64().unwrap(),
                x: s[1].as_f64().unwrap(),
                y: s[2].as_f64().unwrap(),
                concentration: None,
                truncation: None,
            })
            .collect();
        if let Some(v) = params.vortex.as_mut() {
            *v = VortexDraw {
                axion_mass: case["axion_mass"].as_f64().unwrap(),
                angle: case["vortex_angle"].as_f64().unwrap(),
                total_mass: v.total_mass,
            };
        }
        let image = sim.render_noise_free(class_idx, &params);
        let peak = case["peak"].as_f64().unwrap();
        assert_image_close(&image, case["file"].as_str().unwrap(), peak, &format!("{name}/{class}"));
    }
}

#[test]
fn every_profile_in_one_supersampled_scene_matches_lenstronomy() {
    let c = &json("sim_renders.json")["custom"];
    let lenses: Vec<MassModel> =
        c["lenses"].as_array().unwrap().iter().map(|l| MassModel::deserialize(l).unwrap()).collect();
    let scene = Scene {
        lenses,
        deflection_scale: 1.0,
        source: Sersic::deserialize(&c["source"]).unwrap(),
        lens_light: None,
        neighbour: None,
    };
    let camera = Camera {
        grid: PixelGrid { size: c["size"].as_u64().unwrap() as usize, pixel_scale: c["pixel_scale"].as_f64().unwrap() },
        supersampling: c["supersampling"].as_u64().unwrap() as usize,
        psf: Psf::Gaussian { fwhm: c["psf_fwhm"].as_f64().unwrap(), truncation: 4.0 },
    };
    assert_image_close(&scene.render(&camera), c["file"].as_str().unwrap(), c["peak"].as_f64().unwrap(), "custom");
}

/// The `survey` preset's physics against lenstronomy 1.14's SimAPI with Euclid VIS
/// (tests/oracle/survey_oracle.py): the lens with its own light and TNFW subhalos,
/// magnitudes through Euclid's zero point, the per-pixel noise variance, sub_snr,
/// and the noise our sampler draws.
#[test]
fn a_survey_lens_with_its_light_and_noise_matches_lenstronomy_simapi() {
    let c = json("survey_oracle.json");
    let sim = Simulator::new(preset("survey").unwrap()).unwrap();
    let cdm = sim.class_names().iter().position(|n| n == "cdm").unwrap();
    let params = survey_oracle_lens(&sim, &c);
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap();

    // lensmae converts masses with astropy's G M_sun, lenstronomy with its own
    // (alpha_rs 2.8e-4 apart, see cosmology_matches_astropy_and_lenstronomy): far
    // below the 1e-5 x peak the render is held to.
    let image = sim.render_noise_free(cdm, &params);
    assert_image_close(&image, c["render"].as_str().unwrap(), f(&c, "peak"), "survey lens");

    let noise = sim.noise(&params);
    let variance = noise.variance(&image, sim.config().image.pixel_scale).unwrap();
    let golden = read_npy(&fixture(&format!("oracle/{}", c["variance"].as_str().unwrap()))).unwrap();
    for (i, (mine, theirs)) in variance.iter().zip(&golden.data).enumerate() {
        assert!((mine / theirs - 1.0).abs() < 0.02, "pixel {i}: variance {mine} vs lenstronomy {theirs}");
    }
    let sub_snr = sim.sub_snr(cdm, &params, &image, &noise).unwrap();
    assert!((sub_snr / f(&c, "sub_snr") - 1.0).abs() < 0.01, "sub_snr {sub_snr} vs {}", f(&c, "sub_snr"));

    // The noise drawn: the per-pixel sample variance of 2,000 realisations against
    // lenstronomy's, over all pixels and over the brightest tenth (Poisson-dominated).
    let draws = 2000;
    let n = image.pixels.len();
    let (mut sum, mut sum2) = (vec![0.0; n], vec![0.0; n]);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    for _ in 0..draws {
        let mut noisy = image.clone();
        noise.apply(&mut noisy, sim.config().image.pixel_scale, &mut rng);
        for (i, v) in noisy.pixels.iter().enumerate() {
            let d = v - image.pixels[i];
            sum[i] += d;
            sum2[i] += d * d;
        }
    }
    let ratio: Vec<f64> =
        (0..n).map(|i| (sum2[i] - sum[i] * sum[i] / draws as f64) / (draws - 1) as f64 / golden.data[i]).collect();
    let mut by_brightness: Vec<usize> = (0..n).collect();
    by_brightness.sort_by(|&a, &b| image.pixels[b].total_cmp(&image.pixels[a]));
    let mean = |idx: &[usize]| idx.iter().map(|&i| ratio[i]).sum::<f64>() / idx.len() as f64;
    let (all, bright) = (mean(&by_brightness), mean(&by_brightness[..n / 10]));
    assert!((all - 1.0).abs() < 0.01, "sample / lenstronomy variance over all pixels: {all}");
    assert!((bright - 1.0).abs() < 0.02, "sample / lenstronomy variance, brightest tenth: {bright}");
}

#[test]
fn a_survey_lens_through_a_pixelated_psf_matches_lenstronomy() {
    use lensmae::sim::psf::PsfKernel;
    let c = json("survey_oracle.json");
    let sim = Simulator::new(preset("survey").unwrap()).unwrap();
    let cdm = sim.class_names().iter().position(|n| n == "cdm").unwrap();
    let pixel = &c["pixel_psf"];
    let golden = read_npy(&fixture(&format!("oracle/{}", pixel["kernel"].as_str().unwrap()))).unwrap();
    let side = pixel["side"].as_u64().unwrap() as usize;
    let kernel = PsfKernel::new(side, &golden.data).unwrap();
    // The Moffat kernel lensmae builds is numpy's to rounding.
    let fwhm = c["psf_fwhm"].as_f64().unwrap() / c["pixel_scale"].as_f64().unwrap();
    let moffat = PsfKernel::moffat(fwhm, pixel["moffat_beta"].as_f64().unwrap(), side).unwrap();
    let worst = moffat.weights().iter().zip(kernel.weights()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(worst < 1e-12, "Moffat kernel off by {worst:e}");
    let mut params = survey_oracle_lens(&sim, &c);
    params.psf_kernel = Some(std::sync::Arc::new(kernel));
    let image = sim.render_noise_free(cdm, &params);
    let peak = pixel["peak"].as_f64().unwrap();
    assert_image_close(&image, pixel["render"].as_str().unwrap(), peak, "survey lens, pixelated PSF");
    // The wings are there: the same lens through the Gaussian differs far beyond that.
    params.psf_kernel = None;
    let gaussian = sim.render_noise_free(cdm, &params);
    let moved = gaussian.pixels.iter().zip(&image.pixels).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(moved > 0.05 * peak, "Gaussian and Moffat renders differ by {moved:e} only");
}

/// The lens of `survey_oracle.json` as lensmae's parameters.
fn survey_oracle_lens(sim: &Simulator, c: &Value) -> lensmae::sim::simulator::ImageParams {
    use lensmae::sim::simulator::LensLightDraw;
    let cdm = sim.class_names().iter().position(|n| n == "cdm").unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut params = sim.sample_params(cdm, &mut rng);
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap();
    let (lens, shear, source, light) = (&c["lens"], &c["shear"], &c["source"], &c["lens_light"]);
    params.lens_theta_e = f(lens, "theta_E");
    (params.lens_e1, params.lens_e2) = (f(lens, "e1"), f(lens, "e2"));
    (params.lens_center_x, params.lens_center_y) = (f(lens, "center_x"), f(lens, "center_y"));
    (params.shear_gamma1, params.shear_gamma2) = (f(shear, "gamma1"), f(shear, "gamma2"));
    (params.source_r_sersic, params.source_n_sersic) = (f(source, "R_sersic"), f(source, "n_sersic"));
    (params.source_e1, params.source_e2) = (f(source, "e1"), f(source, "e2"));
    (params.source_x, params.source_y) = (f(source, "center_x"), f(source, "center_y"));
    params.source_amp =
        sim.amplitude_of_magnitude(f(source, "magnitude"), params.source_r_sersic, params.source_n_sersic);
    assert!((params.source_amp / f(source, "amp") - 1.0).abs() < 1e-9, "source amp {}", params.source_amp);
    let light_amp = sim.amplitude_of_magnitude(f(light, "magnitude"), f(light, "R_sersic"), f(light, "n_sersic"));
    assert!((light_amp / f(light, "amp") - 1.0).abs() < 1e-9, "lens light amp {light_amp}");
    params.lens_light = Some(LensLightDraw {
        magnitude: f(light, "magnitude"),
        amp: light_amp,
        r_sersic: f(light, "R_sersic"),
        n_sersic: f(light, "n_sersic"),
        e1: f(light, "e1"),
        e2: f(light, "e2"),
        center_x: f(light, "center_x"),
        center_y: f(light, "center_y"),
    });
    params.psf_fwhm = f(c, "psf_fwhm");
    params.exposure_time = Some(f(c, "exposure_time_total"));
    params.subhalos = c["subhalos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| SubhaloDraw {
            mass: f(s, "mass"),
            x: f(s, "x"),
            y: f(s, "y"),
            concentration: Some(f(s, "concentration")),
            truncation: Some(f(s, "truncation")),
        })
        .collect();
    params
}
