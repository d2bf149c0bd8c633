"""Diagnostic: does a small network trained with PyTorch learn the deeplense-model2
classes within a few epochs? (A cross-check of lensmae's training, not a result.)

    python bench/torch_plateau_check.py MODEL_JSON vit|cnn LR EPOCHS [std]

Reads runs/classify-1500/data/dataset.parquet (pipelines/classify.sh with 1500 per
class), min-max normalises each image, optionally standardises each pixel ("std"),
splits 3600/900 rows by a seeded permutation and prints train loss and test macro AUC
per epoch. MODEL_JSON sizes the twin ViT (ignored for the 3-layer CNN). The "std"
statistics are taken over the first 3600 rows in file order, which include test rows:
fine for a diagnostic of whether training moves at all, not for a reported result.
"""
import sys, json, numpy as np, torch, pyarrow.parquet as pq
sys.path.insert(0, "tests/oracle")
from twin_model import Twin
from sklearn.metrics import roc_auc_score
torch.set_num_threads(2); torch.manual_seed(0)
t = pq.read_table("runs/classify-1500/data/dataset.parquet", columns=["image", "label_idx"])
x = np.stack(t.column("image").to_numpy(zero_copy_only=False)).reshape(-1, 1, 64, 64).astype(np.float32)
lo, hi = x.min(axis=(1, 2, 3), keepdims=True), x.max(axis=(1, 2, 3), keepdims=True)
x = (x - lo) / (hi - lo)
y = np.array(t.column("label_idx").to_pylist())
if len(sys.argv) > 5:
    m, s = x[:3600].mean(0, keepdims=True), x[:3600].std(0, keepdims=True) + 1e-3
    x = ((x - m) / s).astype(np.float32)
rng = np.random.default_rng(0); idx = rng.permutation(len(y)); tr, te = idx[:3600], idx[3600:]
cfg = json.load(open(sys.argv[1]))
model = Twin(cfg, 3) if sys.argv[2] == "vit" else torch.nn.Sequential(
    torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
    torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
    torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(64, 3))
fwd = (lambda b: model.classify(b)) if sys.argv[2] == "vit" else model
opt = torch.optim.AdamW(model.parameters(), lr=float(sys.argv[3]))
X, Y = torch.from_numpy(x), torch.from_numpy(y)
for epoch in range(int(sys.argv[4])):
    perm = torch.randperm(len(tr)); tot = 0
    for i in range(0, len(tr), 64):
        b = torch.from_numpy(tr)[perm[i:i+64]]
        loss = torch.nn.functional.cross_entropy(fwd(X[b]), Y[b]); opt.zero_grad(); loss.backward(); opt.step(); tot += loss.item() * len(b)
    with torch.no_grad():
        p = torch.softmax(fwd(X[torch.from_numpy(te)]), -1).numpy()
    print(epoch, "train loss", round(tot / len(tr), 4), "test AUC", round(roc_auc_score(y[te], p, multi_class="ovr"), 4), flush=True)
