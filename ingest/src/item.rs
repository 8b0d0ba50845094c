//! STAC items: reading them and resolving their asset hrefs.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use stac::Item;

use crate::store::Stores;
use crate::{Error, Result};

/// Replaces an href prefix, e.g. to read a bucket's files from a local mirror.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HrefRewrite {
    /// Prefix to replace, e.g. `https://sentinel-cogs.s3.us-west-2.amazonaws.com/`.
    pub prefix: String,
    /// What replaces it: a directory, URL prefix or `file://` URL.
    pub replace: String,
}

/// A STAC item with the directory its relative hrefs are resolved against.
#[derive(Debug, Clone)]
pub struct SceneItem {
    /// The item.
    pub item: Item,
    /// Where relative hrefs point from: the item file's directory.
    pub base_dir: PathBuf,
}

/// A deserialized item, refused when its id is empty: the id names the scene in the output, the
/// ledger and every error message, so scenes without one could not be told apart (stac's
/// `Item` defaults a missing id to "").
pub fn parse_item(item: serde_json::Result<Item>) -> serde_json::Result<Item> {
    let item = item?;
    if item.id.trim().is_empty() {
        return Err(<serde_json::Error as serde::de::Error>::custom("the item has no \"id\""));
    }
    Ok(item)
}

impl SceneItem {
    /// Reads an item from a JSON file.
    pub fn from_path(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::ReadItem { path: path.into(), source })?;
        let item = parse_item(serde_json::from_slice(&bytes))
            .map_err(|source| Error::ParseItem { path: path.into(), source })?;
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(Self { item, base_dir })
    }

    /// Reads an item from `href`: a local path, `file://`, `http(s)://` or `s3://` URL. Relative
    /// asset hrefs are made absolute against `href`, so the item reads the same from anywhere.
    pub async fn from_href(href: &str) -> Result<Self> {
        let bytes = read_href(href).await?;
        let item = parse_item(serde_json::from_slice(&bytes))
            .map_err(|e| Error::Href { href: href.to_string(), reason: format!("not a STAC item: {e}") })?;
        Ok(Self::from_item(item, href))
    }

    /// An item that was read from `href`, its relative asset hrefs resolved against it.
    pub fn from_item(mut item: Item, href: &str) -> Self {
        for asset in item.assets.values_mut() {
            asset.href = resolve_href(href, &asset.href);
        }
        let base_dir = match local_path(href) {
            Some(p) => p.parent().map(Path::to_path_buf).unwrap_or_default(),
            None => PathBuf::new(),
        };
        Self { item, base_dir }
    }

    /// The item id.
    pub fn id(&self) -> &str {
        &self.item.id
    }

    /// Acquisition time: `datetime`, or `start_datetime` for items with a range.
    pub fn datetime(&self) -> Result<DateTime<Utc>> {
        let p = &self.item.properties;
        p.datetime.or(p.start_datetime).ok_or_else(|| Error::InvalidItem {
            item: self.item.id.clone(),
            what: "no datetime or start_datetime".into(),
        })
    }

    /// The grid tile the scene belongs to: `grid:code`, else MGRS from `mgrs:*` or
    /// `s2:mgrs_tile`.
    pub fn grid_id(&self) -> Option<String> {
        let f = &self.item.properties.additional_fields;
        if let Some(code) = f.get("grid:code").and_then(|v| v.as_str()) {
            return Some(code.to_string());
        }
        if let (Some(zone), Some(band), Some(square)) = (
            f.get("mgrs:utm_zone").and_then(|v| v.as_u64()),
            f.get("mgrs:latitude_band").and_then(|v| v.as_str()),
            f.get("mgrs:grid_square").and_then(|v| v.as_str()),
        ) {
            return Some(format!("MGRS-{zone:02}{band}{square}"));
        }
        f.get("s2:mgrs_tile").and_then(|v| v.as_str()).map(|t| format!("MGRS-{t}"))
    }

    /// The first of `keys` that names an asset of the item, with its href after `rewrites`.
    pub fn asset_href(&self, keys: &[&str], rewrites: &[HrefRewrite]) -> Option<(String, String)> {
        keys.iter().find_map(|k| self.item.assets.get(*k).map(|a| ((*k).to_string(), rewrite(&a.href, rewrites))))
    }
}

/// The bytes at `href` (a path, `file://`, `http(s)://` or `s3://` URL), through the shared
/// [`Stores`].
pub async fn read_href(href: &str) -> Result<bytes::Bytes> {
    let herr = |e: object_store::Error| Error::Href { href: href.to_string(), reason: e.to_string() };
    let cwd = std::env::current_dir().unwrap_or_default();
    let loc = Stores::global().open(href, &cwd)?;
    loc.store.get_opts(&loc.path, Default::default()).await.map_err(herr)?.bytes().await.map_err(herr)
}

/// `href` resolved against `base`, the href of the document it appears in: absolute hrefs
/// (`scheme://`, `/path`) are kept, relative ones are joined to `base`'s directory, as a URL
/// for URL bases and as a normalised path for local ones.
pub fn resolve_href(base: &str, href: &str) -> String {
    if href.contains("://") {
        return href.to_string();
    }
    if let Some(dir) = local_path(base) {
        if Path::new(href).is_absolute() {
            return href.to_string();
        }
        let dir = dir.parent().unwrap_or(Path::new(""));
        let joined = crate::store::normalize(&dir.join(href));
        return joined.display().to_string();
    }
    match reqwest::Url::parse(base).and_then(|b| b.join(href)) {
        Ok(u) => u.to_string(),
        Err(_) => href.to_string(),
    }
}

/// The local path of a plain path or `file://` URL; `None` for other URLs.
fn local_path(href: &str) -> Option<PathBuf> {
    match href.strip_prefix("file://") {
        Some(p) => Some(PathBuf::from(p)),
        None if href.contains("://") => None,
        None => Some(PathBuf::from(href)),
    }
}

/// Applies the first rewrite whose prefix matches.
pub fn rewrite(href: &str, rewrites: &[HrefRewrite]) -> String {
    for r in rewrites {
        if let Some(rest) = href.strip_prefix(&r.prefix) {
            return format!("{}{}", r.replace, rest);
        }
    }
    href.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_matching_rewrite_wins() {
        let rw = [
            HrefRewrite { prefix: "https://a/".into(), replace: "/mirror/a/".into() },
            HrefRewrite { prefix: "https://".into(), replace: "/mirror/".into() },
        ];
        assert_eq!(rewrite("https://a/x.tif", &rw), "/mirror/a/x.tif");
        assert_eq!(rewrite("https://b/x.tif", &rw), "/mirror/b/x.tif");
        assert_eq!(rewrite("s3://b/x.tif", &rw), "s3://b/x.tif");
    }

    #[test]
    fn relative_hrefs_resolve_against_their_document() {
        assert_eq!(resolve_href("/data/cat/a/item.json", "./B02.tif"), "/data/cat/a/B02.tif");
        assert_eq!(resolve_href("/data/cat/a/item.json", "../b/item.json"), "/data/cat/b/item.json");
        assert_eq!(resolve_href("file:///data/cat/catalog.json", "a/item.json"), "/data/cat/a/item.json");
        assert_eq!(resolve_href("http://h:1/cat/catalog.json", "./a/item.json"), "http://h:1/cat/a/item.json");
        assert_eq!(resolve_href("http://h:1/cat/a/item.json", "../../B02.tif"), "http://h:1/B02.tif");
        assert_eq!(resolve_href("http://h:1/cat/a/item.json", "/x/B02.tif"), "http://h:1/x/B02.tif");
        assert_eq!(resolve_href("/data/item.json", "s3://b/B02.tif"), "s3://b/B02.tif");
    }
}
