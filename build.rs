//! Records the commit lensmae was built from (`lensmae:build` in every output's
//! metadata): `git rev-parse --short HEAD` when built inside a clone, else the
//! version alone (a source archive).

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
}
