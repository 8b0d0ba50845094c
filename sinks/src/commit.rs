//! Atomic commit of output files: write under a temporary name in the same directory, sync,
//! then rename over the final name. A crash leaves at most a `.tmp` file, never a partial file
//! under a final name, and re-running a work unit replaces its file instead of adding one.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// A file being written; [`PendingFile::commit`] makes it visible.
#[derive(Debug)]
pub struct PendingFile {
    tmp: PathBuf,
    target: PathBuf,
}

impl PendingFile {
    /// Creates the temporary file for `target` (and its directory).
    pub fn create(target: &Path) -> Result<(Self, File)> {
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io { op: "create directory", path: dir.into(), source })?;
        }
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = target.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        let file = File::create(&tmp).map_err(|source| Error::Io { op: "create", path: tmp.clone(), source })?;
        Ok((Self { tmp, target: target.into() }, file))
    }

    /// The final path.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Syncs the temporary file and renames it to the final name.
    pub fn commit(self, file: File) -> Result<PathBuf> {
        file.sync_all().map_err(|source| Error::Io { op: "sync", path: self.tmp.clone(), source })?;
        drop(file);
        std::fs::rename(&self.tmp, &self.target)
            .map_err(|source| Error::Io { op: "rename", path: self.tmp.clone(), source })?;
        if let Some(dir) = self.target.parent() {
            // Make the rename itself durable.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(self.target)
    }

    /// Removes the temporary file: the work unit failed and must leave nothing behind.
    pub fn abort(self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// A file stem for an id (scene id, grid tile): letters, digits, `-`, `_` and `.` are kept,
/// anything else becomes `_`, so the name is the same on every run and every backend.
pub fn safe_file_stem(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn nothing_is_visible_before_commit() {
        let dir = tempfile::tempdir().expect("tmp");
        let target = dir.path().join("a/out.parquet");
        let (pending, mut file) = PendingFile::create(&target).expect("create");
        file.write_all(b"partial").expect("write");
        assert!(!target.exists());
        pending.commit(file).expect("commit");
        assert_eq!(std::fs::read(&target).expect("read"), b"partial");
        let (pending, _file) = PendingFile::create(&target).expect("create again");
        pending.abort();
        assert_eq!(std::fs::read_dir(dir.path().join("a")).expect("ls").count(), 1);
    }
}
