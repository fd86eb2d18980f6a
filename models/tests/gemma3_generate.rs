//! Gemma 3 text generation (`gemma3::generate`, `gemma3::logits`) against transformers 5.24 and ComfyUI's
//! sampling maths, on the fixtures of `tools/fixtures/make_gemma_generate_fixtures.py`: a tiny Gemma 3 with a
//! sliding window of 4 (so generation runs well past it), greedy generations and their per-step logits from
//! `Gemma3ForCausalLM.generate`, transformers' logits processors and ComfyUI's `processed_probs` on fixed
//! logits.

use crate::compare::assert_close;
use candle_core::{DType, Device, IndexOp, Tensor};
use kinograph_models::block_stack::BlockHolding;
use kinograph_models::gemma3::logits::{
    TokenSampler, apply_penalties, min_p_filter, processed_probabilities, top_k, top_p_filter,
};
use kinograph_models::gemma3::{
    Gemma3Decoder, Gemma3TextModel, GemmaLoadOptions, GenerateOptions, SamplingOptions, Stop, generate,
};
use kinograph_models::weights::WeightSource;
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/gemma_generate").join(name)
}

fn load(holding: BlockHolding) -> Gemma3TextModel {
    let source = Arc::new(WeightSource::open(&[data("gemma3_generate_tiny.safetensors")]).unwrap());
    Gemma3TextModel::load(&source, &Device::Cpu, GemmaLoadOptions { layers: holding }).unwrap()
}

fn fixture(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(data(name), &Device::Cpu).unwrap()
}

fn ids(tensor: &Tensor) -> Vec<u32> {
    tensor.to_dtype(DType::U32).unwrap().to_vec1().unwrap()
}

fn greedy(max_new_tokens: usize, stop_tokens: Vec<u32>) -> GenerateOptions {
    GenerateOptions { max_new_tokens, stop_tokens, sampling: None }
}

fn row(values: Vec<f32>) -> Tensor {
    let count = values.len();
    Tensor::from_vec(values, count, &Device::Cpu).unwrap()
}

#[test]
fn greedy_generation_matches_transformers_token_for_token() {
    let r = fixture("greedy.safetensors");
    for holding in [BlockHolding::Resident, BlockHolding::STREAMED, BlockHolding::Streamed { kept: 1 }] {
        let model = load(holding);
        for case in 0..3 {
            let prompt = ids(&r[&format!("prompt_{case}")]);
            let expected = ids(&r[&format!("tokens_{case}")]);
            let generation =
                generate(&model, &prompt, &greedy(expected.len(), vec![1]), |_, _| ControlFlow::Continue(())).unwrap();
            assert_eq!(generation.tokens, expected, "prompt {case}, {holding:?}");
            assert_eq!(generation.stop, Stop::MaxTokens);
        }
    }
}

/// Each step's logits from the cache match transformers' and a recompute over the whole sequence, past the
/// sliding window of 4 (the prompts have 7, 3 and 12 tokens; 16 to 24 more are generated).
#[test]
fn cached_logits_match_transformers_and_a_full_recompute_at_every_step() {
    let r = fixture("greedy.safetensors");
    for holding in [BlockHolding::Resident, BlockHolding::STREAMED, BlockHolding::Streamed { kept: 1 }] {
        let model = load(holding);
        for case in 0..3 {
            let mut sequence = ids(&r[&format!("prompt_{case}")]);
            let tokens = ids(&r[&format!("tokens_{case}")]);
            let reference = &r[&format!("logits_{case}")];
            let mut decoder = Gemma3Decoder::new(&model);
            let mut logits = decoder.feed(&sequence).unwrap();
            for (step, &token) in tokens.iter().enumerate() {
                let what = format!("prompt {case}, step {step}, {holding:?}");
                assert_close(
                    &format!("{what}: vs transformers"),
                    &row(logits.clone()),
                    &reference.i(step).unwrap(),
                    1e-4,
                );
                let input = Tensor::new(sequence.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
                let states = model.hidden_states(&input, None).unwrap();
                let last = states.last().unwrap().i((.., sequence.len() - 1.., ..)).unwrap();
                let full = model.logits(&last).unwrap().flatten_all().unwrap();
                assert_close(&format!("{what}: vs full recompute"), &row(logits.clone()), &full, 1e-4);
                sequence.push(token);
                logits = decoder.feed(&[token]).unwrap();
            }
            assert_eq!(decoder.tokens(), sequence.len());
        }
    }
}

#[test]
fn a_stop_token_ends_generation_and_is_kept_and_the_callback_can_cancel() {
    let r = fixture("greedy.safetensors");
    let model = load(BlockHolding::Resident);
    let prompt = ids(&r["prompt_0"]);
    let expected = ids(&r["tokens_0"]);
    let stop = expected[3];
    let first = expected.iter().position(|&t| t == stop).unwrap();
    let generation = generate(&model, &prompt, &greedy(20, vec![stop]), |_, _| ControlFlow::Continue(())).unwrap();
    assert_eq!((generation.tokens.as_slice(), generation.stop), (&expected[..=first], Stop::StopToken));

    let generation = generate(&model, &prompt, &greedy(2, vec![]), |_, _| ControlFlow::Continue(())).unwrap();
    assert_eq!((generation.tokens.as_slice(), generation.stop), (&expected[..2], Stop::MaxTokens));

    let mut seen = Vec::new();
    let generation = generate(&model, &prompt, &greedy(20, vec![]), |step, token| {
        seen.push((step, token));
        if step == 1 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    })
    .unwrap();
    assert_eq!((generation.tokens.as_slice(), generation.stop), (&expected[..2], Stop::Cancelled));
    assert_eq!(seen, [(0, expected[0]), (1, expected[1])]);

    let error = Gemma3Decoder::new(&model).feed(&[2, 64]).unwrap_err();
    assert!(error.to_string().contains("token id 64 is outside Gemma's vocabulary of 64"), "{error}");
}

/// One row of fixed logits and which tokens count as already generated.
type ProcessorRow = (Vec<f32>, Vec<bool>);

/// The processor fixtures and their rows.
fn processor_rows() -> (HashMap<String, Tensor>, Vec<ProcessorRow>) {
    let r = fixture("processors.safetensors");
    let logits: Vec<Vec<f32>> = r["logits"].to_vec2().unwrap();
    let history: Vec<Vec<i64>> = r["history"].to_vec2().unwrap();
    let rows = logits
        .into_iter()
        .zip(history)
        .map(|(logits, history)| {
            let mut penalized = vec![false; logits.len()];
            for &id in &history {
                penalized[id as usize] = true;
            }
            (logits, penalized)
        })
        .collect();
    (r, rows)
}

/// Which entries a processor kept (finite in transformers, above `f32::MIN` here).
fn kept(values: &[f32]) -> Vec<bool> {
    values.iter().map(|&v| v.is_finite() && v > f32::MIN).collect()
}

#[test]
fn penalties_and_filters_match_transformers_logits_processors() {
    let (r, rows) = processor_rows();
    for (index, (logits, penalized)) in rows.iter().enumerate() {
        let expected = |name: &str| -> Vec<f32> { r[name].i(index).unwrap().to_vec1().unwrap() };

        let mut penalised = logits.clone();
        apply_penalties(&mut penalised, penalized, 1.3, 0.0);
        assert_close(&format!("row {index}: repetition penalty"), &row(penalised), &row(expected("repetition")), 1e-6);

        let (ids, values) = top_k(logits, 10);
        let transformers = expected("top_k");
        let mut ours = vec![f32::MIN; logits.len()];
        ids.iter().zip(&values).for_each(|(&id, &value)| ours[id as usize] = value);
        assert_eq!(kept(&ours), kept(&transformers), "row {index}: top-k");
        assert!(values.windows(2).all(|pair| pair[0] >= pair[1]), "top-k is sorted, largest first");

        let mut filtered = logits.clone();
        min_p_filter(&mut filtered, 0.1);
        assert_eq!(kept(&filtered), kept(&expected("min_p")), "row {index}: min-p");

        // ComfyUI's top-p drops the token whose probability carries the running sum past top-p; transformers
        // keeps it. Everything else agrees.
        let mut filtered = logits.clone();
        top_p_filter(&mut filtered, 0.8);
        let (ours, theirs) = (kept(&filtered), kept(&expected("top_p")));
        let extra: Vec<usize> = (0..ours.len()).filter(|&i| theirs[i] && !ours[i]).collect();
        assert!((0..ours.len()).all(|i| !ours[i] || theirs[i]), "row {index}: top-p keeps a token transformers drops");
        assert_eq!(extra.len(), 1, "row {index}: top-p differs from transformers by more than the crossing token");
        let least_kept_by_transformers =
            (0..ours.len()).filter(|&i| theirs[i]).min_by(|&a, &b| logits[a].total_cmp(&logits[b])).unwrap();
        assert_eq!(extra[0], least_kept_by_transformers, "row {index}: top-p's crossing token");
    }
    let temperature: Vec<f32> = rows[0].0.iter().map(|&v| v / 0.7_f32).collect();
    assert_close("temperature", &row(temperature), &r["temperature"].i(0).unwrap(), 1e-6);
}

#[test]
fn sampling_probabilities_match_comfyui_processed_probs() {
    let (r, rows) = processor_rows();
    let settings = [
        ("defaults", SamplingOptions::default()),
        (
            "no_top_k",
            SamplingOptions {
                temperature: 1.3,
                top_k: 0,
                top_p: 0.6,
                min_p: 0.0,
                repetition_penalty: 1.2,
                presence_penalty: 0.5,
                seed: 0,
            },
        ),
        (
            "min_p",
            SamplingOptions {
                temperature: 1.0,
                top_k: 5,
                top_p: 1.0,
                min_p: 0.3,
                repetition_penalty: 1.0,
                presence_penalty: 0.0,
                seed: 0,
            },
        ),
    ];
    for (name, options) in settings {
        for (index, (logits, penalized)) in rows.iter().enumerate() {
            let (ids, probabilities) = processed_probabilities(logits, &options, penalized);
            let mut full = vec![0.0_f32; logits.len()];
            ids.iter().zip(probabilities).for_each(|(&id, p)| full[id as usize] = p);
            let expected = r[&format!("comfy_{name}")].i(index).unwrap();
            assert_close(&format!("{name}, row {index}"), &row(full), &expected, 1e-6);
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_tokens_and_draws_follow_the_probabilities() {
    let r = fixture("greedy.safetensors");
    let model = load(BlockHolding::Resident);
    let prompt = ids(&r["prompt_1"]);
    let sampled = |seed: u64| {
        let sampling =
            SamplingOptions { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, seed, ..Default::default() };
        let options = GenerateOptions { max_new_tokens: 12, stop_tokens: vec![], sampling: Some(sampling) };
        generate(&model, &prompt, &options, |_, _| ControlFlow::Continue(())).unwrap().tokens
    };
    assert_eq!(sampled(7), sampled(7));
    let distinct: std::collections::HashSet<Vec<u32>> = (0..4).map(sampled).collect();
    assert!(distinct.len() > 1, "four seeds gave the same tokens: {distinct:?}");

    // Probabilities 0.5, 0.3, 0.2 (no penalty, no filter): the frequencies of 20,000 draws.
    let options = SamplingOptions {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        repetition_penalty: 1.0,
        presence_penalty: 0.0,
        seed: 3,
    };
    let mut sampler = TokenSampler::new(options, 3);
    let logits = [0.5_f32.ln(), 0.3_f32.ln(), 0.2_f32.ln()];
    let mut counts = [0_usize; 3];
    for _ in 0..20_000 {
        counts[sampler.next(&logits) as usize] += 1;
    }
    for (count, probability) in counts.iter().zip([0.5, 0.3, 0.2]) {
        let frequency = *count as f64 / 20_000.0;
        assert!((frequency - probability).abs() < 0.015, "frequencies {counts:?}");
    }
}
