//! The memory budget on the tiny demo models: `--ram-budget` smaller than the models still runs LTX-2 by
//! streaming the transformer's blocks, refuses LTX-Video's models when not even their streamed blocks fit
//! (the tiny T5 is mostly its embedding table, which stays) naming the node, the file and the sizes,
//! reports the peak memory, and lets the text encoder go once the run no longer needs it instead of keeping
//! it in the cache.
//!
//! `the_text_encoder_is_not_kept_by_the_cache_when_the_budget_is_tight` sets the process's budget: like
//! every test here it runs in a process of its own under nextest.

use kinograph_engine::memory::working_reserve;
use kinograph_engine::{
    ApiPrompt, Cache, Environment, Executor, InputValue, MemoryBudget, MemoryPool, ModelFolders, RunOptions, RunStatus,
};
use serde_json::{Value as Json, json};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

fn demo(root: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kinograph"))
        .current_dir(root)
        .env("KINOGRAPH_LOG", "info")
        .args(["demo", "--steps", "1"])
        .args(extra)
        .output()
        .expect("kinograph runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn ltx2_runs_in_a_budget_smaller_than_its_models_by_streaming_the_transformer() {
    let root = tempfile::tempdir().unwrap();
    // The tiny LTX-2 models take 27 MB resident; the transformer 9 MB of it, 0.5 MB when it streams.
    let output = demo(root.path(), &["--ltx2", "--ram-budget", "20M"]);
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("streaming the transformer's blocks from the file"), "{stderr}");
    assert!(stderr.contains("peak memory: ") && stderr.contains("GiB resident (VmHWM)"), "{stderr}");
    assert!(root.path().join("output/video/demo_ltx2_00001_.mp4").is_file());
}

#[test]
fn a_model_that_cannot_fit_is_refused_naming_the_node_the_file_and_the_sizes() {
    let root = tempfile::tempdir().unwrap();
    // Neither the T5 (4 MB, nearly all of it the embedding table that stays when its blocks stream) nor the
    // checkpoint's VAE, which cannot stream, fit in 2 MB; the loaders run side by side, so either may be the
    // one that fails first.
    let output = demo(root.path(), &["--ram-budget", "2M"]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let checkpoint = stderr.contains("Load Checkpoint (CheckpointLoaderSimple) failed: input 'ckpt_name'")
        && stderr.contains("ltxv-demo-tiny.safetensors: this ")
        && stderr.contains(" does not fit in the memory budget");
    let text_encoder = stderr.contains("Load CLIP (CLIPLoader) failed: input 'clip_name'")
        && stderr.contains("t5-demo-tiny.safetensors: this text encoder does not fit in the memory budget")
        && stderr.contains("even with its blocks streamed from the file it keeps 4.2 MB");
    assert!(checkpoint || text_encoder, "{stderr}");
    assert!(stderr.contains("the limit of 2.1 MB (the --ram-budget given) leaves"), "{stderr}");
}

#[test]
fn json_events_carry_the_peak_memory_in_the_last_message() {
    let root = tempfile::tempdir().unwrap();
    let output = demo(root.path(), &["--events", "json"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let last: Json = serde_json::from_str(text(&output.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(last["type"], "executing");
    assert!(last["data"]["node"].is_null());
    let peak = last["data"]["peak_resident_bytes"].as_u64().expect("peak_resident_bytes");
    assert!(peak > 10 << 20 && peak < 8 << 30, "{peak}");
}

/// The demo's text-to-video on the tiny models in `models`, run in this process with the cache given way
/// to the process's budget; returns the bytes of models still resident afterwards (the cache holds what
/// it kept).
fn run_text_to_video(models: &Path, output: &Path) -> (u64, Arc<Cache>) {
    let source = include_str!("../workflows/ltxv_text_to_video.json");
    let mut prompt = ApiPrompt::parse(source, "ltxv_text_to_video.json").unwrap();
    let settings: [(&str, &str, Json); 7] = [
        ("CheckpointLoaderSimple", "ckpt_name", json!(kinograph_nodes::demo::DEMO_CHECKPOINT)),
        ("CLIPLoader", "clip_name", json!(kinograph_nodes::demo::DEMO_TEXT_ENCODER)),
        ("EmptyLTXVLatentVideo", "width", json!(256)),
        ("EmptyLTXVLatentVideo", "height", json!(192)),
        ("EmptyLTXVLatentVideo", "length", json!(25)),
        ("LTXVScheduler", "steps", json!(1)),
        ("SaveVideo", "filename_prefix", json!("video/budget")),
    ];
    for (class_type, input, value) in settings {
        for node in prompt.nodes.values_mut().filter(|node| node.class_type.as_deref() == Some(class_type)) {
            node.inputs.insert(input.to_string(), InputValue::Literal(value.clone()));
        }
    }
    let env = Environment {
        output_dir: output.to_path_buf(),
        input_dir: output.to_path_buf(),
        models: ModelFolders::new(models),
    };
    let cache = Arc::new(Cache::new(4 << 30));
    MemoryBudget::global().attach_cache(&cache);
    let executor = Executor::new(Arc::new(kinograph_nodes::registry()), env).with_cache(cache.clone());
    let graph = Arc::new(executor.validate(&prompt).unwrap());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let outcome = runtime.block_on(executor.run(graph, RunOptions::default()));
    assert_eq!(outcome.status, RunStatus::Success, "{:?}", outcome.failure);
    (MemoryBudget::global().resident(MemoryPool::Ram), cache)
}

#[test]
fn the_text_encoder_is_not_kept_by_the_cache_when_the_budget_is_tight() {
    let root = tempfile::tempdir().unwrap();
    let models = root.path().join("models");
    let written = kinograph_nodes::demo::write_demo_models(&models).unwrap();
    let text_encoder = std::fs::metadata(&written.text_encoder).unwrap().len();
    let budget = MemoryBudget::global();

    // Without a tight budget the cache keeps every model for the next run, the text encoder among them.
    budget.set_limit(MemoryPool::Ram, Some(64 << 30));
    let (all_models, cache) = run_text_to_video(&models, root.path());
    assert!(all_models > text_encoder, "{all_models} bytes resident");
    drop(cache);
    assert_eq!(budget.resident(MemoryPool::Ram), 0, "models go with the cache that held them");

    // A budget the models fit in, but not beside the decoded frames (15 MB): once the run no longer needs
    // the text encoder, the cache lets it go rather than keep it.
    let usable = all_models + (4 << 20);
    let limit = usable + working_reserve(usable * 8 / 7);
    budget.set_limit(MemoryPool::Ram, Some(limit));
    let (kept, cache) = run_text_to_video(&models, root.path());
    assert!(kept + text_encoder <= all_models, "{kept} bytes of models kept of {all_models}");
    let used = cache.memory().used_bytes();
    assert!(used <= cache.bound(), "the cache is within its bound");
    // The budget leaves the cache far less than its own 4 GiB bound.
    assert!(cache.bound() as u64 <= usable, "{} > {usable}", cache.bound());
}
