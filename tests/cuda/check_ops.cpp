// Runs every kernel of src/model/ops.cu on the CPU (emulate.h) with the launch
// shapes and argument order of src/model/ops.rs's `cuda` module, and compares
// each output with the formula computed in double precision. Prints one line a
// check; exits 1 if any is off. Built and run by tests/it/cuda_kernels.rs.
#include "emulate.h"
#include "../../src/model/ops.cu"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <random>
#include <unistd.h>

static const unsigned THREADS = 256, ROWS_PER_BLOCK_RS = 8;
static std::mt19937 rng(7);
static int failures = 0;

static std::vector<float> normal(size_t n, float mean, float std) {
  std::normal_distribution<float> d(mean, std);
  std::vector<float> v(n);
  for (auto &x : v) x = d(rng);
  return v;
}

// ops.rs's launch_rows: one warp a row, 8 rows a block.
static void launch_rows(size_t rows, const std::function<void()> &kernel) {
  launch((unsigned)((rows + ROWS_PER_BLOCK_RS - 1) / ROWS_PER_BLOCK_RS), ROWS_PER_BLOCK_RS * 32, kernel);
}

// ops.rs's launch_elementwise, or `grid` blocks to make the grid-stride loop go round.
static void launch_elementwise(size_t n, unsigned grid, const std::function<void()> &kernel) {
  if (grid == 0) grid = (unsigned)std::clamp<size_t>((n + THREADS - 1) / THREADS, 1, 1 << 16);
  launch(grid, THREADS, kernel);
}

// Largest |got - want| over the largest |want|, against `tolerance`.
static void check(const char *what, const std::vector<float> &got, const std::vector<double> &want,
                  double tolerance = 2e-6) {
  double err = 0, scale = 1e-30;
  for (size_t i = 0; i < want.size(); ++i) {
    err = std::max(err, std::fabs((double)got[i] - want[i]));
    scale = std::max(scale, std::fabs(want[i]));
    if (!std::isfinite(got[i])) err = INFINITY;
  }
  const bool ok = err / scale <= tolerance;
  std::printf("%-44s %s  max error %.2e of %.2e\n", what, ok ? "ok  " : "FAIL", err, scale);
  failures += !ok;
}

static void softmax(size_t rows, unsigned cols) {
  auto x = normal(rows * cols, 0, 3), g = normal(rows * cols, 0, 1);
  std::vector<float> y(x.size()), dx(x.size());
  launch_rows(rows, [&] { lensmae_softmax_forward(x.data(), y.data(), rows, cols); });
  launch_rows(rows, [&] { lensmae_softmax_backward(y.data(), g.data(), dx.data(), rows, cols); });
  std::vector<double> want_y(x.size()), want_dx(x.size());
  for (size_t r = 0; r < rows; ++r) {
    const size_t o = r * cols;
    double max = -INFINITY, sum = 0, dot = 0;
    for (unsigned c = 0; c < cols; ++c) max = std::max(max, (double)x[o + c]);
    for (unsigned c = 0; c < cols; ++c) sum += std::exp(x[o + c] - max);
    for (unsigned c = 0; c < cols; ++c) want_y[o + c] = std::exp(x[o + c] - max) / sum;
    // The backward pass from the kernel's own y, as ops.rs passes it.
    for (unsigned c = 0; c < cols; ++c) dot += (double)g[o + c] * y[o + c];
    for (unsigned c = 0; c < cols; ++c) want_dx[o + c] = y[o + c] * (g[o + c] - dot);
  }
  char name[64];
  std::snprintf(name, sizeof name, "softmax forward %zux%u", rows, cols);
  check(name, y, want_y);
  std::snprintf(name, sizeof name, "softmax backward %zux%u", rows, cols);
  check(name, dx, want_dx);
}

static void normalise(size_t rows, unsigned cols) {
  const float eps = 1e-6f;
  auto x = normal(rows * cols, 3, 2.5), g = normal(rows * cols, 0, 1);
  std::vector<float> y(x.size()), dx(x.size());
  launch_rows(rows, [&] { lensmae_normalise_forward(x.data(), y.data(), rows, cols, eps); });
  launch_rows(rows, [&] { lensmae_normalise_backward(x.data(), y.data(), g.data(), dx.data(), rows, cols, eps); });
  std::vector<double> want_y(x.size()), want_dx(x.size());
  for (size_t r = 0; r < rows; ++r) {
    const size_t o = r * cols;
    double mean = 0, var = 0, g_mean = 0, gy_mean = 0;
    for (unsigned c = 0; c < cols; ++c) mean += x[o + c] / (double)cols;
    for (unsigned c = 0; c < cols; ++c) var += (x[o + c] - mean) * (x[o + c] - mean) / cols;
    const double inv_std = 1 / std::sqrt(var + eps);
    for (unsigned c = 0; c < cols; ++c) want_y[o + c] = (x[o + c] - mean) * inv_std;
    for (unsigned c = 0; c < cols; ++c) {
      g_mean += g[o + c] / (double)cols;
      gy_mean += (double)g[o + c] * want_y[o + c] / cols;
    }
    for (unsigned c = 0; c < cols; ++c) want_dx[o + c] = (g[o + c] - g_mean - want_y[o + c] * gy_mean) * inv_std;
  }
  char name[64];
  std::snprintf(name, sizeof name, "normalise forward %zux%u", rows, cols);
  check(name, y, want_y, 5e-6);
  std::snprintf(name, sizeof name, "normalise backward %zux%u", rows, cols);
  check(name, dx, want_dx, 5e-6);
}

static double gelu(double z) { return 0.5 * z * (1 + std::erf(z / std::sqrt(2.0))); }
static double gelu_slope(double z) {
  return 0.5 * (1 + std::erf(z / std::sqrt(2.0))) + z * std::exp(-0.5 * z * z) / std::sqrt(2 * M_PI);
}

static void bias_rows(size_t rows, unsigned cols, unsigned grid) {
  const size_t n = rows * cols;
  auto a = normal(n, 0, 2), g = normal(n, 0, 1), b = normal(cols, 0, 1), w = normal(cols, 1, 0.5);
  std::vector<float> y(n);
  std::vector<double> want(n);
  char name[64];
  auto label = [&](const char *op) {
    std::snprintf(name, sizeof name, "%s %zux%u grid %s", op, rows, cols, grid ? "3" : "full");
    return name;
  };
  launch_elementwise(n, grid, [&] { lensmae_add_bias_forward(a.data(), b.data(), y.data(), n, cols); });
  for (size_t i = 0; i < n; ++i) want[i] = (double)a[i] + b[i % cols];
  check(label("add bias"), y, want);
  launch_elementwise(n, grid, [&] { lensmae_bias_gelu_forward(a.data(), b.data(), y.data(), n, cols); });
  for (size_t i = 0; i < n; ++i) want[i] = gelu((double)a[i] + b[i % cols]);
  check(label("bias gelu forward"), y, want);
  launch_elementwise(n, grid, [&] { lensmae_bias_gelu_backward(a.data(), b.data(), g.data(), y.data(), n, cols); });
  for (size_t i = 0; i < n; ++i) want[i] = g[i] * gelu_slope((double)a[i] + b[i % cols]);
  check(label("bias gelu backward"), y, want);
  launch_elementwise(n, grid,
                     [&] { lensmae_scale_shift_forward(a.data(), w.data(), b.data(), y.data(), n, cols); });
  for (size_t i = 0; i < n; ++i) want[i] = (double)a[i] * w[i % cols] + b[i % cols];
  check(label("scale shift forward"), y, want);
  launch_elementwise(n, grid, [&] { lensmae_scale_backward(g.data(), w.data(), y.data(), n, cols); });
  for (size_t i = 0; i < n; ++i) want[i] = (double)g[i] * w[i % cols];
  check(label("scale backward"), y, want);
}

int main() {
  alarm(120);  // a warp whose lanes part ways at a shuffle would wait for ever
  // Rows shorter than a warp, not a multiple of 32, and a last block not full.
  for (unsigned cols : {7u, 65u, 257u}) softmax(21, cols);
  for (unsigned cols : {24u, 48u, 192u, 768u}) normalise(13, cols);
  for (unsigned grid : {0u, 3u}) bias_rows(11, 192, grid);
  bias_rows(5, 7, 0);
  std::printf("%d of the checks failed\n", failures);
  return failures ? 1 : 0;
}
