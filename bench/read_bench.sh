#!/usr/bin/env bash
# How fast the cutout readers decode a table of ROWS simulated Model II cutouts
# (64x64 float32) stored four ways: Parquet (zstd, as `simulate` writes it), an
# uncompressed Arrow IPC file, an LZ4 Feather file (pyarrow's default) and an
# uncompressed Arrow IPC stream. lensmae: `examples/read_speed.rs` (one thread,
# batches of 256, best of 3); the reference in the same run: pyarrow reading the
# image column into a float32 numpy array, one thread and all threads, best of 3.
#
#   PY=/path/to/python-with-pyarrow bench/read_bench.sh [ROWS=60000] [WORK=bench-read]
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-60000}
WORK=${2:-bench-read}
PY=${PY:-python3}
cargo build --release --quiet --bin lensmae --example read_speed
mkdir -p "$WORK"
data="$WORK/cutouts-$ROWS/dataset.parquet"
[ -f "$data" ] || target/release/lensmae simulate --preset deeplense-model2 --n-per-class $((ROWS / 3)) \
  --seed 5 --out "$WORK/cutouts-$ROWS" -q
"$PY" - "$data" "$WORK" <<'PY'
import sys, pyarrow as pa, pyarrow.parquet as pq, pyarrow.feather as feather, pyarrow.ipc as ipc
data, work = sys.argv[1], sys.argv[2]
t = pq.read_table(data, columns=["id", "image"])
feather.write_feather(t, f"{work}/cutouts.arrow", compression="uncompressed", chunksize=8192)
feather.write_feather(t, f"{work}/cutouts-lz4.feather", chunksize=8192)
with ipc.new_stream(f"{work}/cutouts.arrows", t.schema) as w:
    w.write_table(t, max_chunksize=8192)
pq.write_table(t, f"{work}/cutouts.parquet", compression="zstd", row_group_size=8192)
PY
FILES=("$WORK/cutouts.parquet" "$WORK/cutouts.arrow" "$WORK/cutouts-lz4.feather" "$WORK/cutouts.arrows")
echo "# lensmae (examples/read_speed.rs, one thread)"
target/release/examples/read_speed "${FILES[@]}"
echo "# pyarrow $("$PY" -c 'import pyarrow; print(pyarrow.__version__)'): the image column to a float32 array"
"$PY" - "${FILES[@]}" <<'PY'
import json, sys, time
import pyarrow as pa, pyarrow.parquet as pq, pyarrow.feather as feather, pyarrow.ipc as ipc
def read(path, threads):
    if path.endswith(".parquet"):
        table = pq.read_table(path, columns=["image"], use_threads=threads)
    elif path.endswith(".arrows"):
        table = ipc.open_stream(path).read_all()
    else:
        table = feather.read_table(path, columns=["image"], use_threads=threads, memory_map=False)
    images = table.column("image").combine_chunks()
    # An arrow.fixed_shape_tensor column: its storage is the fixed-size list.
    return getattr(images, "storage", images).flatten().to_numpy()
for path in sys.argv[1:]:
    for threads in (False, True):
        best = min((lambda s: (read(path, threads), time.perf_counter() - s)[1])(time.perf_counter()) for _ in range(3))
        pixels = read(path, threads).size
        print(json.dumps({"file": path, "threads": "all" if threads else 1, "rows": pixels // 4096,
                          "seconds": best, "rows_per_s": pixels / 4096 / best, "pixel_mb_per_s": pixels * 4 / 1e6 / best}))
PY
