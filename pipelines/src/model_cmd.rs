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
#[derive(Debug, Clone)]
pub struct EmbedArgs {
    /// `tiny`, `small`, `base` or `large`.
    pub variant: String,
    /// Checkpoint; `None` = random weights from `seed`.
    pub checkpoint: Option<PathBuf>,
    /// Seed of the random weights.
    pub seed: u64,
    /// Input safetensors, one tensor per modality name.
    pub input: PathBuf,
    /// Output safetensors.
    pub output: PathBuf,
    /// Input modalities in token order; default: the order of [`Modality`] (`S2L2A`, `S2L1C`,
    /// `RGB`, `S1GRD`, `S1RTC`, `DEM`, ...) restricted to the input's keys.
    pub modalities: Option<Vec<String>>,
    /// TiM targets (e.g. `LULC`); empty = no TiM.
    pub tim: Vec<String>,
    /// TiM sampling temperature (0 = argmax).
    pub temperature: f64,
    /// TiM nucleus threshold (0 = off).
    pub top_p: f64,
    /// TiM seed.
    pub tim_seed: u64,
    /// `mean` keeps `mean_last`/`tim_mean_last`; `none` writes per-layer outputs only.
    pub merge: String,
    /// `auto`, `cpu`, `cuda`, `cuda:N`.
    pub device: Device,
}

/// Runs `model embed`; returns the names written.
pub fn embed(args: &EmbedArgs) -> Result<Vec<String>> {
    if !matches!(args.merge.as_str(), "mean" | "none") {
        bail!("--merge {:?}: expected mean or none", args.merge);
    }
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
        inputs.push((*m, t.1.to_device(args.device)));
    }
    let tim: Vec<Modality> = args.tim.iter().map(|t| Modality::tim_target(t)).collect::<Result<_, _>>()?;
    let model = match &args.checkpoint {
        Some(p) => TerraMind::load_with_tim(&cfg, &order, &tim, p, args.device)
            .with_context(|| format!("--checkpoint {}", p.display()))?,
        None => {
            warn!(seed = args.seed, "no --checkpoint: TerraMind with RANDOM weights, for testing only");
            TerraMind::random_with_tim(&cfg, &order, &tim, args.seed, args.device)?
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
