//! The rasters of a flood event on its output grid: the grid itself, Sentinel-1 VV/VH in dB
//! (warped with [`terrastream_ingest::sar::warp_db_onto`], slices of a pass mosaicked) and
//! Sentinel-2 green/NIR/SWIR1 reflectance with its SCL.
//!
//! **The output grid.** When the AOI lies inside the first post-event Sentinel-1 image and that
//! image is already map-projected in EPSG:4326 or a WGS 84 UTM zone, the grid is that image's
//! own pixel grid cut to the AOI's bounding box: no resampling at all, so a chip mapped by
//! `flood run` matches `flood water` on the same file pixel for pixel. Otherwise (GRD in radar
//! geometry, AOIs across scenes) it is the AOI's bounding box in the UTM zone of its centre at
//! `resolution_m`, edges on multiples of the resolution (`gdalwarp -tap`).

use anyhow::{Context, Result, bail, ensure};
use async_tiff::DataType;
use serde_json::Value;
use terrastream_ingest::bands::Resampling;
use terrastream_ingest::cog::Cog;
use terrastream_ingest::geo::{GeoTransform, Reproject, utm_epsg};
use terrastream_ingest::item::{HrefRewrite, SceneItem};
use terrastream_ingest::sar::{Radiometry, warp_db_onto};
use terrastream_ingest::store;
use terrastream_ingest::warp::{DstGrid, WarpOptions, warp_cog_onto};

use super::aoi::Aoi;
use super::raster::Grid;

/// Largest output grid, pixels: every band is held whole in memory (4 bytes a pixel, about ten
/// rasters at once), so this bounds a run to a few GB.
pub const MAX_PIXELS: usize = 150_000_000;

/// Asset keys of the polarisations (Earth Search / Planetary Computer, AWS RTC, plain names).
const VV_KEYS: &[&str] = &["vv", "gamma0_vv", "VV"];
const VH_KEYS: &[&str] = &["vh", "gamma0_vh", "VH"];
/// Sentinel-2 asset keys (Earth Search common names, Planetary Computer band names).
const GREEN_KEYS: &[&str] = &["green", "B03", "b03"];
const NIR_KEYS: &[&str] = &["nir", "B08", "b08"];
const SWIR1_KEYS: &[&str] = &["swir16", "B11", "b11"];
const SCL_KEYS: &[&str] = &["scl", "SCL"];

/// One band of one asset: where it is and how to read its values.
#[derive(Debug)]
pub struct AssetBand {
    /// Asset key.
    pub key: String,
    /// Href after rewrites.
    pub href: String,
    /// 0-based band of the file.
    pub band: usize,
    /// `raster:bands` scale and offset (value = raw * scale + offset).
    pub scale_offset: (f32, f32),
    /// The open COG.
    pub cog: Cog,
}

/// Band names equal but for case and zero padding: `B03`, `b3` and `B3` are one band (Sentinel-2
/// names come both ways, e.g. Sen1Floods11's `B3` and Planetary Computer's `B03`).
fn same_band_name(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        let s = s.to_ascii_uppercase();
        match s.strip_prefix('B') {
            Some(rest) if rest.chars().next().is_some_and(|c| c.is_ascii_digit()) => {
                format!("B{}", rest.trim_start_matches('0'))
            }
            _ => s,
        }
    };
    norm(a) == norm(b)
}

/// How the grid was chosen, for the summary.
#[derive(Debug, Clone, PartialEq)]
pub enum GridChoice {
    /// The first post-event scene's own grid, cut to the AOI.
    Scene(String),
    /// The AOI's bbox in the UTM zone of its centre.
    Utm,
}

/// The output grid of `aoi` (see the module docs); `first_vv` is the first post-event VV band.
pub fn choose_grid(aoi: &Aoi, first_vv: &AssetBand, resolution_m: f64) -> Result<(Grid, GridChoice)> {
    let info = first_vv.cog.info();
    if let (Some(t), Some(epsg)) = (info.transform, info.epsg)
        && t.is_north_up()
        && (epsg == 4326 || (32601..=32660).contains(&epsg) || (32701..=32760).contains(&epsg))
    {
        let [x0, y0, x1, y1] = projected_bbox(aoi, epsg)?;
        let (c0, r0) = t.invert(x0, y1);
        let (c1, r1) = t.invert(x1, y0);
        // Pixels the bbox touches; a hair of tolerance so a bbox on pixel edges stays exact.
        let (c0, r0) = ((c0.min(c1) + 1e-6).floor(), (r0.min(r1) + 1e-6).floor());
        let (c1, r1) = ((c0.max(c1) - 1e-6).ceil(), (r0.max(r1) - 1e-6).ceil());
        if c0 >= 0.0 && r0 >= 0.0 && c1 <= info.width as f64 && r1 <= info.height as f64 && c1 > c0 && r1 > r0 {
            let grid = Grid {
                epsg,
                transform: t.offset(c0, r0).0,
                width: (c1 - c0) as usize,
                height: (r1 - r0) as usize,
            };
            check_size(&grid)?;
            return Ok((grid, GridChoice::Scene(first_vv.href.clone())));
        }
    }
    ensure!(
        resolution_m > 0.0 && resolution_m.is_finite(),
        "resolution_m {resolution_m}: must be positive"
    );
    let [w, s, e, n] = aoi.bbox();
    let epsg = utm_epsg((w + e) / 2.0, (s + n) / 2.0);
    let [x0, y0, x1, y1] = projected_bbox(aoi, epsg)?;
    let res = resolution_m;
    let (x0, y0) = ((x0 / res).floor() * res, (y0 / res).floor() * res);
    let (x1, y1) = ((x1 / res).ceil() * res, (y1 / res).ceil() * res);
    let grid = Grid {
        epsg,
        transform: GeoTransform::north_up(x0, y1, res, res).0,
        width: (((x1 - x0) / res).round() as usize).max(1),
        height: (((y1 - y0) / res).round() as usize).max(1),
    };
    check_size(&grid)?;
    Ok((grid, GridChoice::Utm))
}

fn check_size(grid: &Grid) -> Result<()> {
    ensure!(
        grid.width.saturating_mul(grid.height) <= MAX_PIXELS,
        "aoi: the output grid would be {} x {} pixels (limit {MAX_PIXELS}): use a smaller AOI or a coarser resolution_m",
        grid.width,
        grid.height
    );
    Ok(())
}

/// The AOI's bounding box in EPSG:`epsg`, `[xmin, ymin, xmax, ymax]`, its edges densified (they
/// bend under projection).
fn projected_bbox(aoi: &Aoi, epsg: u32) -> Result<[f64; 4]> {
    let to = Reproject::new(4326, epsg).context("aoi")?;
    let [w, s, e, n] = aoi.bbox();
    let mut b = [f64::INFINITY, f64::INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY];
    const STEPS: usize = 16;
    for k in 0..=STEPS {
        let f = k as f64 / STEPS as f64;
        let (x, y) = (w + f * (e - w), s + f * (n - s));
        for (lon, lat) in [(x, s), (x, n), (w, y), (e, y)] {
            let Some((px, py)) = to.apply(lon, lat) else {
                bail!("aoi: ({lon}, {lat}) has no position in EPSG:{epsg}")
            };
            b = [b[0].min(px), b[1].min(py), b[2].max(px), b[3].max(py)];
        }
    }
    Ok(b)
}

/// The band lists an asset declares (STAC 1.1 `bands`, `eo:bands`, `raster:bands`), as JSON.
fn band_lists(item: &SceneItem, key: &str) -> Vec<Vec<Value>> {
    let Some(asset) = item.item.assets.get(key) else {
        return Vec::new();
    };
    let Ok(v) = serde_json::to_value(asset) else {
        return Vec::new();
    };
    ["bands", "eo:bands", "raster:bands"]
        .iter()
        .filter_map(|k| v.get(*k).and_then(Value::as_array).cloned())
        .collect()
}

/// The 0-based band of asset `key` whose name or common name is one of `names` (case
/// insensitive); `None` if the asset names none of them.
fn named_band(item: &SceneItem, key: &str, names: &[&str]) -> Option<usize> {
    band_lists(item, key).iter().find_map(|list| {
        list.iter().position(|b| {
            ["name", "common_name", "eo:common_name"].iter().any(|f| {
                b.get(*f)
                    .and_then(Value::as_str)
                    .is_some_and(|n| names.iter().any(|m| same_band_name(m, n)))
            })
        })
    })
}

/// `raster:bands` scale and offset of band `band` of asset `key` (1, 0 when absent).
fn scale_offset(item: &SceneItem, key: &str, band: usize) -> (f32, f32) {
    for list in band_lists(item, key) {
        if let Some(b) = list.get(band)
            && (b.get("scale").is_some() || b.get("offset").is_some())
        {
            let f = |k: &str, d: f64| b.get(k).and_then(Value::as_f64).unwrap_or(d) as f32;
            return (f("scale", 1.0), f("offset", 0.0));
        }
    }
    (1.0, 0.0)
}

/// Opens the band of `item` that `keys` (asset keys) or, failing those, `names` (band names
/// inside any asset) designate. `Ok(None)` when the item has neither.
pub async fn open_band(
    item: &SceneItem,
    keys: &[&str],
    names: &[&str],
    rewrites: &[HrefRewrite],
) -> Result<Option<AssetBand>> {
    let (key, band) = match keys.iter().find(|k| item.item.assets.contains_key(**k)) {
        Some(k) => ((*k).to_string(), named_band(item, k, names).unwrap_or(0)),
        None => match item
            .item
            .assets
            .keys()
            .find_map(|k| named_band(item, k, names).map(|b| (k.clone(), b)))
        {
            Some(found) => found,
            None => return Ok(None),
        },
    };
    let Some((_, href)) = item.asset_href(&[key.as_str()], rewrites) else {
        return Ok(None);
    };
    let location =
        store::open(&href, &item.base_dir).with_context(|| format!("item {} asset {key}: {href}", item.id()))?;
    let cog = Cog::open(&location)
        .await
        .with_context(|| format!("item {} asset {key}: {href}", item.id()))?;
    ensure!(
        band < cog.info().bands,
        "item {} asset {key} ({href}): band {} named {names:?} but the file has {} bands",
        item.id(),
        band + 1,
        cog.info().bands
    );
    let scale_offset = scale_offset(item, &key, band);
    Ok(Some(AssetBand {
        key,
        href,
        band,
        scale_offset,
        cog,
    }))
}

/// Opens VV and VH of a Sentinel-1 item; at least one must exist.
pub async fn open_s1(item: &SceneItem, rewrites: &[HrefRewrite]) -> Result<(Option<AssetBand>, Option<AssetBand>)> {
    let vv = open_band(item, VV_KEYS, &["VV"], rewrites).await?;
    let vh = open_band(item, VH_KEYS, &["VH"], rewrites).await?;
    ensure!(
        vv.is_some() || vh.is_some(),
        "item {}: no VV or VH asset (looked for keys {VV_KEYS:?} / {VH_KEYS:?}; assets: {:?})",
        item.id(),
        item.item.assets.keys().collect::<Vec<_>>()
    );
    Ok((vv, vh))
}

/// The radiometry of a Sentinel-1 band: `override_` when configured; else the unit the asset
/// declares (`unit` of the asset or its bands: `dB`, `linear`/`power`, `DN`); else integer
/// samples are GRD DN amplitudes and floating-point samples linear power (RTC).
pub fn radiometry(item: &SceneItem, band: &AssetBand, override_: Option<Radiometry>) -> Radiometry {
    if let Some(r) = override_ {
        return r;
    }
    let asset = item.item.assets.get(&band.key);
    let mut units: Vec<String> = asset.and_then(|a| a.unit.clone()).into_iter().collect();
    for list in band_lists(item, &band.key) {
        if let Some(u) = list.get(band.band).and_then(|b| b.get("unit")).and_then(Value::as_str) {
            units.push(u.to_string());
        }
    }
    for u in units.iter().map(|u| u.to_ascii_lowercase()) {
        match u.as_str() {
            "db" | "decibel" | "decibels" => return Radiometry::Db,
            "linear" | "power" | "linear power" => return Radiometry::LinearPower,
            "dn" | "amplitude" => return Radiometry::DnAmplitude,
            _ => {}
        }
    }
    match band.cog.info().data_type {
        DataType::Float32 | DataType::Float64 => Radiometry::LinearPower,
        _ => Radiometry::DnAmplitude,
    }
}

fn dst(grid: &Grid) -> Result<DstGrid> {
    Ok(DstGrid::new(
        grid.epsg,
        GeoTransform(grid.transform),
        grid.width,
        grid.height,
    )?)
}

/// Band `b` of every slice in dB on `grid`, the first slice's value where slices overlap.
pub async fn s1_db(
    slices: &[(&SceneItem, &AssetBand)],
    grid: &Grid,
    override_: Option<Radiometry>,
) -> Result<Vec<f32>> {
    let dst = dst(grid)?;
    let mut out = vec![f32::NAN; grid.width * grid.height];
    for (item, band) in slices {
        let rad = radiometry(item, band, override_);
        let raster = warp_db_onto(&band.cog, band.band, rad, &dst, Resampling::Bilinear)
            .await
            .with_context(|| format!("item {} asset {} ({})", item.id(), band.key, band.href))?;
        for (o, v) in out.iter_mut().zip(raster.data) {
            if o.is_nan() {
                *o = v;
            }
        }
    }
    Ok(out)
}

/// One band on `grid`: read (through overviews when coarser) in the same CRS, warped otherwise;
/// scale and offset applied.
pub async fn read_band(item: &SceneItem, band: &AssetBand, grid: &Grid, method: Resampling) -> Result<Vec<f32>> {
    let ctx = || format!("item {} asset {} ({})", item.id(), band.key, band.href);
    let raster = if band.cog.info().epsg == Some(grid.epsg) && band.cog.info().transform.is_some() {
        band.cog
            .read_onto(
                band.band,
                &GeoTransform(grid.transform),
                grid.width,
                grid.height,
                method,
            )
            .await
            .with_context(ctx)?
    } else {
        let options = WarpOptions {
            resampling: method,
            ..WarpOptions::default()
        };
        warp_cog_onto(&band.cog, band.band, &dst(grid)?, &options)
            .await
            .with_context(ctx)?
    };
    let (scale, offset) = band.scale_offset;
    let mut data = raster.data;
    if (scale, offset) != (1.0, 0.0) {
        data.iter_mut().for_each(|v| *v = *v * scale + offset);
    }
    Ok(data)
}

/// The Sentinel-2 bands of the index method.
#[derive(Debug)]
pub struct S2Bands {
    /// B03.
    pub green: AssetBand,
    /// B08.
    pub nir: Option<AssetBand>,
    /// B11.
    pub swir16: Option<AssetBand>,
    /// Scene classification.
    pub scl: Option<AssetBand>,
}

/// Opens the Sentinel-2 bands of `item`: green and NIR or SWIR1 are required.
pub async fn open_s2(item: &SceneItem, rewrites: &[HrefRewrite]) -> Result<S2Bands> {
    let green = open_band(item, GREEN_KEYS, &["B03", "green"], rewrites).await?;
    let nir = open_band(item, NIR_KEYS, &["B08", "nir"], rewrites).await?;
    let swir16 = open_band(item, SWIR1_KEYS, &["B11", "swir16"], rewrites).await?;
    let scl = open_band(item, SCL_KEYS, &["SCL"], rewrites).await?;
    let Some(green) = green else {
        bail!(
            "item {}: no green band (asset keys {GREEN_KEYS:?} or a band named B03; assets: {:?})",
            item.id(),
            item.item.assets.keys().collect::<Vec<_>>()
        )
    };
    ensure!(
        nir.is_some() || swir16.is_some(),
        "item {}: neither a NIR (B08) nor a SWIR1 (B11) band",
        item.id()
    );
    Ok(S2Bands {
        green,
        nir,
        swir16,
        scl,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn band_names_match_without_padding() {
        assert!(same_band_name("B03", "B3") && same_band_name("b8a", "B08A") && same_band_name("VV", "vv"));
        assert!(!same_band_name("B8A", "B8") && !same_band_name("B1", "B11") && !same_band_name("SCL", "B3"));
    }
}
