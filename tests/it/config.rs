//! Bad recipes are refused with the offending key named.

use lensmae::sim::presets::{load_recipe, preset_toml};
use lensmae::sim::SimConfig;

fn with(preset: &str, from: &str, to: &str) -> String {
    let text = preset_toml(preset).unwrap();
    assert!(text.contains(from), "{from:?} not in {preset}");
    text.replacen(from, to, 1)
}

fn error_of(text: &str) -> String {
    SimConfig::from_toml(text).unwrap_err().to_string()
}

#[test]
fn unknown_keys_are_named() {
    let e = error_of(&with("deeplense-model2", "r_sersic = 0.25", "r_sersic = 0.25\nradius = 3"));
    assert!(e.contains("radius"), "{e}");
    let e = error_of(&with("deeplense-model2", "type = \"vortex\"", "type = \"wormhole\""));
    assert!(e.contains("wormhole"), "{e}");
    let e = error_of(&with("deeplense-model2", "points = 100", "points = 100\nwidth = 0.1"));
    assert!(e.contains("width"), "{e}");
    let e = error_of(&with("deeplense-model2", "[psf]", "[psf]\nbeta = 2.5"));
    assert!(e.contains("beta"), "{e}");
}

#[test]
fn keys_beside_a_none_type_are_refused_too() {
    let e = error_of(&with(
        "deeplense-model2",
        "[classes.no_sub]\ntype = \"none\"",
        "[classes.no_sub]\ntype = \"none\"\ncount = 25",
    ));
    assert!(e.contains("count"), "{e}");
    let e = error_of(&with(
        "deeplense-model2",
        "[noise]\ntype = \"none\"",
        "[noise]\ntype = \"none\"\nexposure_time = 100.0",
    ));
    assert!(e.contains("exposure_time"), "{e}");
    let psf = "[psf]\ntype = \"gaussian\"\nfwhm = 0.087\ntruncation = 4.0";
    let e = error_of(&with("deeplense-model1", psf, "[psf]\ntype = \"none\"\nfwhm = 0.087"));
    assert!(e.contains("fwhm"), "{e}");
}

#[test]
fn impossible_values_name_their_key() {
    let cases = [
        ("pixel_scale = 0.101", "pixel_scale = -0.1", "image.pixel_scale"),
        ("r_sersic = 0.25", "r_sersic = { uniform = [0.3, 0.1] }", "source.r_sersic"),
        ("n_sersic = 1.0", "n_sersic = 30.0", "source.n_sersic"),
        ("z_source = 1.0", "z_source = 0.2", "cosmology.z_source"),
        ("radius = [0.25, 2.0]", "radius = [2.0, 0.25]", "classes.cdm.radius"),
        ("e1 = 0.1", "e1 = { normal = [0.0, 0.1] }", "lens.e1"),
        ("instrument = \"euclid-vis\"", "instrument = \"jwst\"", "instrument"),
        ("class_order = [\"axion\", \"cdm\", \"no_sub\"]", "class_order = [\"cdm\", \"no_sub\"]", "class_order"),
        // Kernels and grids beyond any image: a PSF wider than the field (a FWHM of 1e9"
        // took 24 GB before the render began), a supersampled side of 65,536 rays.
        ("fwhm = 0.16", "fwhm = { uniform = [0.1, 1e9] }", "psf.fwhm"),
        (
            "size = 64\npixel_scale = 0.101\nsupersampling = 1",
            "size = 4096\npixel_scale = 0.101\nsupersampling = 16",
            "image.supersampling",
        ),
    ];
    for (from, to, key) in cases {
        let e = error_of(&with("deeplense-model2", from, to));
        assert!(e.contains(key), "{to}: {e}");
    }
}

#[test]
fn magnitudes_need_an_instrument() {
    let e = error_of(&with("deeplense-model2", "instrument = \"euclid-vis\"\n", ""));
    assert!(e.contains("source.magnitude"), "{e}");
}

#[test]
fn impossible_neighbours_name_their_key() {
    let neighbour = |probability: &str, star_fraction: &str, distance: &str| {
        format!(
            "{}\n[neighbour]\nprobability = {probability}\nstar_fraction = {star_fraction}\nmagnitude = 20.0\n\
             distance = {distance}\nr_sersic = 0.3\nn_sersic = 1.0\n",
            preset_toml("survey").unwrap()
        )
    };
    assert!(SimConfig::from_toml(&neighbour("0.5", "0.3", "2.5")).is_ok());
    for (text, key) in [
        (neighbour("1.5", "0.3", "2.5"), "neighbour.probability"),
        (neighbour("0.5", "-0.1", "2.5"), "neighbour.star_fraction"),
        (neighbour("0.5", "0.3", "{ uniform = [3.0, 2.0] }"), "neighbour.distance"),
        (neighbour("0.5", "0.3", "2.5").replace("n_sersic = 1.0\n", "n_sersic = 1.0\ncolour = 2\n"), "colour"),
    ] {
        let e = error_of(&text);
        assert!(e.contains(key), "{key}: {e}");
    }
}

#[test]
fn the_committed_recipes_load_and_a_broken_one_is_named() {
    let recipes = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/recipes");
    let mut loaded = 0;
    for entry in std::fs::read_dir(&recipes).unwrap() {
        let path = entry.unwrap().path();
        load_recipe(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        loaded += 1;
    }
    assert!(loaded > 0, "no recipe in {}", recipes.display());
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "extends = \"survey\"\n[neighbour]\nprobability = 2.0\n").unwrap();
    let e = load_recipe(&broken).unwrap_err().to_string();
    assert!(e.contains("broken.toml") && e.contains("neighbour"), "{e}");
    assert!(load_recipe(&dir.path().join("missing.toml")).unwrap_err().to_string().contains("missing.toml"));
}
