//! `nn.Conv2d` with a square kernel and stride equal to the kernel (patch projections, 1x1
//! projections): keys `<p>.weight` `[out, in, k, k]` and `<p>.bias` `[out]`.

use tch::{Tensor, nn};

use crate::Result;

/// Non-overlapping convolution: `[B, in, H, W] -> [B, out, H/k, W/k]`.
#[derive(Debug)]
pub(crate) struct Conv2d {
    weight: Tensor,
    bias: Tensor,
    kernel: i64,
}

impl Conv2d {
    pub(crate) fn new(p: &nn::Path, in_dim: i64, out_dim: i64, kernel: i64) -> Result<Self> {
        Ok(Conv2d {
            weight: p.f_zeros_no_train("weight", &[out_dim, in_dim, kernel, kernel])?,
            bias: p.f_zeros_no_train("bias", &[out_dim])?,
            kernel,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let k = self.kernel;
        Ok(x.f_conv2d(&self.weight, Some(&self.bias), [k, k], [0, 0], [1, 1], 1)?)
    }
}
