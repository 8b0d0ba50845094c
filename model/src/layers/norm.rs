//! LayerNorm with eps 1e-6: keys `<p>.weight` and `<p>.bias` (a zero buffer in the checkpoint).

use tch::{Tensor, nn};

use crate::{Config, Result};

/// `LN(x) = (x - mean) / sqrt(var + eps) * weight + bias` over the last dimension.
#[derive(Debug)]
pub(crate) struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    dim: i64,
    eps: f64,
}

impl LayerNorm {
    pub(crate) fn new(p: &nn::Path, cfg: &Config) -> Result<Self> {
        Ok(LayerNorm {
            weight: p.f_zeros_no_train("weight", &[cfg.dim])?,
            bias: p.f_zeros_no_train("bias", &[cfg.dim])?,
            dim: cfg.dim,
            eps: cfg.layer_norm_eps,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_layer_norm(
            [self.dim],
            Some(&self.weight),
            Some(&self.bias),
            self.eps,
            true,
        )?)
    }
}
