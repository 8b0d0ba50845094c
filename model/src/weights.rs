//! Checkpoint files (safetensors, PyTorch `torch.save` state dicts) and random weights.

use std::collections::HashMap;
use std::path::Path;

use tch::{Device, Kind, Tensor, nn};

use crate::embedding::sincos_table;
use crate::error::ShapeMismatch;
use crate::rng::Rng;
use crate::torch_zip;
use crate::{Config, Error, Result};

/// Reads the tensors of a checkpoint whose keys pass `wanted`, to the CPU, by extension:
/// `.safetensors`, or a PyTorch zip archive written by `torch.save(state_dict)` (`.pt`, `.pth`,
/// `.bin`, `.ckpt`), such as the official `TerraMind_v1_<variant>.pt`.
pub(crate) fn read_checkpoint(
    path: &Path,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<HashMap<String, Tensor>> {
    std::fs::metadata(path).map_err(|source| Error::Io {
        path: path.into(),
        source,
    })?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let tensors = match ext.as_deref() {
        Some("safetensors") => {
            tch::no_grad(|| Tensor::read_safetensors(path)).map_err(|source| Error::Read {
                path: path.into(),
                source,
            })?
        }
        Some("pt" | "pth" | "bin" | "ckpt") => torch_zip::read(path, wanted)?,
        _ => return Err(Error::UnknownFormat { path: path.into() }),
    };
    Ok(tensors.into_iter().filter(|(k, _)| wanted(k)).collect())
}

/// Reads every tensor of a `.safetensors` file or of a `torch.save` state dict (`.pt`, `.pth`,
/// `.bin`, `.ckpt`) to the CPU, sorted by name. This is the reader [`TerraMind::load`] uses; it
/// also reads input files stored like the parity fixtures' `inputs.safetensors`.
///
/// [`TerraMind::load`]: crate::TerraMind::load
pub fn read_tensors(path: impl AsRef<Path>) -> Result<Vec<(String, Tensor)>> {
    let mut all: Vec<(String, Tensor)> = read_checkpoint(path.as_ref(), &|_| true)?
        .into_iter()
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(all)
}

/// Copies the checkpoint tensor of every variable of `vs` into it, by name. Extra checkpoint keys
/// are ignored; every missing or mis-shaped key is reported at once, before anything is copied.
pub(crate) fn fill(
    vs: &nn::VarStore,
    tensors: &HashMap<String, Tensor>,
    file: &Path,
) -> Result<()> {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let (mut missing, mut mismatched) = (Vec::new(), Vec::new());
    for (name, var) in &vars {
        match tensors.get(name) {
            None => missing.push(name.clone()),
            Some(t) if t.size() != var.size() => mismatched.push(ShapeMismatch {
                key: name.clone(),
                expected: var.size(),
                found: t.size(),
            }),
            Some(_) => {}
        }
    }
    if !missing.is_empty() || !mismatched.is_empty() {
        return Err(Error::Checkpoint {
            file: file.into(),
            missing,
            mismatched,
        });
    }
    tch::no_grad(|| {
        for (name, var) in &mut vars {
            if let Some(src) = tensors.get(name) {
                var.f_copy_(src)?;
            }
        }
        Ok(())
    })
}

/// The init rule of the parity fixtures for one checkpoint key.
enum Init {
    /// The fixed 2-D sin-cos table.
    SinCos,
    /// `mean + std · N(0, 1)`.
    Normal { mean: f64, std: f64 },
    /// All zeros.
    Zero,
}

fn rule(name: &str, shape: &[i64]) -> Init {
    let mut parts = name.rsplit('.');
    let (leaf, owner) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let normal = |mean, std| Init::Normal { mean, std };
    match (owner, leaf) {
        (_, "pos_emb") => Init::SinCos,
        (_, "mod_emb") => normal(0.0, 0.3),
        (_, "mask_token") => normal(0.0, 0.5),
        ("token_emb" | "to_logits", "weight") => normal(0.0, 0.5),
        (norm, "weight") if norm.contains("norm") => normal(1.0, 0.1),
        (norm, "bias") if norm.contains("norm") => Init::Zero,
        (_, "bias") => normal(0.0, 0.05),
        (_, _) => {
            let fan_in = shape.get(1).copied().unwrap_or(1).max(1);
            normal(0.0, 1.0 / (fan_in as f64).sqrt())
        }
    }
}

/// Random weights with the fixture README's rules: Linear weights N(0, 1/fan_in), biases
/// N(0, 0.05²), LayerNorm weights 1 + N(0, 0.1²) with zero biases, `mod_emb` N(0, 0.3²),
/// `mask_token` and token tables N(0, 0.5²), `pos_emb` the sin-cos table. Variables are drawn
/// in key order from a generator seeded with `seed`, so the result depends on the seed and the
/// set of keys only. As in the checkpoint, a decoder `mod_emb` equals the encoder's.
pub(crate) fn randomize(vs: &nn::VarStore, cfg: &Config, seed: u64) -> Result<()> {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let mut rng = Rng::new(seed);
    let values: HashMap<&str, Tensor> = vars
        .iter()
        .map(|(name, var)| {
            let shape = var.size();
            let t = match rule(name, &shape) {
                Init::SinCos => sincos_table(cfg.grid(), cfg.dim),
                Init::Zero => Tensor::zeros(&shape, (Kind::Float, Device::Cpu)),
                Init::Normal { mean, std } => {
                    let n: i64 = shape.iter().product();
                    let v: Vec<f32> = (0..n).map(|_| (mean + std * rng.normal()) as f32).collect();
                    Tensor::from_slice(&v).f_reshape(&shape)?
                }
            };
            Ok((name.as_str(), t))
        })
        .collect::<Result<_>>()?;
    tch::no_grad(|| {
        for (name, var) in &vars {
            let tied = name
                .strip_prefix("decoder_embeddings.")
                .filter(|rest| rest.ends_with(".mod_emb"))
                .and_then(|rest| values.get(format!("encoder_embeddings.{rest}").as_str()));
            let src = tied.or_else(|| values.get(name.as_str()));
            if let Some(src) = src {
                var.shallow_clone().f_copy_(src)?;
            }
        }
        Ok(())
    })
}

/// Seeded random weights for the plain layers of the tokenizers and the segmentation head:
/// weights N(0, 1/fan_in), biases N(0, 0.05²), norm weights 1 + N(0, 0.1²). Variables are drawn
/// in key order; `special` gives the value of a key that follows another rule (e.g. `pos_emb`).
pub(crate) fn randomize_plain(
    vs: &nn::VarStore,
    seed: u64,
    special: &dyn Fn(&str) -> Result<Option<Tensor>>,
) -> Result<()> {
    let mut rng = Rng::new(seed);
    tch::no_grad(|| {
        for (name, mut var) in named_tensors(vs) {
            if let Some(value) = special(&name)? {
                var.f_copy_(&value)?;
                continue;
            }
            let shape = var.size();
            let n: i64 = shape.iter().product();
            let is_norm = name.contains("norm") || name.contains(".ln.");
            let (mean, std) = match name.rsplit('.').next().unwrap_or("") {
                "weight" if is_norm => (1.0, 0.1),
                "bias" => (0.0, 0.05),
                _ => (0.0, 1.0 / (shape.iter().skip(1).product::<i64>().max(1) as f64).sqrt()),
            };
            let v: Vec<f32> = (0..n).map(|_| (mean + std * rng.normal()) as f32).collect();
            var.f_copy_(&Tensor::from_slice(&v).f_reshape(&shape)?)?;
        }
        Ok(())
    })
}

/// Reads the tensors stored under `prefix` + a key of `keys`, named without the prefix.
pub(crate) fn read_prefixed(path: &Path, prefix: &str, keys: &std::collections::HashSet<String>) -> Result<HashMap<String, Tensor>> {
    Ok(read_checkpoint(path, &|k| k.strip_prefix(prefix).is_some_and(|k| keys.contains(k)))?
        .into_iter()
        .map(|(k, t)| (k[prefix.len()..].to_string(), t))
        .collect())
}

/// Every variable of `vs` as `(checkpoint key, CPU tensor)`, sorted by key.
pub(crate) fn named_tensors(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert!(
            matches!(rule("encoder.0.norm1.weight", &[192]), Init::Normal { mean, .. } if mean == 1.0)
        );
        assert!(matches!(rule("encoder_norm.bias", &[192]), Init::Zero));
        assert!(
            matches!(rule("decoder.0.cross_attn.kv.bias", &[384]), Init::Normal { std, .. } if std == 0.05)
        );
        assert!(
            matches!(rule("encoder.0.mlp.fc2.weight", &[192, 768]), Init::Normal { std, .. } if (std - 1.0 / 768f64.sqrt()).abs() < 1e-12)
        );
        assert!(matches!(
            rule(
                "encoder_embeddings.untok_sen2l2a@224.pos_emb",
                &[1, 196, 192]
            ),
            Init::SinCos
        ));
        assert!(matches!(rule("mask_token", &[1, 1, 192]), Init::Normal { std, .. } if std == 0.5));
    }
}
