// A CPU stand-in for the few CUDA features src/model/ops.cu uses, so that its
// kernels' source can be compiled as C++ and run without a GPU
// (tests/it/cuda_kernels.rs): each warp runs as 32 threads whose warp
// shuffles meet at a barrier, as the lanes of a real warp do. It checks the
// kernels' indexing, reductions and arithmetic; the PTX build, the launch from
// Rust and the speed are checked on a GPU host (bench/gpu-check.sh).
#pragma once
#include <barrier>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <thread>
#include <vector>

struct Dim3 {
  unsigned x, y, z;
};
inline thread_local Dim3 threadIdx, blockIdx;
inline Dim3 blockDim, gridDim;

#define __global__
#define __device__
#define __forceinline__ inline

// The lanes of the running warp swap values through slots, between two barriers:
// the first keeps a lane from overwriting a slot another lane has yet to read.
struct Warp {
  float slot[32];
  std::barrier<> meet{32};
};
inline thread_local Warp *running_warp;

inline float __shfl_xor_sync(unsigned, float value, int lane_mask) {
  const unsigned lane = threadIdx.x % 32;
  running_warp->meet.arrive_and_wait();
  running_warp->slot[lane] = value;
  running_warp->meet.arrive_and_wait();
  return running_warp->slot[lane ^ lane_mask];
}

inline float __int_as_float(int bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Runs `kernel()` as a launch of `grid` blocks of `block` threads (a multiple of
// 32), one warp at a time, its 32 lanes as threads.
template <typename Kernel> void launch(unsigned grid, unsigned block, Kernel kernel) {
  gridDim = {grid, 1, 1};
  blockDim = {block, 1, 1};
  for (unsigned b = 0; b < grid; ++b) {
    for (unsigned w = 0; w < block / 32; ++w) {
      Warp warp;
      std::vector<std::thread> lanes;
      for (unsigned lane = 0; lane < 32; ++lane) {
        lanes.emplace_back([&, b, w, lane] {
          blockIdx = {b, 0, 0};
          threadIdx = {w * 32 + lane, 0, 0};
          running_warp = &warp;
          kernel();
        });
      }
      for (auto &t : lanes) t.join();
    }
  }
}
