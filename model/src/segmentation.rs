//! A fine-tuned segmentation model: TerraMind's encoder with terratorch's `FCNDecoder` and
//! `SegmentationHead`, as `terratorch.tasks.SemanticSegmentationTask` builds it
//! (`EncoderDecoderFactory`, backbone `terramind_v1_<variant>`, necks `SelectIndices [-1]` and
//! `ReshapeTokensToImage`, decoder `FCNDecoder`).
//!
//! Forward, as `PixelWiseModel.forward`: the normed last encoder layer, averaged over the input
//! modalities (`merge_method='mean'`), is laid out as an image `[B, D, H/16, W/16]`; each of the
//! decoder's `num_convs` blocks doubles its size (`ConvTranspose2d` k2 s2, `Conv2d` 3x3, a
//! LayerNorm over channels, GELU); the head's optional 3x3 conv + ReLU blocks and its 1x1 conv
//! give the class logits, resized bilinearly to the input size when the sizes differ.
//!
//! Key tree (a `torch.save(task.model.state_dict())`, or a Lightning checkpoint whose
//! `state_dict` holds the same keys under `model.`): `encoder.*` (TerraMind's own keys),
//! `decoder.convs.<i>.{0,1}.{weight,bias}`, `decoder.convs.<i>.2.ln.{weight,bias}`,
//! `head.head.0.<j>.0.{weight,bias}` (only with a `channel_list`), `head.head.2.{weight,bias}`.
//! The decoder's size (blocks, channels, head convs, classes) is read from the checkpoint's
//! shapes. Other terratorch decoders (UNet, UperNet, ...) are reported as such, by name.

use std::collections::HashSet;
use std::path::Path;

use tch::{Device, Kind, Tensor, nn};

use crate::terramind::output;
use crate::{Config, Error, Merge, Modality, Result, TerraMind, weights};

/// The decoder and head of a fine-tuned segmentation model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentationConfig {
    /// Output channels of every `FCNDecoder` block (terratorch's `channels`, default 256).
    pub channels: i64,
    /// Upsampling blocks (terratorch's `num_convs`, default 4: x16, back to the input size).
    pub num_convs: usize,
    /// Channels of the head's 3x3 conv + ReLU blocks (terratorch's `channel_list`; empty: none).
    pub head_channels: Vec<i64>,
    /// Output classes.
    pub classes: i64,
}

impl SegmentationConfig {
    /// Reads the decoder's and head's sizes from the key shapes of a checkpoint (`.pt`, `.ckpt`
    /// or `.safetensors`). Fails naming the file when it holds no `FCNDecoder`, or another
    /// terratorch decoder.
    pub fn from_checkpoint(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let prefix = checkpoint_prefix(path)?;
        let tensors = weights::read_checkpoint(path, &|k| {
            k.strip_prefix(prefix.as_str())
                .is_some_and(|k| k.starts_with("decoder.") || k.starts_with("head."))
        })?;
        let shape = |key: &str| tensors.get(&format!("{prefix}{key}")).map(Tensor::size);
        let config_err = |what: String| Error::Config(format!("segmentation checkpoint {}: {what}", path.display()));
        let mut num_convs = 0;
        let mut channels = 0;
        while let Some(s) = shape(&format!("decoder.convs.{num_convs}.0.weight")) {
            // ConvTranspose2d weights are [in, out, k, k].
            channels = s.get(1).copied().unwrap_or(0);
            num_convs += 1;
        }
        if num_convs == 0 {
            let other: Vec<&str> = tensors
                .keys()
                .filter_map(|k| k.strip_prefix(prefix.as_str()))
                .filter(|k| k.starts_with("decoder."))
                .take(3)
                .collect();
            return Err(config_err(if other.is_empty() {
                "no `decoder.*` keys: not a terratorch segmentation model".into()
            } else {
                format!(
                    "decoder keys {other:?} are not terratorch's FCNDecoder (`decoder.convs.<i>.*`), the only \
                     segmentation decoder supported"
                )
            }));
        }
        let mut head_channels = Vec::new();
        while let Some(s) = shape(&format!("head.head.0.{}.0.weight", head_channels.len())) {
            head_channels.push(s[0]);
        }
        let classes = shape("head.head.2.weight")
            .map(|s| s[0])
            .ok_or_else(|| config_err("no `head.head.2.weight`: not terratorch's SegmentationHead".into()))?;
        Ok(SegmentationConfig {
            channels,
            num_convs,
            head_channels,
            classes,
        })
    }
}

/// The key prefix of the model's keys in a checkpoint: `model.` in a Lightning checkpoint of a
/// terratorch task, else none.
fn checkpoint_prefix(path: &Path) -> Result<String> {
    let probe = weights::read_checkpoint(path, &|k| k.ends_with("head.head.2.bias"))?;
    Ok(probe
        .keys()
        .next()
        .map(|k| k.trim_end_matches("head.head.2.bias").to_string())
        .unwrap_or_default())
}

/// One `FCNDecoder` block: x2 upsampling.
#[derive(Debug)]
struct UpscaleBlock {
    up_weight: Tensor,
    up_bias: Tensor,
    conv_weight: Tensor,
    conv_bias: Tensor,
    norm_weight: Tensor,
    norm_bias: Tensor,
    channels: i64,
}

impl UpscaleBlock {
    fn new(p: &nn::Path, in_channels: i64, channels: i64) -> Result<Self> {
        let (up, conv, ln) = (p / "0", p / "1", p / "2" / "ln");
        Ok(UpscaleBlock {
            up_weight: up.f_zeros_no_train("weight", &[in_channels, channels, 2, 2])?,
            up_bias: up.f_zeros_no_train("bias", &[channels])?,
            conv_weight: conv.f_zeros_no_train("weight", &[channels, channels, 3, 3])?,
            conv_bias: conv.f_zeros_no_train("bias", &[channels])?,
            norm_weight: ln.f_zeros_no_train("weight", &[channels])?,
            norm_bias: ln.f_zeros_no_train("bias", &[channels])?,
            channels,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.f_conv_transpose2d(&self.up_weight, Some(&self.up_bias), [2, 2], [0, 0], [0, 0], 1, [1, 1])?;
        let x = x.f_conv2d(&self.conv_weight, Some(&self.conv_bias), [1, 1], [1, 1], [1, 1], 1)?;
        // terratorch's Norm2d: LayerNorm(eps 1e-6) over the channels of each pixel.
        let x = x
            .f_permute([0, 2, 3, 1])?
            .f_layer_norm([self.channels], Some(&self.norm_weight), Some(&self.norm_bias), 1e-6, true)?
            .f_permute([0, 3, 1, 2])?;
        Ok(x.f_gelu("none")?)
    }
}

/// terratorch's `SegmentationHead`: optional 3x3 conv + ReLU blocks, then a 1x1 conv.
#[derive(Debug)]
struct Head {
    pre: Vec<(Tensor, Tensor)>,
    weight: Tensor,
    bias: Tensor,
}

impl Head {
    fn new(p: &nn::Path, in_channels: i64, cfg: &SegmentationConfig) -> Result<Self> {
        let mut pre = Vec::new();
        let mut c = in_channels;
        for (j, &out) in cfg.head_channels.iter().enumerate() {
            let b = p / "0" / j.to_string() / "0";
            pre.push((b.f_zeros_no_train("weight", &[out, c, 3, 3])?, b.f_zeros_no_train("bias", &[out])?));
            c = out;
        }
        let last = p / "2";
        Ok(Head {
            pre,
            weight: last.f_zeros_no_train("weight", &[cfg.classes, c, 1, 1])?,
            bias: last.f_zeros_no_train("bias", &[cfg.classes])?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.shallow_clone();
        for (w, b) in &self.pre {
            x = x.f_conv2d(w, Some(b), [1, 1], [1, 1], [1, 1], 1)?.f_relu()?;
        }
        Ok(x.f_conv2d(&self.weight, Some(&self.bias), [1, 1], [0, 0], [1, 1], 1)?)
    }
}

/// The decoder and head on their own variable store (keys `decoder.*`, `head.head.*`).
#[derive(Debug)]
struct DecoderHead {
    vs: nn::VarStore,
    blocks: Vec<UpscaleBlock>,
    head: Head,
}

impl DecoderHead {
    fn build(dim: i64, cfg: &SegmentationConfig, device: Device) -> Result<Self> {
        if cfg.num_convs == 0 || cfg.channels <= 0 || cfg.classes <= 0 || cfg.head_channels.iter().any(|&c| c <= 0) {
            return Err(Error::Config(format!("segmentation head {cfg:?}: sizes must be positive, num_convs >= 1")));
        }
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let convs = &root / "decoder" / "convs";
        let blocks = (0..cfg.num_convs)
            .map(|i| UpscaleBlock::new(&(&convs / i.to_string()), if i == 0 { dim } else { cfg.channels }, cfg.channels))
            .collect::<Result<_>>()?;
        let head = Head::new(&(&root / "head" / "head"), cfg.channels, cfg)?;
        Ok(DecoderHead { vs, blocks, head })
    }

    /// Logits `[B, classes, H, W]` from the token image `[B, D, h, w]`, resized to `size`.
    fn forward(&self, tokens: &Tensor, size: [i64; 2]) -> Result<Tensor> {
        let mut x = tokens.shallow_clone();
        for b in &self.blocks {
            x = b.forward(&x)?;
        }
        let logits = self.head.forward(&x)?;
        let (_, _, h, w) = logits.size4()?;
        if [h, w] == size {
            return Ok(logits);
        }
        Ok(logits.f_upsample_bilinear2d(size, false, None, None)?)
    }
}

/// A fine-tuned TerraMind segmentation model (encoder, `FCNDecoder`, `SegmentationHead`).
#[derive(Debug)]
pub struct Segmenter {
    encoder: TerraMind,
    decoder: DecoderHead,
    cfg: SegmentationConfig,
}

impl Segmenter {
    /// Loads the encoder of `variant` for `modalities` and the decoder and head from one
    /// fine-tuned checkpoint; sizes come from [`SegmentationConfig::from_checkpoint`]. Fails with
    /// [`Error::Checkpoint`] listing every missing or mis-shaped key.
    pub fn load(cfg: &Config, modalities: &[Modality], path: impl AsRef<Path>, device: Device) -> Result<Self> {
        let path = path.as_ref();
        let seg = SegmentationConfig::from_checkpoint(path)?;
        let prefix = checkpoint_prefix(path)?;
        let encoder = TerraMind::load_prefixed(cfg, modalities, path, &format!("{prefix}encoder."), device)?;
        let decoder = DecoderHead::build(cfg.dim, &seg, device)?;
        let keys: HashSet<String> = weights::named_tensors(&decoder.vs).into_iter().map(|(k, _)| k).collect();
        let tensors = weights::read_prefixed(path, &prefix, &keys)?;
        weights::fill(&decoder.vs, &tensors, path)?;
        Ok(Segmenter { encoder, decoder, cfg: seg })
    }

    /// A segmenter with seeded random weights (encoder as [`TerraMind::random`]; decoder and head
    /// weights N(0, 1/fan_in), biases N(0, 0.05²), norm weights 1 + N(0, 0.1²)), for tests.
    pub fn random(
        cfg: &Config,
        modalities: &[Modality],
        seg: &SegmentationConfig,
        seed: u64,
        device: Device,
    ) -> Result<Self> {
        let encoder = TerraMind::random(cfg, modalities, seed, device)?;
        let decoder = DecoderHead::build(cfg.dim, seg, device)?;
        weights::randomize_plain(&decoder.vs, seed ^ 0x5e6, &|_| Ok(None))?;
        Ok(Segmenter { encoder, decoder, cfg: seg.clone() })
    }

    /// Writes the whole model to a safetensors file with the keys of
    /// `torch.save(task.model.state_dict())`: `encoder.*`, `decoder.*`, `head.head.*`.
    pub fn save_safetensors(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let mut tensors: Vec<(String, Tensor)> = self
            .encoder
            .named_weights()?
            .into_iter()
            .map(|(k, t)| (format!("encoder.{k}"), t))
            .collect();
        for (k, t) in weights::named_tensors(&self.decoder.vs) {
            tensors.push((k, output(t)?));
        }
        Tensor::write_safetensors(&tensors, path).map_err(|source| Error::Read { path: path.into(), source })
    }

    /// The decoder's and head's sizes.
    pub fn config(&self) -> &SegmentationConfig {
        &self.cfg
    }

    /// The encoder.
    pub fn encoder(&self) -> &TerraMind {
        &self.encoder
    }

    /// Class logits `[B, classes, H, W]` float32 on the CPU for standardized inputs (as
    /// [`TerraMind::encode`]).
    pub fn logits(&self, inputs: &[(Modality, Tensor)]) -> Result<Tensor> {
        let (_, _, h, w) = inputs.first().ok_or(Error::NoInputs)?.1.size4()?;
        let tokens = self.encoder.encode(inputs, Merge::Mean)?;
        self.decode_tokens(&tokens, [h / 16, w / 16], [h, w])
    }

    /// Logits from merged encoder tokens `[B, h·w, D]` on a `grid` of `[h, w]` tokens, resized
    /// to `size` pixels: the decoder and head alone (what the parity fixture checks).
    pub fn decode_tokens(&self, tokens: &Tensor, grid: [i64; 2], size: [i64; 2]) -> Result<Tensor> {
        let device = self.decoder.vs.device();
        tch::no_grad(|| {
            let (b, n, d) = tokens.size3()?;
            if n != grid[0] * grid[1] {
                return Err(Error::InputShape {
                    modality: "tokens".into(),
                    expected: format!("[B, {}, D] for a {}x{} token grid", grid[0] * grid[1], grid[0], grid[1]),
                    found: vec![b, n, d],
                });
            }
            let image = tokens
                .f_to_device(device)?
                .f_to_kind(Kind::Float)?
                .f_reshape([b, grid[0], grid[1], d])?
                .f_permute([0, 3, 1, 2])?
                .f_contiguous()?;
            output(self.decoder.forward(&image, size)?)
        })
    }
}
