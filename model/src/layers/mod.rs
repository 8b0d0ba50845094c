//! Transformer building blocks, one per file, each created from an `nn::Path` whose tree equals
//! the checkpoint's key tree.

mod attention;
mod block;
mod conv;
mod decoder_block;
mod linear;
mod mlp;
mod norm;

pub(crate) use attention::{Attention, CrossAttention};
pub(crate) use block::Block;
pub(crate) use conv::Conv2d;
pub(crate) use decoder_block::DecoderBlock;
pub(crate) use linear::Linear;
pub(crate) use mlp::Mlp;
pub(crate) use norm::LayerNorm;
