//! Optional download of the official checkpoints from their public model hub repositories
//! (feature `hub`, off by default; needs network access and the `curl` program at run time).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Config, Error, Result};

/// The hub repository and file of a variant's official checkpoint, as terratorch registers
/// them: `ibm-esa-geospatial/TerraMind-1.0-<variant>`, `TerraMind_v1_<variant>.pt`.
pub fn weights_url(variant: &str) -> Result<String> {
    Config::variant(variant)?;
    let v = variant.trim().to_ascii_lowercase();
    let v = v.strip_prefix("terramind_v1_").unwrap_or(&v);
    Ok(format!(
        "https://huggingface.co/ibm-esa-geospatial/TerraMind-1.0-{v}/resolve/main/TerraMind_v1_{v}.pt"
    ))
}

/// Downloads `TerraMind_v1_<variant>.pt` into `dir` unless it is already there, and returns its
/// path. The file is written under a temporary name and renamed when complete.
pub fn fetch_weights(variant: &str, dir: impl AsRef<Path>) -> Result<PathBuf> {
    let url = weights_url(variant)?;
    let name = url.rsplit('/').next().unwrap_or("weights.pt").to_string();
    let dir = dir.as_ref();
    let path = dir.join(&name);
    if path.is_file() {
        return Ok(path);
    }
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.into(),
        source,
    })?;
    let partial = dir.join(format!("{name}.part"));
    let status = Command::new("curl")
        .args([
            "--fail",
            "--location",
            "--silent",
            "--show-error",
            "--retry",
            "3",
            "--output",
        ])
        .arg(&partial)
        .arg(&url)
        .status()
        .map_err(|e| Error::Fetch {
            url: url.clone(),
            reason: format!("cannot run curl: {e}"),
        })?;
    if !status.success() {
        let _ = std::fs::remove_file(&partial);
        return Err(Error::Fetch {
            url,
            reason: format!("curl exited with {status}"),
        });
    }
    std::fs::rename(&partial, &path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}
