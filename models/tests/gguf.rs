//! The GGUF reader, dequantization and `QuantLinear` against `models/tests/data/gguf/` (written and
//! dequantized by the `gguf` Python package: `tools/fixtures/make_gguf_fixtures.py`), and against small
//! files built here byte by byte for the cases the package will not write (unknown types, truncation,
//! other versions).

use candle_core::{DType, Device, Tensor};
use kinograph_models::gguf::{GgmlType, GgufError, GgufFile, MatmulKernel, MetadataValue, QuantLinear};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/gguf").join(name)
}

fn mixed() -> GgufFile {
    GgufFile::open(fixture("mixed.gguf")).unwrap()
}

/// Every tensor the package dequantized, bit for bit (the fixture covers the fifteen types kinograph
/// widens, a 5-D tensor and a reshaped one).
#[test]
fn dequantizes_every_type_bit_for_bit_like_the_gguf_package() {
    let file = mixed();
    let expected = candle_core::safetensors::load(fixture("expected.safetensors"), &Device::Cpu).unwrap();
    let mut types = std::collections::BTreeSet::new();
    for (name, reference) in &expected {
        let info = file.tensor(name).unwrap_or_else(|| panic!("{name} is in the reference but not the file"));
        types.insert(info.ggml_type().name());
        let found = file.dequantize(name).unwrap();
        assert_eq!(found.dims(), reference.dims(), "{name}");
        let found: Vec<u32> =
            found.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect();
        let reference: Vec<u32> =
            reference.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect();
        let differing = found.iter().zip(&reference).filter(|(a, b)| a != b).count();
        assert_eq!(differing, 0, "{name} ({}): {differing} of {} values differ", info.ggml_type(), reference.len());
    }
    let all = [
        "F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL",
        "IQ4_XS",
    ];
    assert_eq!(types, all.iter().map(|name| (*name).to_string()).collect(), "types covered by the fixture");
}

/// candle's own dequantization of the types it has agrees with ours bit for bit, on `QTensor`s made from
/// the mapped bytes.
#[test]
fn candle_qtensors_from_the_map_dequantize_to_the_same_values() {
    let file = mixed();
    let mut checked = 0;
    for info in file.tensors() {
        if info.ggml_type().candle_dtype().is_none() || info.shape() != info.stored_shape() {
            continue;
        }
        let qtensor = file.qtensor(info.name(), &Device::Cpu).unwrap();
        assert_eq!(qtensor.shape().dims(), info.shape(), "{}", info.name());
        let theirs = qtensor.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let ours = file.dequantize(info.name()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(ours.iter().zip(&theirs).all(|(a, b)| a.to_bits() == b.to_bits()), "{}", info.name());
        checked += 1;
    }
    assert!(checked >= 17, "{checked} tensors checked");
    let error = file.qtensor("types.iq4_xs", &Device::Cpu).unwrap_err().to_string();
    assert!(
        error.contains("'types.iq4_xs'") && error.contains("candle has no quantized tensor of type IQ4_XS"),
        "{error}"
    );
}

#[test]
fn reads_metadata_of_every_kind() {
    let file = mixed();
    assert_eq!((file.version(), file.alignment(), file.architecture()), (3, 64, Some("ltxv")));
    let value = |key: &str| file.metadata(&format!("kinograph.test.{key}")).unwrap().clone();
    assert_eq!(value("u8"), MetadataValue::U8(200));
    assert_eq!(value("i8"), MetadataValue::I8(-100));
    assert_eq!(value("u16"), MetadataValue::U16(60000));
    assert_eq!(value("i16"), MetadataValue::I16(-30000));
    assert_eq!(value("u32"), MetadataValue::U32(4_000_000_000));
    assert_eq!(value("i32"), MetadataValue::I32(-2_000_000_000));
    assert_eq!(value("u64"), MetadataValue::U64((1 << 63) + 5));
    assert_eq!(value("i64"), MetadataValue::I64(-(1 << 62)));
    assert_eq!(value("f32"), MetadataValue::F32(0.125));
    assert_eq!(value("f64"), MetadataValue::F64(-2.5e-300));
    assert_eq!(value("bool"), MetadataValue::Bool(true));
    assert_eq!(value("string").as_str(), Some("naïve ✓"));
    let strings = value("strings");
    let strings: Vec<&str> = strings.as_array().unwrap().iter().filter_map(MetadataValue::as_str).collect();
    assert_eq!(strings, ["a", "", "ccc"]);
    assert_eq!(value("floats"), MetadataValue::Array(vec![MetadataValue::F32(1.5), MetadataValue::F32(-0.25)]));
    let nested = value("nested");
    let nested: Vec<Vec<i64>> = nested
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row.as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect())
        .collect();
    assert_eq!(nested, [vec![1, 2], vec![3]]);
    assert_eq!(value("u64").as_i64(), None, "2^63 + 5 does not fit an i64");
    assert_eq!(value("i8").as_u64(), None);
    assert_eq!(file.metadata("general.quantization_version").and_then(MetadataValue::as_u64), Some(2));
    let config: serde_json::Value = serde_json::from_str(file.metadata("config").unwrap().as_str().unwrap()).unwrap();
    assert_eq!(config["transformer"]["num_layers"], 1);
    assert!(file.metadata("kinograph.test.absent").is_none());
    assert_eq!(file.metadata_entries().count(), 21);
}

#[test]
fn shapes_are_torch_order_with_comfy_records_and_ranges_inside_the_data() {
    let file = mixed();
    let names: Vec<&str> = file.tensors().iter().map(kinograph_models::gguf::TensorInfo::name).collect();
    assert_eq!(names.len(), 24);
    assert_eq!(names[15], "transformer_blocks.0.attn1.to_q.weight", "file order is kept");

    let to_q = file.tensor("transformer_blocks.0.attn1.to_q.weight").unwrap();
    assert_eq!(to_q.ggml_type(), GgmlType::Q8_0);
    assert_eq!((to_q.shape(), to_q.ggml_dims()), (&[16, 256][..], &[256_u64, 16][..]));
    let range = to_q.byte_range().unwrap();
    assert_eq!(range.len(), 16 * 8 * 34);
    assert_eq!((range.start - file.data_start()) % 64, 0, "offsets follow general.alignment");
    assert_eq!(file.tensor_data(to_q.name()).unwrap().len(), range.len());

    let conv3d = file.tensor("patch_embedding.weight").unwrap();
    assert_eq!((conv3d.shape(), conv3d.ggml_dims()), (&[4, 2, 1, 2, 2][..], &[2_u64, 2, 1, 2, 4][..]));
    assert_eq!(file.dequantize("patch_embedding.weight").unwrap().dims(), [4, 2, 1, 2, 2]);

    let conv = file.tensor("input_blocks.1.0.weight").unwrap();
    assert_eq!((conv.shape(), conv.stored_shape()), (&[16, 8, 2, 2][..], &[2, 256][..]));
    assert_eq!(
        file.qtensor(conv.name(), &Device::Cpu).unwrap().shape().dims(),
        [2, 256],
        "candle gets the stored shape"
    );

    let error = file.dequantize("transformer_blocks.0.attn9.weight").unwrap_err();
    assert!(matches!(&error, GgufError::Missing { tensor, .. } if tensor == "transformer_blocks.0.attn9.weight"));
    assert!(error.to_string().contains("mixed.gguf"), "{error}");
}

/// Writes `bytes` to a fresh file and opens it.
fn open_bytes(bytes: &[u8]) -> (tempfile::TempDir, Result<GgufFile, GgufError>) {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("model.gguf");
    std::fs::write(&path, bytes).unwrap();
    let opened = GgufFile::open(&path);
    (folder, opened)
}

#[test]
fn version_2_reads_the_same_and_other_headers_are_refused_with_the_reason() {
    let bytes = std::fs::read(fixture("mixed.gguf")).unwrap();
    let mut version_2 = bytes.clone();
    version_2[4..8].copy_from_slice(&2_u32.to_le_bytes());
    let (_folder, opened) = open_bytes(&version_2);
    let file = opened.unwrap();
    assert_eq!(file.version(), 2);
    let reference = mixed().dequantize("types.q5_k").unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(file.dequantize("types.q5_k").unwrap().to_vec2::<f32>().unwrap(), reference);

    let refused = |bytes: &[u8]| {
        let (_folder, opened) = open_bytes(bytes);
        let error = opened.unwrap_err();
        assert!(error.to_string().contains("model.gguf"), "the message names the file: {error}");
        error.to_string()
    };
    let mut version_1 = bytes.clone();
    version_1[4..8].copy_from_slice(&1_u32.to_le_bytes());
    assert!(refused(&version_1).contains("version 1"));
    let mut big_endian = bytes.clone();
    big_endian[4..8].copy_from_slice(&3_u32.to_be_bytes());
    assert!(refused(&big_endian).contains("big-endian"));
    let mut safetensors = bytes.clone();
    safetensors[..4].copy_from_slice(b"\x10\x00\x00\x00");
    assert!(refused(&safetensors).contains("not a GGUF file"));
    assert!(refused(b"GGUF").contains("too short"));
    let counts_too_large = refused(&bytes[..300]);
    assert!(counts_too_large.contains("the tensor count says 24 items") && counts_too_large.contains("truncated"));
    let header_cut = refused(&bytes[..mixed().data_start() - 100]);
    assert!(header_cut.contains("inside the header, reading the") && header_cut.contains("truncated"), "{header_cut}");
    let last_end = mixed().tensor("input_blocks.1.0.weight").unwrap().byte_range().unwrap().end;
    let data_cut = refused(&bytes[..last_end - 10]);
    assert!(data_cut.contains("'input_blocks.1.0.weight'") && data_cut.contains("truncated"), "{data_cut}");
}

/// A GGUF file assembled field by field (version 3, default alignment 32).
#[derive(Default)]
struct Builder {
    metadata: Vec<u8>,
    metadata_count: u64,
    infos: Vec<u8>,
    tensor_count: u64,
    data: Vec<u8>,
}

impl Builder {
    fn string(out: &mut Vec<u8>, text: &str) {
        out.extend((text.len() as u64).to_le_bytes());
        out.extend(text.as_bytes());
    }

    /// A key with a value of GGUF kind `kind` whose encoding is `payload`.
    fn value(mut self, key: &str, kind: u32, payload: &[u8]) -> Self {
        Self::string(&mut self.metadata, key);
        self.metadata.extend(kind.to_le_bytes());
        self.metadata.extend(payload);
        self.metadata_count += 1;
        self
    }

    /// A tensor of ggml type id `ty`, dims fastest first, whose data is `data`.
    fn tensor(mut self, name: &str, dims: &[u64], ty: u32, data: &[u8]) -> Self {
        self.data.resize(self.data.len().div_ceil(32) * 32, 0);
        Self::string(&mut self.infos, name);
        self.infos.extend((dims.len() as u32).to_le_bytes());
        for dim in dims {
            self.infos.extend(dim.to_le_bytes());
        }
        self.infos.extend(ty.to_le_bytes());
        self.infos.extend((self.data.len() as u64).to_le_bytes());
        self.data.extend(data);
        self.tensor_count += 1;
        self
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(3_u32.to_le_bytes());
        out.extend(self.tensor_count.to_le_bytes());
        out.extend(self.metadata_count.to_le_bytes());
        out.extend(&self.metadata);
        out.extend(&self.infos);
        out.resize(out.len().div_ceil(32) * 32, 0);
        out.extend(&self.data);
        out
    }
}

#[test]
fn unknown_types_are_refused_only_when_used() {
    let values: Vec<u8> = [1.0_f32, 2.0, 3.0, 4.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    let builder = Builder::default()
        .value("general.architecture", 8, &[&4_u64.to_le_bytes()[..], b"ltxv"].concat())
        .tensor("known", &[4], 0, &values)
        .tensor("mystery", &[32, 2], 99, &[0; 64])
        .tensor("iq2", &[256], 16, &[0; 66])
        .tensor("after", &[2, 2], 0, &values);
    let (_folder, opened) = open_bytes(&builder.bytes());
    let file = opened.unwrap();
    assert_eq!(file.architecture(), Some("ltxv"));
    assert_eq!(file.dequantize("known").unwrap().to_vec1::<f32>().unwrap(), [1.0, 2.0, 3.0, 4.0]);
    assert_eq!(file.dequantize("after").unwrap().to_vec2::<f32>().unwrap(), [[1.0, 2.0], [3.0, 4.0]]);
    let mystery = file.tensor("mystery").unwrap();
    assert_eq!(
        (mystery.ggml_type(), mystery.shape(), mystery.byte_range()),
        (GgmlType::Unknown(99), &[2, 32][..], None)
    );
    let error = file.dequantize("mystery").unwrap_err().to_string();
    assert!(error.contains("model.gguf") && error.contains("'mystery'") && error.contains("type id 99"), "{error}");
    let error = file.dequantize("iq2").unwrap_err().to_string();
    assert!(error.contains("'iq2'") && error.contains("cannot dequantize IQ2_XXS"), "{error}");
    let error = QuantLinear::from_gguf(&Arc::new(file), "iq2", None, MatmulKernel::Auto, &Device::Cpu).unwrap_err();
    assert!(error.to_string().contains("[256]; a linear weight is [out, in]"), "{error}");
}

#[test]
fn corrupt_headers_name_what_was_expected() {
    let message = |builder: Builder| open_bytes(&builder.bytes()).1.unwrap_err().to_string();
    let error = message(Builder::default().value("odd", 13, &[0; 8]));
    assert!(error.contains("metadata 'odd' has unknown value type 13"), "{error}");
    let error = message(Builder::default().value("flag", 7, &[2]));
    assert!(error.contains("metadata 'flag' is a bool stored as 2"), "{error}");
    let huge_array = [&5_u32.to_le_bytes()[..], &u64::MAX.to_le_bytes()].concat();
    let error = message(Builder::default().value("list", 9, &huge_array));
    assert!(error.contains("the length of metadata 'list'") && error.contains("items"), "{error}");
    let error = message(Builder::default().tensor("deep", &[1; 9], 0, &[0; 4]));
    assert!(error.contains("tensor 'deep' has 9 dimensions"), "{error}");
    let error = message(Builder::default().tensor("far", &[4], 0, &[]));
    assert!(error.contains("tensor 'far' (F32, shape [4]) needs bytes") && error.contains("truncated"), "{error}");
    let error = message(Builder::default().tensor("twice", &[1], 0, &[0; 4]).tensor("twice", &[1], 0, &[0; 4]));
    assert!(error.contains("tensor 'twice' appears twice"), "{error}");
    let error = message(Builder::default().value("general.alignment", 4, &24_u32.to_le_bytes()));
    assert!(error.contains("general.alignment"), "{error}");

    // A row that is not whole blocks is kept as that tensor's problem.
    let (_folder, opened) = open_bytes(&Builder::default().tensor("ragged", &[40], 8, &[0; 34]).bytes());
    let error = opened.unwrap().dequantize("ragged").unwrap_err().to_string();
    assert!(
        error.contains("'ragged'") && error.contains("rows of 40 values do not divide into Q8_0 blocks of 32"),
        "{error}"
    );
}

fn relative_error(found: &Tensor, expected: &Tensor) -> f32 {
    let difference = (found - expected).unwrap().sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
    let norm = expected.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
    (difference / norm).sqrt()
}

/// `QuantLinear` over each weight type of the fixture against an f32 matmul of the dequantized weight:
/// the dequantize kernel within 1e-6 relative L2 (the same f32 products summed in another order),
/// candle's quantized kernel within 2e-2 (it rounds the activations to 8 bits first: 0.5–1 % here).
#[test]
fn quant_linear_matches_the_dequantized_weight() {
    let file = Arc::new(mixed());
    let block = "transformer_blocks.0";
    // 18 rows: enough for the tile kernel, which widens products of fewer than 16 rows instead.
    let x = Tensor::randn(0f32, 1.0, (2, 9, 256), &Device::Cpu).unwrap();
    let bias = file.dequantize(&format!("{block}.attn1.to_q.bias")).unwrap();
    let tiles = kinograph_models::ops::tiles::fits(256);
    let weights = [
        ("attn1.to_q.weight", GgmlType::Q8_0, true),
        ("attn1.to_k.weight", GgmlType::Q4_K, true),
        ("attn1.to_v.weight", GgmlType::Q6_K, true),
        ("attn1.to_out.0.weight", GgmlType::Q5_K, true),
        ("ff.net.0.proj.weight", GgmlType::IQ4_XS, false),
        ("ff.net.2.weight", GgmlType::BF16, true),
    ];
    for (name, ty, candle_has_it) in weights {
        let name = format!("{block}.{name}");
        let bias_name = format!("{block}.attn1.to_q.bias");
        let dense = file.dequantize(&name).unwrap();
        let expected = x.broadcast_matmul(&dense.t().unwrap()).unwrap().broadcast_add(&bias).unwrap();
        let build = |kernel| QuantLinear::from_gguf(&file, &name, Some(&bias_name), kernel, &Device::Cpu);

        let widened = build(MatmulKernel::Dequantize).unwrap();
        assert_eq!((widened.ggml_type(), widened.shape(), widened.kernel()), (ty, (16, 256), MatmulKernel::Dequantize));
        for band_elements in [1 << 20, 3 * 256] {
            let found = widened.forward_in_bands(&x, band_elements).unwrap();
            assert_eq!(found.dims(), [2, 9, 16]);
            let error = relative_error(&found, &expected);
            assert!(error < 1e-6, "{name} ({ty}) dequantized in bands of {band_elements}: {error}");
        }

        let quantized = build(MatmulKernel::Quantized);
        if candle_has_it {
            let error = relative_error(&quantized.unwrap().forward(&x).unwrap(), &expected);
            assert!(error < 2e-2, "{name} ({ty}) through QMatMul: {error}");
        } else {
            assert!(quantized.unwrap_err().to_string().contains("no quantized matmul for IQ4_XS"));
        }
        let on_tiles = build(MatmulKernel::Tiles);
        if tiles {
            // bf16 keeps 8 significant bits of each factor: about 2^-9 relative on the sums.
            let error = relative_error(&on_tiles.unwrap().forward(&x).unwrap(), &expected);
            assert!(error < 5e-3, "{name} ({ty}) on AMX tiles: {error}");
        } else {
            assert!(on_tiles.unwrap_err().to_string().contains("AMX bf16 tiles are not available"));
        }
        let auto = build(MatmulKernel::Auto).unwrap();
        if tiles {
            assert_eq!(auto.kernel(), MatmulKernel::Tiles, "{ty} runs on AMX tiles where there are some");
        } else if matches!(ty, GgmlType::Q5_K | GgmlType::IQ4_XS | GgmlType::BF16) {
            assert_eq!(auto.kernel(), MatmulKernel::Dequantize, "{ty} is always widened on the CPU");
        }
        assert_eq!(auto.forward(&x).unwrap().dtype(), DType::F32);
    }
    let error = QuantLinear::from_gguf(&file, "input_blocks.1.0.weight", None, MatmulKernel::Auto, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(error.contains("[16, 8, 2, 2]; a linear weight is [out, in]"), "{error}");
    let error = QuantLinear::from_gguf(
        &file,
        &format!("{block}.attn1.to_k.weight"),
        Some("types.f32"),
        MatmulKernel::Auto,
        &Device::Cpu,
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("'types.f32': has shape [2, 256]; the bias of"), "{error}");
}
