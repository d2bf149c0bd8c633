//! Pipelines: a TOML file of steps, each one lensmae command with its arguments,
//! run in order in one run folder.
//!
//! ```toml
//! [pipeline]
//! dir = "runs/quickstart"          # `{dir}` in any argument is replaced by this
//!
//! [[step]]
//! name = "data"
//! command = "simulate"
//! args = { preset = "deeplense-model2", n-per-class = 300, out = "{dir}/data" }
//! ```
//!
//! `[vars]` holds the pipeline's knobs (`{name}` in any argument; `lensmae run
//! --set name=value` overrides one). Arguments become flags (`key = value` -> `--key value`, `true` -> `--key`,
//! a list -> `--key a b`). A step is skipped when its outputs (`out`, `report`,
//! `grid`, `roc-plot`) exist and its fingerprint (the command, the arguments, the
//! contents of its input files and the lensmae program itself) equals the one
//! recorded when it last finished, so an interrupted pipeline continues where it
//! stopped, an edited one reruns what changed and what depends on it, and another
//! build of lensmae (whose arithmetic may differ) reruns everything.

use crate::{Error, Result};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Argument keys naming files a step reads (their contents enter the fingerprint).
const INPUT_KEYS: [&str; 6] = ["data", "input", "init", "model", "sr-model", "config"];
/// Argument keys naming what a step writes.
const OUTPUT_KEYS: [&str; 5] = ["out", "superres-out", "report", "grid", "roc-plot"];

/// A parsed pipeline file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// Settings shared by the steps.
    #[serde(default)]
    pub pipeline: PipelineSettings,
    /// Named values, `{name}` in any argument (`lensmae run --set name=value`
    /// overrides them): the pipeline's knobs, such as its scale.
    #[serde(default)]
    pub vars: BTreeMap<String, toml::Value>,
    /// The steps, in order.
    #[serde(rename = "step", default)]
    pub steps: Vec<Step>,
}

/// The `[pipeline]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSettings {
    /// The run folder (default `runs/<file stem>`).
    pub dir: Option<PathBuf>,
    /// What the pipeline is for.
    pub description: Option<String>,
}

/// One `[[step]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Unique name (the fingerprint file is named after it).
    pub name: String,
    /// The lensmae subcommand (`simulate`, `pretrain`, `finetune`, `evaluate`, `predict`, ...).
    pub command: String,
    /// Its arguments, without the leading `--`.
    #[serde(default)]
    pub args: BTreeMap<String, toml::Value>,
}

impl Pipeline {
    /// Reads and checks a pipeline file, with `overrides` (`name`, `value`) of its
    /// `[vars]` applied; `dir` defaults to `runs/<stem>`.
    pub fn load(path: &Path, overrides: &[(String, String)]) -> Result<Pipeline> {
        if path.is_dir() {
            return Err(Error::config(
                path.display().to_string(),
                "a folder: give the pipeline's TOML file (its run folder is named in it)",
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut p: Pipeline =
            toml::from_str(&text).map_err(|e| Error::config(path.display().to_string(), e.to_string()))?;
        for (name, value) in overrides {
            if !p.vars.contains_key(name) {
                let known: Vec<&str> = p.vars.keys().map(String::as_str).collect();
                let has = match known.as_slice() {
                    [] => "it has no [vars]".to_string(),
                    _ => format!("it has: {}", known.join(", ")),
                };
                return Err(Error::config(
                    format!("--set {name}"),
                    format!("{} has no var `{name}` ({has})", path.display()),
                ));
            }
            p.vars.insert(name.clone(), toml::Value::String(value.clone()));
        }
        let vars: Vec<(String, String)> = p
            .vars
            .iter()
            .map(|(k, v)| (format!("{{{k}}}"), v.as_str().map_or_else(|| v.to_string(), str::to_string)))
            .collect();
        for step in &mut p.steps {
            for value in step.args.values_mut() {
                substitute_vars(value, &vars);
            }
        }
        if let Some(dir) = &p.pipeline.dir {
            let mut value = toml::Value::String(dir.display().to_string());
            substitute_vars(&mut value, &vars);
            p.pipeline.dir = value.as_str().map(PathBuf::from);
        }
        if p.pipeline.dir.is_none() {
            let stem = path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
            p.pipeline.dir = Some(PathBuf::from("runs").join(stem));
        }
        // What is left in braces after the vars is `{dir}` or a typo.
        for step in &p.steps {
            for (key, value) in &step.args {
                let strings: Vec<&str> = match value {
                    toml::Value::Array(items) => items.iter().filter_map(toml::Value::as_str).collect(),
                    v => v.as_str().into_iter().collect(),
                };
                if let Some(unknown) = strings.iter().find_map(|s| unknown_placeholder(s)) {
                    let mut known: Vec<String> = vars.iter().map(|(k, _)| k.clone()).collect();
                    known.insert(0, "{dir}".into());
                    return Err(Error::config(
                        format!("step `{}`, key `{key}`", step.name),
                        format!("unknown placeholder `{unknown}` (known: {})", known.join(", ")),
                    ));
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        for step in &p.steps {
            if !seen.insert(step.name.as_str()) {
                return Err(Error::config(format!("step `{}`", step.name), "two steps have this name"));
            }
            if step.command == "run" {
                return Err(Error::config(format!("step `{}`", step.name), "a pipeline cannot run a pipeline"));
            }
        }
        if p.steps.is_empty() {
            return Err(Error::config(path.display().to_string(), "no [[step]]"));
        }
        Ok(p)
    }

    /// The run folder.
    pub fn dir(&self) -> &Path {
        self.pipeline.dir.as_deref().expect("set by load")
    }
}

/// Replaces `{name}` of every var in the strings of `value`.
fn substitute_vars(value: &mut toml::Value, vars: &[(String, String)]) {
    match value {
        toml::Value::String(s) => {
            for (pattern, replacement) in vars {
                *s = s.replace(pattern.as_str(), replacement);
            }
        }
        toml::Value::Array(items) => items.iter_mut().for_each(|v| substitute_vars(v, vars)),
        _ => {}
    }
}

/// The first `{name}` in `s` (a name of letters, digits, `_` or `-`) other than `{dir}`.
fn unknown_placeholder(s: &str) -> Option<&str> {
    let mut rest = s;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after.find('}')?;
        let name = &after[..close];
        let is_name = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if is_name && name != "dir" {
            return Some(&rest[open..open + close + 2]);
        }
        rest = &after[close + 1..];
    }
    None
}

fn substitute(value: &str, dir: &Path) -> String {
    value.replace("{dir}", &dir.display().to_string())
}

/// A TOML argument value as command-line words; a bad type names the step and key.
fn words(step: &Step, key: &str, value: &toml::Value, dir: &Path) -> Result<Vec<String>> {
    let scalar = |v: &toml::Value| -> Result<String> {
        Ok(match v {
            toml::Value::String(s) => substitute(s, dir),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            other => {
                return Err(Error::config(
                    format!("step `{}`, key `{key}`", step.name),
                    format!("a {} is not an argument value", other.type_str()),
                ))
            }
        })
    };
    Ok(match value {
        toml::Value::Boolean(true) => vec![format!("--{key}")],
        toml::Value::Boolean(false) => vec![],
        toml::Value::Array(items) => {
            let mut w = vec![format!("--{key}")];
            for item in items {
                w.push(scalar(item)?);
            }
            w
        }
        v => vec![format!("--{key}"), scalar(v)?],
    })
}

impl Step {
    /// The command line of this step (without the program name).
    pub fn argv(&self, dir: &Path) -> Result<Vec<String>> {
        // `command = "model export"`: a subcommand is more than one word.
        let mut argv: Vec<String> = self.command.split_whitespace().map(String::from).collect();
        for (key, value) in &self.args {
            argv.extend(words(self, key, value, dir)?);
        }
        Ok(argv)
    }

    fn paths(&self, keys: &[&str], dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for (key, value) in &self.args {
            if !keys.contains(&key.as_str()) {
                continue;
            }
            let values = match value {
                toml::Value::Array(items) => items.clone(),
                v => vec![v.clone()],
            };
            out.extend(values.iter().filter_map(|v| v.as_str()).map(|s| PathBuf::from(substitute(s, dir))));
        }
        out
    }

    /// The path argument `key` (the first, for a list), `{dir}` substituted.
    pub fn path(&self, key: &str, dir: &Path) -> Option<PathBuf> {
        self.paths(&[key], dir).into_iter().next()
    }

    /// What the step writes.
    pub fn outputs(&self, dir: &Path) -> Vec<PathBuf> {
        self.paths(&OUTPUT_KEYS, dir)
    }

    /// SHA-256 of the running program, the command line and the contents of
    /// every input file (folders walked in name order).
    pub fn fingerprint(&self, dir: &Path) -> Result<String> {
        let mut hasher = Sha256::new();
        hasher.update(program_identity().as_bytes());
        for word in self.argv(dir)? {
            hasher.update(word.as_bytes());
            hasher.update([0]);
        }
        for input in self.paths(&INPUT_KEYS, dir).into_iter().filter(|p| p.exists()) {
            hash_path(&input, &mut hasher)?;
        }
        Ok(hex(hasher))
    }
}

/// SHA-256 of the running executable (0.1 s for lensmae's 26 MB, once per
/// process): a step done by another build of lensmae is not "unchanged", since
/// a new kernel may round differently. Falls back to the version when the
/// executable cannot be read.
fn program_identity() -> &'static str {
    static IDENTITY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    IDENTITY.get_or_init(|| {
        let hashed = std::env::current_exe().ok().and_then(|exe| {
            let mut hasher = Sha256::new();
            hash_path(&exe, &mut hasher).ok()?;
            Some(hex(hasher))
        });
        hashed.unwrap_or_else(|| concat!("lensmae ", env!("CARGO_PKG_VERSION")).to_string())
    })
}

fn hex(hasher: Sha256) -> String {
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn hash_path(path: &Path, hasher: &mut Sha256) -> Result<()> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> =
            std::fs::read_dir(path).map_err(|e| Error::io(path, e))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        for entry in entries {
            hasher.update(entry.file_name().unwrap_or_default().to_string_lossy().as_bytes());
            hash_path(&entry, hasher)?;
        }
        return Ok(());
    }
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    std::io::copy(&mut file, hasher).map_err(|e| Error::io(path, e))?;
    Ok(())
}

/// Where a finished step's fingerprint is kept.
fn marker(dir: &Path, step: &Step) -> PathBuf {
    dir.join(".lensmae-run").join(format!("{}.sha256", step.name))
}

/// Whether `step` finished before with the same fingerprint and its outputs are there.
pub fn is_done(dir: &Path, step: &Step) -> Result<bool> {
    let recorded = std::fs::read_to_string(marker(dir, step)).unwrap_or_default();
    Ok(!recorded.is_empty()
        && recorded.trim() == step.fingerprint(dir)?
        && step.outputs(dir).iter().all(|p| p.exists()))
}

/// Records that `step` finished.
pub fn mark_done(dir: &Path, step: &Step) -> Result<()> {
    crate::data::atomic::write_atomically(&marker(dir, step), step.fingerprint(dir)? + "\n")
}

/// The metrics of an `evaluate` step's JSON report, as table cells:
/// (step, what, metric, value).
pub fn report_rows(step: &Step, dir: &Path) -> Vec<(String, String, String, f64)> {
    let Some(path) = step.path("report", dir) else { return vec![] };
    let Ok(text) = std::fs::read_to_string(&path) else { return vec![] };
    let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else { return vec![] };
    let mut rows = Vec::new();
    let mut push = |what: &str, metric: &str, v: &serde_json::Value| {
        if let Some(x) = v.as_f64() {
            rows.push((step.name.clone(), what.to_string(), metric.to_string(), x));
        }
    };
    let m = &json["report"]["metrics"];
    push("classifier", "macro AUC", &m["macro_auc"]);
    push("classifier", "accuracy", &m["accuracy"]);
    for method in ["model", "bicubic"] {
        let s = &json["superres"][method];
        push(method, "SSIM", &s["ssim"]);
        push(method, "PSNR dB", &s["psnr"]);
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_other_than_dir_and_the_vars_are_typos() {
        assert_eq!(unknown_placeholder("{dir}/train/{dri}/x"), Some("{dri}"));
        assert_eq!(unknown_placeholder("{dir}/train"), None);
        assert_eq!(unknown_placeholder("{\"shape\": [1, 2]}"), None);
        assert_eq!(unknown_placeholder("{per_class}"), Some("{per_class}"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        let pipeline = |arg: &str| {
            format!("[vars]\nn = \"3\"\n[[step]]\nname = \"s\"\ncommand = \"simulate\"\nargs = {{ out = \"{arg}\" }}\n")
        };
        std::fs::write(&path, pipeline("{dir}/{n}")).unwrap();
        assert!(Pipeline::load(&path, &[]).is_ok());
        std::fs::write(&path, pipeline("{dri}/data")).unwrap();
        let err = Pipeline::load(&path, &[]).unwrap_err().to_string();
        assert!(err.contains("unknown placeholder `{dri}`") && err.contains("{dir}, {n}"), "{err}");
    }
}
