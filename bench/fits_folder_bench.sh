#!/usr/bin/env bash
# How fast the stage reads FITS cutouts delivered as a folder of stamps (one 64x64
# float32 image a file, as cutout services write them) against the same cutouts in one
# cube. lensmae: `examples/read_speed.rs` on the folder and on the cube (one thread,
# batches of 256, best of 3); the reference in the same run: astropy reading every stamp
# (`fits.getdata`) and the cube into one float32 numpy array, one thread, best of 3.
#
#   PY=/path/to/python-with-astropy bench/fits_folder_bench.sh [N=2000] [WORK=bench-fits-folder]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}
WORK=${2:-bench-fits-folder}
PY=${PY:-python3}
cargo build --release --quiet --example read_speed
mkdir -p "$WORK"
"$PY" - "$N" "$WORK" <<'PY'
import os, sys
import numpy as np
from astropy.io import fits
n, work = int(sys.argv[1]), sys.argv[2]
folder = os.path.join(work, f"stamps-{n}")
if not os.path.isdir(folder):
    os.makedirs(folder)
    cube = np.random.default_rng(5).normal(0.0, 1.0, (n, 64, 64)).astype(np.float32)
    fits.PrimaryHDU(cube).writeto(os.path.join(work, f"cube-{n}.fits"), overwrite=True)
    for i in range(n):
        fits.PrimaryHDU(cube[i]).writeto(os.path.join(folder, f"stamp-{i}.fits"))
PY
echo "# lensmae (examples/read_speed.rs, one thread)"
target/release/examples/read_speed "$WORK/stamps-$N" "$WORK/cube-$N.fits"
echo "# astropy $("$PY" -c 'import astropy; print(astropy.__version__)'): every cutout into one float32 array, one thread"
"$PY" - "$WORK/stamps-$N" "$WORK/cube-$N.fits" <<'PY'
import json, os, sys, time
import numpy as np
from astropy.io import fits
folder, cube = sys.argv[1], sys.argv[2]
def stamps():
    names = sorted(os.listdir(folder), key=lambda s: int(s.split("-")[1].split(".")[0]))
    return np.stack([fits.getdata(os.path.join(folder, name), memmap=False).astype(np.float32) for name in names])
def whole():
    return fits.getdata(cube, memmap=False).astype(np.float32)
for name, read in [(folder, stamps), (cube, whole)]:
    best = min((lambda s: (read(), time.perf_counter() - s)[1])(time.perf_counter()) for _ in range(3))
    rows = read().shape[0]
    print(json.dumps({"input": name, "rows": rows, "seconds": best, "rows_per_s": rows / best}))
PY
