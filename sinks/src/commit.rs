//! Atomic commit of output files, so that a crash never leaves a visible partial file and
//! re-running a work unit replaces its outputs instead of duplicating them.
//!
//! - Local files ([`PendingFile`]): write under a hidden temporary name in the same directory
//!   (`.<name>.<pid>.tmp`), sync, then rename over the final name.
//! - Object stores ([`ObjectCommit`], any `object_store` backend): upload under a hidden
//!   temporary key next to the final one (multipart, so memory stays flat), then rename
//!   (server-side copy + delete; a real rename on local file systems) onto the final key, or
//!   with [`CommitMode::CreateOnly`] a conditional rename that refuses to replace.
//!
//! Either way a killed writer leaves at most a hidden `*.tmp` name, which readers skip (the
//! GeoParquet/STAC globs match final names only) and [`ObjectCommit::remove_stale`] deletes.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use tokio::io::AsyncReadExt;

use crate::{Error, Result};

/// Suffix of temporary names and keys.
pub const TMP_SUFFIX: &str = ".tmp";

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
        let tmp = target.with_file_name(format!(".{name}.{}{TMP_SUFFIX}", std::process::id()));
        let file = File::create(&tmp).map_err(|source| Error::Io { op: "create", path: tmp.clone(), source })?;
        Ok((Self { tmp, target: target.into() }, file))
    }

    /// The final path.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// The temporary path being written.
    pub fn tmp(&self) -> &Path {
        &self.tmp
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

/// What a commit may do to an existing object under the final key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CommitMode {
    /// Replace it: re-running a work unit overwrites its output.
    #[default]
    Replace,
    /// Refuse to: the commit fails with [`Error::AlreadyCommitted`] (a conditional,
    /// atomic rename where the backend supports one).
    CreateOnly,
}

/// Atomic commits of objects to one object store.
#[derive(Debug, Clone)]
pub struct ObjectCommit {
    store: Arc<dyn ObjectStore>,
    mode: CommitMode,
    /// Multipart part size in bytes (5 MiB minimum on S3).
    part_size: usize,
}

impl ObjectCommit {
    /// Commits to `store` in `mode`, with 8 MiB parts.
    pub fn new(store: Arc<dyn ObjectStore>, mode: CommitMode) -> Self {
        Self { store, mode, part_size: 8 << 20 }
    }

    /// Sets the multipart part size in bytes (at least 5 MiB for S3; any size elsewhere).
    pub fn with_part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes.max(1);
        self
    }

    /// The temporary key of `key`: `<parent>/.<name>.<pid>-<nanos>.tmp`, unique per attempt.
    pub fn tmp_key(key: &ObjectPath) -> ObjectPath {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let name = key.filename().unwrap_or("object");
        let tmp = format!(".{name}.{}-{nanos}{TMP_SUFFIX}", std::process::id());
        let mut parts: Vec<_> = key.parts().collect();
        parts.pop();
        parts.push(tmp.as_str().into());
        ObjectPath::from_iter(parts)
    }

    /// Uploads local file `file` to `key` atomically and returns its size in bytes.
    pub async fn put_file(&self, file: &Path, key: &ObjectPath) -> Result<u64> {
        let f = tokio::fs::File::open(file).await.map_err(|source| Error::Io { op: "open", path: file.into(), source })?;
        let chunk = self.part_size.min(8 << 20);
        let chunks = futures::stream::try_unfold(f, move |mut f| async move {
            let mut buf = vec![0u8; chunk];
            let n = f.read(&mut buf).await?;
            buf.truncate(n);
            Ok((n > 0).then(|| (bytes::Bytes::from(buf), f)))
        });
        self.put_stream(chunks, key).await.map_err(|e| match e {
            Error::Io { op, source, .. } => Error::Io { op, path: file.into(), source },
            e => e,
        })
    }

    /// Uploads a stream of chunks to `key` atomically (multipart, at most four parts in
    /// flight) and returns the size in bytes. A stream error aborts the upload; nothing
    /// appears under `key`.
    pub async fn put_stream<S>(&self, chunks: S, key: &ObjectPath) -> Result<u64>
    where
        S: futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send,
    {
        use futures::StreamExt;
        let tmp = Self::tmp_key(key);
        let upload = self.store.put_multipart(&tmp).await.map_err(|source| obj("start upload", &tmp, source))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.part_size);
        let mut size = 0u64;
        let mut chunks = std::pin::pin!(chunks);
        while let Some(chunk) = chunks.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(source) => {
                    let _ = writer.abort().await;
                    return Err(Error::Io { op: "read", path: PathBuf::from(key.as_ref()), source });
                }
            };
            size += chunk.len() as u64;
            if let Err(source) = writer.wait_for_capacity(4).await {
                return Err(obj("upload", &tmp, source));
            }
            writer.put(chunk);
        }
        writer.finish().await.map_err(|source| obj("finish upload", &tmp, source))?;
        self.publish(&tmp, key).await?;
        Ok(size)
    }

    /// Uploads `bytes` to `key` atomically (for small outputs: STAC items, collections).
    pub async fn put_bytes(&self, bytes: bytes::Bytes, key: &ObjectPath) -> Result<()> {
        let tmp = Self::tmp_key(key);
        self.store.put(&tmp, bytes.into()).await.map_err(|source| obj("put", &tmp, source))?;
        self.publish(&tmp, key).await
    }

    /// Moves the uploaded temporary object onto the final key.
    async fn publish(&self, tmp: &ObjectPath, key: &ObjectPath) -> Result<()> {
        let moved = match self.mode {
            CommitMode::Replace => self.store.rename(tmp, key).await,
            CommitMode::CreateOnly => self.store.rename_if_not_exists(tmp, key).await,
        };
        match moved {
            Ok(()) => Ok(()),
            Err(source) => {
                let _ = self.store.delete(tmp).await;
                match source {
                    object_store::Error::AlreadyExists { .. } => Err(Error::AlreadyCommitted { key: key.to_string() }),
                    source => Err(obj("rename", key, source)),
                }
            }
        }
    }

    /// Deletes temporary objects under `prefix` left by killed writers, and returns how many.
    /// Only run it when no writer is running under `prefix`.
    pub async fn remove_stale(&self, prefix: &ObjectPath) -> Result<usize> {
        use futures::TryStreamExt;
        let stale: Vec<ObjectPath> = self
            .store
            .list(Some(prefix))
            .map_ok(|m| m.location)
            .try_filter(|p| futures::future::ready(p.filename().is_some_and(|n| n.starts_with('.') && n.ends_with(TMP_SUFFIX))))
            .try_collect()
            .await
            .map_err(|source| obj("list", prefix, source))?;
        for p in &stale {
            self.store.delete(p).await.map_err(|source| obj("delete", p, source))?;
        }
        Ok(stale.len())
    }
}

fn obj(op: &'static str, key: &ObjectPath, source: object_store::Error) -> Error {
    Error::ObjectStore { op, key: key.to_string(), source }
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

    fn keys(store: &dyn ObjectStore) -> Vec<String> {
        use futures::TryStreamExt;
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("rt");
        let mut keys: Vec<String> =
            rt.block_on(store.list(None).map_ok(|m| m.location.to_string()).try_collect::<Vec<_>>()).expect("list");
        keys.sort();
        keys
    }

    #[tokio::test]
    async fn object_commit_replaces_and_create_only_refuses() {
        let dir = tempfile::tempdir().expect("tmp");
        let local = dir.path().join("payload.bin");
        let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
        std::fs::write(&local, &payload).expect("write");
        let stores: Vec<Arc<dyn ObjectStore>> = vec![
            Arc::new(object_store::memory::InMemory::new()),
            Arc::new({
                std::fs::create_dir_all(dir.path().join("store")).expect("mkdir");
                object_store::local::LocalFileSystem::new_with_prefix(dir.path().join("store")).expect("local store")
            }),
        ];
        for store in stores {
            let key = ObjectPath::from("masks/S2A_X.tif");
            let commit = ObjectCommit::new(Arc::clone(&store), CommitMode::Replace).with_part_size(1 << 20);
            assert_eq!(commit.put_file(&local, &key).await.expect("put"), payload.len() as u64);
            commit.put_bytes(bytes::Bytes::from_static(b"v2"), &key).await.expect("replace");
            let got = store.get(&key).await.expect("get").bytes().await.expect("bytes");
            assert_eq!(&got[..], b"v2");
            let strict = ObjectCommit::new(Arc::clone(&store), CommitMode::CreateOnly);
            let err = strict.put_bytes(bytes::Bytes::from_static(b"v3"), &key).await.expect_err("exists");
            assert!(matches!(err, Error::AlreadyCommitted { .. }), "{err}");
            assert!(err.to_string().contains("masks/S2A_X.tif"), "{err}");
            let store2 = Arc::clone(&store);
            let listed = tokio::task::spawn_blocking(move || keys(store2.as_ref())).await.expect("join");
            assert_eq!(listed, vec!["masks/S2A_X.tif".to_string()], "no temporary key left behind");
            // A stale temporary object (a killed writer's) is removed, the output is kept.
            store.put(&ObjectCommit::tmp_key(&key), bytes::Bytes::from_static(b"partial").into()).await.expect("put tmp");
            assert_eq!(commit.remove_stale(&ObjectPath::from("masks")).await.expect("clean"), 1);
            assert!(store.head(&key).await.is_ok());
        }
    }
}
