//! The output store of a run: a local directory or an object store prefix.
//!
//! Everything a run leaves goes here: embeddings, the manifest, the failure log. On a local
//! directory the sinks write in place (temporary name + rename). For an object store the sinks
//! write to a local staging directory and each finished file is uploaded with an atomic commit
//! (temporary key + rename, or a single put), so a reader never sees a partial object.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use terrastream_sinks::commit::{CommitMode, ObjectCommit};

/// Where a run's outputs go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputLocation {
    /// A local directory.
    Local(PathBuf),
    /// An object store URL (`s3://bucket/prefix`).
    Object(String),
}

impl OutputLocation {
    /// Parses `output.dir` / `--out`: a path, a `file://` URL or an `s3://` URL.
    pub fn parse(s: &str) -> Result<Self> {
        if let Some(path) = s.strip_prefix("file://") {
            return Ok(Self::Local(PathBuf::from(path)));
        }
        match s.split_once("://") {
            None => Ok(Self::Local(PathBuf::from(s))),
            Some(("s3", rest))
                if rest
                    .split_once('/')
                    .is_some_and(|(b, p)| !b.is_empty() && !p.is_empty()) =>
            {
                Ok(Self::Object(s.trim_end_matches('/').to_string()))
            }
            Some(("s3", _)) => bail!("{s:?}: give a bucket and a prefix, s3://bucket/prefix"),
            Some((scheme, _)) => {
                bail!("{s:?}: cannot write to {scheme}:// (use a directory, file:// or s3://bucket/prefix)")
            }
        }
    }

    /// Opens the location: the store, the prefix of the run inside it, and the local directory
    /// the sinks write into.
    pub fn open(&self) -> Result<OutputStore> {
        match self {
            Self::Local(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("output.dir {}: cannot create it", dir.display()))?;
                let store =
                    LocalFileSystem::new_with_prefix(dir).with_context(|| format!("output.dir {}", dir.display()))?;
                Ok(OutputStore {
                    store: Arc::new(store),
                    prefix: ObjectPath::default(),
                    local: dir.clone(),
                    staged: false,
                })
            }
            Self::Object(url) => {
                let location = terrastream_ingest::store::open(url, Path::new("."))
                    .with_context(|| format!("output.dir {url}"))?;
                // One staging directory per output URL and process: shards on one machine do not
                // share partial files.
                let stem = terrastream_sinks::commit::safe_file_stem(url);
                let local = std::env::temp_dir().join(format!("terrastream-staging-{}-{stem}", std::process::id()));
                std::fs::create_dir_all(&local)
                    .with_context(|| format!("staging directory {} for {url}", local.display()))?;
                Ok(OutputStore {
                    store: location.store,
                    prefix: location.path,
                    local,
                    staged: true,
                })
            }
        }
    }
}

impl std::fmt::Display for OutputLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local(p) => write!(f, "{}", p.display()),
            Self::Object(u) => f.write_str(u),
        }
    }
}

/// An open output location.
#[derive(Debug, Clone)]
pub struct OutputStore {
    /// The store the manifest and (after upload) outputs live in.
    pub store: Arc<dyn ObjectStore>,
    /// The run's prefix in `store`.
    pub prefix: ObjectPath,
    /// The directory the sinks write into: the output itself, or a staging copy.
    pub local: PathBuf,
    staged: bool,
}

impl OutputStore {
    /// The key of `relative` (slash-separated) under the run's prefix.
    pub fn key(&self, relative: &str) -> ObjectPath {
        relative
            .split('/')
            .filter(|p| !p.is_empty())
            .fold(self.prefix.clone(), |k, p| k.join(p))
    }

    /// Publishes files the sinks committed under [`Self::local`]: on an object store each is
    /// uploaded atomically and the staged copy removed. Returns the files' keys relative to the
    /// output, slash-separated.
    pub async fn publish(&self, files: &[PathBuf]) -> Result<Vec<String>> {
        let mut out = Vec::with_capacity(files.len());
        for file in files {
            let relative = file.strip_prefix(&self.local).with_context(|| {
                format!(
                    "{} is outside the output directory {}",
                    file.display(),
                    self.local.display()
                )
            })?;
            let relative: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let relative = relative.join("/");
            if self.staged {
                let key = self.key(&relative);
                ObjectCommit::new(Arc::clone(&self.store), CommitMode::Replace)
                    .put_file(file, &key)
                    .await
                    .with_context(|| format!("uploading {} to {key}", file.display()))?;
                std::fs::remove_file(file).with_context(|| format!("removing staged {}", file.display()))?;
            }
            out.push(relative);
        }
        Ok(out)
    }

    /// Deletes output files (relative keys) a unit wrote before that its new run did not
    /// write again, so a redone unit never leaves old rows beside its new ones.
    pub async fn remove(&self, relative: &[String]) -> Result<()> {
        for r in relative {
            match self.store.delete(&self.key(r)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e).with_context(|| format!("removing stale output {r}")),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(
            OutputLocation::parse("out/x").expect("path"),
            OutputLocation::Local("out/x".into())
        );
        assert_eq!(
            OutputLocation::parse("file:///tmp/o").expect("file"),
            OutputLocation::Local("/tmp/o".into())
        );
        assert_eq!(
            OutputLocation::parse("s3://b/runs/1/").expect("s3"),
            OutputLocation::Object("s3://b/runs/1".into())
        );
        for bad in ["s3://bucket", "https://host/out", "gs://b/p"] {
            let err = OutputLocation::parse(bad).expect_err(bad).to_string();
            assert!(err.contains(bad), "{err}");
        }
    }
}
