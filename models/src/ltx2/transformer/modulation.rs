//! Timestep modulation vectors, per sample or per token.
//!
//! With per-token timesteps (image-to-video, guides) the modulation of a 14,080-token video at 9 × 4096
//! values per token would take 2 GB if it were materialised; but a latent has only a few distinct
//! timesteps (a conditioned frame and the rest). So each distinct timestep is embedded once, and a
//! modulation row is expanded to the tokens only when a block uses it, one `[B, N, d]` row at a time.

use candle_core::{DType, Result, Tensor};
use std::collections::HashMap;

/// The timesteps of one stream: one per sample (`[B]`) or one per token (`[B, N]`), reduced to the
/// distinct values.
#[derive(Debug, Clone)]
pub struct Timesteps {
    /// The values to embed, `[U]`.
    distinct: Tensor,
    /// For per-token timesteps, the row of `distinct` of each of the `B·N` tokens.
    index: Option<Tensor>,
    batch: usize,
    tokens: usize,
}

impl Timesteps {
    /// `timesteps` `[B]` or `[B, tokens]`.
    pub fn new(timesteps: &Tensor, batch: usize, tokens: usize) -> Result<Self> {
        let timesteps = timesteps.to_dtype(DType::F32)?;
        match timesteps.dims() {
            [b] if *b == batch => Ok(Timesteps { distinct: timesteps, index: None, batch, tokens: 1 }),
            [b, n] if *b == batch && *n == tokens => {
                let values = timesteps.flatten_all()?.to_vec1::<f32>()?;
                let mut rows: HashMap<u32, u32> = HashMap::new();
                let mut distinct = Vec::new();
                let index: Vec<u32> = values
                    .iter()
                    .map(|value| {
                        *rows.entry(value.to_bits()).or_insert_with(|| {
                            distinct.push(*value);
                            (distinct.len() - 1) as u32
                        })
                    })
                    .collect();
                let device = timesteps.device();
                let count = distinct.len();
                Ok(Timesteps {
                    distinct: Tensor::from_vec(distinct, count, device)?,
                    index: Some(Tensor::from_vec(index, batch * tokens, device)?),
                    batch,
                    tokens,
                })
            }
            other => candle_core::bail!("timesteps must be [B={batch}] or [B, N={tokens}], got {other:?}"),
        }
    }

    /// One timestep per sample: `value` for every sample.
    pub fn constant(value: f32, batch: usize, device: &candle_core::Device) -> Result<Self> {
        Timesteps::new(&Tensor::full(value, batch, device)?, batch, 1)
    }

    /// The distinct values, `[U]`, to embed.
    pub fn distinct(&self) -> &Tensor {
        &self.distinct
    }

    /// The largest timestep.
    pub fn max(&self) -> Result<f32> {
        self.distinct.max(0)?.to_scalar::<f32>()
    }

    /// These timesteps times `factor`.
    pub fn scaled(&self, factor: f64) -> Result<Self> {
        Ok(Timesteps { distinct: (&self.distinct * factor)?, ..self.clone() })
    }

    /// The modulation whose distinct rows are `embedded` `[U, width]` (the embedding of
    /// [`Self::distinct`]).
    pub fn modulation(&self, embedded: Tensor) -> Result<Modulation> {
        Ok(match &self.index {
            None => Modulation::PerSample(embedded.reshape((self.batch, 1, ()))?),
            Some(index) => {
                Modulation::PerToken { values: embedded, index: index.clone(), batch: self.batch, tokens: self.tokens }
            }
        })
    }
}

/// Modulation vectors: `k` rows of width `d` per sample or per token.
#[derive(Debug, Clone)]
pub enum Modulation {
    /// `[B, 1, k·d]`, shared by every token of a sample.
    PerSample(Tensor),
    /// Distinct rows `[U, k·d]` and the row of each of the `B·N` tokens.
    PerToken { values: Tensor, index: Tensor, batch: usize, tokens: usize },
}

impl Modulation {
    /// Row `row` of `table` `[k, d]` plus row `row` of these vectors: `[B, 1, d]` or `[B, N, d]`.
    pub fn row(&self, table: &Tensor, row: usize) -> Result<Tensor> {
        let width = table.dim(1)?;
        let base = table.get(row)?;
        match self {
            Modulation::PerSample(values) => values.narrow(2, row * width, width)?.broadcast_add(&base),
            Modulation::PerToken { values, index, batch, tokens } => values
                .narrow(1, row * width, width)?
                .broadcast_add(&base)?
                .index_select(index, 0)?
                .reshape((*batch, *tokens, width)),
        }
    }

    /// Row `row` of these vectors without a table: `[B, 1, d]` or `[B, N, d]`, for rows of width `width`.
    pub fn plain_row(&self, row: usize, width: usize) -> Result<Tensor> {
        match self {
            Modulation::PerSample(values) => values.narrow(2, row * width, width),
            Modulation::PerToken { values, index, batch, tokens } => {
                values.narrow(1, row * width, width)?.index_select(index, 0)?.reshape((*batch, *tokens, width))
            }
        }
    }
}

/// `x·(1 + scale) + shift`, broadcast.
pub fn modulate(x: &Tensor, shift: &Tensor, scale: &Tensor) -> Result<Tensor> {
    x.broadcast_mul(&(scale + 1.0)?)?.broadcast_add(shift)
}
