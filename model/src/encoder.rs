//! The encoder trunk: blocks `encoder.<i>` and the final norm `encoder_norm`.

use tch::{Tensor, nn};

use crate::layers::{Block, LayerNorm};
use crate::{Config, Result};

/// `depth` pre-norm blocks; only the last output is normed.
#[derive(Debug)]
pub(crate) struct Encoder {
    blocks: Vec<Block>,
    norm: LayerNorm,
}

impl Encoder {
    /// `root` is the checkpoint root (keys `encoder.<i>.*` and `encoder_norm.*`).
    pub(crate) fn new(root: &nn::Path, cfg: &Config) -> Result<Self> {
        let p = root / "encoder";
        Ok(Encoder {
            blocks: (0..cfg.encoder_depth)
                .map(|i| Block::new(&(&p / i), cfg))
                .collect::<Result<_>>()?,
            norm: LayerNorm::new(&(root / "encoder_norm"), cfg)?,
        })
    }

    /// The output of every block; the last one passes through `encoder_norm`.
    pub(crate) fn forward_layers(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let mut out: Vec<Tensor> = Vec::with_capacity(self.blocks.len());
        for block in &self.blocks {
            let next = block.forward(out.last().unwrap_or(x))?;
            out.push(next);
        }
        if let Some(last) = out.last_mut() {
            *last = self.norm.forward(last)?;
        }
        Ok(out)
    }

    /// Only the normed last layer, without keeping the intermediate ones.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.shallow_clone();
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        self.norm.forward(&x)
    }
}
