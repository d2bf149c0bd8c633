//! `lensmae run PIPELINE.toml`: every step is parsed as a lensmae command line
//! before any runs, so a bad key fails at once, naming its step.

use crate::cli::{dispatch_step, Cli};
use crate::pipeline::{is_done, mark_done, report_rows, Pipeline};
use anyhow::Context;
use clap::{Args, Parser};
use std::path::PathBuf;

/// Arguments of `lensmae run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The pipeline file.
    pipeline: PathBuf,
    /// Print the steps and what would be skipped, run nothing.
    #[arg(long)]
    dry_run: bool,
    /// Run every step, done or not.
    #[arg(long)]
    force: bool,
    /// Override a pipeline var: `--set per_class=300` (repeatable).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    set: Vec<String>,
    /// Compute device of every step that computes (takes `--device`) and names none itself.
    #[arg(long)]
    device: Option<String>,
    /// Matrix-product precision of those steps on CUDA (`f32`, `tf32`, `bf16`).
    #[arg(long, requires = "device")]
    precision: Option<String>,
}

/// Run `lensmae run`.
pub fn run_cmd(args: RunArgs) -> anyhow::Result<()> {
    let mut pipeline = Pipeline::load(&args.pipeline, &overrides(&args.set)?)?;
    for (key, value) in [("device", &args.device), ("precision", &args.precision)] {
        if let Some(value) = value {
            give_computing_steps(&mut pipeline, key, value);
        }
    }
    let dir = pipeline.dir().to_path_buf();
    let mut parsed = Vec::new();
    for step in &pipeline.steps {
        let argv = step.argv(&dir)?;
        let cli =
            Cli::try_parse_from(std::iter::once("lensmae".to_string()).chain(argv.iter().cloned())).map_err(|e| {
                let text = e.render().to_string();
                let first = text.lines().next().unwrap_or_default().trim_start_matches("error: ").to_string();
                anyhow::anyhow!("{}: step `{}`: {first}", args.pipeline.display(), step.name)
            })?;
        parsed.push((step, argv, cli.command));
    }
    if !args.dry_run {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let started = std::time::Instant::now();
    for (step, argv, command) in parsed {
        let done = !args.force && is_done(&dir, step)?;
        let line = format!("lensmae {}", argv.join(" "));
        if done {
            eprintln!("[{}] done before, unchanged: skipped ({line})", step.name);
            continue;
        }
        eprintln!("[{}] {line}", step.name);
        if args.dry_run {
            continue;
        }
        let t = std::time::Instant::now();
        let provenance = format!("{line} (step `{}` of {})", step.name, args.pipeline.display());
        dispatch_step(command, provenance)
            .with_context(|| format!("{}: step `{}`", args.pipeline.display(), step.name))?;
        mark_done(&dir, step)?;
        eprintln!("[{}] finished in {:.1} s", step.name, t.elapsed().as_secs_f64());
    }
    if args.dry_run {
        return Ok(());
    }
    let rows: Vec<_> = pipeline.steps.iter().flat_map(|s| report_rows(s, &dir)).collect();
    if !rows.is_empty() {
        crate::cli::out(format_args!("\n| step | what | metric | value |\n|---|---|---|---|"))?;
        for (step, what, metric, value) in rows {
            crate::cli::out(format_args!("| {step} | {what} | {metric} | {value:.4} |"))?;
        }
    }
    if pipeline.steps.iter().any(|s| s.command == "evaluate") {
        let report = crate::report::run_report::write_run_report(&pipeline, &args.pipeline)?;
        eprintln!("report -> {}", report.display());
    }
    eprintln!(
        "pipeline {} finished in {:.0} s; outputs in {}",
        args.pipeline.display(),
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    Ok(())
}

/// Sets `key = value` on every step whose command takes `--key` and does not
/// set it itself. Becoming part of the step's arguments, it is also part of its
/// fingerprint: a step done on another device is run again.
fn give_computing_steps(pipeline: &mut Pipeline, key: &str, value: &str) {
    let cli = <Cli as clap::CommandFactory>::command();
    for step in &mut pipeline.steps {
        let mut command = Some(&cli);
        for word in step.command.split_whitespace() {
            command = command.and_then(|c| c.find_subcommand(word));
        }
        let takes_it = command.is_some_and(|c| c.get_arguments().any(|a| a.get_long() == Some(key)));
        if takes_it && !step.args.contains_key(key) {
            step.args.insert(key.to_string(), toml::Value::String(value.to_string()));
        }
    }
}

fn overrides(set: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    set.iter()
        .map(|kv| kv.split_once('=').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
        .collect::<Option<Vec<_>>>()
        .context("--set wants NAME=VALUE")
}

/// Arguments of `lensmae report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The pipeline whose run folder to report on.
    pipeline: PathBuf,
    /// The same `--set NAME=VALUE` overrides the run used.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    set: Vec<String>,
}

/// Run `lensmae report`: (re)writes `<run folder>/report.md` and its figures.
pub fn report_cmd(args: ReportArgs) -> anyhow::Result<()> {
    let pipeline = Pipeline::load(&args.pipeline, &overrides(&args.set)?)?;
    let path = crate::report::run_report::write_run_report(&pipeline, &args.pipeline)?;
    crate::cli::out(format_args!("{}", path.display()))?;
    Ok(())
}
