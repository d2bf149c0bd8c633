"""Side by side, as a Markdown table: the held-out figures of several `lensmae
evaluate` reports (a checkpoint's, or a predictions table's such as the ResNet-18
baseline's through `evaluate --predictions`).

    python bench/compare_reports.py NAME=REPORT.json [NAME=REPORT.json ...]

Columns: macro AUC, per-class AUC, ECE, and the brightness-matched detection AUC
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
        rows.append((name, metrics["macro_auc"], per_class, report["calibration"]["ece"], matched))
    bins = bins or []
    print("| model | macro AUC | per class | ECE | " + " | ".join(f"matched detection AUC, refit {b}" for b in bins) + " |")
    print("|---" * (4 + len(bins)) + "|")
    for name, auc, per_class, ece, matched in rows:
        cells = [f"{matched[b]:.3f}" if matched.get(b) is not None else "-" for b in bins]
        print(f"| {name} | {auc:.3f} | {per_class} | {ece:.3f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
