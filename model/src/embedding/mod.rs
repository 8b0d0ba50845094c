//! Modality embeddings: `encoder_embeddings.<key>` (image patches or token ids) and
//! `decoder_embeddings.<key>` (TiM queries and logits), plus the 2-D sin-cos positions.

mod decoder;
mod image;
mod pos;
mod tokens;

pub(crate) use decoder::DecoderEmbedding;
pub(crate) use image::ImageEmbedding;
pub(crate) use pos::{PosEmb, sincos_table};
pub(crate) use tokens::TokenEmbedding;

use tch::{Tensor, nn};

use crate::{Config, Modality, ModalityKind, Result};

/// `encoder_embeddings.<key>`: turns one modality into `x` (patch projection or token lookup,
/// `[B, N, D]`) and `emb` (positional + modality embedding, `[1, N, D]`).
#[derive(Debug)]
pub(crate) enum EncoderEmbedding {
    Image(ImageEmbedding),
    Tokens(TokenEmbedding),
}

impl EncoderEmbedding {
    pub(crate) fn new(p: &nn::Path, cfg: &Config, modality: Modality) -> Result<Self> {
        let p = p / modality.key();
        Ok(match modality.kind() {
            ModalityKind::Image { channels } => {
                EncoderEmbedding::Image(ImageEmbedding::new(&p, cfg, channels)?)
            }
            ModalityKind::Tokens { vocab } => {
                EncoderEmbedding::Tokens(TokenEmbedding::new(&p, cfg, vocab)?)
            }
        })
    }

    /// `(x, emb)` for an input on a `gh x gw` token grid.
    pub(crate) fn forward(&self, input: &Tensor, gh: i64, gw: i64) -> Result<(Tensor, Tensor)> {
        match self {
            EncoderEmbedding::Image(e) => Ok((e.project(input)?, e.emb(gh, gw)?)),
            EncoderEmbedding::Tokens(e) => Ok((e.lookup(input)?, e.emb(gh, gw)?)),
        }
    }
}
