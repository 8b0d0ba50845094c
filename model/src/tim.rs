//! Thinking-in-Modalities (TiM): generate tokens of intermediate modalities with the
//! encoder-decoder, then re-encode the inputs together with the generated tokens.

use tch::{Kind, Tensor};

use crate::input::Batch;
use crate::rng::Rng;
use crate::sampling::{Sampler, draw, linear_schedule};
use crate::terramind::TerraMind;
use crate::{Error, Merge, Modality, Result};

/// Settings of a TiM run (terratorch's `tim_modalities`, `tim_temps`, `tim_top_p`, `tim_top_k`,
/// `tim_decoding_steps`) plus an explicit seed.
#[derive(Debug, Clone, PartialEq)]
pub struct TimConfig {
    /// Token modalities to generate, in order (default `[LULC]`), each conditioned on the
    /// inputs and on every target generated before it (chained generation, as terratorch's
    /// schedule). Targets that are also inputs are not generated, as in terratorch.
    pub targets: Vec<Modality>,
    /// Sampling temperature; 0 means argmax (deterministic, no randomness used).
    pub temperature: f64,
    /// Nucleus filtering threshold, applied to the raw logits before the temperature; 0 = off.
    pub top_p: f64,
    /// Keep only the `top_k` largest logits before top-p; 0 = off.
    pub top_k: usize,
    /// Seed of the random decoding order and the draws. A chip's ids depend on the seed, its
    /// row in the call's batch and the settings, not on [`TerraMind::with_batch_size`].
    pub seed: u64,
    /// ROAR decoding steps: each step decodes the next slice of a random order of the grid
    /// positions (terratorch's linear schedule), with the encoder re-run over the tokens
    /// decoded so far. 1 = all positions at once.
    pub steps: usize,
    /// Whether [`TimOutput::logits`] is filled (`[B, N, V]` per target: large for V = 15360).
    pub keep_logits: bool,
}

impl Default for TimConfig {
    /// terratorch's defaults: LULC, temperature 1, top-p 0.8, one step; seed 0.
    fn default() -> Self {
        TimConfig {
            targets: vec![Modality::LULC],
            temperature: 1.0,
            top_p: 0.8,
            top_k: 0,
            seed: 0,
            steps: 1,
            keep_logits: false,
        }
    }
}

impl TimConfig {
    /// Greedy (temperature 0) generation of `targets` in one step: deterministic.
    pub fn argmax(targets: &[Modality]) -> Self {
        TimConfig {
            targets: targets.to_vec(),
            temperature: 0.0,
            ..TimConfig::default()
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::Config(what.to_string()));
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad("TiM temperature must be finite and >= 0");
        }
        if !(0.0..=1.0).contains(&self.top_p) {
            return bad("TiM top_p must be in [0, 1]");
        }
        if self.steps == 0 {
            return bad("TiM steps must be at least 1");
        }
        Ok(())
    }

    fn sampler(&self) -> Sampler {
        Sampler {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
        }
    }
}

/// What a TiM run produces.
#[derive(Debug)]
pub struct TimOutput {
    /// Generated ids per target, `[B, N]` int64, row-major over the token grid (fixture key
    /// `tim_<T>_ids` with `T` = [`Modality::tim_name`]).
    pub ids: Vec<(Modality, Tensor)>,
    /// Decoder logits per target, `[B, N, V]` float32; empty unless `keep_logits`.
    pub logits: Vec<(Modality, Tensor)>,
    /// The TiM backbone: every encoder layer on the input tokens followed by the embedded
    /// generated tokens, `[B, (M+T)·N, D]`, only the last normed (fixture keys `tim_layer_{i}`).
    pub layers: Vec<Tensor>,
    /// The modality of each block of `N` tokens in `layers`: inputs, then generated targets.
    pub modalities: Vec<Modality>,
}

impl TimOutput {
    /// The last layer merged over inputs and generated modalities (fixture key `tim_mean_last`
    /// for [`Merge::Mean`]).
    pub fn merged(&self, merge: Merge) -> Result<Tensor> {
        let last = self.layers.last().ok_or(Error::NoInputs)?;
        merge.apply(last, self.modalities.len() as i64)
    }

    /// The ids generated for `target`.
    pub fn ids(&self, target: Modality) -> Option<&Tensor> {
        self.ids.iter().find(|(m, _)| *m == target).map(|(_, t)| t)
    }

    /// The per-chip embedding with TiM: [`TimOutput::merged`] with [`Merge::Mean`], averaged over
    /// the token positions, `[B, D]`.
    pub fn embed_pooled(&self) -> Result<Tensor> {
        Ok(self.merged(Merge::Mean)?.f_mean_dim(1, false, None)?)
    }
}

impl TerraMind {
    /// Runs TiM: the encoder on the inputs; the decoder generates every target's tokens from
    /// that context (`decoder_proj_context(encoder output) + pos_emb + mod_emb`), decoding the
    /// grid positions in a random order split into `steps` slices, sampling each slice (argmax
    /// at temperature 0); the generated ids are embedded with `encoder_embeddings.<target>` and
    /// appended to the inputs, and the encoder runs again.
    ///
    /// As in terratorch 1.2.11, the generator conditions on the input modalities only: tokens
    /// from earlier steps or earlier targets are not fed back into its encoder. (terratorch
    /// fails for `steps > 1`; here each step decodes its own slice of positions.)
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use terrastream_model::*;
    /// # fn f(model: &TerraMind, inputs: &[(Modality, tch::Tensor)]) -> Result<()> {
    /// let out = model.tim(inputs, &TimConfig::argmax(&[Modality::LULC]))?;
    /// let lulc = out.ids(Modality::LULC); // [B, 196] int64
    /// let tokens = out.merged(Merge::Mean)?; // [B, 196, D]
    /// # Ok(()) }
    /// ```
    pub fn tim(&self, inputs: &[(Modality, Tensor)], cfg: &TimConfig) -> Result<TimOutput> {
        cfg.validate()?;
        let decoder = self.decoder.as_ref();
        let mut targets: Vec<Modality> = Vec::new();
        for &t in &cfg.targets {
            if inputs.iter().any(|(m, _)| *m == t) || targets.contains(&t) {
                continue;
            }
            if !decoder.is_some_and(|d| d.targets().any(|m| m == t)) {
                return Err(Error::NotBuilt {
                    modality: t.name().to_string(),
                    what: "a TiM decoder",
                });
            }
            targets.push(t);
        }
        let depth = self.config().encoder_depth;
        let outputs = self.chunked(inputs, |batch, offset| {
            let (ids, logits, layers) = self.tim_batch(batch, offset, &targets, cfg)?;
            Ok(ids.into_iter().chain(logits).chain(layers).collect())
        })?;
        let mut it = outputs.into_iter();
        let ids = targets
            .iter()
            .map(|&t| (t, it.next().unwrap_or_default()))
            .collect();
        let logits = if cfg.keep_logits {
            targets
                .iter()
                .map(|&t| (t, it.next().unwrap_or_default()))
                .collect()
        } else {
            Vec::new()
        };
        let layers: Vec<Tensor> = it.take(depth).collect();
        let modalities = inputs
            .iter()
            .map(|(m, _)| *m)
            .chain(targets.iter().copied())
            .collect();
        Ok(TimOutput {
            ids,
            logits,
            layers,
            modalities,
        })
    }

    /// TiM on one piece of the batch whose first row is row `offset` of the call.
    fn tim_batch(
        &self,
        batch: &Batch,
        offset: i64,
        targets: &[Modality],
        cfg: &TimConfig,
    ) -> Result<(Vec<Tensor>, Vec<Tensor>, Vec<Tensor>)> {
        let (x, emb) = self.embed_batch(batch)?;
        let mut all_ids: Vec<Tensor> = Vec::with_capacity(targets.len());
        let mut all_logits = Vec::new();
        if let Some(decoder) = self.decoder.as_ref().filter(|_| !targets.is_empty()) {
            let (n, device) = (batch.tokens(), x.device());
            for (ti, &target) in targets.iter().enumerate() {
                let order = Rng::derive(cfg.seed, &[ti as u64, u64::MAX]).permutation(n as usize);
                let mut ids = Tensor::f_zeros([batch.batch, n], (Kind::Int64, device))?;
                let vocab = target.vocab_size().unwrap_or(1);
                let mut kept = if cfg.keep_logits {
                    Some(Tensor::f_zeros(
                        [batch.batch, n, vocab],
                        (Kind::Float, device),
                    )?)
                } else {
                    None
                };
                let mut start = 0usize;
                for count in linear_schedule(cfg.steps, n as usize) {
                    // As the reference's generation loop: the encoder sees the inputs, every
                    // target generated before this one, and this target's positions decoded
                    // in earlier steps, so each generated token conditions what follows.
                    let decoded = Tensor::from_slice(&order[..start]).f_to_device(device)?;
                    let known: Vec<(Modality, &Tensor, Option<&Tensor>)> = targets[..ti]
                        .iter()
                        .zip(&all_ids)
                        .map(|(&m, t)| (m, t, None))
                        .chain((start > 0).then_some((target, &ids, Some(&decoded))))
                        .collect();
                    let context = self.generation_context(batch, &x, &emb, &known)?;
                    let context = decoder.context(&context.0, &context.1)?;
                    let slice = &order[start..start + count];
                    start += count;
                    let positions = Tensor::from_slice(slice).f_to_device(device)?;
                    let logits = decoder.logits(target, &context, &positions, batch.grid)?;
                    let k = count as i64;
                    let flat = logits.f_reshape([batch.batch * k, vocab])?;
                    let sampled = cfg.sampler().sample(&flat, |r| {
                        draw(cfg.seed, ti, offset + r / k, slice[(r % k) as usize])
                    })?;
                    ids = ids.f_index_copy(1, &positions, &sampled.f_reshape([batch.batch, k])?)?;
                    if let Some(all) = kept.as_mut() {
                        *all = all.f_index_copy(1, &positions, &logits.f_to_kind(Kind::Float)?)?;
                    }
                }
                all_ids.push(ids);
                all_logits.extend(kept);
            }
        }
        // The TiM backbone: inputs followed by the embedded generated tokens.
        let (gh, gw) = batch.grid;
        let mut tokens = vec![x];
        for (&target, ids) in targets.iter().zip(&all_ids) {
            let (tx, te) = self.embedding(target)?.forward(ids, gh, gw)?;
            tokens.push(tx.f_add(&te)?);
        }
        let layers = self.encoder().forward_layers(&Tensor::f_cat(&tokens, 1)?)?;
        Ok((all_ids, all_logits, layers))
    }
}

impl TerraMind {
    /// The encoder output `[B, T, D]` and the positional + modality embeddings `[B, T, D]` of
    /// the tokens known at a generation step: the inputs (`x`, `emb`, already embedded) and
    /// the generated `known` tokens, each `(modality, ids [B, N], positions)` with `None` for
    /// all positions or the `[K]` positions decoded so far.
    fn generation_context(
        &self,
        batch: &Batch,
        x: &Tensor,
        emb: &Tensor,
        known: &[(Modality, &Tensor, Option<&Tensor>)],
    ) -> Result<(Tensor, Tensor)> {
        let (gh, gw) = batch.grid;
        let (mut xs, mut embs) = (vec![x.shallow_clone()], vec![emb.shallow_clone()]);
        for &(m, ids, positions) in known {
            let (tx, te) = self.embedding(m)?.forward(ids, gh, gw)?;
            let (tx, te) = (tx.f_add(&te)?, te.f_expand([batch.batch, -1, -1], false)?);
            match positions {
                Some(p) => {
                    xs.push(tx.f_index_select(1, p)?);
                    embs.push(te.f_index_select(1, p)?);
                }
                None => {
                    xs.push(tx);
                    embs.push(te);
                }
            }
        }
        let encoded = self.encoder().forward(&Tensor::f_cat(&xs, 1)?)?;
        Ok((encoded, Tensor::f_cat(&embs, 1)?))
    }

    /// Every output under the parity fixtures' tensor names, for checks and for users who bring
    /// their own tensors: `embed`, `layer_{i}`, `mean_last`, and with `tim`: `tim_<T>_ids`,
    /// `tim_<T>_logits_top5`, `tim_<T>_logits_top5_ids`, `tim_layer_{i}`, `tim_mean_last`
    /// (`T` = [`Modality::tim_name`]). Write them with `Tensor::write_safetensors`.
    pub fn named_outputs(
        &self,
        inputs: &[(Modality, Tensor)],
        tim: Option<&TimConfig>,
    ) -> Result<Vec<(String, Tensor)>> {
        let mut out = vec![("embed".to_string(), self.embed_tokens(inputs)?)];
        let layers = self.forward_layers(inputs)?;
        let mean = match layers.last() {
            Some(last) => Merge::Mean.apply(last, inputs.len() as i64)?,
            None => return Err(Error::NoInputs),
        };
        out.extend(
            layers
                .into_iter()
                .enumerate()
                .map(|(i, l)| (format!("layer_{i}"), l)),
        );
        out.push(("mean_last".to_string(), mean));
        if let Some(cfg) = tim {
            let t = self.tim(
                inputs,
                &TimConfig {
                    keep_logits: true,
                    ..cfg.clone()
                },
            )?;
            for (m, ids) in &t.ids {
                out.push((format!("tim_{}_ids", m.tim_name()), ids.shallow_clone()));
            }
            for (m, logits) in &t.logits {
                let (values, ids) = logits.f_topk(5, -1, true, true)?;
                out.push((format!("tim_{}_logits_top5", m.tim_name()), values));
                out.push((format!("tim_{}_logits_top5_ids", m.tim_name()), ids));
            }
            out.push(("tim_mean_last".to_string(), t.merged(Merge::Mean)?));
            out.extend(
                t.layers
                    .into_iter()
                    .enumerate()
                    .map(|(i, l)| (format!("tim_layer_{i}"), l)),
            );
        }
        Ok(out)
    }
}
