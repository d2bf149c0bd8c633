//! `report.md` of a pipeline run: the evaluation tables with the paper's numbers
//! beside ours, training curves, the mask-ratio plot, and links to the ROC curves
//! and SR example grids that `evaluate` drew.

use super::plot::{line_chart_png, Chart, Series};
use crate::data::atomic::write_atomically;
use crate::pipeline::{Pipeline, Step};
use crate::Result;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The paper's single-run numbers (arXiv 2512.06642, Tables 1-3) for a step,
/// recognised by its name: classification (macro AUC, accuracy, macro F1) or
/// super-resolution (PSNR dB, SSIM).
fn paper_numbers(step: &str) -> Option<(&'static str, [f64; 3])> {
    let classify = [
        ("probe", "MAE frozen encoder + linear head", [0.5365, 0.34, 0.27]),
        ("scratch", "from scratch", [0.957, 0.8246, 0.818]),
        ("mask90", "MAE mask 0.9, fine-tuned", [0.968, 0.8865, 0.885]),
        ("mask75", "MAE mask 0.75, fine-tuned", [0.950, 0.838, 0.832]),
        ("mask50", "MAE mask 0.5, fine-tuned", [0.950, 0.794, 0.799]),
    ];
    let superres = [
        ("scratch", "from scratch", [33.01, 0.955, f64::NAN]),
        ("mask90", "MAE mask 0.9", [32.65, 0.955, f64::NAN]),
        ("mask75", "MAE mask 0.75", [32.99, 0.962, f64::NAN]),
        ("mask50", "MAE mask 0.5", [34.01, 0.954, f64::NAN]),
    ];
    let table: &[(&str, &str, [f64; 3])] = if step.contains("superres") { &superres } else { &classify };
    table.iter().find(|(key, _, _)| step.contains(key)).map(|(_, label, v)| (*label, *v))
}

fn read_json(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// A step's epoch logs (`<out>.log.jsonl`).
fn epoch_logs(step: &Step, dir: &Path) -> Vec<serde_json::Value> {
    let Some(out) = step.path("out", dir) else { return vec![] };
    let text = std::fs::read_to_string(crate::model::checkpoint::log_path(&out)).unwrap_or_default();
    text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

fn fmt(v: &serde_json::Value) -> String {
    v.as_f64().map_or_else(|| "-".into(), |x| format!("{x:.4}"))
}

fn relative(path: &Path, dir: &Path) -> String {
    path.strip_prefix(dir).unwrap_or(path).display().to_string()
}

/// Links the figure `evaluate` drew beside a step's report (`<report stem>.<suffix>`).
fn link_figure(figures: &mut String, step: &Step, dir: &Path, suffix: &str, caption: &str) {
    let Some(report) = step.path("report", dir) else { return };
    let figure = super::beside(&report, suffix);
    if figure.exists() {
        let _ = writeln!(figures, "![{caption} of {}]({})\n", step.name, relative(&figure, dir));
    }
}

/// One chart of `field` per epoch over the training steps `steps`.
fn curves(dir: &Path, steps: &[&Step], field: &str, title: &str, file: &str) -> Result<Option<String>> {
    let series: Vec<Series> = steps
        .iter()
        .map(|s| Series {
            name: s.name.clone(),
            points: epoch_logs(s, dir)
                .iter()
                .filter_map(|l| Some((l["epoch"].as_f64()?, l[field].as_f64()?)))
                .collect(),
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    if series.is_empty() {
        return Ok(None);
    }
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let ys: Vec<f64> = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).collect();
    let (lo, hi) = ys.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &y| (a.min(y), b.max(y)));
    let pad = ((hi - lo) * 0.05).max(1e-6);
    let chart = Chart {
        title: title.into(),
        x_label: "epoch".into(),
        y_label: field.replace('_', " "),
        x_range: (1.0, xs.fold(1.0, f64::max).max(2.0)),
        y_range: (lo - pad, hi + pad),
        diagonal: false,
        size: (720, 440),
    };
    write_atomically(&dir.join(file), line_chart_png(&chart, &series)?)?;
    Ok(Some(format!("![{title}]({file})\n")))
}

/// Writes `report.md` (and its figures) into the pipeline's run folder; returns its path.
pub fn write_run_report(pipeline: &Pipeline, source: &Path) -> Result<PathBuf> {
    let dir = pipeline.dir();
    let mut md = String::new();
    let _ = writeln!(md, "# Report: `{}`\n", source.display());
    if let Some(d) = &pipeline.pipeline.description {
        let _ = writeln!(md, "{d}\n");
    }
    let _ = writeln!(md, "Run folder `{}`; vars: {}.\n", dir.display(), {
        let v: Vec<String> = pipeline.vars.iter().map(|(k, v)| format!("`{k} = {v}`")).collect();
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    });
    let evaluations: Vec<(&Step, serde_json::Value)> = pipeline
        .steps
        .iter()
        .filter(|s| s.command == "evaluate")
        .filter_map(|s| Some((s, read_json(&s.path("report", dir)?)?)))
        .collect();

    let _ = writeln!(md, "## Classification (held-out)\n");
    let _ = writeln!(
        md,
        "| step | macro AUC | accuracy | macro F1 | paper setup | paper AUC | paper accuracy | paper F1 |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    let mut mask_points = Vec::new();
    let mut figures = String::new();
    for (step, json) in evaluations.iter().filter(|(_, j)| j.get("report").is_some()) {
        let m = &json["report"]["metrics"];
        let paper = paper_numbers(&step.name);
        let (label, p) = paper.map_or(("-".to_string(), ["-".into(), "-".into(), "-".into()]), |(l, v)| {
            (l.to_string(), v.map(|x| format!("{x:.4}")))
        });
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {label} | {} | {} | {} |",
            step.name,
            fmt(&m["macro_auc"]),
            fmt(&m["accuracy"]),
            fmt(&m["macro_f1"]),
            p[0],
            p[1],
            p[2]
        );
        for (key, ratio) in [("mask50", 0.5), ("mask75", 0.75), ("mask90", 0.9)] {
            if step.name.contains(key) && !step.name.contains("probe") {
                if let Some(auc) = m["macro_auc"].as_f64() {
                    mask_points.push((ratio, auc, paper.map_or(f64::NAN, |p| p.1[0])));
                }
            }
        }
        link_figure(&mut figures, step, dir, "roc.png", "ROC curves");
    }
    let _ = writeln!(md, "\n{figures}");
    figures.clear();
    if mask_points.len() >= 2 {
        let ours = Series { name: "lensmae".into(), points: mask_points.iter().map(|p| (p.0, p.1)).collect() };
        let paper = Series { name: "paper".into(), points: mask_points.iter().map(|p| (p.0, p.2)).collect() };
        let chart = Chart {
            title: "Held-out macro AUC against the pretraining mask ratio".into(),
            x_label: "mask ratio".into(),
            y_label: "macro AUC".into(),
            x_range: (0.45, 0.95),
            y_range: (0.4, 1.0),
            diagonal: false,
            size: (720, 440),
        };
        write_atomically(&dir.join("mask-ratio.png"), line_chart_png(&chart, &[ours, paper])?)?;
        let _ = writeln!(md, "![mask ratio](mask-ratio.png)\n");
    }

    let _ = writeln!(md, "\n## Super-resolution 16x16 -> 64x64 (held-out)\n");
    let _ = writeln!(
        md,
        "| step | PSNR dB | SSIM | bicubic PSNR dB | bicubic SSIM | paper setup | paper PSNR dB | paper SSIM |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    for (step, json) in evaluations.iter().filter(|(_, j)| j.get("superres").is_some()) {
        let (m, b) = (&json["superres"]["model"], &json["superres"]["bicubic"]);
        let (label, psnr, ssim) = paper_numbers(&step.name)
            .map_or(("-".to_string(), "-".to_string(), "-".to_string()), |(l, v)| {
                (l.to_string(), format!("{:.2}", v[0]), format!("{:.3}", v[1]))
            });
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {label} | {psnr} | {ssim} |",
            step.name,
            fmt(&m["psnr"]),
            fmt(&m["ssim"]),
            fmt(&b["psnr"]),
            fmt(&b["ssim"])
        );
        link_figure(&mut figures, step, dir, "grid.png", "SR examples");
    }
    let _ = writeln!(md, "\n{figures}");

    let _ = writeln!(md, "\n## Training curves\n");
    // Joint fine-tuning logs both tasks' validation metrics, so it joins both charts.
    let of = |command: &str, tasks: &[&str]| -> Vec<&Step> {
        pipeline
            .steps
            .iter()
            .filter(|s| {
                let task = s.args.get("task").and_then(|v| v.as_str()).unwrap_or("classify");
                s.command == command && (tasks.is_empty() || tasks.contains(&task))
            })
            .collect()
    };
    for (steps, field, title, file) in [
        (of("pretrain", &[]), "val_loss", "MAE validation loss", "curves-pretrain.png"),
        (
            of("finetune", &["classify", "joint"]),
            "val_macro_auc",
            "Classification validation macro AUC",
            "curves-classify.png",
        ),
        (of("finetune", &["superres", "joint"]), "val_psnr", "Super-resolution validation PSNR", "curves-superres.png"),
    ] {
        if let Some(line) = curves(dir, &steps, field, title, file)? {
            let _ = writeln!(md, "{line}");
        }
    }
    let _ = writeln!(md, "\nPaper: arXiv 2512.06642, single runs after 5 + 5 epochs (its Tables 1-3).");
    let path = dir.join("report.md");
    write_atomically(&path, md)?;
    Ok(path)
}
