//! Single-core sgemm rate (GFLOP/s, best of 5 x 200 calls) of the `gemm` crate at
//! the shapes one image's transformer block multiplies, laid out as the fused
//! kernels lay them out: the linear layers (rows of 257 tokens times a weight
//! matrix) and the attention products (`q k^T`, `p v`) of the paper's encoder
//! (width 192, 64-wide heads) and MAE decoder (width 128, 32-wide heads).
//! `cargo run --release --example gemm_shapes`; BENCHMARKS.md quotes it.
use std::time::Instant;

/// GFLOP/s of `dst[m x n] = lhs[m x k] rhs[k x n]` with the given (row, column) strides.
fn rate(m: usize, n: usize, k: usize, lhs: (isize, isize), rhs: (isize, isize), dst_rs: usize) -> f64 {
    let a = vec![0.5f32; 3 * 257 * 768];
    let b = vec![0.25f32; 3 * 257 * 768];
    let mut c = vec![0f32; m * dst_rs.max(n)];
    let mut call = || unsafe {
        // SAFETY: every operand buffer holds more than the strided shapes reach.
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            dst_rs as isize,
            false,
            a.as_ptr(),
            lhs.1,
            lhs.0,
            b.as_ptr(),
            rhs.1,
            rhs.0,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    };
    call();
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..200 {
            call();
        }
        best = best.min(t.elapsed().as_secs_f64() / 200.0);
    }
    2.0 * (m * n * k) as f64 / best / 1e9
}

fn main() {
    let n = 257;
    for (name, d, hd) in [("encoder", 192usize, 64usize), ("decoder", 128, 32)] {
        let (w, row) = (d as isize, 3 * d as isize);
        println!("{name} (width {d}, heads {hd} wide), GFLOP/s on one core:");
        println!("  x W_qkv^T [{n}x{d}]x[{d}x{}]: {:.0}", 3 * d, rate(n, 3 * d, d, (w, 1), (1, w), 3 * d));
        println!("  h W_fc1^T [{n}x{d}]x[{d}x{}]: {:.0}", 4 * d, rate(n, 4 * d, d, (w, 1), (1, w), 4 * d));
        println!("  h W_fc2^T [{n}x{}]x[{}x{d}]: {:.0}", 4 * d, 4 * d, rate(n, d, 4 * d, (4 * w, 1), (1, 4 * w), d));
        println!("  q k^T [{n}x{hd}]x[{hd}x{n}]: {:.0}", rate(n, n, hd, (row, 1), (1, row), n));
        println!("  p v [{n}x{n}]x[{n}x{hd}]: {:.0}", rate(n, hd, n, (n as isize, 1), (row, 1), d));
    }
}
