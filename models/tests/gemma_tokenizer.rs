//! Gemma's tokenizer and the SentencePiece reader against the sentencepiece library and transformers, on the tiny
//! models of `tools/fixtures/make_gemma_tokenizer_fixtures.py`: `gemma_bpe` has Gemma 3's settings (BPE, byte
//! fallback, identity normaliser, no dummy prefix, user-defined symbols); the others vary the settings the
//! encoder reads from the model (pieces across spaces, unused pieces, a character map with dummy prefix and
//! whitespace cleanup, the space as a suffix without byte fallback, a Unigram model). Every text's normalised form,
//! ids and decoded text, and the decoded text of id sequences, must be the library's; the `tokenizer.json`
//! converted by transformers must give transformers' ids.

use kinograph_models::gemma3::sentencepiece::{SentencePieceError, SentencePieceModel};
use kinograph_models::gemma3::tokenizer::SPIECE_TENSOR;
use kinograph_models::gemma3::{GemmaTokenizer, TokenizerError};
use kinograph_models::weights::WeightSource;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/gemma_tokenizer").join(path)
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(data("expected.json")).unwrap()).unwrap()
}

fn ids(value: &Value) -> Vec<u32> {
    value.as_array().unwrap().iter().map(|id| u32::try_from(id.as_u64().unwrap()).unwrap()).collect()
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap()
}

/// Collects mismatches so that a failure lists them all rather than the first.
#[derive(Default)]
struct Mismatches(Vec<String>);

impl Mismatches {
    fn check<T: PartialEq + std::fmt::Debug + ?Sized>(&mut self, what: &str, input: &str, got: &T, want: &T) {
        if got != want {
            self.0.push(format!("{what} of {input:?}: got {got:?}, want {want:?}"));
        }
    }

    fn assert_none(self, name: &str) {
        assert!(self.0.is_empty(), "{name}: {} mismatches:\n{}", self.0.len(), self.0.join("\n"));
    }
}

/// The texts of `cases` (`text`, `ids`, `decoded`) through `encode` and `decode`.
fn check_cases(
    mismatches: &mut Mismatches,
    cases: &Value,
    encode: impl Fn(&str) -> Vec<u32>,
    decode: impl Fn(&[u32]) -> String,
) -> usize {
    let cases = cases.as_array().unwrap();
    for case in cases {
        let (input, want) = (text(&case["text"]), ids(&case["ids"]));
        mismatches.check("ids", input, &encode(input), &want);
        mismatches.check("decoded text", input, decode(&want).as_str(), text(&case["decoded"]));
    }
    cases.len()
}

#[test]
fn every_model_normalizes_encodes_and_decodes_as_sentencepiece() {
    let expected = expected();
    let mut texts = 0;
    for (name, want) in expected["models"].as_object().unwrap() {
        let bytes = std::fs::read(data(text(&want["file"]))).unwrap();
        let model = SentencePieceModel::from_bytes(&bytes).unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_eq!(model.len() as u64, want["vocab_size"].as_u64().unwrap(), "{name}");
        let special = |key: &str| want["special"][key].as_i64().unwrap();
        let id_or_minus_one = |id: Option<u32>| id.map_or(-1, i64::from);
        assert_eq!(i64::from(model.unk_id()), special("unk"), "{name}");
        assert_eq!(id_or_minus_one(model.bos_id()), special("bos"), "{name}");
        assert_eq!(id_or_minus_one(model.eos_id()), special("eos"), "{name}");
        assert_eq!(id_or_minus_one(model.pad_id()), special("pad"), "{name}");
        let mut mismatches = Mismatches::default();
        for case in want["cases"].as_array().unwrap() {
            let input = text(&case["text"]);
            mismatches.check("normalized", input, model.normalize(input).as_str(), text(&case["normalized"]));
        }
        texts += check_cases(&mut mismatches, &want["cases"], |t| model.encode(t), |ids| model.decode(ids).unwrap());
        for case in want["decodes"].as_array().unwrap() {
            let sequence = ids(&case["ids"]);
            let label = format!("{sequence:?}");
            mismatches.check("decoded text", &label, model.decode(&sequence).unwrap().as_str(), text(&case["text"]));
        }
        mismatches.assert_none(name);
    }
    assert!(texts > 600, "only {texts} texts");
    println!("{texts} texts over {} models encode as sentencepiece", expected["models"].as_object().unwrap().len());
}

/// `tokenizer` against the `gemma_bpe` expectations (or the `tokenizer.json` ones): texts, prompts, specials.
fn check_gemma(tokenizer: &GemmaTokenizer, want: &Value, source: &str) {
    assert_eq!(tokenizer.vocab_size() as u64, want["vocab_size"].as_u64().unwrap(), "{source}");
    assert_eq!((tokenizer.pad_id(), tokenizer.eos_id(), tokenizer.bos_id()), (0, 1, 2), "{source}");
    assert_eq!(tokenizer.token_id("<bos>"), Some(2), "{source}");
    assert_eq!(tokenizer.token_id("<start_of_turn>"), Some(5), "{source}");
    assert_eq!(tokenizer.token_id("no such piece"), None, "{source}");
    let mut mismatches = Mismatches::default();
    check_cases(
        &mut mismatches,
        &want["cases"],
        |t| tokenizer.encode(t).unwrap(),
        |ids| tokenizer.decode(ids).unwrap(),
    );
    for case in want["prompts"].as_array().unwrap() {
        let prompt = text(&case["prompt"]);
        mismatches.check("prompt ids", prompt, &tokenizer.encode_prompt(prompt).unwrap(), &ids(&case["ids"]));
    }
    mismatches.assert_none(source);
}

#[test]
fn the_gemma_model_reads_from_bytes_a_file_a_folder_and_the_comfy_tensor() {
    let expected = expected();
    let want = &expected["models"]["gemma_bpe"];
    let bytes = std::fs::read(data("gemma_bpe.model")).unwrap();
    check_gemma(&GemmaTokenizer::from_sentencepiece(&bytes).unwrap(), want, "bytes");
    check_gemma(&GemmaTokenizer::from_sentencepiece_file(&data("gemma_bpe.model")).unwrap(), want, "file");
    let folder = tempfile::tempdir().unwrap();
    std::fs::write(folder.path().join("tokenizer.model"), &bytes).unwrap();
    let from_folder = GemmaTokenizer::from_folder(folder.path()).unwrap();
    assert!(from_folder.sentencepiece().is_some());
    check_gemma(&from_folder, want, "folder with tokenizer.model");
    let source = WeightSource::open(&[data("spiece.safetensors")]).unwrap();
    assert_eq!(source.shape(SPIECE_TENSOR), Some(vec![bytes.len()]));
    check_gemma(&GemmaTokenizer::from_weight_source(&source).unwrap(), want, "spiece_model tensor");
}

#[test]
fn the_tokenizer_json_encodes_as_transformers() {
    let expected = expected();
    let want = &expected["tokenizer_json"];
    let tokenizer = GemmaTokenizer::from_tokenizer_json(&data(text(&want["file"]))).unwrap();
    assert!(tokenizer.sentencepiece().is_none());
    check_gemma(&tokenizer, want, "tokenizer.json");
    // A folder with both files uses tokenizer.json.
    check_gemma(&GemmaTokenizer::from_folder(&data("transformers")).unwrap(), want, "folder with tokenizer.json");
    // transformers reads control tokens spelled out in the text as tokens; the SentencePiece model does not.
    let differ = want["differ_from_sentencepiece"].as_array().unwrap();
    assert!(differ.iter().all(|t| ["<bos>", "<eos>", "<pad>", "<mask>", "<unk>"].iter().any(|c| text(t).contains(c))));
    let sentencepiece = GemmaTokenizer::from_sentencepiece(&std::fs::read(data("gemma_bpe.model")).unwrap()).unwrap();
    assert_eq!(tokenizer.encode("<bos>").unwrap(), [2]);
    assert_ne!(sentencepiece.encode("<bos>").unwrap(), [2]);
    assert!(matches!(tokenizer.decode(&[100_000]), Err(TokenizerError::Decode { .. })));
}

#[test]
fn prompts_are_stripped_with_bos_first() {
    let tokenizer = GemmaTokenizer::from_sentencepiece(&std::fs::read(data("gemma_bpe.model")).unwrap()).unwrap();
    let ids = tokenizer.encode_prompt(" \t A red fox runs through fresh snow.\n\u{3000}").unwrap();
    assert_eq!(ids[0], tokenizer.bos_id());
    assert_eq!(ids[1..], tokenizer.encode("A red fox runs through fresh snow.").unwrap()[..]);
    assert_ne!(ids[1..], tokenizer.encode(" A red fox runs through fresh snow.").unwrap()[..]);
    assert!(!ids[1..].contains(&tokenizer.eos_id()));
    assert_eq!(tokenizer.decode(&ids).unwrap(), "A red fox runs through fresh snow.");
    assert_eq!(tokenizer.encode_prompt("   ").unwrap(), [tokenizer.bos_id()]);
}

#[test]
fn truncated_or_garbage_models_are_errors() {
    let bytes = std::fs::read(data("gemma_bpe.model")).unwrap();
    for cut in [1, 7, bytes.len() / 3, bytes.len() / 2, bytes.len() - 1] {
        let error = GemmaTokenizer::from_sentencepiece(&bytes[..cut]).unwrap_err();
        assert!(
            matches!(error, TokenizerError::SentencePiece { error: SentencePieceError::Malformed { .. }, .. }),
            "cut at {cut}: {error}"
        );
    }
    for cut in 0..bytes.len() {
        // No prefix panics.
        let _ = SentencePieceModel::from_bytes(&bytes[..cut]);
    }
    let error = GemmaTokenizer::from_sentencepiece(b"not a model").unwrap_err().to_string();
    assert!(error.contains("expected"), "{error}");
    let error = GemmaTokenizer::from_sentencepiece(&[]).unwrap_err().to_string();
    assert!(error.contains("no unknown piece"), "{error}");
    // Valid, but without Gemma's `<pad>`: the suffix model has the library's default special pieces.
    let error = GemmaTokenizer::from_sentencepiece(&std::fs::read(data("bpe_suffix.model")).unwrap()).unwrap_err();
    assert!(matches!(error, TokenizerError::MissingSpecial { .. }), "{error}");
    let tiny_gemma = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ltx2/gemma3_tiny.safetensors");
    let error = GemmaTokenizer::from_weight_source(&WeightSource::open(&[tiny_gemma]).unwrap()).unwrap_err();
    assert!(error.to_string().contains(SPIECE_TENSOR), "{error}");
    let empty = tempfile::tempdir().unwrap();
    let error = GemmaTokenizer::from_folder(empty.path()).unwrap_err().to_string();
    assert!(error.contains("neither tokenizer.json nor tokenizer.model"), "{error}");
    let model = SentencePieceModel::from_bytes(&bytes).unwrap();
    assert!(matches!(model.decode(&[520]), Err(SentencePieceError::UnknownId { id: 520, size: 520 })));
}
