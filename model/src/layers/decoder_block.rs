//! Decoder block `decoder.<i>`: `{norm1, self_attn, query_norm, context_norm, cross_attn, norm2,
//! mlp}`.

use tch::{Tensor, nn};

use super::{Attention, CrossAttention, LayerNorm, Mlp};
use crate::{Config, Result};

/// Pre-norm decoder block with self-attention, cross-attention on the context, and MLP.
#[derive(Debug)]
pub(crate) struct DecoderBlock {
    norm1: LayerNorm,
    self_attn: Attention,
    query_norm: LayerNorm,
    context_norm: LayerNorm,
    cross_attn: CrossAttention,
    norm2: LayerNorm,
    mlp: Mlp,
}

impl DecoderBlock {
    pub(crate) fn new(p: &nn::Path, cfg: &Config) -> Result<Self> {
        Ok(DecoderBlock {
            norm1: LayerNorm::new(&(p / "norm1"), cfg)?,
            self_attn: Attention::new(&(p / "self_attn"), cfg)?,
            query_norm: LayerNorm::new(&(p / "query_norm"), cfg)?,
            context_norm: LayerNorm::new(&(p / "context_norm"), cfg)?,
            cross_attn: CrossAttention::new(&(p / "cross_attn"), cfg)?,
            norm2: LayerNorm::new(&(p / "norm2"), cfg)?,
            mlp: Mlp::new(&(p / "mlp"), cfg)?,
        })
    }

    /// `y += self_attn(norm1 y)`, `y += cross_attn(query_norm y, context_norm c)`,
    /// `y += mlp(norm2 y)`.
    pub(crate) fn forward(&self, y: &Tensor, context: &Tensor) -> Result<Tensor> {
        let y = y.f_add(&self.self_attn.forward(&self.norm1.forward(y)?)?)?;
        let c = self.context_norm.forward(context)?;
        let y = y.f_add(&self.cross_attn.forward(&self.query_norm.forward(&y)?, &c)?)?;
        Ok(y.f_add(&self.mlp.forward(&self.norm2.forward(&y)?)?)?)
    }
}
