//! Built-in simulation recipes. Each is a TOML file in `src/sim/presets/`, in
//! the same format users write, so `lensmae simulate --print-config --preset X`
//! is a starting point for a custom recipe.
//!
//! The `deeplense-model{1,2,3}` presets reproduce the public DeepLense recipes
//! (mwt5345/DeepLenseSim, lenstronomy 1.9) *with* their quirks: a fixed lens and
//! source shape, exactly 25 point-mass subhalos, a vortex through the lens centre,
//! Einstein radii from luminosity distances, and Models II/III released at twice the
//! noise-free model. `survey` varies everything per image with realistic physics.

use super::config::SimConfig;
use crate::{Error, Result};
use std::path::Path;

/// (name, TOML text) of every preset.
pub const PRESETS: [(&str, &str); 4] = [
    ("deeplense-model1", include_str!("presets/deeplense-model1.toml")),
    ("deeplense-model2", include_str!("presets/deeplense-model2.toml")),
    ("deeplense-model3", include_str!("presets/deeplense-model3.toml")),
    ("survey", include_str!("presets/survey.toml")),
];

/// The TOML text of preset `name`.
pub fn preset_toml(name: &str) -> Result<&'static str> {
    PRESETS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t).ok_or_else(|| {
        let known: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
        Error::config("preset", format!("unknown preset `{name}` (known: {})", known.join(", ")))
    })
}

/// The parsed, validated preset `name`.
pub fn preset(name: &str) -> Result<SimConfig> {
    SimConfig::from_toml(preset_toml(name)?)
}

/// Parse a recipe's TOML text, resolving `extends = "<preset>"` if it has one.
pub fn recipe_from_toml(text: &str) -> Result<SimConfig> {
    let mut changes: toml::Table = text.parse().map_err(|e: toml::de::Error| Error::config("toml", e.to_string()))?;
    let Some(base) = changes.remove("extends") else {
        return SimConfig::from_toml(text);
    };
    let base =
        base.as_str().ok_or_else(|| Error::config("extends", "must name a preset, e.g. `extends = \"survey\"`"))?;
    let mut recipe: toml::Table = preset_toml(base)
        .map_err(|e| Error::config("extends", e.to_string()))?
        .parse()
        .expect("every preset is valid TOML");
    for (key, value) in changes {
        match (recipe.get_mut(&key), value) {
            // A section of another `type` (a Moffat PSF for the preset's Gaussian) has
            // other keys: it replaces the preset's, whose keys it would refuse.
            (Some(toml::Value::Table(section)), toml::Value::Table(changed))
                if changed.get("type").is_none_or(|kind| section.get("type") == Some(kind)) =>
            {
                section.extend(changed)
            }
            (_, value) => {
                recipe.insert(key, value);
            }
        }
    }
    SimConfig::from_toml(&toml::to_string(&recipe).expect("a parsed TOML table serialises"))
}

/// Read and parse the recipe file at `path`; errors name the file.
pub fn load_recipe(path: &Path) -> Result<SimConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    recipe_from_toml(&text).map_err(|e| Error::config(path.display().to_string(), e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_parses_and_round_trips_through_toml() {
        for (name, _) in PRESETS {
            let cfg = preset(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(cfg.name, name);
            let again = SimConfig::from_toml(&cfg.to_toml()).unwrap();
            assert_eq!(again, cfg, "{name}");
        }
        assert!(preset("model9").is_err());
    }

    #[test]
    fn a_recipe_extending_a_preset_changes_only_the_keys_it_names() {
        let text = "extends = \"survey\"\nname = \"survey-wide\"\n[image]\nsize = 48\n\
                    [classes.cdm]\ntype = \"none\"\n[neighbour]\nprobability = 0.5\nmagnitude = 20.0\n\
                    distance = 2.0\nr_sersic = 0.3\nn_sersic = 1.0\n";
        let variant = recipe_from_toml(text).unwrap();
        let survey = preset("survey").unwrap();
        assert_eq!(variant.name, "survey-wide");
        assert_eq!(variant.image.size, 48);
        assert_eq!(variant.image.pixel_scale, survey.image.pixel_scale, "a section keeps the keys not named");
        assert_eq!(variant.lens, survey.lens, "sections not named are the preset's");
        assert_eq!(variant.classes["axion"], survey.classes["axion"]);
        assert_ne!(variant.classes["cdm"], survey.classes["cdm"], "a named class replaces the preset's whole");
        assert!(variant.neighbour.is_some() && survey.neighbour.is_none());
        // Without `extends` a recipe is read as it is.
        assert_eq!(recipe_from_toml(preset_toml("survey").unwrap()).unwrap(), survey);
    }

    #[test]
    fn a_recipe_extending_what_is_not_a_preset_is_refused_by_name() {
        let unknown = recipe_from_toml("extends = \"surveys\"\n").unwrap_err().to_string();
        assert!(unknown.contains("extends") && unknown.contains("unknown preset `surveys`"), "{unknown}");
        // A section of another type replaces the preset's rather than merging with it.
        let moffat = "extends = \"survey\"\n[psf]\ntype = \"moffat\"\nfwhm = 0.17\nbeta = 3.0\n";
        let moffat = recipe_from_toml(moffat).unwrap();
        assert_eq!(
            moffat.psf,
            crate::sim::config::PsfConfig::Moffat { fwhm: 0.17.into(), beta: 3.0.into(), side: None }
        );
        let not_a_name = recipe_from_toml("extends = 3\n").unwrap_err().to_string();
        assert!(not_a_name.contains("must name a preset"), "{not_a_name}");
        let bad_key = recipe_from_toml("extends = \"survey\"\n[lens]\ntheta = 1.0\n").unwrap_err().to_string();
        assert!(bad_key.contains("theta"), "{bad_key}");
    }
}
