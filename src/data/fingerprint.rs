//! Fingerprints of input files: what a resumed run or a merge compares to be sure
//! it continues the same work on the same data.
//!
//! A fingerprint is a file's size, modification time and SHA-256 of its content.
//! Two fingerprints describe the same input when path, size and hash agree: the
//! time is recorded for people (a copy keeps the content, not the time), the hash
//! decides (a replaced file of the same size is still a different input).

use super::remote;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// One input file as a run saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFingerprint {
    /// The path as the run was given it (or found it inside a given folder).
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Modification time, seconds since 1970 (informative: not compared).
    #[serde(default)]
    pub modified: Option<u64>,
    /// SHA-256 of the content, hex (empty for a remote object, which is not
    /// downloaded to be hashed: its `version` stands for its content).
    pub sha256: String,
    /// A remote object's version: the store's `ETag`, or `modified <seconds>` from
    /// a server that gives none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// SHA-256 of a file's content, read in blocks (any size, constant memory).
pub fn sha256_of_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut block = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut block).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&block[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The fingerprint of one file (a URL: of the remote object, asked with `HEAD`).
pub fn fingerprint_file(path: &Path) -> Result<FileFingerprint> {
    if remote::is_remote(path) {
        return Ok(remote_fingerprint(&*remote::RemoteObject::open(path)?));
    }
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let modified = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_secs());
    Ok(FileFingerprint {
        path: path.display().to_string(),
        bytes: meta.len(),
        modified,
        sha256: sha256_of_file(path)?,
        version: None,
    })
}

/// The fingerprint of a remote object from what its HEAD answered: size and
/// version (its content is not downloaded to be hashed).
pub fn remote_fingerprint(object: &remote::RemoteObject) -> FileFingerprint {
    FileFingerprint {
        path: object.url().to_string(),
        bytes: object.size(),
        modified: Some(object.modified()),
        sha256: String::new(),
        version: Some(object.etag().map_or_else(|| format!("modified {}", object.modified()), str::to_string)),
    }
}

/// Fingerprints of `paths`; a folder stands for every file under it (sorted, hidden
/// files and temporaries left out).
pub fn fingerprint_all(paths: &[PathBuf]) -> Result<Vec<FileFingerprint>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found = Vec::new();
            collect_files(path, &mut found)?;
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    files.iter().map(|f| fingerprint_file(f)).collect()
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let visible = |name: &str| !name.starts_with('.');
    crate::data::walk_files(dir, visible, |path, name| {
        if visible(name) {
            out.push(path);
        }
    })
}

/// How `now` differs from `before` (None when they describe the same inputs).
pub fn describe_change(before: &[FileFingerprint], now: &[FileFingerprint]) -> Option<String> {
    let same = |a: &FileFingerprint, b: &FileFingerprint| {
        a.path == b.path && a.bytes == b.bytes && a.sha256 == b.sha256 && a.version == b.version
    };
    if before.len() == now.len() && before.iter().zip(now).all(|(a, b)| same(a, b)) {
        return None;
    }
    for old in before {
        match now.iter().find(|n| n.path == old.path) {
            None => return Some(format!("{} is no longer an input", old.path)),
            Some(new) if new.bytes != old.bytes => {
                return Some(format!("{} changed: {} bytes, then {} bytes", old.path, old.bytes, new.bytes))
            }
            Some(new) if new.sha256 != old.sha256 => {
                return Some(format!("{} changed: same size, other content (SHA-256 differs)", old.path))
            }
            Some(new) if new.version != old.version => {
                return Some(format!(
                    "{} changed: same size, another version (the store's ETag or time differs)",
                    old.path
                ))
            }
            Some(_) => {}
        }
    }
    match now.iter().find(|n| !before.iter().any(|o| o.path == n.path)) {
        Some(new) => Some(format!("{} was not an input before", new.path)),
        None => Some("the inputs are in another order".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_file_of_the_same_size_is_a_change_a_touched_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.bin");
        std::fs::write(&a, b"first content").unwrap();
        let before = fingerprint_all(std::slice::from_ref(&a)).unwrap();
        assert_eq!(before[0].bytes, 13);
        std::fs::write(&a, b"first content").unwrap(); // rewritten: new time, same bytes
        assert_eq!(describe_change(&before, &fingerprint_all(std::slice::from_ref(&a)).unwrap()), None);
        std::fs::write(&a, b"other content").unwrap();
        let change = describe_change(&before, &fingerprint_all(std::slice::from_ref(&a)).unwrap()).unwrap();
        assert!(change.contains("same size, other content"), "{change}");
        std::fs::write(&a, b"longer content here").unwrap();
        let change = describe_change(&before, &fingerprint_all(&[a]).unwrap()).unwrap();
        assert!(change.contains("13 bytes, then 19 bytes"), "{change}");
    }

    #[test]
    fn a_folder_stands_for_its_files_and_hidden_temporaries_are_not_inputs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b.parquet"), b"b").unwrap();
        std::fs::write(dir.path().join("a.parquet"), b"a").unwrap();
        std::fs::write(dir.path().join(".a.parquet.tmp-123"), b"partial").unwrap();
        let prints = fingerprint_all(&[dir.path().to_path_buf()]).unwrap();
        let names: Vec<&str> = prints.iter().map(|p| p.path.rsplit('/').next().unwrap()).collect();
        assert_eq!(names, ["a.parquet", "b.parquet"]);
        // SHA-256 of "a", as `sha256sum` gives it.
        assert_eq!(prints[0].sha256, "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb");
    }

    #[cfg(unix)]
    #[test]
    fn a_folder_linked_back_up_its_own_tree_is_read_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b.parquet"), b"b").unwrap();
        std::os::unix::fs::symlink("..", dir.path().join("sub/up")).unwrap();
        let prints = fingerprint_all(&[dir.path().to_path_buf()]).unwrap();
        assert_eq!(prints.len(), 1, "{prints:?}");
    }
}
