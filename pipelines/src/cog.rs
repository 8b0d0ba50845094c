//! `terrastream cog ...`: look inside a (Cloud-Optimized) GeoTIFF the way the pipeline reads it.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde_json::json;
use terrastream_ingest::cog::Cog;
use terrastream_ingest::store;

/// Opens `href` (a path, `file://` URL or remote URL) as the pipeline would.
async fn open(href: &str) -> Result<Cog> {
    let cwd = std::env::current_dir().context("current directory")?;
    let location = store::open(href, &cwd)?;
    Cog::open(&location).await.with_context(|| format!("href {href}"))
}

/// `cog info HREF`: size, tiles, compression, data type, CRS, transform, nodata, overviews as
/// JSON.
pub async fn info(href: &str) -> Result<serde_json::Value> {
    let cog = open(href).await?;
    let i = cog.info();
    Ok(json!({
        "href": href,
        "width": i.width,
        "height": i.height,
        "bands": i.bands,
        "data_type": format!("{:?}", i.data_type),
        "tile_width": i.tile_width,
        "tile_height": i.tile_height,
        "compression": format!("{:?}", i.compression),
        "epsg": i.epsg,
        "transform": i.transform.map(|t| t.0),
        "gcps": i.gcp_count,
        "nodata": i.nodata,
        "overviews": i.overviews,
    }))
}

/// A pixel window `col,row,width,height`.
pub fn parse_window(s: &str) -> Result<[usize; 4]> {
    let parts: Vec<&str> = s.split(',').collect();
    let nums: Vec<usize> = parts.iter().filter_map(|p| p.trim().parse().ok()).collect();
    if parts.len() != 4 || nums.len() != 4 {
        bail!("--window {s:?}: expected COL,ROW,WIDTH,HEIGHT (four non-negative integers)");
    }
    Ok([nums[0], nums[1], nums[2], nums[3]])
}

/// `cog read HREF --window ... --out FILE.npy`: the window of the full-resolution image, all
/// bands, shape `(bands, height, width)`, in the file's own data type.
pub async fn read(href: &str, window: [usize; 4], out: &PathBuf) -> Result<()> {
    let cog = open(href).await?;
    let [col, row, width, height] = window;
    let raw = cog.read_window_raw(col, row, width, height).await.with_context(|| format!("href {href}"))?;
    let descr = crate::npy::descr(raw.data_type)
        .with_context(|| format!("href {href}: no NumPy type for {:?}", raw.data_type))?;
    let file = std::fs::File::create(out).with_context(|| format!("create {}", out.display()))?;
    crate::npy::write(std::io::BufWriter::new(file), descr, &[raw.bands, raw.height, raw.width], &raw.bytes)
        .with_context(|| format!("write {}", out.display()))?;
    Ok(())
}
