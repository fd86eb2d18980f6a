//! 8-bit floating-point weights: the two formats PyTorch has and ComfyUI stores weights in
//! (`torch.float8_e4m3fn`, `torch.float8_e5m2`), their exact decoding through a 256-entry table per format,
//! encoding with PyTorch's rounding (for `UNETLoader`'s `weight_dtype`), and the per-tensor scales of
//! "scaled fp8" checkpoints.
//!
//! - [`Fp8Format`]: the bit layouts, [`Fp8Format::decode`] and [`Fp8Format::encode`].
//! - [`widen`]: the table lookup over bands of a weight, with the scale folded into the table.
//! - [`linear_weight`]: how a linear layer asks the weight source for its weight in fp8 codes plus scale
//!   ([`LinearWeight`]), and how the source decides ([`LinearStorage`]).
//!
//! A scaled weight means `weight = decode(code) · scale` (ComfyUI `comfy/ops.py` `scaled_fp8_ops` and
//! `comfy/quant_ops.py`'s per-tensor fp8 layouts; Lightricks' LTX-2 fp8 files). The product is one f32
//! multiplication per element, so the table `decode(code) · scale` gives exactly what PyTorch gets when
//! it upcasts the weight to float32 and multiplies by the scale.

pub mod linear_weight;
pub mod widen;

pub use linear_weight::{Fp8Weight, LinearStorage, LinearWeight, WeightStorage, read_linear_weight};

use std::sync::OnceLock;

/// One of the two fp8 formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fp8Format {
    /// `float8_e4m3fn`: 1 sign, 4 exponent (bias 7), 3 mantissa bits; no infinities; `S.1111.111` is NaN;
    /// largest finite ±448.
    E4M3Fn,
    /// `float8_e5m2`: 1 sign, 5 exponent (bias 15), 2 mantissa bits; IEEE-like, with infinities and NaNs;
    /// largest finite ±57344. The top byte of an IEEE half.
    E5M2,
}

impl Fp8Format {
    /// Both formats.
    pub const ALL: [Fp8Format; 2] = [Fp8Format::E4M3Fn, Fp8Format::E5M2];

    /// PyTorch's name (`float8_e4m3fn`), which ComfyUI's quantisation metadata uses too.
    pub fn name(self) -> &'static str {
        match self {
            Fp8Format::E4M3Fn => "float8_e4m3fn",
            Fp8Format::E5M2 => "float8_e5m2",
        }
    }

    /// The format of a safetensors dtype, if it is an fp8 one.
    pub fn of_safetensors(dtype: safetensors::Dtype) -> Option<Self> {
        match dtype {
            safetensors::Dtype::F8_E4M3 => Some(Fp8Format::E4M3Fn),
            safetensors::Dtype::F8_E5M2 => Some(Fp8Format::E5M2),
            _ => None,
        }
    }

    /// The format named by a ComfyUI quantisation `format` string, if it is an fp8 one.
    pub fn of_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|format| format.name() == name)
    }

    const fn mantissa_bits(self) -> u32 {
        match self {
            Fp8Format::E4M3Fn => 3,
            Fp8Format::E5M2 => 2,
        }
    }

    const fn bias(self) -> i32 {
        match self {
            Fp8Format::E4M3Fn => 7,
            Fp8Format::E5M2 => 15,
        }
    }

    /// The value of `code`, exactly (every fp8 value is an f32).
    pub fn decode(self, code: u8) -> f32 {
        let negative = code & 0x80 != 0;
        let mantissa_bits = self.mantissa_bits();
        let exponent = i32::from((code & 0x7f) >> mantissa_bits);
        let mantissa = u32::from(code) & ((1 << mantissa_bits) - 1);
        let max_exponent = (1 << (7 - mantissa_bits)) - 1;
        let magnitude = match self {
            Fp8Format::E4M3Fn if exponent == max_exponent && mantissa == (1 << mantissa_bits) - 1 => f32::NAN,
            Fp8Format::E5M2 if exponent == max_exponent => {
                if mantissa == 0 {
                    f32::INFINITY
                } else {
                    f32::NAN
                }
            }
            _ => {
                let unit = (1 << mantissa_bits) as f32;
                // Subnormals (exponent 0) have no implicit one and the exponent of the smallest normal.
                let (fraction, power) = if exponent == 0 {
                    (mantissa as f32 / unit, 1 - self.bias())
                } else {
                    (1.0 + mantissa as f32 / unit, exponent - self.bias())
                };
                fraction * 2f32.powi(power)
            }
        };
        if negative { -magnitude } else { magnitude }
    }

    /// The 256 values of this format, by code.
    pub fn table(self) -> &'static [f32; 256] {
        static TABLES: [OnceLock<[f32; 256]>; 2] = [OnceLock::new(), OnceLock::new()];
        let index = match self {
            Fp8Format::E4M3Fn => 0,
            Fp8Format::E5M2 => 1,
        };
        TABLES[index].get_or_init(|| std::array::from_fn(|code| self.decode(code as u8)))
    }

    /// The table of `decode(code) · scale`, one f32 product per entry: what widening a scaled weight looks
    /// up.
    pub fn scaled_table(self, scale: f32) -> [f32; 256] {
        let table = self.table();
        if scale == 1.0 { *table } else { std::array::from_fn(|code| table[code] * scale) }
    }

    /// The code PyTorch's `tensor.to(torch.float8_…)` gives `value` (torch 2.15 on the CPU): rounded to the
    /// nearest value, ties to even mantissa. Out of range, e4m3fn saturates to ±448 (infinities too), and
    /// e5m2 gives ±infinity (from 61440 up); NaN stays NaN, with its sign.
    pub fn encode(self, value: f32) -> u8 {
        let bits = value.to_bits();
        let sign = ((bits >> 24) & 0x80) as u8;
        let magnitude = bits & 0x7fff_ffff;
        let mantissa_bits = self.mantissa_bits();
        let nan = 0x7f;
        // Magnitudes from here up are out of range: f32 bits of 448 (e4m3fn, whose largest value is 448 and
        // which saturates there) and 65536 (e5m2, which overflows to infinity).
        let (overflow, overflow_code) = match self {
            Fp8Format::E4M3Fn => (0x43e0_0000, 0x7e),
            Fp8Format::E5M2 => (0x4780_0000, 0x7c),
        };
        let code = if magnitude > 0x7f80_0000 {
            nan
        } else if magnitude >= overflow {
            overflow_code
        } else if magnitude < ((127 - self.bias() + 1) as u32) << 23 {
            // Below the smallest normal: the subnormal step is 2^(1 − bias − mantissa bits). Adding a power
            // of two whose f32 ulp is that step rounds (ties to even) exactly as the fp8 grid does, and the
            // low bits of the sum are then the code.
            let step_power = 1 - self.bias() - mantissa_bits as i32;
            let anchor = f32::from_bits(((127 + step_power + 23) as u32) << 23);
            let sum = f32::from_bits(magnitude) + anchor;
            (sum.to_bits() - anchor.to_bits()) as u8
        } else {
            let shift = 23 - mantissa_bits;
            let odd = (magnitude >> shift) & 1;
            let rounded = magnitude + ((1 << (shift - 1)) - 1) + odd;
            let rebias = ((127 - self.bias()) as u32) << 23;
            ((rounded - rebias) >> shift) as u8
        };
        code | sign
    }
}

impl std::fmt::Display for Fp8Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_decode() {
        let e4 = Fp8Format::E4M3Fn;
        assert_eq!(e4.decode(0x00), 0.0);
        assert_eq!(e4.decode(0x38), 1.0);
        assert_eq!(e4.decode(0x7e), 448.0);
        assert_eq!(e4.decode(0xfe), -448.0);
        assert_eq!(e4.decode(0x01), 2f32.powi(-9), "smallest subnormal");
        assert!(e4.decode(0x7f).is_nan() && e4.decode(0xff).is_nan());
        let e5 = Fp8Format::E5M2;
        assert_eq!(e5.decode(0x3c), 1.0);
        assert_eq!(e5.decode(0x7b), 57344.0);
        assert_eq!(e5.decode(0x01), 2f32.powi(-16), "smallest subnormal");
        assert_eq!(e5.decode(0x7c), f32::INFINITY);
        assert_eq!(e5.decode(0xfc), f32::NEG_INFINITY);
        assert!(e5.decode(0x7d).is_nan());
        // e5m2 is the top byte of an IEEE half.
        for code in 0..=255u8 {
            let half = half::f16::from_bits(u16::from(code) << 8).to_f32();
            let value = e5.decode(code);
            assert!(value.to_bits() == half.to_bits() || (value.is_nan() && half.is_nan()), "{code:#04x}");
        }
    }

    #[test]
    fn every_value_encodes_to_its_own_code() {
        for format in Fp8Format::ALL {
            for code in 0..=255u8 {
                let value = format.decode(code);
                if !value.is_nan() {
                    assert_eq!(format.encode(value), code, "{format} {code:#04x} = {value}");
                }
            }
        }
    }

    #[test]
    fn encoding_rounds_to_nearest_even_and_saturates_as_torch_does() {
        let e4 = Fp8Format::E4M3Fn;
        // 1.0625 is halfway between 1 (even mantissa) and 1.125.
        assert_eq!(e4.decode(e4.encode(1.0625)), 1.0);
        assert_eq!(e4.decode(e4.encode(1.1875)), 1.25, "halfway between 1.125 and 1.25: to the even 1.25");
        assert_eq!(e4.decode(e4.encode(464.0)), 448.0);
        assert_eq!(e4.encode(470.0), 0x7e, "saturates at 448");
        assert_eq!(e4.encode(-1000.0), 0xfe);
        assert_eq!(e4.encode(f32::INFINITY), 0x7e);
        assert_eq!(e4.encode(-f32::NAN), 0xff);
        assert_eq!(e4.decode(e4.encode(2f32.powi(-10))), 0.0, "half the smallest subnormal: to even zero");
        let e5 = Fp8Format::E5M2;
        assert_eq!(e5.encode(60000.0), 0x7b);
        assert_eq!(e5.encode(61440.0), 0x7c, "halfway to 65536 rounds to the even pattern: infinity");
        assert_eq!(e5.encode(-1e9), 0xfc);
        assert_eq!(e5.encode(f32::NAN), 0x7f);
    }

    #[test]
    fn scaled_tables_are_one_product_per_entry() {
        let table = Fp8Format::E4M3Fn.scaled_table(0.0013);
        assert_eq!(table[0x38], 0.0013);
        assert_eq!(table[0x7e], 448.0 * 0.0013_f32);
    }
}
