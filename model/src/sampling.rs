//! Token sampling of the TiM generator, as terratorch's `GenerationSampler.sample_tokens`:
//! argmax at temperature 0, else top-k then top-p (nucleus) filtering of the raw logits, then a
//! draw from `softmax(logits / temperature)`.

use tch::{Kind, Tensor};

use crate::Result;
use crate::rng::Rng;

/// Sampling settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sampler {
    pub(crate) temperature: f64,
    pub(crate) top_k: usize,
    pub(crate) top_p: f64,
}

impl Sampler {
    /// Samples one id per row of `logits` `[R, V]`; `uniform(r)` gives row r's draw in (0, 1).
    pub(crate) fn sample(&self, logits: &Tensor, uniform: impl Fn(i64) -> f64) -> Result<Tensor> {
        if self.temperature.abs() < 1e-10 {
            return Ok(logits.f_argmax(-1, false)?);
        }
        let (rows, vocab) = logits.size2()?;
        let mut logits = logits.f_to_kind(Kind::Float)?;
        if self.top_k > 0 && (self.top_k as i64) < vocab {
            let (values, _) = logits.f_topk(self.top_k as i64, -1, true, true)?;
            let kth = values.f_select(1, self.top_k as i64 - 1)?.f_unsqueeze(1)?;
            logits = logits.f_masked_fill(&logits.f_lt_tensor(&kth)?, f64::NEG_INFINITY)?;
        }
        if self.top_p > 0.0 {
            let (sorted, index) = logits.f_sort(-1, true)?;
            let cum = sorted
                .f_softmax(-1, Kind::Float)?
                .f_cumsum(-1, Kind::Float)?;
            let above = cum.f_gt(self.top_p)?;
            // Keep the first token above the threshold too: shift the mask right by one.
            let keep_first = Tensor::f_zeros([rows, 1], (Kind::Bool, logits.device()))?;
            let remove = Tensor::f_cat(&[keep_first, above.f_narrow(1, 0, vocab - 1)?], 1)?;
            let remove = remove.f_zeros_like()?.f_scatter(1, &index, &remove)?;
            logits = logits.f_masked_fill(&remove, f64::NEG_INFINITY)?;
        }
        let probs = logits
            .f_div_scalar(self.temperature)?
            .f_softmax(-1, Kind::Double)?;
        let cum = probs.f_cumsum(-1, Kind::Double)?;
        let total = cum.f_narrow(1, vocab - 1, 1)?;
        let draws: Vec<f64> = (0..rows).map(uniform).collect();
        let u = Tensor::from_slice(&draws)
            .f_to_device(logits.device())?
            .f_unsqueeze(1)?
            .f_mul(&total)?;
        let picked = cum
            .f_lt_tensor(&u)?
            .f_sum_dim_intlist(1, false, Kind::Int64)?;
        Ok(picked.f_clamp_max(vocab - 1)?)
    }
}

/// terratorch's `linear_schedule`: how many tokens each of `steps` decoding steps decodes, in
/// descending order, without empty steps.
pub(crate) fn linear_schedule(steps: usize, tokens: usize) -> Vec<usize> {
    let steps = steps.max(1);
    let mut counts: Vec<usize> = (0..steps)
        .map(|i| (i + 1) * tokens / steps - i * tokens / steps)
        .collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    counts.retain(|&c| c > 0);
    counts
}

/// The uniform draw of one (target, batch row, grid position): the same whatever the batch
/// split or the decoding schedule.
pub(crate) fn draw(seed: u64, target: usize, row: i64, position: i64) -> f64 {
    Rng::derive(seed, &[target as u64, row as u64, position as u64]).uniform()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn schedule() {
        assert_eq!(linear_schedule(1, 196), [196]);
        assert_eq!(linear_schedule(3, 10), [4, 3, 3]);
        assert_eq!(linear_schedule(5, 3), [1, 1, 1]);
    }

    #[test]
    fn argmax_top_p_and_temperature() -> Result<()> {
        let logits = Tensor::from_slice(&[0.0f32, 3.0, 1.0, 2.9]).view([1, 4]);
        let argmax = Sampler {
            temperature: 0.0,
            top_k: 0,
            top_p: 0.8,
        };
        assert_eq!(argmax.sample(&logits, |_| 0.5)?.int64_value(&[0]), 1);
        // top-p 0.5 keeps ids 1 and 3 (the first one above the threshold stays too).
        let nucleus = Sampler {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.5,
        };
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..200 {
            let u = (i as f64 + 0.5) / 200.0;
            seen.insert(nucleus.sample(&logits, |_| u)?.int64_value(&[0]));
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), [1, 3]);
        // top-k 1 is argmax whatever the draw.
        let top1 = Sampler {
            temperature: 5.0,
            top_k: 1,
            top_p: 0.0,
        };
        assert_eq!(top1.sample(&logits, |_| 0.99)?.int64_value(&[0]), 1);
        // A high temperature without filtering reaches every id.
        let flat = Sampler {
            temperature: 100.0,
            top_k: 0,
            top_p: 0.0,
        };
        let many = logits.expand([400, 4], false).to_device(Device::Cpu);
        let ids = flat.sample(&many, |r| (r as f64 + 0.5) / 400.0)?;
        assert_eq!(ids.unique_dim(0, true, false, false).0.size(), [4]);
        Ok(())
    }
}
