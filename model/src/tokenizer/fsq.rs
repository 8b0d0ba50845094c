//! Finite scalar quantisation (FSQ, Mentzer et al., <https://arxiv.org/abs/2309.15505>) as the
//! TerraMind tokenizers use it: each of the L latent channels is squashed by a sigmoid to
//! `[0, 1]` and rounded to one of `levels[l]` values; the token id is the mixed-radix number of
//! the L digits, least significant first. The quantizer has no weights.

use tch::{Device, Kind, Tensor};

use crate::Result;

/// The levels of one FSQ codebook, e.g. `[8, 8, 8, 6, 5]` (15360 ids).
#[derive(Debug, Clone)]
pub(crate) struct Fsq {
    levels: Vec<i64>,
    /// Place value of each digit: `[1, l0, l0·l1, …]`.
    basis: Vec<i64>,
}

impl Fsq {
    pub(crate) fn new(levels: &[i64]) -> Self {
        let basis = levels
            .iter()
            .scan(1i64, |place, &l| {
                let here = *place;
                *place *= l;
                Some(here)
            })
            .collect();
        Fsq {
            levels: levels.to_vec(),
            basis,
        }
    }

    /// Number of distinct ids.
    pub(crate) fn codebook_size(&self) -> i64 {
        self.levels.iter().product()
    }

    /// `[1, L, 1, 1]` per-channel constants for `[B, L, h, w]` tensors.
    fn per_channel(values: &[i64], kind: Kind, device: Device) -> Result<Tensor> {
        let len = values.len() as i64;
        Ok(Tensor::from_slice(values)
            .f_to_kind(kind)?
            .f_to_device(device)?
            .f_reshape([1, len, 1, 1])?)
    }

    /// Latents `[B, L, h, w]` (float) to ids `[B, h, w]` (int64):
    /// `id = Σ_l round(sigmoid(z_l) · (levels_l − 1)) · basis_l`. Rounding is half to even, as
    /// in torch.
    pub(crate) fn quantize(&self, latents: &Tensor) -> Result<Tensor> {
        let (kind, device) = (latents.kind(), latents.device());
        let top: Vec<i64> = self.levels.iter().map(|l| l - 1).collect();
        let digits = latents
            .f_sigmoid()?
            .f_mul(&Self::per_channel(&top, kind, device)?)?
            .f_round()?;
        // Exact in float32: ids stay below 2^24.
        let ids = digits
            .f_mul(&Self::per_channel(&self.basis, kind, device)?)?
            .f_sum_dim_intlist([1i64].as_slice(), false, kind)?;
        Ok(ids.f_to_kind(Kind::Int64)?)
    }

    /// Ids `[B, h, w]` (int64, in `0..codebook_size`) to codes `[B, L, h, w]` (float32 in
    /// `[0, 1]`): digit `l` is `(id / basis_l) mod levels_l`, divided by `levels_l − 1`.
    pub(crate) fn codes(&self, ids: &Tensor) -> Result<Tensor> {
        let device = ids.device();
        let ids = ids.f_unsqueeze(1)?;
        let digits = ids
            .f_floor_divide(&Self::per_channel(&self.basis, Kind::Int64, device)?)?
            .f_remainder_tensor(&Self::per_channel(&self.levels, Kind::Int64, device)?)?;
        let top: Vec<i64> = self.levels.iter().map(|l| l - 1).collect();
        Ok(digits
            .f_to_kind(Kind::Float)?
            .f_div(&Self::per_channel(&top, Kind::Float, device)?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_codes_round_trip() -> Result<()> {
        let fsq = Fsq::new(&[7, 5, 5, 5, 5]);
        assert_eq!(fsq.codebook_size(), 4375);
        let ids = Tensor::arange(4375, (Kind::Int64, Device::Cpu)).reshape([1, 25, 175]);
        let codes = fsq.codes(&ids)?;
        assert_eq!(codes.size(), [1, 5, 25, 175]);
        // A code c in [0, 1] is reached by the latent logit(c); the end points by large ones.
        let latents = codes.clamp(1e-4, 1.0 - 1e-4).logit(None::<f64>);
        assert!(fsq.quantize(&latents)?.equal(&ids));
        Ok(())
    }

    #[test]
    fn digits_are_least_significant_first() -> Result<()> {
        let fsq = Fsq::new(&[8, 8, 8, 6, 5]);
        // Digits (1, 2, 0, 0, 4) -> 1 + 2·8 + 4·(8·8·8·6).
        let ids = Tensor::from_slice(&[1i64 + 16 + 4 * 3072]).reshape([1, 1, 1]);
        let codes = fsq.codes(&ids)?.reshape([5]);
        let want = Tensor::from_slice(&[1.0f32 / 7.0, 2.0 / 7.0, 0.0, 0.0, 1.0]);
        assert!(codes.allclose(&want, 1e-6, 1e-7, false));
        Ok(())
    }
}
