//! The feed-forward block: GELU `mlp.fc1/fc2` (tiny, small) or SwiGLU `mlp.fc1/fc3/fc2`
//! (base, large).

use tch::{Tensor, nn};

use super::Linear;
use crate::{Config, MlpKind, Result};

#[derive(Debug)]
pub(crate) enum Mlp {
    /// `fc2(GELU(fc1 x))`, exact erf GELU.
    Gelu { fc1: Linear, fc2: Linear },
    /// `fc2(SiLU(fc1 x) * fc3 x)`.
    SwiGlu {
        fc1: Linear,
        fc2: Linear,
        fc3: Linear,
    },
}

impl Mlp {
    pub(crate) fn new(p: &nn::Path, cfg: &Config) -> Result<Self> {
        let (d, h, bias) = (cfg.dim, cfg.mlp_hidden, cfg.mlp_bias);
        let fc1 = Linear::new(&(p / "fc1"), d, h, bias)?;
        let fc2 = Linear::new(&(p / "fc2"), h, d, bias)?;
        Ok(match cfg.mlp {
            MlpKind::Gelu => Mlp::Gelu { fc1, fc2 },
            MlpKind::Swiglu => Mlp::SwiGlu {
                fc1,
                fc2,
                fc3: Linear::new(&(p / "fc3"), d, h, bias)?,
            },
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Mlp::Gelu { fc1, fc2 } => fc2.forward(&fc1.forward(x)?.f_gelu("none")?),
            Mlp::SwiGlu { fc1, fc2, fc3 } => {
                fc2.forward(&fc1.forward(x)?.f_silu()?.f_mul(&fc3.forward(x)?)?)
            }
        }
    }
}
