//! Gemma's SentencePiece tokenizer against the sentencepiece library on the tiny BPE model of
//! `tools/fixtures/make_gemma_tokenizer_fixtures.py` (Gemma's settings: byte fallback, identity normaliser,
//! no dummy prefix, user-defined symbols): every sentence's ids and decode, from the model file and from the
//! `spiece_model` tensor ComfyUI's Gemma files embed.

use kinograph_models::gemma3::{GemmaTokenizer, TokenizerError};
use kinograph_models::weights::WeightSource;
use std::path::{Path, PathBuf};

fn data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/gemma_tokenizer").join(path)
}

fn check(tokenizer: &GemmaTokenizer) {
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data("expected.json")).unwrap()).unwrap();
    assert_eq!(tokenizer.vocab_size() as u64, expected["vocab_size"].as_u64().unwrap());
    for (name, id) in expected["special"].as_object().unwrap() {
        assert_eq!(tokenizer.token_id(name), Some(id.as_u64().unwrap() as u32), "{name}");
    }
    assert_eq!((tokenizer.pad_id(), tokenizer.eos_id(), tokenizer.bos_id()), (0, 1, 2));
    let cases = expected["cases"].as_array().unwrap();
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let ids: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        assert_eq!(tokenizer.encode(text).unwrap(), ids, "ids of {text:?}");
        assert_eq!(tokenizer.decode(&ids).unwrap(), case["decoded"].as_str().unwrap(), "decode of {text:?}");
    }
    println!("{} sentences encode and decode as sentencepiece does", cases.len());
}

#[test]
fn the_model_file_encodes_as_sentencepiece() {
    check(&GemmaTokenizer::from_sentencepiece(&std::fs::read(data("tiny.model")).unwrap()).unwrap());
}

#[test]
fn the_embedded_spiece_model_encodes_the_same() {
    let source = WeightSource::open(&[data("spiece.safetensors")]).unwrap();
    check(&GemmaTokenizer::from_weight_source(&source).unwrap());
}

#[test]
fn prompts_are_stripped_with_bos_first() {
    let tokenizer = GemmaTokenizer::from_sentencepiece(&std::fs::read(data("tiny.model")).unwrap()).unwrap();
    let ids = tokenizer.encode_prompt("  A red fox runs through fresh snow.\n").unwrap();
    assert_eq!(ids[0], tokenizer.bos_id());
    assert_eq!(ids[1..], tokenizer.encode("A red fox runs through fresh snow.").unwrap()[..]);
    assert_eq!(tokenizer.decode(&ids).unwrap(), "A red fox runs through fresh snow.");
}

#[test]
fn truncated_or_foreign_bytes_are_errors() {
    let bytes = std::fs::read(data("tiny.model")).unwrap();
    let error = GemmaTokenizer::from_sentencepiece(&bytes[..bytes.len() / 2]).unwrap_err();
    assert!(matches!(error, TokenizerError::Malformed(_)), "{error}");
    assert!(GemmaTokenizer::from_sentencepiece(b"not a model").is_err());
    let source =
        WeightSource::open(&[Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ltx2/gemma3_tiny.safetensors")])
            .unwrap();
    let error = GemmaTokenizer::from_weight_source(&source).unwrap_err();
    assert!(error.to_string().contains("spiece_model"), "{error}");
}
