//! The embed operator: TerraMind's encoder on a dedicated model thread.
//!
//! The thread owns the model and the device; batches reach it through a bounded channel and
//! answers come back on a oneshot, so the async runtime never blocks on `forward`, and up to
//! [`IN_FLIGHT`] batches are decoded and queued while the model works on the current one.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use tch::{Device, Tensor};
use terrastream_ingest::schema::{self, EMBEDDING};
use terrastream_model::{Config, Modality, Precision, TerraMind};
use tokio::sync::oneshot;
use tracing::{info, warn};

use crate::operator::{Operator, f32_list, f32_list_array, map_batches_buffered, require_f32_list};
use crate::{ChipStream, Error, Result};

/// Batches queued for or running on the model at once.
pub const IN_FLIGHT: usize = 2;

/// Where the model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// The first CUDA device when there is one, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// CUDA device `n`.
    Cuda(usize),
}

impl DeviceChoice {
    /// Parses `auto`, `cpu`, `cuda` or `cuda:N`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| Error::Option { key: "model.device".into(), reason: format!("{other:?}: expected auto, cpu, cuda or cuda:N") }),
        }
    }

    /// The tch device.
    pub fn device(self) -> Device {
        match self {
            Self::Auto => Device::cuda_if_available(),
            Self::Cpu => Device::Cpu,
            Self::Cuda(n) => Device::Cuda(n),
        }
    }
}

/// What model to run and how.
#[derive(Debug, Clone)]
pub struct EmbedConfig {
    /// TerraMind variant: `tiny`, `small`, `base` or `large`.
    pub variant: String,
    /// Checkpoint file (`TerraMind_v1_<variant>.pt` or safetensors). `None` = random weights.
    pub checkpoint: Option<PathBuf>,
    /// Seed of the random weights when there is no checkpoint.
    pub seed: u64,
    /// Chips per forward pass.
    pub batch_size: usize,
    /// Device.
    pub device: DeviceChoice,
    /// Pixel columns fed to the model, each named after its modality (`S2L2A`, ...).
    pub columns: Vec<String>,
    /// Weights and activations: float32 (the reference precision), bfloat16 or float16.
    /// bfloat16 is for GPUs and for CPUs with AMX or AVX512-BF16, where it is about 3x faster.
    pub precision: Precision,
}

/// Adds an [`EMBEDDING`] column: one vector per chip.
#[derive(Debug, Clone)]
pub struct Embed {
    worker: Arc<ModelThread>,
    columns: Vec<(String, Modality)>,
    batch_size: usize,
    dim: usize,
}

/// Work for the model thread: a closure that gets the model.
type Task = Box<dyn FnOnce(&TerraMind) + Send>;

/// A dedicated thread that owns a [`TerraMind`] and its device and runs closures on it, one at a
/// time, fed through a bounded channel of [`IN_FLIGHT`] tasks. Shared by the model operators
/// (`embed`, `tim`).
#[derive(Debug)]
pub(crate) struct ModelThread {
    tx: SyncSender<Task>,
    /// Nanoseconds the thread has spent running tasks: with wall time, the device's busy fraction.
    busy_ns: Arc<std::sync::atomic::AtomicU64>,
    _thread: JoinHandle<()>,
}

impl ModelThread {
    /// Starts the thread and loads the model there with `load`. Returns once `load` has
    /// finished, with its error (naming missing or mis-shaped keys) if it failed.
    pub(crate) fn spawn<L>(load: L) -> Result<Self>
    where
        L: FnOnce() -> terrastream_model::Result<TerraMind> + Send + 'static,
    {
        let (tx, rx) = sync_channel::<Task>(IN_FLIGHT);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<()>>();
        let busy_ns = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let busy = Arc::clone(&busy_ns);
        let thread = std::thread::Builder::new()
            .name("terrastream-model".into())
            .spawn(move || {
                let model = match load() {
                    Ok(m) => {
                        let _ = ready_tx.send(Ok(()));
                        m
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.into()));
                        return;
                    }
                };
                while let Ok(task) = rx.recv() {
                    let started = std::time::Instant::now();
                    task(&model);
                    let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    busy.fetch_add(ns, std::sync::atomic::Ordering::Relaxed);
                }
            })
            .map_err(|e| Error::Worker(e.to_string()))?;
        ready_rx.recv().map_err(|e| Error::Worker(e.to_string()))??;
        Ok(Self { tx, busy_ns, _thread: thread })
    }

    /// Time the model thread has spent running tasks so far.
    pub(crate) fn busy(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.busy_ns.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Runs `f` on the model thread and awaits its answer. Waiting for a free slot in the
    /// queue happens off the async runtime.
    pub(crate) async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&TerraMind) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let task: Task = Box::new(move |model| {
            let _ = reply.send(f(model));
        });
        let tx = self.tx.clone();
        // `send` blocks while IN_FLIGHT tasks wait: do that off the runtime.
        tokio::task::spawn_blocking(move || tx.send(task))
            .await
            .map_err(|e| Error::Worker(e.to_string()))?
            .map_err(|e| Error::Worker(e.to_string()))?;
        answer.await.map_err(|e| Error::Worker(e.to_string()))?
    }
}

/// Model inputs copied out of a record batch: per pixel column its modality, values and
/// `[B, C, H, W]` shape. Plain data, so it can cross to the model thread.
pub(crate) type ModelInputs = Vec<(Modality, Vec<f32>, [i64; 4])>;

/// Resolves pixel column names to modalities (each column is named after its modality).
pub(crate) fn model_columns(columns: &[String]) -> Result<Vec<(String, Modality)>> {
    columns.iter().map(|c| Ok((c.clone(), Modality::from_name(c)?))).collect()
}

/// Loads (checkpoint) or draws (seed) the model `config` describes, with the TiM decoder for
/// `tim` when it is not empty, and logs which.
pub(crate) fn load_model(config: &EmbedConfig, tim: &[Modality]) -> Result<ModelThread> {
    if config.batch_size == 0 {
        return Err(Error::Option { key: "model.batch_size".into(), reason: "must be > 0".into() });
    }
    let cfg = Config::variant(&config.variant)?;
    let modalities: Vec<Modality> = model_columns(&config.columns)?.into_iter().map(|(_, m)| m).collect();
    let device = config.device.device();
    let checkpoint = config.checkpoint.clone();
    let seed = config.seed;
    let precision = config.precision;
    let tim = tim.to_vec();
    let worker = ModelThread::spawn(move || {
        match &checkpoint {
            Some(path) => TerraMind::load_with_tim(&cfg, &modalities, &tim, path, device),
            None => TerraMind::random_with_tim(&cfg, &modalities, &tim, seed, device),
        }
        .map(|model| model.with_precision(precision))
    })?;
    let variant = &config.variant;
    match &config.checkpoint {
        Some(p) => info!(variant, checkpoint = %p.display(), ?device, "TerraMind loaded"),
        None => warn!(
            variant,
            seed = config.seed,
            "no checkpoint given: TerraMind runs with RANDOM weights; outputs are only good for testing the pipeline"
        ),
    }
    Ok(worker)
}

/// Copies the pixel columns of `batch` (all its rows) into [`ModelInputs`].
pub(crate) fn model_inputs(
    operator: &'static str,
    batch: &RecordBatch,
    columns: &[(String, Modality)],
) -> Result<ModelInputs> {
    let rows = batch.num_rows() as i64;
    columns
        .iter()
        .map(|(column, modality)| {
            let (values, size) = f32_list(operator, batch, column)?;
            let [c, h, w] = tensor_shape(operator, &batch.schema(), column, size)?;
            Ok((*modality, values.values().to_vec(), [rows, c, h, w]))
        })
        .collect()
}

/// The tensors of [`ModelInputs`] on `device`.
pub(crate) fn to_tensors(inputs: ModelInputs, device: Device) -> Vec<(Modality, Tensor)> {
    inputs
        .into_iter()
        .map(|(m, v, shape)| (m, Tensor::from_slice(&v).view(shape).to_device(device)))
        .collect()
}

/// A `[B, ...]` float output as a flat `Vec<f32>` on the CPU.
pub(crate) fn to_f32_vec(t: &Tensor) -> Result<Vec<f32>> {
    let t = t.to_device(Device::Cpu).to_kind(tch::Kind::Float).contiguous().view([-1]);
    Vec::<f32>::try_from(&t).map_err(|e| Error::Worker(e.to_string()))
}

impl Embed {
    /// Loads the model on its thread. Returns once the weights are loaded, with the loader's
    /// error (naming missing or mis-shaped keys) if they are not.
    pub fn new(config: &EmbedConfig) -> Result<Self> {
        let columns = model_columns(&config.columns)?;
        let worker = load_model(config, &[])?;
        let dim = Config::variant(&config.variant)?.dim as usize;
        Ok(Self { worker: Arc::new(worker), columns, batch_size: config.batch_size, dim })
    }

    /// Embedding size.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Time the model has spent in forward passes so far (all clones of this operator): over
    /// wall time, the device's busy fraction.
    pub fn busy(&self) -> std::time::Duration {
        self.worker.busy()
    }

    /// The output schema: the input's plus [`EMBEDDING`].
    pub fn output_schema(&self, input: &Schema) -> SchemaRef {
        let mut fields: Vec<_> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(schema::embedding_field(self.dim));
        Arc::new(Schema::new_with_metadata(fields, input.metadata().clone()))
    }

    async fn embed_batch(&self, schema: SchemaRef, batch: RecordBatch) -> Result<RecordBatch> {
        let n = batch.num_rows();
        let mut embeddings = Vec::with_capacity(n * self.dim);
        let mut start = 0;
        while start < n {
            let len = self.batch_size.min(n - start);
            let inputs = model_inputs(self.name(), &batch.slice(start, len), &self.columns)?;
            embeddings.extend(
                self.worker
                    .call(move |model| {
                        let tensors = to_tensors(inputs, model.device());
                        to_f32_vec(&model.embed_pooled(&tensors)?)
                    })
                    .await?,
            );
            start += len;
        }
        let mut columns = batch.columns().to_vec();
        let field = schema.field_with_name(EMBEDDING)?;
        let arrow_schema::DataType::FixedSizeList(item, _) = field.data_type() else {
            return Err(Error::Column { operator: self.name(), column: EMBEDDING.into(), reason: "not a list".into() });
        };
        columns.push(Arc::new(f32_list_array(item, self.dim, embeddings)?));
        Ok(RecordBatch::try_new(schema, columns)?)
    }
}

/// The `[C, H, W]` shape of the tensor column `column` of `schema`, checked against the
/// `size` values per row.
pub(crate) fn tensor_shape(operator: &'static str, schema: &Schema, column: &str, size: usize) -> Result<[i64; 3]> {
    let field = schema.field_with_name(column)?;
    match schema::tensor_shape(field).as_deref() {
        Some(&[c, h, w]) if c * h * w == size => Ok([c as i64, h as i64, w as i64]),
        other => Err(Error::Column {
            operator,
            column: column.into(),
            reason: format!("expected a [C, H, W] tensor column, shape metadata is {other:?}"),
        }),
    }
}

impl Operator for Embed {
    fn name(&self) -> &'static str {
        "embed"
    }

    fn apply(&self, input: ChipStream) -> Result<ChipStream> {
        let in_schema = input.schema();
        for (column, _) in &self.columns {
            require_f32_list(self.name(), &in_schema, column)?;
        }
        let schema = self.output_schema(&in_schema);
        let this = self.clone();
        let out_schema = Arc::clone(&schema);
        Ok(map_batches_buffered(input, schema, IN_FLIGHT, move |b| {
            let this = this.clone();
            let schema = Arc::clone(&out_schema);
            async move { this.embed_batch(schema, b).await }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_choices() {
        assert_eq!(DeviceChoice::parse("cuda:1").expect("cuda:1"), DeviceChoice::Cuda(1));
        assert_eq!(DeviceChoice::parse("cpu").expect("cpu"), DeviceChoice::Cpu);
        let err = DeviceChoice::parse("tpu").expect_err("tpu");
        assert!(err.to_string().contains("model.device"), "{err}");
    }
}
