//! Hrefs to `object_store` locations.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path;

use crate::{Error, Result};

/// A readable location: a store and a path inside it.
#[derive(Debug, Clone)]
pub struct Location {
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// The object's path in the store.
    pub path: Path,
}

/// Opens `href`: a local path (absolute, or relative to `base_dir`) or a `file://` URL.
///
/// Remote schemes (`https://`, `s3://`) are recognised and refused with a clear error until
/// remote access lands; rewrite such hrefs to a local mirror meanwhile.
pub fn open(href: &str, base_dir: &FsPath) -> Result<Location> {
    let local = local_path(href, base_dir)?;
    let abs = if local.is_absolute() { local } else { base_dir.join(local) };
    let abs = std::path::absolute(&abs).map_err(|e| Error::Href { href: href.to_string(), reason: e.to_string() })?;
    let abs = normalize(&abs);
    let path = Path::from_absolute_path(&abs)
        .map_err(|e| Error::Href { href: href.to_string(), reason: e.to_string() })?;
    Ok(Location { store: Arc::new(LocalFileSystem::new()), path })
}

fn local_path(href: &str, base_dir: &FsPath) -> Result<PathBuf> {
    if let Some(rest) = href.strip_prefix("file://") {
        return Ok(PathBuf::from(rest));
    }
    if let Some((scheme, _)) = href.split_once("://") {
        return Err(Error::Href {
            href: href.to_string(),
            reason: format!(
                "{scheme}:// assets are not readable yet (remote access is not implemented); \
                 map them to local files with a rewrite rule (base dir {})",
                base_dir.display()
            ),
        });
    }
    Ok(PathBuf::from(href))
}

/// Removes `.` and `..` components without touching the file system (the file may not exist,
/// and that error belongs to the read, where it names the asset).
pub fn normalize(path: &FsPath) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_resolve_against_the_base() {
        let loc = open("../b/B02.tif", FsPath::new("/data/a")).expect("local");
        assert_eq!(loc.path.as_ref(), "data/b/B02.tif");
        let loc = open("file:///x/y.tif", FsPath::new("/data")).expect("file url");
        assert_eq!(loc.path.as_ref(), "x/y.tif");
    }

    #[test]
    fn remote_schemes_are_refused_by_name() {
        let err = open("https://example.com/B02.tif", FsPath::new("/")).expect_err("remote");
        assert!(err.to_string().contains("https://example.com/B02.tif"), "{err}");
    }
}
