//! Optional spatial tiles for decoding: the latent is cut into overlapping square tiles, each tile is
//! decoded on its own (optionally streamed in time as well), and the decoded tiles are blended with
//! linear ramps across each overlap, as diffusers' `tiled_decode` and ComfyUI's tiled VAE decode do.
//!
//! Unlike temporal chunking this is not exact: a tile's convs see zero padding at its borders instead of
//! the neighbouring latent pixels, and the ramps hide the seams. What tiles share is kept consistent:
//! the timestep embeddings, and the 0.9.1 noise planes, which are drawn once for the whole latent and
//! cropped to each tile (diffusers draws fresh noise per tile).

use super::decoder::{DecodeInputs, Decoder};
use super::streaming::decode_chunked;
use candle_core::{Device, Result, Tensor};

/// Spatial tile size and overlap, in latent pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpatialTiles {
    /// Tile side (diffusers' default is 16 latent pixels, 512 image pixels).
    pub tile: usize,
    /// Latent pixels shared by neighbouring tiles (diffusers: 2, 64 image pixels).
    pub overlap: usize,
}

impl Default for SpatialTiles {
    fn default() -> Self {
        Self { tile: 16, overlap: 2 }
    }
}

/// Start offsets of tiles of `tile` covering `length`, neighbours sharing `overlap`.
pub fn tile_starts(length: usize, tile: usize, overlap: usize) -> Vec<usize> {
    if length <= tile {
        return vec![0];
    }
    let stride = tile.saturating_sub(overlap).max(1);
    let mut starts = vec![0];
    let mut start = 0;
    while start + tile < length {
        start = (start + stride).min(length - tile);
        starts.push(start);
    }
    starts
}

/// Blend weights along one axis for the tile at index `index` of `starts`, over `factor` output pixels
/// per latent pixel: 1 inside, rising across the overlap with the previous tile and falling across the
/// overlap with the next one, so that overlapping weights sum to 1.
fn ramp(starts: &[usize], index: usize, tile: usize, length: usize, factor: usize) -> Vec<f32> {
    let start = starts[index];
    let end = (start + tile).min(length);
    let mut weights = vec![1f32; (end - start) * factor];
    if index > 0 {
        let previous_end = (starts[index - 1] + tile).min(length);
        let overlap = previous_end.saturating_sub(start) * factor;
        for (i, weight) in weights.iter_mut().take(overlap).enumerate() {
            *weight *= (i as f32 + 0.5) / overlap as f32;
        }
    }
    if index + 1 < starts.len() {
        let next_start = starts[index + 1];
        let overlap = end.saturating_sub(next_start) * factor;
        let total = weights.len();
        for i in 0..overlap {
            weights[total - overlap + i] *= 1.0 - (i as f32 + 0.5) / overlap as f32;
        }
    }
    weights
}

/// Blends tiles produced by `decode_tile(y, x, height, width)` (latent coordinates) into one
/// (B, C, F, factor·H, factor·W) output. Each tile output must be (B, C, F, factor·height, factor·width).
pub fn blend_tiles(
    latent_height: usize,
    latent_width: usize,
    tiles: SpatialTiles,
    factor: usize,
    device: &Device,
    decode_tile: &mut dyn FnMut(usize, usize, usize, usize) -> Result<Tensor>,
) -> Result<Tensor> {
    let rows = tile_starts(latent_height, tiles.tile, tiles.overlap);
    let columns = tile_starts(latent_width, tiles.tile, tiles.overlap);
    let (height, width) = (latent_height * factor, latent_width * factor);
    let mut sum: Option<Tensor> = None;
    let mut weight_sum: Option<Tensor> = None;
    for (row, &y) in rows.iter().enumerate() {
        for (column, &x) in columns.iter().enumerate() {
            let tile_height = tiles.tile.min(latent_height - y);
            let tile_width = tiles.tile.min(latent_width - x);
            let decoded = decode_tile(y, x, tile_height, tile_width)?;
            let vertical = ramp(&rows, row, tiles.tile, latent_height, factor);
            let horizontal = ramp(&columns, column, tiles.tile, latent_width, factor);
            let vertical = Tensor::new(vertical.as_slice(), device)?.reshape((1, 1, 1, (), 1))?;
            let horizontal = Tensor::new(horizontal.as_slice(), device)?.reshape((1, 1, 1, 1, ()))?;
            let weight = vertical.broadcast_mul(&horizontal)?;
            let place = |t: &Tensor| -> Result<Tensor> {
                t.pad_with_zeros(3, y * factor, height - (y + tile_height) * factor)?.pad_with_zeros(
                    4,
                    x * factor,
                    width - (x + tile_width) * factor,
                )
            };
            let weighted = place(&decoded.broadcast_mul(&weight)?)?;
            let weight = place(&weight)?;
            sum = Some(match sum {
                None => weighted,
                Some(previous) => (previous + weighted)?,
            });
            weight_sum = Some(match weight_sum {
                None => weight,
                Some(previous) => (previous + weight)?,
            });
        }
    }
    let (sum, weight_sum) = (sum.expect("at least one tile"), weight_sum.expect("at least one tile"));
    sum.broadcast_div(&weight_sum)
}

/// Decodes `latent` tile by tile, each tile optionally streamed in chunks of `temporal_chunk` frames.
pub fn decode_tiled(
    decoder: &Decoder,
    latent: &Tensor,
    inputs: &DecodeInputs,
    tiles: SpatialTiles,
    temporal_chunk: Option<usize>,
) -> Result<Tensor> {
    let (_, _, frames, latent_height, latent_width) = latent.dims5()?;
    let factor = decoder.spatial_factor();
    let mut decode_tile = |y: usize, x: usize, height: usize, width: usize| -> Result<Tensor> {
        let tile = latent.narrow(3, y, height)?.narrow(4, x, width)?.contiguous()?;
        let tile_inputs = inputs.crop(y, x, height, width, latent_height, latent_width)?;
        match temporal_chunk {
            Some(chunk) if chunk < frames => decode_chunked(decoder, &tile, &tile_inputs, chunk.max(1)),
            _ => decoder.forward(&tile, &tile_inputs, None),
        }
    };
    blend_tiles(latent_height, latent_width, tiles, factor, latent.device(), &mut decode_tile)
}
