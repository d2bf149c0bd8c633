"""Side by side, as a Markdown table: the held-out figures of several `lensmae
evaluate` reports (a checkpoint's, or a predictions table's such as the ResNet-18
baseline's through `evaluate --predictions`).

    python bench/compare_reports.py NAME=REPORT.json [NAME=REPORT.json ...]

Columns: macro AUC, per-class AUC, ECE, the macro AUC where the substructure is
detectable (`sub_snr` >= 10 with every `no_sub`, the issue's goal subset; `-` for
reports made before `evaluate` wrote it), and the brightness-matched detection AUC
(substructure against `no_sub` of the same source magnitudes) per bin of
`sub_snr_refit`, the substructure signal no smooth lens imitates. Standard library only.
"""
import json
import sys


def main():
    rows, bins = [], None
    for arg in sys.argv[1:]:
        name, path = arg.split("=", 1)
        report = json.load(open(path))
        metrics = report["report"]["metrics"]
        classes = report["report"]["class_names"]
        refit = next((b for b in report.get("binned", []) if b["parameter"] == "sub_snr_refit"), None)
        matched = {}
        if refit:
            for b in refit["bins"]:
                high = "inf" if b["high"] is None or b["high"] > 1e300 else f"{b['high']:g}"
                matched[f"[{b['low']:g}, {high})"] = b["detection_auc_matched"]
            bins = bins or list(matched)
        per_class = ", ".join(f"{c} {a:.3f}" for c, a in zip(classes, metrics["per_class_auc"]) if a is not None)
        goal = next((d for d in report.get("detectable", []) if d["parameter"] == "sub_snr"), None)
        goal_auc = f"{goal['metrics']['macro_auc']:.3f}" if goal else "-"
        rows.append((name, metrics["macro_auc"], per_class, report["calibration"]["ece"], goal_auc, matched))
    bins = bins or []
    head = "| model | macro AUC | per class | ECE | macro AUC, `sub_snr` >= 10 and every `no_sub` | "
    print(head + " | ".join(f"matched detection AUC, refit {b}" for b in bins) + " |")
    print("|---" * (5 + len(bins)) + "|")
    for name, auc, per_class, ece, goal_auc, matched in rows:
        cells = [f"{matched[b]:.3f}" if matched.get(b) is not None else "-" for b in bins]
        print(f"| {name} | {auc:.3f} | {per_class} | {ece:.3f} | {goal_auc} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
