//! How the per-modality tokens of a layer are merged, as terratorch's `merge_method`.

use tch::Tensor;

use crate::Result;

/// terratorch's `merge_method` for the backbone outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Merge {
    /// Average over the modalities: `[B, N, D]` (terratorch's default).
    #[default]
    Mean,
    /// Element-wise maximum over the modalities: `[B, N, D]`.
    Max,
    /// Modalities side by side along the features: `[B, N, M·D]`.
    Concat,
    /// No merge: every token, modalities concatenated in input order, `[B, M·N, D]`.
    None,
}

impl Merge {
    /// Parses `mean`, `max`, `concat` or `none` (case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "mean" => Some(Merge::Mean),
            "max" => Some(Merge::Max),
            "concat" => Some(Merge::Concat),
            "none" => Some(Merge::None),
            _ => None,
        }
    }

    /// Merges `x` `[B, M·N, D]` made of `modalities` blocks of `N` tokens.
    pub(crate) fn apply(self, x: &Tensor, modalities: i64) -> Result<Tensor> {
        if self == Merge::None {
            return Ok(x.shallow_clone());
        }
        let (b, mn, d) = x.size3()?;
        let stacked = x.f_reshape([b, modalities, mn / modalities, d])?;
        Ok(match self {
            Merge::Mean => stacked.f_mean_dim(1, false, None)?,
            Merge::Max => stacked.f_amax(1, false)?,
            Merge::Concat => {
                stacked
                    .f_permute([0, 2, 1, 3])?
                    .f_reshape([b, mn / modalities, modalities * d])?
            }
            Merge::None => x.shallow_clone(),
        })
    }
}
