//! TerraMind v1 in `tch`: the encoder of every variant and modality, official checkpoint loading,
//! and Thinking-in-Modalities (TiM) generation, numerically equal to the reference
//! implementation (terratorch 1.2.11, `terratorch.models.backbones.terramind`).
//!
//! - Model: TerraMind, a multimodal any-to-any Earth-observation model (IBM and ESA,
//!   <https://arxiv.org/abs/2504.11171>); weights and model cards at
//!   <https://huggingface.co/ibm-esa-geospatial>.
//! - Checkpoint key layout, conventions and parity fixtures:
//!   `shared/fixtures/terramind/README.md`.
//!
//! Every block is a struct built from an `nn::Path` whose tree equals the checkpoint's key tree;
//! [`TerraMind`] ties them together.
//!
//! Notes:
//! - `.pt` checkpoints (`torch.save` state dicts) are read by this crate's own zip + pickle
//!   reader: libtorch's C++ loaders reject the `OrderedDict` of a `state_dict()`. Python's torch
//!   cannot be imported in the build environment, so the tests write `.pt` files themselves
//!   (`tests/common/torch_save.rs`) and read one written by CPython's pickler
//!   (`tests/data/make_state_dict.py`).
//! - Random weights and TiM sampling use a seeded generator of this crate, not libtorch's global
//!   one, so results are reproducible with several models or threads.
//! - [`Tokenizer`]: the v1 tokenizers (`terramind_v1_tokenizer_<m>`): chips to FSQ token ids
//!   for S2L2A, S1GRD, S1RTC, DEM, NDVI and LULC; back from ids to a class map (LULC) or, by a
//!   diffusion decoder, to an image. Key tree and parity fixtures:
//!   `tests/data/make_tokenizer_fixtures.py`, `tests/data/make_diffusion_fixtures.py`.
//! - [`Segmenter`]: a fine-tuned segmentation model (terratorch's `FCNDecoder` and
//!   `SegmentationHead` on the encoder), loaded from the fine-tuning checkpoint.
//! - Feature `hub` adds [`fetch_weights`](crate) (download of the official checkpoints with
//!   `curl`); it is off by default and no test uses it.
//!
//! ```no_run
//! use tch::{Device, Kind, Tensor};
//! use terrastream_model::{Config, Merge, Modality, TerraMind};
//!
//! let model = TerraMind::load(&Config::tiny(), &[Modality::S2L2A], "TerraMind_v1_tiny.pt", Device::Cpu)?;
//! let s2 = Tensor::randn([2, 12, 224, 224], (Kind::Float, Device::Cpu));
//! let tokens = model.encode(&[(Modality::S2L2A, s2.shallow_clone())], Merge::Mean)?; // [2, 196, 192]
//! let chips = model.embed_pooled(&[(Modality::S2L2A, s2)])?; // [2, 192]
//! # Ok::<(), terrastream_model::Error>(())
//! ```
#![deny(missing_docs)]

mod config;
mod decoder;
mod embedding;
mod encoder;
mod error;
#[cfg(feature = "hub")]
mod hub;
mod input;
mod layers;
mod merge;
mod modality;
mod precision;
mod rng;
mod sampling;
mod segmentation;
mod terramind;
mod tim;
mod tokenizer;
mod torch_zip;
mod weights;

pub use config::{Config, MlpKind};
pub use error::{Error, Result, ShapeMismatch};
#[cfg(feature = "hub")]
pub use hub::{fetch_weights, weights_url};
pub use merge::Merge;
pub use modality::{Modality, ModalityKind};
pub use precision::{Precision, default_device};
pub use segmentation::{SegmentationConfig, Segmenter};
pub use terramind::TerraMind;
pub use tim::{TimConfig, TimOutput};
pub use tokenizer::{LULC_CLASSES, TOKENIZED, Tokenizer, TokenizerConfig, TokenizerParts, UNetConfig};
pub use weights::read_tensors;
