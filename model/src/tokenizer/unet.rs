//! The diffusion decoder of the DiVAE tokenizers (S2L2A, S1GRD, S1RTC, DEM, NDVI): a patched
//! U-Net (terratorch `PatchedUNetCondCat`, after Dhariwal & Nichol's guided-diffusion U-Net,
//! <https://arxiv.org/abs/2105.05233>) that predicts the clean image from a noisy one, the
//! timestep and the FSQ codes.
//!
//! The image is cut into `p x p` patches stacked as channels (`[B, C·p·p, H/p, W/p]`), the codes
//! are upsampled (nearest) to that grid and concatenated, and the U-Net runs on the patch grid.
//! Key tree under `decoder.`: `time_embed.{0,2}`, `input_blocks.<i>.<j>`, `middle_block.{0,1,2}`,
//! `output_blocks.<i>.<j>`, `out.{0,2}`.

use tch::{Kind, Tensor, nn};

use crate::layers::Linear;
use crate::{Error, Result};

/// Hyper-parameters of the patched U-Net (terratorch `unet_patched`).
#[derive(Debug, Clone, PartialEq)]
pub struct UNetConfig {
    /// Channels of the first level (256 in v1); every level is a multiple of it.
    pub model_channels: i64,
    /// Residual blocks per level on the way down (3 in v1); one more per level on the way up.
    pub num_res_blocks: usize,
    /// Downsampling factors at which blocks are followed by self-attention (`[4, 8]` in v1).
    pub attention_resolutions: Vec<i64>,
    /// Channel multiplier of each level (`[1, 2, 2, 2]` in v1).
    pub channel_mult: Vec<i64>,
    /// Side of the pixel patches stacked into channels (4 in v1).
    pub patch_size: i64,
}

impl UNetConfig {
    /// The decoder of the official v1 DiVAE tokenizers.
    pub fn v1() -> Self {
        UNetConfig {
            model_channels: 256,
            num_res_blocks: 3,
            attention_resolutions: vec![4, 8],
            channel_mult: vec![1, 2, 2, 2],
            patch_size: 4,
        }
    }

    pub(crate) fn validate(&self, what: &str) -> Result<()> {
        let fail = |m: &str| Err(Error::Config(format!("{what}: {m}")));
        // GroupNorm with 32 groups needs every level's width to be a multiple of 32.
        if self.model_channels <= 0
            || self.channel_mult.is_empty()
            || self.channel_mult.iter().any(|&m| m <= 0)
        {
            return fail("model_channels and channel_mult must be positive and non-empty");
        }
        if self
            .channel_mult
            .iter()
            .any(|m| (m * self.model_channels) % GROUPS != 0)
        {
            return fail(
                "every level's channels (model_channels x channel_mult) must be a multiple of 32",
            );
        }
        if self.num_res_blocks == 0 || self.patch_size <= 0 {
            return fail("num_res_blocks and patch_size must be positive");
        }
        Ok(())
    }

    /// Pixels per side that one step down the U-Net halves: an image must be a multiple of this.
    pub(crate) fn granule(&self) -> i64 {
        self.patch_size << (self.channel_mult.len() - 1)
    }
}

/// Groups of every GroupNorm (guided-diffusion's `normalization`).
const GROUPS: i64 = 32;

/// `nn.Conv2d` or `nn.Conv1d` with bias: keys `<p>.weight`, `<p>.bias`.
#[derive(Debug)]
struct Conv {
    weight: Tensor,
    bias: Tensor,
    stride: i64,
    padding: i64,
}

impl Conv {
    /// A 2-D convolution with a `k x k` kernel.
    fn new2d(p: &nn::Path, cin: i64, cout: i64, k: i64, stride: i64) -> Result<Self> {
        Ok(Conv {
            weight: p.f_zeros_no_train("weight", &[cout, cin, k, k])?,
            bias: p.f_zeros_no_train("bias", &[cout])?,
            stride,
            padding: k / 2,
        })
    }

    /// A 1-D convolution with kernel 1 (the attention projections).
    fn new1d(p: &nn::Path, cin: i64, cout: i64) -> Result<Self> {
        Ok(Conv {
            weight: p.f_zeros_no_train("weight", &[cout, cin, 1])?,
            bias: p.f_zeros_no_train("bias", &[cout])?,
            stride: 1,
            padding: 0,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(if self.weight.dim() == 3 {
            x.f_conv1d(&self.weight, Some(&self.bias), [1], [0], [1], 1)?
        } else {
            let (s, p) = (self.stride, self.padding);
            x.f_conv2d(&self.weight, Some(&self.bias), [s, s], [p, p], [1, 1], 1)?
        })
    }
}

/// GroupNorm(32, C), eps 1e-5, computed in float32: keys `<p>.weight`, `<p>.bias`.
#[derive(Debug)]
struct GroupNorm {
    weight: Tensor,
    bias: Tensor,
}

impl GroupNorm {
    fn new(p: &nn::Path, channels: i64) -> Result<Self> {
        Ok(GroupNorm {
            weight: p.f_zeros_no_train("weight", &[channels])?,
            bias: p.f_zeros_no_train("bias", &[channels])?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_group_norm(GROUPS, Some(&self.weight), Some(&self.bias), 1e-5, false)?)
    }
}

/// A residual block conditioned on the timestep embedding (no scale-shift norm, no up/down):
/// `skip(x) + conv(SiLU(GN(conv(SiLU(GN(x))) + W·SiLU(emb))))`.
#[derive(Debug)]
struct ResBlock {
    in_norm: GroupNorm,
    in_conv: Conv,
    emb: Linear,
    out_norm: GroupNorm,
    out_conv: Conv,
    skip: Option<Conv>,
}

impl ResBlock {
    fn new(p: &nn::Path, cin: i64, cout: i64, emb_dim: i64) -> Result<Self> {
        Ok(ResBlock {
            in_norm: GroupNorm::new(&(p / "in_layers" / "0"), cin)?,
            in_conv: Conv::new2d(&(p / "in_layers" / "2"), cin, cout, 3, 1)?,
            emb: Linear::new(&(p / "emb_layers" / "1"), emb_dim, cout, true)?,
            out_norm: GroupNorm::new(&(p / "out_layers" / "0"), cout)?,
            out_conv: Conv::new2d(&(p / "out_layers" / "3"), cout, cout, 3, 1)?,
            skip: (cin != cout)
                .then(|| Conv::new2d(&(p / "skip_connection"), cin, cout, 1, 1))
                .transpose()?,
        })
    }

    fn forward(&self, x: &Tensor, emb: &Tensor) -> Result<Tensor> {
        let h = self.in_conv.forward(&self.in_norm.forward(x)?.f_silu()?)?;
        let e = self
            .emb
            .forward(&emb.f_silu()?)?
            .f_unsqueeze(-1)?
            .f_unsqueeze(-1)?;
        let h = self
            .out_conv
            .forward(&self.out_norm.forward(&h.f_add(&e)?)?.f_silu()?)?;
        let skip = match &self.skip {
            Some(conv) => conv.forward(x)?,
            None => x.shallow_clone(),
        };
        Ok(skip.f_add(&h)?)
    }
}

/// Single-head self-attention over the grid positions (guided-diffusion's `AttentionBlock` with
/// the legacy q/k/v order): `x + proj(softmax(qᵀk / √c) vᵀ)`.
#[derive(Debug)]
struct AttentionBlock {
    norm: GroupNorm,
    qkv: Conv,
    proj_out: Conv,
    channels: i64,
}

impl AttentionBlock {
    fn new(p: &nn::Path, channels: i64) -> Result<Self> {
        Ok(AttentionBlock {
            norm: GroupNorm::new(&(p / "norm"), channels)?,
            qkv: Conv::new1d(&(p / "qkv"), channels, 3 * channels)?,
            proj_out: Conv::new1d(&(p / "proj_out"), channels, channels)?,
            channels,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.size4()?;
        let x = x.f_reshape([b, c, h * w])?;
        let qkv = self.qkv.forward(&self.norm.forward(&x)?)?;
        let parts = qkv.f_split(self.channels, 1)?;
        // The reference scales q and k by c^-1/4 each (steadier in f16); so do we, to match it.
        let scale = 1.0 / (self.channels as f64).sqrt().sqrt();
        let q = parts[0].f_mul_scalar(scale)?;
        let k = parts[1].f_mul_scalar(scale)?;
        let weight = q.f_transpose(1, 2)?.f_bmm(&k)?.f_softmax(-1, Kind::Float)?; // [b, t, s]
        let a = parts[2].f_bmm(&weight.f_transpose(1, 2)?)?; // [b, c, t]
        Ok(x.f_add(&self.proj_out.forward(&a)?)?
            .f_reshape([b, c, h, w])?)
    }
}

/// One entry of the U-Net's block lists (`TimestepEmbedSequential` children).
#[derive(Debug)]
enum Layer {
    /// The input convolution.
    Conv(Conv),
    Res(ResBlock),
    Attention(AttentionBlock),
    /// Strided 3x3 convolution (`op`).
    Down(Conv),
    /// Nearest 2x upsampling then a 3x3 convolution (`conv`).
    Up(Conv),
}

impl Layer {
    fn forward(&self, x: &Tensor, emb: &Tensor) -> Result<Tensor> {
        match self {
            Layer::Conv(c) | Layer::Down(c) => c.forward(x),
            Layer::Res(r) => r.forward(x, emb),
            Layer::Attention(a) => a.forward(x),
            Layer::Up(c) => {
                let (_, _, h, w) = x.size4()?;
                c.forward(&x.f_upsample_nearest2d([2 * h, 2 * w], Some(2.0), Some(2.0))?)
            }
        }
    }
}

fn run(layers: &[Layer], x: &Tensor, emb: &Tensor) -> Result<Tensor> {
    let mut x = x.shallow_clone();
    for l in layers {
        x = l.forward(&x, emb)?;
    }
    Ok(x)
}

/// The patched U-Net: `decoder.*` of a DiVAE tokenizer.
#[derive(Debug)]
pub(crate) struct PatchedUNet {
    cfg: UNetConfig,
    channels: i64,
    time_embed: (Linear, Linear),
    input_blocks: Vec<Vec<Layer>>,
    middle_block: Vec<Layer>,
    output_blocks: Vec<Vec<Layer>>,
    out: (GroupNorm, Conv),
}

impl PatchedUNet {
    /// `channels`: image bands; `cond_channels`: FSQ latent channels.
    pub(crate) fn new(
        p: &nn::Path,
        cfg: &UNetConfig,
        channels: i64,
        cond_channels: i64,
    ) -> Result<Self> {
        let mc = cfg.model_channels;
        let emb_dim = 4 * mc;
        let pp = cfg.patch_size * cfg.patch_size;
        let (inputs, outputs) = (&(p / "input_blocks"), &(p / "output_blocks"));
        let first = cfg.channel_mult[0] * mc;
        let mut input_blocks = vec![vec![Layer::Conv(Conv::new2d(
            &(inputs / "0" / "0"),
            channels * pp + cond_channels,
            first,
            3,
            1,
        )?)]];
        let mut skips = vec![first];
        let (mut ch, mut ds) = (first, 1);
        let attends = |ds: i64| cfg.attention_resolutions.contains(&ds);
        for (level, mult) in cfg.channel_mult.iter().enumerate() {
            for _ in 0..cfg.num_res_blocks {
                let bp = inputs / input_blocks.len().to_string();
                input_blocks.push(res_block(&bp, ch, mult * mc, emb_dim, attends(ds))?);
                ch = mult * mc;
                skips.push(ch);
            }
            if level + 1 != cfg.channel_mult.len() {
                let bp = inputs / input_blocks.len().to_string();
                input_blocks.push(vec![Layer::Down(Conv::new2d(
                    &(&bp / "0" / "op"),
                    ch,
                    ch,
                    3,
                    2,
                )?)]);
                skips.push(ch);
                ds *= 2;
            }
        }
        let mid = p / "middle_block";
        let middle_block = vec![
            Layer::Res(ResBlock::new(&(&mid / "0"), ch, ch, emb_dim)?),
            Layer::Attention(AttentionBlock::new(&(&mid / "1"), ch)?),
            Layer::Res(ResBlock::new(&(&mid / "2"), ch, ch, emb_dim)?),
        ];
        let mut output_blocks = Vec::new();
        for (level, mult) in cfg.channel_mult.iter().enumerate().rev() {
            for i in 0..=cfg.num_res_blocks {
                let bp = outputs / output_blocks.len().to_string();
                let skip = skips
                    .pop()
                    .ok_or_else(|| Error::Config("U-Net skip connections out of step".into()))?;
                let mut block = res_block(&bp, ch + skip, mult * mc, emb_dim, attends(ds))?;
                ch = mult * mc;
                if level > 0 && i == cfg.num_res_blocks {
                    let up = &bp / block.len().to_string() / "conv";
                    block.push(Layer::Up(Conv::new2d(&up, ch, ch, 3, 1)?));
                    ds /= 2;
                }
                output_blocks.push(block);
            }
        }
        Ok(PatchedUNet {
            cfg: cfg.clone(),
            channels,
            time_embed: (
                Linear::new(&(p / "time_embed" / "0"), mc, emb_dim, true)?,
                Linear::new(&(p / "time_embed" / "2"), emb_dim, emb_dim, true)?,
            ),
            input_blocks,
            middle_block,
            output_blocks,
            out: (
                GroupNorm::new(&(p / "out" / "0"), ch)?,
                Conv::new2d(&(p / "out" / "2"), first, channels * pp, 3, 1)?,
            ),
        })
    }

    /// Pixels per side an image must be a multiple of ([`UNetConfig::granule`]).
    pub(crate) fn granule(&self) -> i64 {
        self.cfg.granule()
    }

    /// The predicted clean image `[B, C, H, W]` for the noisy `x` `[B, C, H, W]` at diffusion
    /// step `t` (0..1000), conditioned on codes `[B, L, h, w]`.
    pub(crate) fn forward(&self, x: &Tensor, t: i64, codes: &Tensor) -> Result<Tensor> {
        let (b, c, hh, ww) = x.size4()?;
        let p = self.cfg.patch_size;
        let (nh, nw) = (hh / p, ww / p);
        // b c (nh ph) (nw pw) -> b (c ph pw) nh nw
        let patches = x
            .f_reshape([b, c, nh, p, nw, p])?
            .f_permute([0, 1, 3, 5, 2, 4])?
            .f_reshape([b, c * p * p, nh, nw])?;
        let cond = codes.f_upsample_nearest2d([nh, nw], None, None)?;
        let mut h = Tensor::f_cat(&[patches, cond], 1)?;

        let temb = timestep_embedding(t, self.cfg.model_channels, x.device())?;
        let emb = self
            .time_embed
            .1
            .forward(&self.time_embed.0.forward(&temb)?.f_silu()?)?;
        let mut hs = Vec::with_capacity(self.input_blocks.len());
        for block in &self.input_blocks {
            h = run(block, &h, &emb)?;
            hs.push(h.shallow_clone());
        }
        h = run(&self.middle_block, &h, &emb)?;
        for block in &self.output_blocks {
            let skip = hs
                .pop()
                .ok_or_else(|| Error::Config("U-Net skip connections out of step".into()))?;
            h = run(block, &Tensor::f_cat(&[h, skip], 1)?, &emb)?;
        }
        let out = self.out.1.forward(&self.out.0.forward(&h)?.f_silu()?)?;
        // b (c ph pw) nh nw -> b c (nh ph) (nw pw)
        Ok(out
            .f_reshape([b, self.channels, p, p, nh, nw])?
            .f_permute([0, 1, 4, 2, 5, 3])?
            .f_reshape([b, self.channels, hh, ww])?)
    }
}

/// `<bp>.0`: a residual block from `cin` to `cout` channels, and `<bp>.1`: self-attention when
/// the block's level attends.
fn res_block(
    bp: &nn::Path,
    cin: i64,
    cout: i64,
    emb_dim: i64,
    attention: bool,
) -> Result<Vec<Layer>> {
    let mut block = vec![Layer::Res(ResBlock::new(&(bp / "0"), cin, cout, emb_dim)?)];
    if attention {
        block.push(Layer::Attention(AttentionBlock::new(&(bp / "1"), cout)?));
    }
    Ok(block)
}

/// Sinusoidal embedding `[1, dim]` of timestep `t`: `[cos(t·f), sin(t·f)]` with frequencies
/// `f_i = 10000^(-i/half)`, computed with the reference's float32 operations in its order.
fn timestep_embedding(t: i64, dim: i64, device: tch::Device) -> Result<Tensor> {
    let half = dim / 2;
    let freqs = Tensor::f_arange(half, (Kind::Float, device))?
        .f_mul_scalar(-(10000f64.ln()))?
        .f_div_scalar(half)?
        .f_exp()?;
    let args = Tensor::from_slice(&[t as f32])
        .f_to_device(device)?
        .f_unsqueeze(1)?
        .f_mul(&freqs.f_unsqueeze(0)?)?;
    let emb = Tensor::f_cat(&[args.f_cos()?, args.f_sin()?], -1)?;
    Ok(if dim % 2 == 1 {
        Tensor::f_cat(
            &[emb.shallow_clone(), emb.f_narrow(1, 0, 1)?.f_zeros_like()?],
            -1,
        )?
    } else {
        emb
    })
}
