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
}
