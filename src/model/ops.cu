// CUDA kernels of src/model/ops.rs: the forward and the analytic backward pass of
// softmax, normalisation over the last dimension, a bias added to rows (alone or
// under exact GELU) and LayerNorm's scale and shift, each one pass over its
// tensors. candle differentiates these with 5-12 element-wise kernels and
// materialised broadcasts, each gradient zero-filled and added to: that, not the
// matrix products, was where a training step's time went (BENCHMARKS.md, H200
// 2026-11-27).
//
// Row kernels: one warp per row (rows of 65-1024 floats here: attention scores
// are [B, H, N, N] with N = 65 or 257, token rows 64-768 wide), ROWS_PER_BLOCK
// warps a block; the row's later passes read it again from L1/L2.
// All tensors f32, contiguous, row-major; indices in size_t.

#define ROWS_PER_BLOCK 8
#define FULL_MASK 0xffffffffu

__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(FULL_MASK, v, offset);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, offset));
  return v;
}

// The row this warp owns, or rows when none (the whole warp leaves together).
__device__ __forceinline__ size_t warp_row() {
  return (size_t)blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32;
}

// y = exp(x - max) / sum(exp(x - max)) over each row.
extern "C" __global__ void lensmae_softmax_forward(const float *x, float *y, size_t rows, unsigned cols) {
  const size_t row = warp_row();
  if (row >= rows) return;
  const unsigned lane = threadIdx.x % 32;
  const float *xr = x + row * cols;
  float *yr = y + row * cols;
  float m = -__int_as_float(0x7f800000);
  for (unsigned c = lane; c < cols; c += 32) m = fmaxf(m, xr[c]);
  m = warp_max(m);
  float s = 0.0f;
  for (unsigned c = lane; c < cols; c += 32) s += expf(xr[c] - m);
  const float inv = 1.0f / warp_sum(s);
  for (unsigned c = lane; c < cols; c += 32) yr[c] = expf(xr[c] - m) * inv;
}

// dx = y (g - sum(g y)) over each row.
extern "C" __global__ void lensmae_softmax_backward(const float *y, const float *g, float *dx, size_t rows,
                                                    unsigned cols) {
  const size_t row = warp_row();
  if (row >= rows) return;
  const unsigned lane = threadIdx.x % 32;
  const size_t base = row * cols;
  float dot = 0.0f;
  for (unsigned c = lane; c < cols; c += 32) dot += g[base + c] * y[base + c];
  dot = warp_sum(dot);
  for (unsigned c = lane; c < cols; c += 32) dx[base + c] = y[base + c] * (g[base + c] - dot);
}

// The row's mean and 1 / sqrt(var + eps), two passes (the same as the CPU twin's
// arithmetic up to summation order; one-pass sums of squares lose digits on a
// residual stream's offset rows).
__device__ __forceinline__ void row_moments(const float *xr, unsigned cols, float eps, unsigned lane, float *mean,
                                            float *inv_std) {
  float s = 0.0f;
  for (unsigned c = lane; c < cols; c += 32) s += xr[c];
  const float m = warp_sum(s) / cols;
  float v = 0.0f;
  for (unsigned c = lane; c < cols; c += 32) {
    const float d = xr[c] - m;
    v += d * d;
  }
  *mean = m;
  *inv_std = 1.0f / sqrtf(warp_sum(v) / cols + eps);
}

// y = (x - mean) / sqrt(var + eps) over each row.
extern "C" __global__ void lensmae_normalise_forward(const float *x, float *y, size_t rows, unsigned cols,
                                                     float eps) {
  const size_t row = warp_row();
  if (row >= rows) return;
  const unsigned lane = threadIdx.x % 32;
  const float *xr = x + row * cols;
  float *yr = y + row * cols;
  float mean, inv_std;
  row_moments(xr, cols, eps, lane, &mean, &inv_std);
  for (unsigned c = lane; c < cols; c += 32) yr[c] = (xr[c] - mean) * inv_std;
}

// dx = (g - mean(g) - y mean(g y)) / sqrt(var + eps) over each row.
extern "C" __global__ void lensmae_normalise_backward(const float *x, const float *y, const float *g, float *dx,
                                                      size_t rows, unsigned cols, float eps) {
  const size_t row = warp_row();
  if (row >= rows) return;
  const unsigned lane = threadIdx.x % 32;
  const size_t base = row * cols;
  float mean, inv_std;
  row_moments(x + base, cols, eps, lane, &mean, &inv_std);
  float g_sum = 0.0f, gy_sum = 0.0f;
  for (unsigned c = lane; c < cols; c += 32) {
    g_sum += g[base + c];
    gy_sum += g[base + c] * y[base + c];
  }
  const float g_mean = warp_sum(g_sum) / cols;
  const float gy_mean = warp_sum(gy_sum) / cols;
  for (unsigned c = lane; c < cols; c += 32)
    dx[base + c] = (g[base + c] - g_mean - y[base + c] * gy_mean) * inv_std;
}

#define FRAC_1_SQRT_2 0.70710678118654752f
#define FRAC_1_SQRT_2PI 0.39894228040143268f

// Bias rows: a is [rows, cols] (n = rows * cols elements), b is [cols].

// y = a + b[col].
extern "C" __global__ void lensmae_add_bias_forward(const float *a, const float *b, float *y, size_t n,
                                                    unsigned cols) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    y[i] = a[i] + b[i % cols];
}

// y = gelu(a + b[col]), gelu(x) = x Phi(x) = x (1 + erf(x / sqrt(2))) / 2 (PyTorch's exact GELU).
extern "C" __global__ void lensmae_bias_gelu_forward(const float *a, const float *b, float *y, size_t n,
                                                     unsigned cols) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    const float v = a[i] + b[i % cols];
    y[i] = 0.5f * v * (1.0f + erff(v * FRAC_1_SQRT_2));
  }
}

// dz = g gelu'(a + b[col]), gelu'(x) = Phi(x) + x phi(x): the gradient of a, and summed
// over rows that of b.
extern "C" __global__ void lensmae_bias_gelu_backward(const float *a, const float *b, const float *g, float *dz,
                                                      size_t n, unsigned cols) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    const float v = a[i] + b[i % cols];
    const float slope = 0.5f * (1.0f + erff(v * FRAC_1_SQRT_2)) + v * FRAC_1_SQRT_2PI * expf(-0.5f * v * v);
    dz[i] = g[i] * slope;
  }
}

// y = a w[col] + b[col]: LayerNorm's scale and shift.
extern "C" __global__ void lensmae_scale_shift_forward(const float *a, const float *w, const float *b, float *y,
                                                       size_t n, unsigned cols) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    y[i] = a[i] * w[i % cols] + b[i % cols];
}

// da = g w[col].
extern "C" __global__ void lensmae_scale_backward(const float *g, const float *w, float *da, size_t n,
                                                  unsigned cols) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    da[i] = g[i] * w[i % cols];
}
