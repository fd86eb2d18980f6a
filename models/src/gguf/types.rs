//! The ggml tensor types a GGUF file can name: their ids, block sizes and bytes per block, which of them
//! kinograph can widen to f32, and which candle can hold as a `QTensor`.

use candle_core::quantized::GgmlDType;

/// A ggml tensor type, by the id GGUF stores for it. Ids that no ggml version defines (or that were
/// removed, such as the repacked `Q4_0_4_4` family) are kept as [`GgmlType::Unknown`], so that a file
/// holding one still opens and only that tensor is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ2_S,
    IQ4_XS,
    I8,
    I16,
    I32,
    I64,
    F64,
    IQ1_M,
    BF16,
    TQ1_0,
    TQ2_0,
    MXFP4,
    NVFP4,
    Q1_0,
    /// An id this reader does not know.
    Unknown(u32),
}

/// Elements per super-block of the K-quants and the 256-element IQ types.
pub(crate) const SUPER_BLOCK: usize = 256;

/// `(type, id, name, elements per block, bytes per block)` of every known type (ggml's `type_traits`).
const TABLE: [(GgmlType, u32, &str, usize, usize); 34] = [
    (GgmlType::F32, 0, "F32", 1, 4),
    (GgmlType::F16, 1, "F16", 1, 2),
    (GgmlType::Q4_0, 2, "Q4_0", 32, 18),
    (GgmlType::Q4_1, 3, "Q4_1", 32, 20),
    (GgmlType::Q5_0, 6, "Q5_0", 32, 22),
    (GgmlType::Q5_1, 7, "Q5_1", 32, 24),
    (GgmlType::Q8_0, 8, "Q8_0", 32, 34),
    // ggml's `block_q8_1` (two f16 then 32 × i8); the `gguf` Python package still lists 40 bytes from an
    // older layout. Never stored in files in practice: ggml uses it for activations.
    (GgmlType::Q8_1, 9, "Q8_1", 32, 36),
    (GgmlType::Q2_K, 10, "Q2_K", SUPER_BLOCK, 84),
    (GgmlType::Q3_K, 11, "Q3_K", SUPER_BLOCK, 110),
    (GgmlType::Q4_K, 12, "Q4_K", SUPER_BLOCK, 144),
    (GgmlType::Q5_K, 13, "Q5_K", SUPER_BLOCK, 176),
    (GgmlType::Q6_K, 14, "Q6_K", SUPER_BLOCK, 210),
    (GgmlType::Q8_K, 15, "Q8_K", SUPER_BLOCK, 292),
    (GgmlType::IQ2_XXS, 16, "IQ2_XXS", SUPER_BLOCK, 66),
    (GgmlType::IQ2_XS, 17, "IQ2_XS", SUPER_BLOCK, 74),
    (GgmlType::IQ3_XXS, 18, "IQ3_XXS", SUPER_BLOCK, 98),
    (GgmlType::IQ1_S, 19, "IQ1_S", SUPER_BLOCK, 50),
    (GgmlType::IQ4_NL, 20, "IQ4_NL", 32, 18),
    (GgmlType::IQ3_S, 21, "IQ3_S", SUPER_BLOCK, 110),
    (GgmlType::IQ2_S, 22, "IQ2_S", SUPER_BLOCK, 82),
    (GgmlType::IQ4_XS, 23, "IQ4_XS", SUPER_BLOCK, 136),
    (GgmlType::I8, 24, "I8", 1, 1),
    (GgmlType::I16, 25, "I16", 1, 2),
    (GgmlType::I32, 26, "I32", 1, 4),
    (GgmlType::I64, 27, "I64", 1, 8),
    (GgmlType::F64, 28, "F64", 1, 8),
    (GgmlType::IQ1_M, 29, "IQ1_M", SUPER_BLOCK, 56),
    (GgmlType::BF16, 30, "BF16", 1, 2),
    (GgmlType::TQ1_0, 34, "TQ1_0", SUPER_BLOCK, 54),
    (GgmlType::TQ2_0, 35, "TQ2_0", SUPER_BLOCK, 66),
    (GgmlType::MXFP4, 39, "MXFP4", 32, 17),
    (GgmlType::NVFP4, 40, "NVFP4", 64, 36),
    (GgmlType::Q1_0, 41, "Q1_0", 128, 18),
];

impl GgmlType {
    /// The type GGUF's id `id` stands for.
    pub fn from_id(id: u32) -> Self {
        TABLE.iter().find(|entry| entry.1 == id).map_or(GgmlType::Unknown(id), |entry| entry.0)
    }

    /// The type ggml calls `name` (`Q4_K`, `bf16`, …; any case).
    pub fn from_name(name: &str) -> Option<Self> {
        TABLE.iter().find(|entry| entry.2.eq_ignore_ascii_case(name)).map(|entry| entry.0)
    }

    /// The id GGUF stores.
    pub fn id(self) -> u32 {
        match self {
            GgmlType::Unknown(id) => id,
            known => TABLE.iter().find(|entry| entry.0 == known).map_or(u32::MAX, |entry| entry.1),
        }
    }

    fn entry(self) -> Option<&'static (GgmlType, u32, &'static str, usize, usize)> {
        TABLE.iter().find(|entry| entry.0 == self)
    }

    /// ggml's name of the type (`Q4_K`, `BF16`, …); `unknown type 99` for an unknown id.
    pub fn name(self) -> String {
        self.entry().map_or_else(|| format!("unknown type {}", self.id()), |entry| entry.2.to_string())
    }

    /// Elements per block (1 for plain types, 32 or 256 for the quantised ones); `None` if unknown.
    pub fn block_elements(self) -> Option<usize> {
        self.entry().map(|entry| entry.3)
    }

    /// Bytes per block; `None` if unknown.
    pub fn block_bytes(self) -> Option<usize> {
        self.entry().map(|entry| entry.4)
    }

    /// Whether [`super::dequant::dequantize_into`] can widen this type to f32.
    pub fn can_dequantize(self) -> bool {
        matches!(
            self,
            GgmlType::F32
                | GgmlType::F16
                | GgmlType::BF16
                | GgmlType::Q8_0
                | GgmlType::Q4_0
                | GgmlType::Q4_1
                | GgmlType::Q5_0
                | GgmlType::Q5_1
                | GgmlType::Q2_K
                | GgmlType::Q3_K
                | GgmlType::Q4_K
                | GgmlType::Q5_K
                | GgmlType::Q6_K
                | GgmlType::IQ4_NL
                | GgmlType::IQ4_XS
        )
    }

    /// candle's name for the type, where candle's quantised tensors support it.
    pub fn candle_dtype(self) -> Option<GgmlDType> {
        Some(match self {
            GgmlType::F32 => GgmlDType::F32,
            GgmlType::F16 => GgmlDType::F16,
            GgmlType::BF16 => GgmlDType::BF16,
            GgmlType::Q4_0 => GgmlDType::Q4_0,
            GgmlType::Q4_1 => GgmlDType::Q4_1,
            GgmlType::Q5_0 => GgmlDType::Q5_0,
            GgmlType::Q5_1 => GgmlDType::Q5_1,
            GgmlType::Q8_0 => GgmlDType::Q8_0,
            GgmlType::Q8_1 => GgmlDType::Q8_1,
            GgmlType::Q2_K => GgmlDType::Q2K,
            GgmlType::Q3_K => GgmlDType::Q3K,
            GgmlType::Q4_K => GgmlDType::Q4K,
            GgmlType::Q5_K => GgmlDType::Q5K,
            GgmlType::Q6_K => GgmlDType::Q6K,
            GgmlType::Q8_K => GgmlDType::Q8K,
            _ => return None,
        })
    }

    /// The type of candle's `dtype`.
    pub fn from_candle(dtype: GgmlDType) -> Self {
        match dtype {
            GgmlDType::F32 => GgmlType::F32,
            GgmlDType::F16 => GgmlType::F16,
            GgmlDType::BF16 => GgmlType::BF16,
            GgmlDType::Q4_0 => GgmlType::Q4_0,
            GgmlDType::Q4_1 => GgmlType::Q4_1,
            GgmlDType::Q5_0 => GgmlType::Q5_0,
            GgmlDType::Q5_1 => GgmlType::Q5_1,
            GgmlDType::Q8_0 => GgmlType::Q8_0,
            GgmlDType::Q8_1 => GgmlType::Q8_1,
            GgmlDType::Q2K => GgmlType::Q2_K,
            GgmlDType::Q3K => GgmlType::Q3_K,
            GgmlDType::Q4K => GgmlType::Q4_K,
            GgmlDType::Q5K => GgmlType::Q5_K,
            GgmlDType::Q6K => GgmlType::Q6_K,
            GgmlDType::Q8K => GgmlType::Q8_K,
        }
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_sizes_agree_with_candle() {
        for entry in TABLE {
            assert_eq!(GgmlType::from_id(entry.1), entry.0);
            assert_eq!(entry.0.id(), entry.1);
            if let Some(dtype) = entry.0.candle_dtype() {
                assert_eq!(GgmlType::from_candle(dtype), entry.0);
                assert_eq!(dtype.block_size(), entry.3, "{}", entry.2);
                assert_eq!(dtype.type_size(), entry.4, "{}", entry.2);
            }
        }
        assert_eq!(GgmlType::from_name("q4_k"), Some(GgmlType::Q4_K));
        assert_eq!(GgmlType::from_name("Q4_9"), None);
        assert_eq!(GgmlType::from_id(4), GgmlType::Unknown(4));
        assert_eq!(GgmlType::Unknown(99).name(), "unknown type 99");
        assert_eq!(GgmlType::Unknown(99).block_bytes(), None);
    }
}
