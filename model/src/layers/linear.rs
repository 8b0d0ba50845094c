//! `nn.Linear`: keys `<p>.weight` `[out, in]` and optionally `<p>.bias` `[out]`.

use tch::{Tensor, nn};

use crate::Result;

/// `y = x Wᵀ + b`.
#[derive(Debug)]
pub(crate) struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    pub(crate) fn new(p: &nn::Path, in_dim: i64, out_dim: i64, bias: bool) -> Result<Self> {
        Ok(Linear {
            weight: p.f_zeros_no_train("weight", &[out_dim, in_dim])?,
            bias: if bias {
                Some(p.f_zeros_no_train("bias", &[out_dim])?)
            } else {
                None
            },
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_linear(&self.weight, self.bias.as_ref())?)
    }
}
