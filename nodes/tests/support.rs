//! What several test files of this binary share: throw-away model/input/output folders, nodes by class
//! name, node inputs from pairs, and an LTX-2 CLIP around a Gemma 3 model.

use kinograph_engine::{Environment, NodeInputs, Value};
use kinograph_models::gemma3::{Gemma3TextModel, GemmaTokenizer};
use kinograph_models::ltx2::text::TextConnectors;
use kinograph_models::t5::T5Tokenizer;
use kinograph_models::weights::WeightSource;
use kinograph_nodes::values::{GemmaText, TextEncoder};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An environment whose folders live in a temporary directory (removed when this is dropped).
pub struct Folders {
    _root: tempfile::TempDir,
    pub env: Environment,
}

/// Empty output, input (created) and models folders.
pub fn folders() -> Folders {
    let root = tempfile::tempdir().unwrap();
    let env = Environment {
        output_dir: root.path().join("output"),
        input_dir: root.path().join("input"),
        models: kinograph_engine::ModelFolders::new(root.path().join("models")),
    };
    std::fs::create_dir_all(&env.input_dir).unwrap();
    Folders { _root: root, env }
}

/// The built-in node `class`.
pub fn node(class: &str) -> Arc<dyn kinograph_engine::Node> {
    kinograph_nodes::registry().get(class).unwrap_or_else(|| panic!("{class} is registered")).clone()
}

/// Node inputs from `(name, value)` pairs.
pub fn inputs(values: Vec<(&str, Value)>) -> NodeInputs {
    let mut inputs = NodeInputs::default();
    for (name, value) in values {
        inputs.insert(name, value);
    }
    inputs
}

/// A CLIP as `LTXAVTextEncoderLoader` makes it: `model` (read from `gemma_file`) and `tokenizer` with the
/// tiny LTX-2.0 projection and connectors of the model tests.
pub fn gemma_clip(model: Gemma3TextModel, tokenizer: GemmaTokenizer, gemma_file: PathBuf) -> Arc<TextEncoder> {
    let connector_file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tests/data/ltx2/connectors_20.safetensors");
    let connector_source = Arc::new(WeightSource::open(std::slice::from_ref(&connector_file)).unwrap());
    let connectors = TextConnectors::load(&connector_source, 16, &candle_core::Device::Cpu).unwrap();
    let gemma = GemmaText {
        model: Arc::new(model),
        tokenizer: Arc::new(tokenizer),
        connectors: Arc::new(connectors),
        gemma_file: gemma_file.clone(),
        connector_file,
    };
    Arc::new(TextEncoder {
        encoder: None,
        tokenizer: Arc::new(T5Tokenizer::new().unwrap()),
        gemma: Some(Arc::new(gemma)),
        file: gemma_file,
        bytes: 0,
    })
}
