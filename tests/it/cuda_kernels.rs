//! The CUDA kernels of `src/model/ops.cu`, compiled as C++ against
//! `tests/cuda/emulate.h` (a warp as 32 threads meeting at each shuffle) and run on
//! the CPU with `model::ops`'s launch shapes: each output against its formula in
//! double precision (`tests/cuda/check_ops.cpp`). A GPU host checks the same
//! kernels built as PTX against the CPU path (`examples/device_parity.rs`).

use std::path::Path;
use std::process::Command;

#[test]
fn cuda_kernels_match_their_formulas_under_cpu_emulation() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("check_ops");
    let compiler = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let build = Command::new(&compiler)
        .args(["-std=c++20", "-O1", "-pthread", "-Wall", "-o"])
        .arg(&exe)
        .arg(root.join("tests/cuda/check_ops.cpp"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C++ compiler {compiler} (set CXX): {e}"));
    assert!(build.status.success(), "{compiler} failed:\n{}", String::from_utf8_lossy(&build.stderr));
    let run = Command::new(&exe).output().unwrap();
    let report = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "kernels off their formulas:\n{report}{}", String::from_utf8_lossy(&run.stderr));
    assert!(report.contains("0 of the checks failed"), "{report}");
}
