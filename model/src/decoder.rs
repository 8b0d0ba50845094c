//! The TiM decoder: `decoder_proj_context`, `mask_token`, blocks `decoder.<i>`, `decoder_norm`
//! and one `decoder_embeddings.<key>` per target modality.

use tch::{Tensor, nn};

use crate::embedding::DecoderEmbedding;
use crate::layers::{DecoderBlock, LayerNorm, Linear};
use crate::{Config, Error, Modality, Result};

/// Decodes masked target queries against the encoder context into vocabulary logits.
#[derive(Debug)]
pub(crate) struct Decoder {
    proj_context: Linear,
    mask_token: Tensor,
    blocks: Vec<DecoderBlock>,
    norm: LayerNorm,
    targets: Vec<(Modality, DecoderEmbedding)>,
}

impl Decoder {
    /// `root` is the checkpoint root; `targets` are token modalities.
    pub(crate) fn new(root: &nn::Path, cfg: &Config, targets: &[Modality]) -> Result<Self> {
        let p = root / "decoder";
        let emb = root / "decoder_embeddings";
        let targets = targets
            .iter()
            .map(|&m| {
                let vocab = m.vocab_size().ok_or(Error::NotBuilt {
                    modality: m.name().to_string(),
                    what: "a token vocabulary (TiM targets must be token modalities)",
                })?;
                Ok((m, DecoderEmbedding::new(&(&emb / m.key()), cfg, vocab)?))
            })
            .collect::<Result<_>>()?;
        Ok(Decoder {
            proj_context: Linear::new(&(root / "decoder_proj_context"), cfg.dim, cfg.dim, true)?,
            mask_token: root.f_zeros_no_train("mask_token", &[1, 1, cfg.dim])?,
            blocks: (0..cfg.decoder_depth)
                .map(|i| DecoderBlock::new(&(&p / i), cfg))
                .collect::<Result<_>>()?,
            norm: LayerNorm::new(&(root / "decoder_norm"), cfg)?,
            targets,
        })
    }

    /// The target modalities this decoder can generate.
    pub(crate) fn targets(&self) -> impl Iterator<Item = Modality> + '_ {
        self.targets.iter().map(|(m, _)| *m)
    }

    fn target(&self, modality: Modality) -> Result<&DecoderEmbedding> {
        self.targets
            .iter()
            .find(|(m, _)| *m == modality)
            .map(|(_, e)| e)
            .ok_or(Error::NotBuilt {
                modality: modality.name().to_string(),
                what: "a TiM decoder embedding",
            })
    }

    /// `decoder_proj_context(encoder output) + emb`, the decoder's cross-attention context.
    pub(crate) fn context(&self, encoded: &Tensor, emb: &Tensor) -> Result<Tensor> {
        Ok(self.proj_context.forward(encoded)?.f_add(emb)?)
    }

    /// Logits `[B, K, V]` of `target` at the grid positions `positions` (`[K]` int64 on the
    /// model device) of a `gh x gw` grid.
    pub(crate) fn logits(
        &self,
        target: Modality,
        context: &Tensor,
        positions: &Tensor,
        (gh, gw): (i64, i64),
    ) -> Result<Tensor> {
        let emb = self.target(target)?;
        let b = context.size().first().copied().unwrap_or(1);
        let queries = emb
            .emb(gh, gw)?
            .f_index_select(1, positions)?
            .f_add(&self.mask_token)?;
        let mut y = queries.f_expand([b, -1, -1], false)?.f_contiguous()?;
        for block in &self.blocks {
            y = block.forward(&y, context)?;
        }
        emb.logits(&self.norm.forward(&y)?)
    }
}
