//! Atomic output: write to a hidden temporary beside the target, rename on success.
//!
//! A crash or kill -9 leaves at most a `.<name>.tmp-<pid>` file, never a file under
//! the final name that looks complete but is not; the next run writing the same
//! target removes temporaries whose process is gone. Ctrl-C and SIGTERM stop runs
//! through [`crate::cancel::Cancel`], which drops the temporary on the way out.

use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// Refuses an output that is one of the inputs or a folder holding one (`flag`
/// names the option in the error): with `--overwrite` the run would replace what it
/// reads (`predict --input a.parquet --out a.parquet --overwrite` left only the
/// predictions). Paths are compared as the file system resolves them; URLs are not
/// local files.
pub fn refuse_output_over_inputs(inputs: &[PathBuf], out: &Path, flag: &str) -> Result<()> {
    let Some(out_path) = resolved(out) else { return Ok(()) };
    for input in inputs.iter().filter(|p| !crate::data::remote::is_remote(p)) {
        let Some(input_path) = resolved(input) else { continue };
        if input_path.starts_with(&out_path) {
            let what = if input_path == out_path { "is" } else { "is inside" };
            return Err(Error::config(
                flag,
                format!(
                    "{}: the input {} {what} the output, which the run would replace: write it elsewhere",
                    out.display(),
                    input.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Refuses an output of predictions inside a local input folder: inside an input
/// HATS catalogue, its partitions would lie in the catalogue's own tree, where a
/// reader that discovers every Parquet file under `dataset/` (pyarrow's dataset
/// discovery) takes them for the catalogue's rows; inside a folder of FITS files, a
/// Parquet dataset or `.npy` images, the folder's next read would take them for
/// cutouts (or refuse it for holding two kinds of file).
pub fn refuse_output_inside_input_folders(inputs: &[PathBuf], out: &Path, flag: &str) -> Result<()> {
    let Some(out_path) = resolved(out) else { return Ok(()) };
    for input in inputs.iter().filter(|p| !crate::data::remote::is_remote(p) && p.is_dir()) {
        let Some(input_path) = resolved(input) else { continue };
        if !out_path.starts_with(&input_path) || out_path == input_path {
            continue;
        }
        let (what, readers) = match crate::data::hats::is_catalogue(input)? {
            true => ("catalogue", "whose readers would take the predictions for its rows"),
            false => ("folder", "whose next read would take the predictions for cutouts"),
        };
        return Err(Error::config(
            flag,
            format!("{}: inside the input {what} {}, {readers}: write them beside it", out.display(), input.display()),
        ));
    }
    Ok(())
}

/// `path` as the file system resolves it, for a path that need not exist yet (an
/// output): its nearest existing ancestor resolved, the rest as given.
fn resolved(path: &Path) -> Option<PathBuf> {
    let absolute = std::env::current_dir().ok()?.join(path);
    absolute.ancestors().find_map(|ancestor| {
        let real = std::fs::canonicalize(ancestor).ok()?;
        Some(real.join(absolute.strip_prefix(ancestor).ok()?))
    })
}

/// A file or folder being written under a temporary name.
#[derive(Debug)]
pub struct AtomicPath {
    target: PathBuf,
    temp: PathBuf,
    committed: bool,
}

impl AtomicPath {
    /// Prepare to write `target`; refuses to replace an existing target unless
    /// `overwrite` is set.
    pub fn new(target: &Path, overwrite: bool) -> Result<AtomicPath> {
        refuse_existing(target, overwrite)?;
        let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let temp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
        remove_any(&temp);
        remove_stale_temporaries(parent, Some(&name));
        Ok(AtomicPath { target: target.to_path_buf(), temp, committed: false })
    }

    /// Where to write.
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// The final name.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Move the finished temporary into place.
    pub fn commit(mut self) -> Result<()> {
        if self.target.is_dir() {
            std::fs::remove_dir_all(&self.target).map_err(|e| Error::io(&self.target, e))?;
        }
        std::fs::rename(&self.temp, &self.target).map_err(|e| Error::io(&self.target, e))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for AtomicPath {
    fn drop(&mut self) {
        if !self.committed {
            remove_any(&self.temp);
        }
    }
}

/// An error if `target` exists and may not be replaced.
pub fn refuse_existing(target: &Path, overwrite: bool) -> Result<()> {
    if target.exists() && !overwrite {
        return Err(Error::io(
            target,
            std::io::Error::new(std::io::ErrorKind::AlreadyExists, "already exists (pass --overwrite to replace it)"),
        ));
    }
    Ok(())
}

/// Write a whole small file (a config, a report) atomically, replacing any old one.
pub fn write_atomically(target: &Path, contents: impl AsRef<[u8]>) -> Result<()> {
    let atomic = AtomicPath::new(target, true)?;
    std::fs::write(atomic.temp_path(), contents).map_err(|e| Error::io(target, e))?;
    atomic.commit()
}

/// Removes the temporaries in `dir` (of `name` only, when given) left by
/// processes that no longer run (killed with -9, or a machine that went down);
/// returns how many. Where process ids cannot be checked (no `/proc`), nothing is
/// removed: the temporaries are hidden and no reader takes them for output.
pub fn remove_stale_temporaries(dir: &Path, name: Option<&str>) -> usize {
    let proc = Path::new("/proc");
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    if !proc.join("self").exists() {
        return 0;
    }
    let mut removed = 0;
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some((target, pid)) = file_name.strip_prefix('.').and_then(|rest| rest.rsplit_once(".tmp-")) else {
            continue;
        };
        let alive = match pid.parse::<u32>() {
            Ok(pid) => pid == std::process::id() || proc.join(pid.to_string()).exists(),
            Err(_) => true, // not one of ours
        };
        if !alive && name.is_none_or(|n| n == target) {
            remove_any(&entry.path());
            removed += 1;
        }
    }
    removed
}

fn remove_any(path: &Path) {
    if path.is_dir() {
        let _ = std::fs::remove_dir_all(path);
    } else {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_committed_file_appears_under_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        {
            let a = AtomicPath::new(&target, false).unwrap();
            std::fs::write(a.temp_path(), b"partial").unwrap();
            // dropped without commit: as if the run crashed
        }
        assert!(!target.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let a = AtomicPath::new(&target, false).unwrap();
        std::fs::write(a.temp_path(), b"done").unwrap();
        a.commit().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"done");
        assert!(AtomicPath::new(&target, false).is_err());
        assert!(AtomicPath::new(&target, true).is_ok());
    }

    #[test]
    fn temporaries_of_killed_runs_are_removed_by_the_next_writer_those_of_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        // Process ids above the kernel's pid_max (2^22) never run.
        let dead = dir.path().join(".out.bin.tmp-99999999");
        let live = dir.path().join(format!(".out.bin.tmp-{}", std::process::id()));
        let other_target = dir.path().join(".other.bin.tmp-99999999");
        let foreign = dir.path().join(".notes.tmp-draft");
        for p in [&dead, &other_target, &foreign] {
            std::fs::write(p, b"partial").unwrap();
        }
        std::fs::create_dir(dir.path().join(".part.tmp-99999998")).unwrap();
        let a = AtomicPath::new(&dir.path().join("out.bin"), false).unwrap();
        assert_eq!(a.temp_path(), live);
        assert!(!dead.exists(), "the killed run's temporary of the same target is removed");
        assert!(other_target.exists() && foreign.exists(), "other targets' and foreign files are left");
        drop(a);
        assert_eq!(remove_stale_temporaries(dir.path(), None), 2);
        assert!(foreign.exists() && !other_target.exists() && !dir.path().join(".part.tmp-99999998").exists());
    }
}
