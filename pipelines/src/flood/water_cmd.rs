//! `terrastream flood water`: one water mask for co-registered rasters on disk.
//!
//! Reads Sentinel-1 (VV, VH in dB), Sentinel-2 (green, NIR, SWIR1; optional SCL) and an
//! optional DEM that lie on one pixel grid, runs the chosen method of
//! [`terrastream_operators::water`], and writes the mask (1 water, 0 dry, 255 no data) as a
//! COG on the inputs' grid, optionally the water probability as a second COG, and prints a
//! JSON summary (thresholds, pixel counts, timings).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::json;
use terrastream_operators::water::{
    self, S1Input, S1Options, S2Input, S2Options, Split, Threshold, ThresholdOptions, WaterIndex, WaterMap,
};

use super::output::{water_colours, write_classes, write_probability};
use super::raster::InputRaster;

/// The water-mapping method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Method {
    /// Sentinel-1 VV/VH backscatter threshold (Otsu per scene or per bimodal tile).
    S1,
    /// Sentinel-2 water index (MNDWI or NDWI) threshold, SCL clouds masked.
    S2,
    /// The water class of TerraMind's TiM-generated land cover (--checkpoint and --tokenizer),
    /// or of a fine-tuned segmentation model (--segmentation).
    Terramind,
    /// Majority vote of the methods the inputs allow, ties by mean probability.
    Ensemble,
}

/// The water index of the S2 method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IndexArg {
    /// (B03 - B08) / (B03 + B08), McFeeters 1996.
    Ndwi,
    /// (B03 - B11) / (B03 + B11), Xu 2006.
    Mndwi,
}

/// Arguments of `flood water`.
#[derive(Debug, Clone, clap::Args)]
pub struct WaterArgs {
    /// Sentinel-1 raster: backscatter in dB (sigma0 or gamma0), NaN or nodata where missing.
    #[arg(long)]
    pub s1: Option<String>,
    /// Band of VV in --s1 (1-based; 0: none).
    #[arg(long, default_value_t = 1)]
    pub vv_band: usize,
    /// Band of VH in --s1 (1-based; 0: none; ignored if the file has fewer bands).
    #[arg(long, default_value_t = 2)]
    pub vh_band: usize,
    /// --s1 holds linear power, not dB (e.g. Planetary Computer sentinel-1-rtc).
    #[arg(long)]
    pub s1_linear: bool,
    /// Sentinel-2 raster with the green, NIR and SWIR1 bands, on the same grid.
    #[arg(long)]
    pub s2: Option<String>,
    /// Bands of B03, B08, B11 in --s2 (1-based, e.g. `3,8,12`). Default: `3,8,12` for 13-band
    /// L1C stacks (B01..B12 with B8A, B10), `3,8,11` for TerraMind's 12 S2L2A bands.
    #[arg(long)]
    pub s2_bands: Option<String>,
    /// Added to every S2 value before the index (−1000 for processing baseline >= 04.00).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub s2_offset: f32,
    /// Scene classification (SCL) raster on the same grid: clouds, shadows, snow are no data.
    #[arg(long)]
    pub scl: Option<String>,
    /// Water index of the S2 method.
    #[arg(long, value_enum, default_value_t = IndexArg::Mndwi)]
    pub index: IndexArg,
    /// S2 index threshold: `otsu` (falls back to 0 where not bimodal) or a number.
    #[arg(long, default_value = "otsu", allow_hyphen_values = true)]
    pub s2_threshold: String,
    /// DEM (metres) on the same grid: slopes steeper than --max-slope are no data for S1.
    #[arg(long)]
    pub dem: Option<String>,
    /// Steepest slope, in degrees, where S1 water is mapped (with --dem).
    #[arg(long, default_value_t = 15.0)]
    pub max_slope: f32,
    /// S1 speckle median window (odd pixels; 1 = none).
    #[arg(long, default_value_t = 3)]
    pub speckle_window: usize,
    /// S1 split-based thresholding over tiles of this many pixels (default: one scene-wide
    /// threshold).
    #[arg(long)]
    pub tile_size: Option<usize>,
    /// TerraMind checkpoint (TerraMind_v1_<variant>.pt) for --method terramind (zero-shot: the
    /// water class of TiM-generated land cover).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// The LULC tokenizer (TerraMind_Tokenizer_LULC.pt) that decodes TiM's land-cover tokens.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// A fine-tuned TerraMind segmentation checkpoint (terratorch FCNDecoder + SegmentationHead;
    /// a Lightning .ckpt or a state dict) used instead of TiM.
    #[arg(long)]
    pub segmentation: Option<PathBuf>,
    /// TerraMind variant of --checkpoint / --segmentation.
    #[arg(long, default_value = "base")]
    pub variant: String,
    /// Class ids counted as water (repeatable; default 1: LULC water, or class 1 of a fine-tuned
    /// head).
    #[arg(long = "water-class")]
    pub water_classes: Vec<i64>,
    /// Run TerraMind with seeded random weights when no checkpoint is given: the map is noise.
    /// For smoke tests of the path only.
    #[arg(long)]
    pub random_weights: bool,
    /// The method.
    #[arg(long, value_enum, default_value_t = Method::Ensemble)]
    pub method: Method,
    /// Output mask COG (1 water, 0 dry, 255 no data).
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the water probability (Float32, nodata −1) as a COG here.
    #[arg(long)]
    pub probability: Option<PathBuf>,
    /// Also write the water pixels as polygons (GeoJSON, WGS 84) here.
    #[arg(long)]
    pub polygons: Option<PathBuf>,
    /// COG tile size in pixels (multiple of 16).
    #[arg(long, default_value_t = 512)]
    pub cog_tile_size: u32,
}

/// Runs `flood water` and returns its JSON summary.
pub async fn water(args: &WaterArgs) -> Result<serde_json::Value> {
    let start = Instant::now();
    if args.cog_tile_size == 0 || args.cog_tile_size % 16 != 0 {
        bail!(
            "--cog-tile-size {}: must be a positive multiple of 16",
            args.cog_tile_size
        );
    }
    let s1 = match &args.s1 {
        Some(h) => Some(InputRaster::open(h).await?),
        None => None,
    };
    let s2 = match &args.s2 {
        Some(h) => Some(InputRaster::open(h).await?),
        None => None,
    };
    let scl = match &args.scl {
        Some(h) => Some(InputRaster::open(h).await?),
        None => None,
    };
    let dem = match &args.dem {
        Some(h) => Some(InputRaster::open(h).await?),
        None => None,
    };
    let inputs: Vec<&InputRaster> = [&s1, &s2, &scl, &dem].into_iter().flatten().collect();
    let Some(reference) = inputs.first().copied() else {
        bail!("flood water: give --s1 and/or --s2")
    };
    for other in &inputs[1..] {
        reference.check_same_grid(other)?;
    }
    if scl.is_some() && s2.is_none() {
        bail!("--scl masks the Sentinel-2 method: give --s2 too");
    }
    let grid = reference.grid;
    let (w, h) = (grid.width, grid.height);

    let run_s1 = matches!(args.method, Method::S1) || (args.method == Method::Ensemble && s1.is_some());
    let run_s2 = matches!(args.method, Method::S2) || (args.method == Method::Ensemble && s2.is_some());
    let has_weights = args.checkpoint.is_some() || args.segmentation.is_some() || args.random_weights;
    let run_tm = args.method == Method::Terramind || (args.method == Method::Ensemble && has_weights);
    if args.method == Method::Ensemble && !has_weights {
        tracing::info!("ensemble without terramind: it needs --checkpoint and --tokenizer, or --segmentation");
    }

    let mut members: Vec<(&'static str, WaterMap)> = Vec::new();
    let (mut tm_seconds, mut tm_random) = (None, false);
    let read_start = Instant::now();
    let mut read_s = 0.0;
    // VV and VH in dB, read once for the S1 method and TerraMind alike.
    let t = Instant::now();
    let s1_db = match &s1 {
        Some(r) if run_s1 || run_tm => Some(read_s1_db(r, args).await?),
        _ => None,
    };
    read_s += t.elapsed().as_secs_f64();
    if run_s1 {
        let (Some(s1), Some((vv, vh))) = (&s1, &s1_db) else { bail!("--method s1 needs --s1") };
        let t = Instant::now();
        let slope = match &dem {
            Some(d) => {
                let (dx, dy) = grid.pixel_metres();
                Some(water::terrain::slope_degrees(&d.band(1).await?, w, h, dx, dy))
            }
            None => None,
        };
        read_s += t.elapsed().as_secs_f64();
        let input = S1Input {
            width: w,
            height: h,
            vv: vv.as_deref(),
            vh: vh.as_deref(),
            slope_deg: slope.as_deref(),
        };
        let opts = S1Options {
            speckle_window: args.speckle_window,
            max_slope_deg: args.max_slope,
            tile_size: args.tile_size,
            ..S1Options::default()
        };
        members.push((
            "s1",
            water::s1_threshold(&input, &opts).with_context(|| format!("{}", s1.href))?,
        ));
    }
    if run_s2 {
        let Some(s2r) = &s2 else {
            bail!("--method s2 needs --s2")
        };
        let t = Instant::now();
        let [g, n, s] = s2_bands(args.s2_bands.as_deref(), s2r.bands).with_context(|| s2r.href.clone())?;
        let index = match args.index {
            IndexArg::Ndwi => WaterIndex::Ndwi,
            IndexArg::Mndwi => WaterIndex::Mndwi,
        };
        let green = s2r.band(g).await?;
        let other = s2r.band(if index == WaterIndex::Ndwi { n } else { s }).await?;
        let scl_band = match &scl {
            Some(r) => Some(r.band(1).await?),
            None => None,
        };
        read_s += t.elapsed().as_secs_f64();
        let (nir, swir16) = if index == WaterIndex::Ndwi {
            (Some(&other[..]), None)
        } else {
            (None, Some(&other[..]))
        };
        let input = S2Input {
            width: w,
            height: h,
            green: &green,
            nir,
            swir16,
            scl: scl_band.as_deref(),
        };
        let rule = parse_threshold(&args.s2_threshold)?;
        let opts = S2Options {
            index,
            threshold: ThresholdOptions {
                rule,
                ..ThresholdOptions::otsu(Some(0.0))
            },
            offset: args.s2_offset,
            ..S2Options::default()
        };
        members.push(("s2", water::s2_index(&input, &opts).with_context(|| s2r.href.clone())?));
    }
    if run_tm {
        let t = Instant::now();
        let s1 = s1.as_ref().zip(s1_db.as_ref());
        let (map, random) = terramind_water(args, s1, s2.as_ref(), w, h).await?;
        tm_seconds = Some(t.elapsed().as_secs_f64());
        tm_random = random;
        members.push(("terramind", map));
    }
    let read_total = read_start.elapsed().as_secs_f64();
    let map = match (args.method, members.len()) {
        (Method::Ensemble, 0) => bail!("--method ensemble: no method has its inputs (give --s1 and/or --s2)"),
        (Method::Ensemble, _) => water::ensemble(&members.iter().map(|(_, m)| m).collect::<Vec<_>>())?,
        _ => members.last().map(|(_, m)| m.clone()).context("no method ran")?,
    };

    let t = Instant::now();
    let (water_px, dry_px, nodata_px) = map.counts();
    let out = write_classes(
        &args.out,
        &grid,
        map.mask.clone(),
        water::NO_DATA,
        water_colours(),
        args.cog_tile_size,
    )?;
    let prob = match &args.probability {
        Some(p) => Some(write_probability(p, &grid, &map.probability, args.cog_tile_size)?),
        None => None,
    };
    let polygons = match &args.polygons {
        Some(p) => {
            let polys = super::polygons::polygonize(&map.mask, w, h, |v| v == water::WATER);
            let fc = super::polygons::to_geojson(&polys, &grid, &json!({ "class": "water" }))?;
            write_json(p, &fc)?;
            Some(json!({ "path": p, "features": polys.len() }))
        }
        None => None,
    };
    let write_s = t.elapsed().as_secs_f64();
    let pixel_area = grid.pixel_metres().0 * grid.pixel_metres().1;
    tracing::info!(path = %out.display(), water = water_px, dry = dry_px, nodata = nodata_px, "water mask written");
    Ok(json!({
        "method": format!("{:?}", args.method).to_lowercase(),
        "members": members.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        "inputs": inputs.iter().map(|r| r.name()).collect::<Vec<_>>(),
        "width": w,
        "height": h,
        "epsg": grid.epsg,
        "pixels": { "water": water_px, "dry": dry_px, "nodata": nodata_px },
        "splits": map.splits.iter().map(split_json).collect::<Vec<_>>(),
        "out": out,
        "probability": prob,
        "polygons": polygons,
        "pixel_area_m2": pixel_area,
        "terramind": tm_seconds.map(|s| json!({ "seconds": s, "random_weights": tm_random })),
        "seconds": {
            "read": read_s,
            "compute": (read_total - read_s).max(0.0),
            "write": write_s,
            "total": start.elapsed().as_secs_f64(),
        },
    }))
}

/// The TerraMind member: S1 (VV, VH dB) and, for a 12-band --s2, S2L2A, through TiM's LULC or a
/// fine-tuned head. Returns the map and whether the weights were random.
async fn terramind_water(
    args: &WaterArgs,
    s1: Option<(&InputRaster, &(Option<Vec<f32>>, Option<Vec<f32>>))>,
    s2: Option<&InputRaster>,
    w: usize,
    h: usize,
) -> Result<(WaterMap, bool)> {
    use terrastream_model::Modality;
    use water::terramind::{TerraMindInput, TerraMindWater, TerraMindWaterConfig};
    let s1_bands = match s1 {
        Some((_, (Some(vv), Some(vh)))) => Some((vv, vh)),
        Some((r, _)) => bail!("--method terramind: {} has {} band(s); TerraMind's S1GRD needs VV and VH", r.href, r.bands),
        None => None,
    };
    let s2_bands = match s2 {
        Some(r) if r.bands == 12 => {
            let mut bands = Vec::with_capacity(12);
            for b in 1..=12 {
                bands.push(r.band(b).await?);
            }
            Some(bands)
        }
        Some(r) => {
            tracing::info!(href = %r.href, bands = r.bands, "terramind: S2 is not TerraMind's 12 S2L2A bands; S1 only");
            None
        }
        None => None,
    };
    let mut modalities = Vec::new();
    if s1_bands.is_some() {
        modalities.push(Modality::S1GRD);
    }
    if s2_bands.is_some() {
        modalities.push(Modality::S2L2A);
    }
    if modalities.is_empty() {
        bail!("--method terramind needs --s1 (VV, VH dB) and/or a 12-band S2L2A --s2");
    }
    let cfg = TerraMindWaterConfig {
        variant: args.variant.clone(),
        checkpoint: args.checkpoint.clone(),
        tokenizer: args.tokenizer.clone(),
        segmentation: args.segmentation.clone(),
        water_classes: args.water_classes.clone(),
        random_weights: args.random_weights,
        modalities,
        ..TerraMindWaterConfig::default()
    };
    let model = tokio::task::block_in_place(|| TerraMindWater::load(&cfg))?;
    let s2_refs: Option<Vec<&[f32]>> = s2_bands.as_ref().map(|b| b.iter().map(Vec::as_slice).collect());
    let input = TerraMindInput {
        width: w,
        height: h,
        s1grd: s1_bands.as_ref().map(|(vv, vh)| [vv.as_slice(), vh.as_slice()]),
        s2l2a: s2_refs.as_deref(),
    };
    let map = tokio::task::block_in_place(|| model.water(&input))?;
    Ok((map, model.is_random()))
}

/// VV and VH of `s1` in dB (bands from --vv-band / --vh-band; --s1-linear converted); either
/// may be absent, not both.
async fn read_s1_db(s1: &InputRaster, args: &WaterArgs) -> Result<(Option<Vec<f32>>, Option<Vec<f32>>)> {
    let band = |n: usize| if n == 0 || n > s1.bands { None } else { Some(n) };
    let (vv_band, vh_band) = (band(args.vv_band), if s1.bands < 2 { None } else { band(args.vh_band) });
    if vv_band.is_none() && vh_band.is_none() {
        bail!(
            "{}: neither --vv-band {} nor --vh-band {} is a band of it ({} bands)",
            s1.href,
            args.vv_band,
            args.vh_band,
            s1.bands
        );
    }
    let mut vv = match vv_band {
        Some(b) => Some(s1.band(b).await?),
        None => None,
    };
    let mut vh = match vh_band {
        Some(b) => Some(s1.band(b).await?),
        None => None,
    };
    if args.s1_linear {
        for v in vv.iter_mut().chain(vh.iter_mut()).flat_map(|b| b.iter_mut()) {
            *v = if *v > 0.0 { 10.0 * v.log10() } else { f32::NAN };
        }
    }
    Ok((vv, vh))
}

/// Writes `value` to `path` atomically (temporary file, then rename).
fn write_json(path: &std::path::Path, value: &serde_json::Value) -> Result<()> {
    let (pending, mut file) = terrastream_sinks::commit::PendingFile::create(path)?;
    if let Err(e) = serde_json::to_writer(std::io::BufWriter::new(&mut file), value) {
        pending.abort();
        return Err(e).with_context(|| format!("write {}", path.display()));
    }
    pending.commit(file)?;
    Ok(())
}

/// The 1-based bands of B03, B08, B11 in an S2 stack.
fn s2_bands(arg: Option<&str>, bands: usize) -> Result<[usize; 3]> {
    let b = match arg {
        Some(s) => {
            let v: Vec<usize> = s
                .split(',')
                .map(|p| p.trim().parse())
                .collect::<Result<_, _>>()
                .with_context(|| format!("--s2-bands {s:?}"))?;
            let [g, n, w] = v[..] else {
                bail!("--s2-bands {s:?}: expected GREEN,NIR,SWIR1 band numbers")
            };
            [g, n, w]
        }
        None => match bands {
            13 => [3, 8, 12],
            12 => [3, 8, 11],
            n => bail!("{n} bands: say which hold B03, B08, B11 with --s2-bands GREEN,NIR,SWIR1"),
        },
    };
    if let Some(bad) = b.iter().find(|&&i| i == 0 || i > bands) {
        bail!("--s2-bands: band {bad} does not exist (the file has {bands})");
    }
    Ok(b)
}

fn parse_threshold(s: &str) -> Result<Threshold> {
    if s.eq_ignore_ascii_case("otsu") {
        return Ok(Threshold::Otsu);
    }
    let v: f32 = s
        .parse()
        .with_context(|| format!("--s2-threshold {s:?}: `otsu` or a number"))?;
    Ok(Threshold::Fixed(v))
}

fn split_json(s: &Split) -> serde_json::Value {
    let f = |v: f32| {
        if v.is_finite() {
            json!(v)
        } else {
            serde_json::Value::Null
        }
    };
    json!({
        "feature": s.feature,
        "threshold": f(s.threshold),
        "source": format!("{:?}", s.source),
        "water_mean": f(s.water_mean),
        "dry_mean": f(s.dry_mean),
        "ashman_d": f(s.ashman_d),
        "water_fraction": f(s.water_fraction),
        "pixels": s.pixels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s2_band_defaults_and_errors() {
        assert_eq!(s2_bands(None, 13).expect("L1C"), [3, 8, 12]);
        assert_eq!(s2_bands(None, 12).expect("L2A"), [3, 8, 11]);
        assert_eq!(s2_bands(Some("1, 2, 3"), 4).expect("explicit"), [1, 2, 3]);
        assert!(s2_bands(None, 4).is_err());
        assert!(s2_bands(Some("1,2,9"), 4).is_err());
        assert!(s2_bands(Some("1,2"), 4).is_err());
        assert_eq!(parse_threshold("OTSU").expect("otsu"), Threshold::Otsu);
        assert_eq!(parse_threshold("-0.1").expect("fixed"), Threshold::Fixed(-0.1));
        assert!(parse_threshold("x").is_err());
    }
}
