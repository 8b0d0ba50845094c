//! `terrastream model embed`: TerraMind on tensors a user brings, in the parity fixtures'
//! format: per-modality `B x C x H x W` float32 inputs (already standardized) in, the
//! reference's tensor names out (`embed`, `layer_{i}`, `mean_last`, `tim_<MOD>_ids`,
//! `tim_<MOD>_logits_top5[_ids]`, `tim_layer_{i}`, `tim_mean_last`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use tch::{Device, Tensor};
use terrastream_model::{Config, Modality, TerraMind, TimConfig, read_tensors};
use tracing::warn;

/// Options of `model embed`.
#[derive(Debug, Clone, clap::Args)]
pub struct EmbedArgs {
    /// tiny, small, base or large.
    #[arg(long, default_value = "tiny")]
    pub variant: String,
    /// TerraMind_v1_<variant>.pt or .safetensors; without it: random weights (testing only).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Safetensors with one B x C x H x W float32 tensor per modality (S2L2A, S1GRD, ...),
    /// standardized.
    #[arg(long)]
    pub input: PathBuf,
    /// Output safetensors.
    #[arg(long)]
    pub output: PathBuf,
    /// Input modalities in token order (default: S2L2A, S2L1C, RGB, S1GRD, S1RTC, DEM order,
    /// restricted to the input's tensors).
    #[arg(long, value_delimiter = ',')]
    pub modalities: Option<Vec<String>>,
    /// Generate these modalities with TiM (e.g. LULC).
    #[arg(long, value_delimiter = ',')]
    pub tim: Vec<String>,
    /// TiM sampling temperature; 0 = argmax.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// TiM nucleus (top-p) threshold; 0 = off.
    #[arg(long, default_value_t = 0.8)]
    pub top_p: f64,
    /// TiM sampling seed.
    #[arg(long, default_value_t = 0)]
    pub tim_seed: u64,
    /// mean (also write mean_last) or none.
    #[arg(long, default_value = "mean")]
    pub merge: String,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
}

/// Runs `model embed`; returns the names written.
pub fn embed(args: &EmbedArgs) -> Result<Vec<String>> {
    if !matches!(args.merge.as_str(), "mean" | "none") {
        bail!("--merge {:?}: expected mean or none", args.merge);
    }
    let device: Device = terrastream_operators::DeviceChoice::parse(&args.device)?.device();
    let cfg = Config::variant(&args.variant)?;
    let tensors = read_tensors(&args.input).with_context(|| format!("--input {}", args.input.display()))?;
    let order: Vec<Modality> = match &args.modalities {
        Some(names) => names.iter().map(|n| Modality::from_name(n)).collect::<Result<_, _>>()?,
        None => {
            let mut m: Vec<Modality> =
                tensors.iter().map(|(k, _)| Modality::from_name(k)).collect::<Result<_, _>>().with_context(|| {
                    format!("--input {}: every tensor must be named after a modality", args.input.display())
                })?;
            m.sort();
            m
        }
    };
    let mut inputs: Vec<(Modality, Tensor)> = Vec::with_capacity(order.len());
    for m in &order {
        let t = tensors
            .iter()
            .find(|(k, _)| Modality::from_name(k).ok() == Some(*m))
            .with_context(|| format!("--input {}: no tensor {}", args.input.display(), m.name()))?;
        inputs.push((*m, t.1.to_device(device)));
    }
    let tim: Vec<Modality> = args.tim.iter().map(|t| Modality::tim_target(t)).collect::<Result<_, _>>()?;
    let model = match &args.checkpoint {
        Some(p) => TerraMind::load_with_tim(&cfg, &order, &tim, p, device)
            .with_context(|| format!("--checkpoint {}", p.display()))?,
        None => {
            warn!(seed = args.seed, "no --checkpoint: TerraMind with RANDOM weights, for testing only");
            TerraMind::random_with_tim(&cfg, &order, &tim, args.seed, device)?
        }
    };
    let tim_cfg = (!tim.is_empty()).then(|| TimConfig {
        targets: tim.clone(),
        temperature: args.temperature,
        top_p: args.top_p,
        seed: args.tim_seed,
        ..TimConfig::default()
    });
    let mut outputs = model.named_outputs(&inputs, tim_cfg.as_ref())?;
    if args.merge == "none" {
        outputs.retain(|(k, _)| !k.ends_with("mean_last"));
    }
    write(&args.output, &outputs)?;
    Ok(outputs.into_iter().map(|(k, _)| k).collect())
}

fn write(path: &Path, outputs: &[(String, Tensor)]) -> Result<()> {
    let named: Vec<(&str, Tensor)> = outputs.iter().map(|(k, t)| (k.as_str(), t.contiguous())).collect();
    Tensor::write_safetensors(&named, path).with_context(|| format!("--output {}", path.display()))
}
