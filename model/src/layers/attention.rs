//! Multi-head self-attention (`attn.qkv`, `attn.proj`) and cross-attention (`cross_attn.q`,
//! `cross_attn.kv`, `cross_attn.proj`), without masks.

use tch::{Tensor, nn};

use super::Linear;
use crate::{Config, Result};

/// `[B, N, D] -> [B, H, N, D/H]`: heads are contiguous slices of the features.
fn heads(x: &Tensor, num_heads: i64) -> Result<Tensor> {
    let (b, n, d) = x.size3()?;
    Ok(x.f_reshape([b, n, num_heads, d / num_heads])?
        .f_transpose(1, 2)?)
}

/// `softmax(q kᵀ / sqrt(D/H)) v`, heads merged back to `[B, N, D]`.
fn attend(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    let y =
        Tensor::f_scaled_dot_product_attention(q, k, v, None::<Tensor>, 0.0, false, None, false)?;
    let (b, h, n, hd) = y.size4()?;
    Ok(y.f_transpose(1, 2)?.f_reshape([b, n, h * hd])?)
}

/// Self-attention: `qkv` rows are `[q; k; v]`.
#[derive(Debug)]
pub(crate) struct Attention {
    qkv: Linear,
    proj: Linear,
    num_heads: i64,
}

impl Attention {
    pub(crate) fn new(p: &nn::Path, cfg: &Config) -> Result<Self> {
        Ok(Attention {
            qkv: Linear::new(&(p / "qkv"), cfg.dim, 3 * cfg.dim, cfg.qkv_bias)?,
            proj: Linear::new(&(p / "proj"), cfg.dim, cfg.dim, cfg.proj_bias)?,
            num_heads: cfg.num_heads,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let qkv = self.qkv.forward(x)?.f_chunk(3, -1)?;
        let [q, k, v] = [&qkv[0], &qkv[1], &qkv[2]].map(|t| heads(t, self.num_heads));
        self.proj.forward(&attend(&q?, &k?, &v?)?)
    }
}

/// Cross-attention of decoder queries on the encoder context: `kv` rows are `[k; v]`.
#[derive(Debug)]
pub(crate) struct CrossAttention {
    q: Linear,
    kv: Linear,
    proj: Linear,
    num_heads: i64,
}

impl CrossAttention {
    pub(crate) fn new(p: &nn::Path, cfg: &Config) -> Result<Self> {
        Ok(CrossAttention {
            q: Linear::new(&(p / "q"), cfg.dim, cfg.dim, cfg.qkv_bias)?,
            kv: Linear::new(&(p / "kv"), cfg.dim, 2 * cfg.dim, cfg.qkv_bias)?,
            proj: Linear::new(&(p / "proj"), cfg.dim, cfg.dim, cfg.proj_bias)?,
            num_heads: cfg.num_heads,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor, context: &Tensor) -> Result<Tensor> {
        let q = heads(&self.q.forward(x)?, self.num_heads)?;
        let kv = self.kv.forward(context)?.f_chunk(2, -1)?;
        let (k, v) = (
            heads(&kv[0], self.num_heads)?,
            heads(&kv[1], self.num_heads)?,
        );
        self.proj.forward(&attend(&q, &k, &v)?)
    }
}
