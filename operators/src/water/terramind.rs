//! TerraMind water: the water class of the land cover (LULC) that TerraMind's
//! Thinking-in-Modalities generates from Sentinel-1/2 (zero-shot), or of a segmentation model
//! fine-tuned on water (e.g. on Sen1Floods11 with terratorch).
//!
//! - Zero-shot ([`Engine::Tim`]): TiM generates the LULC token ids of each 224 x 224 window from
//!   the S1GRD and/or S2L2A input; the LULC tokenizer's decoder turns them into per-pixel class
//!   probabilities. Water is [`LULC_WATER`]; no data and clouds ([`LULC_NO_DATA`],
//!   [`LULC_CLOUDS`]) are no data: the model says it cannot see the ground there.
//! - Fine-tuned ([`Engine::Segmenter`]): the checkpoint's own classes; by default class 1 is
//!   water (Sen1Floods11's labels: 0 dry, 1 water).
//!
//! Large inputs are cut into windows of the size TerraMind was trained on (224 px), the last one
//! in each direction shifted back to end at the edge; where windows overlap, each pixel takes
//! the window whose edge is farther away, so there is one decision per pixel and memory stays
//! O(pixels). Inputs smaller than a window are padded with the pretraining mean. A pixel with
//! no valid input band is no data.
//!
//! The maps mean something only with the official pretrained weights (or a real fine-tuned
//! checkpoint): random weights generate arbitrary land cover. Random weights are accepted only
//! when asked for explicitly ([`TerraMindWaterConfig::random_weights`]), for tests and smoke
//! runs.

use std::path::PathBuf;

use tch::{Device, Kind, Tensor};
use terrastream_model::{
    Config, LULC_CLASSES, Modality, Segmenter, TerraMind, TimConfig, Tokenizer, TokenizerConfig, TokenizerParts,
};

use super::error::{WaterError, WaterResult};
use super::{DRY, NO_DATA, WATER, WaterMap};
use crate::normalize::BandStats;

const METHOD: &str = "terramind";

/// Names of TerraMind's LULC classes, by class id (ESRI 10 m Land Use/Land Cover classes in
/// their order, as TerraMesh's LULC modality stores them).
pub const LULC_CLASS_NAMES: [&str; LULC_CLASSES as usize] = [
    "no data",
    "water",
    "trees",
    "flooded vegetation",
    "crops",
    "built area",
    "bare ground",
    "snow/ice",
    "clouds",
    "rangeland",
];
/// LULC class id of water.
pub const LULC_WATER: i64 = 1;
/// LULC class id of no data.
pub const LULC_NO_DATA: i64 = 0;
/// LULC class id of clouds.
pub const LULC_CLOUDS: i64 = 8;

/// Window size in pixels: TerraMind's pretraining chip size.
pub const WINDOW: usize = 224;

/// Where TerraMind's water comes from.
#[derive(Debug)]
pub enum Engine {
    /// Zero-shot: TiM-generated LULC, decoded by the LULC tokenizer.
    Tim {
        /// TerraMind with the TiM decoder for LULC.
        model: TerraMind,
        /// The LULC tokenizer with its decoder.
        tokenizer: Tokenizer,
    },
    /// A fine-tuned segmentation model.
    Segmenter(Segmenter),
}

/// What [`TerraMindWater::load`] loads.
#[derive(Debug, Clone)]
pub struct TerraMindWaterConfig {
    /// TerraMind variant: `tiny`, `small`, `base` or `large`.
    pub variant: String,
    /// The official pretrained weights, `TerraMind_v1_<variant>.pt` (TiM path).
    pub checkpoint: Option<PathBuf>,
    /// The LULC tokenizer, `TerraMind_Tokenizer_LULC.pt` (TiM path).
    pub tokenizer: Option<PathBuf>,
    /// A fine-tuned segmentation checkpoint (terratorch `FCNDecoder` + `SegmentationHead`);
    /// when given it is used instead of TiM.
    pub segmentation: Option<PathBuf>,
    /// Class ids counted as water; empty: [`LULC_WATER`] for TiM, 1 for a fine-tuned head.
    pub water_classes: Vec<i64>,
    /// Run with seeded random weights when no checkpoint is given. The map is then noise; this
    /// exists to exercise the path in tests and smoke runs.
    pub random_weights: bool,
    /// The inputs that will be given: `S1GRD` and/or `S2L2A`.
    pub modalities: Vec<Modality>,
    /// Windows per forward pass.
    pub batch_size: usize,
    /// Device; `None`: CUDA when available, else the CPU.
    pub device: Option<Device>,
}

impl Default for TerraMindWaterConfig {
    fn default() -> Self {
        TerraMindWaterConfig {
            variant: "base".into(),
            checkpoint: None,
            tokenizer: None,
            segmentation: None,
            water_classes: Vec::new(),
            random_weights: false,
            modalities: vec![Modality::S1GRD],
            batch_size: 4,
            device: None,
        }
    }
}

/// The inputs of the TerraMind method, row-major on one grid, NaN where missing.
#[derive(Debug, Clone, Copy)]
pub struct TerraMindInput<'a> {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Sentinel-1 GRD VV and VH backscatter, dB.
    pub s1grd: Option<[&'a [f32]; 2]>,
    /// Sentinel-2 L2A, TerraMind's 12 bands (B01 B02 B03 B04 B05 B06 B07 B08 B8A B09 B11 B12)
    /// as digital numbers (reflectance x 10000).
    pub s2l2a: Option<&'a [&'a [f32]]>,
}

/// The TerraMind water method, loaded once and run on any number of inputs.
#[derive(Debug)]
pub struct TerraMindWater {
    engine: Engine,
    modalities: Vec<Modality>,
    water_classes: Vec<i64>,
    nodata_classes: Vec<i64>,
    batch_size: usize,
    random: bool,
}

fn model_err(what: impl Into<String>) -> impl FnOnce(terrastream_model::Error) -> WaterError {
    let what = what.into();
    move |source| WaterError::Model { method: METHOD, what, source }
}

impl TerraMindWater {
    /// Loads the models `cfg` names. Without a checkpoint it fails, naming what to give, unless
    /// `random_weights` is set.
    pub fn load(cfg: &TerraMindWaterConfig) -> WaterResult<Self> {
        let device = cfg.device.unwrap_or_else(terrastream_model::default_device);
        let variant = Config::variant(&cfg.variant).map_err(model_err("variant"))?;
        if cfg.modalities.is_empty() || cfg.modalities.iter().any(|m| !matches!(m, Modality::S1GRD | Modality::S2L2A)) {
            return Err(WaterError::Option {
                method: METHOD,
                key: "modalities",
                reason: format!("{:?}: give S1GRD and/or S2L2A", cfg.modalities),
            });
        }
        if cfg.batch_size == 0 {
            return Err(WaterError::Option { method: METHOD, key: "batch_size", reason: "must be at least 1".into() });
        }
        let (engine, default_water, nodata) = if let Some(path) = &cfg.segmentation {
            let seg = Segmenter::load(&variant, &cfg.modalities, path, device)
                .map_err(model_err(format!("loading fine-tuned checkpoint {}", path.display())))?;
            (Engine::Segmenter(seg), 1, vec![])
        } else {
            let lulc = TokenizerConfig::v1(Modality::LULC).map_err(model_err("LULC tokenizer"))?;
            let (model, tokenizer) = match (&cfg.checkpoint, &cfg.tokenizer, cfg.random_weights) {
                (Some(ckpt), Some(tok), _) => (
                    TerraMind::load_with_tim(&variant, &cfg.modalities, &[Modality::LULC], ckpt, device)
                        .map_err(model_err(format!("loading {}", ckpt.display())))?,
                    Tokenizer::load(&lulc, TokenizerParts::Decoder, tok, device)
                        .map_err(model_err(format!("loading {}", tok.display())))?,
                ),
                (Some(ckpt), None, _) => {
                    return Err(WaterError::NotAvailable {
                        method: METHOD,
                        missing: format!(
                            "checkpoint {} given, but not the LULC tokenizer that turns TiM's LULC tokens into a class \
                             map: give TerraMind_Tokenizer_LULC.pt (--tokenizer)",
                            ckpt.display()
                        ),
                    });
                }
                (None, _, true) => {
                    tracing::warn!("terramind water with RANDOM weights: the map is noise (for tests only)");
                    // A reduced random decoder: its output is noise at any size.
                    let small = lulc.reduced(variant.dim, variant.num_heads);
                    (
                        TerraMind::random_with_tim(&variant, &cfg.modalities, &[Modality::LULC], 7, device)
                            .map_err(model_err("random TerraMind"))?,
                        Tokenizer::random(&small, TokenizerParts::Decoder, 7, device)
                            .map_err(model_err("random LULC tokenizer"))?,
                    )
                }
                (None, _, false) => {
                    return Err(WaterError::NotAvailable {
                        method: METHOD,
                        missing: "it needs the official TerraMind weights (TerraMind_v1_<variant>.pt, --checkpoint, \
                                  and TerraMind_Tokenizer_LULC.pt, --tokenizer) or a fine-tuned segmentation \
                                  checkpoint (--segmentation): with random weights the generated land cover is noise"
                            .into(),
                    });
                }
            };
            (Engine::Tim { model, tokenizer }, LULC_WATER, vec![LULC_NO_DATA, LULC_CLOUDS])
        };
        let water_classes = if cfg.water_classes.is_empty() { vec![default_water] } else { cfg.water_classes.clone() };
        Ok(TerraMindWater {
            engine,
            modalities: cfg.modalities.clone(),
            water_classes,
            nodata_classes: nodata,
            batch_size: cfg.batch_size,
            random: cfg.random_weights && cfg.checkpoint.is_none() && cfg.segmentation.is_none(),
        })
    }

    /// Whether the weights are random (the map is noise).
    pub fn is_random(&self) -> bool {
        self.random
    }

    /// The engine: TiM or a fine-tuned head.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The water map of `input`.
    pub fn water(&self, input: &TerraMindInput) -> WaterResult<WaterMap> {
        let (w, h) = (input.width, input.height);
        let bands = self.bands(input)?;
        let cols = windows(w);
        let rows = windows(h);
        let mut classes = vec![0i64; w * h];
        let mut p_water = vec![0f32; w * h];
        let cells: Vec<(usize, usize)> = rows.iter().flat_map(|&r| cols.iter().map(move |&c| (r.0, c.0))).collect();
        for batch in cells.chunks(self.batch_size) {
            let inputs = self.window_tensors(&bands, w, h, batch)?;
            let where_ = format!("windows at (row, column) {batch:?}");
            let probs = self.probabilities(&inputs).map_err(model_err(where_.clone()))?;
            let probs = probs.f_to_device(Device::Cpu).and_then(|p| p.f_contiguous()).map_err(|e| {
                model_err(where_.clone())(terrastream_model::Error::Torch(e))
            })?;
            let n_classes = probs.size()[1] as usize;
            let flat: Vec<f32> = Vec::<f32>::try_from(probs.f_view([-1]).map_err(|e| model_err(where_.clone())(e.into()))?)
                .map_err(|e| model_err(where_.clone())(e.into()))?;
            for (k, &(r0, c0)) in batch.iter().enumerate() {
                let (rspan, cspan) = (owned(&rows, r0), owned(&cols, c0));
                let base = k * n_classes * WINDOW * WINDOW;
                for y in rspan.clone() {
                    for x in cspan.clone() {
                        let off = (y - r0) * WINDOW + (x - c0);
                        let (mut best, mut best_p, mut water) = (0i64, f32::MIN, 0f32);
                        for c in 0..n_classes {
                            let p = flat[base + c * WINDOW * WINDOW + off];
                            if p > best_p {
                                (best, best_p) = (c as i64, p);
                            }
                            if self.water_classes.contains(&(c as i64)) {
                                water += p;
                            }
                        }
                        classes[y * w + x] = best;
                        p_water[y * w + x] = water;
                    }
                }
            }
        }
        let valid: Vec<bool> = (0..w * h).map(|i| bands.iter().any(|b| b[i].is_finite())).collect();
        Ok(water_from_classes(&classes, &p_water, &valid, w, h, &self.water_classes, &self.nodata_classes))
    }

    /// The input bands in model order (S1GRD VV VH, then S2L2A's 12), checked.
    fn bands<'a>(&self, input: &TerraMindInput<'a>) -> WaterResult<Vec<&'a [f32]>> {
        let n = input.width * input.height;
        if n == 0 {
            return Err(WaterError::NoInput { method: METHOD, reason: "empty grid".into() });
        }
        let mut out = Vec::new();
        for m in &self.modalities {
            match m {
                Modality::S1GRD => {
                    let Some(s1) = input.s1grd else {
                        return Err(WaterError::NoInput { method: METHOD, reason: "the model takes S1GRD (VV, VH dB)".into() });
                    };
                    for (b, name) in s1.iter().zip(["VV", "VH"]) {
                        super::check_len(METHOD, name, b.len(), input.width, input.height)?;
                        out.push(*b);
                    }
                }
                _ => {
                    let Some(s2) = input.s2l2a else {
                        return Err(WaterError::NoInput { method: METHOD, reason: "the model takes S2L2A (12 bands)".into() });
                    };
                    if s2.len() != 12 {
                        return Err(WaterError::NoInput {
                            method: METHOD,
                            reason: format!("S2L2A needs TerraMind's 12 bands, got {}", s2.len()),
                        });
                    }
                    for b in s2 {
                        super::check_len(METHOD, "S2L2A", b.len(), input.width, input.height)?;
                        out.push(*b);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Standardized `[B, C, 224, 224]` tensors per modality for the windows at `cells`
    /// (top-left row, column); NaN and padding become 0, the pretraining mean.
    fn window_tensors(
        &self,
        bands: &[&[f32]],
        w: usize,
        h: usize,
        cells: &[(usize, usize)],
    ) -> WaterResult<Vec<(Modality, Tensor)>> {
        let mut out = Vec::new();
        let mut first = 0;
        for m in &self.modalities {
            let stats = BandStats::terramind_v1(m.name()).ok_or_else(|| WaterError::NoInput {
                method: METHOD,
                reason: format!("no pretraining statistics for {}", m.name()),
            })?;
            let nb = stats.mean.len();
            let mut data = vec![0f32; cells.len() * nb * WINDOW * WINDOW];
            for (k, &(r0, c0)) in cells.iter().enumerate() {
                for (b, band) in bands[first..first + nb].iter().enumerate() {
                    let plane = &mut data[(k * nb + b) * WINDOW * WINDOW..][..WINDOW * WINDOW];
                    for y in 0..WINDOW.min(h - r0) {
                        for x in 0..WINDOW.min(w - c0) {
                            let v = band[(r0 + y) * w + c0 + x];
                            if v.is_finite() {
                                plane[y * WINDOW + x] = (v - stats.mean[b]) / stats.std[b];
                            }
                        }
                    }
                }
            }
            first += nb;
            let t = Tensor::from_slice(&data)
                .f_reshape([cells.len() as i64, nb as i64, WINDOW as i64, WINDOW as i64])
                .map_err(|e| model_err("input tensor")(e.into()))?;
            out.push((*m, t));
        }
        Ok(out)
    }

    /// Class probabilities `[B, C, 224, 224]`.
    fn probabilities(&self, inputs: &[(Modality, Tensor)]) -> terrastream_model::Result<Tensor> {
        let logits = match &self.engine {
            Engine::Tim { model, tokenizer } => {
                let out = model.tim(inputs, &TimConfig::argmax(&[Modality::LULC]))?;
                let ids = out.ids(Modality::LULC).ok_or(terrastream_model::Error::NotBuilt {
                    modality: "LULC".into(),
                    what: "a TiM decoder",
                })?;
                let g = (WINDOW / 16) as i64;
                tokenizer.decode_logits(&ids.f_reshape([-1, g, g])?)?
            }
            Engine::Segmenter(seg) => seg.logits(inputs)?,
        };
        Ok(logits.f_softmax(1, Kind::Float)?)
    }
}

/// Top-left offsets of the windows covering `len` pixels, each with the end of the span of
/// pixels it owns: consecutive windows split their overlap in the middle.
fn windows(len: usize) -> Vec<(usize, usize)> {
    let mut starts: Vec<usize> = (0..len.saturating_sub(WINDOW) + 1).step_by(WINDOW).collect();
    let last = len.saturating_sub(WINDOW);
    if starts.last() != Some(&last) {
        starts.push(last);
    }
    starts
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            let end = match starts.get(i + 1) {
                Some(&next) => (s + WINDOW + next) / 2,
                None => len,
            };
            (s, end)
        })
        .collect()
}

/// The pixels (along one axis) that the window starting at `start` owns.
fn owned(spans: &[(usize, usize)], start: usize) -> std::ops::Range<usize> {
    let i = spans.iter().position(|&(s, _)| s == start).unwrap_or(0);
    let from = if i == 0 { 0 } else { spans[i - 1].1 };
    from..spans[i].1
}

/// Water map from per-pixel class ids and water probabilities: a class of `water_classes` is
/// water, one of `nodata_classes` or an invalid pixel no data, anything else dry. The
/// probability is kept on the side of 0.5 the class decision puts it (the argmax class can be
/// water with P(water) under 0.5 when the other mass is spread over several classes).
pub fn water_from_classes(
    classes: &[i64],
    p_water: &[f32],
    valid: &[bool],
    width: usize,
    height: usize,
    water_classes: &[i64],
    nodata_classes: &[i64],
) -> WaterMap {
    let mut mask = Vec::with_capacity(classes.len());
    let mut probability = Vec::with_capacity(classes.len());
    for ((&c, &p), &ok) in classes.iter().zip(p_water).zip(valid) {
        let (m, p) = if !ok || nodata_classes.contains(&c) {
            (NO_DATA, f32::NAN)
        } else if water_classes.contains(&c) {
            (WATER, p.max(0.5 + f32::EPSILON))
        } else {
            (DRY, p.min(0.5))
        };
        mask.push(m);
        probability.push(p);
    }
    WaterMap { width, height, mask, probability, splits: vec![] }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_without_weights_naming_what_to_give() {
        let err = TerraMindWater::load(&TerraMindWaterConfig { variant: "tiny".into(), ..Default::default() })
            .expect_err("no checkpoint");
        assert!(err.to_string().contains("TerraMind_v1_<variant>.pt"), "{err}");
        let err = TerraMindWater::load(&TerraMindWaterConfig {
            variant: "tiny".into(),
            checkpoint: Some("w.pt".into()),
            ..Default::default()
        })
        .expect_err("no tokenizer");
        assert!(err.to_string().contains("w.pt") && err.to_string().contains("TerraMind_Tokenizer_LULC.pt"), "{err}");
        let err = TerraMindWater::load(&TerraMindWaterConfig {
            variant: "tiny".into(),
            segmentation: Some("/nonexistent/finetuned.pt".into()),
            ..Default::default()
        })
        .expect_err("missing file");
        assert!(err.to_string().contains("/nonexistent/finetuned.pt"), "{err}");
    }

    #[test]
    fn windows_cover_every_pixel_once() {
        for len in [1, 100, 224, 225, 448, 512, 1000] {
            let spans = windows(len);
            let mut seen = vec![0; len];
            for &(s, _) in &spans {
                let r = owned(&spans, s);
                assert!(r.start >= s && r.end <= s + WINDOW, "{len}: {r:?} outside the window at {s}");
                for i in r {
                    seen[i] += 1;
                }
            }
            assert!(seen.iter().all(|&n| n == 1), "{len}: {spans:?}");
        }
        assert_eq!(windows(512).iter().map(|w| w.0).collect::<Vec<_>>(), vec![0, 224, 288]);
    }

    #[test]
    fn classes_to_water() {
        let m = water_from_classes(
            &[1, 2, 0, 1, 8],
            &[0.9, 0.2, 0.1, 0.3, 0.0],
            &[true, true, true, false, true],
            5,
            1,
            &[LULC_WATER],
            &[LULC_NO_DATA, LULC_CLOUDS],
        );
        assert_eq!(m.mask, vec![WATER, DRY, NO_DATA, NO_DATA, NO_DATA]);
        assert!(m.probability[0] > 0.5 && m.probability[1] <= 0.5 && m.probability[2].is_nan());
        assert_eq!(LULC_CLASS_NAMES[LULC_WATER as usize], "water");
    }

    #[test]
    fn random_weights_run_every_window_and_keep_no_data() {
        let (w, h) = (300, 240);
        let vv: Vec<f32> = (0..w * h).map(|i| if i % w < 10 { f32::NAN } else { -10.0 - (i % 7) as f32 }).collect();
        let vh: Vec<f32> = (0..w * h).map(|i| if i % w < 10 { f32::NAN } else { -18.0 - (i % 5) as f32 }).collect();
        let tm = TerraMindWater::load(&TerraMindWaterConfig {
            variant: "tiny".into(),
            random_weights: true,
            device: Some(Device::Cpu),
            ..Default::default()
        })
        .expect("random model");
        assert!(tm.is_random());
        let input = TerraMindInput { width: w, height: h, s1grd: Some([&vv, &vh]), s2l2a: None };
        let a = tm.water(&input).expect("map");
        assert_eq!((a.width, a.height, a.mask.len()), (w, h, w * h));
        // The first 10 columns have no valid band.
        assert!((0..h).all(|y| (0..10).all(|x| a.mask[y * w + x] == NO_DATA)));
        assert!(a.probability.iter().zip(&a.mask).all(|(p, &m)| (m == NO_DATA) == p.is_nan()));
        // Deterministic: TiM at temperature 0.
        assert_eq!(tm.water(&input).expect("again").mask, a.mask);
        let err = tm.water(&TerraMindInput { s1grd: None, ..input }).expect_err("no S1");
        assert!(err.to_string().contains("S1GRD"), "{err}");
    }
}
