//! DDIM sampling (Song et al., <https://arxiv.org/abs/2010.02502>) as the DiVAE tokenizers
//! decode: 1000 training steps with a linear beta schedule rescaled to zero terminal SNR (Lin et
//! al., <https://arxiv.org/abs/2305.08891>), "trailing" inference timesteps, the model predicting
//! the clean sample, x0 clamped to [-1, 1], and eta 0 (deterministic after the start noise).
//!
//! The schedule is computed with the same float32 operations as terratorch's `DDIMScheduler`,
//! so that the timesteps' coefficients are bit-equal to the reference's.

use tch::{Device, Kind, Tensor};

use crate::{Error, Result};

/// Diffusion steps the decoders were trained with.
pub(crate) const TRAIN_STEPS: i64 = 1000;

/// The noise schedule: `alphas_cumprod[t]` (ᾱ_t) for t in `0..1000`.
#[derive(Debug, Clone)]
pub(crate) struct Ddim {
    alphas_cumprod: Vec<f32>,
}

impl Ddim {
    /// betas linear from 1e-4 to 0.02, rescaled so that ᾱ at the last step is zero.
    pub(crate) fn new() -> Result<Self> {
        let opts = (Kind::Float, Device::Cpu);
        let betas = Tensor::f_linspace(1e-4, 0.02, TRAIN_STEPS, opts)?;
        let betas = zero_terminal_snr(&betas)?;
        let alphas_cumprod = betas
            .f_neg()?
            .f_add_scalar(1.0)?
            .f_cumprod(0, Kind::Float)?;
        Ok(Ddim {
            alphas_cumprod: Vec::<f32>::try_from(&alphas_cumprod)?,
        })
    }

    /// The timesteps of an `steps`-step decode, in the order they run ("trailing": the first is
    /// always 999). When `steps` does not divide 1000 there is one more, as in the reference.
    pub(crate) fn timesteps(steps: usize) -> Result<Vec<i64>> {
        let steps = steps as i64;
        if !(1..=TRAIN_STEPS).contains(&steps) {
            return Err(Error::Config(format!(
                "diffusion steps must be in 1..={TRAIN_STEPS}, got {steps}"
            )));
        }
        let ratio = TRAIN_STEPS / steps;
        Ok((0..)
            .map(|i| TRAIN_STEPS - i * ratio)
            .take_while(|&t| t > 0)
            .map(|t| t - 1)
            .collect())
    }

    /// One DDIM step from `sample` (x_t) to x_{t - 1000/steps}, given the model's prediction of
    /// the clean sample.
    pub(crate) fn step(
        &self,
        predicted: &Tensor,
        t: i64,
        steps: usize,
        sample: &Tensor,
    ) -> Result<Tensor> {
        let prev = t - TRAIN_STEPS / steps as i64;
        let alpha = self.alphas_cumprod[t as usize];
        let alpha_prev = if prev >= 0 {
            self.alphas_cumprod[prev as usize]
        } else {
            1.0
        };
        let beta = 1.0 - alpha;
        // ε is derived from the unclamped prediction; only x0 itself is clamped (the reference's
        // thresholding with sample_max_value 1 is exactly a clamp to [-1, 1]).
        let eps = sample
            .f_sub(&predicted.f_mul_scalar(f64::from(alpha.sqrt()))?)?
            .f_div_scalar(f64::from(beta.sqrt()))?;
        let x0 = predicted.f_clamp(-1.0, 1.0)?;
        Ok(x0
            .f_mul_scalar(f64::from(alpha_prev.sqrt()))?
            .f_add(&eps.f_mul_scalar(f64::from((1.0 - alpha_prev).sqrt()))?)?)
    }
}

/// Rescales betas so that the last step has zero signal-to-noise ratio, keeping the first
/// step's: shift √ᾱ so its last value is 0, scale so its first is unchanged.
fn zero_terminal_snr(betas: &Tensor) -> Result<Tensor> {
    let alphas_bar_sqrt = betas
        .f_neg()?
        .f_add_scalar(1.0)?
        .f_cumprod(0, Kind::Float)?
        .f_sqrt()?;
    let first = alphas_bar_sqrt.f_get(0)?;
    let last = alphas_bar_sqrt.f_get(-1)?;
    let shifted = alphas_bar_sqrt.f_sub(&last)?;
    let scaled = shifted.f_mul(&first.f_div(&first.f_sub(&last)?)?)?;
    let alphas_bar = scaled.f_square()?;
    let n = alphas_bar.size()[0];
    let ratios = alphas_bar
        .f_narrow(0, 1, n - 1)?
        .f_div(&alphas_bar.f_narrow(0, 0, n - 1)?)?;
    let alphas = Tensor::f_cat(&[alphas_bar.f_narrow(0, 0, 1)?, ratios], 0)?;
    Ok(alphas.f_neg()?.f_add_scalar(1.0)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_timesteps_match_the_reference() -> Result<()> {
        assert_eq!(
            Ddim::timesteps(10)?,
            [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
        );
        assert_eq!(Ddim::timesteps(1)?, [999]);
        // 1000 // 3 = 333: np.arange(1000, 0, -333) has four values.
        assert_eq!(Ddim::timesteps(3)?, [999, 666, 333, 0]);
        assert!(Ddim::timesteps(0).is_err() && Ddim::timesteps(1001).is_err());
        Ok(())
    }

    #[test]
    fn the_schedule_ends_at_zero_snr() -> Result<()> {
        let d = Ddim::new()?;
        assert_eq!(d.alphas_cumprod.len(), 1000);
        assert!(
            d.alphas_cumprod[999].abs() < 1e-9,
            "{}",
            d.alphas_cumprod[999]
        );
        // The first step keeps the linear schedule's value, 1 - 1e-4.
        assert!((d.alphas_cumprod[0] - 0.9999).abs() < 1e-6);
        assert!(d.alphas_cumprod.windows(2).all(|w| w[1] <= w[0]));
        Ok(())
    }

    #[test]
    fn at_the_last_step_a_perfect_prediction_is_returned() -> Result<()> {
        // With ᾱ_prev = 1 the step returns x0 whatever the sample: the final image is the
        // model's (clamped) prediction.
        let d = Ddim::new()?;
        let x0 = Tensor::from_slice(&[0.5f32, -2.0, 0.25]);
        let sample = Tensor::from_slice(&[3.0f32, 1.0, -1.0]);
        let out = d.step(&x0, 99, 10, &sample)?;
        assert!(out.allclose(
            &Tensor::from_slice(&[0.5f32, -1.0, 0.25]),
            1e-6,
            1e-6,
            false
        ));
        Ok(())
    }
}
