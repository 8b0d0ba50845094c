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
use futures::StreamExt;
use tch::{Device, Tensor};
use terrastream_ingest::ChipStreamAdapter;
use terrastream_ingest::schema::{self, EMBEDDING};
use terrastream_model::{Config, Modality, TerraMind};
use tokio::sync::oneshot;
use tracing::{info, warn};

use crate::operator::{Operator, f32_list, f32_list_array, require_f32_list};
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
}

type Job = (Vec<(Modality, Vec<f32>, [i64; 4])>, oneshot::Sender<Result<Vec<f32>>>);

/// Adds an [`EMBEDDING`] column: one vector per chip.
#[derive(Debug, Clone)]
pub struct Embed {
    inner: Arc<Worker>,
    columns: Vec<(String, Modality)>,
    batch_size: usize,
    dim: usize,
}

#[derive(Debug)]
struct Worker {
    tx: SyncSender<Job>,
    _thread: JoinHandle<()>,
}

impl Embed {
    /// Loads the model on its thread. Returns once the weights are loaded, with the loader's
    /// error (naming missing or mis-shaped keys) if they are not.
    pub fn new(config: &EmbedConfig) -> Result<Self> {
        if config.batch_size == 0 {
            return Err(Error::Option { key: "model.batch_size".into(), reason: "must be > 0".into() });
        }
        let cfg = Config::variant(&config.variant)?;
        let columns = config
            .columns
            .iter()
            .map(|c| Ok((c.clone(), Modality::from_name(c)?)))
            .collect::<Result<Vec<_>>>()?;
        let modalities: Vec<Modality> = columns.iter().map(|(_, m)| *m).collect();
        let device = config.device.device();
        let (tx, rx) = sync_channel::<Job>(IN_FLIGHT);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<()>>();
        let checkpoint = config.checkpoint.clone();
        let seed = config.seed;
        let variant = config.variant.clone();
        let thread = std::thread::Builder::new()
            .name("terrastream-model".into())
            .spawn(move || {
                let model = match &checkpoint {
                    Some(path) => TerraMind::load(&cfg, &modalities, path, device),
                    None => TerraMind::random(&cfg, &modalities, seed, device),
                };
                let model = match model {
                    Ok(m) => {
                        let _ = ready_tx.send(Ok(()));
                        m
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.into()));
                        return;
                    }
                };
                while let Ok((inputs, reply)) = rx.recv() {
                    let _ = reply.send(run(&model, inputs, device));
                }
            })
            .map_err(|e| Error::Worker(e.to_string()))?;
        ready_rx.recv().map_err(|e| Error::Worker(e.to_string()))??;
        match &config.checkpoint {
            Some(p) => info!(variant, checkpoint = %p.display(), ?device, "TerraMind loaded"),
            None => warn!(
                variant,
                seed = config.seed,
                "no checkpoint given: TerraMind runs with RANDOM weights; embeddings are only good for testing the pipeline"
            ),
        }
        let dim = Config::variant(&config.variant)?.dim as usize;
        Ok(Self { inner: Arc::new(Worker { tx, _thread: thread }), columns, batch_size: config.batch_size, dim })
    }

    /// Embedding size.
    pub fn dim(&self) -> usize {
        self.dim
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
            let slice = batch.slice(start, len);
            let mut inputs = Vec::with_capacity(self.columns.len());
            for (column, modality) in &self.columns {
                let (values, size) = f32_list(self.name(), &slice, column)?;
                let shape = tensor_shape(&slice, column, size)?;
                inputs.push((*modality, values.values().to_vec(), [len as i64, shape[0], shape[1], shape[2]]));
            }
            let (reply, answer) = oneshot::channel();
            let tx = self.inner.tx.clone();
            // `send` blocks while IN_FLIGHT jobs wait: do that off the runtime.
            tokio::task::spawn_blocking(move || tx.send((inputs, reply)))
                .await
                .map_err(|e| Error::Worker(e.to_string()))?
                .map_err(|e| Error::Worker(e.to_string()))?;
            embeddings.extend(answer.await.map_err(|e| Error::Worker(e.to_string()))??);
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

fn tensor_shape(batch: &RecordBatch, column: &str, size: usize) -> Result<[i64; 3]> {
    let schema = batch.schema();
    let field = schema.field_with_name(column)?;
    match schema::tensor_shape(field).as_deref() {
        Some(&[c, h, w]) if c * h * w == size => Ok([c as i64, h as i64, w as i64]),
        other => Err(Error::Column {
            operator: "embed",
            column: column.into(),
            reason: format!("expected a [C, H, W] tensor column, shape metadata is {other:?}"),
        }),
    }
}

fn run(model: &TerraMind, inputs: Vec<(Modality, Vec<f32>, [i64; 4])>, device: Device) -> Result<Vec<f32>> {
    let tensors: Vec<(Modality, Tensor)> = inputs
        .into_iter()
        .map(|(m, v, shape)| (m, Tensor::from_slice(&v).view(shape).to_device(device)))
        .collect();
    let out = model.embed_pooled(&tensors)?;
    let out = out.to_device(Device::Cpu).to_kind(tch::Kind::Float).contiguous().view([-1]);
    Vec::<f32>::try_from(&out).map_err(|e| Error::Worker(e.to_string()))
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
        let out = input
            .map(move |b| {
                let this = this.clone();
                let schema = Arc::clone(&out_schema);
                async move { this.embed_batch(schema, b?).await.map_err(Into::into) }
            })
            .buffered(IN_FLIGHT);
        Ok(ChipStreamAdapter::new(schema, out.boxed()).boxed())
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
