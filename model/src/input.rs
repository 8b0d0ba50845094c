//! Validation of the `(Modality, Tensor)` inputs, and batch chunking.

use tch::{Device, Kind, Tensor};

use crate::embedding::EncoderEmbedding;
use crate::{Error, Modality, Result};

/// Inputs checked against the model: same batch size and token grid everywhere, images as
/// floats of the model's kind, token ids as int64, all on the model's device.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) items: Vec<(Modality, Tensor)>,
    pub(crate) batch: i64,
    pub(crate) grid: (i64, i64),
}

fn shape_err(m: Modality, expected: &str, t: &Tensor) -> Error {
    Error::InputShape {
        modality: m.name().to_string(),
        expected: expected.to_string(),
        found: t.size(),
    }
}

fn is_float(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16
    )
}

fn is_int(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Int64 | Kind::Int | Kind::Int16 | Kind::Int8 | Kind::Uint8
    )
}

/// The token grid an input implies, if its shape alone fixes it.
fn own_grid(
    m: Modality,
    t: &Tensor,
    channels: Option<i64>,
    patch: i64,
) -> Result<Option<(i64, i64)>> {
    let size = t.size();
    match channels {
        Some(c) => {
            if size.len() != 4 || size[1] != c || !is_float(t.kind()) {
                return Err(shape_err(m, &format!("a float B x {c} x H x W image"), t));
            }
            let (h, w) = (size[2], size[3]);
            if h <= 0 || w <= 0 || h % patch != 0 || w % patch != 0 {
                return Err(Error::ChipSize { h, w });
            }
            Ok(Some((h / patch, w / patch)))
        }
        None => {
            if !is_int(t.kind()) || !(size.len() == 3 || size.len() == 2) {
                return Err(shape_err(m, "integer token ids B x h x w (or B x N)", t));
            }
            Ok((size.len() == 3).then(|| (size[1], size[2])))
        }
    }
}

impl Batch {
    /// Checks `inputs` against the encoder embeddings of a model and moves them to `device`,
    /// images as `kind`.
    pub(crate) fn new(
        inputs: &[(Modality, Tensor)],
        embeddings: &[(Modality, EncoderEmbedding)],
        patch: i64,
        device: Device,
        kind: Kind,
    ) -> Result<Self> {
        let (first_m, first_t) = inputs.first().ok_or(Error::NoInputs)?;
        let batch = first_t.size().first().copied().unwrap_or(0);
        let mut grid: Option<(Modality, (i64, i64))> = None;
        for (i, (m, t)) in inputs.iter().enumerate() {
            if inputs[..i].iter().any(|(other, _)| other == m) {
                return Err(Error::DuplicateModality(m.name().to_string()));
            }
            let emb = embeddings
                .iter()
                .find(|(e, _)| e == m)
                .map(|(_, e)| e)
                .ok_or(Error::NotBuilt {
                    modality: m.name().to_string(),
                    what: "an encoder embedding",
                })?;
            let channels = match emb {
                EncoderEmbedding::Image(e) => Some(e.channels()),
                EncoderEmbedding::Tokens(_) => None,
            };
            if t.size().first().copied() != Some(batch) || batch == 0 {
                return Err(shape_err(
                    *m,
                    &format!("batch size {batch} (as {first_m}), at least 1"),
                    t,
                ));
            }
            if let Some(g) = own_grid(*m, t, channels, patch)? {
                match grid {
                    Some((gm, gg)) if gg != g => {
                        return Err(Error::GridMismatch {
                            first: gm.name().to_string(),
                            a: gg,
                            other: m.name().to_string(),
                            b: g,
                        });
                    }
                    None => grid = Some((*m, g)),
                    _ => {}
                }
            }
        }
        let mut items = Vec::with_capacity(inputs.len());
        let mut grid = grid.map(|(_, g)| g);
        for (m, t) in inputs {
            let t = match m.vocab_size() {
                None => t.f_to_device(device)?.f_to_kind(kind)?,
                Some(vocab) => {
                    let n = t.size().iter().skip(1).product::<i64>();
                    let g = match grid {
                        Some(g) => g,
                        None => {
                            let side = (n as f64).sqrt().round() as i64;
                            (side, side)
                        }
                    };
                    if g.0 * g.1 != n {
                        return Err(shape_err(
                            *m,
                            &format!("{} tokens ({} x {})", g.0 * g.1, g.0, g.1),
                            t,
                        ));
                    }
                    grid = Some(g);
                    let (lo, hi) = (t.f_min()?.int64_value(&[]), t.f_max()?.int64_value(&[]));
                    if lo < 0 || hi >= vocab {
                        return Err(shape_err(*m, &format!("token ids in 0..{vocab}"), t));
                    }
                    t.f_to_device(device)?
                        .f_to_kind(Kind::Int64)?
                        .f_reshape([batch, g.0, g.1])?
                }
            };
            items.push((*m, t));
        }
        Ok(Batch {
            items,
            batch,
            grid: grid.unwrap_or((0, 0)),
        })
    }

    /// Tokens per modality.
    pub(crate) fn tokens(&self) -> i64 {
        self.grid.0 * self.grid.1
    }

    /// The batch split into consecutive pieces of at most `size` rows.
    pub(crate) fn chunks(&self, size: usize) -> Result<Vec<Batch>> {
        let size = i64::try_from(size).unwrap_or(i64::MAX).max(1);
        if self.batch <= size {
            let items = self
                .items
                .iter()
                .map(|(m, t)| (*m, t.shallow_clone()))
                .collect();
            return Ok(vec![Batch {
                items,
                batch: self.batch,
                grid: self.grid,
            }]);
        }
        (0..self.batch)
            .step_by(size as usize)
            .map(|start| {
                let len = size.min(self.batch - start);
                let items = self
                    .items
                    .iter()
                    .map(|(m, t)| Ok((*m, t.f_narrow(0, start, len)?)))
                    .collect::<Result<_>>()?;
                Ok(Batch {
                    items,
                    batch: len,
                    grid: self.grid,
                })
            })
            .collect()
    }
}
