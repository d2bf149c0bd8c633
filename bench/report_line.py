"""One line from a `lensmae evaluate` JSON report on stdin: macro AUC, the goal subset's
(`sub_snr` >= 10 and every `no_sub`), the fraction of rows in the model's domain, and the
macro AUC of those rows alone."""
import json
import sys

report = json.load(sys.stdin)
auc = report["report"]["metrics"]["macro_auc"]
subset = next(d for d in report["detectable"] if d["parameter"] == "sub_snr")["metrics"]["macro_auc"]
domain = report["domain"]["in_domain_fraction"]
in_domain_auc = report["domain"]["in_domain_metrics"]["macro_auc"]
print(f"macro AUC {auc:.4f}, goal subset {subset:.4f}, in domain {domain:.4f} (their macro AUC {in_domain_auc:.4f})")
