//! The TiM operator: TerraMind's Thinking-in-Modalities on a dedicated model thread.
//!
//! For every chip the encoder-decoder generates the tokens of each target modality (default
//! LULC); they are added as a `tim_<MOD>` column of token ids, an `arrow.fixed_shape_tensor` of
//! shape `[H/16, W/16]` (row-major over the token grid). Optionally the TiM-conditioned chip
//! embedding (the encoder re-run on the inputs plus the generated tokens, averaged over
//! modalities and positions) is added as [`EMBEDDING`].
//!
//! With [`TimOperatorConfig::lulc_map`], the LULC tokenizer's decoder also turns the generated
//! LULC ids into a class map, added as the [`LULC_MAP`] column (UInt8 `[H, W]`, classes
//! `0..10`, see `water::terramind::LULC_CLASS_NAMES`). With [`TimOperatorConfig::image_maps`],
//! the diffusion decoders of generated image modalities (a synthetic S1GRD where S1 is missing,
//! a DEM, ...) add them as float32 `[C, H, W]` columns named after the modality in lower case
//! (`s1grd`, `dem`, ...), in physical units.
//!
//! The model thread is the one [`Embed`](crate::Embed) uses: batches reach it through a
//! bounded channel, so the async runtime never blocks on the forward pass.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{FixedSizeListArray, Int32Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use terrastream_ingest::schema::{self, EMBEDDING};
use terrastream_model::{Config, Modality, TimConfig, Tokenizer, TokenizerConfig, TokenizerParts};

use crate::embed::{
    EmbedConfig, IN_FLIGHT, ModelThread, load_model, model_columns, model_inputs, tensor_shape, to_f32_vec,
    to_tensors,
};
use crate::normalize::BandStats;
use crate::operator::{Operator, f32_list_array, map_batches_buffered, require_f32_list};
use crate::{ChipStream, Error, Result};

/// Prefix of the generated token columns: `tim_LULC`, `tim_NDVI`, ...
pub const TIM_PREFIX: &str = "tim_";
/// The decoded land-cover class-map column.
pub const LULC_MAP: &str = "lulc";

/// Where a tokenizer decoder's weights come from.
#[derive(Debug, Clone, PartialEq)]
pub enum DecoderWeights {
    /// The official `TerraMind_Tokenizer_<M>.pt` (or safetensors with its keys).
    Checkpoint(std::path::PathBuf),
    /// A reduced decoder (LULC: the model's width, 2 blocks; images: a 32-channel U-Net with one
    /// block per level) with seeded random weights: the output is noise, for tests only.
    Random(u64),
}

impl DecoderWeights {
    /// The decoder of `modality`: the official one, or the reduced random one at the width of
    /// `model` (warning under the setting `key`).
    fn tokenizer(&self, modality: Modality, model: &Config, device: tch::Device, key: &str) -> Result<Tokenizer> {
        let cfg = TokenizerConfig::v1(modality)?;
        Ok(match self {
            DecoderWeights::Checkpoint(path) => Tokenizer::load(&cfg, TokenizerParts::Decoder, path, device)?,
            DecoderWeights::Random(seed) => {
                tracing::warn!(modality = cfg.modality.name(), "{key}: a decoder with RANDOM weights, for testing only");
                Tokenizer::random(&cfg.reduced(model.dim, model.num_heads), TokenizerParts::Decoder, *seed, device)?
            }
        })
    }
}

/// A generated image modality to decode into a column.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageMap {
    /// The modality: `S2L2A`, `S1GRD`, `S1RTC`, `DEM` or `NDVI`; it must be among the targets.
    pub modality: String,
    /// The diffusion decoder's weights.
    pub weights: DecoderWeights,
    /// DDIM steps (the reference's default is 50; each is one U-Net pass per chip).
    pub steps: usize,
    /// Seed of the start noise. A chip's image depends on it and on the chip's row within its
    /// forward batch of [`EmbedConfig::batch_size`] chips.
    pub seed: u64,
}

/// What the TiM operator runs and how.
#[derive(Debug, Clone)]
pub struct TimOperatorConfig {
    /// The model, its pixel input columns, batch size and device, as for `embed`.
    pub model: EmbedConfig,
    /// Modalities to generate (`LULC`, `NDVI`, `S2`, `S1GRD`, `S1RTC`, `DEM`), in order.
    pub targets: Vec<String>,
    /// Sampling temperature; 0 = argmax, deterministic.
    pub temperature: f64,
    /// Nucleus (top-p) threshold applied before the temperature; 0 = off.
    pub top_p: f64,
    /// Seed of the decoding order and the draws. With temperature > 0 a chip's ids depend on
    /// the seed and its row within its forward batch of [`EmbedConfig::batch_size`] chips.
    pub seed: u64,
    /// Also add the TiM-conditioned [`EMBEDDING`] column.
    pub embedding: bool,
    /// Also decode the generated LULC ids into the [`LULC_MAP`] class-map column (needs `LULC`
    /// among the targets).
    pub lulc_map: Option<DecoderWeights>,
    /// Also decode these generated image modalities, one column each.
    pub image_maps: Vec<ImageMap>,
}

impl TimOperatorConfig {
    /// Greedy (temperature 0) generation of `targets` with the model `model`, no embedding.
    pub fn argmax(model: EmbedConfig, targets: &[&str]) -> Self {
        TimOperatorConfig {
            model,
            targets: targets.iter().map(ToString::to_string).collect(),
            temperature: 0.0,
            top_p: 0.0,
            seed: 0,
            embedding: false,
            lulc_map: None,
            image_maps: Vec::new(),
        }
    }
}

/// Adds a `tim_<MOD>` token-id column per target and, optionally, the TiM-conditioned
/// [`EMBEDDING`].
#[derive(Debug, Clone)]
pub struct Tim {
    worker: Arc<ModelThread>,
    columns: Vec<(String, Modality)>,
    targets: Vec<Modality>,
    settings: TimConfig,
    batch_size: usize,
    dim: usize,
    embedding: bool,
    patch: usize,
    /// The LULC decoder; behind a mutex because tensors may move between threads but not be
    /// shared (only the model thread uses it).
    lulc: Option<Arc<std::sync::Mutex<Tokenizer>>>,
    /// The image decoders: column name, target index, decoder, steps, seed, band statistics.
    images: Vec<ImageColumn>,
}

/// One decoded image column.
#[derive(Debug, Clone)]
struct ImageColumn {
    name: String,
    target: usize,
    channels: usize,
    tokenizer: Arc<std::sync::Mutex<Tokenizer>>,
    steps: usize,
    seed: u64,
    stats: Option<BandStats>,
}

impl Tim {
    /// The `tim_<MOD>` token-id columns this operator adds, in target order.
    pub fn columns(&self) -> Vec<String> {
        self.targets.iter().map(|&t| Self::column_name(t)).collect()
    }

    /// Time the model has spent in forward passes so far (all clones of this operator).
    pub fn busy(&self) -> std::time::Duration {
        self.worker.busy()
    }

    /// Loads the model with the TiM decoder of every target on its thread. Fails on no or an
    /// unknown target, invalid sampling settings, or the loader's error (naming missing or
    /// mis-shaped keys).
    pub fn new(config: &TimOperatorConfig) -> Result<Self> {
        let columns = model_columns(&config.model.columns)?;
        if config.targets.is_empty() {
            return Err(Error::Option { key: "tim.targets".into(), reason: "no target modality".into() });
        }
        let mut targets: Vec<Modality> = Vec::new();
        for name in &config.targets {
            let t = Modality::tim_target(name)?;
            if !targets.contains(&t) {
                targets.push(t);
            }
        }
        if !(config.temperature.is_finite() && config.temperature >= 0.0) {
            return Err(Error::Option {
                key: "tim.temperature".into(),
                reason: format!("{}: must be finite and >= 0", config.temperature),
            });
        }
        if !(0.0..=1.0).contains(&config.top_p) {
            return Err(Error::Option { key: "tim.top_p".into(), reason: format!("{}: must be in [0, 1]", config.top_p) });
        }
        let cfg = Config::variant(&config.model.variant)?;
        let lulc = match &config.lulc_map {
            None => None,
            Some(_) if !targets.contains(&Modality::LULC) => {
                return Err(Error::Option {
                    key: "tim.lulc_map".into(),
                    reason: "decodes generated LULC: add LULC to tim.targets".into(),
                });
            }
            Some(weights) => {
                let tokenizer = weights.tokenizer(Modality::LULC, &cfg, config.model.device.device(), "tim.lulc_map")?;
                Some(Arc::new(std::sync::Mutex::new(tokenizer)))
            }
        };
        let images = config
            .image_maps
            .iter()
            .enumerate()
            .map(|(i, map)| image_column(i, map, &targets, &cfg, config.model.device.device()))
            .collect::<Result<Vec<_>>>()?;
        let worker = load_model(&config.model, &targets)?;
        let settings = TimConfig {
            targets: targets.clone(),
            temperature: config.temperature,
            top_p: config.top_p,
            seed: config.seed,
            ..TimConfig::default()
        };
        Ok(Self {
            worker: Arc::new(worker),
            columns,
            targets,
            settings,
            batch_size: config.model.batch_size,
            dim: cfg.dim as usize,
            embedding: config.embedding,
            patch: cfg.patch_size as usize,
            lulc,
            images,
        })
    }

    /// The generated modalities, in column order.
    pub fn targets(&self) -> &[Modality] {
        &self.targets
    }

    /// The name of the token column of `target`: `tim_LULC`, ...
    pub fn column_name(target: Modality) -> String {
        format!("{TIM_PREFIX}{}", target.tim_name())
    }

    /// The token grid `[H/16, W/16]` of the input pixel columns, checked to agree.
    fn grid(&self, input: &Schema) -> Result<[usize; 2]> {
        let mut grid = None;
        for (column, _) in &self.columns {
            let field = input.field_with_name(column)?;
            let size = match field.data_type() {
                DataType::FixedSizeList(_, n) => *n as usize,
                _ => 0,
            };
            let [_, h, w] = tensor_shape(self.name(), input, column, size)?;
            let (h, w) = (h as usize, w as usize);
            if h % self.patch != 0 || w % self.patch != 0 || h == 0 || w == 0 {
                return Err(Error::Column {
                    operator: self.name(),
                    column: column.clone(),
                    reason: format!("chip size {h}x{w} is not a positive multiple of {}", self.patch),
                });
            }
            let g = [h / self.patch, w / self.patch];
            match grid {
                None => grid = Some(g),
                Some(first) if first != g => {
                    return Err(Error::Column {
                        operator: self.name(),
                        column: column.clone(),
                        reason: format!("chip size {h}x{w} differs from the other pixel columns"),
                    });
                }
                Some(_) => {}
            }
        }
        grid.ok_or_else(|| Error::Option { key: "model.columns".into(), reason: "no pixel column".into() })
    }

    /// The output schema: the input's, a `tim_<MOD>` Int32 tensor column of shape
    /// `[H/16, W/16]` per target, and [`EMBEDDING`] when asked for.
    pub fn output_schema(&self, input: &Schema) -> Result<SchemaRef> {
        let [gh, gw] = self.grid(input)?;
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        let mut added: Vec<Field> = self.targets.iter().map(|&t| ids_field(&Self::column_name(t), gh, gw)).collect();
        if self.embedding {
            added.push(schema::embedding_field(self.dim));
        }
        if self.lulc.is_some() {
            let (h, w) = (gh * self.patch, gw * self.patch);
            let metadata = schema::tensor_field(LULC_MAP, &[h, w]).metadata().clone();
            added.push(Field::new(LULC_MAP, schema::fixed_list(DataType::UInt8, h * w), false).with_metadata(metadata));
        }
        for image in &self.images {
            let (h, w) = (gh * self.patch, gw * self.patch);
            added.push(schema::tensor_field(&image.name, &[image.channels, h, w]));
        }
        for field in added {
            if input.field_with_name(field.name()).is_ok() {
                return Err(Error::Column {
                    operator: self.name(),
                    column: field.name().clone(),
                    reason: "already in the input; tim would add it again".into(),
                });
            }
            fields.push(field);
        }
        Ok(Arc::new(Schema::new_with_metadata(fields, input.metadata().clone())))
    }

    async fn tim_batch(&self, schema: SchemaRef, batch: RecordBatch) -> Result<RecordBatch> {
        let n = batch.num_rows();
        let mut ids: Vec<Vec<i32>> = vec![Vec::new(); self.targets.len()];
        let mut embeddings = Vec::new();
        let mut maps: Vec<u8> = Vec::new();
        let mut images: Vec<Vec<f32>> = vec![Vec::new(); self.images.len()];
        let lulc_at = self.targets.iter().position(|t| *t == Modality::LULC);
        let [gh, gw] = self.grid(&batch.schema())?;
        let mut start = 0;
        while start < n {
            let len = self.batch_size.min(n - start);
            let inputs = model_inputs(self.name(), &batch.slice(start, len), &self.columns)?;
            let settings = self.settings.clone();
            let embedding = self.embedding;
            let decoder = self.lulc.clone().zip(lulc_at);
            let image_decoders = self.images.clone();
            let (piece_ids, piece_embedding, piece_maps, piece_images) = self
                .worker
                .call(move |model| {
                    let tensors = to_tensors(inputs, model.device());
                    let out = model.tim(&tensors, &settings)?;
                    let ids = out
                        .ids
                        .iter()
                        .map(|(_, t)| {
                            let t = t.to_kind(tch::Kind::Int).contiguous().view([-1]);
                            Vec::<i32>::try_from(&t).map_err(|e| Error::Worker(e.to_string()))
                        })
                        .collect::<Result<Vec<_>>>()?;
                    let embedding = if embedding { to_f32_vec(&out.embed_pooled()?)? } else { Vec::new() };
                    let maps = match decoder {
                        Some((tokenizer, at)) => {
                            let grid = out.ids[at].1.f_reshape([-1, gh as i64, gw as i64]).map_err(terrastream_model::Error::from)?;
                            let tokenizer = tokenizer.lock().map_err(|e| Error::Worker(e.to_string()))?;
                            let classes = tokenizer.decode_classes(&grid)?.contiguous().view([-1]);
                            Vec::<u8>::try_from(&classes).map_err(|e| Error::Worker(e.to_string()))?
                        }
                        None => Vec::new(),
                    };
                    let images = image_decoders
                        .iter()
                        .map(|image| {
                            let grid = out.ids[image.target].1.f_reshape([-1, gh as i64, gw as i64]).map_err(terrastream_model::Error::from)?;
                            let tokenizer = image.tokenizer.lock().map_err(|e| Error::Worker(e.to_string()))?;
                            let standardized = tokenizer.decode_image(&grid, image.steps, image.seed)?;
                            let physical = match &image.stats {
                                Some(stats) => stats.to_physical(&standardized)?,
                                None => standardized,
                            };
                            to_f32_vec(&physical)
                        })
                        .collect::<Result<Vec<_>>>()?;
                    Ok((ids, embedding, maps, images))
                })
                .await?;
            maps.extend(piece_maps);
            for (all, piece) in images.iter_mut().zip(piece_images) {
                all.extend(piece);
            }
            for (all, piece) in ids.iter_mut().zip(piece_ids) {
                all.extend(piece);
            }
            embeddings.extend(piece_embedding);
            start += len;
        }
        let mut columns = batch.columns().to_vec();
        for (&target, values) in self.targets.iter().zip(ids) {
            let name = Self::column_name(target);
            columns.push(Arc::new(i32_list_array(self.name(), &schema, &name, values)?));
        }
        if self.embedding {
            let field = schema.field_with_name(EMBEDDING)?;
            let DataType::FixedSizeList(item, _) = field.data_type() else {
                return Err(Error::Column { operator: self.name(), column: EMBEDDING.into(), reason: "not a list".into() });
            };
            columns.push(Arc::new(f32_list_array(item, self.dim, embeddings)?));
        }
        if self.lulc.is_some() {
            let field = schema.field_with_name(LULC_MAP)?;
            let DataType::FixedSizeList(item, size) = field.data_type() else {
                return Err(Error::Column { operator: self.name(), column: LULC_MAP.into(), reason: "not a list".into() });
            };
            let values = Arc::new(arrow_array::UInt8Array::from(maps));
            columns.push(Arc::new(FixedSizeListArray::try_new(Arc::clone(item), *size, values, None)?));
        }
        for (image, values) in self.images.iter().zip(images) {
            let field = schema.field_with_name(&image.name)?;
            let DataType::FixedSizeList(item, size) = field.data_type() else {
                return Err(Error::Column { operator: self.name(), column: image.name.clone(), reason: "not a list".into() });
            };
            columns.push(Arc::new(f32_list_array(item, *size as usize, values)?));
        }
        Ok(RecordBatch::try_new(schema, columns)?)
    }
}

/// The decoder of `tim.image_maps[index]`, checked against the targets.
fn image_column(index: usize, map: &ImageMap, targets: &[Modality], cfg: &Config, device: tch::Device) -> Result<ImageColumn> {
    let key = format!("tim.image_maps[{index}]");
    let option = |reason: String| Error::Option { key: key.clone(), reason };
    let target = Modality::tim_target(&map.modality)?;
    let at = targets
        .iter()
        .position(|t| *t == target)
        .ok_or_else(|| option(format!("decodes generated {}: add it to tim.targets", map.modality)))?;
    if target == Modality::LULC {
        return Err(option("LULC is a class map: use tim.lulc_map".into()));
    }
    if !(1..=1000).contains(&map.steps) {
        return Err(option(format!("steps {}: expected 1 to 1000", map.steps)));
    }
    let tokenizer = map.weights.tokenizer(target, cfg, device, &key)?;
    let (name, channels) = (tokenizer.config().modality.name(), tokenizer.config().channels as usize);
    Ok(ImageColumn {
        name: name.to_ascii_lowercase(),
        target: at,
        channels,
        tokenizer: Arc::new(std::sync::Mutex::new(tokenizer)),
        steps: map.steps,
        seed: map.seed,
        stats: BandStats::terramind_v1(name),
    })
}

/// An `arrow.fixed_shape_tensor` field of Int32 token ids with shape `[gh, gw]`.
fn ids_field(name: &str, gh: usize, gw: usize) -> Field {
    let metadata: HashMap<String, String> = schema::tensor_field(name, &[gh, gw]).metadata().clone();
    Field::new(name, schema::fixed_list(DataType::Int32, gh * gw), false).with_metadata(metadata)
}

/// The Int32 fixed-size-list array of the column `name` of `schema` holding `values`.
fn i32_list_array(operator: &'static str, schema: &Schema, name: &str, values: Vec<i32>) -> Result<FixedSizeListArray> {
    let field = schema.field_with_name(name)?;
    let DataType::FixedSizeList(item, size) = field.data_type() else {
        return Err(Error::Column { operator, column: name.into(), reason: "not a list".into() });
    };
    Ok(FixedSizeListArray::try_new(Arc::clone(item), *size, Arc::new(Int32Array::from(values)), None)?)
}

impl Operator for Tim {
    fn name(&self) -> &'static str {
        "tim"
    }

    fn apply(&self, input: ChipStream) -> Result<ChipStream> {
        let in_schema = input.schema();
        for (column, _) in &self.columns {
            require_f32_list(self.name(), &in_schema, column)?;
        }
        let schema = self.output_schema(&in_schema)?;
        let this = self.clone();
        let out_schema = Arc::clone(&schema);
        Ok(map_batches_buffered(input, schema, IN_FLIGHT, move |b| {
            let this = this.clone();
            let schema = Arc::clone(&out_schema);
            async move { this.tim_batch(schema, b).await }
        }))
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use terrastream_ingest::ChipStreamAdapter;
    use arrow_array::{
        Array, ArrayRef, BinaryArray, Float32Array, Float64Array, Int32Array, StringArray, StructArray,
        TimestampMicrosecondArray,
    };
    use arrow_schema::Fields;
    use futures::TryStreamExt;
    use terrastream_ingest::schema::{PixelColumn, chip_schema};

    use super::*;
    use crate::DeviceChoice;

    const ROWS: usize = 3;

    /// A chip batch of `ROWS` chips of 32x32 S2L2A (12 bands) and S1GRD (2 bands) noise.
    fn batch() -> RecordBatch {
        let pixels = [
            PixelColumn { name: "S2L2A".into(), channels: 12, height: 32, width: 32 },
            PixelColumn { name: "S1GRD".into(), channels: 2, height: 32, width: 32 },
        ];
        let schema = chip_schema(&pixels);
        let mut state = 7u64;
        let mut noise = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
                })
                .collect()
        };
        let list = |field: &Field, values: Vec<f64>| -> ArrayRef {
            let DataType::FixedSizeList(item, n) = field.data_type() else { panic!("{field:?}") };
            Arc::new(FixedSizeListArray::new(Arc::clone(item), *n, Arc::new(Float64Array::from(values)), None))
        };
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| -> ArrayRef {
                match f.name().as_str() {
                    "scene_id" | "collection" | "grid_id" => Arc::new(StringArray::from(vec!["s"; ROWS])),
                    "datetime" => Arc::new(TimestampMicrosecondArray::from(vec![0; ROWS]).with_timezone("UTC")),
                    "chip_row" | "chip_col" | "crs" => Arc::new(Int32Array::from(vec![0; ROWS])),
                    "transform" => list(f, vec![0.0; 6 * ROWS]),
                    "geometry" => Arc::new(BinaryArray::from(vec![&b""[..]; ROWS])),
                    "bbox" => {
                        let DataType::Struct(fields) = f.data_type() else { panic!("bbox") };
                        let fields: Fields = fields.clone();
                        let arrays: Vec<ArrayRef> =
                            fields.iter().map(|_| Arc::new(Float64Array::from(vec![0.0; ROWS])) as ArrayRef).collect();
                        Arc::new(StructArray::new(fields, arrays, None))
                    }
                    "valid_fraction" | "cloud_fraction" => Arc::new(Float32Array::from(vec![1.0; ROWS])),
                    name => {
                        let DataType::FixedSizeList(item, n) = f.data_type() else { panic!("{name}") };
                        let values = noise(*n as usize * ROWS);
                        Arc::new(FixedSizeListArray::new(Arc::clone(item), *n, Arc::new(Float32Array::from(values)), None))
                    }
                }
            })
            .collect();
        RecordBatch::try_new(schema, columns).expect("chip batch")
    }

    fn config(batch_size: usize, temperature: f64, embedding: bool) -> TimOperatorConfig {
        TimOperatorConfig {
            model: EmbedConfig {
                variant: "tiny".into(),
                checkpoint: None,
                seed: 3,
                batch_size,
                device: DeviceChoice::Cpu,
                columns: vec!["S2L2A".into(), "S1GRD".into()],
                precision: terrastream_model::Precision::F32,
            },
            targets: vec!["LULC".into()],
            temperature,
            top_p: 0.0,
            seed: 11,
            embedding,
            lulc_map: None,
            image_maps: Vec::new(),
        }
    }

    fn run(op: &Tim, batch: RecordBatch) -> RecordBatch {
        let schema = batch.schema();
        let stream: ChipStream = ChipStreamAdapter::new(schema, futures::stream::iter([Ok::<_, datafusion_common::DataFusionError>(batch)]).boxed()).boxed();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
        let out: Vec<RecordBatch> =
            rt.block_on(async { op.apply(stream).expect("apply").try_collect().await }).expect("run");
        assert_eq!(out.len(), 1);
        out.into_iter().next().expect("one batch")
    }

    fn ids(batch: &RecordBatch) -> Vec<i32> {
        let list = batch
            .column_by_name("tim_LULC")
            .expect("tim_LULC")
            .as_any()
            .downcast_ref::<FixedSizeListArray>()
            .expect("list");
        list.values().as_any().downcast_ref::<Int32Array>().expect("int32").values().to_vec()
    }

    #[test]
    fn tim_adds_token_ids_of_the_grid_shape() {
        let op = Tim::new(&config(2, 0.0, true)).expect("tim");
        let out = run(&op, batch());
        let field = out.schema().field_with_name("tim_LULC").expect("field").clone();
        assert_eq!(schema::tensor_shape(&field), Some(vec![2, 2]));
        assert_eq!(field.data_type(), &schema::fixed_list(DataType::Int32, 4));
        assert_eq!(out.num_rows(), ROWS);
        let first = ids(&out);
        assert_eq!(first.len(), ROWS * 4);
        let vocab = Modality::LULC.vocab_size().expect("LULC vocabulary") as i32;
        assert!(first.iter().all(|&i| (0..vocab).contains(&i)), "{first:?}");
        let embedding = out.column_by_name(EMBEDDING).expect("embedding");
        assert_eq!(embedding.len(), ROWS);
        assert_eq!(embedding.data_type(), &schema::fixed_list(DataType::Float32, 192));

        // Temperature 0: the same ids again, whatever the batch size.
        let again = Tim::new(&config(3, 0.0, false)).expect("tim");
        let out2 = run(&again, batch());
        assert_eq!(ids(&out2), first);
        assert!(out2.column_by_name(EMBEDDING).is_none());
    }

    #[test]
    fn lulc_map_is_the_decoded_tim_lulc() {
        let mut c = config(2, 0.0, true);
        c.lulc_map = Some(DecoderWeights::Random(5));
        let out = run(&Tim::new(&c).expect("tim"), batch());
        let field = out.schema().field_with_name(LULC_MAP).expect("lulc column").clone();
        assert_eq!(schema::tensor_shape(&field), Some(vec![32, 32]));
        let list = out.column_by_name(LULC_MAP).expect("lulc").as_any().downcast_ref::<FixedSizeListArray>().expect("list");
        let map = list.values().as_any().downcast_ref::<arrow_array::UInt8Array>().expect("uint8").values().to_vec();
        assert_eq!(map.len(), ROWS * 32 * 32);
        assert!(map.iter().all(|&c| c < 10));
        // The same decoder, applied to the ids column, gives the same maps.
        let ids: Vec<i64> = ids(&out).iter().map(|&i| i64::from(i)).collect();
        let cfg = TokenizerConfig::v1(Modality::LULC).expect("lulc").with_size(192, 2, 3);
        let tok = Tokenizer::random(&cfg, TokenizerParts::Decoder, 5, tch::Device::Cpu).expect("decoder");
        let expect = tok.decode_classes(&tch::Tensor::from_slice(&ids).reshape([ROWS as i64, 2, 2])).expect("decode");
        assert_eq!(Vec::<u8>::try_from(&expect.view([-1])).expect("u8"), map);
        // Without LULC among the targets there is nothing to decode.
        c.targets = vec!["NDVI".into()];
        let err = Tim::new(&c).expect_err("no LULC target");
        assert!(err.to_string().contains("tim.lulc_map"), "{err}");
    }

    #[test]
    fn image_maps_are_the_decoded_tim_images_in_physical_units() {
        let mut c = config(2, 0.0, false);
        c.targets = vec!["LULC".into(), "DEM".into()];
        c.image_maps = vec![ImageMap { modality: "DEM".into(), weights: DecoderWeights::Random(4), steps: 2, seed: 9 }];
        let out = run(&Tim::new(&c).expect("tim"), batch());
        let field = out.schema().field_with_name("dem").expect("dem column").clone();
        assert_eq!(schema::tensor_shape(&field), Some(vec![1, 32, 32]));
        let (dem, _) = crate::operator::f32_list("test", &out, "dem").expect("f32 list");
        let dem = dem.values().to_vec();
        assert_eq!(dem.len(), ROWS * 32 * 32);
        // The same decoder on the tim_DEM ids, rows in forward batches of 2, back to metres.
        let list = out.column_by_name("tim_DEM").expect("ids").as_any().downcast_ref::<FixedSizeListArray>().expect("list");
        let ids: Vec<i64> = list.values().as_any().downcast_ref::<Int32Array>().expect("i32").values().iter().map(|&i| i64::from(i)).collect();
        let small = terrastream_model::UNetConfig { model_channels: 32, num_res_blocks: 1, ..terrastream_model::UNetConfig::v1() };
        let cfg = TokenizerConfig::v1(Modality::DEM).expect("dem").with_size(192, 2, 3).with_unet(small);
        let tok = Tokenizer::random(&cfg, TokenizerParts::Decoder, 4, tch::Device::Cpu).expect("decoder");
        let ids = tch::Tensor::from_slice(&ids).reshape([ROWS as i64, 2, 2]);
        let first = tok.decode_image(&ids.narrow(0, 0, 2), 2, 9).expect("decode");
        let last = tok.decode_image(&ids.narrow(0, 2, 1), 2, 9).expect("decode");
        let metres = tch::Tensor::cat(&[first, last], 0) * 951.272 + 670.665;
        let expect = Vec::<f32>::try_from(&metres.view([-1])).expect("f32");
        let worst = dem.iter().zip(&expect).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-2, "max |diff| {worst} m");
        // Within one std of the mean: the last step returns the clamped prediction.
        assert!(dem.iter().all(|v| (670.665 - 951.3..=670.665 + 951.3).contains(v)));
        // Named errors: a modality not generated, LULC, zero steps.
        for (modality, steps, expect) in [("S1GRD", 2, "add it to tim.targets"), ("LULC", 2, "tim.lulc_map"), ("DEM", 0, "steps 0")] {
            c.image_maps = vec![ImageMap { modality: modality.into(), weights: DecoderWeights::Random(4), steps, seed: 9 }];
            let err = Tim::new(&c).expect_err("bad image map");
            assert!(err.to_string().contains("tim.image_maps[0]") && err.to_string().contains(expect), "{err}");
        }
    }

    #[test]
    fn bf16_embeddings_point_the_same_way_as_float32() {
        let embeddings = |precision| {
            let mut c = config(3, 0.0, true);
            c.model.precision = precision;
            let out = run(&Tim::new(&c).expect("tim"), batch());
            let (values, _) = crate::operator::f32_list("test", &out, EMBEDDING).expect("embedding");
            values.values().to_vec()
        };
        let (a, b) = (embeddings(terrastream_model::Precision::F32), embeddings(terrastream_model::Precision::Bf16));
        assert_eq!(a.len(), b.len());
        assert_ne!(a, b, "bf16 ran in float32");
        for (x, y) in a.chunks(192).zip(b.chunks(192)) {
            let dot: f32 = x.iter().zip(y).map(|(p, q)| p * q).sum();
            let norm = |v: &[f32]| v.iter().map(|p| p * p).sum::<f32>().sqrt();
            let cosine = dot / (norm(x) * norm(y));
            assert!(cosine > 0.98, "cosine {cosine}");
        }
    }

    #[test]
    fn sampling_is_seeded() {
        let op = Tim::new(&config(3, 1.0, false)).expect("tim");
        let a = ids(&run(&op, batch()));
        let b = ids(&run(&op, batch()));
        assert_eq!(a, b);
    }

    #[test]
    fn bad_settings_are_named() {
        let mut c = config(1, 0.0, false);
        c.targets.clear();
        let err = Tim::new(&c).expect_err("no target");
        assert!(err.to_string().contains("tim.targets"), "{err}");
        let mut c = config(1, 0.0, false);
        c.top_p = 1.5;
        let err = Tim::new(&c).expect_err("top_p > 1");
        assert!(err.to_string().contains("tim.top_p"), "{err}");
        let err = Tim::new(&config(1, -1.0, false)).expect_err("negative temperature");
        assert!(err.to_string().contains("tim.temperature"), "{err}");
        let mut c = config(1, 0.0, false);
        c.targets = vec!["CLOUDS".into()];
        assert!(Tim::new(&c).is_err());
    }

    #[test]
    fn existing_embedding_column_is_refused() {
        let op = Tim::new(&config(1, 0.0, true)).expect("tim");
        let input = batch().schema();
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(schema::embedding_field(192));
        let err = op.output_schema(&Schema::new(fields)).expect_err("duplicate");
        assert!(err.to_string().contains(EMBEDDING), "{err}");
    }
}
