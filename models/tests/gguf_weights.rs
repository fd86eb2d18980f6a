//! GGUF files through [`WeightSource`], the API every model loader reads weights with: the stored names,
//! torch shapes with ComfyUI-GGUF's shape records applied, metadata as text, dense loads equal to the
//! `gguf` package's dequantization, dtype choices that leave quantized matrices out, and errors for files
//! that are not GGUF or are cut short. Fixtures: `models/tests/data/gguf/` (`tools/fixtures/make_gguf_fixtures.py`).

use candle_core::{DType, Device, Tensor};
use kinograph_models::gguf::GgmlType;
use kinograph_models::weights::{WeightError, WeightSource};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/gguf").join(name)
}

fn bits(tensor: &Tensor) -> Vec<u32> {
    tensor
        .flatten_all()
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

#[test]
fn gguf_tensors_load_dense_as_the_gguf_package_dequantizes_them() {
    let source = Arc::new(WeightSource::open(&[fixture("mixed.gguf")]).unwrap());
    let expected = candle_core::safetensors::load(fixture("expected.safetensors"), &Device::Cpu).unwrap();
    assert!(expected.len() > 15);
    for (name, reference) in &expected {
        assert!(source.contains(name), "{name}");
        assert_eq!(source.shape(name).unwrap(), reference.dims(), "{name}");
        let found = source.load(name, DType::F32, &Device::Cpu).unwrap();
        assert_eq!(found.dims(), reference.dims(), "{name}");
        assert_eq!(bits(&found), bits(reference), "{name}");
    }
    // ComfyUI-GGUF's reshaped conv weight comes in its original shape, through a VarBuilder too.
    assert_eq!(source.shape("input_blocks.1.0.weight").unwrap(), [16, 8, 2, 2]);
    let builder = source.var_builder("input_blocks.1", DType::F32, &Device::Cpu);
    let conv = builder.get((16, 8, 2, 2), "0.weight").unwrap();
    assert_eq!(bits(&conv), bits(&expected["input_blocks.1.0.weight"]));
    // Plain F16 and BF16 come exactly as stored when asked for in their own dtype.
    for (name, dtype) in [("types.f16", DType::F16), ("types.bf16", DType::BF16)] {
        let narrow = source.load(name, dtype, &Device::Cpu).unwrap();
        assert_eq!(narrow.dtype(), dtype);
        assert_eq!(bits(&narrow), bits(&expected[name]), "{name}");
    }
    assert_eq!(source.ggml_type("types.q4_k"), Some(GgmlType::Q4_K));
    assert_eq!(source.dtype("types.q4_k"), None, "quantized blocks have no safetensors dtype");
    assert_eq!(source.dtype("types.bf16"), Some(safetensors::Dtype::BF16));
    assert_eq!(source.stored_bytes("types.q8_0"), Some(2 * 256 / 32 * 34));
    assert!(source.gguf_file("types.q8_0").is_some() && source.gguf_files().count() == 1);
}

#[test]
fn gguf_metadata_reads_as_text_and_names_are_as_stored() {
    let source = WeightSource::open(&[fixture("mixed.gguf")]).unwrap();
    assert_eq!(source.metadata("general.architecture"), Some("ltxv"));
    let config: serde_json::Value = serde_json::from_str(source.metadata("config").unwrap()).unwrap();
    assert_eq!(config["transformer"]["attention_head_dim"], 64);
    assert_eq!(source.metadata("kinograph.test.u32"), Some("4000000000"));
    assert_eq!(source.metadata("kinograph.test.i8"), Some("-100"));
    assert_eq!(source.metadata("kinograph.test.u64"), Some("9223372036854775813"));
    assert_eq!(source.metadata("general.alignment"), Some("64"));
    assert!(source.contains("transformer_blocks.0.attn1.to_q.weight"), "ComfyUI's keys, without a prefix");
    assert_eq!(source.shape("transformer_blocks.0.attn1.to_q.weight").unwrap(), [16, 256], "torch order");
}

/// Quantized matrices do not decide the dtype a builder hands the other tensors in: a file of `Q4_K`
/// matrices and F16 vectors keeps the vectors f16, and nothing is widened for the matrices' sake.
#[test]
fn quantized_blocks_do_not_count_towards_the_common_dtype() {
    let source = WeightSource::open(&[fixture("mixed.gguf")]).unwrap();
    let names = ["types.q4_k", "types.q8_0", "types.f16"];
    assert_eq!(source.common_dtype(names.into_iter(), "test weights").unwrap(), DType::F16);
    assert_eq!(source.common_dtype(["types.q6_k"].into_iter(), "test weights").unwrap(), DType::F32);
    let mixed = ["types.q4_k", "types.f32", "types.bf16"];
    assert_eq!(source.common_dtype(mixed.into_iter(), "test weights").unwrap(), DType::F32);
    // What nothing reads narrow is widened: a quantized tensor among them makes it f32.
    assert_eq!(source.dense_dtype_under("types.f16", "test weights").unwrap(), DType::F16);
    assert_eq!(source.dense_dtype_under("types.", "test weights").unwrap(), DType::F32);
}

#[test]
fn broken_and_foreign_gguf_files_are_refused_naming_the_file() {
    let folder = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("mixed.gguf")).unwrap();
    let truncated = folder.path().join("cut.gguf");
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).unwrap();
    let error = WeightSource::open(&[&truncated]).err().unwrap();
    assert!(matches!(error, WeightError::GgufFormat { .. }), "{error}");
    let text = error.to_string();
    assert!(text.contains("cut.gguf") && text.contains("truncated"), "{text}");

    let header_only = folder.path().join("header.gguf");
    std::fs::write(&header_only, &bytes[..40]).unwrap();
    let error = WeightSource::open(&[&header_only]).err().unwrap();
    assert!(matches!(error, WeightError::GgufFormat { .. }), "{error}");

    let text_file = folder.path().join("notes.gguf");
    std::fs::write(&text_file, "this is not a model at all").unwrap();
    let error = WeightSource::open(&[&text_file]).err().unwrap().to_string();
    assert!(error.contains("notes.gguf") && error.contains("not a GGUF file"), "{error}");

    // A GGUF under another name is still read as GGUF.
    let renamed = folder.path().join("model.bin");
    std::fs::write(&renamed, &bytes).unwrap();
    assert!(WeightSource::open(&[&renamed]).unwrap().contains("types.q8_0"));
}
