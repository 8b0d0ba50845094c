//! `terrastream model embed` and `model generate`: TerraMind on tensors a user brings, in the
//! parity fixtures' format: per-modality `B x C x H x W` float32 inputs (already standardized)
//! in. `embed` writes the reference's tensor names (`embed`, `layer_{i}`, `mean_last`,
//! `tim_<MOD>_ids`, `tim_<MOD>_logits_top5[_ids]`, `tim_layer_{i}`, `tim_mean_last`);
//! `generate` writes TiM's ids of each target and the decoded map: the LULC class map, or an
//! image (S2L2A, S1GRD, S1RTC, DEM, NDVI) from the target's diffusion decoder, in physical units.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use tch::{Device, Tensor};
use terrastream_model::{
    Config, Modality, TerraMind, TimConfig, Tokenizer, TokenizerConfig, TokenizerParts, read_tensors,
};
use terrastream_operators::BandStats;
use tracing::warn;

/// What `model embed` and `model generate` share: the model, the inputs, the output, TiM's
/// sampling and the device.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelArgs {
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
    /// TiM sampling temperature; 0 = argmax.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// TiM nucleus (top-p) threshold; 0 = off.
    #[arg(long, default_value_t = 0.8)]
    pub top_p: f64,
    /// TiM sampling seed.
    #[arg(long, default_value_t = 0)]
    pub tim_seed: u64,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
}

impl ModelArgs {
    /// TiM settings for `targets`.
    fn tim(&self, targets: &[Modality]) -> TimConfig {
        TimConfig {
            targets: targets.to_vec(),
            temperature: self.temperature,
            top_p: self.top_p,
            seed: self.tim_seed,
            ..TimConfig::default()
        }
    }

    /// The device, the configuration, the inputs in token order and the model with TiM
    /// decoders for `tim`.
    fn load(&self, tim: &[Modality]) -> Result<(Config, Vec<(Modality, Tensor)>, TerraMind)> {
        let device: Device = terrastream_operators::DeviceChoice::parse(&self.device)?.device();
        let cfg = Config::variant(&self.variant)?;
        let (order, inputs) = model_inputs(&self.input, self.modalities.as_deref(), device)?;
        let model = load_model(&cfg, &order, tim, self.checkpoint.as_deref(), self.seed, device)?;
        Ok((cfg, inputs, model))
    }
}

/// Options of `model embed`.
#[derive(Debug, Clone, clap::Args)]
pub struct EmbedArgs {
    /// Model, inputs, output, sampling and device.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Generate these modalities with TiM (e.g. LULC).
    #[arg(long, value_delimiter = ',')]
    pub tim: Vec<String>,
    /// mean (also write mean_last) or none.
    #[arg(long, default_value = "mean")]
    pub merge: String,
}

/// Runs `model embed`; returns the names written.
pub fn embed(args: &EmbedArgs) -> Result<Vec<String>> {
    if !matches!(args.merge.as_str(), "mean" | "none") {
        bail!("--merge {:?}: expected mean or none", args.merge);
    }
    let tim: Vec<Modality> = args.tim.iter().map(|t| Modality::tim_target(t)).collect::<Result<_, _>>()?;
    let (_, inputs, model) = args.model.load(&tim)?;
    let tim_cfg = (!tim.is_empty()).then(|| args.model.tim(&tim));
    let mut outputs = model.named_outputs(&inputs, tim_cfg.as_ref())?;
    if args.merge == "none" {
        outputs.retain(|(k, _)| !k.ends_with("mean_last"));
    }
    write(&args.model.output, &outputs)?;
    Ok(outputs.into_iter().map(|(k, _)| k).collect())
}

/// The input tensors, one per modality, in token order, on `device`.
fn model_inputs(
    input: &Path,
    modalities: Option<&[String]>,
    device: Device,
) -> Result<(Vec<Modality>, Vec<(Modality, Tensor)>)> {
    let tensors = read_tensors(input).with_context(|| format!("--input {}", input.display()))?;
    let order: Vec<Modality> = match modalities {
        Some(names) => names.iter().map(|n| Modality::from_name(n)).collect::<Result<_, _>>()?,
        None => {
            let mut m: Vec<Modality> =
                tensors.iter().map(|(k, _)| Modality::from_name(k)).collect::<Result<_, _>>().with_context(|| {
                    format!("--input {}: every tensor must be named after a modality", input.display())
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
            .with_context(|| format!("--input {}: no tensor {}", input.display(), m.name()))?;
        inputs.push((*m, t.1.to_device(device)));
    }
    Ok((order, inputs))
}

/// TerraMind from `checkpoint`, or with random weights (and a warning) without one.
fn load_model(
    cfg: &Config,
    order: &[Modality],
    tim: &[Modality],
    checkpoint: Option<&Path>,
    seed: u64,
    device: Device,
) -> Result<TerraMind> {
    Ok(match checkpoint {
        Some(p) => TerraMind::load_with_tim(cfg, order, tim, p, device)
            .with_context(|| format!("--checkpoint {}", p.display()))?,
        None => {
            warn!(seed, "no --checkpoint: TerraMind with RANDOM weights, for testing only");
            TerraMind::random_with_tim(cfg, order, tim, seed, device)?
        }
    })
}

/// Options of `model generate`.
#[derive(Debug, Clone, clap::Args)]
pub struct GenerateArgs {
    /// Model, inputs and output (`tim_<MOD>_ids` `[B, N]` per target; `LULC` `[B, H, W]`
    /// uint8 class map; `S2L2A`, `S1GRD`, `S1RTC`, `DEM`, `NDVI` `[B, C, H, W]` float32 images
    /// in physical units).
    #[command(flatten)]
    pub model: ModelArgs,
    /// Directory with the official tokenizers of the targets (`TerraMind_Tokenizer_<M>.pt` or
    /// `.safetensors`, e.g. `TerraMind_Tokenizer_LULC.pt`, `TerraMind_Tokenizer_S1GRD.pt`);
    /// needed with --checkpoint.
    #[arg(long)]
    pub tokenizers: Option<PathBuf>,
    /// Modalities to generate, in order (each conditions the next): LULC, S2L2A, S1GRD, S1RTC,
    /// DEM, NDVI.
    #[arg(long, value_delimiter = ',', default_value = "LULC")]
    pub to: Vec<String>,
    /// DDIM steps of the diffusion decoders (image targets); the reference's default is 50.
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    /// Seed of the diffusion decoders' start noise (image targets).
    #[arg(long, default_value_t = 0)]
    pub noise_seed: u64,
}

/// The tokenizer that decodes `target`'s ids: the official one from `dir`, or (without a
/// directory and without a TerraMind checkpoint) a reduced one with random weights.
fn target_tokenizer(args: &GenerateArgs, target: Modality, dim: i64, heads: i64, device: Device) -> Result<Tokenizer> {
    let cfg = TokenizerConfig::v1(target)?;
    let name = cfg.modality.name();
    match (&args.tokenizers, &args.model.checkpoint) {
        (Some(dir), _) => {
            let path = ["pt", "safetensors"]
                .iter()
                .map(|e| dir.join(format!("TerraMind_Tokenizer_{name}.{e}")))
                .find(|p| p.exists())
                .with_context(|| {
                    format!("--tokenizers {}: no TerraMind_Tokenizer_{name}.pt or .safetensors in it", dir.display())
                })?;
            Tokenizer::load(&cfg, TokenizerParts::Decoder, &path, device).with_context(|| format!("{}", path.display()))
        }
        (None, Some(ckpt)) => bail!(
            "--checkpoint {} needs --tokenizers DIR with TerraMind_Tokenizer_{name}.pt to decode the {name} tokens",
            ckpt.display()
        ),
        (None, None) => {
            warn!(modality = name, "no --tokenizers: a reduced decoder with RANDOM weights, for testing only");
            Ok(Tokenizer::random(&cfg.reduced(dim, heads), TokenizerParts::Decoder, args.model.seed, device)?)
        }
    }
}

/// Runs `model generate`; returns the names written.
pub fn generate(args: &GenerateArgs) -> Result<Vec<String>> {
    let targets: Vec<Modality> = args.to.iter().map(|t| Modality::tim_target(t)).collect::<Result<_, _>>()?;
    if targets.is_empty() {
        bail!("--to: name at least one modality to generate");
    }
    if !(1..=1000).contains(&args.steps) {
        bail!("--steps {}: expected 1 to 1000 DDIM steps", args.steps);
    }
    let m = &args.model;
    let device: Device = terrastream_operators::DeviceChoice::parse(&m.device)?.device();
    let cfg = Config::variant(&m.variant)?;
    // Every decoder is loaded before the model runs, so a missing file fails in seconds.
    let decoders: Vec<Tokenizer> = targets
        .iter()
        .map(|t| target_tokenizer(args, *t, cfg.dim, cfg.num_heads, device))
        .collect::<Result<_>>()?;
    let (_, inputs, model) = m.load(&targets)?;
    let (_, _, h, w) = inputs.first().context("no input tensor")?.1.size4()?;
    let out = model.tim(&inputs, &m.tim(&targets))?;
    let mut outputs = Vec::new();
    for (t, tokenizer) in targets.iter().zip(&decoders) {
        let ids = out.ids(*t).with_context(|| format!("TiM generated no {}", t.tim_name()))?;
        let grid = ids.f_reshape([-1, h / 16, w / 16])?;
        let name = tokenizer.config().modality.name().to_string();
        let decoded = if *t == Modality::LULC {
            tokenizer.decode_classes(&grid)?
        } else {
            let image = tokenizer.decode_image(&grid, args.steps, args.noise_seed)?;
            destandardize(&name, image)?
        };
        outputs.push((name, decoded));
        outputs.push((format!("tim_{}_ids", t.tim_name()), ids.shallow_clone()));
    }
    write(&m.output, &outputs)?;
    Ok(outputs.into_iter().map(|(k, _)| k).collect())
}

/// A generated image from the model's standardized values back to physical units with the
/// TerraMind v1 statistics: S2 reflectance x 10000, S1 backscatter in dB, DEM metres. NDVI has
/// no statistics and is returned as generated.
fn destandardize(modality: &str, image: Tensor) -> Result<Tensor> {
    Ok(match BandStats::terramind_v1(modality) {
        Some(stats) => stats.to_physical(&image)?,
        None => image,
    })
}

fn write(path: &Path, outputs: &[(String, Tensor)]) -> Result<()> {
    let named: Vec<(&str, Tensor)> = outputs.iter().map(|(k, t)| (k.as_str(), t.contiguous())).collect();
    Tensor::write_safetensors(&named, path).with_context(|| format!("--output {}", path.display()))
}
