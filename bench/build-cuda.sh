#!/usr/bin/env bash
# Builds the CUDA binary of lensmae (feature `cuda`) on a machine with no GPU and no
# system CUDA toolkit. nvcc 13.0 and the CUDA libraries come from PyPI's nvidia wheels;
# libcuda (the driver) comes from a link stub, since only a GPU host has the real one.
# Usage: bench/build-cuda.sh [VENV=/work/venv-cuda] [TARGET_DIR=target-cuda]
# Result: $TARGET_DIR/release/lensmae (sm_90: H100/H200), cuda-runtime-libs.txt beside it,
# and .gpu/*.xz (lensmae and the GPU-check examples, packed for bench/gpu-check.sh).
# Run time on the GPU host needs libcuda.so.1 (driver), libcublas.so.13, libcublasLt.so.13,
# libcudart.so.13, libcurand.so.10 and libnvrtc.so.13 on LD_LIBRARY_PATH; PyTorch's cu13
# wheels hold them (see bench/gpu-check.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${1:-/work/venv-cuda}
target_dir=${2:-$here/target-cuda}
# nvcc 13.0, not newer: hosts with driver 580 refuse PTX from 13.2 (CUDA_ERROR_UNSUPPORTED_PTX_VERSION).
wheels=(nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88
        nvidia-cuda-runtime==13.0.96 nvidia-cuda-nvrtc==13.0.88 nvidia-cuda-cccl==13.0.85
        nvidia-curand==10.4.0.35 nvidia-cublas==13.0.2.14)
if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv"; fi
"$venv/bin/pip" install -q "${wheels[@]}"
cuda_home=$(echo "$venv"/lib/python3*/site-packages/nvidia/cu13)
[ -x "$cuda_home/bin/nvcc" ] || { echo "no nvcc under $cuda_home" >&2; exit 1; }

# The wheels ship only versioned sonames; the linker looks for libX.so.
for lib in "$cuda_home"/lib/lib*.so.*; do
  base=${lib%%.so.*}.so
  [ -e "$base" ] || ln -s "$(basename "$lib")" "$base"
done

# A link stub for the driver library: every cu* entry point cudarc declares, defined as
# an empty function, under the soname libcuda.so.1 so the real driver resolves them at run time.
stub_dir="$cuda_home/lib/stubs"
mkdir -p "$stub_dir"
if [ ! -e "$stub_dir/libcuda.so" ]; then
  cudarc=$(cargo metadata --format-version 1 --manifest-path "$here/Cargo.toml" --features cuda 2>/dev/null |
    python3 -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"]=="cudarc").rsplit("/",1)[0])')
  grep -oE 'pub unsafe fn cu[A-Za-z0-9_]+' "$cudarc/src/driver/sys/mod.rs" | awk '{print "void " $4 "(void) {}"}' | sort -u > "$stub_dir/libcuda_stub.c"
  cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$stub_dir/libcuda.so" "$stub_dir/libcuda_stub.c"
fi

export CUDA_HOME="$cuda_home" CUDA_PATH="$cuda_home" PATH="$cuda_home/bin:$PATH"
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export LIBRARY_PATH="$cuda_home/lib:$stub_dir${LIBRARY_PATH:+:$LIBRARY_PATH}"
export LD_LIBRARY_PATH="$cuda_home/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export RUSTFLAGS="${RUSTFLAGS:-} -L native=$stub_dir"
cargo build --release --features cuda --target-dir "$target_dir" --manifest-path "$here/Cargo.toml" \
  --bin lensmae --example device_parity --example model_speed --example layer_times
bin="$target_dir/release/lensmae"
ls -l "$bin"
# Packed for a GPU host (bench/gpu-check.sh unpacks them): xz takes each ~50 MB
# binary (mostly candle's PTX kernels) to a few MB.
mkdir -p "$here/.gpu"
for b in "$bin" "$target_dir/release/examples/device_parity" "$target_dir/release/examples/model_speed" \
  "$target_dir/release/examples/layer_times"; do
  xz -T0 -6 -c "$b" > "$here/.gpu/$(basename "$b").xz"
done
ls -l "$here/.gpu"
# What the binary asks the dynamic loader for: these must be on the GPU host.
readelf -d "$bin" | awk '/NEEDED/ {gsub(/[\[\]]/, "", $5); print $5}' | tee "$target_dir/release/cuda-runtime-libs.txt"
