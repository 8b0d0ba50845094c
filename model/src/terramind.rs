//! The TerraMind v1 model: encoder embeddings, encoder, and (for TiM) the decoder.

use std::path::Path;

use tch::{Device, Kind, Tensor, nn};

use crate::decoder::Decoder;
use crate::embedding::EncoderEmbedding;
use crate::encoder::Encoder;
use crate::input::Batch;
use crate::{Config, Error, Merge, Modality, Precision, Result, weights};

/// TerraMind v1 with the embeddings of a chosen set of modalities and, optionally, the TiM
/// decoder for a set of target modalities.
///
/// The variables are named exactly as the official checkpoint's keys
/// (`encoder_embeddings.untok_sen2l2a@224.proj.weight`, `encoder.3.attn.qkv.weight`, …) and
/// only those the configuration needs are created. All forward methods run under
/// `tch::no_grad`, take `(Modality, Tensor)` inputs (images `B x C x H x W` float, standardized,
/// H and W multiples of 16; token modalities `B x h x w` int64 ids), and return CPU float32
/// tensors.
#[derive(Debug)]
pub struct TerraMind {
    vs: nn::VarStore,
    cfg: Config,
    embeddings: Vec<(Modality, EncoderEmbedding)>,
    encoder: Encoder,
    pub(crate) decoder: Option<Decoder>,
    precision: Precision,
    batch_size: usize,
}

/// Moves an output to the CPU, floats as float32 (ids stay int64).
pub(crate) fn output(t: Tensor) -> Result<Tensor> {
    let t = t.f_to_device(Device::Cpu)?;
    Ok(if t.is_floating_point() {
        t.f_to_kind(Kind::Float)?
    } else {
        t
    })
}

impl TerraMind {
    fn build(
        cfg: &Config,
        modalities: &[Modality],
        tim: &[Modality],
        device: Device,
    ) -> Result<Self> {
        cfg.validate()?;
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let mut encoder_modalities: Vec<Modality> = Vec::new();
        for &m in modalities.iter().chain(tim) {
            if !encoder_modalities.contains(&m) {
                encoder_modalities.push(m);
            }
        }
        let emb = &root / "encoder_embeddings";
        let embeddings = encoder_modalities
            .iter()
            .map(|&m| Ok((m, EncoderEmbedding::new(&emb, cfg, m)?)))
            .collect::<Result<_>>()?;
        let encoder = Encoder::new(&root, cfg)?;
        let mut targets: Vec<Modality> = Vec::new();
        for &t in tim {
            if !targets.contains(&t) {
                targets.push(t);
            }
        }
        let decoder = if targets.is_empty() {
            None
        } else {
            Some(Decoder::new(&root, cfg, &targets)?)
        };
        Ok(TerraMind {
            vs,
            cfg: cfg.clone(),
            embeddings,
            encoder,
            decoder,
            precision: Precision::F32,
            batch_size: usize::MAX,
        })
    }

    /// Loads the encoder for `modalities` from a checkpoint: a `.safetensors` file or a PyTorch
    /// state dict saved with `torch.save` (`.pt`, `.pth`, `.bin`, `.ckpt`), such as the official
    /// `TerraMind_v1_<variant>.pt`. Only the keys the model needs are read; other keys are
    /// ignored. Fails with [`Error::Checkpoint`] listing every missing and mis-shaped key.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use terrastream_model::{Config, Modality, TerraMind};
    /// let model = TerraMind::load(
    ///     &Config::variant("base")?,
    ///     &[Modality::S2L2A, Modality::S1GRD],
    ///     "TerraMind_v1_base.pt",
    ///     tch::Device::cuda_if_available(),
    /// )?;
    /// # Ok::<(), terrastream_model::Error>(())
    /// ```
    pub fn load(
        cfg: &Config,
        modalities: &[Modality],
        path: impl AsRef<Path>,
        device: Device,
    ) -> Result<Self> {
        TerraMind::load_with_tim(cfg, modalities, &[], path, device)
    }

    /// As [`TerraMind::load`], with the TiM decoder for the token modalities `tim` (e.g.
    /// `[Modality::LULC]`) and their encoder token embeddings.
    pub fn load_with_tim(
        cfg: &Config,
        modalities: &[Modality],
        tim: &[Modality],
        path: impl AsRef<Path>,
        device: Device,
    ) -> Result<Self> {
        let model = TerraMind::build(cfg, modalities, tim, device)?;
        let keys: std::collections::HashSet<String> = model.keys().into_iter().collect();
        let tensors = weights::read_checkpoint(path.as_ref(), &|k| keys.contains(k))?;
        weights::fill(&model.vs, &tensors, path.as_ref())?;
        Ok(model)
    }

    /// As [`TerraMind::load`], from a checkpoint that stores the model's keys under `prefix`
    /// (`model.encoder.` in a terratorch fine-tuning checkpoint); other keys are ignored.
    pub fn load_prefixed(
        cfg: &Config,
        modalities: &[Modality],
        path: impl AsRef<Path>,
        prefix: &str,
        device: Device,
    ) -> Result<Self> {
        let model = TerraMind::build(cfg, modalities, &[], device)?;
        let keys: std::collections::HashSet<String> = model.keys().into_iter().collect();
        let tensors = weights::read_prefixed(path.as_ref(), prefix, &keys)?;
        weights::fill(&model.vs, &tensors, path.as_ref())?;
        Ok(model)
    }

    /// A model with random weights drawn as the parity fixtures' README describes, reproducibly
    /// from `seed` (with a generator of this crate, not libtorch's global one).
    pub fn random(
        cfg: &Config,
        modalities: &[Modality],
        seed: u64,
        device: Device,
    ) -> Result<Self> {
        TerraMind::random_with_tim(cfg, modalities, &[], seed, device)
    }

    /// As [`TerraMind::random`], with the TiM decoder for `tim`.
    pub fn random_with_tim(
        cfg: &Config,
        modalities: &[Modality],
        tim: &[Modality],
        seed: u64,
        device: Device,
    ) -> Result<Self> {
        let model = TerraMind::build(cfg, modalities, tim, device)?;
        weights::randomize(&model.vs, cfg, seed)?;
        Ok(model)
    }

    /// Writes the model's variables, under their checkpoint keys, to a safetensors file.
    pub fn save_safetensors(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let tensors = self.named_weights()?;
        Tensor::write_safetensors(&tensors, path).map_err(|source| Error::Read {
            path: path.into(),
            source,
        })
    }

    /// Every variable as `(checkpoint key, float32 CPU tensor)`, sorted by key.
    pub(crate) fn named_weights(&self) -> Result<Vec<(String, Tensor)>> {
        weights::named_tensors(&self.vs)
            .into_iter()
            .map(|(k, t)| Ok((k, output(t)?)))
            .collect()
    }

    /// The checkpoint keys this model reads, sorted.
    pub fn keys(&self) -> Vec<String> {
        weights::named_tensors(&self.vs)
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The device holding the weights.
    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// The modalities the encoder can embed (inputs, then TiM targets).
    pub fn modalities(&self) -> Vec<Modality> {
        self.embeddings.iter().map(|(m, _)| *m).collect()
    }

    /// The TiM targets this model can generate.
    pub fn tim_targets(&self) -> Vec<Modality> {
        self.decoder
            .as_ref()
            .map(|d| d.targets().collect())
            .unwrap_or_default()
    }

    /// The number of input channels `modality` currently takes (after [`TerraMind::with_bands`]).
    pub fn channels(&self, modality: Modality) -> Option<i64> {
        self.embeddings
            .iter()
            .find(|(m, _)| *m == modality)
            .and_then(|(_, e)| match e {
                EncoderEmbedding::Image(e) => Some(e.channels()),
                EncoderEmbedding::Tokens(_) => None,
            })
    }

    /// Restricts the image modality `modality` to a subset of its pre-trained bands, in the
    /// given order (e.g. `["RED", "GREEN", "BLUE", "NIR_BROAD"]` or `["B04", "B03", "B02",
    /// "B08"]` for S2L2A): its patch projection keeps the matching columns, as terratorch's
    /// `bands=` argument does. Inputs of that modality then have `bands.len()` channels.
    pub fn with_bands(mut self, modality: Modality, bands: &[&str]) -> Result<Self> {
        let index = bands
            .iter()
            .map(|b| Ok(modality.band_index(b)? as i64))
            .collect::<Result<Vec<_>>>()?;
        if index.is_empty() {
            return Err(Error::Config(format!("no band selected for {modality}")));
        }
        let emb = self
            .embeddings
            .iter_mut()
            .find(|(m, _)| *m == modality)
            .map(|(_, e)| e);
        match emb {
            Some(EncoderEmbedding::Image(e)) => tch::no_grad(|| e.select_bands(&index))?,
            _ => {
                return Err(Error::NotBuilt {
                    modality: modality.name().to_string(),
                    what: "an image encoder embedding",
                });
            }
        }
        Ok(self)
    }

    /// Converts weights and activations to `precision` (bf16 / fp16 are meant for CUDA).
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.vs.set_kind(precision.kind());
        self.precision = precision;
        self
    }

    /// The precision of weights and activations.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Runs inputs of more than `batch_size` rows in consecutive pieces of that size, bounding
    /// activation memory; outputs are concatenated back. Default: unlimited.
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// The current batch size limit.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    pub(crate) fn batch(&self, inputs: &[(Modality, Tensor)]) -> Result<Batch> {
        Batch::new(
            inputs,
            &self.embeddings,
            self.cfg.patch_size,
            self.device(),
            self.precision.kind(),
        )
    }

    /// Runs `f` on pieces of at most `batch_size` rows under `no_grad`, concatenating every
    /// output along the batch dimension.
    pub(crate) fn chunked<F>(&self, inputs: &[(Modality, Tensor)], f: F) -> Result<Vec<Tensor>>
    where
        F: Fn(&Batch, i64) -> Result<Vec<Tensor>>,
    {
        let batch = self.batch(inputs)?;
        tch::no_grad(|| {
            let mut pieces: Vec<Vec<Tensor>> = Vec::new();
            let mut offset = 0;
            for chunk in batch.chunks(self.batch_size)? {
                pieces.push(
                    f(&chunk, offset)?
                        .into_iter()
                        .map(output)
                        .collect::<Result<_>>()?,
                );
                offset += chunk.batch;
            }
            if pieces.len() == 1 {
                return Ok(pieces.pop().unwrap_or_default());
            }
            let n = pieces.first().map_or(0, Vec::len);
            (0..n)
                .map(|i| {
                    Ok(Tensor::f_cat(
                        &pieces.iter().map(|p| &p[i]).collect::<Vec<_>>(),
                        0,
                    )?)
                })
                .collect()
        })
    }

    /// `(x + emb, emb)` of every input, concatenated in input order: the encoder input and the
    /// positional + modality part alone, `[B, M·N, D]` each.
    pub(crate) fn embed_batch(&self, batch: &Batch) -> Result<(Tensor, Tensor)> {
        let (gh, gw) = batch.grid;
        let mut xs = Vec::with_capacity(batch.items.len());
        let mut embs = Vec::with_capacity(batch.items.len());
        for (m, t) in &batch.items {
            let emb = self.embedding(*m)?;
            let (x, e) = emb.forward(t, gh, gw)?;
            xs.push(x.f_add(&e)?);
            embs.push(e.f_expand([batch.batch, -1, -1], false)?);
        }
        Ok((Tensor::f_cat(&xs, 1)?, Tensor::f_cat(&embs, 1)?))
    }

    pub(crate) fn embedding(&self, modality: Modality) -> Result<&EncoderEmbedding> {
        self.embeddings
            .iter()
            .find(|(m, _)| *m == modality)
            .map(|(_, e)| e)
            .ok_or(Error::NotBuilt {
                modality: modality.name().to_string(),
                what: "an encoder embedding",
            })
    }

    pub(crate) fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// The encoder input `[B, M·N, D]`: per modality the patch projection (or token lookup)
    /// plus `pos_emb` and `mod_emb`, concatenated in input order (fixture key `embed`).
    pub fn embed_tokens(&self, inputs: &[(Modality, Tensor)]) -> Result<Tensor> {
        let mut out = self.chunked(inputs, |b, _| Ok(vec![self.embed_batch(b)?.0]))?;
        out.pop().ok_or(Error::NoInputs)
    }

    /// The output of every encoder block, `[B, M·N, D]` each, modalities concatenated in input
    /// order; only the last one is normed (terratorch's `merge_method=None`, fixture keys
    /// `layer_{i}`).
    pub fn forward_layers(&self, inputs: &[(Modality, Tensor)]) -> Result<Vec<Tensor>> {
        self.chunked(inputs, |b, _| {
            self.encoder.forward_layers(&self.embed_batch(b)?.0)
        })
    }

    /// Every encoder layer merged with `merge` (terratorch's backbone output list).
    pub fn encode_layers(
        &self,
        inputs: &[(Modality, Tensor)],
        merge: Merge,
    ) -> Result<Vec<Tensor>> {
        let m = inputs.len() as i64;
        self.chunked(inputs, |b, _| {
            self.encoder
                .forward_layers(&self.embed_batch(b)?.0)?
                .iter()
                .map(|l| merge.apply(l, m))
                .collect()
        })
    }

    /// The normed last layer merged with `merge`: `[B, N, D]` for [`Merge::Mean`] (fixture key
    /// `mean_last`) and [`Merge::Max`], `[B, N, M·D]` for [`Merge::Concat`], `[B, M·N, D]` for
    /// [`Merge::None`].
    pub fn encode(&self, inputs: &[(Modality, Tensor)], merge: Merge) -> Result<Tensor> {
        let m = inputs.len() as i64;
        let mut out = self.chunked(inputs, |b, _| {
            Ok(vec![merge.apply(
                &self.encoder.forward(&self.embed_batch(b)?.0)?,
                m,
            )?])
        })?;
        out.pop().ok_or(Error::NoInputs)
    }

    /// The normed last layer split per modality, `[B, N, D]` each, in input order
    /// (terratorch's `merge_method='dict'`).
    pub fn encode_per_modality(
        &self,
        inputs: &[(Modality, Tensor)],
    ) -> Result<Vec<(Modality, Tensor)>> {
        let last = self.encode(inputs, Merge::None)?;
        let chunks = last.f_chunk(inputs.len() as i64, 1)?;
        Ok(inputs.iter().map(|(m, _)| *m).zip(chunks).collect())
    }

    /// The per-chip embedding that the pipeline stores: the normed last layer averaged over the
    /// input modalities ([`Merge::Mean`]) and then over the `N` token positions, `[B, D]`
    /// float32 on the CPU.
    pub fn embed_pooled(&self, inputs: &[(Modality, Tensor)]) -> Result<Tensor> {
        Ok(self
            .encode(inputs, Merge::Mean)?
            .f_mean_dim(1, false, None)?)
    }
}
