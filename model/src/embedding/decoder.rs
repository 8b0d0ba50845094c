//! `decoder_embeddings.tok_<m>@224`: `to_logits.weight` `[V, D]` (no bias), `mod_emb`, `pos_emb`.
//! The checkpoint's `token_emb.weight` is tied to `to_logits.weight` and not needed here.

use tch::{Tensor, nn};

use super::PosEmb;
use crate::{Config, Result};

/// TiM target queries (`pos_emb + mod_emb`) and the output projection to vocabulary logits.
#[derive(Debug)]
pub(crate) struct DecoderEmbedding {
    to_logits: Tensor,
    mod_emb: Tensor,
    pos_emb: PosEmb,
}

impl DecoderEmbedding {
    pub(crate) fn new(p: &nn::Path, cfg: &Config, vocab: i64) -> Result<Self> {
        Ok(DecoderEmbedding {
            to_logits: (p / "to_logits").f_zeros_no_train("weight", &[vocab, cfg.dim])?,
            mod_emb: p.f_zeros_no_train("mod_emb", &[1, 1, cfg.dim])?,
            pos_emb: PosEmb::new(p, cfg)?,
        })
    }

    /// `pos_emb + mod_emb` on a `gh x gw` grid, `[1, N, D]`.
    pub(crate) fn emb(&self, gh: i64, gw: i64) -> Result<Tensor> {
        Ok(self.pos_emb.get(gh, gw)?.f_add(&self.mod_emb)?)
    }

    /// `[B, M, D] -> [B, M, V]`.
    pub(crate) fn logits(&self, y: &Tensor) -> Result<Tensor> {
        Ok(y.f_linear(&self.to_logits, None::<&Tensor>)?)
    }
}
