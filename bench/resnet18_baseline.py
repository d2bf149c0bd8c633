"""ResNet-18 trained in PyTorch on lensmae's survey lenses: the DeepLense papers'
baseline, on the same images and split as the ViT (issue 20).

    python bench/resnet18_baseline.py DATASET SPLIT_JSON OUT_JSON [EPOCHS] [HELDOUT [PREDICTIONS]]
        [--scaling noise-asinh|antisymmetric-asinh] [--also HELDOUT2 PREDICTIONS2 ...] [--tta]
        [--width W]

DATASET: a `lensmae simulate` Parquet file, or several joined by commas in the order a
`finetune --data a b` run joined them (its split names each row `[dataset, id]`);
SPLIT_JSON: the `<checkpoint>.split.json`
a lensmae fine-tuning wrote (the ids of its train / validation / test rows); the
model with the best validation macro AUC is evaluated on the test rows and, when
given, on every row of HELDOUT (another seed). Inputs get lensmae's `noise-asinh`
scaling (asinh of the background-subtracted cutout in units of the noise estimated
from it: src/model/preprocess.rs; with `--scaling antisymmetric-asinh`, the same of
the cutout's point-antisymmetric part, as lensmae's scaling of that name), dihedral
augmentation in training, AdamW with a
cosine schedule. The network is torchvision's ResNet-18 layout (7x7/2 stem, max
pool, 4 stages of 2 basic blocks, 64-512 channels) with one input channel and 3
outputs, written out here so that only torch is needed; `--width W` gives its stages
W, 2W, 4W and 8W channels (default 64, torchvision's; 16 does a fifteenth of its
multiply-adds, which bench/conv_speed.py prints). Writes macro and per-class
AUC (one-vs-rest, as scikit-learn's roc_auc_score) and accuracy as JSON; with
PREDICTIONS, also the held-out rows' probabilities as a Parquet table in the columns of
`lensmae predict` (`row`, `id`, `p_<class>`), so that `lensmae evaluate --predictions
PREDICTIONS --input HELDOUT` puts the baseline through the ViT's report (bins of
`sub_snr` / `sub_snr_refit`, brightness-matched detection AUC, calibration). Each
`--also HELDOUT2 PREDICTIONS2` (repeatable) scores one more labelled set with the same
model and writes its probabilities likewise (lenses another simulator rendered).
With `--tta`, each held-out set is also scored with the probabilities averaged over
the 8 rotations and mirrors of each prepared image (as `lensmae predict --tta
dihedral`), written beside its predictions as `X.tta.parquet`.
Needs torch, numpy, pyarrow (bench/requirements-torch.txt).
"""
import json
import math
import os
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from ood_auroc import auroc  # bench/: the tie-aware rank AUROC
from torch import nn

SCALINGS = ("noise-asinh", "antisymmetric-asinh")


def noise_asinh(images):
    """lensmae's `noise-asinh` scaling of a batch of square images (n, s, s)."""
    n, s, _ = images.shape
    frame = np.ones((s, s), bool)
    frame[2:-2, 2:-2] = False
    background = np.median(images[:, frame], axis=1)
    diffs = images[:, :, 1:] - images[:, :, :-1]
    diffs = diffs.reshape(n, -1)
    centre = np.median(diffs, axis=1, keepdims=True)
    sigma = 1.4826 * np.median(np.abs(diffs - centre), axis=1) / math.sqrt(2)
    span = images.reshape(n, -1).max(1) - images.reshape(n, -1).min(1)
    sigma = np.where(sigma > 0, sigma, 1e-6 * span)
    scaled = np.arcsinh((images - background[:, None, None]) / np.where(sigma > 0, sigma, 1)[:, None, None])
    return np.where((sigma > 0)[:, None, None], scaled, 0).astype(np.float32)


def point_antisymmetric(images):
    """lensmae's `antisymmetric-asinh` before its asinh: (I(x) - I(-x)) / sqrt 2 about
    each cutout's centre, in which the deflector's light and the sky cancel."""
    return ((images - images[:, ::-1, ::-1]) / math.sqrt(2)).astype(np.float32)


def scale(images, scaling):
    return noise_asinh(point_antisymmetric(images) if scaling == "antisymmetric-asinh" else images)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (x if self.down is None else self.down(x)))


class ResNet18(nn.Module):
    def __init__(self, classes, width=64):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        layers, cin = [], width
        for cout, stride in [(width, 1), (2 * width, 2), (4 * width, 2), (8 * width, 2)]:
            layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(8 * width, classes)

    def forward(self, x):
        x = self.layers(self.stem(x))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def roc_auc(scores, positive):
    """One-vs-rest area under the ROC curve, ties counted half (scikit-learn's value)."""
    return float(auroc(scores[~positive], scores[positive]))


def metrics(probs, labels, names):
    per_class = {name: roc_auc(probs[:, k], labels == k) for k, name in enumerate(names)}
    return {"macro_auc": float(np.mean(list(per_class.values()))), "per_class_auc": per_class,
            "accuracy": float((probs.argmax(1) == labels).mean()), "n": int(len(labels))}


def load(path):
    table = pq.read_table(path, columns=["id", "label_idx", "image"])
    names = json.loads(table.schema.metadata[b"lensmae:class_names"])
    images = table.column("image").combine_chunks().to_numpy_ndarray().astype(np.float32)
    return table.column("id").to_numpy(), table.column("label_idx").to_numpy().astype(np.int64), images, names


def load_joined(paths, split):
    """The datasets of `paths` joined in order, and each split's rows in the join: a
    split of one dataset names ids, a split of several `[dataset index, id]` pairs."""
    joined = isinstance(split["data"], list)
    named = split["data"] if joined else [split["data"]]
    if [os.path.realpath(p) for p in paths] != [os.path.realpath(p) for p in named]:
        sys.exit(f"the split was made on {named}, not on {paths}")
    parts = [load(path) for path in paths]
    names = parts[0][3]
    if any(part[3] != names for part in parts):
        sys.exit("the datasets name different classes")
    row_of, offset = {}, 0
    for k, (ids, _, _, _) in enumerate(parts):
        row_of.update({(k, int(i)): offset + r for r, i in enumerate(ids)})
        offset += len(ids)
    key = (lambda entry: (int(entry[0]), int(entry[1]))) if joined else (lambda entry: (0, int(entry)))
    rows = {k: np.array([row_of[key(entry)] for entry in split[k]]) for k in ("train", "validation", "test")}
    labels = np.concatenate([part[1] for part in parts])
    images = np.concatenate([part[2] for part in parts])
    return labels, images, names, rows


def predict(model, images, batch=256):
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            out.append(torch.softmax(model(torch.from_numpy(images[i:i + batch, None])), 1).numpy())
    return np.concatenate(out)


def predict_dihedral(model, images):
    """The mean of the probabilities of the 8 rotations and mirrors of each prepared
    image, as `lensmae predict --tta dihedral`."""
    views = [np.rot90(images, k, axes=(1, 2)) for k in range(4)]
    views += [v[:, :, ::-1] for v in views]
    return np.mean([predict(model, np.ascontiguousarray(v)) for v in views], axis=0)


def tta_path(path):
    """Where the --tta probabilities of a predictions file go: `X.parquet` -> `X.tta.parquet`."""
    return path[:-len(".parquet")] + ".tta.parquet" if path.endswith(".parquet") else path + ".tta"


def write_predictions(path, ids, probs, names):
    """Per-row probabilities in `lensmae predict`'s columns (schemas/predictions.json)."""
    columns = {"row": pa.array(np.arange(len(ids), dtype=np.int64)), "id": pa.array(ids.astype(np.int64))}
    for k, name in enumerate(names):
        columns[f"p_{name}"] = pa.array(probs[:, k].astype(np.float32))
    pq.write_table(pa.table(columns), path)


def main():
    args = sys.argv[1:]
    scaling = "noise-asinh"
    if "--scaling" in args:
        at = args.index("--scaling")
        scaling = args[at + 1]
        del args[at:at + 2]
        if scaling not in SCALINGS:
            sys.exit(f"--scaling {scaling}: one of {', '.join(SCALINGS)}")
    width = 64
    if "--width" in args:
        at = args.index("--width")
        width = int(args[at + 1])
        del args[at:at + 2]
        if width < 1:
            sys.exit(f"--width {width}: a positive number of channels")
    tta = "--tta" in args
    if tta:
        args.remove("--tta")
    also = []
    while "--also" in args:
        at = args.index("--also")
        also.append((args[at + 1], args[at + 2]))
        del args[at:at + 3]
    data, split_path, out_path = args[:3]
    epochs = int(args[3]) if len(args) > 3 else 8
    heldout = args[4] if len(args) > 4 else None
    predictions_out = args[5] if len(args) > 5 else None
    torch.manual_seed(42)
    rng = np.random.default_rng(42)
    split = json.load(open(split_path))
    labels, images, names, part = load_joined(data.split(","), split)
    images = scale(images, scaling)
    model = ResNet18(len(names), width)
    batch, lr = 64, 1e-3
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    steps = epochs * math.ceil(len(part["train"]) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    best, best_state, log = -1.0, None, []
    for epoch in range(1, epochs + 1):
        model.train()
        order = rng.permutation(part["train"])
        started, total = time.perf_counter(), 0.0
        for i in range(0, len(order), batch):
            rows = order[i:i + batch]
            x = images[rows]
            # Dihedral augmentation: a random rotation by k * 90 degrees and a mirror.
            x = np.rot90(x, rng.integers(4), axes=(1, 2))
            if rng.integers(2):
                x = x[:, :, ::-1]
            x = torch.from_numpy(np.ascontiguousarray(x)[:, None])
            loss = nn.functional.cross_entropy(model(x), torch.from_numpy(labels[rows]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(rows)
        val = metrics(predict(model, images[part["validation"]]), labels[part["validation"]], names)
        log.append({"epoch": epoch, "train_loss": total / len(order), "val_macro_auc": val["macro_auc"],
                    "images_per_s": len(order) / (time.perf_counter() - started)})
        print(json.dumps(log[-1]), flush=True)
        if val["macro_auc"] > best:
            best, best_state = val["macro_auc"], {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    result = {"model": "ResNet-18 (PyTorch)", "width": width,
              "parameters": sum(p.numel() for p in model.parameters()), "data": data, "split": split_path, "epochs": epochs, "seed": 42,
              "scaling": scaling,
              "torch": torch.__version__, "threads": torch.get_num_threads(), "log": log,
              "test": metrics(predict(model, images[part["test"]]), labels[part["test"]], names)}
    if heldout:
        h_ids, h_labels, h_images, _ = load(heldout)
        h_probs = predict(model, scale(h_images, scaling))
        result["heldout"] = metrics(h_probs, h_labels, names)
        result["heldout_data"] = heldout
        if predictions_out:
            write_predictions(predictions_out, h_ids, h_probs, names)
            result["heldout_predictions"] = predictions_out
        if tta:
            h_tta = predict_dihedral(model, scale(h_images, scaling))
            result["heldout_tta"] = metrics(h_tta, h_labels, names)
            if predictions_out:
                write_predictions(tta_path(predictions_out), h_ids, h_tta, names)
    for other, other_predictions in also:
        o_ids, o_labels, o_images, _ = load(other)
        o_probs = predict(model, scale(o_images, scaling))
        write_predictions(other_predictions, o_ids, o_probs, names)
        entry = {"data": other, "metrics": metrics(o_probs, o_labels, names), "predictions": other_predictions}
        if tta:
            o_tta = predict_dihedral(model, scale(o_images, scaling))
            write_predictions(tta_path(other_predictions), o_ids, o_tta, names)
            entry["metrics_tta"] = metrics(o_tta, o_labels, names)
        result.setdefault("also", []).append(entry)
    json.dump(result, open(out_path, "w"), indent=1)
    print(json.dumps({k: result[k] for k in ("test", "heldout", "heldout_tta", "also") if k in result}))


if __name__ == "__main__":
    main()
