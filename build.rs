//! Records the commit lensmae was built from (`lensmae:build` in every output's
//! metadata): `git rev-parse --short HEAD` when built inside a clone, else the
//! version alone (a source archive); with the `cuda` feature, compiles
//! `src/model/ops.cu` to PTX for `model::ops` (nvcc from `CUDA_HOME` or `PATH`,
//! for `CUDA_COMPUTE_CAP`, 80 when unset: the driver JIT-compiles it for newer cards).

fn main() {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let profile = std::env::var("PROFILE").unwrap_or_default();
    let build = match commit {
        Some(commit) => format!("git {commit}, {profile}"),
        None => format!("source archive, {profile}"),
    };
    println!("cargo:rustc-env=LENSMAE_BUILD={build}");
    // A new commit moves HEAD or the branch it points to.
    for path in [".git/HEAD", ".git/refs/heads", ".git/packed-refs"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        compile_ptx();
    }
}

fn compile_ptx() {
    let source = "src/model/ops.cu";
    println!("cargo:rerun-if-changed={source}");
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    let nvcc = std::env::var("CUDA_HOME").map_or_else(|_| "nvcc".into(), |home| format!("{home}/bin/nvcc"));
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "80".into());
    let out = format!("{}/ops.ptx", std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let status = std::process::Command::new(&nvcc)
        .args(["--ptx", "-O3", &format!("--gpu-architecture=sm_{cap}"), "-o", &out, source])
        .status()
        .unwrap_or_else(|e| panic!("cannot run {nvcc} to compile {source} (feature cuda): {e}"));
    assert!(status.success(), "{nvcc} failed to compile {source} ({status})");
}
