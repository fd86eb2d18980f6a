//! Gemma 3 as LTX-2's text encoder against transformers 5.24 `Gemma3ForCausalLM` on the tiny fixture of
//! `tools/fixtures/make_ltx2_fixtures.py`: 4 layers alternating sliding (window 4) and full attention, a
//! linear ×8 RoPE scaling on the full layers, grouped key/value heads, `query_pre_attn_scalar` ≠ head
//! width. Every hidden state, left-padded and unpadded.

use crate::compare::{assert_close, ltx2_data as data};
use candle_core::{DType, Device, IndexOp, Tensor};
use kinograph_models::block_stack::BlockHolding;
use kinograph_models::gemma3::{Gemma3TextModel, GemmaLoadOptions, LayerType, find_prefix, read_config};
use kinograph_models::weights::WeightSource;
use std::collections::HashMap;
use std::sync::Arc;

fn load(holding: BlockHolding) -> Gemma3TextModel {
    let source = Arc::new(WeightSource::open(&[data("gemma3_tiny.safetensors")]).unwrap());
    Gemma3TextModel::load(&source, &Device::Cpu, GemmaLoadOptions { layers: holding }).unwrap()
}

#[test]
fn config_comes_from_the_shapes_and_the_file() {
    let source = WeightSource::open(&[data("gemma3_tiny.safetensors")]).unwrap();
    let prefix = find_prefix(&source).unwrap();
    assert_eq!(prefix, "model.");
    let config = read_config(&source, &prefix).unwrap();
    assert_eq!((config.hidden_size, config.num_hidden_layers, config.head_dim), (32, 4, 16));
    assert_eq!((config.num_attention_heads, config.num_key_value_heads), (2, 1));
    assert_eq!(config.layer_types, [LayerType::Sliding, LayerType::Full, LayerType::Sliding, LayerType::Full]);
    assert_eq!((config.global_rope.factor, config.local_rope.factor), (8.0, 1.0));
    assert_eq!(config.query_pre_attn_scalar, 24.0);
}

#[test]
fn every_hidden_state_matches_transformers() {
    let r: HashMap<String, Tensor> =
        candle_core::safetensors::load(data("ref/gemma3_tiny.safetensors"), &Device::Cpu).unwrap();
    let ids = r["input_ids"].to_dtype(DType::U32).unwrap();
    for holding in [BlockHolding::Resident, BlockHolding::STREAMED, BlockHolding::Streamed { kept: 1 }] {
        let model = load(holding);
        let states = model.hidden_states(&ids, Some(&r["attention_mask"])).unwrap();
        assert_eq!(states.len(), 5);
        // The padded sample's pad rows are not compared (transformers leaves them to its masking choice).
        for (layer, state) in states.iter().enumerate() {
            let expected = r["hidden_states"].i((.., .., .., layer)).unwrap();
            assert_close(&format!("state {layer}, sample 0"), &state.i(0).unwrap(), &expected.i(0).unwrap(), 1e-4);
            assert_close(
                &format!("state {layer}, sample 1 tokens"),
                &state.i((1, 4..)).unwrap(),
                &expected.i((1, 4..)).unwrap(),
                1e-4,
            );
        }
        let logits = model.logits(&states[4]).unwrap();
        assert_close("logits, sample 0", &logits.i(0).unwrap(), &r["logits"].i(0).unwrap(), 1e-4);
    }
}

#[test]
fn left_padded_and_unpadded_prompts_give_the_same_states() {
    let r: HashMap<String, Tensor> =
        candle_core::safetensors::load(data("ref/gemma3_tiny.safetensors"), &Device::Cpu).unwrap();
    let model = load(BlockHolding::Resident);
    let ids = r["input_ids"].to_dtype(DType::U32).unwrap();
    let padded = model.hidden_states(&ids, Some(&r["attention_mask"])).unwrap();
    let alone = model.hidden_states(&ids.i((1..2, 4..)).unwrap(), None).unwrap();
    for (layer, (padded, alone)) in padded.iter().zip(&alone).enumerate() {
        let expected = r["alone_hidden_states"].i((.., .., .., layer)).unwrap();
        assert_close(&format!("unpadded state {layer} vs transformers"), alone, &expected, 1e-4);
        assert_close(&format!("unpadded vs padded state {layer}"), alone, &padded.i((1..2, 4..)).unwrap(), 1e-5);
    }
}
