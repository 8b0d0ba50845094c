//! TerraMind v1 tokenizers (terratorch 1.2.11, `terramind_v1_tokenizer_<m>`): a ViT encoder,
//! the 1x1 `quant_proj` to L latent channels and finite scalar quantisation (FSQ) turn a chip
//! into one token id per 16 x 16 patch, the ids TerraMind's token modalities and TiM use. The
//! decoders turn ids back into maps: for LULC (a VQ-VAE) a ViT decoder gives class logits; for
//! the image modalities (DiVAEs) a patched U-Net, run as a DDIM sampler, gives a standardized
//! image.
//!
//! Key tree (the `state_dict()` of the reference `VQVAE` / `DiVAE`, as in the official
//! `TerraMind_Tokenizer_<M>.pt`): `encoder.{pos_emb, proj, blocks.<i>, norm_mlp, post_mlp}`,
//! `quant_proj`; for LULC `post_quant_proj`, `decoder.{pos_emb, blocks.<i>, norm_mlp,
//! post_mlp, out_proj}`; for S2L2A, S1GRD, S1RTC, DEM and NDVI the U-Net `decoder.*`
//! ([`UNetConfig`]).

mod ddim;
mod fsq;
mod unet;
mod vit;

use std::collections::HashSet;
use std::path::Path;

use tch::{Device, Kind, Tensor, nn};

use crate::layers::Conv2d;
use crate::terramind::output;
use crate::{Config, Error, MlpKind, Modality, Result, weights};
use crate::rng::Rng;
use ddim::Ddim;
use fsq::Fsq;
use unet::PatchedUNet;
pub use unet::UNetConfig;
use vit::{VitDecoder, VitEncoder};

/// Number of LULC classes: the LULC tokenizer's input channels (one-hot) and output channels.
pub const LULC_CLASSES: i64 = 10;

/// The modalities with a v1 tokenizer ([`TokenizerConfig::v1`]).
pub const TOKENIZED: [Modality; 6] =
    [Modality::S2L2A, Modality::S1GRD, Modality::S1RTC, Modality::DEM, Modality::NDVI, Modality::LULC];

/// Hyper-parameters of one tokenizer, mirroring the reference builder's arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenizerConfig {
    /// The modality tokenized: `S2L2A`, `S1GRD`, `S1RTC`, `DEM`, `NDVI` (raw bands in) or `LULC`
    /// (class map in).
    pub modality: Modality,
    /// Input channels; for LULC the number of classes (the input is one-hot encoded).
    pub channels: i64,
    /// FSQ levels per latent channel (`codebook_size` `"8-8-8-6-5"` -> `[8, 8, 8, 6, 5]`); their
    /// product is the vocabulary size.
    pub levels: Vec<i64>,
    /// Token width D of the ViTs.
    pub dim: i64,
    /// Encoder blocks.
    pub encoder_depth: usize,
    /// Decoder blocks of the ViT decoder (LULC); `None` for the diffusion-decoder tokenizers.
    pub decoder_depth: Option<usize>,
    /// The diffusion decoder (S2L2A, S1GRD, S1RTC, DEM, NDVI); `None` for LULC.
    pub diffusion: Option<UNetConfig>,
    /// Attention heads.
    pub num_heads: i64,
    /// Hidden width of the block MLPs and the post-MLP (4D).
    pub mlp_hidden: i64,
    /// Whether the ViTs end with the residual tanh post-MLP (`norm_mlp`, `post_mlp`).
    pub post_mlp: bool,
    /// Patch size in pixels.
    pub patch_size: i64,
    /// Image size of the stored `pos_emb` grids (256: a 16 x 16 grid).
    pub image_size: i64,
}

impl TokenizerConfig {
    /// The official v1 tokenizer of `modality` (ViT-B encoder, D 768, 12 blocks, 12 heads; image
    /// size 256; FSQ `8-8-8-6-5`, LULC `7-5-5-5-5` with a ViT-B decoder). The tokenised
    /// modalities (`TokS2L2A`, …) name the same tokenizer as their raw ones.
    pub fn v1(modality: Modality) -> Result<Self> {
        let (modality, channels) = match modality {
            Modality::S2L2A | Modality::TokS2L2A => (Modality::S2L2A, 12),
            Modality::S1GRD | Modality::TokS1GRD => (Modality::S1GRD, 2),
            Modality::S1RTC | Modality::TokS1RTC => (Modality::S1RTC, 2),
            Modality::DEM | Modality::TokDEM => (Modality::DEM, 1),
            Modality::NDVI => (Modality::NDVI, 1),
            Modality::LULC => (Modality::LULC, LULC_CLASSES),
            other => return Err(Error::NoTokenizer(other.name().to_string())),
        };
        let lulc = modality == Modality::LULC;
        Ok(TokenizerConfig {
            modality,
            channels,
            levels: if lulc { vec![7, 5, 5, 5, 5] } else { vec![8, 8, 8, 6, 5] },
            dim: 768,
            encoder_depth: 12,
            decoder_depth: lulc.then_some(12),
            diffusion: (!lulc).then(UNetConfig::v1),
            num_heads: 12,
            mlp_hidden: 4 * 768,
            post_mlp: true,
            patch_size: 16,
            image_size: 256,
        })
    }

    /// The same tokenizer at another width and depth (encoder and decoder), e.g. for small test
    /// models.
    pub fn with_size(mut self, dim: i64, depth: usize, num_heads: i64) -> Self {
        self.dim = dim;
        self.encoder_depth = depth;
        self.decoder_depth = self.decoder_depth.map(|_| depth);
        self.num_heads = num_heads;
        self.mlp_hidden = 4 * dim;
        self
    }

    /// The same tokenizer with another diffusion decoder size (image modalities only), e.g. for
    /// small test models.
    pub fn with_unet(mut self, unet: UNetConfig) -> Self {
        if self.diffusion.is_some() {
            self.diffusion = Some(unet);
        }
        self
    }

    /// The reduced decoder used where no official weights are given (random weights, tests
    /// only): width `dim`, 2 blocks of `num_heads` heads, and for the image modalities a
    /// 32-channel U-Net with one residual block per level.
    pub fn reduced(self, dim: i64, num_heads: i64) -> Self {
        let unet = UNetConfig {
            model_channels: 32,
            num_res_blocks: 1,
            ..UNetConfig::v1()
        };
        self.with_size(dim, 2, num_heads).with_unet(unet)
    }

    /// The token modality the ids belong to (`TokS2L2A` for S2L2A, `LULC` for LULC, …).
    pub fn token_modality(&self) -> Modality {
        match self.modality {
            Modality::S2L2A => Modality::TokS2L2A,
            Modality::S1GRD => Modality::TokS1GRD,
            Modality::S1RTC => Modality::TokS1RTC,
            Modality::DEM => Modality::TokDEM,
            other => other,
        }
    }

    /// Number of token ids: the product of the levels.
    pub fn vocab_size(&self) -> i64 {
        self.levels.iter().product()
    }

    /// Checks the values the layers rely on.
    pub fn validate(&self) -> Result<()> {
        let fail = |what: &str| Err(Error::Config(format!("tokenizer {}: {what}", self.modality.name())));
        if self.dim <= 0 || self.dim % 4 != 0 || self.num_heads <= 0 || self.dim % self.num_heads != 0 {
            return fail("dim must be a positive multiple of 4 and of num_heads");
        }
        if self.levels.is_empty() || self.levels.iter().any(|&l| l < 2) {
            return fail("FSQ levels must be non-empty, each at least 2");
        }
        if self.channels <= 0 || self.mlp_hidden <= 0 || self.encoder_depth == 0 {
            return fail("channels, mlp_hidden and encoder_depth must be positive");
        }
        if self.patch_size <= 0 || self.image_size % self.patch_size != 0 {
            return fail("image_size must be a multiple of a positive patch_size");
        }
        if let Some(unet) = &self.diffusion {
            unet.validate(&format!("tokenizer {} decoder", self.modality.name()))?;
        }
        Ok(())
    }

    /// The block hyper-parameters in the form the shared layers take.
    fn vit(&self) -> Config {
        Config {
            dim: self.dim,
            encoder_depth: self.encoder_depth,
            decoder_depth: self.decoder_depth.unwrap_or(0),
            num_heads: self.num_heads,
            mlp: MlpKind::Gelu,
            mlp_hidden: self.mlp_hidden,
            qkv_bias: true,
            proj_bias: true,
            mlp_bias: true,
            patch_size: self.patch_size,
            image_size: self.image_size,
            layer_norm_eps: 1e-6,
        }
    }
}

/// Which halves of a tokenizer to build and load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenizerParts {
    /// Encoder, `quant_proj` and FSQ: chips to ids.
    Encoder,
    /// The decoder: ids to outputs (`post_quant_proj` and the ViT decoder for LULC, the U-Net
    /// for the image modalities).
    Decoder,
    /// Both.
    Both,
}

/// The ids-to-outputs half.
#[derive(Debug)]
enum Decoder {
    /// LULC: `post_quant_proj` and the ViT `decoder.*`.
    Vit { post_quant_proj: Conv2d, vit: VitDecoder },
    /// Image modalities: the U-Net `decoder.*`, conditioned on the codes directly.
    Diffusion { unet: PatchedUNet, ddim: Ddim },
}

/// One TerraMind v1 tokenizer, with weights named as the official checkpoint's keys.
///
/// All methods run under `tch::no_grad`, take tensors on any device (moved to the model's) and
/// return CPU tensors.
///
/// ```no_run
/// use tch::Device;
/// use terrastream_model::{Modality, Tokenizer, TokenizerConfig, TokenizerParts};
///
/// let cfg = TokenizerConfig::v1(Modality::LULC)?;
/// let lulc = Tokenizer::load(&cfg, TokenizerParts::Decoder, "TerraMind_Tokenizer_LULC.pt", Device::Cpu)?;
/// let ids = tch::Tensor::zeros([1, 14, 14], (tch::Kind::Int64, Device::Cpu)); // e.g. from TiM
/// let classes = lulc.decode_classes(&ids)?; // [1, 224, 224] uint8, classes 0..10
/// # Ok::<(), terrastream_model::Error>(())
/// ```
#[derive(Debug)]
pub struct Tokenizer {
    vs: nn::VarStore,
    cfg: TokenizerConfig,
    fsq: Fsq,
    encoder: Option<(VitEncoder, Conv2d)>,
    decoder: Option<Decoder>,
}

impl Tokenizer {
    fn build(cfg: &TokenizerConfig, parts: TokenizerParts, device: Device) -> Result<Self> {
        cfg.validate()?;
        let vit = cfg.vit();
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let latent = cfg.levels.len() as i64;
        let encoder = match parts {
            TokenizerParts::Decoder => None,
            _ => Some((
                VitEncoder::new(
                    &(&root / "encoder"),
                    &vit,
                    cfg.channels,
                    cfg.encoder_depth,
                    cfg.post_mlp,
                )?,
                Conv2d::new(&(&root / "quant_proj"), cfg.dim, latent, 1)?,
            )),
        };
        let decoder = match (parts, cfg.decoder_depth, &cfg.diffusion) {
            (TokenizerParts::Encoder, _, _) => None,
            (_, Some(depth), _) => Some(Decoder::Vit {
                post_quant_proj: Conv2d::new(&(&root / "post_quant_proj"), latent, cfg.dim, 1)?,
                vit: VitDecoder::new(&(&root / "decoder"), &vit, cfg.channels, depth, cfg.post_mlp)?,
            }),
            (_, None, Some(unet)) => Some(Decoder::Diffusion {
                unet: PatchedUNet::new(&(&root / "decoder"), unet, cfg.channels, latent)?,
                ddim: Ddim::new()?,
            }),
            (_, None, None) => return Err(not_built(cfg, "a decoder (neither decoder_depth nor diffusion is set)")),
        };
        Ok(Tokenizer {
            vs,
            cfg: cfg.clone(),
            fsq: Fsq::new(&cfg.levels),
            encoder,
            decoder,
        })
    }

    /// Loads `parts` of the tokenizer from a `.safetensors` file or a `torch.save` state dict
    /// (`.pt`, …) such as the official `TerraMind_Tokenizer_<M>.pt`. Only the keys needed are
    /// read; fails with [`Error::Checkpoint`] listing every missing and mis-shaped key.
    pub fn load(cfg: &TokenizerConfig, parts: TokenizerParts, path: impl AsRef<Path>, device: Device) -> Result<Self> {
        let model = Tokenizer::build(cfg, parts, device)?;
        let keys: HashSet<String> = model.keys().into_iter().collect();
        let tensors = weights::read_checkpoint(path.as_ref(), &|k| keys.contains(k))?;
        weights::fill(&model.vs, &tensors, path.as_ref())?;
        Ok(model)
    }

    /// A tokenizer with seeded random weights (Linear and conv weights N(0, 1/fan_in), biases
    /// N(0, 0.05²), LayerNorm weights 1 + N(0, 0.1²), `pos_emb` the 2-D sin-cos table), for
    /// benchmarks and tests that do not need the official weights.
    pub fn random(cfg: &TokenizerConfig, parts: TokenizerParts, seed: u64, device: Device) -> Result<Self> {
        let model = Tokenizer::build(cfg, parts, device)?;
        let g = cfg.image_size / cfg.patch_size;
        weights::randomize_plain(&model.vs, seed, &|name| {
            if !name.ends_with("pos_emb") {
                return Ok(None);
            }
            Ok(Some(
                crate::embedding::sincos_table(g, cfg.dim)
                    .f_reshape([1, g, g, cfg.dim])?
                    .f_permute([0, 3, 1, 2])?,
            ))
        })?;
        Ok(model)
    }

    /// The configuration.
    pub fn config(&self) -> &TokenizerConfig {
        &self.cfg
    }

    /// The device holding the weights.
    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// The checkpoint keys this tokenizer reads, sorted.
    pub fn keys(&self) -> Vec<String> {
        weights::named_tensors(&self.vs).into_iter().map(|(k, _)| k).collect()
    }

    /// The checkpoint keys that [`Tokenizer::load`] reads for `cfg` and `parts`, with the shapes
    /// it needs, sorted by key. Nothing is read; the variables are built (zeros) on the CPU.
    pub fn key_shapes(cfg: &TokenizerConfig, parts: TokenizerParts) -> Result<Vec<(String, Vec<i64>)>> {
        let model = Tokenizer::build(cfg, parts, Device::Cpu)?;
        Ok(weights::named_tensors(&model.vs)
            .into_iter()
            .map(|(k, t)| (k, t.size()))
            .collect())
    }

    /// The FSQ latents before rounding, `[B, L, H/16, W/16]` float32 (the `quant_proj` output).
    ///
    /// Input: a float `[B, C, H, W]` chip, standardized as for the TerraMind encoder, H and W
    /// multiples of 16. For LULC either class ids `[B, H, W]` / `[B, 1, H, W]` (any integer kind,
    /// values `0..10`) or a float one-hot `[B, 10, H, W]`.
    pub fn latents(&self, x: &Tensor) -> Result<Tensor> {
        output(self.latents_on_device(x)?)
    }

    /// Token ids `[B, H/16, W/16]` int64 in `0..vocab_size`, row-major over the token grid: what
    /// the reference's `tokenize` gives. Input as for [`Tokenizer::latents`].
    pub fn tokenize(&self, x: &Tensor) -> Result<Tensor> {
        let latents = self.latents_on_device(x)?;
        output(tch::no_grad(|| self.fsq.quantize(&latents))?)
    }

    fn latents_on_device(&self, x: &Tensor) -> Result<Tensor> {
        let (encoder, quant_proj) = self
            .encoder
            .as_ref()
            .ok_or_else(|| not_built(&self.cfg, "an encoder"))?;
        let x = self.prepare(x)?;
        tch::no_grad(|| quant_proj.forward(&encoder.forward(&x)?))
    }

    /// LULC decoder outputs `[B, 10, 16h, 16w]` float32, the logits of the 10 classes, for ids
    /// `[B, h, w]` (any integer kind, values in `0..vocab_size`).
    pub fn decode_logits(&self, ids: &Tensor) -> Result<Tensor> {
        output(self.decode_on_device(ids)?)
    }

    /// The LULC class map `[B, 16h, 16w]` uint8 (values `0..10`) for ids `[B, h, w]`: the argmax
    /// of [`Tokenizer::decode_logits`] over the classes. This is the whole "ids -> map" step of
    /// LULC generation.
    pub fn decode_classes(&self, ids: &Tensor) -> Result<Tensor> {
        if self.cfg.modality != Modality::LULC {
            return Err(not_built(&self.cfg, "a class-map decoder (LULC only)"));
        }
        let logits = self.decode_on_device(ids)?;
        output(tch::no_grad(|| logits.f_argmax(1, false)?.f_to_kind(Kind::Uint8))?)
    }

    fn decode_on_device(&self, ids: &Tensor) -> Result<Tensor> {
        let Some(Decoder::Vit { post_quant_proj, vit }) = &self.decoder else {
            return Err(not_built(&self.cfg, "a ViT decoder (LULC only; image modalities use decode_image)"));
        };
        let ids = self.check_ids(ids)?;
        tch::no_grad(|| {
            let codes = self.fsq.codes(&ids)?;
            vit.forward(&post_quant_proj.forward(&codes)?)
        })
    }

    /// The image `[B, C, 16h, 16w]` float32 that the diffusion decoder generates for ids
    /// `[B, h, w]` in `steps` DDIM steps (the reference default is 50; 10 is usual for maps),
    /// starting from seeded Gaussian noise. Each chip's noise depends only on `seed` and its row,
    /// so the result is the same whatever the batch. Values are standardized as the TerraMind
    /// encoder's inputs (roughly [-1, 1] after the x0 clamp); multiply by the band's std and add
    /// its mean for physical units. `16h` and `16w` must be multiples of the U-Net's depth (32
    /// px for v1, so even token grids such as 14 x 14).
    pub fn decode_image(&self, ids: &Tensor, steps: usize, seed: u64) -> Result<Tensor> {
        let (b, h, w) = ids.size3().map_err(|_| input_err(&self.cfg, "token ids B x h x w", ids))?;
        let p = self.cfg.patch_size;
        let per_chip = (self.cfg.channels * h * p * w * p) as usize;
        let mut values = Vec::with_capacity(per_chip * b.max(0) as usize);
        for row in 0..b {
            let mut rng = Rng::derive(seed, &[row as u64]);
            values.extend((0..per_chip).map(|_| rng.normal() as f32));
        }
        let noise = Tensor::from_slice(&values).f_reshape([b, self.cfg.channels, h * p, w * p])?;
        self.decode_image_from(ids, steps, &noise)
    }

    /// [`Tokenizer::decode_image`] from a given start noise `[B, C, 16h, 16w]` (e.g. the
    /// reference's, for parity checks).
    pub fn decode_image_from(&self, ids: &Tensor, steps: usize, noise: &Tensor) -> Result<Tensor> {
        let Some(Decoder::Diffusion { unet, ddim }) = &self.decoder else {
            return Err(not_built(&self.cfg, "a diffusion decoder (image modalities only; LULC uses decode_classes)"));
        };
        let ids = self.check_ids(ids)?;
        let (b, h, w) = ids.size3()?;
        let p = self.cfg.patch_size;
        let want = [b, self.cfg.channels, h * p, w * p];
        if noise.size() != want || !noise.is_floating_point() {
            return Err(input_err(&self.cfg, &format!("start noise of shape {want:?}"), noise));
        }
        let granule = unet.granule();
        if (h * p) % granule != 0 || (w * p) % granule != 0 {
            return Err(input_err(
                &self.cfg,
                &format!("a token grid whose image ({} x {} px) is a multiple of {granule} px", h * p, w * p),
                &ids,
            ));
        }
        let timesteps = Ddim::timesteps(steps)?;
        let image = tch::no_grad(|| -> Result<Tensor> {
            let codes = self.fsq.codes(&ids)?;
            let mut x = noise.f_to_kind(Kind::Float)?.f_to_device(self.device())?;
            for t in timesteps {
                let predicted = unet.forward(&x, t, &codes)?;
                x = ddim.step(&predicted, t, steps, &x)?;
            }
            Ok(x)
        })?;
        output(image)
    }

    /// Integer `[B, h, w]` ids in range, as int64 on the model's device.
    fn check_ids(&self, ids: &Tensor) -> Result<Tensor> {
        let vocab = self.fsq.codebook_size();
        let expected = format!("integer token ids B x h x w in 0..{vocab}");
        if ids.dim() != 3 || ids.is_floating_point() || ids.numel() == 0 {
            return Err(input_err(&self.cfg, &expected, ids));
        }
        let ids = ids.f_to_kind(Kind::Int64)?.f_to_device(self.device())?;
        let (lo, hi) = (ids.f_min()?.int64_value(&[]), ids.f_max()?.int64_value(&[]));
        if lo < 0 || hi >= vocab {
            return Err(input_err(&self.cfg, &expected, &ids));
        }
        Ok(ids)
    }

    /// The encoder input as a float `[B, C, H, W]` on the model's device; LULC class ids one-hot.
    fn prepare(&self, x: &Tensor) -> Result<Tensor> {
        let c = self.cfg.channels;
        let size = x.size();
        let lulc = self.cfg.modality == Modality::LULC;
        let class_ids = lulc && !x.is_floating_point() && (size.len() == 3 || (size.len() == 4 && size[1] == 1));
        let x = if class_ids {
            let expected = format!("class ids B x H x W in 0..{c}");
            if x.numel() == 0 {
                return Err(input_err(&self.cfg, &expected, x));
            }
            let ids = x.f_to_kind(Kind::Int64)?.f_to_device(self.device())?;
            let ids = if ids.dim() == 4 { ids.f_squeeze_dim(1)? } else { ids };
            let (lo, hi) = (ids.f_min()?.int64_value(&[]), ids.f_max()?.int64_value(&[]));
            if lo < 0 || hi >= c {
                return Err(input_err(&self.cfg, &expected, x));
            }
            ids.f_one_hot(c)?.f_permute([0, 3, 1, 2])?.f_to_kind(Kind::Float)?
        } else {
            if size.len() != 4 || size[1] != c || !x.is_floating_point() {
                let what = if lulc {
                    format!("integer class ids B x H x W or a float one-hot B x {c} x H x W")
                } else {
                    format!("a float B x {c} x H x W image")
                };
                return Err(input_err(&self.cfg, &what, x));
            }
            x.f_to_kind(Kind::Float)?.f_to_device(self.device())?
        };
        let (_, _, h, w) = x.size4()?;
        let p = self.cfg.patch_size;
        if h <= 0 || w <= 0 || h % p != 0 || w % p != 0 {
            return Err(Error::ChipSize { h, w });
        }
        Ok(x)
    }
}

fn not_built(cfg: &TokenizerConfig, what: &'static str) -> Error {
    Error::NotBuilt {
        modality: format!("{} (tokenizer)", cfg.modality.name()),
        what,
    }
}

fn input_err(cfg: &TokenizerConfig, expected: &str, t: &Tensor) -> Error {
    Error::InputShape {
        modality: format!("{} (tokenizer)", cfg.modality.name()),
        expected: expected.to_string(),
        found: t.size(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabularies_match_the_token_modalities() -> Result<()> {
        for m in TOKENIZED {
            let cfg = TokenizerConfig::v1(m)?;
            assert_eq!(Some(cfg.vocab_size()), cfg.token_modality().vocab_size(), "{m:?}");
            cfg.validate()?;
        }
        assert!(matches!(TokenizerConfig::v1(Modality::RGB), Err(Error::NoTokenizer(_))));
        Ok(())
    }

    #[test]
    fn bad_inputs_are_typed_errors() -> Result<()> {
        let cfg = TokenizerConfig::v1(Modality::LULC)?.with_size(8, 1, 2);
        let t = Tokenizer::random(&cfg, TokenizerParts::Both, 0, Device::Cpu)?;
        let opts = (Kind::Int64, Device::Cpu);
        let bad_class = Tensor::full([1, 16, 16], 10, opts);
        assert!(matches!(t.tokenize(&bad_class), Err(Error::InputShape { .. })));
        let bad_size = Tensor::zeros([1, 20, 16], opts);
        assert!(matches!(t.tokenize(&bad_size), Err(Error::ChipSize { h: 20, w: 16 })));
        let bad_id = Tensor::full([1, 2, 2], 4375, opts);
        assert!(matches!(t.decode_classes(&bad_id), Err(Error::InputShape { .. })));
        let float_ids = Tensor::zeros([1, 2, 2], (Kind::Float, Device::Cpu));
        assert!(matches!(t.decode_classes(&float_ids), Err(Error::InputShape { .. })));
        assert_eq!(t.decode_classes(&Tensor::zeros([1, 2, 2], opts))?.size(), [1, 32, 32]);

        let tiny_unet = UNetConfig {
            model_channels: 32,
            num_res_blocks: 1,
            attention_resolutions: vec![2],
            channel_mult: vec![1, 1, 1, 1],
            patch_size: 4,
        };
        let s2 = TokenizerConfig::v1(Modality::S2L2A)?.with_size(8, 1, 2).with_unet(tiny_unet);
        let dec = Tokenizer::random(&s2, TokenizerParts::Decoder, 0, Device::Cpu)?;
        assert!(matches!(dec.decode_logits(&Tensor::zeros([1, 1, 1], opts)), Err(Error::NotBuilt { .. })));
        assert!(matches!(t.decode_image(&Tensor::zeros([1, 2, 2], opts), 2, 0), Err(Error::NotBuilt { .. })));
        // Seeded: the same seed gives the same image, another seed another one.
        let ids = Tensor::from_slice(&[0i64, 1, 15359, 77]).reshape([1, 2, 2]);
        let a = dec.decode_image(&ids, 2, 5)?;
        assert_eq!(a.size(), [1, 12, 32, 32]);
        assert!(a.equal(&dec.decode_image(&ids, 2, 5)?));
        assert!(!a.equal(&dec.decode_image(&ids, 2, 6)?));
        // A chip's noise does not depend on the batch it is in.
        let two = dec.decode_image(&Tensor::cat(&[&ids, &ids.zeros_like()], 0), 2, 5)?;
        assert!(two.get(0).allclose(&a.get(0), 1e-5, 1e-5, false));
        // Four levels halve the 4-px patch grid three times: images must be multiples of 32 px.
        let odd = Tensor::zeros([1, 1, 2], opts);
        assert!(matches!(dec.decode_image(&odd, 1, 0), Err(Error::InputShape { .. })));
        assert!(matches!(dec.decode_image(&ids, 0, 0), Err(Error::Config(_))));
        let noise = Tensor::zeros([1, 12, 16, 16], (Kind::Float, Device::Cpu));
        assert!(matches!(dec.decode_image_from(&ids, 2, &noise), Err(Error::InputShape { .. })));
        let enc = Tokenizer::random(&s2, TokenizerParts::Encoder, 0, Device::Cpu)?;
        let wrong_bands = Tensor::zeros([1, 3, 16, 16], (Kind::Float, Device::Cpu));
        assert!(matches!(enc.tokenize(&wrong_bands), Err(Error::InputShape { .. })));
        assert!(matches!(
            enc.decode_logits(&Tensor::zeros([1, 1, 1], opts)),
            Err(Error::NotBuilt { .. })
        ));
        Ok(())
    }
}
