//! `encoder_embeddings.tok_<m>@224`: `token_emb.weight` `[V, D]`, `mod_emb`, `pos_emb`.

use tch::{Tensor, nn};

use super::PosEmb;
use crate::{Config, Result};

/// Token ids on the grid to tokens: `x = token_emb[ids]`.
#[derive(Debug)]
pub(crate) struct TokenEmbedding {
    token_emb: Tensor,
    mod_emb: Tensor,
    pos_emb: PosEmb,
}

impl TokenEmbedding {
    pub(crate) fn new(p: &nn::Path, cfg: &Config, vocab: i64) -> Result<Self> {
        Ok(TokenEmbedding {
            token_emb: (p / "token_emb").f_zeros_no_train("weight", &[vocab, cfg.dim])?,
            mod_emb: p.f_zeros_no_train("mod_emb", &[1, 1, cfg.dim])?,
            pos_emb: PosEmb::new(p, cfg)?,
        })
    }

    /// `[B, h, w]` (or `[B, N]`) int64 ids `-> [B, N, D]`.
    pub(crate) fn lookup(&self, ids: &Tensor) -> Result<Tensor> {
        let b = ids.size().first().copied().unwrap_or(0);
        Ok(Tensor::f_embedding(
            &self.token_emb,
            &ids.f_reshape([b, -1])?,
            -1,
            false,
            false,
        )?)
    }

    /// `pos_emb + mod_emb` on a `gh x gw` grid.
    pub(crate) fn emb(&self, gh: i64, gw: i64) -> Result<Tensor> {
        Ok(self.pos_emb.get(gh, gw)?.f_add(&self.mod_emb)?)
    }
}
